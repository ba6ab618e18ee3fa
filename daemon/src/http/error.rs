//! The one place where errors become API error codes (and so HTTP statuses).

use atelet_api::{ErrorBody, ErrorCode};

use crate::images::registry::RegistryFault;
use crate::images::ImageError;
use crate::runsc::RuntimeError;
use crate::service::ServiceError;
use crate::snapshots::SnapshotError;

/// An error as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// Class (and status).
    pub code: ErrorCode,
    /// Human text.
    pub message: String,
}

impl ApiError {
    /// An error of class `code`.
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// The JSON error body every failure is answered with
    /// (`ErrorBody` in docs/openapi.yaml).
    pub(crate) fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone())
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        ApiError::new(error_code(&e), e.to_string())
    }
}

/// The answer to a request hyper could not parse, so no handler saw it
/// (a garbage request line, a bad header, two Content-Lengths that
/// disagree): 413 for a head over what hyper buffers, as for a head over
/// the configured limits, else 400. hyper's own answer has no body; the
/// server writes this one in its place.
pub(crate) fn malformed_request(e: &hyper::Error) -> ApiError {
    if e.is_parse_too_large() {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request head is far over the limits, more than the daemon buffers: {e}"),
        )
    } else {
        ApiError::new(
            ErrorCode::InvalidArgument,
            format!("malformed HTTP request: {e}"),
        )
    }
}

/// The code of each service error.
pub(crate) fn error_code(e: &ServiceError) -> ErrorCode {
    match e {
        ServiceError::Invalid(_) | ServiceError::NotSupported(_) => ErrorCode::InvalidArgument,
        ServiceError::NotFound(_) => ErrorCode::NotFound,
        ServiceError::TooLarge(_) => ErrorCode::PayloadTooLarge,
        ServiceError::Forbidden(_) => ErrorCode::Unauthorized,
        ServiceError::AlreadyExists(_)
        | ServiceError::PortTaken(_)
        | ServiceError::ConnectionsOpen(_)
        | ServiceError::ExecRefused(_)
        | ServiceError::Preflight(_)
        | ServiceError::Transition { .. }
        | ServiceError::RuntimeMismatch { .. }
        // Like a snapshot of another runsc: the node cannot resume it.
        | ServiceError::Snapshot {
            source: SnapshotError::Newer { .. },
            ..
        } => ErrorCode::Conflict,
        ServiceError::Unavailable(_)
        | ServiceError::NotReady(_)
        | ServiceError::Network(crate::network::NetworkError::Exhausted(_))
        | ServiceError::Runtime {
            source: RuntimeError::Unavailable(_),
            ..
        } => ErrorCode::Unavailable,
        ServiceError::Image(e) => image_error_code(e),
        ServiceError::Bundle(e) => fault_code(e.is_client_fault()),
        ServiceError::Runtime { .. }
        | ServiceError::Store(_)
        | ServiceError::Network(_)
        | ServiceError::Snapshot { .. }
        | ServiceError::Internal(_) => ErrorCode::Internal,
    }
}

/// The code of an image error: its own variants say what is missing or
/// taken; for the rest it says whose fault it is, asking the layers below
/// (OCI reading, layer extraction) in turn.
///
/// A registry's answers: a repository, tag or digest it does not know (or
/// content that is not what was named) is the reference's fault, 400; a
/// refusal of the node's credentials is 403, as a node policy refusal
/// (the client cannot fix it, the node's `[registries]` must); a registry
/// that cannot be reached or fails is 503, try again later.
fn image_error_code(e: &ImageError) -> ErrorCode {
    match e {
        ImageError::NotFound(_) => ErrorCode::NotFound,
        ImageError::InUse { .. } => ErrorCode::Conflict,
        ImageError::Registry { source, .. } => match source.fault() {
            RegistryFault::Reference => ErrorCode::InvalidArgument,
            RegistryFault::Credentials => ErrorCode::Unauthorized,
            RegistryFault::Unavailable => ErrorCode::Unavailable,
            RegistryFault::Daemon => ErrorCode::Internal,
        },
        e => fault_code(e.is_client_fault()),
    }
}

