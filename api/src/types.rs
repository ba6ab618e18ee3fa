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
    /// What to run; required, unless `restoreFrom` gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ActorSpec>,
    /// Start the actor right away (the default) or leave it CREATED. An
    /// actor made from a snapshot is created SUSPENDED: resume it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<bool>,
    /// Make the actor from a snapshot (its spec comes with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<RestoreFrom>,
}

/// Where an actor made from a snapshot comes from: another actor's
/// snapshot on this node (a clone), or a snapshot another node uploaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreFrom {
    /// An actor of this node whose snapshot to clone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Its snapshot: an id, or `latest` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The remote URL of a snapshot (`s3://bucket/prefix/…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
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
    /// How the actor is attached to the network; absent means the node's
    /// `[network] default_mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    /// What the node does with the actor by itself: pause it when idle,
    /// suspend it when paused for long, wake it on a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<LifecycleSpec>,
}

/// The actor's idle policy (all optional): an agent idle between bursts
/// is frozen, then checkpointed, and woken by its next connection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LifecycleSpec {
    /// Pause the actor after this many seconds without CPU use or
    /// connections; absent: never by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_after_idle_seconds: Option<i64>,
    /// Suspend a PAUSED actor after this many seconds; absent: only under
    /// memory pressure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend_after_paused_seconds: Option<i64>,
    /// A connection to a published port of a PAUSED or SUSPENDED actor
    /// resumes it (default true); false keeps it as it is (e.g. while a
    /// control plane moves it) and such connections are closed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_on_connect: Option<bool>,
}

impl LifecycleSpec {
    /// Whether connections wake the actor (absent means yes).
    pub fn wakes_on_connect(&self) -> bool {
        self.wake_on_connect.unwrap_or(true)
    }
}

/// The network an actor asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    /// `bridge` (a network namespace of its own on the node's bridge) or
    /// `none` (loopback only). Text on the wire so that an unknown mode is
    /// reported by name.
    pub mode: String,
}

/// The network modes an actor can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Its own namespace, address and veth on the node's bridge.
    Bridge,
    /// Loopback only.
    None,
}

impl NetworkMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::None => "none",
        }
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NetworkMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bridge" => Ok(NetworkMode::Bridge),
            "none" => Ok(NetworkMode::None),
            _ => Err(format!(
                "unknown network mode {s:?}; expected \"bridge\" or \"none\""
            )),
        }
    }
}

/// A port a container serves on, and where the node publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    /// The port the process listens on inside the actor (1-65535). Signed
    /// on the wire so that a bad number is reported as such.
    pub container_port: i64,
    /// Published on the node's `[network] publish_address` at this port,
    /// forwarded by the daemon; absent means not published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    /// `TCP` (the default; the only protocol supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// A readiness probe, Kubernetes-shaped: exactly one of `httpGet` and
/// `tcpSocket`. Lifecycle steps that start a sandbox answer only once it
/// passed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    /// An HTTP GET that must answer 200-399.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    /// A TCP connection that must be accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    /// Seconds after the sandbox runs before the first attempt (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i64>,
    /// Seconds between attempts (default 10, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i64>,
    /// Seconds one attempt may take (default 1, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Attempts before the probe has failed (default 3, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i64>,
}

/// `readinessProbe.httpGet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGetAction {
    /// Absolute request path (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// One of the container's `containerPort`s.
    pub port: i64,
}

/// `readinessProbe.tcpSocket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSocketAction {
    /// One of the container's `containerPort`s.
    pub port: i64,
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
    /// Ports the container serves on (bridge network only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// When the container can serve (bridge network only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// CPU and memory the container may use (`limits`, enforced through
    /// the sandbox's cgroup) and is expected to use (`requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// `resources` of a container, Kubernetes-shaped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRequirements {
    /// What the container may not exceed: memory past it is OOM-killed,
    /// CPU past it is throttled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceList>,
    /// What the container is expected to use: CPU weight under contention
    /// and the memory the kernel reclaims last. At most the limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceList>,
}

/// Amounts of CPU and memory, as Kubernetes quantities: text (`500m`,
/// `0.5`, `1` CPU; `256Mi`, `1G`, `1e9` bytes), or a JSON number as
/// Kubernetes also takes (`memory: 67108864`), kept as its text so that a
/// bad one is reported by field and text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceList {
    /// Cores.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::quantity::text"
    )]
    pub cpu: Option<String>,
    /// Bytes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::quantity::text"
    )]
    pub memory: Option<String>,
}

