//! What the node decides by itself about actors' tiers: it pauses actors
//! idle for their `lifecycle.pauseAfterIdleSeconds`, suspends those paused
//! for their `suspendAfterPausedSeconds`, and, when paused actors hold
//! more memory than `[tiering] max_paused_memory` or the node's
//! MemAvailable falls below `min_available_memory`, suspends paused
//! actors, least recently active first, until both hold again.
//!
//! Activity is sampled every `[tiering] interval_ms`: an actor is busy in
//! a sample when its sandbox used more CPU than `idle_cpu_millicores`
//! (its cgroup's `cpuacct.usage`), when a connection came through its
//! published ports, or while an exec runs in it. The windows are kept in
//! memory: after a daemon restart they count from the restart.

use std::time::SystemTime;

use super::pause::Cause;
use super::*;

/// `[tiering]`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TieringConfig {
    /// Bytes PAUSED actors' sandboxes may hold together; `None`: no bound.
    pub max_paused_memory: Option<u64>,
    /// MemAvailable below which paused actors are suspended; `None`: none.
    pub min_available_memory: Option<u64>,
    /// CPU use (thousandths of a core) at or below which a sample is idle.
    pub idle_cpu_millicores: u64,
    /// How often activity and memory are sampled.
    pub interval: Duration,
}

/// Default `[tiering] idle_cpu_millicores`: an idle sandbox under ptrace
/// still spends a little CPU on its own timers.
pub(crate) const DEFAULT_IDLE_CPU_MILLICORES: u64 = 20;
/// Default `[tiering] interval_ms`.
pub(crate) const DEFAULT_TIERING_INTERVAL: Duration = Duration::from_secs(1);

impl Default for TieringConfig {
    fn default() -> TieringConfig {
        TieringConfig {
            max_paused_memory: None,
            min_available_memory: None,
            idle_cpu_millicores: DEFAULT_IDLE_CPU_MILLICORES,
            interval: DEFAULT_TIERING_INTERVAL,
        }
    }
}

/// What the daemon saw of one actor's activity.
#[derive(Debug, Clone, Copy)]
pub(super) struct Activity {
    /// The last CPU sample: its cgroup's seconds, and when.
    cpu: Option<(f64, Instant)>,
    /// Connections accepted on its ports at the last sample.
    connections: u64,
    /// When it was last busy (or started, woken, paused).
    busy_at: Instant,
    /// The same, on the wall clock (`lastActiveAt`).
    busy_wall: SystemTime,
    /// When it was paused, while it is.
    paused_at: Option<Instant>,
}

impl Activity {
    fn now() -> Activity {
        Activity {
            cpu: None,
            connections: 0,
            busy_at: Instant::now(),
            busy_wall: SystemTime::now(),
            paused_at: None,
        }
    }

    /// First seen (after a restart): last busy when its record says, so
    /// that the least recently active order survives the restart.
    fn since(last_active_at: Option<&str>) -> Activity {
        let mut a = Activity::now();
        let wall = last_active_at.and_then(|t| humantime::parse_rfc3339_weak(t).ok());
        if let Some(wall) = wall {
            let ago = SystemTime::now().duration_since(wall).unwrap_or_default();
            if let Some(at) = a.busy_at.checked_sub(ago) {
                a.busy_at = at;
                a.busy_wall = wall;
            }
        }
        a
    }
}

/// Activity by actor id.
pub(super) type ActivityMap = std::sync::Mutex<HashMap<String, Activity>>;

/// One actor as a tiering pass sees it.
struct Seen {
    id: String,
    status: ActorStatus,
    lifecycle: atelet_api::LifecycleSpec,
    /// When it was last busy, for the least-recently-active order.
    busy_at: Instant,
    /// What its sandbox's cgroup holds.
    memory_bytes: u64,
}

impl<R: Runtime> ActorService<R> {
    fn activity(&self) -> std::sync::MutexGuard<'_, HashMap<String, Activity>> {
        self.activity.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The actor was busy just now (started, woken, used).
    pub(super) fn note_busy(&self, id: &str) {
        let mut map = self.activity();
        let a = map.entry(id.to_string()).or_insert_with(Activity::now);
        a.busy_at = Instant::now();
        a.busy_wall = SystemTime::now();
        a.paused_at = None;
    }

