//! Resource limits on real runsc: enforced (meminfo, OOM kill, CPU quota),
//! kept across suspend/resume and a daemon restart, observed (stats route,
//! metrics, `atectl top`), admitted (max_memory_commit, require_limits),
//! validated, and cleaned up (no cgroup left behind).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use atelet_api::{ActorStats, ActorStatus, ErrorBody};
use atelet_e2e::{actor_request, Daemon, COUNTER};
use hyper::Method;
use serde_json::json;

/// The v1 hierarchies runsc makes a sandbox's cgroup in (the named
/// `systemd` one too).
const CONTROLLERS: [&str; 9] = [
    "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd",
];

/// A cgroup parent of this test's own, removed (with anything under it
/// that holds no task) when dropped.
struct Parent(String);

impl Parent {
    fn new(tag: &str) -> Parent {
        Parent(format!("/atelet-e2e-{tag}-{}", std::process::id()))
    }

    fn dir(&self, controller: &str) -> PathBuf {
        PathBuf::from("/sys/fs/cgroup")
            .join(controller)
            .join(self.0.trim_start_matches('/'))
    }

    /// The children of the parent under every controller, as
    /// `controller/name`.
    fn children(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in CONTROLLERS {
            if let Ok(entries) = std::fs::read_dir(self.dir(c)) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        out.push(format!("{c}/{}", e.file_name().to_string_lossy()));
                    }
                }
            }
        }
        out.sort();
        out
    }

    fn read(&self, controller: &str, cgroup: &str, file: &str) -> String {
        let path = self.dir(controller).join(cgroup).join(file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    }

    fn config(&self, policy: &str) -> String {
        format!(
            "[cgroups]\nparent = {:?}\n[policy]\nallowed_capabilities = [\"ALL\"]\n{policy}\n",
            self.0
        )
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        for c in CONTROLLERS {
            let dir = self.dir(c);
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

fn limited(id: &str, script: &str, limits: serde_json::Value) -> serde_json::Value {
    let mut body = actor_request(id, script);
    body["spec"]["containers"][0]["resources"] = json!({ "limits": limits });
    body
}

async fn stats(d: &Daemon, id: &str) -> ActorStats {
    d.client.stats(id).await.unwrap()
}

fn container_id(a: &atelet_api::Actor) -> String {
    a.sandbox.as_ref().expect("a sandbox").container_id.clone()
}

/// Sends a request that must be refused with `status`; returns the message.
async fn refused(
    d: &Daemon,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    status: u16,
) -> String {
    let resp = d
        .client
        .raw(
            method.clone(),
            path,
            body.map(|b| serde_json::to_vec(&b).unwrap()),
        )
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    assert_eq!(resp.status, status, "{method} {path}: {text}");
    let err: ErrorBody = serde_json::from_slice(&resp.body).unwrap();
    err.error.message
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_limit_shows_inside_and_an_allocation_past_it_is_oom_killed() {
    let parent = Parent::new("oom");
    let d = Daemon::start_with_config(&parent.config(""), &[]);
    let small = d
        .create(&limited(
            "small",
            "grep MemTotal /proc/meminfo; sleep 100000",
            json!({"memory": "64Mi"}),
        ))
        .await;
    d.create(&actor_request("bystander", COUNTER)).await;
    let log = d
        .wait_log("small", Duration::from_secs(10), |l| l.contains("MemTotal"))
        .await;
    assert!(log.contains("MemTotal:          65536 kB"), "{log}");
    let cid = container_id(&small);
    assert_eq!(
        parent.read("memory", &cid, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );

    // Doubles a string until it holds 256 MiB; it never gets there.
    let hog = "awk 'BEGIN { s = \"x\"; for (i = 0; i < 28; i++) { s = s s; print length(s) } }'; echo survived";
    d.create(&limited("hog", hog, json!({"memory": "64Mi"})))
        .await;
    let failed = d
        .wait_status("hog", ActorStatus::Failed, Duration::from_secs(60))
        .await;
    assert!(
        failed.status_message.contains("OOMKilled"),
        "{}",
        failed.status_message
    );
    assert!(
        failed.status_message.contains("64Mi"),
        "{}",
        failed.status_message
    );
    let out = d.logs("hog").await;
    assert!(
        !out.contains("survived") && !out.contains("268435456"),
        "{out}"
    );

    // The daemon and the other actors did not notice.
    assert_eq!(d.client.health().await.unwrap().status, "ok");
    assert_eq!(
        d.client.get("small").await.unwrap().status,
        ActorStatus::Running
    );
    let before = atelet_e2e::numbers(&d.logs("bystander").await)
        .last()
        .copied()
        .unwrap_or(0);
    d.wait_log("bystander", Duration::from_secs(10), |l| {
        atelet_e2e::numbers(l).last().copied().unwrap_or(0) > before + 5
    })
    .await;
    for id in ["small", "hog", "bystander"] {
        d.client.delete(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_loop_under_500m_gets_half_a_core_and_top_and_metrics_show_it() {
    let parent = Parent::new("cpu");
    let d = Daemon::start_with_config(&parent.config(""), &[]);
    d.create(&limited(
        "spin",
        "while :; do :; done",
        json!({"cpu": "500m"}),
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s0 = stats(&d, "spin").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s1 = stats(&d, "spin").await;
    let rate = atectl_rate(&s0, &s1);
    eprintln!("cpu 500m: {rate:.3} CPU seconds per second over 5 s");
    assert!((0.4..=0.6).contains(&rate), "{rate} CPU s/s: {s0:?} {s1:?}");
    assert_eq!(s1.cpu_limit, Some(0.5));
    assert!(s1.memory_bytes.unwrap() > 0);
    assert!(s1.pids.unwrap() > 0);
    assert_eq!(s1.memory_limit_bytes, None);

    let metrics = String::from_utf8(
        d.client
            .raw(Method::GET, "/metrics", None)
            .await
            .unwrap()
            .body
            .to_vec(),
    )
    .unwrap();
    let cpu_line = metrics
        .lines()
        .find(|l| l.starts_with(r#"atelet_actor_cpu_seconds_total{actor="spin"}"#))
        .unwrap_or_else(|| panic!("{metrics}"));
    let cpu: f64 = cpu_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(cpu >= s1.cpu_seconds.unwrap(), "{cpu_line}");
    assert!(
        metrics.contains(r#"atelet_actor_memory_bytes{actor="spin"}"#),
        "{metrics}"
    );

    let top = d.atectl_ok(&["top", "--once", "-n", "1"]);
    let row = top
        .lines()
        .find(|l| l.starts_with("spin "))
        .unwrap_or_else(|| panic!("{top}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "RUNNING", "{top}");
    let cores: f64 = cols[2].parse().unwrap();
    assert!((0.3..=0.7).contains(&cores), "{top}");
    assert_eq!(cols[3], "0.50", "{top}");
    assert!(top.starts_with("ACTOR"), "{top}");

    // Stopped: no usage, and its series is gone.
    d.client.act("spin", "stop").await.unwrap();
    let s = stats(&d, "spin").await;
    assert_eq!((s.cpu_seconds, s.memory_bytes, s.pids), (None, None, None));
    assert_eq!(s.cpu_limit, Some(0.5));
    let metrics = String::from_utf8(
        d.client
            .raw(Method::GET, "/metrics", None)
            .await
            .unwrap()
            .body
            .to_vec(),
    )
    .unwrap();
    assert!(!metrics.contains(r#"actor="spin""#), "{metrics}");
    d.client.delete("spin").await.unwrap();
}

fn atectl_rate(a: &ActorStats, b: &ActorStats) -> f64 {
    let t = |s: &ActorStats| humantime_secs(&s.time);
    // Seconds of the day: a pair across midnight is a day apart.
    let dt = (t(b) - t(a)).rem_euclid(86_400.0);
    (b.cpu_seconds.unwrap() - a.cpu_seconds.unwrap()) / dt
}

fn humantime_secs(rfc3339: &str) -> f64 {
    // "2026-12-05T12:00:00.123Z": seconds of the day are enough here.
    let time = rfc3339.split('T').nth(1).unwrap().trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next().unwrap().parse().unwrap();
    let m: f64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    h * 3600.0 + m * 60.0 + s
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_hold_after_suspend_resume_and_a_daemon_restart() {
    let parent = Parent::new("keep");
    let mut d = Daemon::start_with_config(&parent.config(""), &[]);
    let script = "while true; do grep MemTotal /proc/meminfo; sleep 0.5; done";
    let a = d
        .create(&limited(
            "keep",
            script,
            json!({"memory": "64Mi", "cpu": "250m"}),
        ))
        .await;
    let check = |cid: &str| {
        assert_eq!(
            parent.read("memory", cid, "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(parent.read("cpu", cid, "cpu.cfs_quota_us"), "25000");
        assert_eq!(parent.read("cpu", cid, "cpu.cfs_period_us"), "100000");
    };
    check(&container_id(&a));
    d.wait_log("keep", Duration::from_secs(10), |l| l.contains("65536 kB"))
        .await;

    d.client.act("keep", "suspend").await.unwrap();
    let offset = d.logs("keep").await.len();
    let a = d.client.act("keep", "resume").await.unwrap();
    let cid = container_id(&a);
    check(&cid);
    let log = d
        .wait_log("keep", Duration::from_secs(10), |l| {
            l[offset..].contains("MemTotal")
        })
        .await;
    assert!(
        log[offset..]
            .lines()
            .filter(|l| l.contains("MemTotal"))
            .all(|l| l.contains("65536 kB")),
        "{}",
        &log[offset..]
    );
    let s = stats(&d, "keep").await;
    assert_eq!(s.memory_limit_bytes, Some(64 << 20));
    assert_eq!(s.cpu_limit, Some(0.25));

    // A restart adopts the sandbox in its cgroup; the limits are still there.
    d.kill9();
    d.restart();
    let a = d
        .wait_status("keep", ActorStatus::Running, Duration::from_secs(30))
        .await;
    assert_eq!(container_id(&a), cid);
    check(&cid);
    let s = stats(&d, "keep").await;
    assert_eq!(s.memory_limit_bytes, Some(64 << 20));
    assert!(s.cpu_seconds.unwrap() > 0.0);
    d.client.delete("keep").await.unwrap();
    assert!(parent.children().is_empty(), "{:?}", parent.children());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_commit_is_bounded_with_a_403_that_gives_the_numbers() {
    let parent = Parent::new("commit");
    let d = Daemon::start_with_config(&parent.config("max_memory_commit = \"200Mi\""), &[]);
    let mi128 = json!({"memory": "128Mi"});
    d.create(&limited("a", "sleep 100000", mi128.clone())).await;

    let msg = refused(
        &d,
        Method::POST,
        "/v1/actors",
        Some(limited("b", "sleep 100000", mi128.clone())),
        403,
    )
    .await;
    for needle in [
        "max_memory_commit",
        "(128Mi)",
        "(200Mi)",
        "(256Mi)",
        "134217728 bytes",
    ] {
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    refused(&d, Method::GET, "/v1/actors/b", None, 404).await;

    // Created without starting: nothing is committed; its start is refused
    // and changes nothing.
    let mut body = limited("b", "sleep 100000", mi128.clone());
    body["start"] = json!(false);
    d.create(&body).await;
    let msg = refused(&d, Method::POST, "/v1/actors/b/start", None, 403).await;
    assert!(msg.contains("max_memory_commit"), "{msg}");
    assert_eq!(
        d.client.get("b").await.unwrap().status,
        ActorStatus::Created
    );
    // An actor without a limit promises nothing and is let in.
    d.create(&actor_request("free", "sleep 100000")).await;

    // A suspended actor holds no memory: b fits once a sleeps, and then a's
    // resume is the one refused (a stays SUSPENDED).
    d.client.act("a", "suspend").await.unwrap();
    d.client.act("b", "start").await.unwrap();
    let msg = refused(&d, Method::POST, "/v1/actors/a/resume", None, 403).await;
    assert!(
        msg.contains("max_memory_commit") && msg.contains("actor a"),
        "{msg}"
    );
    assert_eq!(
        d.client.get("a").await.unwrap().status,
        ActorStatus::Suspended
    );
    d.client.act("b", "stop").await.unwrap();
    d.client.act("a", "resume").await.unwrap();
    // A paused actor keeps its memory: it still counts.
    d.client.act("a", "pause").await.unwrap();
    let msg = refused(&d, Method::POST, "/v1/actors/b/start", None, 403).await;
    assert!(msg.contains("max_memory_commit"), "{msg}");
    for id in ["a", "b", "free"] {
        d.client.delete(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn require_limits_refuses_a_spec_without_a_memory_limit() {
    let parent = Parent::new("require");
    let d = Daemon::start_with_config(&parent.config("require_limits = true"), &[]);
    let msg = refused(
        &d,
        Method::POST,
        "/v1/actors",
        Some(actor_request("bare", "sleep 1000")),
        403,
    )
    .await;
    assert!(msg.contains("require_limits"), "{msg}");
    assert!(
        msg.contains("spec.containers[0].resources.limits.memory"),
        "{msg}"
    );
    let msg = refused(
        &d,
        Method::POST,
        "/v1/actors",
        Some(limited("cpu-only", "sleep 1000", json!({"cpu": "1"}))),
        403,
    )
    .await;
    assert!(msg.contains("require_limits"), "{msg}");
    assert!(d.client.list(None).await.unwrap().is_empty());
    // A number is a quantity too, as in Kubernetes.
    let a = d
        .create(&limited("ok", "sleep 1000", json!({"memory": 67108864})))
        .await;
    let r = a.spec.containers[0].resources.as_ref().unwrap();
    assert_eq!(
        r.limits.as_ref().unwrap().memory.as_deref(),
        Some("67108864")
    );
    let s = d.client.stats("ok").await.unwrap();
    assert_eq!(s.memory_limit_bytes, Some(64 << 20));
    d.client.delete("ok").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_quantities_are_refused_naming_the_field() {
    let parent = Parent::new("bad");
    let d = Daemon::start_with_config(&parent.config(""), &[]);
    let files = d.files();
    for (resources, field) in [
        (
            json!({"limits": {"memory": "64 MiB"}}),
            "spec.containers[0].resources.limits.memory",
        ),
        (
            json!({"limits": {"memory": "1Mi"}}),
            "spec.containers[0].resources.limits.memory",
        ),
        (
            json!({"limits": {"cpu": "half"}}),
            "spec.containers[0].resources.limits.cpu",
        ),
        (
            json!({"limits": {"cpu": "-1"}}),
            "spec.containers[0].resources.limits.cpu",
        ),
        (
            json!({"requests": {"cpu": "0"}}),
            "spec.containers[0].resources.requests.cpu",
        ),
        (
            json!({"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}),
            "spec.containers[0].resources.requests.cpu",
        ),
        (
            json!({"limits": {"memory": 1024}}),
            "spec.containers[0].resources.limits.memory",
        ),
        (
            json!({"limits": {"memory": true}}),
            "a quantity is text or a number",
        ),
        (json!({"limits": {"gpu": "1"}}), "gpu"),
    ] {
        let mut body = actor_request("q", "sleep 1000");
        body["spec"]["containers"][0]["resources"] = resources.clone();
        let msg = refused(&d, Method::POST, "/v1/actors", Some(body), 400).await;
        assert!(msg.contains(field), "{resources}: {msg}");
    }
    assert!(d.client.list(None).await.unwrap().is_empty());
    assert_eq!(d.files(), files);
    assert!(parent.children().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn no_cgroup_is_left_after_50_create_delete_cycles_or_a_recovery() {
    let parent = Parent::new("leak");
    let mut d = Daemon::start_with_config(&parent.config(""), &[]);
    let before = parent.children();
    let t0 = Instant::now();
    for i in 0..50 {
        let id = format!("c{i}");
        let a = d
            .create(&limited(
                &id,
                "sleep 100000",
                json!({"memory": "64Mi", "cpu": "100m"}),
            ))
            .await;
        // Every third one is stopped first, every fifth suspended.
        if i % 3 == 0 {
            d.client.act(&id, "stop").await.unwrap();
        } else if i % 5 == 0 {
            d.client.act(&id, "suspend").await.unwrap();
        } else {
            assert!(!parent
                .read("memory", &container_id(&a), "memory.limit_in_bytes")
                .is_empty());
        }
        d.client.delete(&id).await.unwrap();
    }
    eprintln!("50 create/delete cycles: {:?}", t0.elapsed());
    // Background removals (runsc delete of stopped sandboxes) settle.
    let deadline = Instant::now() + Duration::from_secs(10);
    while parent.children() != before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(parent.children(), before);

    // A cgroup of this node that no record or sandbox names (as a crash
    // leaves) is removed by the recovery at the next start; another
    // node's is not touched.
    let node = std::fs::read_to_string(d.state.join("node-id")).unwrap();
    let stale = format!("gone_7.{}", node.trim());
    let foreign = "other_1.feedbeef".to_string();
    for c in ["memory", "cpu", "pids"] {
        std::fs::create_dir(parent.dir(c).join(&stale)).unwrap();
        std::fs::create_dir(parent.dir(c).join(&foreign)).unwrap();
    }
    d.create(&limited("live", "sleep 100000", json!({"memory": "64Mi"})))
        .await;
    d.kill9();
    d.restart();
    d.wait_status("live", ActorStatus::Running, Duration::from_secs(30))
        .await;
    let left = parent.children();
    assert!(!left.iter().any(|c| c.ends_with(&stale)), "{left:?}");
    assert!(left.iter().any(|c| c.ends_with(&foreign)), "{left:?}");
    d.client.delete("live").await.unwrap();
    for c in ["memory", "cpu", "pids"] {
        std::fs::remove_dir(parent.dir(c).join(&foreign)).unwrap();
    }
    assert_eq!(parent.children(), before);
}
