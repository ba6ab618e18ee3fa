//! atelet: the node daemon that runs actors under gVisor, suspends them to
//! snapshots and resumes them (docs/design.md explains how it is built).
//!
//! Data flows one way: [`http`] (socket, routing, JSON) → [`service`] (the
//! actor lifecycle, which knows no HTTP) → {[`store`], [`images`],
//! [`bundle`], [`runsc`], [`snapshots`]}.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bundle;
pub mod config;
pub mod daemon;
pub mod fsutil;
pub mod http;
pub mod images;
pub mod locks;
pub mod metrics;
pub mod policy;
pub mod reaper;
pub mod runsc;
pub mod service;
pub mod snapshots;
pub mod store;
pub mod systemd;
