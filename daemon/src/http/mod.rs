//! The HTTP layer: everything that knows the API is JSON over HTTP/1.1 on a
//! Unix socket. It turns requests into calls on the actor service and the
//! results (or errors) into responses; the service below knows nothing of
//! HTTP.
//!
//! [`server`] accepts connections and checks who the peer is ([`access`]),
//! [`connection`] tracks each one, [`router`] turns method + path into a
//! [`router::Route`], [`handlers`] call the service for it, and [`error`]
//! is the one place where an error becomes a status.

pub mod access;
pub mod connection;
pub mod error;
pub mod handlers;
#[cfg(test)]
mod openapi_tests;
pub mod router;
pub mod server;
