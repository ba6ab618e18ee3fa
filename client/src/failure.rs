//! What can make an `atectl` command fail, and the exit status each failure
//! gives, so that scripts can tell "no such actor" from "daemon down"
//! without parsing messages. The table is in `atectl --help` and README.md.

use atectl::ClientError;
use atelet_api::ErrorCode;

/// Success.
pub const EXIT_OK: u8 = 0;
/// Anything not listed below.
pub const EXIT_OTHER: u8 = 1;
/// Bad flags or arguments; clap exits with it on its own.
pub const EXIT_USAGE: u8 = 2;
/// No such actor or image.
pub const EXIT_NOT_FOUND: u8 = 3;
/// The actor exists, its status does not allow the operation, or the image
/// is in use.
pub const EXIT_CONFLICT: u8 = 4;
/// The request (or the `-f` file) was rejected as invalid.
pub const EXIT_INVALID: u8 = 5;
/// The daemon is unreachable, runsc is missing, or the node is degraded.
pub const EXIT_UNAVAILABLE: u8 = 6;
/// Not allowed on the socket, or refused by the node's policy.
pub const EXIT_UNAUTHORIZED: u8 = 7;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The daemon said no, or could not be reached; its message is shown as is.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The input given to atectl itself is unusable (an unreadable `-f` file).
    #[error("{0}")]
    Invalid(String),
    /// atectl found nothing the argument names (an image digest prefix).
    #[error("{0}")]
    NotFound(String),
    /// `health` answered, but the node cannot run actors.
    #[error("{0}")]
    Degraded(String),
    /// The daemon went away in the middle of a stream (logs -f, events).
    #[error("connection to atelet lost: {0}")]
    Lost(String),
    /// Local I/O other than stdout.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// `atectl exec`: the command exited with this (non-zero) code,
    /// which becomes atectl's.
    #[error("the command exited with status {0}")]
    Exited(u8),
    /// Whoever reads stdout has gone (`atectl events | head -1`): not an
    /// error worth a message, the output simply ends.
    #[error("stdout closed")]
    OutputClosed,
}

impl Failure {
    /// The exit status of this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Client(e) => exit_code_of(e.code()),
            Failure::Invalid(_) => EXIT_INVALID,
            Failure::NotFound(_) => EXIT_NOT_FOUND,
            Failure::Degraded(_) | Failure::Lost(_) => EXIT_UNAVAILABLE,
            Failure::Io { .. } => EXIT_OTHER,
            Failure::OutputClosed => EXIT_OK,
            Failure::Exited(code) => *code,
        }
    }
}

/// The exit status of an API error class (`None`: an answer that could not
/// be understood).
pub fn exit_code_of(code: Option<ErrorCode>) -> u8 {
    match code {
        Some(ErrorCode::NotFound) => EXIT_NOT_FOUND,
        Some(ErrorCode::Conflict) => EXIT_CONFLICT,
        Some(ErrorCode::InvalidArgument | ErrorCode::PayloadTooLarge) => EXIT_INVALID,
        Some(ErrorCode::Unavailable) => EXIT_UNAVAILABLE,
        Some(ErrorCode::Unauthorized) => EXIT_UNAUTHORIZED,
        Some(ErrorCode::Internal) | None => EXIT_OTHER,
    }
}

/// Writing to stdout: a closed pipe ends the command quietly.
pub fn stdout_error(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::OutputClosed
    } else {
        Failure::Io {
            what: "writing to stdout".into(),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn each_documented_class_has_its_own_status() {
        let classes = [
            (Some(ErrorCode::NotFound), EXIT_NOT_FOUND),
            (Some(ErrorCode::Conflict), EXIT_CONFLICT),
            (Some(ErrorCode::InvalidArgument), EXIT_INVALID),
            (Some(ErrorCode::PayloadTooLarge), EXIT_INVALID),
            (Some(ErrorCode::Unavailable), EXIT_UNAVAILABLE),
            (Some(ErrorCode::Unauthorized), EXIT_UNAUTHORIZED),
            (Some(ErrorCode::Internal), EXIT_OTHER),
            (None, EXIT_OTHER),
        ];
        for (code, want) in classes {
            assert_eq!(exit_code_of(code), want, "{code:?}");
        }
        let distinct: BTreeSet<u8> = [
            EXIT_OK,
            EXIT_OTHER,
            EXIT_USAGE,
            EXIT_NOT_FOUND,
            EXIT_CONFLICT,
            EXIT_INVALID,
            EXIT_UNAVAILABLE,
            EXIT_UNAUTHORIZED,
        ]
        .into();
        assert_eq!(distinct.len(), 8);
    }

    #[test]
    fn an_unreachable_daemon_is_unavailable_but_a_forbidden_socket_is_not() {
        let connect = |kind| {
            Failure::Client(ClientError::Connect {
                socket: "/x.sock".into(),
                kind: Some(kind),
                detail: String::new(),
            })
        };
        assert_eq!(
            connect(std::io::ErrorKind::NotFound).exit_code(),
            EXIT_UNAVAILABLE
        );
        assert_eq!(
            connect(std::io::ErrorKind::ConnectionRefused).exit_code(),
            EXIT_UNAVAILABLE
        );
        assert_eq!(
            connect(std::io::ErrorKind::PermissionDenied).exit_code(),
            EXIT_UNAUTHORIZED
        );
    }

    #[test]
    fn the_daemons_message_is_the_whole_text() {
        let e = Failure::Client(ClientError::Api {
            status: 409,
            code: ErrorCode::Conflict,
            message: "cannot resume actor x: it is RUNNING (resume needs SUSPENDED)".into(),
        });
        assert_eq!(
            e.to_string(),
            "cannot resume actor x: it is RUNNING (resume needs SUSPENDED)"
        );
        assert_eq!(e.exit_code(), EXIT_CONFLICT);
    }

    #[test]
    fn a_closed_stdout_is_a_quiet_success() {
        let e = stdout_error(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(matches!(e, Failure::OutputClosed));
        assert_eq!(e.exit_code(), EXIT_OK);
    }
}
