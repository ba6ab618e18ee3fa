//! What the server tracks of one connection beyond what hyper tells it:
//! whether one of our responses is in progress on it.
//!
//! hyper answers a request it cannot parse (a garbage request line, two
//! Content-Lengths that disagree, a head over its buffer) by itself, with a
//! bare 400 (or 431) that has no body, and then fails the connection. The
//! API promises the JSON error body (docs/openapi.yaml) for every error, so the
//! server swallows that automatic answer and writes the JSON one in its
//! place once the connection has failed. Telling hyper's own bytes from
//! ours needs no parsing of the byte stream: hyper reads a new request
//! head only once the previous response is completely written and
//! flushed, and its automatic answer is the only thing it ever writes on
//! its own. So a write that comes while no response of ours is under way
//! and the last one has been flushed ([`ConnState::is_idle`]) is hyper's.
//!
//! The same "idle" tells the server which connections it may close when
//! every slot is taken and another client connects ([`Registry`]): one that
//! waits for (or is slowly sending) a request head, as opposed to one with
//! a request being answered or a stream being followed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::response::ResponseBody;

/// The progress of one connection, shared by its socket wrapper
/// ([`TrackedIo`]), its response bodies ([`TrackedBody`]) and the server.
#[derive(Debug)]
pub(crate) struct ConnState {
    /// A request reached the service and its response body is still alive
    /// (hyper drops it once the last frame is taken).
    responding: AtomicBool,
    /// Everything written for the last response has been flushed to the
    /// socket since it ended (true for a fresh connection).
    settled: AtomicBool,
    /// When it last became idle ([`now_ms`]), so that the longest idle is
    /// closed first.
    idle_since_ms: AtomicU64,
    /// The server asks it to close if it is still idle.
    evict: Notify,
    /// An eviction is pending (so that the next one picks another).
    evicting: AtomicBool,
}

impl ConnState {
    /// A fresh connection: idle since now, nothing written yet.
    pub(crate) fn new() -> Arc<ConnState> {
        Arc::new(ConnState {
            responding: AtomicBool::new(false),
            settled: AtomicBool::new(true),
            idle_since_ms: AtomicU64::new(now_ms()),
            evict: Notify::new(),
            evicting: AtomicBool::new(false),
        })
    }

    /// Called as hyper hands a request to the service, before any byte of
    /// its response can be written. The guard goes into the response body.
    pub(crate) fn begin_response(self: &Arc<Self>) -> ResponseGuard {
        self.settled.store(false, Ordering::SeqCst);
        self.responding.store(true, Ordering::SeqCst);
        ResponseGuard(self.clone())
    }

    /// No response of ours is under way and the last one is on the wire:
    /// the connection waits for (or is reading) the next request head.
    pub(crate) fn is_idle(&self) -> bool {
        !self.responding.load(Ordering::SeqCst) && self.settled.load(Ordering::SeqCst)
    }

    /// When it last became idle (meaningful while [`ConnState::is_idle`]).
    pub(crate) fn idle_since_ms(&self) -> u64 {
        self.idle_since_ms.load(Ordering::SeqCst)
    }

    /// Resolves when the server asks this connection to make room. The
    /// connection then closes if it is still idle ([`ConnState::is_idle`]),
    /// and otherwise calls [`ConnState::keep`] and goes on.
    pub(crate) async fn eviction_requested(&self) {
        self.evict.notified().await;
    }

    /// It was asked to make room but is busy after all: it may be asked again.
    pub(crate) fn keep(&self) {
        self.evicting.store(false, Ordering::SeqCst);
    }

    fn flushed(&self) {
        if !self.responding.load(Ordering::SeqCst) && !self.settled.load(Ordering::SeqCst) {
            self.idle_since_ms.store(now_ms(), Ordering::SeqCst);
            self.settled.store(true, Ordering::SeqCst);
        }
    }
}

/// Milliseconds on a monotonic clock shared by every connection.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The connections being served, so that when every slot is taken the one
/// idle longest can be asked to make room for a new one. Without this, a
/// client that opens connections and sends nothing (or reconnects in a
/// loop) holds every slot until the header timeout, and everyone else
/// waits that long.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
}

impl Registry {
    /// An empty registry.
    pub(crate) fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Tracks a new connection until the returned registration is dropped.
    pub(crate) fn register(self: &Arc<Self>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = ConnState::new();
        self.lock().insert(id, state.clone());
        Registration {
            registry: self.clone(),
            id,
            state,
        }
    }

