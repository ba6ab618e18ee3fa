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
    Image, Op, Quarantined,
};
use tokio::sync::{broadcast, oneshot, RwLock};

use crate::bundle::{BundleBuilder, BundleError, BundleInput};
use crate::fsutil::{remove_dir_if_exists, sha256_hex};
use crate::images::{ImageError, ImageStore, ResolvedImage};
use crate::locks::KeyedLocks;
use crate::metrics::{Metrics, StatusLabels};
use crate::policy::{AdmissionPolicy, PolicyViolation};
use crate::runsc::{ExitOutcome, LaunchSpec, Runtime, RuntimeError};
use crate::snapshots::{SnapshotError, SnapshotStore, TMP_PREFIX};
use crate::store::{
    now_rfc3339, ActorRecord, ContainerRecord, PendingOp, SnapshotRecord, Store, StoreError,
    Transition,
};

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The state directory; everything the daemon writes lives below it.
    pub state_dir: PathBuf,
    /// Snapshots kept per actor (the newest); 0 keeps all.
    pub snapshot_retention: usize,
    /// Bytes an actor's log may reach before [`ActorService::rotate_logs`]
    /// moves it aside.
    pub log_max_bytes: u64,
    /// Where operations are counted and timed.
    pub metrics: Arc<Metrics>,
    /// What specs may ask of this node.
    pub policy: AdmissionPolicy,
}

