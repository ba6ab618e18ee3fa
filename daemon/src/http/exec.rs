//! `POST /v1/actors/{id}/exec`: the three ways an exec session is
//! answered (README "Exec and copy"):
//!
//! - default: the whole result as JSON once the command has ended;
//! - `Accept: application/x-ndjson`: one JSON frame per piece of output
//!   as it comes, then `{"exitCode": n}`;
//! - `Connection: Upgrade` + `Upgrade: tcp`: `101 Switching Protocols`,
//!   then the connection carries framed stdin / stdout / stderr / resize /
//!   exit both ways (`atelet_api::exec::stream`).
//!
//! The service runs the command; this only frames its session. Whichever
//! way, a client that goes away drops the session, which kills the command.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelet_api::exec::{encode_output, stream, EXEC_OUTPUT_CAP, NDJSON};
use atelet_api::{ErrorCode, ExecFrame, ExecRequest, ExecResult};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use super::error::ApiError;
use super::response::{json, streamed, ResponseBody};
use crate::runsc::Runtime;
use crate::service::{ActorService, ExecInput, ExecOutput, ExecSession, HangUp};

/// How long the connection may take to be handed over after the 101.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection of an upgraded request, handed from the server (which
/// owns it until hyper lets go) to the session.
#[derive(Debug)]
pub(crate) struct Upgraded {
    /// The socket.
    pub stream: UnixStream,
    /// Bytes hyper read past the request (the client's first frames).
    pub read_buf: Bytes,
    /// Dropped when the session ends; the server holds the connection's
    /// slot until then.
    pub done: oneshot::Sender<()>,
}

/// Where a handler that answered 101 leaves the sender the server hands
/// the connection to; one per connection, put in each request's
/// extensions by the server.
#[derive(Debug, Clone, Default)]
pub(crate) struct UpgradeSlot(Arc<Mutex<Option<oneshot::Sender<Upgraded>>>>);

impl UpgradeSlot {
    fn set(&self, tx: oneshot::Sender<Upgraded>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// The waiting session's sender, if a handler answered 101.
    pub(crate) fn take(&self) -> Option<oneshot::Sender<Upgraded>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// True when the request asks for the interactive stream; an `Upgrade`
/// to anything but `tcp` is refused.
fn wants_upgrade(req: &Request<Incoming>) -> Result<bool, ApiError> {
    let connection_upgrade = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    match req.headers().get(UPGRADE) {
        None => Ok(false),
        Some(v) if connection_upgrade && v.as_bytes().eq_ignore_ascii_case(b"tcp") => Ok(true),
        Some(v) => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "Upgrade: {:?} is not supported; the interactive stream is Connection: Upgrade with Upgrade: tcp",
                String::from_utf8_lossy(v.as_bytes())
            ),
        )),
    }
}

fn wants_ndjson(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().is_some_and(|m| m.trim() == NDJSON))
}

/// Serves `POST /v1/actors/{id}/exec`; `body` reads the request body.
pub(super) async fn exec<R: Runtime, F>(
    svc: Arc<ActorService<R>>,
    id: String,
    req: Request<Incoming>,
    read_body: impl FnOnce(Request<Incoming>) -> F,
) -> Result<Response<ResponseBody>, ApiError>
where
    F: std::future::Future<Output = Result<Bytes, ApiError>>,
{
    let upgrade = wants_upgrade(&req)?;
    let ndjson = wants_ndjson(&req);
    let slot = req.extensions().get::<UpgradeSlot>().cloned();
    let body = read_body(req).await?;
    let exec_req: ExecRequest = atelet_api::from_json_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            format!("invalid request body: {e}"),
        )
    })?;
    if upgrade {
        let slot = slot.ok_or_else(|| {
            ApiError::new(ErrorCode::Internal, "this connection cannot be upgraded")
        })?;
        let session = svc.exec(&id, exec_req, true).await?;
        let (tx, rx) = oneshot::channel();
        slot.set(tx);
        tokio::spawn(interactive(session, rx));
        let mut response = Response::new(Full::new(Bytes::new()).boxed());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        response
            .headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("tcp"));
        return Ok(response);
    }
    let session = svc.exec(&id, exec_req, false).await?;
    let ExecSession {
        id: exec_id,
        input,
        output,
        hangup,
    } = session;
    // The buffered modes take no stdin but the request's own.
    drop(input);
    if ndjson {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(frames(output, hangup, tx));
        return Ok(streamed(NDJSON, rx, Some));
    }
    Ok(json(
        StatusCode::OK,
        &collect(exec_id, output, hangup).await,
    ))
}