    /// Asks the connection idle longest, and not asked already, to close.
    /// False when no connection is idle.
    pub(crate) fn evict_oldest_idle(&self) -> bool {
        let conns = self.lock();
        let oldest = conns
            .values()
            .filter(|c| c.is_idle() && !c.evicting.load(Ordering::SeqCst))
            .min_by_key(|c| c.idle_since_ms());
        match oldest {
            Some(c) => {
                c.evicting.store(true, Ordering::SeqCst);
                // Kept as a permit if its task is not waiting right now.
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }

    /// Connections being served.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        // The map stays consistent whatever a panicking holder did.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection's place in the [`Registry`]; dropping it removes it.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Arc<Registry>,
    id: u64,
    state: Arc<ConnState>,
}

impl Registration {
    /// The connection's progress.
    pub(crate) fn state(&self) -> &Arc<ConnState> {
        &self.state
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// Marks the end of a response when dropped (with its body).
#[derive(Debug)]
pub(crate) struct ResponseGuard(Arc<ConnState>);

impl Drop for ResponseGuard {
    fn drop(&mut self) {
        self.0.responding.store(false, Ordering::SeqCst);
    }
}

/// A response body that ends the response's [`ResponseGuard`] when hyper
/// drops it, which it does only after taking its last frame.
pub(crate) struct TrackedBody {
    inner: ResponseBody,
    _guard: ResponseGuard,
}

impl TrackedBody {
    /// `inner`, ending `guard` with it.
    pub(crate) fn new(inner: ResponseBody, guard: ResponseGuard) -> TrackedBody {
        TrackedBody {
            inner,
            _guard: guard,
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket as hyper sees it: reads pass through; writes pass through
/// unless the connection is idle, when they can only be hyper's automatic
/// answer to a head it could not parse, which is swallowed (and
/// remembered) so that the server can write the JSON error instead.
#[derive(Debug)]
pub(crate) struct TrackedIo<S> {
    io: S,
    state: Arc<ConnState>,
    swallowed: bool,
}

impl<S> TrackedIo<S> {
    /// Wraps `io`, the connection whose progress `state` tracks.
    pub(crate) fn new(io: S, state: Arc<ConnState>) -> TrackedIo<S> {
        TrackedIo {
            io,
            state,
            swallowed: false,
        }
    }

    /// hyper wrote on its own (an automatic error answer), and it was
    /// kept off the wire.
    pub(crate) fn swallowed(&self) -> bool {
        self.swallowed
    }

    /// The socket, to write the JSON error on.
    pub(crate) fn into_inner(self) -> S {
        self.io
    }

    fn hyper_writes_on_its_own(&mut self) -> bool {
        if !self.swallowed && self.state.is_idle() {
            tracing::debug!("swallowing hyper's automatic answer");
            self.swallowed = true;
        }
        self.swallowed
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.hyper_writes_on_its_own() {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.hyper_writes_on_its_own() {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = res {
            // hyper flushes only with its buffer written out: a response
            // that has ended is now wholly on the wire.
            self.state.flushed();
        }
        res
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_pass_only_while_a_response_is_under_way() {
        let (a, mut b) = tokio::io::duplex(1024);
        let state = ConnState::new();
        let mut io = TrackedIo::new(a, state.clone());
        assert!(state.is_idle());

        // A response: its bytes pass, also after the body is gone, until
        // a flush has put them on the wire.
        let guard = state.begin_response();
        assert!(!state.is_idle());
        io.write_all(b"head").await.unwrap();
        let body = TrackedBody::new(Full::new(Bytes::from_static(b"x")).boxed(), guard);
        drop(body);
        io.write_all(b"+tail").await.unwrap();
        assert!(!state.is_idle());
        io.flush().await.unwrap();
        assert!(state.is_idle());

        // Idle: what is written now is hyper's own, and swallowed.
        assert!(!io.swallowed());
        io.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .await
            .unwrap();
        assert!(io.swallowed());
        io.flush().await.unwrap();
        drop(io);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"head+tail");
    }

    #[tokio::test]
    async fn eviction_asks_the_longest_idle_connection_and_never_a_busy_one() {
        let registry = Registry::new();
        let first = registry.register();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = registry.register();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let busy = registry.register();
        let _guard = busy.state().begin_response();
        assert_eq!(registry.len(), 3);

        assert!(registry.evict_oldest_idle());
        // The permit waits for the task: the first is asked, at once.
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            first.state().eviction_requested(),
        )
        .await
        .unwrap();
        // Asked once is enough; the next is the second.
        assert!(registry.evict_oldest_idle());
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            second.state().eviction_requested(),
        )
        .await
        .unwrap();
        // Only the busy one is left: nothing to ask.
        assert!(!registry.evict_oldest_idle());
        // One that turned busy declines and may be asked again once idle.
        first.state().keep();
        assert!(registry.evict_oldest_idle());
        drop(first);
        drop(second);
        assert_eq!(registry.len(), 1);
        assert!(!registry.evict_oldest_idle());
    }

    #[test]
    fn a_tracked_body_keeps_the_size_and_end_of_its_inner_body() {
        let state = ConnState::new();
        let body = TrackedBody::new(
            Full::new(Bytes::from_static(b"abc")).boxed(),
            state.begin_response(),
        );
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        let empty = TrackedBody::new(Full::new(Bytes::new()).boxed(), state.begin_response());
        assert!(empty.is_end_stream());
    }
}
