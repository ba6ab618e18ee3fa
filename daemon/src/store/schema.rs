//! What sled holds: the persisted form of actor records and events, apart
//! from the API's wire types so that either can change without the other
//! (the wire types refuse unknown fields; these never do).
//!
//! # Versions
//!
//! An actor record carries its layout version as two integers:
//! `schemaVersion`, the major (the one field daemons before 1.1 check), and
//! `schemaMinor` (absent means 0). The rule:
//!
//! - A **minor** bump only adds optional fields (absent means what the
//!   older layout meant). A daemon reads every minor of its major: a newer
//!   minor's fields it does not know are ignored, and dropped if it
//!   rewrites the record; an older minor's missing fields take their
//!   defaults, and the record is written in the current form on its next
//!   save.
//! - A **major** bump is anything else (a field renamed, retyped or
//!   removed, a new status). Records of an older major are upgraded in
//!   memory when read ([`decode_actor`]) and written back in the current
//!   form on their next save; a record of a newer major is refused, naming
//!   both versions (and with it the daemon's start: it cannot know what the
//!   newer daemon meant).
//!
//! Layouts: 1.0, written by daemons before this module (no `schemaMinor`;
//! `imageDigest` came later in 1.0 and may be absent). 1.1: `schemaMinor`
//! written; unknown fields ignored everywhere. 1.2: `network` (mode and
//! address; absent means mode `none`, as every actor before it ran), the
//! spec's `network` and the containers' `ports` and `readinessProbe`.
//! 1.3: snapshots' `remote` copy. 1.4: the containers' `resources`
//! (absent means no limits, as every actor before it ran). 2.0: the
//! statuses PAUSING, PAUSED and UNPAUSING (a daemon of major 1 would
//! misread them, hence the major), the spec's `lifecycle`, and
//! `lastActiveAt` and `activatedFrom`; every 1.x record is a 2.0 record
//! as it is (what it lacks is optional).
//!
//! Events carry no version: they only ever gain optional fields (`pull`,
//! the progress of a `pulling` event).
//!
//! The snapshot manifest follows the same rule with its own numbers
//! (`crate::snapshots::MANIFEST_VERSION`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A layout version, `MAJOR.MINOR`: what a reader can tell of what it
/// reads (see the module's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Version {
    /// Bumped on a change older readers would misread.
    pub major: u32,
    /// Bumped when optional fields are added.
    pub minor: u32,
}

impl Version {
    /// `major.minor`.
    pub(crate) const fn new(major: u32, minor: u32) -> Version {
        Version { major, minor }
    }

    /// Whether a reader of this version can read data of `found`: any
    /// older or equal major, any minor (the rule of the module).
    pub(crate) fn reads(self, found: Version) -> bool {
        found.major <= self.major
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The layout of the actor records this daemon writes.
pub(crate) const RECORD_VERSION: Version = Version::new(2, 0);

/// Why a stored record cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Written by a daemon of a newer major: no reading of it is safe.
    #[error("schema version {found} is newer than the {supported} this atelet reads: it was written by a newer atelet, which must be run on this state dir")]
    Newer {
        /// The record's version.
        found: Version,
        /// What this daemon reads.
        supported: Version,
    },
    /// Not a record of any layout this daemon knows (corrupt, or not JSON).
    #[error("{0}")]
    Invalid(String),
}

/// Reads an actor record of any version this daemon knows, upgraded to the
/// current layout.
pub(crate) fn decode_actor(bytes: &[u8]) -> Result<Actor, DecodeError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Header {
        schema_version: u32,
        #[serde(default)]
        schema_minor: u32,
    }
    let invalid = |e: serde_json::Error| DecodeError::Invalid(e.to_string());
    let h: Header = serde_json::from_slice(bytes).map_err(invalid)?;
    let found = Version::new(h.schema_version, h.schema_minor);
    if !RECORD_VERSION.reads(found) {
        return Err(DecodeError::Newer {
            found,
            supported: RECORD_VERSION,
        });
    }
    // Each major bump adds its step here: the older layout read as a
    // `serde_json::Value` and rewritten into the next one. 1 → 2 needs
    // none (2.0 only added statuses and optional fields). Major 1 is the
    // first layout ever written.
    if found.major < 1 {
        return Err(DecodeError::Invalid(format!(
            "schema version {found} was never written by atelet"
        )));
    }
    serde_json::from_slice(bytes).map_err(invalid)
}

