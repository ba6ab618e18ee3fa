//! The one place where errors become API error codes (and so HTTP statuses).

use atelet_api::{ErrorBody, ErrorCode};

use crate::images::extract::ExtractError;
use crate::images::ImageError;
use crate::runsc::RuntimeError;
use crate::service::ServiceError;
use crate::snapshots::SnapshotError;

/// An error as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Class (and status).
    pub code: ErrorCode,
    /// Human text.
    pub message: String,
}

impl ApiError {
    /// An error of class `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// The body of DESIGN §3.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone())
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        ApiError::new(error_code(&e), e.to_string())
    }
}

/// The code of each service error.
pub fn error_code(e: &ServiceError) -> ErrorCode {
    match e {
        ServiceError::Invalid(_) | ServiceError::NotSupported(_) => ErrorCode::InvalidArgument,
        ServiceError::Image(
            ImageError::Invalid { .. }
            | ImageError::Oci { .. }
            | ImageError::Extract {
                source: ExtractError::Refused { .. } | ExtractError::Read(_),
                ..
            },
        ) => ErrorCode::InvalidArgument,
        ServiceError::NotFound(_) | ServiceError::Image(ImageError::NotFound(_)) => {
            ErrorCode::NotFound
        }
        ServiceError::Forbidden(_) => ErrorCode::Unauthorized,
        ServiceError::AlreadyExists(_)
        | ServiceError::Transition { .. }
        | ServiceError::RuntimeMismatch { .. }
        // Like a snapshot of another runsc: the node cannot resume it.
        | ServiceError::Snapshot {
            source: SnapshotError::Newer { .. },
            ..
        }
        | ServiceError::Image(ImageError::InUse { .. }) => ErrorCode::Conflict,
        ServiceError::Unavailable(_)
        | ServiceError::Runtime {
            source: RuntimeError::Unavailable(_),
            ..
        } => ErrorCode::Unavailable,
        ServiceError::Runtime { .. }
        | ServiceError::Image(
            ImageError::Cache { .. }
            | ImageError::Extract {
                source: ExtractError::Write { .. },
                ..
            },
        )
        | ServiceError::Store(_)
        | ServiceError::Snapshot { .. }
        | ServiceError::Bundle(_)
        | ServiceError::Internal(_) => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::oci::OciError;
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
                    op: "resume",
                    id: "a".into(),
                    status: ActorStatus::Running,
                    needs: "SUSPENDED",
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
            op: "resume",
            id: "a".into(),
            status: ActorStatus::Running,
            needs: "SUSPENDED",
        };
        assert_eq!(
            e.to_string(),
            "cannot resume actor a: it is RUNNING (resume needs SUSPENDED)"
        );
    }
}
