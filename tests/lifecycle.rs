//! Create → RUNNING → suspend → SUSPENDED → resume → RUNNING, with the
//! actor's memory intact: a counter continues from where it stood.

use std::time::Duration;

use atelet_api::ActorStatus;
use atelet_e2e::{actor_request, assert_consecutive, numbers, Daemon, COUNTER};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn counter_survives_three_suspend_resume_cycles() {
    let d = Daemon::start();
    let created = d.create(&actor_request("counter-1", COUNTER)).await;
    assert_eq!(created.status, ActorStatus::Running);
    let sandbox = created.sandbox.expect("a running actor shows its sandbox");
    assert!(sandbox.pid > 0);
    assert!(
        sandbox.runsc_version.contains("2022"),
        "{}",
        sandbox.runsc_version
    );

    let mut last_seen = 0u64;
    for cycle in 1..=3u64 {
        // Let it count past what it printed before.
        d.wait_log("counter-1", WAIT, |l| {
            numbers(l).last().is_some_and(|n| *n >= last_seen + 5)
        })
        .await;

        let suspended = d.client.act("counter-1", "suspend").await.unwrap();
        assert_eq!(suspended.status, ActorStatus::Suspended);
        assert!(suspended.sandbox.is_none());
        assert_eq!(suspended.snapshots.len() as u64, cycle);
        assert_eq!(
            suspended.latest_snapshot.as_deref(),
            Some(suspended.snapshots.last().unwrap().id.as_str())
        );
        // On disk: one directory per snapshot, image and manifest in it.
        let snap_root = d.state.join("snapshots/counter-1");
        let mut dirs: Vec<String> = std::fs::read_dir(&snap_root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        dirs.sort();
        assert_eq!(dirs.len() as u64, cycle, "{dirs:?}");
        let latest = snap_root.join(suspended.latest_snapshot.as_ref().unwrap());
        assert!(latest.join("checkpoint.img").metadata().unwrap().len() > 0);
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(latest.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["actorId"], "counter-1");
        assert_eq!(manifest["runscVersion"], sandbox.runsc_version.as_str());

        // Nothing runs while suspended: the log stands still.
        let at_suspend = d.logs("counter-1").await;
        let stood = *numbers(&at_suspend).last().unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            d.logs("counter-1").await,
            at_suspend,
            "the counter ran while suspended"
        );
        assert!(
            d.runsc_containers().iter().all(|(_, s)| s != "running"),
            "a sandbox still runs: {:?}",
            d.runsc_containers()
        );

        let resumed = d.client.act("counter-1", "resume").await.unwrap();
        assert_eq!(resumed.status, ActorStatus::Running);
        let new_pid = resumed.sandbox.as_ref().unwrap().pid;
        assert!(new_pid > 0);

        // It goes on from where it stood, not from 0.
        let log = d
            .wait_log("counter-1", WAIT, |l| {
                numbers(l).last().is_some_and(|n| *n >= stood + 3)
            })
            .await;
        assert_consecutive(&numbers(&log));
        last_seen = *numbers(&log).last().unwrap();
    }

    let got = d.client.get("counter-1").await.unwrap();
    assert_eq!(got.status, ActorStatus::Running);
    assert_eq!(got.snapshots.len(), 3);

    // Every transition was logged in order.
    let events = d.client.events_since(0).await.unwrap();
    let path: Vec<String> = events
        .iter()
        .map(|e| e.to.map(|s| s.to_string()).unwrap_or_else(|| "gone".into()))
        .collect();
    let mut want = vec!["CREATED", "STARTING", "RUNNING"];
    for _ in 0..3 {
        want.extend(["SUSPENDING", "SUSPENDED", "RESUMING", "RUNNING"]);
    }
    assert_eq!(path, want);
    assert!(events.windows(2).all(|w| w[1].seq > w[0].seq));
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_start_and_delete_leave_nothing_behind() {
    let d = Daemon::start();
    d.create(&actor_request("worker", COUNTER)).await;
    d.wait_log("worker", WAIT, |l| numbers(l).len() >= 3).await;

    let stopped = d.client.act("worker", "stop").await.unwrap();
    assert_eq!(stopped.status, ActorStatus::Stopped);
    assert!(stopped.sandbox.is_none());
    assert!(
        d.runsc_containers().is_empty(),
        "{:?}",
        d.runsc_containers()
    );

    // start boots from the image again: the counter restarts at 0.
    let started = d.client.act("worker", "start").await.unwrap();
    assert_eq!(started.status, ActorStatus::Running);
    d.wait_log("worker", WAIT, |l| {
        numbers(l).iter().filter(|n| **n == 0).count() == 2
    })
    .await;

    d.client.act("worker", "suspend").await.unwrap();
    d.client.delete("worker").await.unwrap();
    let err = d.client.get("worker").await.unwrap_err();
    assert_eq!(err.code(), Some(atelet_api::ErrorCode::NotFound));
    let files: Vec<String> = d
        .files()
        .into_keys()
        .filter(|p| p.contains("worker"))
        .collect();
    assert!(files.is_empty(), "files left after delete: {files:?}");
    assert!(
        d.runsc_containers().is_empty(),
        "{:?}",
        d.runsc_containers()
    );
    // Every step left a log line with the actor, the operation and its
    // duration.
    let log = d.log();
    let steps: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["actor"] == "worker" && v["duration_ms"].is_u64())
        .filter_map(|v| v["op"].as_str().map(str::to_string))
        .collect();
    for op in ["create", "stop", "start", "suspend", "delete"] {
        assert!(
            steps.iter().any(|s| s == op),
            "no {op} line: {steps:?}\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_without_start_then_start() {
    let d = Daemon::start();
    let mut body = actor_request("later", COUNTER);
    body["start"] = serde_json::json!(false);
    let a = d.create(&body).await;
    assert_eq!(a.status, ActorStatus::Created);
    assert!(d.runsc_containers().is_empty());
    let a = d.client.act("later", "start").await.unwrap();
    assert_eq!(a.status, ActorStatus::Running);
    d.wait_log("later", WAIT, |l| !numbers(l).is_empty()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_durable_volume_keeps_its_files_across_suspend_resume_and_restart() {
    let d = Daemon::start();
    // Counts on from the last number it left in /data, printing each and
    // appending it there.
    let script = "i=$(tail -n 1 /data/n 2>/dev/null || echo 0); \
                  while true; do i=$((i+1)); echo $i >> /data/n; echo $i; sleep 0.05; done";
    let mut body = actor_request("keeper", script);
    body["spec"]["containers"][0]["volumeMounts"] =
        serde_json::json!([{"name": "data", "mountPath": "/data"}]);
    body["spec"]["volumes"] = serde_json::json!([{"name": "data", "durableDir": {}}]);
    d.create(&body).await;
    let host = d.state.join("volumes/keeper/data/n");
    let on_host = || -> Vec<u64> { numbers(&std::fs::read_to_string(&host).unwrap_or_default()) };
    d.wait_log("keeper", WAIT, |l| numbers(l).len() >= 5).await;
    assert!(
        on_host().len() >= 5,
        "the volume is not the host dir: {:?}",
        on_host()
    );

    // Through a suspend and resume the volume stays mounted and written.
    d.client.act("keeper", "suspend").await.unwrap();
    let at_suspend = on_host();
    let stood = *at_suspend.last().unwrap();
    let resumed = d.client.act("keeper", "resume").await.unwrap();
    assert_eq!(resumed.status, ActorStatus::Running);
    let deadline = std::time::Instant::now() + WAIT;
    while on_host().last().is_none_or(|n| *n < stood + 5) {
        assert!(std::time::Instant::now() < deadline, "{:?}", on_host());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unbroken = |nums: Vec<u64>| {
        assert_eq!(nums[0], 1, "{nums:?}");
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    };
    unbroken(on_host());

    // A fresh start (no snapshot) finds what the last run left there.
    d.client.act("keeper", "stop").await.unwrap();
    let left = *on_host().last().unwrap();
    d.client.act("keeper", "start").await.unwrap();
    while on_host().last().is_none_or(|n| *n < left + 3) {
        assert!(
            std::time::Instant::now() < deadline + WAIT,
            "{:?}",
            on_host()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unbroken(on_host());

    // Delete removes the volume with the actor.
    d.client.delete("keeper").await.unwrap();
    assert!(!d.state.join("volumes/keeper").exists());
}
