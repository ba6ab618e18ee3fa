//! Prometheus metrics (`GET /metrics`, OpenMetrics text): what an operator
//! graphs and alerts on for a node.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of an operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpLabels {
    /// create, start, suspend, resume, stop, delete (or a runsc subcommand).
    pub op: &'static str,
}

/// Labels of an operation's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpResultLabels {
    /// As in [`OpLabels`].
    pub op: &'static str,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Labels of an actor status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    /// e.g. `RUNNING`.
    pub status: &'static str,
}

/// Labels of one actor's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ActorLabels {
    /// The actor id.
    pub actor: String,
}

/// Labels of an activation: where the actor came back from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TierLabels {
    /// `paused` or `suspended`.
    pub tier: &'static str,
}

/// Labels of a transition the daemon made by itself.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TieringLabels {
    /// `idle` or `memory-pressure`.
    pub reason: &'static str,
    /// `pause` or `suspend`.
    pub op: &'static str,
}

fn activation_histogram() -> Histogram {
    // 1 ms … ~16 s: an unpause is tens of ms, a restore hundreds.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn duration_histogram() -> Histogram {
    // 5 ms … ~80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Every metric of the daemon, registered once.
pub(crate) struct Metrics {
    registry: Registry,
    /// Actors by status (set at scrape time from the store).
    pub actors: Family<StatusLabels, Gauge>,
    /// Lifecycle operations by outcome.
    pub operations: Family<OpResultLabels, Counter>,
    /// Lifecycle operation latency.
    pub operation_seconds: Family<OpLabels, Histogram, fn() -> Histogram>,
    /// Bytes of committed snapshots on disk (set at scrape time).
    pub snapshot_bytes: Gauge,
    /// Bytes of snapshots written since start.
    pub snapshot_bytes_written: Counter,
    /// runsc commands that failed, timed out or could not start.
    pub runsc_failures: Family<OpLabels, Counter>,
    /// CPU seconds of each running actor's sandbox, from its cgroup (set
    /// at scrape time: cleared and refilled, so a counter from zero).
    pub actor_cpu_seconds: Family<ActorLabels, Counter<f64, AtomicU64>>,
    /// Memory of each running actor's sandbox, from its cgroup.
    pub actor_memory_bytes: Family<ActorLabels, Gauge>,
    /// Resume latency (request or connection → RUNNING) by the tier the
    /// actor came from.
    pub activation_seconds: Family<TierLabels, Histogram, fn() -> Histogram>,
    /// Memory held by PAUSED actors' sandboxes (set by the tiering pass).
    pub paused_memory_bytes: Gauge,
    /// Pauses and suspends the daemon made by itself, by reason.
    pub tiering_transitions: Family<TieringLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub(crate) fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("atelet");
        let actors = Family::<StatusLabels, Gauge>::default();
        let operations = Family::<OpResultLabels, Counter>::default();
        let operation_seconds =
            Family::<OpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        let snapshot_bytes = Gauge::default();
        let snapshot_bytes_written = Counter::default();
        let runsc_failures = Family::<OpLabels, Counter>::default();
        registry.register("actors", "Actors by status", actors.clone());
        registry.register(
            "operations",
            "Lifecycle operations by outcome",
            operations.clone(),
        );
        registry.register(
            "operation_duration_seconds",
            "Latency of lifecycle operations",
            operation_seconds.clone(),
        );
        registry.register(
            "snapshot_bytes",
            "Bytes of committed snapshots on disk",
            snapshot_bytes.clone(),
        );
        registry.register(
            "snapshot_written_bytes",
            "Bytes of snapshots written since the daemon started",
            snapshot_bytes_written.clone(),
        );
        registry.register(
            "runsc_failures",
            "runsc commands that failed, timed out or could not be started",
            runsc_failures.clone(),
        );
        let actor_cpu_seconds = Family::<ActorLabels, Counter<f64, AtomicU64>>::default();
        let actor_memory_bytes = Family::<ActorLabels, Gauge>::default();
        registry.register(
            "actor_cpu_seconds",
            "CPU seconds used by each running actor's sandbox (its cgroup's cpuacct.usage)",
            actor_cpu_seconds.clone(),
        );
        registry.register(
            "actor_memory_bytes",
            "Memory held by each running actor's sandbox (its cgroup's memory.usage_in_bytes)",
            actor_memory_bytes.clone(),
        );
        let activation_seconds =
            Family::<TierLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                activation_histogram,
            );
        let paused_memory_bytes = Gauge::default();
        let tiering_transitions = Family::<TieringLabels, Counter>::default();
        registry.register(
            "activation_duration_seconds",
            "Resumes (request or connection until RUNNING) by the tier the actor came from: paused or suspended",
            activation_seconds.clone(),
        );
        registry.register(
            "paused_memory_bytes",
            "Memory held by the sandboxes of PAUSED actors",
            paused_memory_bytes.clone(),
        );
        registry.register(
            "tiering_transitions",
            "Pauses and suspends the daemon made by itself, by reason (idle, memory-pressure)",
            tiering_transitions.clone(),
        );
        Arc::new(Metrics {
            activation_seconds,
            paused_memory_bytes,
            tiering_transitions,
            actor_cpu_seconds,
            actor_memory_bytes,
            registry,
            actors,
            operations,
            operation_seconds,
            snapshot_bytes,
            snapshot_bytes_written,
            runsc_failures,
        })
    }

    /// Records one lifecycle operation.
    pub(crate) fn observe(&self, op: &'static str, elapsed: Duration, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.operations
            .get_or_create(&OpResultLabels { op, result })
            .inc();
        if ok {
            self.operation_seconds
                .get_or_create(&OpLabels { op })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// The OpenMetrics text of every metric.
    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_was_observed() {
        let m = Metrics::new();
        m.observe("suspend", Duration::from_millis(120), true);
        m.observe("suspend", Duration::from_millis(1), false);
        m.runsc_failures
            .get_or_create(&OpLabels { op: "checkpoint" })
            .inc();
        m.actors
            .get_or_create(&StatusLabels { status: "RUNNING" })
            .set(2);
        let text = m.encode().unwrap();
        assert!(
            text.contains(r#"atelet_operations_total{op="suspend",result="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"atelet_operations_total{op="suspend",result="error"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"atelet_operation_duration_seconds_count{op="suspend"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"atelet_runsc_failures_total{op="checkpoint"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"atelet_actors{status="RUNNING"} 2"#),
            "{text}"
        );
        m.actor_cpu_seconds
            .get_or_create(&ActorLabels { actor: "a".into() })
            .inc_by(2.5);
        m.actor_memory_bytes
            .get_or_create(&ActorLabels { actor: "a".into() })
            .set(1024);
        let text = m.encode().unwrap();
        assert!(
            text.contains(r#"atelet_actor_cpu_seconds_total{actor="a"} 2.5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"atelet_actor_memory_bytes{actor="a"} 1024"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
