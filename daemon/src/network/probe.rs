//! Readiness probes, with Kubernetes' semantics: wait the initial delay,
//! then try every period, each try bounded by the timeout, until one passes
//! or the failure threshold is reached. Lifecycle steps that start a
//! sandbox answer only once its probe passed, so that a client may use the
//! actor as soon as the call returns.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Kubernetes' default `periodSeconds`.
const DEFAULT_PERIOD: Duration = Duration::from_secs(10);
/// Kubernetes' default `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Kubernetes' default `failureThreshold`.
const DEFAULT_ATTEMPTS: u32 = 3;

/// A readiness probe in the form the daemon runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Readiness {
    /// What one attempt does.
    kind: Kind,
    /// Before the first attempt.
    initial_delay: Duration,
    /// From the start of one attempt to the start of the next.
    period: Duration,
    /// How long one attempt may take.
    timeout: Duration,
    /// Attempts before the probe has failed (at least 1).
    attempts: u32,
}

/// What one attempt does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A GET of `path` on `port` that must answer 200-399.
    Http {
        /// Absolute request path.
        path: String,
        /// On the actor's address.
        port: u16,
    },
    /// A connection to `port` that must be accepted.
    Tcp {
        /// On the actor's address.
        port: u16,
    },
}

/// A probe that never passed: what a lifecycle step reports as its error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "readiness probe {probe} did not pass after {attempts} attempt{}: {last_error}",
    if *attempts == 1 { "" } else { "s" }
)]
pub(crate) struct ProbeFailed {
    /// [`Readiness::describe`].
    pub(crate) probe: String,
    /// How many attempts were made.
    pub(crate) attempts: u32,
    /// Why the last one failed.
    pub(crate) last_error: String,
}

impl Readiness {
    /// From the API's probe. Validation already checked the numbers; still,
    /// anything odd falls back to the default rather than panicking, and a
    /// probe without a valid port gets port 0, which never connects: such
    /// a probe fails rather than passes.
    pub(crate) fn from_api(p: &atelet_api::Probe) -> Readiness {
        let port = |port: i64| u16::try_from(port).unwrap_or(0);
        let kind = match (&p.http_get, &p.tcp_socket) {
            (Some(http), _) => Kind::Http {
                path: match http.path.as_deref() {
                    None | Some("") => "/".to_owned(),
                    Some(path) if path.starts_with('/') => path.to_owned(),
                    Some(path) => format!("/{path}"),
                },
                port: port(http.port),
            },
            (None, Some(tcp)) => Kind::Tcp {
                port: port(tcp.port),
            },
            (None, None) => Kind::Tcp { port: 0 },
        };
        let seconds = |value: Option<i64>, min: i64, default: Duration| {
            value
                .filter(|&s| s >= min)
                .and_then(|s| u64::try_from(s).ok())
                .map_or(default, Duration::from_secs)
        };
        Readiness {
            kind,
            initial_delay: seconds(p.initial_delay_seconds, 0, Duration::ZERO),
            period: seconds(p.period_seconds, 1, DEFAULT_PERIOD),
            timeout: seconds(p.timeout_seconds, 1, DEFAULT_TIMEOUT),
            attempts: p
                .failure_threshold
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n >= 1)
                .unwrap_or(DEFAULT_ATTEMPTS),
        }
    }

    /// `httpGet :8080/healthz` or `tcpSocket :8080`: how errors and logs
    /// name the probe.
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            Kind::Http { path, port } => format!("httpGet :{port}{path}"),
            Kind::Tcp { port } => format!("tcpSocket :{port}"),
        }
    }

    /// Waits until the probe passes against `ip`: the initial delay, then up
    /// to `attempts` attempts, one per period (a fast failure still waits
    /// for the next tick), each bounded by the timeout. Ok on the first
    /// success, else why the last attempt failed.
    pub(crate) async fn wait_ready(&self, ip: IpAddr) -> Result<(), ProbeFailed> {
        tokio::time::sleep(self.initial_delay).await;
        let mut ticks = tokio::time::interval(self.period);
        // An attempt that outlasts the period delays the next one rather
        // than causing a burst.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error = String::new();
        for attempt in 1..=self.attempts {
            ticks.tick().await;
            let result = match tokio::time::timeout(self.timeout, self.attempt(ip)).await {
                Ok(result) => result,
                Err(_) => Err(format!("timed out after {:?}", self.timeout)),
            };
            match result {
                Ok(()) => {
                    tracing::debug!(probe = %self.describe(), %ip, attempt, "readiness probe passed");
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!(probe = %self.describe(), %ip, attempt, error = %e, "readiness probe attempt failed");
                    last_error = e;
                }
            }
        }
        Err(ProbeFailed {
            probe: self.describe(),
            attempts: self.attempts,
            last_error,
        })
    }

    /// One attempt, unbounded in time (the caller bounds it).
    async fn attempt(&self, ip: IpAddr) -> Result<(), String> {
        match &self.kind {
            Kind::Tcp { port } => {
                let stream = TcpStream::connect(SocketAddr::new(ip, *port))
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                // Closed with a reset: nothing left in TIME_WAIT in the actor.
                super::conntrack::close_with_reset(&stream);
                Ok(())
            }
            Kind::Http { path, port } => http_get(SocketAddr::new(ip, *port), path).await,
        }
    }
}

