//! Handlers: decode a request, call the actor service, encode the answer.
//! Every failure leaves here as the JSON error body (`ErrorBody` in
//! docs/openapi.yaml).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atelet_api::{CreateActorRequest, ErrorCode, Event, ImageList, PullImageRequest};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;

use super::access::Access;
use super::error::ApiError;
use super::peer::{Limits, Peer};
use super::response::{error_response, json, no_content, streamed, with_type, ResponseBody};
use super::router::{route, Route};
use crate::runsc::Runtime;
use crate::service::{ActorService, ServiceError};

/// Largest request body accepted: a create request is a spec, far
/// smaller; beyond this the client gets 413.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// Most bytes of an oversized body read (and dropped) before answering 413.
pub(crate) const DRAIN_LIMIT: usize = 8 * MAX_BODY;

/// Serves one request.
pub(crate) async fn handle<R: Runtime>(
    svc: Arc<ActorService<R>>,
    peer: Peer,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let t0 = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // A peer that may not use the socket learns nothing more than 403,
    // whatever it sent.
    let parsed = match peer.access {
        Access::Denied => Err(denied(&peer)),
        _ if peer.over_viewer_cap => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "viewers hold max_viewer_connections ({}) connections already; try again later",
                peer.limits.max_viewer_connections
            ),
        )),
        _ => check_head(&req, &peer.limits).and_then(|()| route(&method, &path, req.uri().query())),
    };
    let mutation = parsed.as_ref().is_ok_and(Route::is_mutation);
    let close = peer.access == Access::Denied
        || peer.over_viewer_cap
        || matches!(&parsed, Err(e) if e.code == ErrorCode::PayloadTooLarge);
    let response = match parsed {
        Ok(r) => match authorize(&peer, &r) {
            Ok(()) => dispatch(svc, r, req, &peer.limits).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
    .unwrap_or_else(|e| error_response(&e));
    let mut response = response;
    if close {
        // Nothing more will be served on this connection: free its slot.
        response
            .headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status().as_u16();
    let duration_ms = t0.elapsed().as_secs_f64() * 1000.0;
    if mutation || status >= 500 {
        tracing::info!(%method, %path, status, duration_ms, "request");
    } else {
        tracing::debug!(%method, %path, status, duration_ms, "request");
    }
    Ok(response)
}

/// Refuses a request head over the configured limits with the JSON error
/// body, naming the limit (at four times them hyper gives up
/// before a handler runs; the server then answers a JSON 413 itself).
fn check_head(req: &Request<Incoming>, limits: &Limits) -> Result<(), ApiError> {
    let count = req.headers().len();
    if count > limits.max_headers {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "request has {count} headers, more than the limit of {}",
                limits.max_headers
            ),
        ));
    }
    // As sent: "METHOD URI HTTP/1.1\r\n", then "name: value\r\n" each, "\r\n".
    // The usual origin form is measured without building a string.
    let uri = req.uri();
    let uri_len = match (uri.scheme_str(), uri.authority()) {
        (None, None) => uri.path_and_query().map_or(1, |pq| pq.as_str().len()),
        _ => uri.to_string().len(),
    };
    let line = req.method().as_str().len() + uri_len + 12;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let size = line + headers + 2;
    if size > limits.max_header_bytes {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "request head is {size} bytes, more than the limit of {}",
                limits.max_header_bytes
            ),
        ));
    }
    Ok(())
}

/// Refuses, before the body is read, what the peer may not do.
fn authorize(peer: &Peer, route: &Route) -> Result<(), ApiError> {
    match peer.access {
        Access::Full => Ok(()),
        Access::ReadOnly if !route.needs_full_access() => Ok(()),
        Access::ReadOnly => Err(ApiError::new(
            ErrorCode::Unauthorized,
            format!("uid {} may only read on this socket (a viewer)", peer.uid),
        )),
        Access::Denied => Err(denied(peer)),
    }
}

fn denied(peer: &Peer) -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        format!("uid {} is not allowed on this socket", peer.uid),
    )
}

