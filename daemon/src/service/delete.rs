//! Deleting an actor: ending its sandbox, and removing its record and
//! every file it left.

use super::*;

impl<R: Runtime> ActorService<R> {
    /// `DELETE /v1/actors/{id}`: also its snapshots in the remote store.
    pub(crate) async fn delete(&self, id: &str) -> Result<()> {
        self.measured(Op::Delete.as_str(), id, self.delete_inner(id, false))
            .await
    }

    /// `DELETE /v1/actors/{id}?keepRemote=true`: its remote snapshots stay.
    pub(crate) async fn delete_keeping_remote(&self, id: &str) -> Result<()> {
        self.measured(Op::Delete.as_str(), id, self.delete_inner(id, true))
            .await
    }

    async fn delete_inner(&self, id: &str, keep_remote: bool) -> Result<()> {
        let (step, rec) = self.begin_step(id, Op::Delete).await?;
        self.kill_execs(id, EXEC_KILL_WAIT).await;
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
        // What runsc left of its sandboxes' cgroups (runsc removes a
        // cgroup at its delete; one that failed, or a sandbox that died
        // with the daemon down, leaves it).
        self.remove_actor_cgroups(id);
        self.store.remove(id, rec.status, "deleted").await?;
        self.unrecovered_ids().remove(id);
        tracing::info!(actor = %id, op = "delete", "actor deleted");
        self.remove_files(id).await;
        self.forget_network(id).await;
        if !keep_remote {
            self.delete_remote_copies(&rec).await;
        }
        // While still holding the lock: the count then tells whether
        // anyone else waits for it.
        self.locks.forget(id);
        drop(step);
        Ok(())
    }

    /// A deleted actor's network goes: its published ports, its veth and
    /// files (its address went with the record), and the node's bridge
    /// and table with the last bridged actor. Failures are logged: a
    /// restart removes what is left.
    async fn forget_network(&self, id: &str) {
        let Some(net) = &self.network else { return };
        if let Err(e) = net.forget(id).await {
            tracing::warn!(actor = %id, error = %e, "removing a deleted actor's network");
        }
        // Every bridged actor holds an address, quarantined records
        // included (their sandboxes may run on): the address table counts
        // them all.
        let store = &self.store;
        if let Err(e) = net.release_node_if_unused(|| store.ips_held()).await {
            tracing::warn!(error = %e, "removing the actor network");
        }
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
}
