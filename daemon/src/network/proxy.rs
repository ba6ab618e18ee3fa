//! Published ports: a userspace TCP forwarder from
//! `publish_address:hostPort` to `actorIP:containerPort`.
//!
//! Not DNAT: the daemon holds each listening socket for the actor's whole
//! life, also while it is suspended, so the port stays taken (nobody else
//! can grab it between a suspend and a resume) and a connection is seen by
//! the daemon even when no sandbox runs, which is how a connection wakes a
//! paused or suspended actor: its port is then *waking*, and each
//! connection asks the [`Waker`] for the actor's address (the service
//! resumes it once, however many connections wait) and is forwarded when
//! it has one. While the actor has no target (not running, and not to be
//! woken), a connection is accepted and closed at once.
//!
//! Bytes are moved with splice(2) through a pipe per direction, so they
//! never enter userspace: on bulk transfers that halves the proxy's
//! copying (a read/write loop, 64 KiB buffers, is the fallback when no
//! pipe can be had).
//!
//! One accept task per port; each owns the tasks of its connections, so
//! stopping it closes them too. The listening socket itself is shared with
//! [`PortPublisher`] behind a mutex that the task only holds while polling,
//! so [`PortPublisher::unpublish`] can close it before it returns rather
//! than whenever the aborted task happens to be dropped.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::socket::{shutdown, Shutdown};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// How long connecting to the actor may take before the client's
/// connection is given up: an actor that does not accept within this is
/// broken, and the client should not hang on it forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Copy buffer per direction when no pipes can be had for splicing:
/// larger than tokio's 8 KiB default so that a bulk transfer needs fewer
/// syscalls, small enough that many connections stay cheap.
const BUFFER: usize = 64 * 1024;
/// The capacity asked for the splicing pipes, so most bytes one splice(2)
/// moves (Linux's default pipe-max-size allows an unprivileged 1 MiB).
const SPLICE_CHUNK: usize = 256 * 1024;
/// A pipe's capacity when resizing it was refused.
const PIPE_DEFAULT: usize = 64 * 1024;
/// Listen backlog, as for any server that may see bursts.
const BACKLOG: u32 = 1024;
/// Pause after a failed accept (out of file descriptors and the like) so
/// the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Why ports could not be published.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    /// A host port could not be bound (another process, another actor, or
    /// listed twice); none of the actor's ports were bound.
    #[error("host port {port} cannot be published: {reason}")]
    Taken {
        /// The host port that failed.
        port: u16,
        /// What the OS said.
        reason: io::Error,
    },
    /// Called outside a tokio runtime: the accept tasks have nowhere to run.
    #[error("ports can only be published from within the daemon's tokio runtime")]
    NoRuntime,
}

/// Wakes an actor for a connection to its waking port: resolves to the
/// address to forward to once the actor runs, or `None` (the connection
/// is then closed). Set once by the service.
pub(crate) type Waker = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Ipv4Addr>> + Send>>
        + Send
        + Sync,
>;

/// The published ports of all actors, and where their connections go.
pub(crate) struct PortPublisher {
    /// The node's `publish_address`, where every host port is bound.
    address: IpAddr,
    /// Actor name → its listeners.
    actors: Mutex<HashMap<String, Published>>,
    /// How a waking port gets its actor running.
    waker: Arc<std::sync::OnceLock<Waker>>,
}

/// One actor's listeners and the state its accept tasks share.
struct Published {
    /// Sorted by host port.
    ports: Vec<Port>,
    /// Target and counters, kept when the ports are rebound.
    shared: Arc<Shared>,
}

/// What the accept tasks of one actor read and update.
struct Shared {
    /// Where connections go: 0 for nowhere, else `1 << 32 | ipv4`. An
    /// atomic, as it is read on every accept and set on every start/stop.
    target: AtomicU64,
    /// Connections accepted so far, also those closed for want of a target.
    accepted: AtomicU64,
    /// The actor, named to the waker.
    actor: String,
    /// The publisher's waker.
    waker: Arc<std::sync::OnceLock<Waker>>,
    /// When the last connection was accepted (idle detection).
    last_connection: Mutex<Option<Instant>>,
}

