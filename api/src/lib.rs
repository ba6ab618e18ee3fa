//! `atelet-api`: the contract between the atelet daemon and its clients.
//!
//! Wire types (serde), their validation and the error codes of the API (docs/openapi.yaml).
//! Nothing here does I/O, so that the daemon, `atectl` and tests share one
//! definition of what a valid request is.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod capabilities;
pub mod error;
pub mod exec;
pub mod image_ref;
pub mod lifecycle;
pub mod quantity;
pub mod resources;
pub mod strict;
pub mod types;
pub mod validate;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use exec::{validate_exec, ExecFrame, ExecRequest, ExecResult, ExecUser, ValidExec};
pub use image_ref::ImageRef;
pub use lifecycle::{Allowed, Op};
pub use quantity::{parse_bytes, parse_millicores, Quantity, QuantityError};
pub use resources::{validate_resources, SandboxResources};
pub use strict::from_json_slice;
pub use types::*;
pub use validate::{
    validate_actor_id, validate_create, validate_needs_no_network, validate_program,
    ValidationError,
};
