//! The actor service: the lifecycle (docs/design.md, "Lifecycle") on top
//! of the store, the images, the bundle builder, the runtime and the
//! snapshot store. It knows nothing of HTTP: it offers operations, queries
//! and streams (events, logs) that the HTTP layer only adapts.
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
    validate_actor_id, validate_create, Actor, ActorStats, ActorStatus, CreateActorRequest, Event,
    Health, Image, NetworkMode, Op, Quarantined, SandboxResources,
};
use tokio::sync::{broadcast, mpsc, oneshot, RwLock};

use crate::bundle::{BundleBuilder, BundleError, BundleInput, BundleNetwork, Placement};
use crate::cgroups::Cgroups;
use crate::fsutil::{remove_dir_if_exists, sha256_hex};
use crate::images::{ImageError, ImageStore, ResolvedImage};
use crate::locks::KeyedLocks;
use crate::metrics::{Metrics, StatusLabels};
use crate::network::probe::Readiness;
use crate::network::{Attachment, Network};
use crate::policy::{AdmissionPolicy, PolicyViolation};
use crate::runsc::{ExitOutcome, LaunchSpec, Runtime, RuntimeError};
use crate::snapshots::{SnapshotError, SnapshotStore, TMP_PREFIX};
use crate::store::{
    now_rfc3339, ActorRecord, ContainerRecord, PendingOp, SnapshotRecord, Store, StoreError,
    Transition,
};

/// Settings of the service.
#[derive(Debug, Clone)]
pub(crate) struct ServiceConfig {
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
    /// Actor networks; `None` (unit tests of the state machine) makes every
    /// actor's mode `none`, and a spec asking for `bridge` is refused.
    pub network: Option<Arc<Network>>,
    /// The remote snapshot store, if the node has one.
    pub remote: Option<Arc<crate::remote::Remote>>,
    /// Keys that sign this node's manifests and that it trusts.
    pub trust: Arc<crate::trust::Trust>,
    /// Where sandboxes' cgroups go, and where their usage is read.
    pub cgroups: Arc<Cgroups>,
    /// Registry credentials and TLS settings.
    pub registries: crate::images::registry::Registries,
    /// Execs one actor may run at once (`[limits] max_execs_per_actor`).
    pub max_execs_per_actor: usize,
    /// Idle and memory-pressure policies (`[tiering]`).
    pub tiering: TieringConfig,
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
pub(crate) struct ActorService<R: Runtime> {
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
    /// Actor networks (see [`ServiceConfig::network`]).
    network: Option<Arc<Network>>,
    /// The remote snapshot store (see `upload`).
    remote: Option<Arc<crate::remote::Remote>>,
    /// Signing and trusted keys (see `crate::trust`).
    trust: Arc<crate::trust::Trust>,
    /// The upload worker's queue, once started.
    upload_queue: std::sync::OnceLock<mpsc::UnboundedSender<(String, String)>>,
    /// The end of each round of an upload, for `?wait=uploaded`.
    upload_done: broadcast::Sender<upload::UploadDone>,
    /// Actors that recovery could not yet reconcile because runsc could
    /// not list its containers at start: their lifecycle steps answer 503
    /// until [`ActorService::reconcile_deferred`] has settled them.
    unrecovered: std::sync::Mutex<HashSet<String>>,
    /// Sandboxes' cgroups (see `crate::cgroups`).
    cgroups: Arc<Cgroups>,
    /// Memory limits of starts and resumes in flight, by actor (see
    /// `limits::MemoryReservation`).
    memory_reserved: limits::Reserved,
    /// Serialises scrapes: the per-actor families are cleared and refilled.
    scrape: std::sync::Mutex<()>,
    /// The running execs (see `exec`).
    execs: exec::Execs,
    /// Process files and sandbox pids of running execs, one dir per
    /// container.
    execs_dir: PathBuf,
    /// See [`ServiceConfig::max_execs_per_actor`].
    max_execs: usize,
    /// See [`ServiceConfig::tiering`].
    tiering: TieringConfig,
    /// What the tiering passes saw of each actor (see `tiering`).
    activity: tiering::ActivityMap,
    /// Asks for a tiering pass now (after a pause).
    tiering_wake: tokio::sync::Notify,
}

impl<R: Runtime> std::fmt::Debug for ActorService<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorService").finish_non_exhaustive()
    }
}