/// The default mode: output up to the cap per stream, then the result.
async fn collect(
    id: String,
    mut output: mpsc::Receiver<ExecOutput>,
    mut hangup: HangUp,
) -> ExecResult {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut truncated = false;
    let keep = |buf: &mut Vec<u8>, data: &[u8], truncated: &mut bool| {
        let room = EXEC_OUTPUT_CAP.saturating_sub(buf.len());
        if data.len() > room {
            *truncated = true;
        }
        buf.extend_from_slice(&data[..data.len().min(room)]);
    };
    let (mut code, mut timed_out) = (None, false);
    while let Some(item) = output.recv().await {
        match item {
            ExecOutput::Stdout(d) => keep(&mut out, &d, &mut truncated),
            ExecOutput::Stderr(d) => keep(&mut err, &d, &mut truncated),
            ExecOutput::Exit {
                code: c,
                timed_out: t,
            } => {
                code = c;
                timed_out = t;
                hangup.disarm();
                break;
            }
        }
    }
    if truncated {
        trim_partial_char(&mut out);
        trim_partial_char(&mut err);
    }
    let (stdout, stderr) = (encode_output(&out), encode_output(&err));
    let base64 = |b: bool| b.then(|| "base64".to_string());
    ExecResult {
        id,
        exit_code: code.unwrap_or(-1),
        stdout_encoding: base64(stdout.base64),
        stdout: stdout.data,
        stderr_encoding: base64(stderr.base64),
        stderr: stderr.data,
        truncated,
        timed_out,
    }
}

/// Drops a UTF-8 sequence cut in half at the end (by the cap), so that
/// text output stays text.
fn trim_partial_char(buf: &mut Vec<u8>) {
    if let Err(e) = std::str::from_utf8(buf) {
        if e.error_len().is_none() {
            buf.truncate(e.valid_up_to());
        }
    }
}

/// Splits a stream's bytes into JSON-ready pieces: text where it is
/// UTF-8, keeping a character cut between two reads for the next one;
/// base64 for bytes that are not UTF-8.
#[derive(Debug, Default)]
struct Utf8Carry(Vec<u8>);

impl Utf8Carry {
    fn push(&mut self, data: &[u8]) -> Option<(String, bool)> {
        let mut bytes = std::mem::take(&mut self.0);
        bytes.extend_from_slice(data);
        match std::str::from_utf8(&bytes) {
            Ok(_) => String::from_utf8(bytes).ok().map(|s| (s, false)),
            Err(e) if e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4 => {
                self.0 = bytes.split_off(e.valid_up_to());
                (!bytes.is_empty())
                    .then(|| String::from_utf8(bytes).ok().map(|s| (s, false)))
                    .flatten()
            }
            Err(_) => {
                let enc = encode_output(&bytes);
                Some((enc.data, enc.base64))
            }
        }
    }

    fn flush(&mut self) -> Option<(String, bool)> {
        let bytes = std::mem::take(&mut self.0);
        (!bytes.is_empty()).then(|| {
            let enc = encode_output(&bytes);
            (enc.data, enc.base64)
        })
    }
}

fn frame_line(frame: &ExecFrame) -> Option<Bytes> {
    let mut line = serde_json::to_vec(frame).ok()?;
    line.push(b'\n');
    Some(Bytes::from(line))
}

fn data_frame(stream: &str, piece: (String, bool)) -> ExecFrame {
    ExecFrame {
        stream: Some(stream.to_string()),
        data: Some(piece.0),
        encoding: piece.1.then(|| "base64".to_string()),
        exit_code: None,
        timed_out: false,
        error: None,
    }
}

/// The last frame of both streaming modes: the exit code, or why there
/// is none.
fn exit_frame(code: Option<i32>, timed_out: bool) -> ExecFrame {
    ExecFrame {
        stream: None,
        data: None,
        encoding: None,
        exit_code: code,
        timed_out,
        error: code
            .is_none()
            .then(|| "the exec's exit status could not be read".to_string()),
    }
}