/// What a lifecycle step holds while it runs: a place in the shutdown gate
/// and the actor's lock.
struct Step<'a> {
    _gate: tokio::sync::RwLockReadGuard<'a, ()>,
    _lock: tokio::sync::OwnedMutexGuard<()>,
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
    log_max_bytes: u64,
    /// Lifecycle steps hold it shared; shutdown takes it exclusively to
    /// let in-flight steps finish.
    gate: RwLock<()>,
    draining: AtomicBool,
    /// Bytes promised to checkpoints in flight (see `reserve_snapshot_space`).
    reserved_space: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    policy: AdmissionPolicy,
    /// Serialises the count check and the insert of creates (max_actors).
    admission: tokio::sync::Mutex<()>,
    /// This state dir's suffix of container ids (see [`container_id`]).
    node: String,
    /// Actors that recovery could not yet reconcile because runsc could
    /// not list its containers at start: their lifecycle steps answer 503
    /// until [`ActorService::reconcile_deferred`] has settled them.
    unrecovered: std::sync::Mutex<HashSet<String>>,
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
            log_max_bytes: config.log_max_bytes,
            gate: RwLock::new(()),
            draining: AtomicBool::new(false),
            reserved_space: Arc::new(AtomicU64::new(0)),
            metrics: config.metrics,
            policy: config.policy,
            admission: tokio::sync::Mutex::new(()),
            node: node_id(&config.state_dir)?,
            unrecovered: std::sync::Mutex::new(HashSet::new()),
        }))
    }

    /// The runtime (for health and tests).
    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// Moves aside every actor log over `log_max_bytes`: its content goes to
    /// `<id>.log.1` (replacing the previous one) and the log starts empty
    /// again (copy and truncate: the sandbox keeps its O_APPEND descriptor).
    /// An actor cannot fill the disk that holds sled and the snapshots with
    /// its output. Lines written between the copy and the truncation are
    /// lost.
    pub async fn rotate_logs(&self) {
        let dir = self.logs_dir.clone();
        let max = self.log_max_bytes;
        let rotated_logs = tokio::task::spawn_blocking(move || rotate_logs_in(&dir, max)).await;
        match rotated_logs {
            Ok(names) if !names.is_empty() => tracing::info!(logs = ?names, "rotated actor logs"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "rotating logs"),
        }
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
    /// running ones to finish, then ends the runtime's helper processes
    /// (waiters), which must not outlive the daemon. Sandboxes are left
    /// running.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.draining.store(true, Ordering::SeqCst);
        let drained = tokio::time::timeout(timeout, self.gate.write())
            .await
            .is_ok();
        let _ = self.store.flush();
        self.runtime.shutdown();
        drained
    }

    /// Enters a lifecycle step on actor `id`: refuses while draining,
    /// validates the id, waits for the actor's lock, reads its record and
    /// checks that the transition table allows `op` from its status.
    async fn begin_step(&self, id: &str, op: Op) -> Result<(Step<'_>, ActorRecord)> {
        let gate = self.begin_op()?;
        validate_actor_id(id)?;
        let lock = self.locks.lock(id).await;
        let rec = match self.record(id) {
            Ok(rec) => rec,
            Err(e) => {
                // Requests for ids that do not exist must not grow the map.
                self.locks.forget(id);
                return Err(e);
            }
        };
        // stop and delete end the sandbox whatever state it is in, so they
        // are the way out for an actor runsc cannot tell about.
        if self.is_unrecovered(id) && !op.ends_any_sandbox() {
            return Err(ServiceError::Unavailable(format!(
                "actor {id} is not recovered yet: runsc could not tell whether its sandbox runs when the daemon started; it is retried every {} s",
                RECOVERY_RETRY.as_secs()
            )));
        }
        if !op.allows(rec.status) {
            return Err(transition_error(op, &rec));
        }
        Ok((
            Step {
                _gate: gate,
                _lock: lock,
            },
            rec,
        ))
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

    /// Health: runsc, actor counts, and the records in quarantine.
    pub fn health(&self) -> Result<Health> {
        let runsc = self.runtime.info();
        let (actors, _) = self.status_counts();
        let quarantined = self.store.quarantined();
        Ok(Health {
            // Degraded also while actors wait for a deferred recovery, and
            // while records are in quarantine (an actor is not served).
            status: if runsc.version.is_some()
                && self.unrecovered_count() == 0
                && quarantined.is_empty()
            {
                "ok"
            } else {
                "degraded"
            }
            .to_string(),
            runsc,
            actors,
            quarantined: (!quarantined.is_empty()).then(|| Quarantined {
                count: quarantined.len() as u64,
                ids: quarantined.to_vec(),
            }),
        })
    }

    /// Actors per status (every status, zeros included) and the bytes of
    /// all committed snapshots, from the store's in-memory summaries.
    fn status_counts(&self) -> (std::collections::BTreeMap<ActorStatus, u64>, u64) {
        let mut counts: std::collections::BTreeMap<ActorStatus, u64> =
            ActorStatus::ALL.iter().map(|s| (*s, 0)).collect();
        let mut snapshot_bytes = 0;
        for (_, s) in self.store.summaries() {
            *counts.entry(s.status).or_default() += 1;
            snapshot_bytes += s.snapshot_bytes;
        }
        (counts, snapshot_bytes)
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
        // An id that fails validation is not written to the log.
        let id = match validate_actor_id(&req.id) {
            Ok(()) => req.id.clone(),
            Err(_) => "(invalid)".to_string(),
        };
        self.measured("create", &id, self.create_inner(req)).await
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
        self.policy.check(&req)?;
        // Held (pinned) until the record names the image's digest.
        let mut images = Vec::new();
        for (i, c) in req.spec.containers.iter().enumerate() {
            let image = self.images.resolve(&c.image).await?;
            crate::bundle::check_process(&format!("spec.containers[{i}]"), c, &image.config)?;
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
        {
            // Count and insert as one step, or concurrent creates could all
            // pass max_actors.
            let _admission = self.admission.lock().await;
            let admitted: Result<()> = match self.policy.check_count(self.store.len()) {
                Ok(()) => self
                    .store
                    .insert_new(&rec, "created")
                    .await
                    .map_err(ServiceError::from),
                Err(e) => Err(ServiceError::from(e)),
            };
            if let Err(e) = admitted {
                // No record: its lock must not outlive the request.
                self.locks.forget(&rec.id);
                return Err(e);
            }
        }
        tracing::info!(actor = %rec.id, op = "create", "actor created");
        if start {
            self.start_locked(&mut rec, "create", images.into_iter().next())
                .await?;
        }
        Ok(rec.to_api())
    }

    /// Carries out `op` on actor `id` and answers the actor as it is after
    /// it; for [`Op::Delete`], `None` (the actor is gone).
    pub async fn act(self: &Arc<Self>, id: &str, op: Op) -> Result<Option<Actor>> {
        match op {
            Op::Start => self.start(id).await.map(Some),
            Op::Suspend => self.suspend(id).await.map(Some),
            Op::Resume => self.resume(id).await.map(Some),
            Op::Stop => self.stop(id).await.map(Some),
            Op::Delete => self.delete(id).await.map(|()| None),
        }
    }

    /// `POST /v1/actors/{id}/start`.
    pub async fn start(self: &Arc<Self>, id: &str) -> Result<Actor> {
        self.measured(Op::Start.as_str(), id, self.start_inner(id))
            .await
    }

    async fn start_inner(self: &Arc<Self>, id: &str) -> Result<Actor> {
        let (_step, mut rec) = self.begin_step(id, Op::Start).await?;
        // A FAILED actor may still have on record a half-made sandbox that
        // could not be removed when its step failed: it goes first, or it
        // would run on unknown to the record.
        if let Some(cid) = rec.container.as_ref().map(|c| c.id.clone()) {
            self.runtime
                .ensure_available()
                .map_err(runtime_err("start"))?;
            self.runtime
                .delete(&cid, true)
                .await
                .map_err(runtime_err(format!(
                    "starting actor {id}: removing its earlier sandbox {cid}"
                )))?;
            rec.container = None;
            self.store.save(&rec, None).await?;
        }
        self.start_locked(&mut rec, "start", None).await?;
        Ok(rec.to_api())
    }

    /// Boots `rec` from its image; `image` is the one create already
    /// resolved, else it is resolved again, under the policy in force now.
    async fn start_locked(
        self: &Arc<Self>,
        rec: &mut ActorRecord,
        op: &'static str,
        image: Option<ResolvedImage>,
    ) -> Result<()> {
        let t0 = Instant::now();
        let version = self.runtime.ensure_available().map_err(runtime_err(op))?;
        let image = match image {
            Some(i) => i,
            None => {
                let reference = &rec.spec.containers[0].image;
                self.policy
                    .check_image("spec.containers[0].image", reference)?;
                self.images.resolve(reference).await?
            }
        };
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
                // The half-made container goes; if even that fails, the
                // record keeps it, so that stop, delete or recovery can end
                // it rather than a sandbox running unknown to the record.
                if let Err(cleanup) = self.runtime.delete(&cid, true).await {
                    tracing::error!(actor = %rec.id, container = %cid, error = %cleanup, "could not remove a half-made sandbox");
                } else {
                    rec.container = None;
                }
                let what = if launch.image_dir.is_some() {
                    "restoring"
                } else {
                    "starting"
                };
                Err(runtime_err(format!("{what} actor {}", rec.id))(e))
            }
        }
    }

    /// `POST /v1/actors/{id}/stop`.
    pub async fn stop(self: &Arc<Self>, id: &str) -> Result<Actor> {
        self.measured(Op::Stop.as_str(), id, self.stop_inner(id))
            .await
    }

    async fn stop_inner(self: &Arc<Self>, id: &str) -> Result<Actor> {
        let (_step, mut rec) = self.begin_step(id, Op::Stop).await?;
        if rec.status == ActorStatus::Failed && rec.container.is_none() {
            return Err(transition_error(Op::Stop, &rec));
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
        // Nothing runs any more: nothing is left for recovery to decide.
        self.unrecovered_ids().remove(id);
        Ok(rec.to_api())
    }

    /// `DELETE /v1/actors/{id}`.
    pub async fn delete(&self, id: &str) -> Result<()> {
        self.measured(Op::Delete.as_str(), id, self.delete_inner(id))
            .await
    }

    async fn delete_inner(&self, id: &str) -> Result<()> {
        let (step, rec) = self.begin_step(id, Op::Delete).await?;
        // The current sandbox must go first: if that fails, nothing changes.
        if let Some(c) = &rec.container {
            self.runtime
                .ensure_available()
                .map_err(runtime_err("delete"))?;
            self.runtime
                .delete(&c.id, true)
                .await
                .map_err(runtime_err(format!("deleting actor {id}")))?;
        }
        // The runsc state a suspend or an exit may still be removing in the
        // background: tidying only, recovery removes what is left.
        let last = container_id(id, rec.incarnation, &self.node);
        let current = rec.container.as_ref().map(|c| c.id.as_str());
        if rec.incarnation > 0
            && current != Some(last.as_str())
            && self.runtime.ensure_available().is_ok()
        {
            if let Err(e) = self.runtime.delete(&last, true).await {
                tracing::warn!(actor = %id, container = %last, error = %e, "tidying runsc state");
            }
        }
        self.store.remove(id, rec.status, "deleted").await?;
        self.unrecovered_ids().remove(id);
        tracing::info!(actor = %id, op = "delete", "actor deleted");
        self.remove_files(id).await;
        // While still holding the lock: the count then tells whether
        // anyone else waits for it.
        self.locks.forget(id);
        drop(step);
        Ok(())
    }

    /// Removes a deleted actor's files (snapshots may be gigabytes: off the
    /// async threads).
    async fn remove_files(&self, id: &str) {
        let dirs = [
            ("bundle", self.bundles.dir(id)),
            ("snapshots", self.snapshots.actor_dir(id)),
            ("volumes", self.volumes_dir.join(id)),
        ];
        let logs = [self.log_path(id), rotated(&self.log_path(id))];
        let id = id.to_string();
        let work = tokio::task::spawn_blocking(move || {
            let mut results: Vec<(&str, std::io::Result<()>)> = dirs
                .iter()
                .map(|(what, dir)| (*what, remove_dir_if_exists(dir)))
                .collect();
            for log in &logs {
                let res = match std::fs::remove_file(log) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    other => other,
                };
                results.push(("log", res));
            }
            for (what, res) in results {
                if let Err(e) = res {
                    tracing::warn!(actor = %id, what, error = %e, "removing files of a deleted actor");
                }
            }
        });
        if let Err(e) = work.await {
            tracing::warn!(error = %e, "the file removal task failed");
        }
    }

    // ---- helpers ------------------------------------------------------------

    /// Counts and times one lifecycle operation.
    async fn measured<T>(
        &self,
        op: &'static str,
        id: &str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let t0 = Instant::now();
        let res = work.await;
        self.metrics.observe(op, t0.elapsed(), res.is_ok());
        let duration_ms = t0.elapsed().as_millis() as u64;
        match &res {
            // start, suspend and resume log their own line, with the
            // details of their runsc steps.
            Ok(_) if matches!(op, "create" | "stop" | "delete") => {
                tracing::info!(actor = %id, op, duration_ms, "done");
            }
            Ok(_) => {}
            // Mostly the client's mistakes (409, 400): not a warning.
            Err(e) => tracing::info!(actor = %id, op, duration_ms, error = %e, "failed"),
        }
        res
    }

    /// `GET /metrics`: the gauges are read from the store, then everything
    /// is encoded.
    pub fn metrics_text(&self) -> Result<String> {
        let (counts, snapshot_bytes) = self.status_counts();
        for status in ActorStatus::ALL {
            self.metrics
                .actors
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .set(counts.get(&status).copied().unwrap_or(0) as i64);
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
    let id = crate::fsutil::hex(&bytes);
    crate::fsutil::write_atomic(&path, id.as_bytes())
        .map_err(|e| ServiceError::Internal(format!("writing {}: {e}", path.display())))?;
    Ok(id)
}

/// Where a log is rotated to.
fn rotated(log: &std::path::Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Rotates the logs in `dir` over `max` bytes; returns their names.
fn rotate_logs_in(dir: &std::path::Path, max: u64) -> Vec<String> {
    let mut done = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return done;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_log = path.extension().is_some_and(|e| e == "log");
        if !is_log || entry.metadata().map(|m| m.len()).unwrap_or(0) <= max {
            continue;
        }
        let res = std::fs::copy(&path, rotated(&path)).and_then(|_| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(0))
        });
        match res {
            Ok(()) => done.push(entry.file_name().to_string_lossy().into_owned()),
            Err(e) => tracing::warn!(log = %path.display(), error = %e, "rotating a log"),
        }
    }
    done
}

/// Snapshot ids sort in creation order.
pub fn snapshot_id(seq: u64) -> String {
    format!("snap-{seq:06}")
}

mod error;
mod images;
mod recovery;
mod supervision;
mod suspend;
#[cfg(test)]
mod tests;

pub use error::ServiceError;
use error::{runtime_err, snapshot_err, transition_error, Result};
pub use recovery::{ReconcileReport, RECOVERY_RETRY};
pub use suspend::space_check_below;
