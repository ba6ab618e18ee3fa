//! A small client of the atelet API over its Unix socket (hyperlocal).
//! `atectl` is built on it; so are the end-to-end tests.

use std::path::{Path, PathBuf};

use atelet_api::{
    Actor, ActorList, ActorStats, ActorStatus, CreateActorRequest, ErrorBody, ErrorCode, Event,
    Health, Image, ImageList,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;
use serde::de::DeserializeOwned;

/// The socket used when neither `--socket` nor `ATELET_SOCKET` is given.
pub const DEFAULT_SOCKET: &str = "/run/atelet/atelet.sock";

/// What can go wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot reach atelet at {socket}: {detail}")]
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// The I/O error behind it, when there is one: a socket the caller
        /// may not open (not in the socket's group) is not a daemon that is down.
        kind: Option<std::io::ErrorKind>,
        /// Why.
        detail: String,
    },
    /// The daemon answered with an error body.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Error class.
        code: ErrorCode,
        /// The daemon's message.
        message: String,
    },
    /// The answer could not be understood.
    #[error("unexpected answer from atelet: {0}")]
    Decode(String),
}

impl ClientError {
    /// The error class, where the daemon gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            ClientError::Connect {
                kind: Some(std::io::ErrorKind::PermissionDenied),
                ..
            } => Some(ErrorCode::Unauthorized),
            ClientError::Connect { .. } => Some(ErrorCode::Unavailable),
            ClientError::Decode(_) => None,
        }
    }
}

/// A status and a body, as the daemon sent them.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Content-Type, if any.
    pub content_type: Option<String>,
    /// The whole body.
    pub body: Bytes,
}

impl RawResponse {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// Sees every answer a [`Client`] reads whole: the method, the path and
/// query asked, and the response. The end-to-end tests check each one
/// against the API description (`docs/openapi.yaml`).
pub type Observer = std::sync::Arc<dyn Fn(&Method, &str, &RawResponse) + Send + Sync>;

/// A client bound to one socket.
#[derive(Clone)]
pub struct Client {
    socket: PathBuf,
    http: HttpClient<UnixConnector, Full<Bytes>>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.socket)
            .finish()
    }
}

