//! The README's examples (`curl --unix-socket`, `atectl`), run as written
//! against a real daemon. A block is marked with `<!-- readme-test: NAME -->` on the line
//! before its fence.

use std::process::{Command, Stdio};
use std::sync::Mutex;

use atelet_e2e::{repo_root, rootfs, target_dir, Daemon};

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
    // The blocks use the same actor ids, and runsc's sandbox control socket
    // is named after the container id host-wide (abstract socket), so two
    // blocks must not run at once even against different daemons.
    static ONE_BLOCK_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_BLOCK_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cwd = d.dir.join("checkout");
    std::fs::create_dir_all(cwd.join(".atelet/rootfs")).unwrap();
    let _ = std::os::unix::fs::symlink(&d.socket, cwd.join(".atelet/atelet.sock"));
    // A copy, not a link: the image example packs it with umoci, which
    // would pack a link as a link.
    let demo = cwd.join(".atelet/rootfs/busybox");
    if !demo.exists() {
        let ok = Command::new("cp")
            .arg("-a")
            .arg(rootfs())
            .arg(&demo)
            .status()
            .unwrap()
            .success();
        assert!(ok, "copying the demo rootfs");
    }
    // In strict mode every curl must succeed (2xx); output goes on separate lines.
    let prelude = if strict {
        "set -euo pipefail\ncurl() { command curl --fail-with-body \"$@\"; echo; }\n"
    } else {
        "set -uo pipefail\ncurl() { command curl \"$@\"; echo; }\n"
    };
    // atectl as an operator has it: on PATH.
    let path = std::env::join_paths(std::iter::once(target_dir()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .current_dir(&cwd)
        .env("PATH", path)
        .env_remove("ATELET_SOCKET")
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
    // The comments in the README show these same bodies (a message may be
    // cut short with "(…)").
    let shown: Vec<serde_json::Value> = script
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let answered: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(shown.len(), answered.len(), "{script}\n{out}");
    for (shown, answered) in shown.iter().zip(&answered) {
        assert_eq!(shown["error"]["code"], answered["error"]["code"]);
        let want = shown["error"]["message"].as_str().unwrap();
        let want = want.strip_suffix("(…)").unwrap_or(want).trim_end();
        let got = answered["error"]["message"].as_str().unwrap();
        assert!(
            got.starts_with(want),
            "README shows {want:?}, the daemon said {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_atectl_examples_run_as_written() {
    // The quick start's policy (scripts/run-daemon): images from the demo
    // rootfs (the harness's image dirs hold it), and only the default
    // capabilities may be added.
    let d = Daemon::start_with_config("[policy]\n", &[]);
    let out = run(&d, &block("atectl"), true);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "status:  ok", "{out}");
    let at = |line: &str| {
        lines
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("no line {line:?} in:\n{out}"))
    };
    // The results come in the order of the commands.
    let order = [
        at("counter-1 RUNNING"),
        at("counter-1 SUSPENDED"),
        at("counter-1 deleted"),
        at("hello deleted"),
        at("exit status 3"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
    assert!(lines.iter().any(|l| l.starts_with("hello ")), "{out}");
    // Tables: list, then list -o wide.
    let headers: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("ID "))
        .copied()
        .collect();
    assert_eq!(headers.len(), 2, "{out}");
    assert!(headers[1].ends_with("MESSAGE"), "{out}");
    // hello ran as uid 1000 with SETUID added to the defaults.
    assert!(lines.contains(&"1000"), "{out}");
    assert!(lines.contains(&"CapEff:\t00000000200004a0"), "{out}");
    // get -o json, and the event log.
    assert!(out.contains("\"id\": \"counter-1\""), "{out}");
    assert!(
        out.contains("  counter-1  SUSPENDED -> RESUMING  "),
        "{out}"
    );
    assert!(d.client.list(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_examples_run_as_written() {
    let d = Daemon::start();
    // Not strict: one example answers 409 on purpose.
    let out = run(&d, &block("images"), false);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let running = lines.iter().filter(|v| v["status"] == "RUNNING").count();
    assert_eq!(running, 2, "two actors created and running: {out}");
    let listed: Vec<&serde_json::Value> = lines.iter().filter(|v| v["images"].is_array()).collect();
    assert_eq!(listed.len(), 2, "{out}");
    assert_eq!(
        listed[0]["images"][0]["actors"],
        serde_json::json!(["hello-1", "hello-2"]),
        "{out}"
    );
    assert_eq!(listed[1]["images"], serde_json::json!([]), "{out}");
    let codes: Vec<&str> = lines
        .iter()
        .filter_map(|v| v["error"]["code"].as_str())
        .collect();
    assert_eq!(codes, ["Conflict"], "{out}");
    let unpacks = d.log().matches("\"message\":\"image unpacked\"").count();
    assert_eq!(unpacks, 1, "{}", d.log());
    assert!(d.client.list(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pause_walkthrough_runs_as_written() {
    let d = Daemon::start();
    let out = run(&d, &block("pause"), true);
    let lines: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert!(lines.contains(&"\"status\":\"PAUSED\""), "{out}");
    let from: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("\"activatedFrom\""))
        .copied()
        .collect();
    assert_eq!(
        from,
        [
            "\"activatedFrom\":\"paused\"",
            "\"activatedFrom\":\"suspended\""
        ],
        "{out}"
    );
    // Both woken GETs were answered with the counter.
    let counts: Vec<u64> = lines.iter().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(counts.len(), 2, "{out}");
    for tier in ["paused", "suspended"] {
        assert!(
            out.contains(&format!(
                "atelet_activation_duration_seconds_count{{tier=\"{tier}\"}} 1"
            )),
            "{out}"
        );
    }
    assert!(d.client.list(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_networking_walkthrough_runs_as_written() {
    let d = Daemon::start();
    let out = run(&d, &block("networking"), true);
    let records: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["id"] == "web-1")
        .collect();
    let statuses: Vec<&str> = records
        .iter()
        .filter_map(|v| v["status"].as_str())
        .collect();
    assert_eq!(statuses, ["RUNNING", "SUSPENDED", "RUNNING"], "{out}");
    assert_eq!(records[0]["ready"], true, "{out}");
    let ip = records[0]["network"]["ip"].as_str().unwrap();
    assert_eq!(ip, d.net.actor_ip(0));
    assert!(records.iter().all(|r| r["network"]["ip"] == ip), "{out}");
    assert_eq!(records[0]["network"]["ports"][0]["hostPort"], 18080);
    // The counter read three times (port, port after resume, address):
    // it never went back.
    let counts: Vec<u64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(counts.len(), 3, "{out}");
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    // list -o wide shows the address and the port.
    assert!(
        out.lines()
            .any(|l| l.starts_with("web-1 ") && l.contains(ip) && l.contains("18080")),
        "{out}"
    );
    let health = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["status"] == "ok")
        .unwrap_or_else(|| panic!("no health with a network: {out}"));
    assert_eq!(health["network"]["addressesInUse"], 1, "{out}");
    assert_eq!(
        health["network"]["publishedPorts"],
        serde_json::json!([18080])
    );
    assert!(d.client.list(None).await.unwrap().is_empty());
    assert_eq!(
        d.client
            .health()
            .await
            .unwrap()
            .network
            .unwrap()
            .addresses_in_use,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_moving_walkthrough_runs_as_written() {
    let d = Daemon::start();
    let out = run(&d, &block("moving"), true);
    let records: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect();
    let of = |id: &str| -> Vec<&str> {
        records
            .iter()
            .filter(|v| v["id"] == id)
            .filter_map(|v| v["status"].as_str())
            .collect()
    };
    assert_eq!(of("counter-1"), ["RUNNING", "SUSPENDED"], "{out}");
    assert_eq!(of("counter-2"), ["SUSPENDED", "RUNNING"], "{out}");
    assert!(out.contains("counter-3 SUSPENDED"), "{out}");
    // counter-3's log starts where counter-1 stood, not at 0.
    let counts: Vec<u64> = out
        .lines()
        .skip_while(|l| !l.starts_with("counter-3 RUNNING"))
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(!counts.is_empty(), "{out}");
    assert!(counts.iter().all(|n| *n >= 1), "counter-3 restarted: {out}");
    assert!(d.client.list(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_limits_walkthrough_runs_as_written() {
    let d = Daemon::start();
    // Not strict: the bad quantity answers 400 on purpose.
    let out = run(&d, &block("limits"), false);
    assert!(out.contains("MemTotal:          65536 kB"), "{out}");
    let stats = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["cpuSeconds"].is_number())
        .unwrap_or_else(|| panic!("no stats: {out}"));
    assert_eq!(stats["cpuLimit"], 0.5, "{out}");
    assert_eq!(stats["memoryLimitBytes"], 64 << 20, "{out}");
    assert!(out.lines().any(|l| l.starts_with("ACTOR ")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("spin-1 ") && l.contains("RUNNING") && l.contains("0.50")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("hog ") && l.contains("FAILED") && l.contains("OOMKilled")),
        "{out}"
    );
    assert!(
        out.contains("spec.containers[0].resources.limits.memory"),
        "{out}"
    );
    assert!(d.client.list(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_example_runs_as_written() {
    // The configuration the README shows next to the block.
    let d = Daemon::start_with_config(
        "[policy]\nallowed_registries = [\"127.0.0.1:5055\"]\n\
         [registries.\"127.0.0.1:5055\"]\ninsecure = true\n",
        &[],
    );
    let out = run(&d, &block("registry"), true);
    assert!(out.contains("hello from the registry"), "{out}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let pulls: Vec<&serde_json::Value> =
        lines.iter().filter(|v| v["reason"] == "pulling").collect();
    let last = pulls
        .last()
        .unwrap_or_else(|| panic!("no pulling event: {out}"));
    assert_eq!(
        last["pull"]["bytesDone"], last["pull"]["bytesTotal"],
        "{out}"
    );
    let listed = lines
        .iter()
        .find(|v| v["images"].is_array())
        .unwrap_or_else(|| panic!("no image list: {out}"));
    assert_eq!(
        listed["images"][0]["references"],
        serde_json::json!(["docker://127.0.0.1:5055/agent:v1"]),
        "{out}"
    );
    assert_eq!(
        listed["images"][0]["actors"],
        serde_json::json!(["agent-1"])
    );
    let codes: Vec<&str> = lines
        .iter()
        .filter_map(|v| v["error"]["code"].as_str())
        .collect();
    assert_eq!(codes, ["Unauthorized"], "{out}");
    assert!(out.contains("allowed_registries"), "{out}");
    assert_eq!(d.log().matches("\"message\":\"pulling image\"").count(), 1);
    assert!(d.client.list(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exec_examples_run_as_written() {
    let d = Daemon::start();
    let out = run(&d, &block("exec"), true);
    assert!(out.contains(r#""exitCode":0,"stdout":"0\n""#), "{out}");
    assert!(
        out.contains(r#"{"stream":"stdout","data":"one\n"}"#),
        "{out}"
    );
    assert!(out.contains(r#"{"exitCode":0}"#), "{out}");
    assert!(out.contains("exit code 3"), "{out}");
    assert!(out.contains("HELLO"), "{out}");
    assert_eq!(out.matches("deep").count(), 2, "{out}");
    assert!(d.client.list(None).await.unwrap().is_empty());
}
