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
//! written; unknown fields ignored everywhere.
//!
//! Events carry no version: they only ever gain optional fields.
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
pub(crate) const RECORD_VERSION: Version = Version::new(1, 1);

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
    if found.major < RECORD_VERSION.major {
        // Each major bump adds its step here: the older layout read as a
        // `serde_json::Value` and rewritten into the next one. Major 1 is
        // the first layout ever written.
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
}