/// An actor record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Actor {
    /// Major of the layout ([`RECORD_VERSION`] when written).
    pub schema_version: u32,
    /// Minor of the layout; absent in 1.0.
    #[serde(default)]
    pub schema_minor: u32,
    /// The actor id; also the key.
    pub id: String,
    /// As created.
    pub template: Template,
    /// As created.
    pub spec: Spec,
    /// Lifecycle status.
    pub status: Status,
    /// Why.
    pub status_message: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The current or in-flight runsc container.
    pub container: Option<Sandbox>,
    /// Committed snapshots, oldest first.
    pub snapshots: Vec<Snapshot>,
    /// Last exit code of a sandbox.
    pub exit_code: Option<i32>,
    /// Counts sandboxes started.
    pub incarnation: u64,
    /// Counts snapshots taken.
    pub snapshot_seq: u64,
    /// The snapshot a SUSPENDING actor is writing.
    pub pending_snapshot: Option<String>,
    /// A stop in progress.
    pub pending: Option<Pending>,
    /// Manifest digest of the image last started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The actor's network (1.2); absent means mode `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// RFC 3339, when last seen busy (2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_at: Option<String>,
    /// `paused` or `suspended`: the last activation's tier (2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_from: Option<String>,
}

/// `NetworkRecord`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Network {
    /// `bridge` or `none`.
    pub mode: NetworkMode,
    /// The IPv4 address the actor holds (bridge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<std::net::Ipv4Addr>,
}

/// `NetworkMode`, as stored. A new mode is a major bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NetworkMode {
    /// bridge.
    Bridge,
    /// none.
    None,
}

/// `TemplateRef`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// `ActorSpec`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// The containers.
    pub containers: Vec<Container>,
    /// The volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// The network asked for (its `mode` text, as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// The idle policy (2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
}

/// `LifecycleSpec`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_after_idle_seconds: Option<i64>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend_after_paused_seconds: Option<i64>,
    /// Absent means true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_on_connect: Option<bool>,
}

/// `ContainerPort`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// Port inside.
    pub container_port: i64,
    /// Published port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    /// Protocol, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// `Probe`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// HTTP GET: path and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<(Option<String>, i64)>,
    /// TCP connect: port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<i64>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i64>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i64>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i64>,
}

/// One container of a spec, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// argv.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Capabilities and ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Volume mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Ports (1.2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Readiness probe (1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// CPU and memory limits and requests (1.4); absent means none, as
    /// every actor before it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

/// `ResourceRequirements`, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceList>,
    /// Requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceList>,
}

/// `ResourceList`, as stored: the quantities' text as given (validated at
/// create), so that the spec reads back exactly as it was written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceList {
    /// CPU quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// One environment variable, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Name.
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// `SecurityContext`, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    /// Added and dropped capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    /// GID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
}

/// `Capabilities`, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// Added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// Dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// `VolumeMount`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// Volume name.
    pub name: String,
    /// Path in the container.
    pub mount_path: String,
    /// Read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// `Volume`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Name.
    pub name: String,
    /// A durable host directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_dir: Option<DurableDir>,
}

/// `DurableDir`, as stored (no settings yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DurableDir {}

/// `ActorStatus`, as stored. A new status is a major bump: an older daemon
/// cannot know what to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// CREATED.
    Created,
    /// STARTING.
    Starting,
    /// RUNNING.
    Running,
    /// SUSPENDING.
    Suspending,
    /// SUSPENDED.
    Suspended,
    /// RESUMING.
    Resuming,
    /// STOPPED.
    Stopped,
    /// FAILED.
    Failed,
    /// PAUSING (2.0).
    Pausing,
    /// PAUSED (2.0).
    Paused,
    /// UNPAUSING (2.0).
    Unpausing,
}

/// `ContainerRecord`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Sandbox {
    /// runsc container id.
    pub id: String,
    /// Sandbox pid.
    pub pid: Option<i32>,
    /// runsc version.
    pub runsc_version: String,
}

/// `SnapshotRecord`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Snapshot {
    /// Directory name.
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// runsc version that wrote it.
    pub runsc_version: String,
    /// Its copy in the remote store (layout 1.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteCopy>,
}

/// `RemoteCopy`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RemoteCopy {
    /// Its URL, once there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `pending`, `uploaded`, `failed`.
    pub status: String,
    /// Why the last upload failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The files are on this node too.
    pub local: bool,
}

/// `PendingOp`, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Pending {
    /// A stop.
    Stop,
}

/// An event of the log, as stored (the same JSON as the API's `Event`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Sequence number; also the key.
    pub seq: u64,
    /// The actor.
    pub actor_id: String,
    /// Status before.
    pub from: Option<Status>,
    /// Status after.
    pub to: Option<Status>,
    /// RFC 3339.
    pub time: String,
    /// Why.
    pub reason: String,
    /// How far an image pull is (`pulling` events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullProgress>,
}

/// `PullProgress`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullProgress {
    /// As given.
    pub reference: String,
    /// The manifest digest.
    pub digest: String,
    /// Received.
    pub bytes_done: u64,
    /// In all.
    pub bytes_total: u64,
}