impl Client {
    /// A connection of its own to the daemon (for a body streamed from a
    /// file, or one to upgrade): the sender, and the connection for the
    /// caller to drive.
    async fn connection<B>(
        &self,
    ) -> Result<
        (
            hyper::client::conn::http1::SendRequest<B>,
            hyper::client::conn::http1::Connection<
                hyper_util::rt::TokioIo<tokio::net::UnixStream>,
                B,
            >,
        ),
        ClientError,
    >
    where
        B: hyper::body::Body + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| ClientError::Connect {
                socket: self.socket.clone(),
                kind: Some(e.kind()),
                detail: e.to_string(),
            })?;
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// A client of the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
            http: HttpClient::builder(TokioExecutor::new()).build(UnixConnector),
            observer: None,
        }
    }

    /// The same client, showing every answer it reads whole to `observer`.
    pub fn with_observer(mut self, observer: Observer) -> Client {
        self.observer = Some(observer);
        self
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends a request and returns the response head with a streaming body.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let uri: hyper::Uri = hyperlocal::Uri::new(&self.socket, path_and_query).into();
        let mut builder = Request::builder().method(method).uri(uri);
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        self.http.request(req).await.map_err(|e| {
            // The I/O error at the bottom says it best ("No such file or
            // directory"); hyper's wrappers around it add nothing for a user.
            let mut detail = e.to_string();
            let mut kind = None;
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                if let Some(io) = s.downcast_ref::<std::io::Error>() {
                    kind = Some(io.kind());
                    detail = io.to_string();
                } else if kind.is_none() {
                    detail = format!("{detail}: {s}");
                }
                source = s.source();
            }
            ClientError::Connect {
                socket: self.socket.clone(),
                kind,
                detail,
            }
        })
    }

    /// Sends a request and returns the body as it arrives (for `logs
    /// ?follow=true` and `events`); a non-2xx answer becomes [`ClientError::Api`].
    pub async fn stream(
        &self,
        method: Method,
        path_and_query: &str,
    ) -> Result<Incoming, ClientError> {
        let resp = self.send(method, path_and_query, None).await?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp.into_body());
        }
        let body = read_body(resp.into_body()).await?;
        Err(api_error(status, &body))
    }

    /// Sends a request and reads the whole answer, whatever its status.
    pub async fn raw(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        let resp = self.send(method.clone(), path_and_query, body).await?;
        self.read_whole(&method, path_and_query, resp).await
    }

    /// Sends a request; a non-2xx answer becomes [`ClientError::Api`].
    pub async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        let resp = self.raw(method, path_and_query, body).await?;
        if (200..300).contains(&resp.status) {
            return Ok(resp);
        }
        Err(api_error(resp.status, &resp.body))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let resp = self.call(method, path, body).await?;
        serde_json::from_slice(&resp.body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `GET /v1/healthz`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.json(Method::GET, "/v1/healthz", None).await
    }

    /// `POST /v1/actors`.
    pub async fn create(&self, req: &CreateActorRequest) -> Result<Actor, ClientError> {
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.json(Method::POST, "/v1/actors", Some(body)).await
    }

    /// `POST /v1/actors` with a body as given (JSON text).
    pub async fn create_raw(&self, body: Vec<u8>) -> Result<Actor, ClientError> {
        self.json(Method::POST, "/v1/actors", Some(body)).await
    }

    /// `GET /v1/actors/{id}`.
    pub async fn get(&self, id: &str) -> Result<Actor, ClientError> {
        self.json(Method::GET, &format!("/v1/actors/{id}"), None)
            .await
    }

    /// `GET /v1/actors/{id}/stats`: the actor's usage and limits.
    pub async fn stats(&self, id: &str) -> Result<ActorStats, ClientError> {
        self.json(Method::GET, &format!("/v1/actors/{id}/stats"), None)
            .await
    }

    /// `GET /v1/actors[?status=]`.
    pub async fn list(&self, status: Option<ActorStatus>) -> Result<Vec<Actor>, ClientError> {
        let path = match status {
            Some(s) => format!("/v1/actors?status={s}"),
            None => "/v1/actors".to_string(),
        };
        let list: ActorList = self.json(Method::GET, &path, None).await?;
        Ok(list.actors)
    }

    /// `POST /v1/actors/{id}/{action}` (start, suspend, resume, stop).
    pub async fn act(&self, id: &str, action: &str) -> Result<Actor, ClientError> {
        self.json(Method::POST, &format!("/v1/actors/{id}/{action}"), None)
            .await
    }

    /// `DELETE /v1/actors/{id}`.
    pub async fn delete(&self, id: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/v1/actors/{id}"), None)
            .await
            .map(|_| ())
    }

    /// `GET /v1/actors/{id}/logs`: everything logged so far.
    pub async fn logs(&self, id: &str) -> Result<Bytes, ClientError> {
        Ok(self
            .call(Method::GET, &format!("/v1/actors/{id}/logs"), None)
            .await?
            .body)
    }

    /// `GET /v1/images`: the node's image cache.
    pub async fn images(&self) -> Result<Vec<Image>, ClientError> {
        let list: ImageList = self.json(Method::GET, "/v1/images", None).await?;
        Ok(list.images)
    }

    /// `POST /v1/images` with a `PullImageRequest` body: pulls (or unpacks)
    /// an image into the cache; answers its cache entry.
    pub async fn pull_image(&self, body: Vec<u8>) -> Result<Image, ClientError> {
        self.json(Method::POST, "/v1/images", Some(body)).await
    }

    /// `DELETE /v1/images/{digest}`: removes an unused image from the cache.
    pub async fn delete_image(&self, digest: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/v1/images/{digest}"), None)
            .await
            .map(|_| ())
    }

    /// `GET /v1/events?since=N&follow=false`: the logged events after `since`.
    pub async fn events_since(&self, since: u64) -> Result<Vec<Event>, ClientError> {
        let resp = self
            .call(
                Method::GET,
                &format!("/v1/events?since={since}&follow=false"),
                None,
            )
            .await?;
        parse_ndjson(&resp.body)
    }
}

async fn read_body(body: Incoming) -> Result<Bytes, ClientError> {
    Ok(body
        .collect()
        .await
        .map_err(|e| ClientError::Decode(format!("reading body: {e}")))?
        .to_bytes())
}

/// The error a non-2xx answer stands for: the daemon's own code and
/// message, or, for a body that is not an error body, the status's code.
pub fn api_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => ClientError::Api {
            status,
            code: e.error.code,
            message: e.error.message,
        },
        Err(_) => ClientError::Api {
            status,
            code: ErrorCode::from_http_status(status),
            message: String::from_utf8_lossy(body).trim().to_string(),
        },
    }
}

/// Splits an NDJSON body into events.
pub fn parse_ndjson(body: &[u8]) -> Result<Vec<Event>, ClientError> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| serde_json::from_slice(l).map_err(|e| ClientError::Decode(e.to_string())))
        .collect()
}

