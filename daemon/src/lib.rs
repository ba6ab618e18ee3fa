//! atelet: the node daemon that runs actors under gVisor, suspends them to
//! snapshots and resumes them (docs/design.md explains how it is built).
//!
//! Data flows one way: [`http`] (socket, routing, JSON) → [`service`] (the
//! actor lifecycle, which knows no HTTP) → {[`store`], [`images`],
//! [`bundle`], [`runsc`], [`snapshots`]}.
//!
//! Everything is `pub(crate)` but what the `atelet` binary needs (the
//! config, the daemon's entry point, systemd's socket) and the layer
//! extraction the fuzz target drives: nothing else is an interface, and
//! the `unreachable_pub` lint keeps it so.
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(unreachable_pub)]

pub(crate) mod bridge;
pub(crate) mod bundle;
pub(crate) mod cgroups;
pub mod config;
pub mod daemon;
pub(crate) mod fsutil;
pub(crate) mod http;
pub mod images;
pub(crate) mod locks;
pub(crate) mod metrics;
pub(crate) mod network;
pub(crate) mod policy;
pub(crate) mod reaper;
pub mod remote;
pub(crate) mod runsc;
pub(crate) mod service;
pub(crate) mod snapshots;
pub(crate) mod store;
pub mod systemd;
pub mod trust;