/// 400 for what the client can fix by asking differently, else 500.
fn fault_code(client: bool) -> ErrorCode {
    if client {
        ErrorCode::InvalidArgument
    } else {
        ErrorCode::Internal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::extract::ExtractError;
    use crate::images::oci::OciError;
    use crate::images::registry::RegistryError;
    use crate::reaper::ExitStatus;
    use atelet_api::{ActorStatus, ValidationError};

    #[test]
    fn each_service_error_has_its_status() {
        let cases: Vec<(ServiceError, u16)> = vec![
            (
                ServiceError::Invalid(ValidationError::new("id", "bad")),
                400,
            ),
            (ServiceError::NotSupported("multi".into()), 400),
            (
                ServiceError::Image(ImageError::Invalid {
                    reference: "dir:/x".into(),
                    message: "missing".into(),
                }),
                400,
            ),
            (
                ServiceError::Forbidden(crate::policy::PolicyViolation {
                    rule: "max_actors",
                    message: "full".into(),
                }),
                403,
            ),
            (
                ServiceError::Image(ImageError::Oci {
                    reference: "oci:/l".into(),
                    source: OciError::Invalid("no manifest is tagged \"x\"".into()),
                }),
                400,
            ),
            (
                ServiceError::Image(ImageError::Extract {
                    reference: "oci:/l".into(),
                    layer: 0,
                    source: ExtractError::Refused {
                        entry: "../x".into(),
                        reason: "a name with '..' is refused".into(),
                    },
                }),
                400,
            ),
            (
                ServiceError::Image(ImageError::Extract {
                    reference: "oci:/l".into(),
                    layer: 0,
                    source: ExtractError::Write {
                        path: "/state/images/tmp/x".into(),
                        source: std::io::Error::other("disk full"),
                    },
                }),
                500,
            ),
            (
                ServiceError::Image(ImageError::Cache {
                    context: "committing".into(),
                    source: std::io::Error::other("disk full"),
                }),
                500,
            ),
            (
                ServiceError::Image(ImageError::Oci {
                    reference: "oci:/l".into(),
                    source: OciError::Io {
                        path: "/l/index.json".into(),
                        source: std::io::Error::from(std::io::ErrorKind::NotFound),
                    },
                }),
                400,
            ),
            (
                ServiceError::Image(ImageError::Extract {
                    reference: "oci:/l".into(),
                    layer: 1,
                    source: ExtractError::Read(std::io::Error::other("corrupt gzip")),
                }),
                400,
            ),
            (
                ServiceError::Image(ImageError::Registry {
                    reference: "docker://r:5000/a:v9".into(),
                    source: RegistryError::NotFound {
                        host: "r:5000".into(),
                        reference: "r:5000/a:v9".into(),
                        detail: "MANIFEST_UNKNOWN".into(),
                    },
                }),
                400,
            ),
            (
                ServiceError::Image(ImageError::Registry {
                    reference: "docker://r:5000/a:v1".into(),
                    source: RegistryError::Protocol {
                        host: "r:5000".into(),
                        detail: "digest mismatch".into(),
                    },
                }),
                400,
            ),
            (
                ServiceError::Image(ImageError::Registry {
                    reference: "docker://r:5000/a:v1".into(),
                    source: RegistryError::Denied {
                        host: "r:5000".into(),
                        repository: "a".into(),
                        detail: "401".into(),
                    },
                }),
                403,
            ),
            (
                ServiceError::Image(ImageError::Registry {
                    reference: "docker://r:5000/a:v1".into(),
                    source: RegistryError::Unavailable {
                        host: "r:5000".into(),
                        detail: "connection refused".into(),
                    },
                }),
                503,
            ),
            (
                ServiceError::Image(ImageError::Registry {
                    reference: "docker://r:5000/a:v1".into(),
                    source: RegistryError::Client {
                        host: "r:5000".into(),
                        detail: "bad certificate".into(),
                    },
                }),
                500,
            ),
            (
                ServiceError::Bundle(crate::bundle::BundleError::Invalid("no command".into())),
                500,
            ),
            (
                ServiceError::Bundle(crate::bundle::BundleError::Io {
                    path: "/state/bundles/a".into(),
                    source: std::io::Error::other("disk full"),
                }),
                500,
            ),
            (
                ServiceError::Store(crate::store::StoreError::Exists("a".into())),
                500,
            ),
            (
                ServiceError::Snapshot {
                    context: "committing".into(),
                    source: crate::snapshots::SnapshotError::Corrupt {
                        path: "/state/snapshots/a/s".into(),
                        detail: "size".into(),
                    },
                },
                500,
            ),
            (ServiceError::NotFound("a".into()), 404),
            (
                ServiceError::Image(ImageError::NotFound("sha256:0".into())),
                404,
            ),
            (
                ServiceError::Image(ImageError::InUse {
                    digest: "sha256:0".into(),
                    users: vec!["a".into()],
                }),
                409,
            ),
            (ServiceError::AlreadyExists("a".into()), 409),
            (
                ServiceError::Transition {
                    op: atelet_api::Op::Resume,
                    id: "a".into(),
                    status: ActorStatus::Running,
                },
                409,
            ),
            (
                ServiceError::RuntimeMismatch {
                    id: "a".into(),
                    snapshot: "s".into(),
                    snapshot_version: "1".into(),
                    installed: "2".into(),
                },
                409,
            ),
            (
                ServiceError::Snapshot {
                    context: "resuming actor a".into(),
                    source: SnapshotError::Newer {
                        path: "/s/a/s1".into(),
                        found: crate::store::Version::new(2, 0),
                        supported: crate::snapshots::MANIFEST_VERSION,
                    },
                },
                409,
            ),
            (
                ServiceError::Snapshot {
                    context: "resuming actor a".into(),
                    source: SnapshotError::Corrupt {
                        path: "/s/a/s1".into(),
                        detail: "manifest: EOF".into(),
                    },
                },
                500,
            ),
            (ServiceError::Unavailable("draining".into()), 503),
            (
                ServiceError::Runtime {
                    context: "x".into(),
                    source: RuntimeError::Unavailable("gone".into()),
                },
                503,
            ),
            (
                ServiceError::Runtime {
                    context: "x".into(),
                    source: RuntimeError::Failed {
                        op: "run",
                        status: ExitStatus::Exited(1),
                        output: "boom".into(),
                    },
                },
                500,
            ),
            (ServiceError::Internal("x".into()), 500),
        ];
        for (e, status) in cases {
            let msg = e.to_string();
            let api = ApiError::from(e);
            assert_eq!(api.code.http_status(), status, "{msg}");
            assert_eq!(api.message, msg);
        }
    }

    #[test]
    fn transition_errors_name_the_status_and_what_is_needed() {
        let e = ServiceError::Transition {
            op: atelet_api::Op::Start,
            id: "a".into(),
            status: ActorStatus::Running,
        };
        assert_eq!(
            e.to_string(),
            "cannot start actor a: it is RUNNING (start needs CREATED, STOPPED or FAILED)"
        );
    }
}
