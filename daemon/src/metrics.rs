//! Prometheus metrics (`GET /metrics`, OpenMetrics text): what an operator
//! graphs and alerts on for a node.

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
        Arc::new(Metrics {
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
        assert!(text.ends_with("# EOF\n"));
    }
}
