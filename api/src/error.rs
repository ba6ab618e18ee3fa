//! The error body every failed request answers with (docs/openapi.yaml, `ErrorBody`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Machine-readable error class; each has exactly one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// 400: bad JSON, unknown field, failed validation.
    InvalidArgument,
    /// 403: peer not allowed on the socket, or refused by the node policy.
    Unauthorized,
    /// 404: no such actor, image or route.
    NotFound,
    /// 409: the actor exists, or the transition is not allowed from its status.
    Conflict,
    /// 413: body over the limit.
    PayloadTooLarge,
    /// 503: runsc missing, or the node is draining.
    Unavailable,
    /// 500: anything else; the message says what failed.
    Internal,
}

impl ErrorCode {
    /// The HTTP status that goes with the code. Clients use the inverse,
    /// [`ErrorCode::from_http_status`], when a body is missing.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::Unauthorized => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The code a status stands for, for replies that carry no error body.
    pub fn from_http_status(status: u16) -> ErrorCode {
        match status {
            400 => ErrorCode::InvalidArgument,
            401 | 403 => ErrorCode::Unauthorized,
            404 => ErrorCode::NotFound,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::PayloadTooLarge,
            503 => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The one field.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Class of the error.
    pub code: ErrorCode,
    /// Human text naming what was wrong.
    pub message: String,
}

impl ErrorBody {
    /// Builds a body from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_status() {
        for code in [
            ErrorCode::InvalidArgument,
            ErrorCode::Unauthorized,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::PayloadTooLarge,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ] {
            assert_eq!(ErrorCode::from_http_status(code.http_status()), code);
        }
    }

    #[test]
    fn body_has_the_documented_shape() {
        let body = ErrorBody::new(ErrorCode::Conflict, "actor x exists");
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "Conflict", "message": "actor x exists"}})
        );
    }
}
