//! Crash recovery: at start, sled is reconciled with what runsc and the
//! disk show, and every interrupted step is finished or undone. What is done
//! in each case, and what an operator sees, is the recovery table of
//! docs/failure-modes.md ("The daemon stops, crashes or is killed"); it is
//! decided in `recovery/plan.rs` and carried out here.

use super::*;
use crate::runsc::ContainerState;

mod plan;

use plan::{keeps_pending_snapshot, plan, Observed, Recovery, Sandbox};

/// What crash recovery did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReconcileReport {
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
    /// Actors recovery could not settle, with why (they are left as they
    /// were; the daemon serves the others).
    pub errors: Vec<(String, String)>,
    /// Actors left for [`ActorService::reconcile_deferred`] because runsc
    /// could not tell what runs.
    pub deferred: usize,
    /// `runsc list` failed: unknown containers are not swept yet.
    pub list_failed: bool,
    /// Cgroups of this node's sandboxes that neither runsc nor a record
    /// names any more, removed.
    pub removed_cgroups: Vec<String>,
}

/// How long recovery waits for a sandbox that a completed checkpoint is
/// stopping to end. Seen ≈ 1.2 s for a small actor; the bound only delays
/// the rare case of a checkpoint that failed and left its sandbox running.
pub(super) const CHECKPOINT_WIND_DOWN: Duration = Duration::from_secs(30);

/// How often a deferred recovery asks runsc for its containers again.
pub(crate) const RECOVERY_RETRY: Duration = Duration::from_secs(5);

