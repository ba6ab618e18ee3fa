//! What runsc reports: a container's state (`state`, `list`), how a
//! sandbox ended (`wait`), its memory use (`usage`) and its version, parsed
//! from what it prints.

use serde::Deserialize;

use super::RuntimeError;
use crate::reaper::ExitStatus;

/// `runsc state` / `runsc list --format=json` for one container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct ContainerState {
    /// The runsc container id.
    pub id: String,
    /// What runsc says the container is doing.
    pub status: ContainerStatus,
    /// Sandbox pid (-1 or 0 when none).
    #[serde(default)]
    pub pid: i32,
    /// Bundle directory.
    #[serde(default)]
    pub bundle: String,
}

impl ContainerState {
    /// True when the sandbox runs.
    pub(crate) fn is_running(&self) -> bool {
        self.status == ContainerStatus::Running && self.pid > 0
    }

    /// True when the sandbox is frozen by `runsc pause` (it lives on).
    pub(crate) fn is_paused(&self) -> bool {
        self.status == ContainerStatus::Paused && self.pid > 0
    }
}

/// The status word of a container in runsc's JSON. A word this daemon does
/// not know (a newer runsc's) is kept as [`ContainerStatus::Unknown`], so
/// that one odd container never fails a whole `runsc list`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub(crate) enum ContainerStatus {
    /// `created`: made, not started.
    Created,
    /// `running`.
    Running,
    /// `stopped`: its sandbox ended (or a checkpoint stopped it).
    Stopped,
    /// `paused`.
    Paused,
    /// Any other word, as runsc printed it.
    Unknown(String),
}

impl ContainerStatus {
    /// The word runsc uses.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Stopped => "stopped",
            ContainerStatus::Paused => "paused",
            ContainerStatus::Unknown(word) => word,
        }
    }
}

impl From<&str> for ContainerStatus {
    fn from(word: &str) -> ContainerStatus {
        match word {
            "created" => ContainerStatus::Created,
            "running" => ContainerStatus::Running,
            "stopped" => ContainerStatus::Stopped,
            "paused" => ContainerStatus::Paused,
            other => ContainerStatus::Unknown(other.to_string()),
        }
    }
}

impl From<String> for ContainerStatus {
    fn from(word: String) -> ContainerStatus {
        ContainerStatus::from(word.as_str())
    }
}

impl std::fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `runsc state` output.
pub(super) fn parse_state(out: &[u8]) -> Result<ContainerState, RuntimeError> {
    serde_json::from_slice(out).map_err(|e| RuntimeError::Parse {
        op: "state",
        detail: e.to_string(),
    })
}

/// `runsc list --format=json` output; runsc prints `null` (or nothing)
/// when there is no container.
pub(super) fn parse_list(out: &[u8]) -> Result<Vec<ContainerState>, RuntimeError> {
    let text = String::from_utf8_lossy(out);
    if text.trim().is_empty() || text.trim() == "null" {
        return Ok(Vec::new());
    }
    serde_json::from_str(&text).map_err(|e| RuntimeError::Parse {
        op: "list",
        detail: e.to_string(),
    })
}

/// `runsc usage` output: the bytes of memory the application uses.
pub(super) fn parse_usage(out: &[u8]) -> Result<u64, RuntimeError> {
    #[derive(Deserialize)]
    struct Usage {
        #[serde(rename = "Total")]
        total: u64,
    }
    serde_json::from_slice::<Usage>(out)
        .map(|u| u.total)
        .map_err(|e| RuntimeError::Parse {
            op: "usage",
            detail: e.to_string(),
        })
}

/// `runsc wait` output: how the sandbox ended; `None` when it printed no
/// exit status.
pub(super) fn parse_wait(out: &[u8]) -> Option<ExitOutcome> {
    #[derive(Deserialize)]
    struct WaitOutput {
        #[serde(rename = "exitStatus")]
        exit_status: i32,
    }
    // runsc already folds a signal into 128+n.
    let w = serde_json::from_slice::<WaitOutput>(out).ok()?;
    Some(ExitOutcome {
        code: Some(w.exit_status),
        message: describe_exit(ExitStatus::Exited(w.exit_status)),
    })
}

/// How a sandbox ended, as far as we could learn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExitOutcome {
    /// Exit code (128+n for a signal); `None` when it could not be learned.
    pub code: Option<i32>,
    /// Human description.
    pub message: String,
}

/// What an operator reads in statusMessage when a sandbox ends.
pub(crate) fn describe_exit(status: ExitStatus) -> String {
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
pub(crate) fn parse_version(text: &str) -> Option<String> {
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
        let s = parse_state(
            br#"{"ociVersion":"1.0.2-dev","id":"c1","status":"running","pid":3024,"bundle":"/b"}"#,
        )
        .unwrap();
        assert_eq!(s.status, ContainerStatus::Running);
        assert!(s.is_running());
        let s = parse_state(br#"{"id":"c1","status":"stopped","pid":-1}"#).unwrap();
        assert_eq!(s.status, ContainerStatus::Stopped);
        assert!(!s.is_running());
        // Running needs a pid too.
        let s = parse_state(br#"{"id":"c1","status":"running","pid":0}"#).unwrap();
        assert!(!s.is_running());
        assert!(matches!(
            parse_state(b"runsc: oops"),
            Err(RuntimeError::Parse { op: "state", .. })
        ));
    }

    #[test]
    fn every_status_word_parses_and_a_new_one_is_kept() {
        for word in ["created", "running", "stopped", "paused", "restoring"] {
            let json = format!(r#"{{"id":"c1","status":"{word}","pid":7}}"#);
            let s = parse_state(json.as_bytes()).unwrap();
            assert_eq!(s.status.as_str(), word);
            assert_eq!(s.status.to_string(), word);
            assert_eq!(s.is_running(), word == "running");
        }
        assert_eq!(
            ContainerStatus::from("restoring"),
            ContainerStatus::Unknown("restoring".to_string())
        );
        assert_eq!(ContainerStatus::from("paused"), ContainerStatus::Paused);
        assert_eq!(ContainerStatus::from("created"), ContainerStatus::Created);
    }

    #[test]
    fn list_json_is_parsed() {
        assert!(parse_list(b"null\n").unwrap().is_empty());
        assert!(parse_list(b"").unwrap().is_empty());
        let list = parse_list(
            br#"[{"id":"a_1.x","status":"running","pid":5},{"id":"b_2.x","status":"weird","pid":-1}]"#,
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0].is_running());
        assert_eq!(list[1].status, ContainerStatus::Unknown("weird".into()));
        assert!(matches!(
            parse_list(b"{"),
            Err(RuntimeError::Parse { op: "list", .. })
        ));
    }

    #[test]
    fn usage_and_wait_are_parsed() {
        assert_eq!(parse_usage(br#"{"Mapped":1,"Total":4096}"#).unwrap(), 4096);
        assert!(matches!(
            parse_usage(b"{}"),
            Err(RuntimeError::Parse { op: "usage", .. })
        ));
        assert_eq!(
            parse_wait(br#"{"id":"a_1.x","exitStatus":137}"#),
            Some(ExitOutcome {
                code: Some(137),
                message: "exited with status 137 (killed by signal 9)".into()
            })
        );
        assert_eq!(parse_wait(b""), None);
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
