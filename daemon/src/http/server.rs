//! The Unix socket server: binds (or receives) the socket and serves
//! HTTP/1.1 on it with hyper, one task per connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::access::{process_groups, Access, AccessPolicy};
use super::connection::{ConnState, Registry, TrackedBody, TrackedIo};
use super::error::malformed_request;
use super::exec::{UpgradeSlot, Upgraded};
use super::handlers::handle;
use super::peer::{Limits, Peer};
use super::response::raw_error_response;
use crate::runsc::Runtime;
use crate::service::ActorService;

/// How often the accept loop looks again for an idle connection to close
/// while a new one waits for a slot and none was idle.
const EVICTION_RETRY: Duration = Duration::from_millis(50);

/// Binds the API socket at `path` with `mode` (and group `gid`), replacing
/// a stale socket file but refusing one that another process still serves.
pub(crate) fn bind(path: &Path, mode: u32, gid: Option<u32>) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by another process", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Makes a listener passed by systemd (socket activation) usable by tokio.
/// Its file mode and owner are the socket unit's business.
pub(crate) fn from_activated(
    listener: std::os::unix::net::UnixListener,
) -> io::Result<UnixListener> {
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

/// Serves requests until `shutdown` resolves; then stops accepting.
/// Connections in progress finish on their own tasks.
pub(crate) async fn serve<R: Runtime>(
    listener: UnixListener,
    svc: Arc<ActorService<R>>,
    access: Arc<AccessPolicy>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let viewer_slots = Arc::new(Semaphore::new(limits.max_viewer_connections));
    let registry = Registry::new();
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // A slot for it: a free one, else the one an idle connection gives
        // up when asked to make room. While every connection is busy it
        // waits, and those behind it wait in the listen backlog.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => loop {
                if registry.evict_oldest_idle() {
                    tracing::debug!(
                        connections = registry.len(),
                        "every slot is taken: closing the longest idle connection"
                    );
                }
                tokio::select! {
                    _ = &mut shutdown => return,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(s) => break s,
                        Err(_) => return,
                    },
                    // None was idle, or the one asked turned busy: look again.
                    _ = tokio::time::sleep(EVICTION_RETRY) => {}
                }
            },
        };
        let peer = match stream.peer_cred() {
            Ok(cred) => {
                let gids = cred
                    .pid()
                    .map(|pid| process_groups(pid, cred.uid(), cred.gid()))
                    .unwrap_or_else(|| vec![cred.gid()]);
                Peer {
                    access: access.classify(cred.uid(), &gids),
                    uid: cred.uid(),
                    limits,
                    over_viewer_cap: false,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no peer credentials; refusing the connection");
                continue;
            }
        };
        let mut peer = peer;
        if peer.access == Access::Denied {
            tracing::warn!(uid = peer.uid, "connection from a peer that is not allowed");
        }
        let viewer_slot = match peer.access {
            Access::ReadOnly => match viewer_slots.clone().try_acquire_owned() {
                Ok(s) => Some(s),
                Err(_) => {
                    tracing::warn!(uid = peer.uid, "a viewer over max_viewer_connections");
                    peer.over_viewer_cap = true;
                    None
                }
            },
            _ => None,
        };
        let svc = svc.clone();
        let registration = registry.register();
        tokio::spawn(async move {
            serve_connection(stream, svc, peer, limits, registration.state().clone()).await;
            drop(registration);
            drop(viewer_slot);
            drop(slot);
        });
    }
}

/// A request's future, boxed so that the connection can be polled without
/// hyper's shutdown (which needs it `Unpin`) and its IO taken back.
type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

/// Serves one connection until it ends, or until the server asks it to
/// make room while it is idle. When hyper fails it on a request head it
/// could not parse, the JSON error body (`ErrorBody` in docs/openapi.yaml)
/// is written in place of hyper's bare answer (see [`super::connection`]).
async fn serve_connection<R: Runtime>(
    stream: UnixStream,
    svc: Arc<ActorService<R>>,
    peer: Peer,
    limits: Limits,
    state: Arc<ConnState>,
) {
    let conn_state = state.clone();
    let upgrade = UpgradeSlot::default();
    let slot = upgrade.clone();
    let service = service_fn(
        move |mut req: hyper::Request<hyper::body::Incoming>| -> ResponseFuture {
            req.extensions_mut().insert(slot.clone());
            let guard = conn_state.begin_response();
            let response = handle(svc.clone(), peer, req);
            Box::pin(async move {
                let response = response.await?;
                Ok(response.map(|body| TrackedBody::new(body, guard)))
            })
        },
    );
    let (buf_size, headers) = limits.hyper_backstop();
    let mut conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(buf_size)
        .max_headers(headers)
        .serve_connection(TokioIo::new(TrackedIo::new(stream, state.clone())), service);
    let result = loop {
        tokio::select! {
            result = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break result,
            () = state.eviction_requested() => {
                if state.is_idle() {
                    // Nothing of ours is under way: closing loses no answer.
                    tracing::debug!("closing an idle connection to make room");
                    return;
                }
                state.keep();
            }
        }
    };
    let parts = conn.into_parts();
    if let (Ok(()), Some(handover)) = (&result, upgrade.take()) {
        // A handler answered 101 (an interactive exec): hyper has let go
        // of the connection, which now belongs to the session. The slot
        // is held until the session ends.
        let (done, ended) = tokio::sync::oneshot::channel();
        let upgraded = Upgraded {
            stream: parts.io.into_inner().into_inner(),
            read_buf: parts.read_buf,
            done,
        };
        if handover.send(upgraded).is_ok() {
            let _ = ended.await;
        }
        return;
    }
    let io = parts.io.into_inner();
    let failed = match &result {
        Err(e) if io.swallowed() || (e.is_parse() && state.is_idle()) => Some(e),
        Err(e) => {
            tracing::debug!(error = %e, "connection ended with an error");
            None
        }
        Ok(()) if io.swallowed() => {
            tracing::warn!("hyper wrote outside a response and ended the connection cleanly");
            None
        }
        Ok(()) => None,
    };
    let mut stream = io.into_inner();
    if let Some(e) = failed {
        let answer = malformed_request(e);
        tracing::debug!(error = %e, status = answer.code.http_status(), "request hyper could not parse");
        let write = async {
            stream.write_all(&raw_error_response(&answer)).await?;
            stream.shutdown().await
        };
        // A client that does not read cannot hold the task.
        match tokio::time::timeout(limits.header_read_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "writing the answer to a malformed request"),
            Err(_) => tracing::debug!("the answer to a malformed request was not taken in time"),
        }
    } else {
        let _ = stream.shutdown().await;
    }
}