/// One bound host port.
struct Port {
    /// Where it is bound.
    host_port: u16,
    /// Where its connections go on the actor.
    container_port: u16,
    /// The listening socket; `None` once closed. The accept task locks it
    /// only while polling.
    listener: Arc<Mutex<Option<TcpListener>>>,
    /// The accept task (which owns the connection tasks).
    task: JoinHandle<()>,
}

impl Drop for Port {
    /// Closes the socket now (the port is free on return) and stops the
    /// accept task, which closes the port's open connections.
    fn drop(&mut self) {
        self.task.abort();
        drop(lock(&self.listener).take());
    }
}

impl PortPublisher {
    /// A publisher binding on `address` (the node's `publish_address`).
    pub(crate) fn new(address: IpAddr) -> PortPublisher {
        PortPublisher {
            address,
            actors: Mutex::new(HashMap::new()),
            waker: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// Sets how waking ports get their actor running (once; later calls
    /// change nothing).
    pub(crate) fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    /// Binds every `(host_port, container_port)` of `actor` at once: if one
    /// cannot be bound, none of them stays bound and the error names it, so
    /// an actor never runs with half its ports. Called again with the same
    /// ports (recovery) it changes nothing; with other ports it rebinds,
    /// keeping the sockets of host ports in both sets (open connections on
    /// the actor's ports are closed then), and on failure the old ports
    /// stay as they were. No ports is the same as [`Self::unpublish`].
    /// Must be called within a tokio runtime.
    pub(crate) fn publish(&self, actor: &str, ports: &[(u16, u16)]) -> Result<(), PublishError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| PublishError::NoRuntime)?;
        let mut wanted = ports.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        if let Some(pair) = wanted.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(PublishError::Taken {
                port: pair[0].0,
                reason: io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "listed twice for different container ports",
                ),
            });
        }
        let mut actors = lock(&self.actors);
        if wanted.is_empty() {
            actors.remove(actor);
            return Ok(());
        }
        let old = actors.get(actor);
        if let Some(old) = old {
            if old.ports.len() == wanted.len()
                && old
                    .ports
                    .iter()
                    .zip(&wanted)
                    .all(|(p, w)| (p.host_port, p.container_port) == *w)
            {
                return Ok(());
            }
        }
        let held =
            |host_port: u16| old.and_then(|o| o.ports.iter().find(|p| p.host_port == host_port));
        // All or nothing: bind the new host ports first; on a failure the
        // ones bound so far are dropped (closed) and the old state stays.
        let mut fresh = Vec::with_capacity(wanted.len());
        for &(host_port, _) in &wanted {
            if held(host_port).is_some() {
                fresh.push(None);
                continue;
            }
            match bind(self.address, host_port) {
                Ok(listener) => fresh.push(Some(listener)),
                Err(reason) => {
                    return Err(PublishError::Taken {
                        port: host_port,
                        reason,
                    })
                }
            }
        }
        let shared = old.map(|o| Arc::clone(&o.shared)).unwrap_or_else(|| {
            Arc::new(Shared {
                target: AtomicU64::new(0),
                accepted: AtomicU64::new(0),
                actor: actor.to_owned(),
                waker: Arc::clone(&self.waker),
                last_connection: Mutex::new(None),
            })
        });
        let mut bound = Vec::with_capacity(wanted.len());
        for (&(host_port, container_port), listener) in wanted.iter().zip(fresh) {
            // A kept port: its socket moves to the new task; the old task
            // finds the slot empty and ends.
            let listener =
                listener.or_else(|| held(host_port).and_then(|p| lock(&p.listener).take()));
            let Some(listener) = listener else {
                continue;
            };
            let listener = Arc::new(Mutex::new(Some(listener)));
            let task = runtime.spawn(accept_loop(
                Arc::clone(&listener),
                container_port,
                Arc::clone(&shared),
            ));
            bound.push(Port {
                host_port,
                container_port,
                listener,
                task,
            });
        }
        // Replacing drops the old ports: their tasks stop and any socket
        // not moved over closes.
        actors.insert(
            actor.to_owned(),
            Published {
                ports: bound,
                shared,
            },
        );
        Ok(())
    }

    /// Where `actor`'s connections go: `Some(ip)` while it runs, `None`
    /// while it does not (connections are then closed at once). Applies to
    /// connections accepted from now on; an actor not published is ignored.
    pub(crate) fn set_target(&self, actor: &str, target: Option<Ipv4Addr>) {
        self.store_target(actor, encode(target));
    }

    /// `actor` is paused or suspended and wakes on a connection: each one
    /// accepted from now on waits for the [`Waker`] (see the module).
    pub(crate) fn set_waking(&self, actor: &str) {
        self.store_target(actor, WAKING);
    }

    fn store_target(&self, actor: &str, value: u64) {
        match lock(&self.actors).get(actor) {
            Some(p) => p.shared.target.store(value, Ordering::Release),
            None => tracing::debug!(actor, "no published ports to direct"),
        }
    }

    /// Stops publishing `actor`'s ports (delete): they are free again when
    /// this returns, and its proxied connections are being closed.
    pub(crate) fn unpublish(&self, actor: &str) {
        // Dropped outside the lock: closing sockets needs no exclusion.
        let removed = lock(&self.actors).remove(actor);
        drop(removed);
    }

    /// Host ports currently bound, sorted: for health reports and tests.
    pub(crate) fn bound_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = lock(&self.actors)
            .values()
            .flat_map(|p| p.ports.iter().map(|port| port.host_port))
            .collect();
        ports.sort_unstable();
        ports
    }

    /// Connections accepted on `actor`'s ports and when the last one was:
    /// what idle detection looks at. `None` if it publishes nothing.
    pub(crate) fn activity(&self, actor: &str) -> Option<(u64, Option<Instant>)> {
        let shared = Arc::clone(&lock(&self.actors).get(actor)?.shared);
        let last_connection = *lock(&shared.last_connection);
        Some((shared.accepted.load(Ordering::Relaxed), last_connection))
    }
}

