//! Pause and unpause (`runsc pause` / `runsc resume`): a frozen sandbox
//! keeps its memory and uses no CPU, and it is thawed in tens of
//! milliseconds where a restore takes hundreds. Also the wake of a paused
//! or suspended actor by a connection to one of its published ports.

use super::*;

/// Where an activation (a resume) brought the actor back from: the
/// `activatedFrom` of the record and the label of the activation metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// Thawed from PAUSED.
    Paused,
    /// Restored from a snapshot (SUSPENDED or FAILED).
    Suspended,
}

impl Tier {
    /// `paused` or `suspended`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Tier::Paused => "paused",
            Tier::Suspended => "suspended",
        }
    }
}

/// Why a pause, suspend or resume happened, as its events say: asked for
/// through the API, or decided by the daemon (idle, memory pressure) or
/// by a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// `POST …/pause`, `…/suspend`, `…/resume`.
    Request,
    /// The actor's idle policy (`lifecycle`).
    Idle,
    /// `[tiering]`: paused actors hold too much memory, or the node has
    /// too little available.
    MemoryPressure,
    /// A connection to a published port.
    Connection,
}

impl Cause {
    /// The reason a transition's event gives: `requested` (what a request
    /// says at that point: `pause`, `paused`, `suspend`, `resumed`…), or
    /// the cause when the daemon or a connection decided.
    pub(crate) fn reason(self, requested: &'static str) -> &'static str {
        match self {
            Cause::Request => requested,
            Cause::Idle => "idle",
            Cause::MemoryPressure => "memory-pressure",
            Cause::Connection => "connection",
        }
    }
}

impl<R: Runtime> ActorService<R> {
    /// `POST /v1/actors/{id}/pause`.
    pub(crate) async fn pause(self: &Arc<Self>, id: &str) -> Result<Actor> {
        self.pause_because(id, Cause::Request).await
    }

    pub(super) async fn pause_because(self: &Arc<Self>, id: &str, cause: Cause) -> Result<Actor> {
        self.measured(Op::Pause.as_str(), id, self.pause_inner(id, cause))
            .await
    }

    async fn pause_inner(self: &Arc<Self>, id: &str, cause: Cause) -> Result<Actor> {
        let t0 = Instant::now();
        let (_step, mut rec) = self.begin_step(id, Op::Pause).await?;
        // A frozen sandbox would leave an exec's client hanging.
        self.settle_execs_before("pause", id, false).await?;
        self.runtime
            .ensure_available()
            .map_err(runtime_err("pause"))?;
        let cid = running_container(&rec)?;
        rec.last_active_at = Some(self.last_busy_rfc3339(id));
        self.transition(&mut rec, ActorStatus::Pausing, cause.reason("pause"), "")
            .await?;
        // From here on a connection waits for the thaw (or causes it)
        // rather than reach a frozen sandbox.
        self.rest_ports(&rec);
        if let Err(e) = self.runtime.freeze(&cid, true).await {
            let err = runtime_err(format!("pausing actor {id}"))(e);
            // runsc may fail after it froze the sandbox: what it is now
            // decides.
            let frozen = matches!(self.runtime.state(&cid).await, Ok(Some(s)) if s.is_paused());
            if !frozen {
                // Running, or gone (its exit watcher records that).
                self.serve(&rec);
                self.transition(
                    &mut rec,
                    ActorStatus::Running,
                    "pause failed",
                    format!("pause failed: {err}"),
                )
                .await?;
                return Err(err);
            }
        }
        self.transition(&mut rec, ActorStatus::Paused, cause.reason("paused"), "")
            .await?;
        self.note_paused(id);
        tracing::info!(actor = %id, op = "pause", reason = cause.reason("pause"),
            duration_ms = t0.elapsed().as_millis() as u64, "paused");
        // The memory it holds may now be more than paused actors may.
        self.tiering_wake.notify_one();
        Ok(rec.to_api())
    }

    /// Thaws the PAUSED actor `rec` (its lock held): RUNNING, or back to
    /// PAUSED if runsc refuses, or FAILED if the sandbox is gone.
    pub(super) async fn unpause_locked(
        self: &Arc<Self>,
        rec: &mut ActorRecord,
        t0: Instant,
        cause: Cause,
    ) -> Result<()> {
        let id = rec.id.clone();
        self.runtime
            .ensure_available()
            .map_err(runtime_err("resume"))?;
        let cid = running_container(rec)?;
        self.transition(rec, ActorStatus::Unpausing, cause.reason("resume"), "")
            .await?;
        if let Err(e) = self.runtime.freeze(&cid, false).await {
            let err = runtime_err(format!("resuming paused actor {id}"))(e);
            // What the sandbox is now decides: thawed all the same, still
            // paused (or runsc cannot say: a later resume tries again), or
            // gone.
            let state = self.runtime.state(&cid).await;
            if !matches!(&state, Ok(Some(s)) if s.is_running()) {
                let gone = match &state {
                    Ok(Some(s)) => !s.is_paused(),
                    Ok(None) => true,
                    Err(_) => false,
                };
                if gone {
                    rec.container = None;
                    self.detach_network(&id).await;
                }
                let (to, message) = if gone {
                    (
                        ActorStatus::Failed,
                        format!("resume failed and the sandbox is gone: {err}"),
                    )
                } else {
                    (ActorStatus::Paused, format!("resume failed: {err}"))
                };
                self.transition(rec, to, "resume failed", message).await?;
                if gone {
                    self.cleanup_container(cid);
                }
                return Err(err);
            }
        }
        self.serve(rec);
        self.activated(rec, Tier::Paused, t0);
        self.transition(rec, ActorStatus::Running, cause.reason("resumed"), "")
            .await?;
        tracing::info!(actor = %id, op = "resume", from = "paused",
            duration_ms = t0.elapsed().as_millis() as u64, "resumed");
        Ok(())
    }

