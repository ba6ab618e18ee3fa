//! systemd integration: the listening socket systemd passes on socket
//! activation (`sd_listen_fds(3)`), and readiness notification
//! (`sd_notify(3)`) for `Type=notify`.
//!
//! With socket activation systemd owns the socket: it exists before the
//! daemon starts and stays while the daemon restarts, so clients queue in
//! its backlog instead of failing. The daemon then neither binds, chmods nor
//! removes the socket file.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, UnixAddr};

/// Why a passed descriptor cannot serve as the API socket.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_PID`/`LISTEN_FDS` are malformed.
    #[error("socket activation: {0}")]
    Environment(io::Error),
    /// fd 3 is not a listening Unix stream socket (a unit misconfiguration).
    #[error("socket activation: fd {fd} is not a listening Unix stream socket ({why})")]
    NotAUnixListener {
        /// The descriptor.
        fd: i32,
        /// What is wrong with it.
        why: String,
    },
}

/// A listening socket received from systemd.
#[derive(Debug)]
pub struct ActivatedSocket {
    /// The listener (blocking mode, as passed; close-on-exec set).
    pub listener: UnixListener,
    /// The path it is bound to, when it has one (for the logs).
    pub path: Option<PathBuf>,
    /// How many descriptors systemd passed (only the first is used).
    pub passed: usize,
}

/// Takes the socket systemd passed for this process, if any, and removes
/// `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the environment so
/// that runsc and the sandboxes do not inherit them. The descriptors are set
/// close-on-exec for the same reason.
///
/// # Safety
///
/// Changes the environment: call it before any other thread exists (first
/// thing in `main`, before the async runtime starts).
pub unsafe fn take_activated_socket() -> Result<Option<ActivatedSocket>, ActivationError> {
    // SAFETY: the caller guarantees that no other thread runs.
    let fds = unsafe { sd_notify::listen_fds_and_unset_env() };
    std::env::remove_var("LISTEN_FDNAMES");
    let fds: Vec<i32> = fds.map_err(ActivationError::Environment)?.collect();
    let Some(&fd) = fds.first() else {
        return Ok(None);
    };
    // SAFETY: systemd handed this descriptor to this process (LISTEN_PID is
    // our pid) and nothing else in the process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let not_unix = |why: String| ActivationError::NotAUnixListener { fd, why };
    match getsockopt(&owned, sockopt::SockType) {
        Ok(SockType::Stream) => {}
        Ok(other) => return Err(not_unix(format!("socket type {other:?}"))),
        Err(e) => return Err(not_unix(e.to_string())),
    }
    if !getsockopt(&owned, sockopt::AcceptConn).map_err(|e| not_unix(e.to_string()))? {
        return Err(not_unix("not listening".into()));
    }
    let addr: UnixAddr = getsockname(fd).map_err(|e| not_unix(format!("not AF_UNIX: {e}")))?;
    Ok(Some(ActivatedSocket {
        listener: UnixListener::from(owned),
        path: addr.path().map(PathBuf::from),
        passed: fds.len(),
    }))
}

/// Tells systemd the daemon serves its socket (`READY=1`). A no-op when
/// not started by systemd with `Type=notify` (no `NOTIFY_SOCKET`).
pub fn notify_ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Tells systemd the daemon is shutting down (`STOPPING=1`).
pub fn notify_stopping() {
    notify(&[sd_notify::NotifyState::Stopping]);
}

fn notify(states: &[sd_notify::NotifyState]) {
    // A failed notification is logged, not fatal: systemd then times the
    // start out and says so itself.
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    // One test touches the process environment, so keep it the only one.
    #[test]
    fn notify_sends_ready_and_stopping_to_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        // No other test of this binary reads NOTIFY_SOCKET.
        std::env::set_var("NOTIFY_SOCKET", &path);
        notify_ready("serving /x");
        notify_stopping();
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving /x\n");
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
    }
}
