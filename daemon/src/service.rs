//! The actor service: the lifecycle of DESIGN §4 on top of the store, the
//! images, the bundle builder, the runtime and the snapshot store.
//!
//! Operations on one actor are serialised by a per-actor lock; different
//! actors proceed in parallel. Each step that touches runsc is bracketed by
//! durable writes: the transitional status (with what is about to be
//! created) before, the outcome after. Crash recovery ([`ActorService::reconcile`])
//! reads those to finish or undo an interrupted step.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atelet_api::validate::ValidationError;
use atelet_api::{
    validate_actor_id, validate_create, Actor, ActorStatus, CreateActorRequest, Event, Health,
    Image,
};
use tokio::sync::{broadcast, oneshot, RwLock};

use crate::bundle::{remove_dir_if_exists, BundleBuilder, BundleError, BundleInput};
use crate::images::{ImageError, ImageStore, ResolvedImage};
use crate::locks::KeyedLocks;
use crate::metrics::{Metrics, StatusLabels};
use crate::policy::{AdmissionPolicy, PolicyViolation};
use crate::runsc::{ExitOutcome, LaunchSpec, Runtime, RuntimeError};
use crate::snapshots::{sha256_hex, SnapshotError, SnapshotStore, TMP_PREFIX};
use crate::store::{
    now_rfc3339, ActorRecord, ContainerRecord, PendingOp, SnapshotRecord, Store, StoreError,
    Transition,
};

/// Errors of the actor service; the HTTP layer maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request failed validation.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// No such actor.
    #[error("actor {0} not found")]
    NotFound(String),
    /// The id is taken.
    #[error("actor {0} already exists")]
    AlreadyExists(String),
    /// The operation is not allowed from the actor's status.
    #[error("cannot {op} actor {id}: it is {status} ({op} needs {needs})")]
    Transition {
        /// The operation.
        op: &'static str,
        /// The actor.
        id: String,
        /// Its status.
        status: ActorStatus,
        /// The statuses the operation is allowed from.
        needs: &'static str,
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
    /// Something else failed.
    #[error("{0}")]
    Internal(String),
}

type Result<T, E = ServiceError> = std::result::Result<T, E>;

fn runtime_err(context: impl Into<String>) -> impl FnOnce(RuntimeError) -> ServiceError {
    let context = context.into();
    move |source| match source {
        RuntimeError::Unavailable(m) => {
            ServiceError::Unavailable(format!("runsc is not available: {m}"))
        }
        source => ServiceError::Runtime { context, source },
    }
}

fn snapshot_err(context: impl Into<String>) -> impl FnOnce(SnapshotError) -> ServiceError {
    let context = context.into();
    move |source| ServiceError::Snapshot { context, source }
}

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The state directory; everything the daemon writes lives below it.
    pub state_dir: PathBuf,
    /// Snapshots kept per actor (the newest); 0 keeps all.
    pub snapshot_retention: usize,
    /// Where operations are counted and timed.
    pub metrics: Arc<Metrics>,
    /// What specs may ask of this node.
    pub policy: AdmissionPolicy,
}

/// A new incarnation to launch: see [`ActorService::launch`].
struct Launch<'a> {
    version: String,
    bundle: PathBuf,
    /// Restore from this checkpoint instead of booting.
    image_dir: Option<&'a std::path::Path>,
    /// The transitional status recorded before runsc runs.
    status: ActorStatus,
    reason: &'static str,
    message: String,
}

/// What crash recovery did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Running sandboxes taken over.
    pub adopted: Vec<String>,
    /// Actors whose status was changed, with the new status.
    pub resolved: Vec<(String, ActorStatus)>,
    /// runsc containers with no record, removed.
    pub removed_containers: Vec<String>,
    /// Snapshot or bundle directories with no record, removed.
    pub removed_dirs: Vec<PathBuf>,
    /// runsc commands of a previous daemon that were waited for.
    pub settled_commands: usize,
}

/// The actor service.
pub struct ActorService<R: Runtime> {
    store: Store,
    runtime: R,
    bundles: BundleBuilder,
    images: ImageStore,
    snapshots: SnapshotStore,
    logs_dir: PathBuf,
    volumes_dir: PathBuf,
    /// Per-actor locks.
    locks: KeyedLocks,
    retention: usize,
    /// Lifecycle steps hold it shared; shutdown takes it exclusively to
    /// let in-flight steps finish.
    gate: RwLock<()>,
    draining: AtomicBool,
    /// Bytes promised to checkpoints in flight (see `reserve_snapshot_space`).
    reserved_space: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    policy: AdmissionPolicy,
    /// This state dir's suffix of container ids (see [`container_id`]).
    node: String,
}

/// How long the runsc state of a stopped sandbox waits before removal.
const CLEANUP_DELAY: Duration = Duration::from_millis(500);

/// Below this much free space a suspend measures the sandbox first.
pub const SPACE_CHECK_BELOW: u64 = 1 << 30;
/// Manifest and filesystem slack added to a snapshot's estimate.
const SNAPSHOT_OVERHEAD: u64 = 1 << 20;

/// Space held for a checkpoint in flight; released on drop.
struct SpaceReservation {
    counter: Option<Arc<AtomicU64>>,
    bytes: u64,
}

impl SpaceReservation {
    fn none() -> SpaceReservation {
        SpaceReservation {
            counter: None,
            bytes: 0,
        }
    }
}

impl Drop for SpaceReservation {
    fn drop(&mut self) {
        if let Some(c) = &self.counter {
            c.fetch_sub(self.bytes, Ordering::SeqCst);
        }
    }
}

impl<R: Runtime> std::fmt::Debug for ActorService<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorService").finish_non_exhaustive()
    }
}