    /// The actor was just paused: its paused window starts.
    pub(super) fn note_paused(&self, id: &str) {
        let mut map = self.activity();
        let a = map.entry(id.to_string()).or_insert_with(Activity::now);
        a.paused_at = Some(Instant::now());
        a.cpu = None;
    }

    /// The actor no longer holds a sandbox: nothing to watch.
    pub(super) fn forget_activity(&self, id: &str) {
        self.activity().remove(id);
    }

    /// When the actor was last seen busy, RFC 3339 (now if never seen).
    pub(super) fn last_busy_rfc3339(&self, id: &str) -> String {
        let wall = self
            .activity()
            .get(id)
            .map_or_else(SystemTime::now, |a| a.busy_wall);
        humantime::format_rfc3339_millis(wall).to_string()
    }

    /// The API view of `rec`, with `lastActiveAt` as last seen for an
    /// actor that runs (the record has it as of its last transition).
    pub(super) fn view(&self, rec: &ActorRecord) -> Actor {
        let mut a = rec.to_api();
        if rec.status == ActorStatus::Running {
            if let Some(act) = self.activity().get(&rec.id) {
                a.last_active_at =
                    Some(humantime::format_rfc3339_millis(act.busy_wall).to_string());
            }
        }
        a
    }

    /// Runs the tiering passes until the daemon shuts down: one every
    /// `[tiering] interval_ms`, and one at once after each pause.
    pub(crate) fn start_tiering(self: &Arc<Self>) {
        let svc = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(svc.tiering.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = svc.tiering_wake.notified() => {}
                }
                if svc.draining.load(Ordering::SeqCst) {
                    return;
                }
                svc.tiering_pass().await;
            }
        });
    }

    /// One pass: samples activity, then pauses and suspends what the
    /// policies say, one actor at a time.
    async fn tiering_pass(self: &Arc<Self>) {
        let seen = self.sample();
        let now = Instant::now();
        for s in &seen {
            match s.status {
                ActorStatus::Running => {
                    let idle_for = now.duration_since(s.busy_at);
                    if s.lifecycle
                        .pause_after_idle_seconds
                        .is_some_and(|n| idle_for >= secs(n))
                    {
                        self.decide(&s.id, Op::Pause, Cause::Idle).await;
                    }
                }
                ActorStatus::Paused => {
                    let paused_for = self
                        .activity()
                        .get(&s.id)
                        .and_then(|a| a.paused_at)
                        .map(|t| now.duration_since(t));
                    if let (Some(m), Some(p)) =
                        (s.lifecycle.suspend_after_paused_seconds, paused_for)
                    {
                        if p >= secs(m) {
                            self.decide(&s.id, Op::Suspend, Cause::Idle).await;
                        }
                    }
                }
                _ => {}
            }
        }
        self.relieve_memory(&seen).await;
    }

    /// Pauses or suspends `id` for `cause`; a refusal (the actor moved
    /// on, an exec runs, connections are open) is logged and the next
    /// pass looks again.
    async fn decide(self: &Arc<Self>, id: &str, op: Op, cause: Cause) -> bool {
        let res = match op {
            Op::Pause => self.pause_because(id, cause).await.map(drop),
            _ => self.suspend_because(id, false, cause).await.map(drop),
        };
        match res {
            Ok(()) => {
                self.metrics
                    .tiering_transitions
                    .get_or_create(&crate::metrics::TieringLabels {
                        reason: cause.reason(""),
                        op: op.as_str(),
                    })
                    .inc();
                true
            }
            Err(e) => {
                tracing::debug!(actor = %id, op = %op, reason = cause.reason(""), error = %e, "not now");
                // Not again at every pass: its window starts over.
                if op == Op::Pause {
                    self.note_busy(id);
                } else {
                    self.note_paused(id);
                }
                false
            }
        }
    }

    /// Reads every actor that holds a sandbox, updating its activity, and
    /// sets the paused-memory gauge.
    fn sample(&self) -> Vec<Seen> {
        let mut records = Vec::new();
        let _ = self.store.for_each(|r| {
            if let (true, Some(c)) = (r.status.holds_sandbox(), &r.container) {
                records.push((
                    r.id.clone(),
                    r.status,
                    c.id.clone(),
                    r.spec.lifecycle.clone().unwrap_or_default(),
                    r.last_active_at.clone(),
                ));
            }
            true
        });
        let mut seen = Vec::with_capacity(records.len());
        let now = Instant::now();
        let threshold = self.tiering.idle_cpu_millicores as f64 / 1000.0;
        let mut map = self.activity();
        map.retain(|id, _| records.iter().any(|r| &r.0 == id));
        for (id, status, cid, lifecycle, last_active_at) in records {
            let a = map
                .entry(id.clone())
                .or_insert_with(|| Activity::since(last_active_at.as_deref()));
            if status == ActorStatus::Paused && a.paused_at.is_none() {
                // Paused before a restart: its window starts now.
                a.paused_at = Some(now);
            }
            let usage = self.cgroups.usage(&cid);
            if status == ActorStatus::Running {
                let mut busy = !self.execs.of(&id).is_empty();
                if let Some(cpu) = usage.cpu_seconds {
                    if let Some((before, at)) = a.cpu {
                        let elapsed = now.duration_since(at).as_secs_f64();
                        busy |= elapsed > 0.0 && (cpu - before) / elapsed > threshold;
                    }
                    a.cpu = Some((cpu, now));
                }
                if let Some((accepted, _)) =
                    self.network.as_ref().and_then(|n| n.ports.activity(&id))
                {
                    busy |= accepted != a.connections;
                    a.connections = accepted;
                }
                if busy {
                    a.busy_at = now;
                    a.busy_wall = SystemTime::now();
                }
            }
            seen.push(Seen {
                id,
                status,
                lifecycle,
                busy_at: a.busy_at,
                memory_bytes: usage.memory_bytes.unwrap_or(0),
            });
        }
        seen
    }

    /// Suspends paused actors, least recently active first, while they
    /// hold more than `max_paused_memory` or the node has less than
    /// `min_available_memory` available.
    async fn relieve_memory(self: &Arc<Self>, seen: &[Seen]) {
        let mut paused: Vec<(Instant, &str, u64)> = seen
            .iter()
            .filter(|s| s.status == ActorStatus::Paused)
            .map(|s| (s.busy_at, s.id.as_str(), s.memory_bytes))
            .collect();
        let mut held: u64 = paused.iter().map(|p| p.2).sum();
        self.metrics
            .paused_memory_bytes
            .set(i64::try_from(held).unwrap_or(i64::MAX));
        let (max_paused, min_available) = (
            self.tiering.max_paused_memory,
            self.tiering.min_available_memory,
        );
        if max_paused.is_none() && min_available.is_none() {
            return;
        }
        let mut available = min_available.and_then(|_| mem_available());
        paused.sort_by_key(|p| p.0);
        for (_, id, bytes) in paused {
            let over = max_paused.is_some_and(|m| held > m);
            let short = match (min_available, available) {
                (Some(min), Some(a)) => a < min,
                _ => false,
            };
            if !over && !short {
                break;
            }
            tracing::info!(actor = %id, paused_bytes = held, max_paused_memory = ?max_paused,
                available_bytes = ?available, min_available_memory = ?min_available,
                "memory pressure: suspending the least recently active paused actor");
            if self.decide(id, Op::Suspend, Cause::MemoryPressure).await {
                held = held.saturating_sub(bytes);
                available = available.map(|a| a.saturating_add(bytes));
            }
        }
        self.metrics
            .paused_memory_bytes
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    crate::fsutil::meminfo_field(&text, "MemAvailable:")
}

#[cfg(test)]
mod tests {
    use crate::fsutil::meminfo_field;

    #[test]
    fn meminfo_fields_are_read_in_bytes() {
        let text = "MemTotal: 2048 kB\nMemAvailable:    1024 kB\n";
        assert_eq!(meminfo_field(text, "MemAvailable:"), Some(1 << 20));
        assert_eq!(meminfo_field(text, "MemTotal:"), Some(2 << 20));
        assert_eq!(meminfo_field(text, "SwapTotal:"), None);
    }
}