/// Binds a listening socket with `SO_REUSEADDR`, like any server, so a
/// restarted daemon can bind again while old connections sit in TIME_WAIT.
fn bind(address: IpAddr, port: u16) -> io::Result<TcpListener> {
    let socket = match address {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(address, port))?;
    socket.listen(BACKLOG)
}

/// Accepts on one port until its socket is closed or the task aborted;
/// forwards each connection to the target of the moment.
async fn accept_loop(
    listener: Arc<Mutex<Option<TcpListener>>>,
    container_port: u16,
    shared: Arc<Shared>,
) {
    // Dropped with this task, which aborts (closes) every connection.
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = poll_fn(|cx| match lock(&listener).as_ref() {
                Some(l) => l.poll_accept(cx).map(Some),
                None => Poll::Ready(None),
            }) => accepted,
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let client = match accepted {
            None => return,
            Some(Ok((client, _))) => client,
            Some(Err(e)) => {
                tracing::debug!(error = %e, container_port, "accept failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        *lock(&shared.last_connection) = Some(Instant::now());
        let target = shared.target.load(Ordering::Acquire);
        if target == WAKING {
            connections.spawn(wake_and_forward(
                client,
                Arc::clone(&shared),
                container_port,
            ));
            continue;
        }
        match decode(target) {
            Some(ip) => {
                connections.spawn(forward(client, SocketAddrV4::new(ip, container_port)));
            }
            // Not running: close it now rather than let the client wait.
            None => drop(client),
        }
    }
}

/// A connection to a waking port: the actor is woken (or another
/// connection's wake is waited for), then the connection is forwarded;
/// if it cannot be woken, the client is closed.
async fn wake_and_forward(client: TcpStream, shared: Arc<Shared>, container_port: u16) {
    let Some(waker) = shared.waker.get().cloned() else {
        return;
    };
    match waker(shared.actor.clone()).await {
        Some(ip) => forward(client, SocketAddrV4::new(ip, container_port)).await,
        None => {
            tracing::debug!(actor = %shared.actor, "the actor could not be woken; closing the client")
        }
    }
}

/// Connects to the actor and copies both ways until both sides are done.
async fn forward(mut client: TcpStream, target: SocketAddrV4) {
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await
    {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(e)) => {
            tracing::debug!(%target, error = %e, "cannot connect to the actor; closing the client");
            return;
        }
        Err(_) => {
            tracing::debug!(%target, "connecting to the actor timed out; closing the client");
            return;
        }
    };
    // The actor's side ends with a reset, not in TIME_WAIT, which would
    // keep its sandbox from being checkpointed for a minute.
    super::conntrack::close_with_reset(&upstream);
    // Small writes (requests, answers) go out at once on both legs, as
    // they would on a direct connection.
    for stream in [&client, &upstream] {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    }
    // Once the actor has ended its side, the client's end is not passed on
    // as a FIN (the actor would then wait in TIME_WAIT): the reset at the
    // close ends the connection.
    let (client_ended, upstream_ended) = (Ended::default(), Ended::default());
    let copied = match (pipe(), pipe()) {
        (Ok(up), Ok(down)) => tokio::try_join!(
            splice_one_way(&client, &upstream, up, &client_ended, Some(&upstream_ended)),
            splice_one_way(&upstream, &client, down, &upstream_ended, None),
        )
        .map(drop),
        // Out of file descriptors for pipes: copy through userspace.
        _ => tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUFFER, BUFFER)
            .await
            .map(drop),
    };
    if let Err(e) = copied {
        tracing::debug!(%target, error = %e, "proxied connection ended with an error");
    }
}

