//! Supervision: what the daemon does when a sandbox ends on its own, and
//! the removal of dead sandboxes' runsc state.

use super::*;

/// How long the runsc state of a stopped sandbox waits before removal.
pub(super) const CLEANUP_DELAY: Duration = Duration::from_millis(500);

impl<R: Runtime> ActorService<R> {
    /// Removes a stopped sandbox's runsc state in the background, a moment
    /// later and at low priority, so that it does not compete with the
    /// step that typically follows (a resume after a suspend). What a
    /// shutdown leaves undone, recovery removes.
    pub(super) fn cleanup_container(self: &Arc<Self>, cid: String) {
        let svc = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(CLEANUP_DELAY).await;
            if let Err(e) = svc.runtime.discard(&cid).await {
                tracing::warn!(container = %cid, error = %e, "runsc delete failed");
            }
        });
    }

    /// Records the end of a sandbox when it was not caused by the daemon.
    pub(super) fn watch_exit(
        self: &Arc<Self>,
        id: String,
        cid: String,
        exit: oneshot::Receiver<ExitOutcome>,
    ) {
        let svc = self.clone();
        tokio::spawn(async move {
            let Ok(outcome) = exit.await else { return };
            if let Err(e) = svc.on_exit(&id, &cid, outcome).await {
                tracing::error!(actor = %id, error = %e, "recording a sandbox exit");
            }
        });
    }

    pub(super) async fn on_exit(
        self: &Arc<Self>,
        id: &str,
        cid: &str,
        outcome: ExitOutcome,
    ) -> Result<()> {
        let _guard = self.locks.lock(id).await;
        let Some(mut rec) = self.store.get(id)? else {
            // Deleted while this waited for the lock: the lock's entry
            // would otherwise stay behind.
            self.locks.forget(id);
            return Ok(());
        };
        let current = rec.container.as_ref().map(|c| c.id.as_str()) == Some(cid);
        if !matches!(rec.status, ActorStatus::Running | ActorStatus::Paused) || !current {
            // The daemon stopped it (suspend, stop, delete): not news.
            return Ok(());
        }
        rec.container = None;
        rec.exit_code = outcome.code;
        self.forget_activity(id);
        // Read before the runsc delete below removes the cgroup.
        let oom = self.oom_message(cid, &rec);
        let to = if outcome.code == Some(0) && oom.is_none() {
            ActorStatus::Stopped
        } else {
            ActorStatus::Failed
        };
        let message = match oom {
            Some(oom) if outcome.message.is_empty() => oom,
            Some(oom) => format!("{oom}; {}", outcome.message),
            None => outcome.message,
        };
        self.transition(&mut rec, to, "exited", message).await?;
        // Their processes died with the sandbox; their clients may not see it.
        self.kill_execs(id, Duration::ZERO).await;
        self.detach_network(id).await;
        self.cleanup_container(cid.to_string());
        Ok(())
    }
}