async fn dispatch<R: Runtime>(
    svc: Arc<ActorService<R>>,
    route: Route,
    req: Request<Incoming>,
    limits: &Limits,
) -> Result<Response<ResponseBody>, ApiError> {
    let body_timeout = limits.body_read_timeout;
    match route {
        Route::Healthz => Ok(json(StatusCode::OK, &svc.health()?)),
        Route::CreateActor => {
            let body = read_body(req, body_timeout).await?;
            let create: CreateActorRequest = atelet_api::from_json_slice(&body).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("invalid request body: {e}"),
                )
            })?;
            let actor = detached(async move { svc.create(create).await }).await?;
            Ok(json(StatusCode::CREATED, &actor))
        }
        Route::SuspendUploaded { id, force } => {
            let actor = detached(async move { svc.suspend_uploaded(&id, force).await }).await?;
            Ok(json(StatusCode::OK, &actor))
        }
        Route::SuspendForced(id) => {
            let actor = detached(async move { svc.suspend_with(&id, true).await }).await?;
            Ok(json(StatusCode::OK, &actor))
        }
        // Not detached: a client that goes away drops the session, which
        // kills the command (the service's pump ends it cleanly).
        Route::Exec(id) => {
            super::exec::exec(svc, id, req, |req| read_body(req, body_timeout)).await
        }
        Route::DeleteKeepRemote(id) => {
            detached(async move { svc.delete_keeping_remote(&id).await }).await?;
            Ok(no_content())
        }
        Route::ExportSnapshot { id, snapshot } => {
            let (size, rx) = svc.export(&id, &snapshot)?;
            let mut response = streamed("application/x-tar", rx, Some);
            // A client then sees a tar cut short as an error.
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(size));
            Ok(response)
        }
        Route::ImportSnapshot { id } => {
            let max = limits.max_import_bytes;
            if declared_length(&req)?.is_some_and(|len| len > max) {
                return Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("request body is larger than max_import_bytes ({max} bytes)"),
                ));
            }
            let (rx, pump) = body_chunks(req.into_body(), body_timeout);
            let imported = detached(async move { svc.import(id, rx, max).await }).await;
            // Refused before the end of the body: the rest is read (up to
            // IMPORT_DRAIN) so that the client, still sending, gets the
            // answer rather than a reset connection.
            let _ = pump.await;
            Ok(json(StatusCode::CREATED, &imported?))
        }
        Route::ListActors { status } => Ok(list_actors(svc, status)),
        Route::GetActor(id) => Ok(json(StatusCode::OK, &svc.get(&id)?)),
        Route::Stats(id) => Ok(json(StatusCode::OK, &svc.stats(&id)?)),
        Route::Act(id, op) => match detached(async move { svc.act(&id, op).await }).await? {
            Some(actor) => Ok(json(StatusCode::OK, &actor)),
            None => Ok(no_content()),
        },
        Route::ListImages => Ok(json(
            StatusCode::OK,
            &ImageList {
                images: svc.list_images()?,
            },
        )),
        Route::PullImage => {
            let body = read_body(req, body_timeout).await?;
            let pull: PullImageRequest = atelet_api::from_json_slice(&body).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("invalid request body: {e}"),
                )
            })?;
            let image = detached(async move { svc.pull_image(pull).await }).await?;
            Ok(json(StatusCode::OK, &image))
        }
        Route::DeleteImage(digest) => {
            detached(async move { svc.delete_image(&digest).await }).await?;
            Ok(no_content())
        }
        // The service follows the log; this only frames its chunks.
        Route::Logs { id, follow } => Ok(streamed(
            "text/plain; charset=utf-8",
            svc.logs(&id, follow)?,
            Some,
        )),
        // The service replays and follows the event log; one event a line.
        Route::Events { since, follow } => Ok(streamed(
            "application/x-ndjson",
            svc.events(since, follow),
            ndjson_line,
        )),
        Route::Metrics => Ok(with_type(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Full::new(Bytes::from(svc.metrics_text()?)).boxed(),
        )),
    }
}

/// Runs a state-changing operation on its own task. hyper drops a
/// request's future when the client goes away; a lifecycle step must not
/// stop half-way because of that (it would leave a transitional status and
/// a sandbox nobody watches), so it runs to its end whatever the client does.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ServiceError>> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::spawn(work).await {
        Ok(res) => res.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(
            ErrorCode::Internal,
            format!("the operation's task failed: {e}"),
        )),
    }
}