    /// Records an activation in `rec` (saved by the caller's transition)
    /// and in the metrics, and restarts its idle window.
    pub(super) fn activated(&self, rec: &mut ActorRecord, tier: Tier, t0: Instant) {
        rec.activated_from = Some(tier.as_str().to_string());
        rec.last_active_at = Some(now_rfc3339());
        self.metrics
            .activation_seconds
            .get_or_create(&crate::metrics::TierLabels {
                tier: tier.as_str(),
            })
            .observe(t0.elapsed().as_secs_f64());
        self.note_busy(&rec.id);
    }

    /// The ports of an actor that is not running: waking, if it is to be
    /// woken by connections, else closing them at once.
    pub(super) fn rest_ports(&self, rec: &ActorRecord) {
        let Some(net) = &self.network else {
            return;
        };
        if wakes_on_connect(rec) {
            net.ports.set_waking(&rec.id);
        } else {
            net.ports.set_target(&rec.id, None);
        }
    }

    /// Lets connections to published ports wake their actor (see
    /// [`ActorService::wake`]); called once at start.
    pub(crate) fn wake_on_connect(self: &Arc<Self>) {
        let Some(net) = &self.network else {
            return;
        };
        let service = Arc::downgrade(self);
        net.ports.set_waker(Arc::new(move |id: String| {
            let service = service.clone();
            Box::pin(async move { service.upgrade()?.wake(&id).await })
        }));
    }

    /// Gets actor `id` running for a connection to one of its published
    /// ports and answers its address; `None` closes the connection. Many
    /// connections may ask at once: the first resumes the actor (holding
    /// its lock), the others find it RUNNING when they get the lock.
    pub(crate) async fn wake(self: &Arc<Self>, id: &str) -> Option<std::net::Ipv4Addr> {
        // A few rounds: a step in flight (a pause, a suspend) ends in a
        // status that the next round resumes from.
        for _ in 0..4 {
            let rec = self.record(id).ok()?;
            match rec.status {
                ActorStatus::Running => return rec.network.ip,
                ActorStatus::Paused
                | ActorStatus::Suspended
                | ActorStatus::Pausing
                | ActorStatus::Unpausing
                | ActorStatus::Suspending
                | ActorStatus::Resuming
                    if wakes_on_connect(&rec) => {}
                _ => return None,
            }
            match self.resume_because(id, Cause::Connection).await {
                Ok(a) if a.status == ActorStatus::Running => return rec.network.ip,
                Ok(_) => return None,
                // Another connection's resume got there first, or a step
                // was in flight: look again.
                Err(ServiceError::Transition { .. }) => {}
                Err(e) => {
                    tracing::warn!(actor = %id, error = %e, "a connection could not wake the actor; closing it");
                    self.record_wake_failure(id, &e).await;
                    return None;
                }
            }
        }
        None
    }
}

impl<R: Runtime> ActorService<R> {
    /// Keeps why a wake failed in the actor's status message and in an
    /// event (reason `wake failed`), as a failed step of its own does:
    /// whoever finds the actor still asleep can read why.
    async fn record_wake_failure(&self, id: &str, e: &ServiceError) {
        let _lock = self.locks.lock(id).await;
        let Ok(mut rec) = self.record(id) else {
            return;
        };
        if !matches!(rec.status, ActorStatus::Paused | ActorStatus::Suspended) {
            return;
        }
        let status = rec.status;
        if let Err(err) = self
            .transition(
                &mut rec,
                status,
                "wake failed",
                format!("a connection could not wake the actor: {e}"),
            )
            .await
        {
            tracing::warn!(actor = %id, error = %err, "recording a failed wake");
        }
    }
}

/// Whether connections wake the actor (its spec's `lifecycle`; yes when
/// it says nothing).
pub(super) fn wakes_on_connect(rec: &ActorRecord) -> bool {
    rec.spec
        .lifecycle
        .as_ref()
        .is_none_or(|l| l.wakes_on_connect())
}

/// The container of an actor that holds a sandbox.
fn running_container(rec: &ActorRecord) -> Result<String> {
    rec.container.as_ref().map(|c| c.id.clone()).ok_or_else(|| {
        ServiceError::Internal(format!(
            "actor {} is {} but has no container on record",
            rec.id, rec.status
        ))
    })
}
