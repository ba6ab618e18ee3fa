//! The README's `curl --unix-socket` examples, run as written against a real
//! daemon. A block is marked with `<!-- readme-test: NAME -->` on the line
//! before its fence.

use std::process::{Command, Stdio};

use atelet_e2e::{repo_root, rootfs, Daemon};

/// The shell block that follows `<!-- readme-test: name -->`.
fn block(name: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let marker = format!("<!-- readme-test: {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README has no block {marker}"))
        .1;
    let body = after
        .split_once("```sh\n")
        .expect("a ```sh fence follows the marker")
        .1;
    body.split_once("\n```")
        .expect("the fence is closed")
        .0
        .to_string()
}

/// Runs a block with bash in a directory laid out like the quick start's
/// (`.atelet/atelet.sock`, `.atelet/rootfs/busybox`), pointing at `d`.
fn run(d: &Daemon, script: &str, strict: bool) -> String {
    let cwd = d.dir.join("checkout");
    std::fs::create_dir_all(cwd.join(".atelet/rootfs")).unwrap();
    let _ = std::os::unix::fs::symlink(&d.socket, cwd.join(".atelet/atelet.sock"));
    let _ = std::os::unix::fs::symlink(rootfs(), cwd.join(".atelet/rootfs/busybox"));
    // In strict mode every curl must succeed (2xx); output goes on separate lines.
    let prelude = if strict {
        "set -euo pipefail\ncurl() { command curl --fail-with-body \"$@\"; echo; }\n"
    } else {
        "set -uo pipefail\ncurl() { command curl \"$@\"; echo; }\n"
    };
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "README block failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn the_walkthrough_runs_as_written() {
    let d = Daemon::start();
    let out = run(&d, &block("walkthrough"), true);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let statuses: Vec<&str> = lines.iter().filter_map(|v| v["status"].as_str()).collect();
    assert_eq!(statuses.first(), Some(&"ok"), "healthz first: {out}");
    assert!(
        statuses.windows(2).any(|w| w == ["SUSPENDED", "RUNNING"]),
        "suspend then resume: {statuses:?}"
    );
    // The two log reads: the second goes on from the first.
    let logs: Vec<Vec<u64>> = out
        .split('\n')
        .collect::<Vec<_>>()
        .split(|l| !l.trim().chars().all(|c| c.is_ascii_digit()) || l.trim().is_empty())
        .filter(|run| !run.is_empty())
        .map(|run| run.iter().map(|l| l.trim().parse().unwrap()).collect())
        .collect();
    assert!(logs.len() >= 2, "two log reads expected: {out}");
    let (first, second) = (&logs[0], &logs[logs.len() - 1]);
    assert_eq!(first[0], 0);
    assert!(second.len() > first.len(), "{first:?} then {second:?}");
    assert_eq!(&second[..first.len()], &first[..]);
    // The walkthrough deleted its actor.
    assert!(d.client.list(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_error_examples_answer_as_shown() {
    let d = Daemon::start();
    let script = block("errors");
    let out = run(&d, &script, false);
    let codes: Vec<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["error"]["code"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(codes, ["InvalidArgument", "NotFound"], "{out}");
    // The comments in the README show these same codes.
    for code in &codes {
        assert!(script.contains(&format!("\"code\":\"{code}\"")));
    }
}