/// The Content-Length a request declares, if any.
fn declared_length(req: &Request<Incoming>) -> Result<Option<u64>, ApiError> {
    req.headers()
        .get(CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidArgument, "invalid Content-Length"))
        })
        .transpose()
}

/// Most bytes of an import body read and dropped after the import was
/// refused, so that the client reads the answer.
const IMPORT_DRAIN: u64 = 1 << 30;

/// A body as a channel of chunks, for a consumer that streams it (a
/// snapshot import): never held whole. A client that sends nothing for
/// `idle` is cut off (the consumer reads an error). Once the consumer is
/// gone, the rest of the body is read and dropped (up to
/// [`IMPORT_DRAIN`]); the task ends with the body.
fn body_chunks(
    mut body: Incoming,
    idle: Duration,
) -> (
    mpsc::Receiver<std::io::Result<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(8);
    let pump = tokio::spawn(async move {
        let mut drained = 0u64;
        loop {
            let chunk = match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no request body received for {} s", idle.as_secs()),
                )),
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    Err(std::io::Error::other(format!("reading request body: {e}")))
                }
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Ok(data),
                    Err(_) => continue,
                },
            };
            let stop = chunk.is_err();
            if tx.is_closed() {
                if let Ok(data) = &chunk {
                    drained += data.len() as u64;
                }
                if stop || drained > IMPORT_DRAIN {
                    break;
                }
                continue;
            }
            if stop {
                let _ = tx.send(chunk).await;
                break;
            }
            // A consumer gone while this waited: drain from here on.
            let _ = tx.send(chunk).await;
        }
    });
    (rx, pump)
}

/// Reads a body of at most [`MAX_BODY`] bytes. A larger one is still
/// drained (up to [`DRAIN_LIMIT`]) before the 413 goes out, so that the
/// client reads the answer instead of a reset connection.
async fn read_body(req: Request<Incoming>, timeout: Duration) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {MAX_BODY} bytes"),
        )
    };
    let declared = declared_length(&req)?;
    if declared.is_some_and(|len| len > DRAIN_LIMIT as u64) {
        return Err(too_large());
    }
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("reading request body: {e}"),
                )
            })?;
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > DRAIN_LIMIT {
                    break;
                }
                if seen <= MAX_BODY {
                    buf.extend_from_slice(&data);
                }
            }
        }
        Ok::<_, ApiError>(())
    };
    tokio::time::timeout(timeout, read).await.map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            "request body not received in time",
        )
    })??;
    if seen > MAX_BODY {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

/// `GET /v1/actors`: `{"actors":[…]}`, streamed in chunks as the records
/// are read, so that a list of 10,000 actors never sits whole in memory.
fn list_actors<R: Runtime>(
    svc: Arc<ActorService<R>>,
    status: Option<atelet_api::ActorStatus>,
) -> Response<ResponseBody> {
    const CHUNK: usize = 64 * 1024;
    let (tx, rx) = mpsc::channel(16);
    tokio::task::spawn_blocking(move || {
        let mut buf = b"{\"actors\":[".to_vec();
        let mut first = true;
        let res = svc.for_each_actor(status, |actor| {
            if !first {
                buf.push(b',');
            }
            first = false;
            if serde_json::to_writer(&mut buf, &actor).is_err() {
                return false;
            }
            if buf.len() >= CHUNK {
                let chunk = Bytes::from(std::mem::take(&mut buf));
                return tx.blocking_send(chunk).is_ok();
            }
            true
        });
        match res {
            Ok(()) => {
                buf.extend_from_slice(b"]}");
                let _ = tx.blocking_send(Bytes::from(buf));
            }
            // The status line is gone: cut the body short, so the client
            // sees invalid JSON rather than a partial list that parses.
            Err(e) => tracing::error!(error = %e, "listing actors"),
        }
    });
    streamed("application/json", rx, Some)
}

/// One line of the NDJSON event stream; an event that cannot be encoded
/// is left out rather than ending the stream.
fn ndjson_line(ev: Event) -> Option<Bytes> {
    let mut line = serde_json::to_vec(&ev).ok()?;
    line.push(b'\n');
    Some(Bytes::from(line))
}
