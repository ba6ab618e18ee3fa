//! What the server learns about a connection before it reads a request,
//! and hands to every handler with each one: who the peer is, what it may
//! do, and the limits in force. Its own module so that the server and the
//! handlers both use it without using each other.

use std::time::Duration;

use super::access::Access;

/// Limits that keep one client from holding the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once. When all are taken and another client
    /// connects, the connection idle longest (no request being answered,
    /// no stream being followed: waiting for or slowly sending a request
    /// head) is closed to make room; while none is idle, new ones wait in
    /// the listen backlog.
    pub max_connections: usize,
    /// Time to send a request's headers; a slower client is cut off.
    pub header_read_timeout: Duration,
    /// Time to send a request's body.
    pub body_read_timeout: Duration,
    /// Bytes of request head (request line and headers) accepted; the
    /// handler answers a JSON 413 beyond.
    pub max_header_bytes: usize,
    /// Headers accepted in one request; the handler answers a JSON 413 beyond.
    pub max_headers: usize,
    /// Connections viewers (read-only peers) may hold at once, within
    /// `max_connections`, so that their log and event streams cannot take
    /// every slot from the control plane; beyond, a JSON 503.
    pub max_viewer_connections: usize,
    /// Bytes of a snapshot import's body (a tar as large as the actor's
    /// memory: streamed to disk, never held, so only the disk bounds it).
    pub max_import_bytes: u64,
}

impl Limits {
    /// What hyper itself buffers and parses before it gives up and fails
    /// the connection (answered with a JSON 413 in place of hyper's bare
    /// 431): four times our limits, so that a request only a little over
    /// them still reaches the handler and gets the JSON error naming the
    /// limit, while an absurd one costs bounded memory.
    pub(super) fn hyper_backstop(&self) -> (usize, usize) {
        (
            self.max_header_bytes.saturating_mul(4).max(8192),
            self.max_headers.saturating_mul(4),
        )
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_viewer_connections: 32,
            max_import_bytes: 64 << 30,
        }
    }
}

/// What the handlers know about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    /// What the peer may do.
    pub access: Access,
    /// Its uid (for messages).
    pub uid: u32,
    /// The limits in force.
    pub limits: Limits,
    /// A viewer over `max_viewer_connections`: every request gets 503.
    pub over_viewer_cap: bool,
}