/// The streaming mode: a frame per piece of output, then the exit. A
/// client that goes away closes `tx`; the session then drops (kills).
async fn frames(
    mut output: mpsc::Receiver<ExecOutput>,
    mut hangup: HangUp,
    tx: mpsc::Sender<Bytes>,
) {
    let mut carry = [Utf8Carry::default(), Utf8Carry::default()];
    while let Some(item) = output.recv().await {
        let frame = match item {
            ExecOutput::Stdout(d) => carry[0].push(&d).map(|p| data_frame("stdout", p)),
            ExecOutput::Stderr(d) => carry[1].push(&d).map(|p| data_frame("stderr", p)),
            ExecOutput::Exit { code, timed_out } => {
                hangup.disarm();
                for (i, name) in ["stdout", "stderr"].into_iter().enumerate() {
                    if let Some(p) = carry[i].flush() {
                        if let Some(line) = frame_line(&data_frame(name, p)) {
                            let _ = tx.send(line).await;
                        }
                    }
                }
                let last = exit_frame(code, timed_out);
                if let Some(line) = frame_line(&last) {
                    let _ = tx.send(line).await;
                }
                return;
            }
        };
        if let Some(line) = frame.as_ref().and_then(frame_line) {
            if tx.send(line).await.is_err() {
                return;
            }
        }
    }
}

/// The interactive mode, once the server hands over the connection.
async fn interactive(session: ExecSession, handover: oneshot::Receiver<Upgraded>) {
    let ExecSession {
        id,
        input,
        mut output,
        mut hangup,
    } = session;
    let Ok(Ok(up)) = tokio::time::timeout(HANDOVER_TIMEOUT, handover).await else {
        tracing::debug!(exec = %id, "the upgraded connection was not handed over");
        return;
    };
    let Upgraded {
        stream,
        read_buf,
        done,
    } = up;
    let (mut rd, mut wr) = stream.into_split();
    let reader = async move {
        let mut pending = read_buf.to_vec();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while pending.len() >= stream::HEADER {
                let mut h = [0u8; stream::HEADER];
                h.copy_from_slice(&pending[..stream::HEADER]);
                let (kind, len) = stream::parse_header(&h)?;
                if pending.len() < stream::HEADER + len {
                    break;
                }
                let payload: Vec<u8> = pending
                    .drain(..stream::HEADER + len)
                    .skip(stream::HEADER)
                    .collect();
                let msg = match kind {
                    stream::STDIN => ExecInput::Stdin(Bytes::from(payload)),
                    stream::STDIN_CLOSE => ExecInput::CloseStdin,
                    stream::RESIZE => match stream::parse_resize(&payload) {
                        Some((cols, rows)) => ExecInput::Resize { cols, rows },
                        None => return Err("bad resize frame".to_string()),
                    },
                    other => return Err(format!("unknown frame type {other}")),
                };
                if input.send(msg).await.is_err() {
                    return Ok(());
                }
            }
            let n = rd.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the client closed the connection".to_string());
            }
            pending.extend_from_slice(&buf[..n]);
        }
    };
    let writer = async {
        while let Some(item) = output.recv().await {
            let bytes = match item {
                ExecOutput::Stdout(d) => stream::frame(stream::STDOUT, &d),
                ExecOutput::Stderr(d) => stream::frame(stream::STDERR, &d),
                ExecOutput::Exit { code, timed_out } => {
                    hangup.disarm();
                    let last = exit_frame(code, timed_out);
                    let payload = serde_json::to_vec(&last).unwrap_or_default();
                    let _ = wr.write_all(&stream::frame(stream::EXIT, &payload)).await;
                    let _ = wr.shutdown().await;
                    return true;
                }
            };
            if wr.write_all(&bytes).await.is_err() {
                return false;
            }
        }
        false
    };
    tokio::pin!(reader);
    tokio::select! {
        ended = writer => {
            if !ended {
                tracing::debug!(exec = %id, "the interactive client went away");
            }
        }
        res = &mut reader => {
            // The client hung up (or sent garbage): the session drops
            // below, which kills the command.
            if let Err(e) = res {
                tracing::debug!(exec = %id, reason = %e, "interactive exec ended by its client");
            }
        }
    }
    drop(hangup);
    drop(done);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_between_reads_is_carried_and_bad_bytes_are_base64() {
        let mut c = Utf8Carry::default();
        assert_eq!(c.push(b"a\xc3"), Some(("a".to_string(), false)));
        assert_eq!(c.push(b"\xa9b"), Some(("éb".to_string(), false)));
        let (data, b64) = c.push(b"\xff").unwrap();
        assert!(b64, "{data}");
        assert_eq!(c.push(b"\xe2"), None);
        assert!(c.flush().unwrap().1);
    }

    #[test]
    fn a_cut_at_the_cap_keeps_whole_characters() {
        let mut v = "aé".as_bytes().to_vec();
        v.pop();
        trim_partial_char(&mut v);
        assert_eq!(v, b"a");
    }
}
