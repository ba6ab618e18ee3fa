//! atelet: the node daemon that runs actors under gVisor, suspends them to
//! snapshots and resumes them (see DESIGN.md).
//!
//! Data flows one way: [`server`] → [`router`] → [`handlers`] →
//! [`service`] → {[`store`], [`images`], [`bundle`], [`runsc`], [`snapshots`]}.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod access;
pub mod bundle;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod error;
pub mod fsutil;
pub mod handlers;
pub mod images;
pub mod locks;
pub mod metrics;
#[cfg(test)]
mod openapi_tests;
pub mod policy;
pub mod reaper;
pub mod router;
pub mod runsc;
pub mod server;
pub mod service;
pub mod snapshots;
pub mod store;
pub mod systemd;
