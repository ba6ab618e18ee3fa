//! Resource limits in the lifecycle: the memory an actor may commit
//! (`[policy] max_memory_commit`), what its cgroup shows (stats, metrics,
//! OOM kills), and the cgroups that sandboxes leave behind.

use super::*;

/// Memory limits of starts and resumes in flight, by actor.
pub(super) type Reserved = Arc<std::sync::Mutex<HashMap<String, u64>>>;

/// The memory limit an actor's sandbox promises while a start or resume
/// is in flight, before its status says so; dropped at the step's end,
/// when the status (RUNNING, or not) speaks for it.
pub(super) struct MemoryReservation {
    held: Option<(Reserved, String)>,
}

impl Drop for MemoryReservation {
    fn drop(&mut self) {
        if let Some((map, id)) = self.held.take() {
            map.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        }
    }
}

impl<R: Runtime> ActorService<R> {
    /// Admits actor `id` to take a sandbox with memory limit `limit`
    /// under `[policy] max_memory_commit`: the limits of the actors that
    /// hold a sandbox or are about to (reserved), others than `id`, plus
    /// its own must fit. The check and the reservation are one step, so
    /// that concurrent starts cannot all pass it. Refused: 403 with the
    /// numbers, and nothing changed.
    pub(super) fn reserve_memory(&self, id: &str, limit: Option<u64>) -> Result<MemoryReservation> {
        let Some(limit) = limit else {
            return Ok(MemoryReservation { held: None });
        };
        let mut reserved = self
            .memory_reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut committed: u64 = 0;
        let mut counted = HashSet::new();
        for (other, s) in self.store.summaries() {
            if other != id && (s.status.holds_sandbox() || reserved.contains_key(&other)) {
                committed = committed.saturating_add(s.memory_limit.unwrap_or(0));
                counted.insert(other);
            }
        }
        // Reserved by a create whose record is not written yet.
        for (other, bytes) in reserved.iter() {
            if other != id && !counted.contains(other) {
                committed = committed.saturating_add(*bytes);
            }
        }
        self.policy
            .check_memory_commit(id, committed, Some(limit))?;
        reserved.insert(id.to_string(), limit);
        Ok(MemoryReservation {
            held: Some((self.memory_reserved.clone(), id.to_string())),
        })
    }

    /// `GET /v1/actors/{id}/stats`: what the actor's current sandbox uses,
    /// from its cgroup. An actor without a sandbox answers its limits and
    /// nulls for the usage.
    pub(crate) fn stats(&self, id: &str) -> Result<ActorStats> {
        let rec = self.record(id)?;
        let limits = SandboxResources::of(&rec.spec).limits;
        let (running, usage) = match (&rec.container, rec.status) {
            (Some(c), status) if status.holds_sandbox() => (true, self.cgroups.usage(&c.id)),
            _ => (false, crate::cgroups::Usage::default()),
        };
        Ok(ActorStats {
            id: rec.id.clone(),
            status: rec.status,
            time: now_rfc3339(),
            cpu_seconds: usage.cpu_seconds,
            // While a sandbox runs, what its cgroup holds is what is in
            // force (none there is none, whatever the spec says); else
            // what the next sandbox will get.
            cpu_limit: if running {
                usage.cpu_limit
            } else {
                limits.cpu_millis.map(|m| m as f64 / 1000.0)
            },
            memory_bytes: usage.memory_bytes,
            memory_limit_bytes: if running {
                usage.memory_limit
            } else {
                limits.memory_bytes
            },
            pids: usage.pids,
            oom_kills: usage.oom_kills,
        })
    }

    /// The usage of every running actor, for `/metrics`.
    pub(super) fn running_usage(&self) -> Vec<(String, crate::cgroups::Usage)> {
        let mut out = Vec::new();
        let _ = self.store.for_each(|r| {
            if r.status == ActorStatus::Running {
                if let Some(c) = &r.container {
                    out.push((r.id.clone(), self.cgroups.usage(&c.id)));
                }
            }
            true
        });
        out
    }

    /// Why a sandbox that ended on its own ended, when its cgroup says the
    /// kernel's OOM killer ended it: gVisor runs the actor's memory in
    /// its own processes, so past the limit the host kills the sandbox
    /// (SIGKILL) rather than a process inside it. Read before runsc
    /// deletes the cgroup.
    pub(super) fn oom_message(&self, cid: &str, rec: &ActorRecord) -> Option<String> {
        let kills = self.cgroups.usage(cid).oom_kills.filter(|k| *k > 0)?;
        let limit = SandboxResources::of(&rec.spec).limits.memory_bytes;
        Some(match limit {
            Some(l) => format!(
                "OOMKilled: the sandbox reached its memory limit of {} and the kernel killed it ({kills} OOM kill(s))",
                atelet_api::quantity::format_bytes(l)
            ),
            None => format!("OOMKilled: the kernel killed the sandbox for memory ({kills} OOM kill(s))"),
        })
    }

    /// Removes the cgroups of this node's sandboxes that neither runsc
    /// (`listed`: the containers it still has) nor a record names (what
    /// runsc did not remove: a delete that failed, a sandbox that died
    /// while the daemon was down). The cgroups are listed before the
    /// records are read: a record names its container before runsc makes
    /// its cgroup, so a start in flight is never swept. Returns the names
    /// removed.
    pub(super) fn sweep_cgroups(&self, listed: &HashSet<String>) -> Result<Vec<String>> {
        let suffix = format!(".{}", self.node);
        let children = self.cgroups.children();
        let named: HashSet<String> = self
            .store
            .list()?
            .into_iter()
            .filter_map(|r| r.container.map(|c| c.id))
            .collect();
        let mut removed = Vec::new();
        for name in children {
            if !name.ends_with(&suffix) || listed.contains(&name) || named.contains(&name) {
                continue;
            }
            // An actor in quarantine keeps what it has, as its files.
            let actor = name.split('_').next().unwrap_or_default();
            if self.store.is_quarantined(actor) {
                continue;
            }
            match self.cgroups.remove(&name) {
                Ok(()) => removed.push(name),
                Err(e) => {
                    tracing::warn!(cgroup = %name, error = %e, "cannot remove a stale cgroup")
                }
            }
        }
        Ok(removed)
    }

    /// Removes the cgroups an actor's sandboxes left (at its delete).
    pub(super) fn remove_actor_cgroups(&self, id: &str) {
        let prefix = format!("{id}_");
        let suffix = format!(".{}", self.node);
        for name in self.cgroups.children() {
            if name.starts_with(&prefix) && name.ends_with(&suffix) {
                if let Err(e) = self.cgroups.remove(&name) {
                    tracing::warn!(actor = %id, cgroup = %name, error = %e, "cannot remove the actor's cgroup");
                }
            }
        }
    }
}