/// How long the end of a client's sending waits for the actor's end before
/// it is passed on. A client and a server that close at about the same
/// time (HTTP/1.0: the server after its answer, the client once it has
/// it) would otherwise leave the actor's end in TIME_WAIT, which this
/// runsc cannot checkpoint (see `conntrack`).
const FIN_GRACE: Duration = Duration::from_millis(250);

/// One direction of a proxied connection has ended (its sender closed).
#[derive(Default)]
struct Ended {
    flag: AtomicBool,
    notify: Notify,
}

impl Ended {
    fn set(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Whether it has ended, waiting up to `within` for it.
    async fn wait(&self, within: Duration) -> bool {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_set() {
            return true;
        }
        let _ = tokio::time::timeout(within, notified).await;
        self.is_set()
    }
}

/// A pipe for [`splice_one_way`]: (read end, write end, capacity).
fn pipe() -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let (out, into) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    // A larger pipe means fewer splices per megabyte; its pages are only
    // taken while bytes are in flight. Refused (a lower pipe-max-size):
    // the default size works too.
    // SAFETY: F_SETPIPE_SZ on an open descriptor, an int argument.
    let size = unsafe {
        libc::fcntl(
            into.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            SPLICE_CHUNK as libc::c_int,
        )
    };
    let chunk = usize::try_from(size).unwrap_or(PIPE_DEFAULT);
    Ok((out, into, chunk))
}

/// Moves bytes from `from` to `to` through `pipe` with splice(2), so they
/// never enter userspace (half the copying of a read/write loop, which is
/// most of the proxy's cost on bulk transfers), until `from` ends; then
/// records that in `from_ended` and shuts down `to`'s sending side,
/// passing the end on, unless `to_ended` is given and `to` has ended
/// already or does so within [`FIN_GRACE`].
async fn splice_one_way(
    from: &TcpStream,
    to: &TcpStream,
    (pipe_out, pipe_in, chunk): (OwnedFd, OwnedFd, usize),
    from_ended: &Ended,
    to_ended: Option<&Ended>,
) -> io::Result<()> {
    loop {
        // The pipe is empty here: fill it from the socket.
        let filled = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || splice(from, &pipe_in, chunk)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                filled => break filled?,
            }
        };
        if filled == 0 {
            from_ended.set();
            if let Some(to_ended) = to_ended {
                if to_ended.wait(FIN_GRACE).await {
                    return Ok(());
                }
            }
            return match shutdown(to.as_raw_fd(), Shutdown::Write) {
                Ok(()) | Err(Errno::ENOTCONN) => Ok(()),
                Err(e) => Err(e.into()),
            };
        }
        // Drain it into the other socket.
        let mut left = filled;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || splice(&pipe_out, to, left)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // Nothing moved from a pipe holding bytes: never loop on it.
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                moved => left -= moved?,
            }
        }
    }
}

/// One splice(2) of up to `len` bytes, never blocking (the sockets are
/// non-blocking, the flag covers the pipe).
fn splice(from: &impl AsRawFd, to: &impl AsRawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors stay open for the call (they are borrowed),
    // and no offset pointers are passed.
    let moved = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    // Negative (-1) is an error, in errno.
    usize::try_from(moved).map_err(|_| io::Error::last_os_error())
}

/// [`Shared::target`] of a waking port (see [`PortPublisher::set_waking`]).
const WAKING: u64 = 2 << 32;

/// Packs a target for [`Shared::target`].
fn encode(target: Option<Ipv4Addr>) -> u64 {
    target.map_or(0, |ip| 1 << 32 | u64::from(u32::from(ip)))
}

