//! What runsc reports: a container's state, how a sandbox ended, its
//! version.

use serde::Deserialize;

use crate::reaper::ExitStatus;

/// `runsc state` / `runsc list --format=json` for one container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerState {
    /// The runsc container id.
    pub id: String,
    /// `created`, `running`, `stopped`, `paused`.
    pub status: String,
    /// Sandbox pid (-1 or 0 when none).
    #[serde(default)]
    pub pid: i32,
    /// Bundle directory.
    #[serde(default)]
    pub bundle: String,
}

impl ContainerState {
    /// True when the sandbox runs.
    pub fn is_running(&self) -> bool {
        self.status == "running" && self.pid > 0
    }
}

/// How a sandbox ended, as far as we could learn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitOutcome {
    /// Exit code (128+n for a signal); `None` when it could not be learned.
    pub code: Option<i32>,
    /// Human description.
    pub message: String,
}

/// What an operator reads in statusMessage when a sandbox ends.
pub fn describe_exit(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(0) => "exited with status 0".to_string(),
        ExitStatus::Exited(c) if c > 128 => {
            format!("exited with status {c} (killed by signal {})", c - 128)
        }
        ExitStatus::Exited(c) => format!("exited with status {c}"),
        ExitStatus::Signaled(s) => format!("sandbox killed by signal {s}"),
    }
}

/// `runsc version 0.0~20221219.0` → `0.0~20221219.0`.
pub fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("runsc version "))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_parsed_from_the_first_line() {
        assert_eq!(
            parse_version("runsc version 0.0~20221219.0\nspec: 1.0.2-dev\n").as_deref(),
            Some("0.0~20221219.0")
        );
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn state_json_is_parsed() {
        let s: ContainerState = serde_json::from_str(
            r#"{"ociVersion":"1.0.2-dev","id":"c1","status":"running","pid":3024,"bundle":"/b"}"#,
        )
        .unwrap();
        assert!(s.is_running());
        let s: ContainerState =
            serde_json::from_str(r#"{"id":"c1","status":"stopped","pid":-1}"#).unwrap();
        assert!(!s.is_running());
    }

    #[test]
    fn exits_are_described_for_operators() {
        assert_eq!(describe_exit(ExitStatus::Exited(3)), "exited with status 3");
        assert_eq!(
            describe_exit(ExitStatus::Exited(137)),
            "exited with status 137 (killed by signal 9)"
        );
    }
}