impl<R: Runtime> ActorService<R> {
    /// Builds the service over an opened store and a runtime, creating the
    /// state directory layout.
    pub(crate) fn new(config: ServiceConfig, store: Store, runtime: R) -> Result<Arc<Self>> {
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
            images: ImageStore::open(config.state_dir.join("images"))?
                .with_registries(config.registries.clone()),
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
            network: config.network,
            remote: config.remote,
            trust: config.trust,
            upload_queue: std::sync::OnceLock::new(),
            upload_done: broadcast::channel(64).0,
            admission: tokio::sync::Mutex::new(()),
            node: node_id(&config.state_dir)?,
            unrecovered: std::sync::Mutex::new(HashSet::new()),
            cgroups: config.cgroups,
            memory_reserved: Arc::new(std::sync::Mutex::new(HashMap::new())),
            scrape: std::sync::Mutex::new(()),
            execs: exec::Execs::default(),
            execs_dir: dir("execs")?,
            max_execs: config.max_execs_per_actor.max(1),
            tiering: config.tiering,
            activity: std::sync::Mutex::new(HashMap::new()),
            tiering_wake: tokio::sync::Notify::new(),
        }))
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
    pub(crate) async fn drain(&self, timeout: Duration) -> bool {
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
    pub(crate) fn get(&self, id: &str) -> Result<Actor> {
        Ok(self.view(&self.record(id)?))
    }

    /// Visits the actors (optionally only those with `status`) in id order
    /// without collecting them: a list of 10,000 actors is streamed.
    /// `visit` returns false to stop.
    pub(crate) fn for_each_actor(
        &self,
        status: Option<ActorStatus>,
        mut visit: impl FnMut(Actor) -> bool,
    ) -> Result<()> {
        Ok(self.store.for_each(|r| {
            if status.is_none_or(|s| r.status == s) {
                visit(self.view(&r))
            } else {
                true
            }
        })?)
    }

    /// Health: runsc, actor counts, and the records in quarantine.
    pub(crate) fn health(&self) -> Result<Health> {
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
            network: self.network.as_ref().map(|net| atelet_api::NetworkHealth {
                default_mode: net.config().default_mode,
                bridge: net.config().bridge.clone(),
                subnet: net.config().subnet.to_string(),
                addresses_in_use: self.store.ips_held() as u64,
                published_ports: net.ports.bound_ports(),
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

    // ---- lifecycle ----------------------------------------------------------

    /// Carries out `op` on actor `id` and answers the actor as it is after
    /// it; for [`Op::Delete`], `None` (the actor is gone).
    pub(crate) async fn act(self: &Arc<Self>, id: &str, op: Op) -> Result<Option<Actor>> {
        match op {
            Op::Start => self.start(id).await.map(Some),
            Op::Suspend => self.suspend(id).await.map(Some),
            Op::Resume => self.resume(id).await.map(Some),
            Op::Pause => self.pause(id).await.map(Some),
            Op::Stop => self.stop(id).await.map(Some),
            Op::Delete => self.delete(id).await.map(|()| None),
        }
    }

    /// `POST /v1/actors/{id}/start`.
    pub(crate) async fn start(self: &Arc<Self>, id: &str) -> Result<Actor> {
        self.measured(Op::Start.as_str(), id, self.start_inner(id))
            .await
    }

    async fn start_inner(self: &Arc<Self>, id: &str) -> Result<Actor> {
        let (_step, mut rec) = self.begin_step(id, Op::Start).await?;
        // Before anything changes: a refusal leaves the actor as it was.
        let reservation =
            self.reserve_memory(id, SandboxResources::of(&rec.spec).limits.memory_bytes)?;
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
        self.start_locked(&mut rec, "start", None, reservation)
            .await?;
        Ok(rec.to_api())
    }

    /// Boots `rec` from its image; `image` is the one create already
    /// resolved, else it is resolved again, under the policy in force now.
    /// `_memory` is the actor's admission under `max_memory_commit`, held
    /// until its status says it holds a sandbox.
    async fn start_locked(
        self: &Arc<Self>,
        rec: &mut ActorRecord,
        op: &'static str,
        image: Option<ResolvedImage>,
        _memory: limits::MemoryReservation,
    ) -> Result<()> {
        let t0 = Instant::now();
        let version = self.runtime.ensure_available().map_err(runtime_err(op))?;
        let image = match image {
            Some(i) => i,
            None => {
                let reference = &rec.spec.containers[0].image;
                self.policy
                    .check_image("spec.containers[0].image", reference)?;
                // A registry image stays at the digest the actor was
                // created with; a local one is read again as it is now.
                if atelet_api::ImageRef::parse(reference).is_ok_and(|r| r.registry_host().is_some())
                {
                    self.images
                        .resolve_recorded(reference, rec.image_digest.as_deref())
                        .await?
                } else {
                    self.images.resolve(reference).await?
                }
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
        if let Err(e) = self.await_ready(rec).await {
            // The sandbox goes: an actor that never became ready is FAILED,
            // not RUNNING unannounced.
            self.end_unready(rec).await;
            self.transition(rec, ActorStatus::Failed, "not ready", e.to_string())
                .await?;
            return Err(e);
        }
        self.serve(rec);
        rec.last_active_at = Some(now_rfc3339());
        self.note_busy(&rec.id);
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
        // This incarnation's own cgroup, with the limits on record now.
        // runsc would take a cgroup left by an earlier sandbox of the same
        // name as it is, without the limits: it must not exist.
        if let Err(e) = self.cgroups.remove(&cid) {
            rec.container = None;
            return Err(ServiceError::Internal(format!(
                "the cgroup {cid} of an earlier sandbox is still in use ({e}); \
                 the actor would run without its limits"
            )));
        }
        let placement = Placement {
            cgroups_path: self.cgroups.path_of(&cid),
            resources: SandboxResources::of(&rec.spec),
        };
        if let Err(e) = self.bundles.place(&rec.id, &placement) {
            rec.container = None;
            return Err(e.into());
        }
        let spec = self.launch_spec(rec, &cid, launch.bundle);
        // Held until runsc has started the sandbox, which then holds the
        // namespace itself.
        let attachment = match self.attach_network(rec).await {
            Ok(a) => a,
            Err(e) => {
                rec.container = None;
                return Err(e);
            }
        };
        let launched = match launch.image_dir {
            None => self.runtime.run(&spec).await,
            Some(dir) => self.runtime.restore(&spec, dir).await,
        };
        drop(attachment);
        match launched {
            Ok(l) => {
                if let Some(c) = rec.container.as_mut() {
                    c.pid = Some(l.pid);
                }
                self.watch_exit(rec.id.clone(), cid, l.exit);
                Ok(())
            }
            Err(e) => {
                self.detach_network(&rec.id).await;
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
    pub(crate) async fn stop(self: &Arc<Self>, id: &str) -> Result<Actor> {
        self.measured(Op::Stop.as_str(), id, self.stop_inner(id))
            .await
    }

    async fn stop_inner(self: &Arc<Self>, id: &str) -> Result<Actor> {
        let (_step, mut rec) = self.begin_step(id, Op::Stop).await?;
        if rec.status == ActorStatus::Failed && rec.container.is_none() {
            return Err(transition_error(Op::Stop, &rec));
        }
        // Their clients would otherwise wait on a sandbox that is gone.
        self.kill_execs(id, EXEC_KILL_WAIT).await;
        self.forget_activity(id);
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
            self.detach_network(id).await;
        }
        rec.pending = None;
        if let Some(net) = &self.network {
            // A suspended actor's ports were waking: now they are closed.
            net.ports.set_target(id, None);
        }
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
    pub(crate) fn metrics_text(&self) -> Result<String> {
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
        let _scrape = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        // Only running actors: a gone sandbox's series ends with it.
        self.metrics.actor_cpu_seconds.clear();
        self.metrics.actor_memory_bytes.clear();
        for (actor, usage) in self.running_usage() {
            let labels = crate::metrics::ActorLabels { actor };
            if let Some(cpu) = usage.cpu_seconds {
                self.metrics
                    .actor_cpu_seconds
                    .get_or_create(&labels)
                    .inc_by(cpu);
            }
            if let Some(mem) = usage.memory_bytes {
                self.metrics
                    .actor_memory_bytes
                    .get_or_create(&labels)
                    .set(i64::try_from(mem).unwrap_or(i64::MAX));
            }
        }
        self.metrics
            .encode()
            .map_err(|e| ServiceError::Internal(format!("encoding metrics: {e}")))
    }

    fn launch_spec(&self, rec: &ActorRecord, cid: &str, bundle: PathBuf) -> LaunchSpec {
        LaunchSpec {
            container_id: cid.to_string(),
            bundle,
            log_path: self.log_path(&rec.id),
            sandbox_network: rec.network.mode == NetworkMode::Bridge,
        }
    }

    /// The network layer and the address of a bridged actor.
    fn bridged(&self, rec: &ActorRecord) -> Result<Option<(&Network, std::net::Ipv4Addr)>> {
        if rec.network.mode != NetworkMode::Bridge {
            return Ok(None);
        }
        match (&self.network, rec.network.ip) {
            (Some(net), Some(ip)) => Ok(Some((net, ip))),
            (None, _) => Err(ServiceError::Unavailable(format!(
                "actor {} has a bridged network, but networking is not set up on this daemon",
                rec.id
            ))),
            (Some(_), None) => Err(ServiceError::Internal(format!(
                "actor {} has a bridged network but no address on record",
                rec.id
            ))),
        }
    }

    /// Builds a bridged actor's network for a launch (see
    /// [`Network::attach`]); `None` for other actors.
    async fn attach_network(&self, rec: &ActorRecord) -> Result<Option<Attachment>> {
        let Some((net, ip)) = self.bridged(rec)? else {
            return Ok(None);
        };
        Ok(Some(net.attach(&rec.id, ip).await?))
    }

    /// An actor's sandbox is gone or going: its published ports close new
    /// connections and its veth goes. Failures are logged: what is left,
    /// the next launch or a restart removes.
    pub(super) async fn detach_network(&self, id: &str) {
        if let Some(net) = &self.network {
            net.ports.set_target(id, None);
            if let Err(e) = net.detach(id).await {
                tracing::warn!(actor = %id, error = %e, "removing the actor's veth");
            }
        }
    }

    /// Waits for a freshly launched sandbox's readiness probe, if its
    /// container has one.
    async fn await_ready(&self, rec: &ActorRecord) -> Result<()> {
        let Some(probe) = rec
            .spec
            .containers
            .first()
            .and_then(|c| c.readiness_probe.as_ref())
        else {
            return Ok(());
        };
        let Some((_, ip)) = self.bridged(rec)? else {
            return Ok(());
        };
        let readiness = Readiness::from_api(probe);
        let t0 = Instant::now();
        readiness
            .wait_ready(std::net::IpAddr::V4(ip))
            .await
            .map_err(|e| ServiceError::NotReady(format!("actor {}: {e}", rec.id)))?;
        tracing::info!(actor = %rec.id, probe = %readiness.describe(), waited_ms = t0.elapsed().as_millis() as u64, "ready");
        Ok(())
    }

    /// Removes a sandbox that did not become ready (the record keeps it
    /// if even that fails, for stop, delete or recovery to end).
    async fn end_unready(&self, rec: &mut ActorRecord) {
        if let Some(cid) = rec.container.as_ref().map(|c| c.id.clone()) {
            match self.runtime.delete(&cid, true).await {
                Ok(()) => rec.container = None,
                Err(e) => {
                    tracing::error!(actor = %rec.id, container = %cid, error = %e, "could not remove a sandbox that did not become ready")
                }
            }
        }
        self.detach_network(&rec.id).await;
    }

    /// A running, ready actor's published ports forward to it.
    fn serve(&self, rec: &ActorRecord) {
        if let (Some(net), Some(ip)) = (&self.network, rec.network.ip) {
            net.ports.set_target(&rec.id, Some(ip));
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
            network: match self.bridged(rec)? {
                Some((net, ip)) => Some(BundleNetwork {
                    netns: net.netns_path(&rec.id),
                    files: net.write_files(&rec.id, ip)?,
                }),
                None => None,
            },
        })?)
    }
}

/// How long stop and delete wait for the execs they kill to end (the
/// sandbox's removal ends what is left).
const EXEC_KILL_WAIT: Duration = Duration::from_secs(5);

/// runsc container id of one incarnation: `<actor>_<n>.<node>`. `_` cannot
/// occur in an actor id, so an actor's ids never collide with another's;
/// the node suffix (random per state dir) keeps two daemons on one host
/// apart, since runsc names each sandbox's control socket after the
/// container id in the host-wide abstract namespace.
pub(crate) fn container_id(actor_id: &str, incarnation: u64, node: &str) -> String {
    format!("{actor_id}_{incarnation}.{node}")
}

/// The random id of a state dir, made at its first use and kept in
/// `<state>/node-id`.
pub(crate) fn node_id(state_dir: &std::path::Path) -> Result<String> {
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

/// Snapshot ids sort in creation order.
pub(crate) fn snapshot_id(seq: u64) -> String {
    format!("snap-{seq:06}")
}

mod create;
mod delete;
mod error;
mod events;
mod exec;
mod images;
mod limits;
mod logs;
mod pause;
mod portable;
mod recovery;
mod supervision;
mod suspend;
#[cfg(test)]
mod tests;
mod tiering;
mod upload;

pub(crate) use error::ServiceError;
use error::{runtime_err, snapshot_err, transition_error, Result};
pub(crate) use exec::{ExecInput, ExecOutput, ExecSession, HangUp, DEFAULT_MAX_EXECS};
use logs::rotated;
pub(crate) use recovery::RECOVERY_RETRY;
pub(crate) use tiering::{TieringConfig, DEFAULT_IDLE_CPU_MILLICORES, DEFAULT_TIERING_INTERVAL};