/// Unpacks [`Shared::target`].
fn decode(value: u64) -> Option<Ipv4Addr> {
    // The low 32 bits are the address; truncation is the point.
    (value >> 32 == 1).then(|| Ipv4Addr::from(value as u32))
}

/// Locks, carrying on after a panic elsewhere: every value behind these
/// mutexes is valid at any point.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

    /// A host port free right now (the kernel's pick of an ephemeral one).
    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
        l.local_addr().unwrap().port()
    }

    /// An echo server on an ephemeral loopback port; returns that port.
    async fn echo_server() -> u16 {
        let l = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        port
    }

    fn publisher() -> PortPublisher {
        PortPublisher::new(IpAddr::V4(LOCALHOST))
    }

    /// Reads until EOF or reset, within a bound: the proxy closed it.
    async fn assert_closed(mut s: TcpStream) {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("the connection was not closed promptly");
        match read {
            Ok(0) => {}
            Ok(n) => panic!("read {n} bytes from a connection that should be closed"),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        }
    }

    async fn roundtrip(host_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect((LOCALHOST, host_port)).await.unwrap();
        s.write_all(payload).await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut back))
            .await
            .unwrap()
            .unwrap();
        back
    }

    #[tokio::test]
    async fn forwards_both_ways() {
        let container_port = echo_server().await;
        let host_port = free_port();
        let p = publisher();
        p.publish("a", &[(host_port, container_port)]).unwrap();
        p.set_target("a", Some(LOCALHOST));
        assert_eq!(p.bound_ports(), vec![host_port]);
        // Larger than the copy buffers, so the copy loops.
        let payload: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        assert_eq!(roundtrip(host_port, &payload).await, payload);
        assert_eq!(roundtrip(host_port, b"second").await, b"second");
        let (accepted, last) = p.activity("a").unwrap();
        assert_eq!(accepted, 2);
        assert!(last.is_some());
        assert!(p.activity("b").is_none());
    }

    #[tokio::test]
    async fn a_port_of_another_actor_is_taken_and_nothing_binds() {
        let p = publisher();
        let (p1, p2) = (free_port(), free_port());
        p.publish("a", &[(p1, 80)]).unwrap();
        // p2 comes first, so it is bound before p1 fails.
        match p.publish("b", &[(p2, 80), (p1, 81)]) {
            Err(PublishError::Taken { port, .. }) => assert_eq!(port, p1),
            other => panic!("expected Taken, got {other:?}"),
        }
        assert_eq!(p.bound_ports(), vec![p1]);
        assert!(p.activity("b").is_none());
        // b's other port was released.
        std::net::TcpListener::bind((LOCALHOST, p2)).unwrap();
    }

    #[tokio::test]
    async fn a_port_held_by_another_process_is_taken() {
        let held = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let p = publisher();
        let err = p.publish("a", &[(port, 80)]).unwrap_err();
        assert!(matches!(err, PublishError::Taken { port: p, .. } if p == port));
        assert!(err.to_string().contains(&port.to_string()), "{err}");
        assert!(p.bound_ports().is_empty());
    }

    #[tokio::test]
    async fn without_a_target_connections_are_closed_at_once() {
        let host_port = free_port();
        let p = publisher();
        p.publish("a", &[(host_port, 80)]).unwrap();
        let s = TcpStream::connect((LOCALHOST, host_port)).await.unwrap();
        assert_closed(s).await;
        // Switched back off after running.
        p.set_target("a", Some(LOCALHOST));
        p.set_target("a", None);
        let s = TcpStream::connect((LOCALHOST, host_port)).await.unwrap();
        assert_closed(s).await;
        assert_eq!(p.activity("a").unwrap().0, 2);
    }

    #[tokio::test]
    async fn a_failed_connect_closes_the_client() {
        // Nothing listens on the target port.
        let container_port = free_port();
        let host_port = free_port();
        let p = publisher();
        p.publish("a", &[(host_port, container_port)]).unwrap();
        p.set_target("a", Some(LOCALHOST));
        let s = TcpStream::connect((LOCALHOST, host_port)).await.unwrap();
        assert_closed(s).await;
    }

    #[tokio::test]
    async fn switching_the_target_on_forwards() {
        let container_port = echo_server().await;
        let host_port = free_port();
        let p = publisher();
        p.publish("a", &[(host_port, container_port)]).unwrap();
        assert_closed(TcpStream::connect((LOCALHOST, host_port)).await.unwrap()).await;
        p.set_target("a", Some(LOCALHOST));
        assert_eq!(roundtrip(host_port, b"hello").await, b"hello");
    }

    #[tokio::test]
    async fn a_waking_port_forwards_once_the_waker_answers_and_closes_when_it_cannot() {
        let container_port = echo_server().await;
        let host_port = free_port();
        let p = publisher();
        let wakes = Arc::new(AtomicU64::new(0));
        let can_wake = Arc::new(AtomicBool::new(true));
        let (w, c) = (Arc::clone(&wakes), Arc::clone(&can_wake));
        p.set_waker(Arc::new(move |actor: String| {
            assert_eq!(actor, "a");
            w.fetch_add(1, Ordering::SeqCst);
            let ok = c.load(Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                ok.then_some(LOCALHOST)
            })
        }));
        p.publish("a", &[(host_port, container_port)]).unwrap();
        p.set_waking("a");
        assert_eq!(roundtrip(host_port, b"wake").await, b"wake");
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        can_wake.store(false, Ordering::SeqCst);
        assert_closed(TcpStream::connect((LOCALHOST, host_port)).await.unwrap()).await;
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        // Running again: forwarded without asking.
        p.set_target("a", Some(LOCALHOST));
        assert_eq!(roundtrip(host_port, b"direct").await, b"direct");
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn unpublish_frees_the_port_and_closes_connections() {
        let container_port = echo_server().await;
        let host_port = free_port();
        let p = publisher();
        p.publish("a", &[(host_port, container_port)]).unwrap();
        p.set_target("a", Some(LOCALHOST));
        let mut open = TcpStream::connect((LOCALHOST, host_port)).await.unwrap();
        open.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        open.read_exact(&mut one).await.unwrap();
        p.unpublish("a");
        // Free at once, without yielding to the runtime first.
        drop(std::net::TcpListener::bind((LOCALHOST, host_port)).unwrap());
        assert!(p.bound_ports().is_empty());
        assert_closed(open).await;
        // And it can be published again.
        p.publish("a", &[(host_port, container_port)]).unwrap();
        assert_eq!(p.bound_ports(), vec![host_port]);
    }

    #[tokio::test]
    async fn publishing_again_is_idempotent_or_rebinds() {
        let container_port = echo_server().await;
        let (p1, p2) = (free_port(), free_port());
        let p = publisher();
        p.publish("a", &[(p1, container_port)]).unwrap();
        p.set_target("a", Some(LOCALHOST));
        p.publish("a", &[(p1, container_port)]).unwrap();
        assert_eq!(p.bound_ports(), vec![p1]);
        assert_eq!(roundtrip(p1, b"same").await, b"same");
        // Another set: p1 kept (its socket moves over), p2 added; the
        // target survives.
        p.publish("a", &[(p2, container_port), (p1, container_port)])
            .unwrap();
        let mut both = vec![p1, p2];
        both.sort_unstable();
        assert_eq!(p.bound_ports(), both);
        assert_eq!(roundtrip(p1, b"kept").await, b"kept");
        assert_eq!(roundtrip(p2, b"added").await, b"added");
        // Dropping p1 frees it.
        p.publish("a", &[(p2, container_port)]).unwrap();
        assert_eq!(p.bound_ports(), vec![p2]);
        drop(std::net::TcpListener::bind((LOCALHOST, p1)).unwrap());
        // The same host port twice is refused.
        assert!(matches!(
            p.publish("b", &[(p1, 1), (p1, 2)]),
            Err(PublishError::Taken { port, .. }) if port == p1
        ));
    }

    #[test]
    fn publishing_outside_a_runtime_is_an_error() {
        let p = publisher();
        assert!(matches!(
            p.publish("a", &[(free_port(), 80)]),
            Err(PublishError::NoRuntime)
        ));
    }

    #[test]
    fn targets_pack_and_unpack() {
        for t in [
            None,
            Some(Ipv4Addr::UNSPECIFIED),
            Some(LOCALHOST),
            Some(Ipv4Addr::BROADCAST),
        ] {
            assert_eq!(decode(encode(t)), t);
        }
    }
}
