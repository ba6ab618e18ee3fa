//! Errors of the runtime layer.

use crate::reaper::ExitStatus;

/// Errors of the runtime layer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RuntimeError {
    /// runsc is not installed where configured or on PATH.
    #[error("runsc is not available: {0}")]
    Unavailable(String),
    /// runsc could not be started.
    #[error("could not start runsc {op}: {source}")]
    Spawn {
        /// The subcommand.
        op: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
    /// runsc ran and failed.
    #[error("runsc {op} failed ({status}): {output}")]
    Failed {
        /// The subcommand.
        op: &'static str,
        /// How it ended.
        status: ExitStatus,
        /// The tail of what it printed.
        output: String,
    },
    /// runsc did not finish in time and was killed.
    #[error("runsc {op} did not finish within {secs} s and was killed")]
    Timeout {
        /// The subcommand.
        op: &'static str,
        /// The limit.
        secs: u64,
    },
    /// runsc printed something we could not parse.
    #[error("could not parse the output of runsc {op}: {detail}")]
    Parse {
        /// The subcommand.
        op: &'static str,
        /// Parser message.
        detail: String,
    },
    /// Local I/O around a runsc call (log or pid files).
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl RuntimeError {
    pub(super) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let context = context.into();
        move |source| RuntimeError::Io { context, source }
    }

    /// True when runsc failed because the container does not exist: the
    /// one place that reads this from runsc's words. A broken install can
    /// say "not found" of itself (`sh: runsc: not found`), so a caller that
    /// would lose a live sandbox by believing it checks otherwise too (as
    /// recovery does, on the sandbox's process).
    pub(crate) fn is_not_found(&self) -> bool {
        match self {
            RuntimeError::Failed { output, .. } => {
                output.contains("does not exist") || output.contains("not found")
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(output: &str) -> RuntimeError {
        RuntimeError::Failed {
            op: "state",
            status: ExitStatus::Exited(1),
            output: output.to_string(),
        }
    }

    #[test]
    fn not_found_is_read_from_a_failure_only() {
        assert!(failed("container \"a_1.x\" does not exist").is_not_found());
        assert!(failed("loading container: file not found").is_not_found());
        assert!(!failed("permission denied").is_not_found());
        assert!(!RuntimeError::Unavailable("runsc was not found on PATH".into()).is_not_found());
    }
}