/// A connection to an actor whose sending side is never shut down: hyper
/// shuts it down when the server closes, and that FIN after the server's
/// would leave the actor's end in TIME_WAIT, which this runsc cannot
/// checkpoint (see `conntrack`). The close is a reset instead.
struct NoFin(TcpStream);

impl AsyncRead for NoFin {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for NoFin {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One GET over a fresh connection; Ok if the status is 200-399. The body
/// is not read: the status says all a probe needs.
async fn http_get(address: SocketAddr, path: &str) -> Result<(), String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    super::conntrack::close_with_reset(&stream);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(NoFin(stream)))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, address.to_string())
        .header(hyper::header::USER_AGENT, "atelet-probe")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request for {path}: {e}"))?;
    // The connection is driven here rather than on a task of its own, and
    // dropped (closed) once the answer's head is in. It may end (server
    // closing) in the same poll that hands over the answer: the answer is
    // still awaited then.
    let response = sender.send_request(request);
    tokio::pin!(connection, response);
    let response = tokio::select! {
        response = &mut response => response,
        ended = &mut connection => {
            ended.map_err(|e| format!("HTTP: {e}"))?;
            response.await
        }
    }
    .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status();
    if (200..400).contains(&status.as_u16()) {
        Ok(())
    } else {
        Err(format!("HTTP status {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// How a test server answers each connection.
    #[derive(Clone, Copy)]
    enum Answer {
        /// Reads the request head, answers with this status.
        Status(u16),
        /// Accepts and says nothing.
        Silent,
    }

    /// A server on `listener` counting connections, answering as told.
    fn serve(listener: TcpListener, answer: Answer) -> Arc<AtomicU32> {
        let count = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&count);
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
                    assert!(
                        head.to_ascii_lowercase().contains("host: 127.0.0.1:"),
                        "{head}"
                    );
                    match answer {
                        Answer::Status(code) => {
                            let reply = format!(
                                "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                            );
                            let _ = s.write_all(reply.as_bytes()).await;
                        }
                        Answer::Silent => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                    }
                });
            }
        });
        count
    }

    async fn listener() -> (TcpListener, u16) {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    /// A port nothing listens on (right now).
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        l.local_addr().unwrap().port()
    }

    fn http(port: u16, period_ms: u64, attempts: u32) -> Readiness {
        Readiness {
            kind: Kind::Http {
                path: "/healthz".to_owned(),
                port,
            },
            initial_delay: Duration::ZERO,
            period: Duration::from_millis(period_ms),
            timeout: Duration::from_secs(1),
            attempts,
        }
    }

    #[test]
    fn from_api_defaults_and_values() {
        let api = atelet_api::Probe {
            http_get: Some(atelet_api::HttpGetAction {
                path: None,
                port: 8080,
            }),
            ..Default::default()
        };
        let r = Readiness::from_api(&api);
        assert_eq!(r.describe(), "httpGet :8080/");
        assert_eq!(r.initial_delay, Duration::ZERO);
        assert_eq!(r.period, Duration::from_secs(10));
        assert_eq!(r.timeout, Duration::from_secs(1));
        assert_eq!(r.attempts, 3);

        let api = atelet_api::Probe {
            tcp_socket: Some(atelet_api::TcpSocketAction { port: 5432 }),
            initial_delay_seconds: Some(2),
            period_seconds: Some(3),
            timeout_seconds: Some(4),
            failure_threshold: Some(5),
            ..Default::default()
        };
        let r = Readiness::from_api(&api);
        assert_eq!(r.describe(), "tcpSocket :5432");
        assert_eq!(
            (r.initial_delay, r.period, r.timeout, r.attempts),
            (
                Duration::from_secs(2),
                Duration::from_secs(3),
                Duration::from_secs(4),
                5
            )
        );

        // Nonsense falls back to defaults, never panics.
        let api = atelet_api::Probe {
            http_get: Some(atelet_api::HttpGetAction {
                path: Some("healthz".to_owned()),
                port: 70000,
            }),
            initial_delay_seconds: Some(-1),
            period_seconds: Some(0),
            timeout_seconds: Some(-5),
            failure_threshold: Some(i64::MAX),
            ..Default::default()
        };
        let r = Readiness::from_api(&api);
        assert_eq!(r.describe(), "httpGet :0/healthz");
        assert_eq!(
            (r.initial_delay, r.period, r.timeout, r.attempts),
            (Duration::ZERO, DEFAULT_PERIOD, DEFAULT_TIMEOUT, 3)
        );
        assert_eq!(
            Readiness::from_api(&atelet_api::Probe::default()).describe(),
            "tcpSocket :0"
        );
    }

    #[tokio::test]
    async fn http_passes_when_the_server_is_up() {
        let (l, port) = listener().await;
        let count = serve(l, Answer::Status(204));
        http(port, 100, 3).wait_ready(LOCALHOST).await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn tcp_passes_when_something_listens() {
        let (l, port) = listener().await;
        let count = serve(l, Answer::Silent);
        let r = Readiness {
            kind: Kind::Tcp { port },
            ..http(port, 100, 3)
        };
        r.wait_ready(LOCALHOST).await.unwrap();
        // The server may count it only after the probe returned.
        for _ in 0..100 {
            if count.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_server_that_comes_up_later_passes_on_a_later_attempt() {
        let port = closed_port();
        let started = std::time::Instant::now();
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                .await
                .unwrap();
            serve(l, Answer::Status(200))
        });
        // Attempts at about 0, 1, 2, ... s: the first two find nothing.
        let r = http(port, 1000, 6);
        r.wait_ready(LOCALHOST).await.unwrap();
        let count = late.await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() >= Duration::from_millis(1500));
    }

    #[tokio::test]
    async fn an_error_status_fails_after_every_attempt() {
        let (l, port) = listener().await;
        let count = serve(l, Answer::Status(500));
        let err = http(port, 50, 3).wait_ready(LOCALHOST).await.unwrap_err();
        assert_eq!(count.load(Ordering::SeqCst), 3);
        assert_eq!(err.attempts, 3);
        assert!(err.last_error.contains("500"), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "readiness probe httpGet :{port}/healthz did not pass after 3 attempts: {}",
                err.last_error
            )
        );
    }

    #[tokio::test]
    async fn nothing_listening_fails_after_the_attempts() {
        let port = closed_port();
        let r = Readiness {
            kind: Kind::Tcp { port },
            ..http(port, 50, 2)
        };
        let err = r.wait_ready(LOCALHOST).await.unwrap_err();
        assert_eq!(err.attempts, 2);
        assert_eq!(err.probe, format!("tcpSocket :{port}"));
        assert!(err.last_error.contains("connect"), "{err}");
        assert!(err.to_string().contains("after 2 attempts"), "{err}");
        let err = http(port, 50, 1).wait_ready(LOCALHOST).await.unwrap_err();
        assert!(err.to_string().contains("after 1 attempt:"), "{err}");
    }

    #[tokio::test]
    async fn a_silent_server_fails_by_timeout() {
        let (l, port) = listener().await;
        let count = serve(l, Answer::Silent);
        let r = Readiness {
            timeout: Duration::from_millis(200),
            ..http(port, 100, 2)
        };
        let err = r.wait_ready(LOCALHOST).await.unwrap_err();
        assert!(err.last_error.contains("timed out"), "{err}");
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_initial_delay_comes_first() {
        let (l, port) = listener().await;
        serve(l, Answer::Status(200));
        let r = Readiness {
            initial_delay: Duration::from_millis(300),
            ..http(port, 100, 1)
        };
        let started = std::time::Instant::now();
        r.wait_ready(LOCALHOST).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
