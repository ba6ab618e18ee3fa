//! Building responses: JSON answers, the JSON error body, streamed bodies.
//! The server (for what hyper could not parse), the connection tracking and
//! the handlers all answer through here, so none of them needs another.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

use super::error::ApiError;
use atelet_api::ErrorCode;

/// The response body: a whole buffer or a stream.
pub(crate) type ResponseBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A JSON response.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<ResponseBody> {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_type(
            status,
            "application/json",
            Full::new(Bytes::from(bytes)).boxed(),
        ),
        Err(e) => error_response(&ApiError::new(
            ErrorCode::Internal,
            format!("encoding response: {e}"),
        )),
    }
}

/// The error body with its status.
pub(crate) fn error_response(e: &ApiError) -> Response<ResponseBody> {
    with_type(
        error_status(e),
        "application/json",
        Full::new(Bytes::from(error_bytes(e))).boxed(),
    )
}

/// [`error_response`] as bytes on the wire, with `Connection: close`, for
/// the server to write where hyper has given up on the connection.
pub(crate) fn raw_error_response(e: &ApiError) -> Vec<u8> {
    let status = error_status(e);
    let body = error_bytes(e);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

fn error_status(e: &ApiError) -> StatusCode {
    StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn error_bytes(e: &ApiError) -> Vec<u8> {
    serde_json::to_vec(&e.body()).unwrap_or_else(|_| {
        br#"{"error":{"code":"Internal","message":"error encoding failed"}}"#.to_vec()
    })
}

/// 204, no body.
pub(crate) fn no_content() -> Response<ResponseBody> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap_or_else(|_| internal_response())
}

fn internal_response() -> Response<ResponseBody> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(
            br#"{"error":{"code":"Internal","message":"building response failed"}}"#,
        ))
        .boxed(),
    );
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

/// A response of `status` whose body is `content_type`.
pub(crate) fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: ResponseBody,
) -> Response<ResponseBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A body fed by a channel, for streams (the actor list, logs, events):
/// each item is encoded into a chunk as hyper asks for it, so a slow
/// client holds back whoever sends. Dropping it (the client went) closes
/// the channel, which the sender sees.
struct ChannelBody<T> {
    rx: mpsc::Receiver<T>,
    encode: fn(T) -> Option<Bytes>,
}

impl<T> Body for ChannelBody<T> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            match std::task::ready!(self.rx.poll_recv(cx)) {
                None => return Poll::Ready(None),
                Some(item) => {
                    // An item that cannot be encoded is left out.
                    if let Some(chunk) = (self.encode)(item) {
                        return Poll::Ready(Some(Ok(Frame::data(chunk))));
                    }
                }
            }
        }
    }
}

/// A 200 whose body is what arrives on `rx`, each item encoded by
/// `encode` (`Some` for chunks of bytes), ending when every sender is
/// dropped.
pub(crate) fn streamed<T: Send + 'static>(
    content_type: &'static str,
    rx: mpsc::Receiver<T>,
    encode: fn(T) -> Option<Bytes>,
) -> Response<ResponseBody> {
    with_type(
        StatusCode::OK,
        content_type,
        ChannelBody { rx, encode }.boxed(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_streamed_body_leaves_out_what_cannot_be_encoded_and_ends_with_the_sender() {
        let (tx, rx) = mpsc::channel(8);
        let response = streamed("text/plain", rx, |n: u32| {
            (n % 2 == 1).then(|| Bytes::from(n.to_string()))
        });
        for n in 1..=5 {
            tx.send(n).await.unwrap();
        }
        drop(tx);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "135");
    }
}