/// Body of `GET /v1/actors/{id}/stats`: what the actor's sandbox uses now,
/// read from its cgroup (the host's accounting of the whole sandbox:
/// gVisor's kernel, the actor's processes and its in-memory files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorStats {
    /// The actor.
    pub id: String,
    /// Its status when read.
    pub status: ActorStatus,
    /// RFC 3339: when the numbers were read.
    pub time: String,
    /// CPU seconds used by the current sandbox since it started (or was
    /// restored); null when no sandbox runs.
    pub cpu_seconds: Option<f64>,
    /// The CPU limit in cores (`0.5` for `500m`); null when unlimited.
    pub cpu_limit: Option<f64>,
    /// Bytes of memory the sandbox holds now; null when no sandbox runs.
    pub memory_bytes: Option<u64>,
    /// The memory limit in bytes; null when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Host tasks (threads) of the sandbox; null when no sandbox runs.
    pub pids: Option<u64>,
    /// Times the kernel OOM-killed a task of this sandbox.
    pub oom_kills: Option<u64>,
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
    /// `runsc pause` in progress.
    Pausing,
    /// The sandbox is frozen: its memory is kept, it uses no CPU.
    Paused,
    /// `runsc resume` of a paused sandbox in progress.
    Unpausing,
}

impl ActorStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [ActorStatus; 11] = [
        ActorStatus::Created,
        ActorStatus::Starting,
        ActorStatus::Running,
        ActorStatus::Pausing,
        ActorStatus::Paused,
        ActorStatus::Unpausing,
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
            ActorStatus::Pausing => "PAUSING",
            ActorStatus::Paused => "PAUSED",
            ActorStatus::Unpausing => "UNPAUSING",
        }
    }

    /// A step is in flight; only crash recovery may move the actor on.
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            ActorStatus::Starting
                | ActorStatus::Suspending
                | ActorStatus::Resuming
                | ActorStatus::Pausing
                | ActorStatus::Unpausing
        )
    }

    /// A sandbox exists or is being made or checkpointed (running or
    /// frozen), holding the memory its limit promises: what counts against
    /// the node's memory.
    pub fn holds_sandbox(self) -> bool {
        matches!(
            self,
            ActorStatus::Starting
                | ActorStatus::Running
                | ActorStatus::Pausing
                | ActorStatus::Paused
                | ActorStatus::Unpausing
                | ActorStatus::Suspending
                | ActorStatus::Resuming
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
    /// Its URL in the remote store, once uploaded (or the URL the actor
    /// was made from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// `pending`, `uploaded` or `failed`, on a node with a remote store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_status: Option<String>,
    /// Why the last upload failed (it is tried again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_error: Option<String>,
    /// Its files are on this node (false for an actor made from a remote
    /// URL until a resume downloads them).
    #[serde(default = "yes")]
    pub local: bool,
}

fn yes() -> bool {
    true
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
    /// The actor's network: its mode, address and published ports.
    pub network: ActorNetwork,
    /// True while RUNNING: a sandbox runs and its readiness probe (if
    /// any) has passed, since start and resume answer only after it.
    pub ready: bool,
    /// RFC 3339: when the actor was last seen busy (CPU or a connection
    /// through its published ports), or started, resumed or unpaused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_at: Option<String>,
    /// Where the last activation came from: `paused` (unpaused) or
    /// `suspended` (restored); absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_from: Option<String>,
}

/// An actor's network as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorNetwork {
    /// `bridge` or `none`, as decided at create.
    pub mode: NetworkMode,
    /// Its IPv4 address, kept for the actor's whole life (bridge only).
    pub ip: Option<String>,
    /// Its ports, and where they are published.
    pub ports: Vec<PublishedPort>,
}

/// One port of an actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedPort {
    /// The container that declared it.
    pub container: String,
    /// Port inside the actor.
    pub container_port: u16,
    /// `TCP`.
    pub protocol: String,
    /// Port on the node's `[network] publish_address`, when published.
    pub host_port: Option<u16>,
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
    /// The node's actor network; absent on a daemon without networking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkHealth>,
}

/// The node's actor network, as health reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkHealth {
    /// Mode of actors whose spec names none.
    pub default_mode: NetworkMode,
    /// The node bridge.
    pub bridge: String,
    /// The actor subnet.
    pub subnet: String,
    /// Addresses held by actors (one per bridged actor).
    pub addresses_in_use: u64,
    /// Host ports listened on for actors, sorted.
    pub published_ports: Vec<u16>,
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
    /// Why (the operation, or what was observed). `pulling` for the
    /// progress of an image pull, which changes no status (`from` and `to`
    /// are both null, and `actorId` is the actor whose create pulls, or
    /// empty for `POST /v1/images`).
    pub reason: String,
    /// For `pulling`: how far the pull is. Absent on every other event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullProgress>,
}

/// How far an image pull from a registry is (a `pulling` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullProgress {
    /// The reference as given.
    pub reference: String,
    /// The manifest digest it resolved to.
    pub digest: String,
    /// Bytes of blobs (config and layers, as stored in the registry) received.
    pub bytes_done: u64,
    /// Bytes of blobs the manifest lists.
    pub bytes_total: u64,
}

/// Body of `POST /v1/images`: pull an image into the cache without
/// creating an actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PullImageRequest {
    /// An image reference; `docker://…` (or the bare `host/repo:tag`)
    /// pulls, local ones unpack.
    pub reference: String,
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