impl<R: Runtime> ActorService<R> {
    /// Builds the service over an opened store and a runtime, creating the
    /// state directory layout.
    pub fn new(config: ServiceConfig, store: Store, runtime: R) -> Result<Arc<Self>> {
        let dir = |name: &str| -> Result<PathBuf> {
            let p = config.state_dir.join(name);
            std::fs::create_dir_all(&p)
                .map_err(|e| ServiceError::Internal(format!("creating {}: {e}", p.display())))?;
            Ok(p)
        };
        Ok(Arc::new(ActorService {
            store,
            runtime,
            bundles: BundleBuilder::new(dir("bundles")?),
            images: ImageStore::open(config.state_dir.join("images"))?,
            snapshots: SnapshotStore::new(dir("snapshots")?),
            logs_dir: dir("logs")?,
            volumes_dir: dir("volumes")?,
            locks: KeyedLocks::default(),
            retention: config.snapshot_retention,
            gate: RwLock::new(()),
            draining: AtomicBool::new(false),
            reserved_space: Arc::new(AtomicU64::new(0)),
            metrics: config.metrics,
            policy: config.policy,
            node: node_id(&config.state_dir)?,
        }))
    }

    /// The runtime (for health and tests).
    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// The actor's log file (stdout and stderr of its sandboxes).
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.logs_dir.join(format!("{id}.log"))
    }

    fn begin_op(&self) -> Result<tokio::sync::RwLockReadGuard<'_, ()>> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(ServiceError::Unavailable(
                "the daemon is shutting down".to_string(),
            ));
        }
        self.gate
            .try_read()
            .map_err(|_| ServiceError::Unavailable("the daemon is shutting down".to_string()))
    }

    /// Refuses new lifecycle steps and waits (up to `timeout`) for the
    /// running ones to finish. Sandboxes are left running.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.draining.store(true, Ordering::SeqCst);
        let drained = tokio::time::timeout(timeout, self.gate.write())
            .await
            .is_ok();
        let _ = self.store.flush();
        drained
    }

    fn record(&self, id: &str) -> Result<ActorRecord> {
        validate_actor_id(id)?;
        self.store
            .get(id)?
            .ok_or_else(|| ServiceError::NotFound(id.to_string()))
    }

    /// Writes `rec` with a new status, logging the transition.
    async fn transition(
        &self,
        rec: &mut ActorRecord,
        to: ActorStatus,
        reason: &str,
        message: impl Into<String>,
    ) -> Result<()> {
        let from = rec.status;
        rec.status = to;
        rec.status_message = message.into();
        rec.updated_at = now_rfc3339();
        self.store
            .save(
                rec,
                Some(Transition {
                    from: Some(from),
                    to: Some(to),
                    reason: reason.to_string(),
                }),
            )
            .await?;
        tracing::info!(actor = %rec.id, from = %from, to = %to, reason, "transition");
        Ok(())
    }

    // ---- queries ----------------------------------------------------------

    /// One actor.
    pub fn get(&self, id: &str) -> Result<Actor> {
        Ok(self.record(id)?.to_api())
    }

    /// Visits the actors (optionally only those with `status`) in id order
    /// without collecting them: a list of 10,000 actors is streamed.
    /// `visit` returns false to stop.
    pub fn for_each_actor(
        &self,
        status: Option<ActorStatus>,
        mut visit: impl FnMut(Actor) -> bool,
    ) -> Result<()> {
        Ok(self.store.for_each(|r| {
            if status.is_none_or(|s| r.status == s) {
                visit(r.to_api())
            } else {
                true
            }
        })?)
    }

    /// Health: runsc and actor counts.
    pub fn health(&self) -> Result<Health> {
        let runsc = self.runtime.info();
        let mut actors: std::collections::BTreeMap<ActorStatus, u64> =
            ActorStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for (_, s) in self.store.summaries() {
            *actors.entry(s.status).or_default() += 1;
        }
        Ok(Health {
            status: if runsc.version.is_some() {
                "ok"
            } else {
                "degraded"
            }
            .to_string(),
            runsc,
            actors,
        })
    }

    /// Checks that an actor exists (for the logs endpoint).
    pub fn exists(&self, id: &str) -> Result<bool> {
        validate_actor_id(id)?;
        Ok(self.store.contains(id)?)
    }

    /// Logged events after `since`, at most `limit`.
    pub fn events_since(&self, since: u64, limit: usize) -> Result<Vec<Event>> {
        Ok(self.store.events_since(since, limit)?)
    }

    /// Sequence number of the newest logged event.
    pub fn last_event_seq(&self) -> u64 {
        self.store.last_seq()
    }

    /// Live events.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.store.subscribe()
    }

    // ---- lifecycle ----------------------------------------------------------

    /// `POST /v1/actors`.
    pub async fn create(self: &Arc<Self>, req: CreateActorRequest) -> Result<Actor> {
        self.measured("create", self.create_inner(req)).await
    }

    async fn create_inner(self: &Arc<Self>, req: CreateActorRequest) -> Result<Actor> {
        validate_create(&req)?;
        if req.spec.containers.len() > 1 {
            return Err(ServiceError::NotSupported(
                "spec.containers: multi-container actors are not supported yet (one container per actor)".to_string(),
            ));
        }
        // Before any image is read: image_dirs keeps the daemon from opening
        // (and unpacking) host paths the node does not allow.
        self.policy.check(&req, self.store.len())?;
        // Held (pinned) until the record names the image's digest.
        let mut images = Vec::new();
        for (i, c) in req.spec.containers.iter().enumerate() {
            let image = self.images.resolve(&c.image).await?;
            if c.command.is_empty() && image.config.command.is_empty() {
                return Err(ValidationError::new(
                    format!("spec.containers[{i}].command"),
                    "required: the image defines no command",
                )
                .into());
            }
            images.push(image);
        }
        let start = req.start.unwrap_or(true);
        let _op = self.begin_op()?;
        if start {
            self.runtime
                .ensure_available()
                .map_err(runtime_err("create"))?;
        }
        let _guard = self.locks.lock(&req.id).await;
        if self.store.contains(&req.id)? {
            return Err(ServiceError::AlreadyExists(req.id));
        }
        let mut rec = ActorRecord::new(req.id, req.template, req.spec, now_rfc3339());
        rec.image_digest = images.first().and_then(|i| i.digest.clone());
        self.store.insert_new(&rec, "created").await?;
        tracing::info!(actor = %rec.id, op = "create", "actor created");
        if start {
            self.start_locked(&mut rec, "create").await?;
        }
        Ok(rec.to_api())
    }

    /// `POST /v1/actors/{id}/start`.
    pub async fn start(self: &Arc<Self>, id: &str) -> Result<Actor> {
        self.measured("start", self.start_inner(id)).await
    }

    async fn start_inner(self: &Arc<Self>, id: &str) -> Result<Actor> {
        let _op = self.begin_op()?;
        validate_actor_id(id)?;
        let _guard = self.locks.lock(id).await;
        let mut rec = self.record(id)?;
        if !rec.status.can_start() {
            return Err(transition_error(
                "start",
                &rec,
                "CREATED, STOPPED or FAILED",
            ));
        }
        self.start_locked(&mut rec, "start").await?;
        Ok(rec.to_api())
    }

    async fn start_locked(self: &Arc<Self>, rec: &mut ActorRecord, op: &'static str) -> Result<()> {
        let t0 = Instant::now();
        let version = self.runtime.ensure_available().map_err(runtime_err(op))?;
        let image = self.images.resolve(&rec.spec.containers[0].image).await?;
        rec.image_digest = image.digest.clone();
        let bundle = self.write_bundle(rec, &image)?;
        let launch = Launch {
            version,
            bundle,
            image_dir: None,
            status: ActorStatus::Starting,
            reason: op,
            message: String::new(),
        };
        if let Err(e) = self.launch(rec, launch).await {
            self.transition(
                rec,
                ActorStatus::Failed,
                "start failed",
                format!("start failed: {e}"),
            )
            .await?;
            return Err(e);
        }
        self.transition(rec, ActorStatus::Running, "started", "")
            .await?;
        tracing::info!(actor = %rec.id, op, duration_ms = t0.elapsed().as_millis() as u64, "started");
        Ok(())
    }

    /// Records a new incarnation in `launch.status`, then boots it (or
    /// restores it from `launch.image_dir`) and watches it. On success the
    /// record holds the sandbox pid (the caller records RUNNING); on failure
    /// the half-made container is removed and the record holds none.
    async fn launch(self: &Arc<Self>, rec: &mut ActorRecord, launch: Launch<'_>) -> Result<()> {
        rec.incarnation += 1;
        let cid = container_id(&rec.id, rec.incarnation, &self.node);
        rec.container = Some(ContainerRecord {
            id: cid.clone(),
            pid: None,
            runsc_version: launch.version,
        });
        rec.exit_code = None;
        self.transition(rec, launch.status, launch.reason, launch.message)
            .await?;
        let spec = self.launch_spec(&rec.id, &cid, launch.bundle);
        let launched = match launch.image_dir {
            None => self.runtime.run(&spec).await,
            Some(dir) => self.runtime.restore(&spec, dir).await,
        };
        match launched {
            Ok(l) => {
                if let Some(c) = rec.container.as_mut() {
                    c.pid = Some(l.pid);
                }
                self.watch_exit(rec.id.clone(), cid, l.exit);
                Ok(())
            }
            Err(e) => {
                let _ = self.runtime.delete(&cid, true).await;
                rec.container = None;
                let what = if launch.image_dir.is_some() {
                    "restoring"
                } else {
                    "starting"
                };
                Err(runtime_err(format!("{what} actor {}", rec.id))(e))
            }
        }
    }

    /// `POST /v1/actors/{id}/suspend`.
    pub async fn suspend(self: &Arc<Self>, id: &str) -> Result<Actor> {
        self.measured("suspend", self.suspend_inner(id)).await
    }

    async fn suspend_inner(self: &Arc<Self>, id: &str) -> Result<Actor> {
        let _op = self.begin_op()?;
        validate_actor_id(id)?;
        let t0 = Instant::now();
        let _guard = self.locks.lock(id).await;
        let mut rec = self.record(id)?;
        if !rec.status.can_suspend() {
            return Err(transition_error("suspend", &rec, "RUNNING"));
        }
        if rec.spec.containers.len() > 1 {
            return Err(ServiceError::NotSupported(format!(
                "cannot suspend actor {id}: multi-container actors cannot be restored by this runsc"
            )));
        }
        let version = self
            .runtime
            .ensure_available()
            .map_err(runtime_err("suspend"))?;
        let Some(cid) = rec.container.as_ref().map(|c| c.id.clone()) else {
            return Err(ServiceError::Internal(format!(
                "actor {id} is RUNNING but has no container on record"
            )));
        };
        let _space = self.reserve_snapshot_space(id, &cid).await?;
        rec.snapshot_seq += 1;
        let snap_id = snapshot_id(rec.snapshot_seq);
        rec.pending_snapshot = Some(snap_id.clone());
        self.transition(&mut rec, ActorStatus::Suspending, "suspend", "")
            .await?;

        let pending = match self.snapshots.begin(id, &snap_id) {
            Ok(p) => p,
            Err(e) => {
                rec.pending_snapshot = None;
                let err = snapshot_err(format!("suspending actor {id}"))(e);
                self.transition(
                    &mut rec,
                    ActorStatus::Running,
                    "suspend failed",
                    format!("suspend failed: {err}"),
                )
                .await?;
                return Err(err);
            }
        };
        let t_ck = Instant::now();
        if let Err(e) = self.runtime.checkpoint(&cid, &pending.dir).await {
            let err = runtime_err(format!("suspending actor {id}"))(e);
            let _ = self.snapshots.discard(pending);
            rec.pending_snapshot = None;
            let alive = matches!(self.runtime.state(&cid).await, Ok(Some(s)) if s.is_running());
            if alive {
                self.transition(
                    &mut rec,
                    ActorStatus::Running,
                    "suspend failed",
                    format!("suspend failed: {err}"),
                )
                .await?;
            } else {
                rec.container = None;
                self.transition(
                    &mut rec,
                    ActorStatus::Failed,
                    "suspend failed",
                    format!("suspend failed and the sandbox is gone: {err}"),
                )
                .await?;
                self.cleanup_container(cid);
            }
            return Err(err);
        }
        let checkpoint_ms = t_ck.elapsed().as_millis() as u64;

        let spec_hash = spec_hash(&rec);
        let created_at = now_rfc3339();
        let store = self.snapshots.clone();
        let (pending, committed) = {
            let v = version.clone();
            let c = created_at.clone();
            tokio::task::spawn_blocking(move || {
                let res = store.commit(&pending, spec_hash, v, c);
                (pending, res)
            })
            .await
            .map_err(|e| ServiceError::Internal(format!("commit task: {e}")))?
        };
        let committed = match committed {
            Ok(c) => c,
            Err(e) => {
                // The checkpoint stopped the sandbox, but its image is whole:
                // bring the actor back from it rather than lose its state.
                let err = snapshot_err(format!("committing snapshot {snap_id} of actor {id}"))(e);
                rec.pending_snapshot = None;
                self.cleanup_container(cid);
                let res = self.revive_from(&mut rec, &pending.dir, &err).await;
                let _ = self.snapshots.discard(pending);
                res?;
                return Err(err);
            }
        };
        self.metrics
            .snapshot_bytes_written
            .inc_by(committed.size_bytes);
        rec.snapshots.push(SnapshotRecord {
            id: committed.id.clone(),
            created_at,
            size_bytes: committed.size_bytes,
            runsc_version: version,
        });
        let pruned: Vec<SnapshotRecord> =
            if self.retention > 0 && rec.snapshots.len() > self.retention {
                let n = rec.snapshots.len() - self.retention;
                rec.snapshots.drain(..n).collect()
            } else {
                Vec::new()
            };
        rec.pending_snapshot = None;
        rec.container = None;
        self.transition(&mut rec, ActorStatus::Suspended, "suspended", "")
            .await?;
        tracing::info!(actor = %id, op = "suspend", snapshot = %committed.id, bytes = committed.size_bytes,
            checkpoint_ms, duration_ms = t0.elapsed().as_millis() as u64, "suspended");
        // Off the response path: the checkpointed sandbox's runsc state
        // and snapshots past retention.
        self.cleanup_container(cid);
        for s in pruned {
            if let Err(e) = self.snapshots.remove(id, &s.id) {
                tracing::warn!(actor = %id, snapshot = %s.id, error = %e, "removing old snapshot");
            }
        }
        Ok(rec.to_api())
    }

    /// Checks that the snapshot filesystem can take this actor's checkpoint
    /// before runsc starts: a checkpoint that runs out of space kills the
    /// sandbox (runsc gives no way back), so it must not be tried. With
    /// plenty of space the check costs one statvfs; below
    /// [`SPACE_CHECK_BELOW`] it asks runsc how much memory the sandbox uses
    /// (an upper bound of the compressed image) and reserves that much until
    /// the snapshot is committed.
    async fn reserve_snapshot_space(&self, id: &str, cid: &str) -> Result<SpaceReservation> {
        let dir = self.snapshots.actor_dir("");
        let free = nix::sys::statvfs::statvfs(&dir)
            .map(|s| s.blocks_available() * s.fragment_size())
            .map_err(|e| ServiceError::Internal(format!("statvfs {}: {e}", dir.display())))?;
        let reserved = self.reserved_space.load(Ordering::SeqCst);
        let available = free.saturating_sub(reserved);
        if available >= SPACE_CHECK_BELOW {
            return Ok(SpaceReservation::none());
        }
        let usage = self
            .runtime
            .usage(cid)
            .await
            .map_err(runtime_err(format!("measuring actor {id} before suspend")))?;
        let need = usage + usage / 10 + SNAPSHOT_OVERHEAD;
        if need > available {
            return Err(ServiceError::Unavailable(format!(
                "cannot suspend actor {id}: its snapshot needs up to {} MiB but {} has {} MiB free; the actor keeps running",
                need.div_ceil(1 << 20),
                dir.display(),
                available >> 20
            )));
        }
        self.reserved_space.fetch_add(need, Ordering::SeqCst);
        Ok(SpaceReservation {
            counter: Some(self.reserved_space.clone()),
            bytes: need,
        })
    }

    /// Restores `rec` from an uncommitted checkpoint image after its commit
    /// failed, so the actor keeps running. Ends RUNNING or FAILED.
    async fn revive_from(
        self: &Arc<Self>,
        rec: &mut ActorRecord,
        image_dir: &std::path::Path,
        why: &ServiceError,
    ) -> Result<()> {
        let version = rec
            .container
            .as_ref()
            .map(|c| c.runsc_version.clone())
            .unwrap_or_default();
        let launch = Launch {
            version,
            bundle: self.bundles.dir(&rec.id),
            image_dir: Some(image_dir),
            status: ActorStatus::Resuming,
            reason: "suspend failed",
            message: format!("suspend failed: {why}"),
        };
        match self.launch(rec, launch).await {
            Ok(()) => {
                self.transition(
                    rec,
                    ActorStatus::Running,
                    "suspend failed",
                    format!("suspend failed, actor kept running: {why}"),
                )
                .await
            }
            Err(e) => {
                self.transition(
                    rec,
                    ActorStatus::Failed,
                    "suspend failed",
                    format!("suspend failed ({why}) and the actor could not be restored: {e}"),
                )
                .await
            }
        }
    }

    /// `POST /v1/actors/{id}/resume`.
    pub async fn resume(self: &Arc<Self>, id: &str) -> Result<Actor> {
        self.measured("resume", self.resume_inner(id)).await
    }

    async fn resume_inner(self: &Arc<Self>, id: &str) -> Result<Actor> {
        let _op = self.begin_op()?;
        validate_actor_id(id)?;
        let t0 = Instant::now();
        let _guard = self.locks.lock(id).await;
        let mut rec = self.record(id)?;
        if !rec.status.can_resume() {
            return Err(transition_error("resume", &rec, "SUSPENDED"));
        }
        let Some(latest) = rec.snapshots.last().cloned() else {
            return Err(ServiceError::Internal(format!(
                "actor {id} is SUSPENDED but has no snapshot on record"
            )));
        };
        let version = self
            .runtime
            .ensure_available()
            .map_err(runtime_err("resume"))?;
        let manifest = self
            .snapshots
            .manifest(id, &latest.id)
            .map_err(snapshot_err(format!("resuming actor {id}")))?;
        if manifest.runsc_version != version {
            return Err(ServiceError::RuntimeMismatch {
                id: id.to_string(),
                snapshot: latest.id,
                snapshot_version: manifest.runsc_version,
                installed: version,
            });
        }
        self.snapshots
            .verify(&manifest, false)
            .map_err(snapshot_err(format!("resuming actor {id}")))?;
        let bundle = if self.bundles.exists(id) {
            self.bundles.dir(id)
        } else {
            let image = self
                .images
                .resolve_recorded(&rec.spec.containers[0].image, rec.image_digest.as_deref())
                .await?;
            self.write_bundle(&rec, &image)?
        };
        let image_dir = self.snapshots.dir(id, &latest.id);
        let launch = Launch {
            version,
            bundle,
            image_dir: Some(&image_dir),
            status: ActorStatus::Resuming,
            reason: "resume",
            message: String::new(),
        };
        if let Err(e) = self.launch(&mut rec, launch).await {
            self.transition(
                &mut rec,
                ActorStatus::Suspended,
                "resume failed",
                format!("resume failed: {e}"),
            )
            .await?;
            return Err(e);
        }
        self.transition(&mut rec, ActorStatus::Running, "resumed", "")
            .await?;
        tracing::info!(actor = %id, op = "resume", snapshot = %latest.id,
            duration_ms = t0.elapsed().as_millis() as u64, "resumed");
        Ok(rec.to_api())
    }

    /// `POST /v1/actors/{id}/stop`.
    pub async fn stop(self: &Arc<Self>, id: &str) -> Result<Actor> {
        self.measured("stop", self.stop_inner(id)).await
    }

    async fn stop_inner(self: &Arc<Self>, id: &str) -> Result<Actor> {
        let _op = self.begin_op()?;
        validate_actor_id(id)?;
        let _guard = self.locks.lock(id).await;
        let mut rec = self.record(id)?;
        if !rec.status.can_stop() {
            return Err(transition_error("stop", &rec, "RUNNING or SUSPENDED"));
        }
        if let Some(cid) = rec.container.as_ref().map(|c| c.id.clone()) {
            self.runtime
                .ensure_available()
                .map_err(runtime_err("stop"))?;
            rec.pending = Some(PendingOp::Stop);
            self.store.save(&rec, None).await?;
            if let Err(e) = self.runtime.delete(&cid, true).await {
                rec.pending = None;
                self.store.save(&rec, None).await?;
                return Err(runtime_err(format!("stopping actor {id}"))(e));
            }
            rec.container = None;
        }
        rec.pending = None;
        let message = if rec.status == ActorStatus::Suspended {
            "stopped by request; snapshots kept"
        } else {
            "stopped by request"
        };
        self.transition(&mut rec, ActorStatus::Stopped, "stop", message)
            .await?;
        Ok(rec.to_api())
    }

    /// `DELETE /v1/actors/{id}`.
    pub async fn delete(&self, id: &str) -> Result<()> {
        self.measured("delete", self.delete_inner(id)).await
    }

    async fn delete_inner(&self, id: &str) -> Result<()> {
        let _op = self.begin_op()?;
        validate_actor_id(id)?;
        let _guard = self.locks.lock(id).await;
        let rec = self.record(id)?;
        // The current sandbox, and the runsc state a suspend or an exit may
        // still be cleaning up in the background.
        let mut cids: Vec<String> = rec.container.iter().map(|c| c.id.clone()).collect();
        if !cids.is_empty() {
            self.runtime
                .ensure_available()
                .map_err(runtime_err("delete"))?;
        }
        // Without a live sandbox runsc is only needed for tidying; recovery
        // removes what is left if it is missing now.
        let last = container_id(id, rec.incarnation, &self.node);
        if rec.incarnation > 0 && !cids.contains(&last) && self.runtime.ensure_available().is_ok() {
            cids.push(last);
        }
        for cid in cids {
            self.runtime
                .delete(&cid, true)
                .await
                .map_err(runtime_err(format!("deleting actor {id}")))?;
        }
        self.store.remove(id, rec.status, "deleted").await?;
        tracing::info!(actor = %id, op = "delete", "actor deleted");
        self.remove_files(id);
        // While still holding the lock: the count then tells whether
        // anyone else waits for it.
        self.locks.forget(id);
        drop(_guard);
        Ok(())
    }

    fn remove_files(&self, id: &str) {
        let results = [
            ("bundle", self.bundles.remove(id)),
            (
                "snapshots",
                self.snapshots
                    .remove_actor(id)
                    .map_err(std::io::Error::other),
            ),
            ("volumes", remove_dir_if_exists(&self.volumes_dir.join(id))),
            (
                "log",
                match std::fs::remove_file(self.log_path(id)) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    other => other,
                },
            ),
        ];
        for (what, res) in results {
            if let Err(e) = res {
                tracing::warn!(actor = %id, what, error = %e, "removing files of a deleted actor");
            }
        }
    }

    // ---- images -------------------------------------------------------------

    /// `GET /v1/images`: the image cache, each entry with the actors whose
    /// record names it.
    pub fn list_images(&self) -> Result<Vec<Image>> {
        let mut users: HashMap<String, Vec<String>> = HashMap::new();
        for (id, s) in self.store.summaries() {
            if let Some(d) = s.image_digest {
                users.entry(d).or_default().push(id);
            }
        }
        users.values_mut().for_each(|ids| ids.sort());
        Ok(self
            .images
            .list()?
            .into_iter()
            .map(|m| {
                let actors = users.remove(&m.digest).unwrap_or_default();
                m.to_api(actors)
            })
            .collect())
    }

    /// `DELETE /v1/images/{digest}`: refused (409) while any actor's record
    /// names the image, whatever its status: a stopped actor starts from it
    /// and a suspended one resumes on it.
    pub async fn delete_image(&self, digest: &str) -> Result<()> {
        let _op = self.begin_op()?;
        let lock = self.images.lock(digest).await?;
        let digest = lock.digest();
        let mut users: Vec<String> = self
            .store
            .summaries()
            .into_iter()
            .filter(|(_, s)| s.image_digest.as_deref() == Some(digest.as_str()))
            .map(|(id, _)| id)
            .collect();
        users.sort();
        if !users.is_empty() {
            return Err(ImageError::InUse {
                digest: lock.digest(),
                users,
            }
            .into());
        }
        Ok(self.images.remove(&lock)?)
    }

    // ---- helpers ------------------------------------------------------------

    /// Counts and times one lifecycle operation.
    async fn measured<T>(
        &self,
        op: &'static str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let t0 = Instant::now();
        let res = work.await;
        self.metrics.observe(op, t0.elapsed(), res.is_ok());
        res
    }

    /// `GET /metrics`: the gauges are read from the store, then everything
    /// is encoded.
    pub fn metrics_text(&self) -> Result<String> {
        let mut counts: HashMap<ActorStatus, i64> = HashMap::new();
        let mut snapshot_bytes = 0u64;
        for (_, s) in self.store.summaries() {
            *counts.entry(s.status).or_default() += 1;
            snapshot_bytes += s.snapshot_bytes;
        }
        for status in ActorStatus::ALL {
            self.metrics
                .actors
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .set(counts.get(&status).copied().unwrap_or(0));
        }
        self.metrics.snapshot_bytes.set(snapshot_bytes as i64);
        self.metrics
            .encode()
            .map_err(|e| ServiceError::Internal(format!("encoding metrics: {e}")))
    }

    fn launch_spec(&self, id: &str, cid: &str, bundle: PathBuf) -> LaunchSpec {
        LaunchSpec {
            container_id: cid.to_string(),
            bundle,
            log_path: self.log_path(id),
        }
    }

    fn write_bundle(&self, rec: &ActorRecord, image: &ResolvedImage) -> Result<PathBuf> {
        let mut volumes = HashMap::new();
        for v in &rec.spec.volumes {
            let dir = self.volumes_dir.join(&rec.id).join(&v.name);
            std::fs::create_dir_all(&dir).map_err(|e| {
                ServiceError::Internal(format!("creating volume dir {}: {e}", dir.display()))
            })?;
            volumes.insert(v.name.clone(), dir);
        }
        Ok(self.bundles.write(&BundleInput {
            actor_id: &rec.id,
            template: &rec.template,
            container: &rec.spec.containers[0],
            rootfs: &image.rootfs,
            image: &image.config,
            volumes: &volumes,
        })?)
    }

    /// Removes a stopped sandbox's runsc state in the background, a moment
    /// later and at low priority, so that it does not compete with the
    /// step that typically follows (a resume after a suspend). What a
    /// shutdown leaves undone, recovery removes.
    fn cleanup_container(self: &Arc<Self>, cid: String) {
        let svc = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(CLEANUP_DELAY).await;
            if let Err(e) = svc.runtime.discard(&cid).await {
                tracing::warn!(container = %cid, error = %e, "runsc delete failed");
            }
        });
    }

    /// Records the end of a sandbox when it was not caused by the daemon.
    fn watch_exit(self: &Arc<Self>, id: String, cid: String, exit: oneshot::Receiver<ExitOutcome>) {
        let svc = self.clone();
        tokio::spawn(async move {
            let Ok(outcome) = exit.await else { return };
            if let Err(e) = svc.on_exit(&id, &cid, outcome).await {
                tracing::error!(actor = %id, error = %e, "recording a sandbox exit");
            }
        });
    }

    async fn on_exit(self: &Arc<Self>, id: &str, cid: &str, outcome: ExitOutcome) -> Result<()> {
        let _guard = self.locks.lock(id).await;
        let Some(mut rec) = self.store.get(id)? else {
            return Ok(());
        };
        let current = rec.container.as_ref().map(|c| c.id.as_str()) == Some(cid);
        if rec.status != ActorStatus::Running || !current {
            // The daemon stopped it (suspend, stop, delete): not news.
            return Ok(());
        }
        rec.container = None;
        rec.exit_code = outcome.code;
        let to = if outcome.code == Some(0) {
            ActorStatus::Stopped
        } else {
            ActorStatus::Failed
        };
        self.transition(&mut rec, to, "exited", outcome.message)
            .await?;
        self.cleanup_container(cid.to_string());
        Ok(())
    }

    // ---- crash recovery -------------------------------------------------------

    /// Reconciles sled with runsc and the disk after a start (DESIGN §7).
    /// Run before serving requests.
    pub async fn reconcile(self: &Arc<Self>) -> Result<ReconcileReport> {
        let mut report = ReconcileReport {
            settled_commands: self.runtime.settle().await,
            ..Default::default()
        };
        let containers = match self.runtime.list().await {
            Ok(list) => Some(list),
            Err(e) => {
                tracing::error!(error = %e, "cannot list runsc containers; running actors are not adopted");
                None
            }
        };
        let records = self.store.list()?;
        let mut known: HashSet<String> = HashSet::new();
        for rec in records {
            let id = rec.id.clone();
            let _guard = self.locks.lock(&id).await;
            if let Some(c) = &rec.container {
                known.insert(c.id.clone());
            }
            let Some(containers) = containers.as_ref() else {
                continue;
            };
            let state = rec
                .container
                .as_ref()
                .and_then(|c| containers.iter().find(|s| s.id == c.id));
            let running = state.filter(|s| s.is_running()).map(|s| s.pid);
            self.reconcile_one(rec, running, &mut report).await?;
        }
        if let Some(containers) = containers {
            for c in containers {
                if !known.contains(&c.id) {
                    tracing::warn!(container = %c.id, status = %c.status, "removing a runsc container with no actor record");
                    if let Err(e) = self.runtime.delete(&c.id, true).await {
                        tracing::error!(container = %c.id, error = %e, "could not remove unknown container");
                    }
                    report.removed_containers.push(c.id);
                }
            }
        }
        self.remove_orphan_dirs(&mut report)?;
        Ok(report)
    }

    async fn reconcile_one(
        self: &Arc<Self>,
        mut rec: ActorRecord,
        running: Option<i32>,
        report: &mut ReconcileReport,
    ) -> Result<()> {
        let id = rec.id.clone();
        let before = rec.status;
        let cid = rec.container.as_ref().map(|c| c.id.clone());

        // Snapshot directories that are not on record go, except the one a
        // SUSPENDING actor may have finished writing.
        let recorded: HashSet<String> = rec.snapshots.iter().map(|s| s.id.clone()).collect();
        for entry in self
            .snapshots
            .entries(&id)
            .map_err(snapshot_err("recovery"))?
        {
            let pending = rec
                .pending_snapshot
                .as_deref()
                .filter(|_| before == ActorStatus::Suspending && running.is_none());
            let keep = recorded.contains(&entry)
                || pending.is_some_and(|p| entry == p || entry.strip_prefix(TMP_PREFIX) == Some(p));
            if !keep {
                let _ = self.snapshots.remove(&id, &entry);
                report.removed_dirs.push(self.snapshots.dir(&id, &entry));
            }
        }

        match (before, running) {
            (ActorStatus::Running, Some(_)) if rec.pending == Some(PendingOp::Stop) => {
                if let Some(cid) = &cid {
                    self.runtime
                        .delete(cid, true)
                        .await
                        .map_err(runtime_err("finishing an interrupted stop"))?;
                }
                rec.container = None;
                rec.pending = None;
                self.transition(
                    &mut rec,
                    ActorStatus::Stopped,
                    "recovery",
                    "stopped by request",
                )
                .await?;
            }
            (ActorStatus::Running | ActorStatus::Starting | ActorStatus::Resuming, Some(pid)) => {
                if let Some(c) = rec.container.as_mut() {
                    c.pid = Some(pid);
                }
                rec.pending = None;
                if before == ActorStatus::Running {
                    self.store.save(&rec, None).await?;
                } else {
                    self.transition(
                        &mut rec,
                        ActorStatus::Running,
                        "recovery",
                        format!(
                            "{} completed while the daemon was down",
                            before.as_str().to_lowercase()
                        ),
                    )
                    .await?;
                }
                if let Some(cid) = cid.clone() {
                    let exit = self.runtime.adopt(&cid, pid);
                    self.watch_exit(id.clone(), cid, exit);
                }
                report.adopted.push(id.clone());
            }
            (ActorStatus::Running, None) => {
                rec.container = None;
                let (to, message) = if rec.pending == Some(PendingOp::Stop) {
                    (ActorStatus::Stopped, "stopped by request".to_string())
                } else {
                    (
                        ActorStatus::Failed,
                        "sandbox lost while the daemon was down".to_string(),
                    )
                };
                rec.pending = None;
                self.transition(&mut rec, to, "recovery", message).await?;
            }
            (ActorStatus::Starting, None) => {
                rec.container = None;
                self.transition(
                    &mut rec,
                    ActorStatus::Failed,
                    "recovery",
                    "the daemon stopped while the actor was starting",
                )
                .await?;
            }
            (ActorStatus::Resuming, None) if rec.snapshots.is_empty() => {
                // A revive from an uncommitted image was interrupted.
                rec.container = None;
                self.transition(
                    &mut rec,
                    ActorStatus::Failed,
                    "recovery",
                    "the daemon stopped while the actor was being restored; no snapshot is committed",
                )
                .await?;
            }
            (ActorStatus::Resuming, None) => {
                rec.container = None;
                self.transition(
                    &mut rec,
                    ActorStatus::Suspended,
                    "recovery",
                    "resume interrupted by a daemon restart; the snapshot is intact",
                )
                .await?;
            }
            (ActorStatus::Suspending, Some(pid)) => {
                if let Some(p) = rec.pending_snapshot.take() {
                    let _ = self.snapshots.remove(&id, &format!("{TMP_PREFIX}{p}"));
                }
                if let Some(c) = rec.container.as_mut() {
                    c.pid = Some(pid);
                }
                self.transition(
                    &mut rec,
                    ActorStatus::Running,
                    "recovery",
                    "suspend interrupted by a daemon restart; the actor kept running",
                )
                .await?;
                if let Some(cid) = cid.clone() {
                    let exit = self.runtime.adopt(&cid, pid);
                    self.watch_exit(id.clone(), cid, exit);
                }
                report.adopted.push(id.clone());
            }
            (ActorStatus::Suspending, None) => {
                let pending = rec.pending_snapshot.take();
                let finished = pending
                    .as_deref()
                    .and_then(|p| self.recover_snapshot(&id, p));
                let tmp = pending.map(|p| {
                    self.snapshots
                        .actor_dir(&id)
                        .join(format!("{TMP_PREFIX}{p}"))
                });
                match finished {
                    Some(s) => {
                        rec.container = None;
                        rec.snapshots.push(s);
                        self.transition(
                            &mut rec,
                            ActorStatus::Suspended,
                            "recovery",
                            "suspend completed before the daemon stopped",
                        )
                        .await?;
                    }
                    None => {
                        // The checkpoint ran (it stopped the sandbox) but was
                        // not committed: bring the actor back from its image.
                        match tmp.clone().filter(|d| d.join("checkpoint.img").is_file()) {
                            Some(dir) => {
                                let why = ServiceError::Internal(
                                    "the daemon stopped before the snapshot was committed"
                                        .to_string(),
                                );
                                self.revive_from(&mut rec, &dir, &why).await?;
                                if rec.status == ActorStatus::Running {
                                    report.adopted.push(id.clone());
                                }
                            }
                            None => {
                                rec.container = None;
                                self.transition(
                                    &mut rec,
                                    ActorStatus::Failed,
                                    "recovery",
                                    "the sandbox stopped during a suspend interrupted by a daemon restart; no snapshot was committed",
                                )
                                .await?;
                            }
                        }
                    }
                }
                if let Some(dir) = tmp {
                    let _ = remove_dir_if_exists(&dir);
                }
            }
            (_, Some(_)) => {
                // A sandbox for an actor that should have none: end it.
                if let Some(cid) = &cid {
                    let _ = self.runtime.delete(cid, true).await;
                }
                rec.container = None;
                self.store.save(&rec, None).await?;
            }
            (_, None) => {
                if rec.container.take().is_some() {
                    self.store.save(&rec, None).await?;
                }
            }
        }
        // Leftover runsc state of a dead sandbox.
        if let Some(cid) = cid {
            if rec.container.as_ref().map(|c| &c.id) != Some(&cid) {
                self.cleanup_container(cid);
            }
        }
        if rec.status != before {
            report.resolved.push((id, rec.status));
        }
        Ok(())
    }

    /// A snapshot that was renamed into place but not recorded: kept if its
    /// manifest and files check out in full.
    fn recover_snapshot(&self, id: &str, snap_id: &str) -> Option<SnapshotRecord> {
        let manifest = self.snapshots.manifest(id, snap_id).ok()?;
        if let Err(e) = self.snapshots.verify(&manifest, true) {
            tracing::warn!(actor = %id, snapshot = %snap_id, error = %e, "discarding an unverifiable snapshot");
            let _ = self.snapshots.remove(id, snap_id);
            return None;
        }
        let size_bytes = manifest.files.iter().map(|f| f.size).sum::<u64>()
            + std::fs::metadata(
                self.snapshots
                    .dir(id, snap_id)
                    .join(crate::snapshots::MANIFEST),
            )
            .map(|m| m.len())
            .unwrap_or(0);
        Some(SnapshotRecord {
            id: snap_id.to_string(),
            created_at: manifest.created_at,
            size_bytes,
            runsc_version: manifest.runsc_version,
        })
    }

    /// Directories of actors that have no record (an interrupted delete).
    fn remove_orphan_dirs(&self, report: &mut ReconcileReport) -> Result<()> {
        let dirs = [
            self.snapshots.actor_dir(""),
            self.bundles.dir(""),
            self.volumes_dir.clone(),
        ];
        for root in dirs {
            let Ok(entries) = std::fs::read_dir(&root) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !self.store.contains(&name)? {
                    let path = entry.path();
                    tracing::warn!(path = %path.display(), "removing files of an actor with no record");
                    let _ = remove_dir_if_exists(&path);
                    report.removed_dirs.push(path);
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.logs_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(id) = name.strip_suffix(".log") {
                    if !self.store.contains(id)? {
                        let _ = std::fs::remove_file(entry.path());
                        report.removed_dirs.push(entry.path());
                    }
                }
            }
        }
        Ok(())
    }
}