/// A request body read from a file as it is sent: a snapshot import never
/// sits whole in memory.
struct FileBody {
    file: tokio::fs::File,
    buf: Vec<u8>,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        use tokio::io::AsyncRead;
        let this = &mut *self;
        if this.buf.is_empty() {
            this.buf = vec![0u8; 256 * 1024];
        }
        let mut read = tokio::io::ReadBuf::new(&mut this.buf);
        match std::pin::Pin::new(&mut this.file).poll_read(cx, &mut read) {
            std::task::Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    return std::task::Poll::Ready(None);
                }
                let chunk = Bytes::copy_from_slice(&this.buf[..n]);
                std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
            }
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Some(Err(e))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl Client {
    /// Reads an answer whole and shows it to the observer.
    async fn read_whole(
        &self,
        method: &Method,
        path_and_query: &str,
        resp: Response<Incoming>,
    ) -> Result<RawResponse, ClientError> {
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_body(resp.into_body()).await?;
        let resp = RawResponse {
            status,
            content_type,
            body,
        };
        if let Some(observe) = &self.observer {
            observe(method, path_and_query, &resp);
        }
        Ok(resp)
    }

    /// Sends `file` (of `len` bytes) as the body of a POST, streamed from
    /// disk, and reads the answer (JSON) whole.
    pub async fn upload(
        &self,
        path_and_query: &str,
        content_type: &str,
        file: tokio::fs::File,
        len: u64,
    ) -> Result<RawResponse, ClientError> {
        let (mut sender, connection) = self.connection().await?;
        tokio::spawn(connection);
        let req = Request::builder()
            .method(Method::POST)
            .uri(path_and_query)
            .header("host", "localhost")
            .header("content-type", content_type)
            .header("content-length", len)
            .body(FileBody {
                file,
                buf: Vec::new(),
            })
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Decode(format!("sending {path_and_query}: {e}")))?;
        self.read_whole(&Method::POST, path_and_query, resp).await
    }
}

/// An interactive exec's connection after `101 Switching Protocols`:
/// frames both ways (`atelet_api::exec::stream`).
pub type ExecStream = hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>;

impl Client {
    /// `POST /v1/actors/{id}/exec` with `Connection: Upgrade`, `Upgrade:
    /// tcp`: the interactive stream, or the daemon's error.
    pub async fn exec_stream(
        &self,
        id: &str,
        req: &atelet_api::ExecRequest,
    ) -> Result<ExecStream, ClientError> {
        let (mut sender, connection) = self.connection().await?;
        tokio::spawn(connection.with_upgrades());
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Decode(e.to_string()))?;
        let path = format!("/v1/actors/{id}/exec");
        let request = Request::builder()
            .method(Method::POST)
            .uri(&path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .header("connection", "Upgrade")
            .header("upgrade", "tcp")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let mut resp = sender
            .send_request(request)
            .await
            .map_err(|e| ClientError::Decode(format!("sending {path}: {e}")))?;
        let status = resp.status().as_u16();
        if status != 101 {
            let body = read_body(resp.into_body()).await?;
            return Err(api_error(status, &body));
        }
        let upgraded = hyper::upgrade::on(&mut resp)
            .await
            .map_err(|e| ClientError::Decode(format!("upgrading {path}: {e}")))?;
        Ok(hyper_util::rt::TokioIo::new(upgraded))
    }

    /// `POST /v1/actors/{id}/exec`: runs a command and waits for its result.
    pub async fn exec(
        &self,
        id: &str,
        req: &atelet_api::ExecRequest,
    ) -> Result<atelet_api::ExecResult, ClientError> {
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.json(Method::POST, &format!("/v1/actors/{id}/exec"), Some(body))
            .await
    }
}

/// One frame read off an [`ExecStream`].
#[derive(Debug)]
pub enum ExecEvent {
    /// stdout bytes (with a tty: the terminal's output).
    Stdout(Vec<u8>),
    /// stderr bytes.
    Stderr(Vec<u8>),
    /// The end: the exit code (`None` if the daemon could not read it).
    Exit(Option<i32>),
}

/// Reads the next frame of an interactive exec's output; `None` when the
/// connection ended without an exit frame.
pub async fn read_exec_event<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
) -> Result<Option<ExecEvent>, ClientError> {
    use atelet_api::exec::stream;
    use tokio::io::AsyncReadExt;
    let mut h = [0u8; stream::HEADER];
    match rd.read_exact(&mut h).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(ClientError::Decode(format!("reading the exec stream: {e}"))),
    }
    let (kind, len) = stream::parse_header(&h).map_err(ClientError::Decode)?;
    let mut payload = vec![0u8; len];
    rd.read_exact(&mut payload)
        .await
        .map_err(|e| ClientError::Decode(format!("reading the exec stream: {e}")))?;
    Ok(Some(match kind {
        stream::STDOUT => ExecEvent::Stdout(payload),
        stream::STDERR => ExecEvent::Stderr(payload),
        stream::EXIT => {
            let f: atelet_api::ExecFrame = serde_json::from_slice(&payload)
                .map_err(|e| ClientError::Decode(format!("exit frame: {e}")))?;
            ExecEvent::Exit(f.exit_code)
        }
        other => return Err(ClientError::Decode(format!("unknown frame type {other}"))),
    }))
}
