//! Suspend and resume: checkpoint to a committed snapshot, restore from
//! it, and bring an actor back from an uncommitted image when a commit
//! fails.

use super::pause::{Cause, Tier};
use super::*;

/// Below this much free space a suspend measures the sandbox first: the
/// machine's memory and swap (`MemTotal` + `SwapTotal`). A checkpoint image
/// holds what the sandbox has in memory, so no image, and no set of images
/// written at once, can be larger; with more free space than that, the
/// `runsc usage` call (10–30 ms) is skipped. Unknown: always measure.
pub(crate) fn space_check_below() -> u64 {
    static BOUND: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BOUND.get_or_init(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| memory_and_swap(&text))
            .unwrap_or(u64::MAX)
    })
}

/// `MemTotal` + `SwapTotal` of a `/proc/meminfo` text, in bytes.
fn memory_and_swap(meminfo: &str) -> Option<u64> {
    let field = |name: &str| crate::fsutil::meminfo_field(meminfo, name);
    field("MemTotal:")?.checked_add(field("SwapTotal:").unwrap_or(0))
}

/// Manifest and filesystem slack added to a snapshot's estimate.
pub(super) const SNAPSHOT_OVERHEAD: u64 = 1 << 20;

/// Space held for a checkpoint in flight; released on drop.
pub(super) struct SpaceReservation {
    counter: Option<Arc<AtomicU64>>,
    bytes: u64,
}

