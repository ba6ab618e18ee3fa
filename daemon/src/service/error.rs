//! Errors of the actor service; the HTTP layer maps each to a status
//! (`crate::http::error::error_code`).

use super::*;

/// Errors of the actor service; the HTTP layer maps each to a status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    /// The request failed validation.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// No such actor.
    #[error("actor {0} not found")]
    NotFound(String),
    /// The id is taken.
    #[error("actor {0} already exists")]
    AlreadyExists(String),
    /// The operation is not allowed from the actor's status; the message
    /// names what the transition table allows.
    #[error("cannot {op} actor {id}: it is {status} ({op} needs {})", op.needs())]
    Transition {
        /// The operation.
        op: Op,
        /// The actor.
        id: String,
        /// Its status.
        status: ActorStatus,
    },
    /// The latest snapshot was written by another runsc.
    #[error("cannot resume actor {id}: snapshot {snapshot} was taken with runsc {snapshot_version} but runsc {installed} is installed")]
    RuntimeMismatch {
        /// The actor.
        id: String,
        /// The snapshot.
        snapshot: String,
        /// runsc that wrote it.
        snapshot_version: String,
        /// runsc installed.
        installed: String,
    },
    /// The node's admission policy refuses the spec.
    #[error(transparent)]
    Forbidden(#[from] PolicyViolation),
    /// The request is valid but this daemon cannot do it.
    #[error("{0}")]
    NotSupported(String),
    /// runsc is missing, or the daemon is draining.
    #[error("{0}")]
    Unavailable(String),
    /// The image cannot be used.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A runsc step failed.
    #[error("{context}: {source}")]
    Runtime {
        /// What the daemon was doing.
        context: String,
        /// The runsc error.
        source: RuntimeError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A snapshot could not be written or read.
    #[error("{context}: {source}")]
    Snapshot {
        /// What the daemon was doing.
        context: String,
        /// The snapshot error.
        source: SnapshotError,
    },
    /// The bundle could not be built.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A published port cannot be bound.
    #[error("{0}")]
    PortTaken(String),
    /// The network layer failed (or the subnet is full).
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    /// A body over its limit (a snapshot import).
    #[error("{0}")]
    TooLarge(String),
    /// A snapshot needs what this node does not offer (runsc version or
    /// flags, the image): every mismatch named.
    #[error("{0}")]
    Preflight(String),
    /// The actor holds TCP connections a checkpoint cannot save (see
    /// `network::conntrack`): suspending now would kill it.
    #[error("{0}")]
    ConnectionsOpen(String),
    /// An exec cannot run now (the actor is not RUNNING, or runs the most
    /// execs allowed), or a suspend meets running execs.
    #[error("{0}")]
    ExecRefused(String),
    /// A readiness probe did not pass.
    #[error("{0}")]
    NotReady(String),
    /// Something else failed.
    #[error("{0}")]
    Internal(String),
}

pub(super) type Result<T, E = ServiceError> = std::result::Result<T, E>;

pub(super) fn runtime_err(context: impl Into<String>) -> impl FnOnce(RuntimeError) -> ServiceError {
    let context = context.into();
    move |source| match source {
        RuntimeError::Unavailable(m) => {
            ServiceError::Unavailable(format!("runsc is not available: {m}"))
        }
        source => ServiceError::Runtime { context, source },
    }
}

pub(super) fn snapshot_err(
    context: impl Into<String>,
) -> impl FnOnce(SnapshotError) -> ServiceError {
    let context = context.into();
    move |source| ServiceError::Snapshot { context, source }
}

pub(super) fn transition_error(op: Op, rec: &ActorRecord) -> ServiceError {
    ServiceError::Transition {
        op,
        id: rec.id.clone(),
        status: rec.status,
    }
}
