//! Wire types of API v1: what crosses the socket, in both directions.
//!
//! Request types reject unknown fields so that a typo in a spec is an error
//! rather than a silently ignored setting.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Body of `POST /v1/actors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateActorRequest {
    /// The actor id: a DNS-1123 label, unique on this node.
    pub id: String,
    /// The template the control plane made this actor from (informational).
    pub template: TemplateRef,
    /// What to run.
    pub spec: ActorSpec,
    /// Start the actor right away (the default) or leave it CREATED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<bool>,
}

/// Names the ActorTemplate an actor was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateRef {
    /// A DNS-1123 label.
    pub namespace: String,
    /// A DNS-1123 subdomain.
    pub name: String,
}

/// The containers and volumes of one actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActorSpec {
    /// At least one container; the first is the sandbox's root container.
    pub containers: Vec<Container>,
    /// Volumes the containers may mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
}

/// One container of an actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    /// A DNS-1123 label, unique within the actor, not `pause`.
    pub name: String,
    /// Image reference: `dir:<rootfs>`, `oci:<layout>[:<tag>]`, `oci-archive:<file>[:<tag>]`.
    pub image: String,
    /// argv of the process; falls back to the image's Entrypoint + Cmd.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment added after `PATH` (and after the image's Env).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Working directory; falls back to the image's, then `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Capabilities and the UID/GID to start as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Where the actor's volumes appear in this container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// Non-empty, without `=`.
    pub name: String,
    /// Any text.
    #[serde(default)]
    pub value: String,
}

/// Per-container security settings, Kubernetes-shaped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityContext {
    /// Capabilities added to and dropped from the default set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// UID of the container's process; unset means 0. Signed on the wire so
    /// that a negative value is reported as such rather than as a type error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    /// GID of the container's process; unset means 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
}

/// Capability names to add and drop (`NET_ADMIN` or `CAP_NET_ADMIN`, any case).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capabilities {
    /// Added to the defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// Removed from defaults + add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// A volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// Names a volume of the actor.
    pub name: String,
    /// Absolute path inside the container, without `..`.
    pub mount_path: String,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// A volume of an actor; exactly one source must be set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    /// A DNS-1123 label, unique within the actor.
    pub name: String,
    /// A host directory owned by the actor that outlives its sandboxes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_dir: Option<DurableDir>,
}

/// Marker for a durable directory volume (no settings yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DurableDir {}

/// Lifecycle status of an actor (docs/design.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActorStatus {
    /// Recorded, never started.
    Created,
    /// `runsc run` in progress.
    Starting,
    /// A sandbox is running.
    Running,
    /// Checkpoint in progress.
    Suspending,
    /// Only a snapshot remains; no sandbox.
    Suspended,
    /// Restore in progress.
    Resuming,
    /// Exited with status 0, or stopped by request.
    Stopped,
    /// Exited non-zero, killed, lost, or a step failed.
    Failed,
}

impl ActorStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [ActorStatus; 8] = [
        ActorStatus::Created,
        ActorStatus::Starting,
        ActorStatus::Running,
        ActorStatus::Suspending,
        ActorStatus::Suspended,
        ActorStatus::Resuming,
        ActorStatus::Stopped,
        ActorStatus::Failed,
    ];

    /// The wire name, e.g. `RUNNING`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorStatus::Created => "CREATED",
            ActorStatus::Starting => "STARTING",
            ActorStatus::Running => "RUNNING",
            ActorStatus::Suspending => "SUSPENDING",
            ActorStatus::Suspended => "SUSPENDED",
            ActorStatus::Resuming => "RESUMING",
            ActorStatus::Stopped => "STOPPED",
            ActorStatus::Failed => "FAILED",
        }
    }

    /// A step is in flight; only crash recovery may move the actor on.
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            ActorStatus::Starting | ActorStatus::Suspending | ActorStatus::Resuming
        )
    }
}