impl SpaceReservation {
    pub(super) fn none() -> SpaceReservation {
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

pub(super) fn spec_hash(rec: &ActorRecord) -> String {
    sha256_hex(&serde_json::to_vec(&rec.spec).unwrap_or_default())
}

impl<R: Runtime> ActorService<R> {
    /// `POST /v1/actors/{id}/suspend`.
    pub(crate) async fn suspend(self: &Arc<Self>, id: &str) -> Result<Actor> {
        self.suspend_with(id, false).await
    }

    /// `POST /v1/actors/{id}/suspend[?force=true]`: `force` kills the
    /// actor's running execs first; without it a suspend refuses while
    /// any runs (see `exec`).
    pub(crate) async fn suspend_with(self: &Arc<Self>, id: &str, force: bool) -> Result<Actor> {
        self.suspend_because(id, force, Cause::Request).await
    }

    /// A suspend asked for by `cause` (its events give it as the reason).
    pub(super) async fn suspend_because(
        self: &Arc<Self>,
        id: &str,
        force: bool,
        cause: Cause,
    ) -> Result<Actor> {
        self.measured(
            Op::Suspend.as_str(),
            id,
            self.suspend_inner(id, force, cause),
        )
        .await
    }

    pub(super) async fn suspend_inner(
        self: &Arc<Self>,
        id: &str,
        force: bool,
        cause: Cause,
    ) -> Result<Actor> {
        let t0 = Instant::now();
        let (_step, mut rec) = self.begin_step(id, Op::Suspend).await?;
        // RUNNING or PAUSED: where a suspend that fails leaves it.
        let from = rec.status;
        if rec.spec.containers.len() > 1 {
            return Err(ServiceError::NotSupported(format!(
                "cannot suspend actor {id}: multi-container actors cannot be restored by this runsc"
            )));
        }
        self.settle_execs_before("suspend", id, force).await?;
        let version = self
            .runtime
            .ensure_available()
            .map_err(runtime_err("suspend"))?;
        let Some(cid) = rec.container.as_ref().map(|c| c.id.clone()) else {
            return Err(ServiceError::Internal(format!(
                "actor {id} is {from} but has no container on record"
            )));
        };
        // From here on its published ports take no new connection; every
        // way out that leaves the actor as it was opens them again.
        self.refuse_uncheckpointable_connections(&rec)?;
        let _space = match self.reserve_snapshot_space(id, &cid).await {
            Ok(s) => s,
            Err(e) => {
                self.reopen_ports(&rec, from);
                return Err(e);
            }
        };
        rec.snapshot_seq += 1;
        let snap_id = snapshot_id(rec.snapshot_seq);
        rec.pending_snapshot = Some(snap_id.clone());
        if let Err(e) = self
            .transition(
                &mut rec,
                ActorStatus::Suspending,
                cause.reason("suspend"),
                "",
            )
            .await
        {
            self.reopen_ports(&rec, from);
            return Err(e);
        }

        let pending = match self.snapshots.begin(id, &snap_id) {
            Ok(p) => p,
            Err(e) => {
                rec.pending_snapshot = None;
                let err = snapshot_err(format!("suspending actor {id}"))(e);
                self.reopen_ports(&rec, from);
                self.transition(
                    &mut rec,
                    from,
                    "suspend failed",
                    format!("suspend failed: {err}"),
                )
                .await?;
                return Err(err);
            }
        };
        // New connections to its published ports are closed from here on:
        // the checkpoint stops the sandbox.
        if let Some(net) = &self.network {
            net.ports.set_target(id, None);
        }
        let t_ck = Instant::now();
        if let Err(e) = self.runtime.checkpoint(&cid, &pending.dir).await {
            let err = runtime_err(format!("suspending actor {id}"))(e);
            let _ = self.snapshots.discard(&pending);
            rec.pending_snapshot = None;
            // Only a definite answer counts as dead: if runsc cannot say,
            // the actor stays RUNNING and its exit watcher speaks later.
            let alive = match self.runtime.state(&cid).await {
                Ok(Some(s)) => s.is_running() || s.is_paused(),
                Ok(None) => false,
                Err(_) => true,
            };
            if alive {
                self.reopen_ports(&rec, from);
                self.transition(
                    &mut rec,
                    from,
                    "suspend failed",
                    format!("suspend failed: {err}"),
                )
                .await?;
            } else {
                rec.container = None;
                self.detach_network(id).await;
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
        // What the snapshot is of, for clones and other nodes; without it
        // the snapshot still serves this actor.
        if let Err(e) = self.snapshots.write_origin(&pending, &self.origin_of(&rec)) {
            tracing::warn!(actor = %id, error = %e, "cannot write the snapshot's origin: only this actor can resume it");
        }

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
                // pending_snapshot stays set until the revive settles, so
                // that recovery retries it from the same image.
                self.cleanup_container(cid);
                let res = self
                    .revive_from(&mut rec, &pending.dir, &err, "suspend failed")
                    .await;
                let _ = self.snapshots.discard(&pending);
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
            remote: self.new_remote_copy(),
        });
        // With a remote store, retention waits for the upload (`upload`).
        let pruned: Vec<SnapshotRecord> = if self.remote.is_none()
            && self.retention > 0
            && rec.snapshots.len() > self.retention
        {
            let n = rec.snapshots.len() - self.retention;
            rec.snapshots.drain(..n).collect()
        } else {
            Vec::new()
        };
        rec.pending_snapshot = None;
        rec.container = None;
        self.transition(
            &mut rec,
            ActorStatus::Suspended,
            cause.reason("suspended"),
            "",
        )
        .await?;
        self.forget_activity(id);
        // The namespace ends with the sandbox; the address stays the
        // actor's, and the resume builds the network again around it.
        self.detach_network(id).await;
        self.rest_ports(&rec);
        self.queue_upload(id, &committed.id);
        tracing::info!(actor = %id, op = "suspend", snapshot = %committed.id, bytes = committed.size_bytes,
            checkpoint_ms, duration_ms = t0.elapsed().as_millis() as u64, "suspended");
        // Off the response path: the checkpointed sandbox's runsc state
        // and snapshots past retention.
        self.cleanup_container(cid);
        if !pruned.is_empty() {
            let snapshots = self.snapshots.clone();
            let id = id.to_string();
            tokio::task::spawn_blocking(move || {
                for s in pruned {
                    if let Err(e) = snapshots.remove(&id, &s.id) {
                        tracing::warn!(actor = %id, snapshot = %s.id, error = %e, "removing old snapshot");
                    }
                }
            });
        }
        Ok(rec.to_api())
    }

    /// Opens the ports of an actor that a suspend leaves as it was
    /// (`status`): forwarded while it runs, waking while it is paused.
    fn reopen_ports(&self, rec: &ActorRecord, status: ActorStatus) {
        if status == ActorStatus::Paused {
            self.rest_ports(rec);
        } else {
            self.serve(rec);
        }
    }

    /// Refuses the suspend of a bridged actor that holds TCP connections
    /// this runsc cannot checkpoint (a refused checkpoint kills the
    /// sandbox): the actor keeps running and the caller may retry. Its
    /// published ports take no new connection while this looks, so that
    /// none starts between the look and the checkpoint.
    fn refuse_uncheckpointable_connections(&self, rec: &ActorRecord) -> Result<()> {
        let (Some(net), Some(ip)) = (&self.network, rec.network.ip) else {
            return Ok(());
        };
        net.ports.set_target(&rec.id, None);
        let held = crate::network::conntrack::held(ip);
        if held.is_empty() {
            return Ok(());
        }
        self.reopen_ports(rec, rec.status);
        let shown: Vec<String> = held.iter().take(5).map(|h| h.to_string()).collect();
        let more = match held.len() {
            n if n > 5 => format!(" and {} more", n - 5),
            _ => String::new(),
        };
        let wait = match held.iter().map(|h| h.clears_in).collect::<Option<Vec<_>>>() {
            Some(all) => format!(
                "retry in {} s, when they are gone",
                all.into_iter().max().unwrap_or(0)
            ),
            None => "close them and retry".to_string(),
        };
        Err(ServiceError::ConnectionsOpen(format!(
            "cannot suspend actor {}: it holds TCP connections that this runsc cannot checkpoint (the checkpoint would kill it): {}{more}; it keeps running: {wait}",
            rec.id,
            shown.join(", ")
        )))
    }

    /// Checks that the snapshot filesystem can take this actor's checkpoint
    /// before runsc starts: a checkpoint that runs out of space kills the
    /// sandbox (runsc gives no way back), so it must not be tried. With
    /// plenty of space the check costs one statvfs; below
    /// [`space_check_below`] it asks runsc how much memory the sandbox uses
    /// (an upper bound of the compressed image) and reserves that much until
    /// the snapshot is committed.
    pub(super) async fn reserve_snapshot_space(
        &self,
        id: &str,
        cid: &str,
    ) -> Result<SpaceReservation> {
        let dir = self.snapshots.actor_dir("");
        let free = nix::sys::statvfs::statvfs(&dir)
            .map(|s| s.blocks_available() * s.fragment_size())
            .map_err(|e| ServiceError::Internal(format!("statvfs {}: {e}", dir.display())))?;
        let reserved = self.reserved_space.load(Ordering::SeqCst);
        let available = free.saturating_sub(reserved);
        if available >= space_check_below() {
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
    /// failed, so the actor keeps running. Ends RUNNING or FAILED, with the
    /// pending snapshot cleared. `reason` goes in the transitions' events
    /// (`suspend failed`, or `recovery` when a restart found the image).
    pub(super) async fn revive_from(
        self: &Arc<Self>,
        rec: &mut ActorRecord,
        image_dir: &std::path::Path,
        why: &ServiceError,
        reason: &'static str,
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
            reason,
            message: format!("suspend failed: {why}"),
        };
        let launched = self.launch(rec, launch).await;
        rec.pending_snapshot = None;
        match launched {
            Ok(()) => {
                self.serve(rec);
                self.transition(
                    rec,
                    ActorStatus::Running,
                    reason,
                    format!("suspend failed, actor kept running: {why}"),
                )
                .await
            }
            Err(e) => {
                self.transition(
                    rec,
                    ActorStatus::Failed,
                    reason,
                    format!("suspend failed ({why}) and the actor could not be restored: {e}"),
                )
                .await
            }
        }
    }

    /// `POST /v1/actors/{id}/resume`.
    pub(crate) async fn resume(self: &Arc<Self>, id: &str) -> Result<Actor> {
        self.resume_because(id, Cause::Request).await
    }

    /// A resume asked for by `cause` (a request, or a connection).
    pub(super) async fn resume_because(self: &Arc<Self>, id: &str, cause: Cause) -> Result<Actor> {
        self.measured(Op::Resume.as_str(), id, self.resume_inner(id, cause))
            .await
    }

    async fn resume_inner(self: &Arc<Self>, id: &str, cause: Cause) -> Result<Actor> {
        let t0 = Instant::now();
        let (_step, mut rec) = self.begin_step(id, Op::Resume).await?;
        let from = rec.status;
        if from == ActorStatus::Paused {
            self.unpause_locked(&mut rec, t0, cause).await?;
            return Ok(rec.to_api());
        }
        // A FAILED actor goes back to its latest committed snapshot; one
        // whose half-made sandbox is still on record must be stopped first.
        if from == ActorStatus::Failed && (rec.snapshots.is_empty() || rec.container.is_some()) {
            return Err(transition_error(Op::Resume, &rec));
        }
        let Some(latest) = rec.snapshots.last().cloned() else {
            return Err(ServiceError::Internal(format!(
                "actor {id} is SUSPENDED but has no snapshot on record"
            )));
        };
        // Before anything changes (a download, a transition): a refusal
        // leaves the actor as it was.
        let _memory =
            self.reserve_memory(id, SandboxResources::of(&rec.spec).limits.memory_bytes)?;
        let version = self
            .runtime
            .ensure_available()
            .map_err(runtime_err("resume"))?;
        self.fetch_if_remote(&mut rec, &latest).await?;
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
            reason: cause.reason("resume"),
            message: String::new(),
        };
        if let Err(e) = self.launch(&mut rec, launch).await {
            // Back to where it was (SUSPENDED or FAILED), snapshot intact;
            // but if a half-restored sandbox could not be removed, FAILED
            // keeps it on record so that it is stopped before anything
            // starts again.
            let to = if rec.container.is_some() {
                ActorStatus::Failed
            } else {
                from
            };
            self.transition(&mut rec, to, "resume failed", format!("resume failed: {e}"))
                .await?;
            return Err(e);
        }
        if let Err(e) = self.await_ready(&rec).await {
            // The restored sandbox goes and the actor is back where it was,
            // its snapshot intact: a later resume can try again.
            self.end_unready(&mut rec).await;
            let to = if rec.container.is_some() {
                ActorStatus::Failed
            } else {
                from
            };
            self.transition(&mut rec, to, "not ready", e.to_string())
                .await?;
            return Err(e);
        }
        self.serve(&rec);
        self.activated(&mut rec, Tier::Suspended, t0);
        self.transition(&mut rec, ActorStatus::Running, cause.reason("resumed"), "")
            .await?;
        tracing::info!(actor = %id, op = "resume", snapshot = %latest.id,
            duration_ms = t0.elapsed().as_millis() as u64, "resumed");
        Ok(rec.to_api())
    }

    /// A snapshot of a newer atelet (its manifest is of a newer major) is
    /// recorded unverified rather than taken for a half-written one and
    /// swept: that atelet can resume it, and a resume here answers why it
    /// cannot.
    pub(super) fn keep_foreign_snapshot(
        &self,
        id: &str,
        snap_id: &str,
        why: &SnapshotError,
    ) -> Option<SnapshotRecord> {
        tracing::warn!(actor = %id, snapshot = %snap_id, error = %why, "keeping on record a snapshot this daemon cannot read");
        let f = match self.snapshots.foreign(id, snap_id) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(actor = %id, snapshot = %snap_id, error = %e, "cannot size the snapshot; not recorded");
                return None;
            }
        };
        Some(SnapshotRecord {
            id: snap_id.to_string(),
            created_at: f.created_at.unwrap_or_else(now_rfc3339),
            size_bytes: f.size_bytes,
            runsc_version: f.runsc_version.unwrap_or_default(),
            remote: None,
        })
    }
}

#[cfg(test)]
mod space_tests {
    use super::*;

    #[test]
    fn the_bound_is_memory_plus_swap() {
        let text = "MemTotal:       24573440 kB\nMemFree:  100 kB\nSwapTotal:       1048576 kB\n";
        assert_eq!(memory_and_swap(text), Some((24573440 + 1048576) * 1024));
        assert_eq!(memory_and_swap("MemTotal: 1024 kB\n"), Some(1 << 20));
        assert_eq!(memory_and_swap("nothing here"), None);
        assert!(space_check_below() > 1 << 20);
    }
}