fn transition_error(op: &'static str, rec: &ActorRecord, needs: &'static str) -> ServiceError {
    ServiceError::Transition {
        op,
        id: rec.id.clone(),
        status: rec.status,
        needs,
    }
}

/// runsc container id of one incarnation: `<actor>_<n>.<node>`. `_` cannot
/// occur in an actor id, so an actor's ids never collide with another's;
/// the node suffix (random per state dir) keeps two daemons on one host
/// apart, since runsc names each sandbox's control socket after the
/// container id in the host-wide abstract namespace.
pub fn container_id(actor_id: &str, incarnation: u64, node: &str) -> String {
    format!("{actor_id}_{incarnation}.{node}")
}

/// The random id of a state dir, made at its first use and kept in
/// `<state>/node-id`.
fn node_id(state_dir: &std::path::Path) -> Result<String> {
    let path = state_dir.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(id);
        }
    }
    let mut bytes = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| ServiceError::Internal(format!("reading /dev/urandom: {e}")))?;
    let id = crate::snapshots::hex(&bytes);
    crate::bundle::write_atomic(&path, id.as_bytes())?;
    Ok(id)
}

/// Snapshot ids sort in creation order.
pub fn snapshot_id(seq: u64) -> String {
    format!("snap-{seq:06}")
}

fn spec_hash(rec: &ActorRecord) -> String {
    sha256_hex(&serde_json::to_vec(&rec.spec).unwrap_or_default())
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