impl<R: Runtime> ActorService<R> {
    /// Reconciles sled with runsc and the disk after a start (see
    /// docs/failure-modes.md). Run before serving requests.
    pub(crate) async fn reconcile(self: &Arc<Self>) -> Result<ReconcileReport> {
        let mut report = ReconcileReport {
            settled_commands: self.runtime.settle().await,
            ..Default::default()
        };
        let mut containers = None;
        for attempt in 1..=3 {
            match self.runtime.list().await {
                Ok(list) => {
                    containers = Some(list);
                    break;
                }
                Err(e) => {
                    tracing::error!(attempt, error = %e, "cannot list runsc containers");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        let ids: Vec<String> = self.store.list()?.into_iter().map(|r| r.id).collect();
        match containers {
            Some(list) => self.reconcile_with(ids, list, &mut report).await?,
            None => {
                // Nothing is decided yet: the actors wait (their steps but
                // stop and delete answer 503) for `reconcile_deferred`,
                // which settles them one by one at once, and sweeps unknown
                // containers once runsc lists again. Serving starts now.
                self.unrecovered_ids().extend(ids.iter().cloned());
                report.list_failed = true;
                report.deferred = ids.len();
                tracing::error!(
                    deferred = report.deferred,
                    "runsc cannot list its containers: recovery goes on in the background, every {} s until runsc lists",
                    RECOVERY_RETRY.as_secs()
                );
            }
        }
        self.remove_orphan_dirs(&mut report)?;
        self.recover_network().await;
        Ok(report)
    }

    /// After the actors are settled: published ports are bound again
    /// (forwarding to the actors that run), the node bridge and table set
    /// up again while bridged actors exist, and veths on the bridge that
    /// no running actor owns (a crash between building a network and
    /// starting its sandbox) removed. Failures are logged; the actors are
    /// served either way.
    async fn recover_network(&self) {
        let Some(net) = &self.network else { return };
        let records = match self.store.list() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "recovering actor networks: cannot read the records");
                return;
            }
        };
        // Actors whose records are in quarantine keep what they hold: their
        // sandboxes may run on (recovery leaves them alone).
        let holders = self.store.ip_holders();
        let mut keep: HashSet<String> = self
            .store
            .quarantined()
            .iter()
            .filter(|q| holders.contains(q.as_str()))
            .cloned()
            .collect();
        let mut bridged = keep.len();
        for rec in records
            .iter()
            .filter(|r| r.network.mode == NetworkMode::Bridge)
        {
            bridged += 1;
            // A sandbox on record (running, or being settled by a deferred
            // recovery) keeps its veth.
            if rec.container.is_some() {
                keep.insert(rec.id.clone());
            }
            if let Err(e) = net
                .ports
                .publish(&rec.id, &create::published_ports(&rec.spec))
            {
                tracing::error!(actor = %rec.id, error = %e, "cannot publish the actor's ports again");
            }
            let pid = rec.container.as_ref().and_then(|c| c.pid);
            match (rec.status, pid) {
                (ActorStatus::Running, Some(pid)) => {
                    keep.insert(rec.id.clone());
                    self.serve(rec);
                    if let Err(e) = net.adopt(&rec.id, pid) {
                        tracing::warn!(actor = %rec.id, error = %e, "linking the actor's namespace");
                    }
                }
                (
                    ActorStatus::Paused | ActorStatus::Pausing | ActorStatus::Unpausing,
                    Some(pid),
                ) => {
                    keep.insert(rec.id.clone());
                    self.rest_ports(rec);
                    if let Err(e) = net.adopt(&rec.id, pid) {
                        tracing::warn!(actor = %rec.id, error = %e, "linking the actor's namespace");
                    }
                }
                (ActorStatus::Suspended, _) => self.rest_ports(rec),
                _ => {}
            }
        }
        match net.recover(&keep, bridged).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(removed = n, "removed veths of actors without a sandbox"),
            Err(e) => tracing::error!(error = %e, "recovering the actor network"),
        }
    }

    /// Settles the actors `ids` against the runsc containers `containers`
    /// (the records may have been written after the list was taken only by
    /// steps that hold their actor's lock, which `ids` exclude), then
    /// removes the containers that no record names.
    async fn reconcile_with(
        self: &Arc<Self>,
        ids: Vec<String>,
        containers: Vec<ContainerState>,
        report: &mut ReconcileReport,
    ) -> Result<()> {
        // Containers named by a record before it was settled are not
        // strangers (settling may drop a dead one from the record and
        // leave its runsc state to `cleanup_container`).
        let mut known: HashSet<String> = HashSet::new();
        if !self
            .settle_each(ids, Some(&containers), &mut known, report)
            .await?
        {
            return Ok(());
        }
        // Every record, also of actors created since the list was taken:
        // a record names its container before runsc creates it.
        known.extend(
            self.store
                .list()?
                .into_iter()
                .filter_map(|r| r.container.map(|c| c.id)),
        );
        for c in containers.iter().cloned() {
            if known.contains(&c.id) {
                continue;
            }
            let Ok(_gate) = self.begin_op() else {
                return Ok(());
            };
            // Requests are served during a deferred sweep, and a re-created
            // actor reuses container ids: look again under the actor's
            // lock, which its steps hold while they start a container.
            let actor = c.id.split('_').next().unwrap_or_default().to_string();
            // A record in quarantine may name it: kept, like its files.
            if self.store.is_quarantined(&actor) {
                tracing::warn!(container = %c.id, actor = %actor, "leaving alone a runsc container of an actor whose record is in quarantine");
                continue;
            }
            let _guard = self.locks.lock(&actor).await;
            let record = self.store.get(&actor)?;
            if record.is_none() {
                self.locks.forget(&actor);
            }
            let named = record
                .and_then(|r| r.container)
                .is_some_and(|rc| rc.id == c.id);
            if named {
                continue;
            }
            tracing::warn!(container = %c.id, status = %c.status, "removing a runsc container with no actor record");
            if let Err(e) = self.runtime.delete(&c.id, true).await {
                tracing::error!(container = %c.id, error = %e, "could not remove unknown container");
            }
            report.removed_containers.push(c.id);
        }
        let listed: HashSet<String> = containers
            .into_iter()
            .map(|c| c.id)
            .filter(|id| !report.removed_containers.contains(id))
            .collect();
        report.removed_cgroups = self.sweep_cgroups(&listed)?;
        Ok(())
    }

    /// Settles the actors `ids`, each under its lock, on whether its
    /// sandbox runs: from `containers` (runsc's list) when given, else from
    /// `runsc state` of its own container, in which case an actor runsc
    /// cannot answer for stays in the waiting set. Records the containers
    /// the records named in `known`. Returns false when a shutdown cut the
    /// pass short (a shutdown waits for one actor, not for the pass; what
    /// is left waits for the next start).
    async fn settle_each(
        self: &Arc<Self>,
        ids: Vec<String>,
        containers: Option<&[ContainerState]>,
        known: &mut HashSet<String>,
        report: &mut ReconcileReport,
    ) -> Result<bool> {
        for id in ids {
            let Ok(_gate) = self.begin_op() else {
                return Ok(false);
            };
            let _guard = self.locks.lock(&id).await;
            let Some(rec) = self.store.get(&id)? else {
                self.unrecovered_ids().remove(&id);
                self.locks.forget(&id);
                continue;
            };
            let running = match (&rec.container, containers) {
                (None, _) => Sandbox::Gone,
                (Some(c), Some(list)) => {
                    known.insert(c.id.clone());
                    list.iter()
                        .find(|s| s.id == c.id)
                        .map_or(Sandbox::Gone, sandbox_of)
                }
                (Some(c), None) => match self.runtime.state(&c.id).await {
                    Ok(Some(state)) => sandbox_of(&state),
                    // "Not found" is read from runsc's words, which a
                    // broken runsc may say of itself: believe it only
                    // of a sandbox whose process is gone too (a start cut
                    // short before the pid was known waits for the list).
                    Ok(None) if c.pid.is_some_and(|pid| !crate::runsc::pid_alive(pid)) => {
                        Sandbox::Gone
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::debug!(actor = %id, error = %e, "runsc cannot tell the actor's state yet");
                        continue;
                    }
                },
            };
            // Settled from here on: its steps wait for the lock we hold.
            self.unrecovered_ids().remove(&id);
            // One actor that cannot be settled must not keep the daemon
            // (and every other actor) from being served.
            if let Err(e) = self.reconcile_one(rec, running, report).await {
                tracing::error!(actor = %id, error = %e, "recovery could not settle the actor");
                report.errors.push((id, e.to_string()));
            }
        }
        Ok(true)
    }

    /// Finishes a recovery that [`ActorService::reconcile`] could not:
    /// every [`RECOVERY_RETRY`] it settles the actors still waiting (on
    /// the list when runsc gives it, else one by one) and, once runsc
    /// lists, sweeps the containers no record names. Returns when that is
    /// done, or when the daemon shuts down.
    pub(crate) async fn reconcile_deferred(self: &Arc<Self>) -> Option<ReconcileReport> {
        let mut report = ReconcileReport::default();
        let mut attempt: u64 = 0;
        loop {
            // The first pass at once (the start already waited for runsc).
            if attempt > 0 {
                tokio::time::sleep(RECOVERY_RETRY).await;
            }
            attempt += 1;
            if self.draining.load(Ordering::SeqCst) {
                return None;
            }
            let ids: Vec<String> = self.unrecovered_ids().iter().cloned().collect();
            let result = match self.runtime.list().await {
                Ok(list) => self
                    .reconcile_with(ids, list, &mut report)
                    .await
                    .map(|()| true),
                Err(e) => {
                    // Once a minute is enough to say it again.
                    if attempt % 12 == 1 {
                        tracing::warn!(error = %e, waiting = ids.len(), "deferred recovery: runsc still cannot list its containers");
                    }
                    self.settle_each(ids, None, &mut HashSet::new(), &mut report)
                        .await
                        .map(|_| false)
                }
            };
            match result {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    // A store error: what was not reached stays as
                    // recorded, served rather than 503 for ever.
                    self.unrecovered_ids().clear();
                    tracing::error!(error = %e, "deferred recovery failed");
                    report.errors.push((String::new(), e.to_string()));
                    break;
                }
            }
        }
        if self.draining.load(Ordering::SeqCst) {
            return None;
        }
        tracing::info!(
            adopted = report.adopted.len(),
            resolved = ?report.resolved,
            removed_containers = ?report.removed_containers,
            errors = ?report.errors,
            "deferred recovery done"
        );
        Some(report)
    }

    /// Actors waiting for a deferred recovery.
    pub(crate) fn unrecovered_count(&self) -> usize {
        self.unrecovered_ids().len()
    }

    pub(super) fn unrecovered_ids(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.unrecovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether actor `id` waits for a deferred recovery.
    pub(super) fn is_unrecovered(&self, id: &str) -> bool {
        self.unrecovered_ids().contains(id)
    }

    /// Settles one actor after a restart: looks at what runsc (`running`,
    /// the sandbox pid when its container runs) and the disk show, plans
    /// what to do ([`plan()`], the recovery table of docs/failure-modes.md)
    /// and carries it out ([`ActorService::execute`]).
    pub(super) async fn reconcile_one(
        self: &Arc<Self>,
        mut rec: ActorRecord,
        running: Sandbox,
        report: &mut ReconcileReport,
    ) -> Result<()> {
        let id = rec.id.clone();
        let before = rec.status;
        let cid = rec.container.as_ref().map(|c| c.id.clone());
        let mut observed = self.observe(&rec, running);
        let recovery = loop {
            match plan(&rec, &observed) {
                Recovery::WaitWindDown { pid } => {
                    let sandbox = if self.runtime.wait_gone(pid, CHECKPOINT_WIND_DOWN).await {
                        tracing::info!(actor = %id, pid, "the checkpointed sandbox ended: the suspend had completed its checkpoint");
                        Sandbox::Gone
                    } else {
                        Sandbox::StillRunning(pid)
                    };
                    observed = self.observe(&rec, sandbox);
                }
                recovery => break recovery,
            }
        };
        self.sweep_snapshots(&rec, keeps_pending_snapshot(&rec, &observed), report)?;
        self.execute(&mut rec, cid.as_deref(), recovery, report)
            .await?;
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

    /// What the disk shows of `rec`'s pending snapshot, beside `sandbox`
    /// from runsc: what [`plan()`] decides on.
    /// Adopts the sandbox `pid` of `rec` as `status` (RUNNING or PAUSED;
    /// recorded with `message` when that changes the status): nothing is
    /// in flight any more, its ports serve or wake, and it is watched again.
    async fn adopt_as(
        self: &Arc<Self>,
        rec: &mut ActorRecord,
        cid: Option<&str>,
        pid: i32,
        status: ActorStatus,
        message: Option<String>,
    ) -> Result<()> {
        let id = rec.id.clone();
        if let Some(c) = rec.container.as_mut() {
            c.pid = Some(pid);
        }
        rec.pending = None;
        if let Some(p) = rec.pending_snapshot.take() {
            let _ = self.snapshots.remove(&id, &format!("{TMP_PREFIX}{p}"));
        }
        match message {
            None => self.store.save(rec, None).await?,
            Some(message) => self.transition(rec, status, "recovery", message).await?,
        }
        if status == ActorStatus::Paused {
            self.rest_ports(rec);
            self.note_paused(&id);
        } else {
            self.serve(rec);
            self.note_busy(&id);
        }
        if let Some(cid) = cid {
            let exit = self.runtime.adopt(cid, pid);
            self.watch_exit(id, cid.to_string(), exit);
        }
        Ok(())
    }

    fn observe(&self, rec: &ActorRecord, sandbox: Sandbox) -> Observed {
        // Verifying reads the whole image: only where it decides something,
        // a SUSPENDING actor whose sandbox is gone or, after the wind-down
        // wait, still tearing down.
        let committed = match (&rec.pending_snapshot, rec.status, sandbox) {
            (
                Some(p),
                ActorStatus::Suspending,
                Sandbox::Gone | Sandbox::StillRunning(_) | Sandbox::Paused(_),
            ) => self.recover_snapshot(&rec.id, p),
            _ => None,
        };
        Observed {
            sandbox,
            pending_image: self.pending_image(rec),
            pending_renamed: rec
                .pending_snapshot
                .as_deref()
                .is_some_and(|p| self.snapshots.dir(&rec.id, p).is_dir()),
            committed,
        }
    }

    /// Removes the actor's snapshot directories that are not on record
    /// (half-written ones), except the pending snapshot's when
    /// `keep_pending` (see [`keeps_pending_snapshot`]).
    fn sweep_snapshots(
        &self,
        rec: &ActorRecord,
        keep_pending: bool,
        report: &mut ReconcileReport,
    ) -> Result<()> {
        let recorded: HashSet<&str> = rec.snapshots.iter().map(|s| s.id.as_str()).collect();
        let pending = rec.pending_snapshot.as_deref().filter(|_| keep_pending);
        for entry in self
            .snapshots
            .entries(&rec.id)
            .map_err(snapshot_err("recovery"))?
        {
            let keep = recorded.contains(entry.as_str())
                || pending.is_some_and(|p| entry == p || entry.strip_prefix(TMP_PREFIX) == Some(p));
            if !keep {
                let _ = self.snapshots.remove(&rec.id, &entry);
                report
                    .removed_dirs
                    .push(self.snapshots.dir(&rec.id, &entry));
            }
        }
        Ok(())
    }

    /// Carries out what [`plan()`] decided for `rec`, whose container on
    /// record (before recovery) is `cid`.
    async fn execute(
        self: &Arc<Self>,
        rec: &mut ActorRecord,
        cid: Option<&str>,
        recovery: Recovery,
        report: &mut ReconcileReport,
    ) -> Result<()> {
        let id = rec.id.clone();
        match recovery {
            Recovery::Adopt { pid, message } => {
                self.adopt_as(rec, cid, pid, ActorStatus::Running, message)
                    .await?;
                report.adopted.push(id);
            }
            Recovery::AdoptPaused { pid, message } => {
                self.adopt_as(rec, cid, pid, ActorStatus::Paused, message)
                    .await?;
                report.adopted.push(id);
            }
            Recovery::FinishStop { end_sandbox } => {
                if let Some(cid) = cid.filter(|_| end_sandbox) {
                    self.runtime
                        .delete(cid, true)
                        .await
                        .map_err(runtime_err("finishing an interrupted stop"))?;
                }
                rec.container = None;
                rec.pending = None;
                self.transition(rec, ActorStatus::Stopped, "recovery", "stopped by request")
                    .await?;
            }
            Recovery::MarkFailed { message } => {
                // A sandbox the OOM killer ended while the daemon was down
                // still has its cgroup (runsc delete comes after this).
                let message = match cid.and_then(|c| self.oom_message(c, rec)) {
                    Some(oom) => format!("{oom}; {message}"),
                    None => message,
                };
                rec.container = None;
                rec.pending = None;
                rec.pending_snapshot = None;
                self.transition(rec, ActorStatus::Failed, "recovery", message)
                    .await?;
            }
            Recovery::CommitSnapshot {
                snapshot,
                end_sandbox,
            } => {
                if let (true, Some(cid)) = (end_sandbox, cid) {
                    self.runtime
                        .delete(cid, true)
                        .await
                        .map_err(runtime_err("ending a checkpointed sandbox"))?;
                }
                let leftover = self.pending_image(rec);
                rec.container = None;
                rec.pending_snapshot = None;
                rec.snapshots.push(snapshot);
                self.transition(
                    rec,
                    ActorStatus::Suspended,
                    "recovery",
                    "suspend completed before the daemon stopped",
                )
                .await?;
                if let Some(dir) = leftover {
                    let _ = remove_dir_if_exists(&dir);
                }
            }
            Recovery::Revive { image } => {
                let why = ServiceError::Internal(
                    "the daemon stopped before the snapshot was committed".to_string(),
                );
                self.revive_from(rec, &image, &why, "recovery").await?;
                if rec.status == ActorStatus::Running {
                    report.adopted.push(id);
                }
                let _ = remove_dir_if_exists(&image);
            }
            Recovery::BackToSuspended => {
                rec.container = None;
                self.transition(
                    rec,
                    ActorStatus::Suspended,
                    "recovery",
                    "resume interrupted by a daemon restart; the snapshot is intact",
                )
                .await?;
            }
            Recovery::EndStraySandbox => {
                if let Some(cid) = cid {
                    let _ = self.runtime.delete(cid, true).await;
                }
                rec.container = None;
                self.store.save(rec, None).await?;
            }
            Recovery::ForgetContainer => {
                rec.container = None;
                self.store.save(rec, None).await?;
            }
            // A wind-down is waited for before anything is carried out.
            Recovery::WaitWindDown { .. } | Recovery::Nothing => {}
        }
        Ok(())
    }

    /// The temporary directory of the actor's pending snapshot, if it holds
    /// a checkpoint image.
    fn pending_image(&self, rec: &ActorRecord) -> Option<PathBuf> {
        rec.pending_snapshot
            .as_deref()
            .map(|p| {
                self.snapshots
                    .actor_dir(&rec.id)
                    .join(format!("{TMP_PREFIX}{p}"))
            })
            .filter(|d| d.join("checkpoint.img").is_file())
    }

    /// A snapshot that was renamed into place but not recorded: kept if its
    /// manifest and files check out in full, or if its manifest is of a
    /// newer major (see [`Self::keep_foreign_snapshot`]).
    pub(super) fn recover_snapshot(&self, id: &str, snap_id: &str) -> Option<SnapshotRecord> {
        let manifest = match self.snapshots.manifest(id, snap_id) {
            Ok(m) => m,
            Err(e @ SnapshotError::Newer { .. }) => {
                return self.keep_foreign_snapshot(id, snap_id, &e);
            }
            Err(_) => return None,
        };
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
            remote: None,
        })
    }

    /// Directories of actors that have no record (an interrupted delete).
    pub(super) fn remove_orphan_dirs(&self, report: &mut ReconcileReport) -> Result<()> {
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
                if let Some(id) = name
                    .strip_suffix(".log")
                    .or_else(|| name.strip_suffix(".log.1"))
                {
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

/// What runsc's state of a container says of its sandbox.
fn sandbox_of(state: &ContainerState) -> Sandbox {
    if state.is_running() {
        Sandbox::Running(state.pid)
    } else if state.is_paused() {
        Sandbox::Paused(state.pid)
    } else {
        Sandbox::Gone
    }
}
