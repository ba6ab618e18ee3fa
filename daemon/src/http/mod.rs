//! The HTTP layer: everything that knows the API is JSON over HTTP/1.1 on a
//! Unix socket. It turns requests into calls on the actor service and the
//! results (or errors) into responses; the service below knows nothing of
//! HTTP.
//!
//! [`server`] accepts connections and classifies each peer ([`access`],
//! [`peer`]), [`connection`] tracks each one, [`router`] turns method +
//! path into a [`router::Route`], [`handlers`] call the service for it and
//! answer through [`response`], and [`error`] is the one place where an
//! error becomes a status. Dependencies go one way: the server uses the
//! handlers, never the reverse.

pub(crate) mod access;
pub(crate) mod connection;
pub(crate) mod error;
pub(crate) mod exec;
pub(crate) mod handlers;
#[cfg(test)]
mod openapi_tests;
pub(crate) mod peer;
pub(crate) mod response;
pub(crate) mod router;
pub(crate) mod server;

pub(crate) use peer::Limits;