impl fmt::Display for ActorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActorStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActorStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ActorStatus::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown status {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// The sandbox that currently runs an actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxInfo {
    /// Host pid of the sandbox process.
    pub pid: i32,
    /// Version of the runsc that started it.
    pub runsc_version: String,
    /// The runsc container id of this incarnation.
    pub container_id: String,
}

/// A committed snapshot of an actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    /// Unique within the actor; sorts in creation order.
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
    /// Bytes on disk (image + manifest).
    pub size_bytes: u64,
}

/// An actor as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// The actor id.
    pub id: String,
    /// The template it was made from.
    pub template: TemplateRef,
    /// The spec it was created with.
    pub spec: ActorSpec,
    /// Lifecycle status.
    pub status: ActorStatus,
    /// Why the actor is in this status (errors, exit reasons); empty when nothing to say.
    pub status_message: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, last status change.
    pub updated_at: String,
    /// The running sandbox, if any.
    pub sandbox: Option<SandboxInfo>,
    /// Committed snapshots, oldest first.
    pub snapshots: Vec<SnapshotInfo>,
    /// Id of the snapshot a resume would restore.
    pub latest_snapshot: Option<String>,
    /// Exit code of the last sandbox that ended (128+n for a signal).
    pub exit_code: Option<i32>,
}

/// Body of `GET /v1/actors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorList {
    /// Sorted by id.
    pub actors: Vec<Actor>,
}

/// The runsc the daemon drives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// Absolute path, or what was configured when it is missing.
    pub path: String,
    /// `runsc --version`, or null when runsc is missing.
    pub version: Option<String>,
    /// Why runsc is unusable, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Body of `GET /v1/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, or `degraded` when runsc is unusable (lifecycle calls then
    /// answer 503), when actors wait for a deferred recovery, or when actor
    /// records are in quarantine.
    pub status: String,
    /// The runsc in use.
    pub runsc: RuntimeInfo,
    /// Number of actors in each status (every status present, zeros included).
    pub actors: BTreeMap<ActorStatus, u64>,
    /// Actor records the daemon could not read at start, set aside; absent
    /// when there are none, so that clients older than the field read the
    /// body as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<Quarantined>,
}

/// Actor records in quarantine: kept, not served, their ids not reusable
/// until an operator deals with them (docs/failure-modes.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// How many.
    pub count: u64,
    /// Their keys, sorted: the actor id, or `<id>~N` for a later record
    /// set aside under an id already in quarantine.
    pub ids: Vec<String>,
}

/// One lifecycle transition, as `GET /v1/events` streams it (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Only grows, across restarts too; `?since=` takes it.
    pub seq: u64,
    /// The actor concerned.
    pub actor_id: String,
    /// Status before; null when the actor was just created.
    pub from: Option<ActorStatus>,
    /// Status after; null when the actor was deleted.
    pub to: Option<ActorStatus>,
    /// RFC 3339.
    pub time: String,
    /// Why (the operation, or what was observed).
    pub reason: String,
}

/// One unpacked image in the node's image cache (`GET /v1/images`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// The manifest digest, `sha256:…`: the cache key and what
    /// `DELETE /v1/images/{digest}` takes.
    pub digest: String,
    /// The references that resolved to this image on this node, oldest
    /// first (the 32 newest are kept).
    pub references: Vec<String>,
    /// Bytes of the regular files in the unpacked rootfs.
    pub size_bytes: u64,
    /// Number of layers.
    pub layers: usize,
    /// RFC 3339: when it was unpacked.
    pub created_at: String,
    /// How long the unpack took (reads, digest checks, extraction, sync).
    pub unpack_ms: u64,
    /// Actors whose record names this image; while there are any it cannot be deleted.
    pub actors: Vec<String>,
}

/// Body of `GET /v1/images`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageList {
    /// Sorted by digest.
    pub images: Vec<Image>,
}
