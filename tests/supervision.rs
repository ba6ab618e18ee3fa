//! Exit detection and live restore (docs/failure-modes.md): an actor whose process ends
//! is recorded STOPPED or FAILED; stopping or killing the daemon leaves
//! actors running, and a restarted daemon adopts them and cleans up.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use atelet_api::ActorStatus;
use atelet_e2e::{actor_request, numbers, Daemon, COUNTER};

const WAIT: Duration = Duration::from_secs(20);

fn kill_pid(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// Starts, with runsc itself, a sandbox the daemon has no record of under
/// its runsc root, from the bundle of actor `bundle_of`.
fn start_stray(d: &Daemon, bundle_of: &str, id: &str) {
    let status = Command::new("runsc")
        .arg(format!("--root={}", d.state.join("runsc").display()))
        .args([
            "--platform=ptrace",
            "--network=none",
            "--overlay2=root:memory",
            "run",
            "--detach",
            "--bundle",
        ])
        .arg(d.state.join("bundles").join(bundle_of))
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn running_containers(d: &Daemon) -> Vec<String> {
    d.runsc_containers()
        .into_iter()
        .filter(|(_, s)| s == "running")
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn exits_are_recorded_with_their_code() {
    let d = Daemon::start();
    d.create(&actor_request("ok", "echo bye; exit 0")).await;
    d.create(&actor_request("bad", "exit 3")).await;
    d.create(&actor_request("killed", "sleep 100000")).await;

    let ok = d.wait_status("ok", ActorStatus::Stopped, WAIT).await;
    assert_eq!(ok.exit_code, Some(0));
    assert!(ok.sandbox.is_none());
    assert!(
        ok.status_message.contains("exited with status 0"),
        "{}",
        ok.status_message
    );

    let bad = d.wait_status("bad", ActorStatus::Failed, WAIT).await;
    assert_eq!(bad.exit_code, Some(3));
    assert!(
        bad.status_message.contains("exited with status 3"),
        "{}",
        bad.status_message
    );

    let pid = d.client.get("killed").await.unwrap().sandbox.unwrap().pid;
    kill_pid(pid);
    let killed = d.wait_status("killed", ActorStatus::Failed, WAIT).await;
    assert_eq!(killed.exit_code, Some(137));

    // Each exit is an event, and the sandboxes' runsc state is cleaned up.
    let events = d.client.events_since(0).await.unwrap();
    for (id, to) in [
        ("ok", ActorStatus::Stopped),
        ("bad", ActorStatus::Failed),
        ("killed", ActorStatus::Failed),
    ] {
        assert!(
            events.iter().any(|e| e.actor_id == id
                && e.from == Some(ActorStatus::Running)
                && e.to == Some(to)
                && e.reason == "exited"),
            "no exit event for {id}: {events:?}"
        );
    }
    let deadline = std::time::Instant::now() + WAIT;
    while !d.runsc_containers().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            d.runsc_containers()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A failed actor can be started again.
    let again = d.client.act("bad", "start").await.unwrap();
    assert_eq!(again.status, ActorStatus::Running);
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_the_daemon_leaves_actors_running_and_a_restart_adopts_them() {
    let mut d = Daemon::start();
    d.create(&actor_request("keep", COUNTER)).await;
    d.create(&actor_request("lost", "sleep 100000")).await;
    d.create(&actor_request("parked", COUNTER)).await;
    d.wait_log("parked", WAIT, |l| numbers(l).len() >= 3).await;
    d.client.act("parked", "suspend").await.unwrap();
    let lost_pid = d.client.get("lost").await.unwrap().sandbox.unwrap().pid;
    let keep_pid = d.client.get("keep").await.unwrap().sandbox.unwrap().pid;

    // SIGTERM: a clean stop. Sandboxes keep running.
    let status = d.terminate();
    assert!(status.success(), "daemon exit: {status}");
    let running = running_containers(&d);
    assert_eq!(running.len(), 2, "{running:?}");

    // While it is down: one sandbox dies, a half-written snapshot appears,
    // and a sandbox nobody knows starts under the daemon's runsc root.
    kill_pid(lost_pid);
    let half = d.state.join("snapshots/parked/.tmp-snap-000099");
    std::fs::create_dir_all(&half).unwrap();
    std::fs::write(half.join("checkpoint.img"), b"partial").unwrap();
    start_stray(&d, "keep", "stray-1");
    assert!(running_containers(&d).contains(&"stray-1".to_string()));

    d.restart();
    let keep = d.client.get("keep").await.unwrap();
    assert_eq!(keep.status, ActorStatus::Running);
    assert_eq!(
        keep.sandbox.as_ref().unwrap().pid,
        keep_pid,
        "the same sandbox, adopted"
    );
    let lost = d.client.get("lost").await.unwrap();
    assert_eq!(lost.status, ActorStatus::Failed);
    assert!(
        lost.status_message.contains("lost"),
        "{}",
        lost.status_message
    );
    assert_eq!(
        d.client.get("parked").await.unwrap().status,
        ActorStatus::Suspended
    );
    assert!(!half.exists(), "half-written snapshot left behind");
    assert!(d
        .log()
        .contains("removing a runsc container with no actor record"));
    let deadline = std::time::Instant::now() + WAIT;
    while running_containers(&d).contains(&"stray-1".to_string()) {
        assert!(
            std::time::Instant::now() < deadline,
            "stray sandbox not removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The adopted counter goes on; the parked one resumes.
    let before = numbers(&d.logs("keep").await).len();
    d.wait_log("keep", WAIT, |l| numbers(l).len() > before + 3)
        .await;
    d.client.act("parked", "resume").await.unwrap();

    // kill -9 this time: still nothing is lost.
    d.create(&actor_request("later", "sleep 4; exit 5")).await;
    d.kill9();
    assert_eq!(
        running_containers(&d).len(),
        3,
        "{:?}",
        d.runsc_containers()
    );
    d.restart();
    assert_eq!(
        d.client.get("keep").await.unwrap().status,
        ActorStatus::Running
    );
    assert_eq!(
        d.client.get("parked").await.unwrap().status,
        ActorStatus::Running
    );

    // An adopted sandbox that exits is noticed too, with its code.
    let later = d.wait_status("later", ActorStatus::Failed, WAIT).await;
    assert_eq!(later.exit_code, Some(5), "{}", later.status_message);

    // And an adopted one can be suspended and resumed.
    d.client.act("keep", "suspend").await.unwrap();
    d.client.act("keep", "resume").await.unwrap();
    let log = d
        .wait_log("keep", WAIT, |l| numbers(l).len() > before + 6)
        .await;
    atelet_e2e::assert_consecutive(&numbers(&log));
}

#[tokio::test(flavor = "multi_thread")]
async fn event_sequence_survives_a_restart_and_since_replays_what_was_missed() {
    let mut d = Daemon::start();
    d.create(&actor_request("ev", "sleep 100000")).await;
    let first = d.client.events_since(0).await.unwrap();
    let last = first.last().unwrap().seq;
    d.kill9();
    d.restart();
    d.client.act("ev", "stop").await.unwrap();
    let missed = d.client.events_since(last).await.unwrap();
    assert!(!missed.is_empty());
    assert!(missed.iter().all(|e| e.seq > last));
    assert_eq!(missed.last().unwrap().to, Some(ActorStatus::Stopped));
    let all = d.client.events_since(0).await.unwrap();
    assert!(all.windows(2).all(|w| w[1].seq == w[0].seq + 1), "{all:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_hangs_up_mid_step_does_not_cut_the_step_short() {
    use std::io::Write;
    let d = Daemon::start();
    d.create(&actor_request("hangup", COUNTER)).await;
    d.wait_log("hangup", WAIT, |l| numbers(l).len() >= 3).await;
    // Send a suspend and hang up once its checkpoint has begun.
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.write_all(b"POST /v1/actors/hangup/suspend HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !d
        .log()
        .lines()
        .any(|l| l.contains("runsc begin") && l.contains("\"op\":\"checkpoint\""))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the checkpoint never began"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(s);
    // The suspend runs to its end: SUSPENDED, not stuck in SUSPENDING.
    let a = d.wait_status("hangup", ActorStatus::Suspended, WAIT).await;
    assert_eq!(a.snapshots.len(), 1);
    let a = d.client.act("hangup", "resume").await.unwrap();
    assert_eq!(a.status, ActorStatus::Running);
    let n = numbers(&d.logs("hangup").await).len();
    let log = d
        .wait_log("hangup", WAIT, |l| numbers(l).len() > n + 2)
        .await;
    atelet_e2e::assert_consecutive(&numbers(&log));
}

#[tokio::test(flavor = "multi_thread")]
async fn recovery_waits_for_a_runsc_that_cannot_list_and_loses_nothing() {
    use std::os::unix::fs::PermissionsExt;
    // A runsc whose `list`, and `state`, fail while their flag files exist;
    // the broken state says "not found", as a broken install might.
    let dir = tempfile::tempdir().unwrap();
    let no_list = dir.path().join("list-is-broken");
    let no_state = dir.path().join("state-is-broken");
    let wrapper = dir.path().join("runsc");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do\n  if [ -e \"{0}/$a-is-broken\" ]; then\n    echo \"sh: runsc: not found ($a broken by the test)\" >&2; exit 127\n  fi\ndone\nexec runsc \"$@\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut d = Daemon::start_with(&["--runsc", wrapper.to_str().unwrap()]);
    d.create(&actor_request("steady", COUNTER)).await;
    for id in ["doomed", "later", "gone"] {
        d.create(&actor_request(id, "sleep 100000")).await;
    }
    d.wait_log("steady", WAIT, |l| numbers(l).len() >= 3).await;
    let pid = |a: atelet_api::Actor| a.sandbox.unwrap().pid;
    let doomed_pid = pid(d.client.get("doomed").await.unwrap());
    let later_pid = pid(d.client.get("later").await.unwrap());
    assert!(d.terminate().success());

    // The daemon comes back while runsc can tell nothing: it serves the
    // records as they were, refuses their steps with 503 (but stop and
    // delete, the way out), says it is degraded, and ends no sandbox.
    std::fs::write(&no_list, b"").unwrap();
    std::fs::write(&no_state, b"").unwrap();
    d.restart();
    for id in ["steady", "doomed", "later", "gone"] {
        assert_eq!(d.client.get(id).await.unwrap().status, ActorStatus::Running);
    }
    let refused = |e: &atectl::ClientError| {
        e.code() == Some(atelet_api::ErrorCode::Unavailable)
            && e.to_string().contains("not recovered yet")
    };
    let err = d.client.act("steady", "suspend").await.unwrap_err();
    assert!(refused(&err), "{err}");
    assert_eq!(d.client.health().await.unwrap().status, "degraded");
    d.client.delete("gone").await.unwrap();
    assert_eq!(
        running_containers(&d).len(),
        3,
        "{:?}",
        d.runsc_containers()
    );

    // A sandbox that dies meanwhile is found dead ("not found" and its
    // process gone); the live ones keep waiting, whatever runsc says.
    kill_pid(doomed_pid);
    let doomed = d.wait_status("doomed", ActorStatus::Failed, WAIT).await;
    assert!(
        doomed.status_message.contains("lost"),
        "{}",
        doomed.status_message
    );
    tokio::time::sleep(Duration::from_secs(6)).await; // another pass
    let err = d.client.act("steady", "suspend").await.unwrap_err();
    assert!(refused(&err), "{err}");
    assert_eq!(
        running_containers(&d).len(),
        2,
        "{:?}",
        d.runsc_containers()
    );
    // And a stranger starts under the daemon's runsc root.
    start_stray(&d, "steady", "stray-2");

    // runsc answers for each container again (its list still fails): the
    // live actors are adopted: steps work, exits are seen.
    std::fs::remove_file(&no_state).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let suspended = loop {
        match d.client.act("steady", "suspend").await {
            Ok(a) => break a,
            Err(e) if refused(&e) => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(suspended.status, ActorStatus::Suspended);
    kill_pid(later_pid);
    d.wait_status("later", ActorStatus::Failed, WAIT).await;
    assert_eq!(d.client.health().await.unwrap().status, "ok");
    let stood = *numbers(&d.logs("steady").await).last().unwrap();
    d.client.act("steady", "resume").await.unwrap();
    let log = d
        .wait_log("steady", WAIT, |l| {
            numbers(l).last().is_some_and(|n| *n >= stood + 3)
        })
        .await;
    atelet_e2e::assert_consecutive(&numbers(&log));

    // The stranger is left alone until runsc can list; then it goes.
    assert!(running_containers(&d).contains(&"stray-2".to_string()));
    std::fs::remove_file(&no_list).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !d.log().contains("deferred recovery done") {
        assert!(std::time::Instant::now() < deadline, "{}", d.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !d.runsc_containers().iter().any(|(id, _)| id == "stray-2"),
        "{:?}",
        d.runsc_containers()
    );
    assert_eq!(
        running_containers(&d).len(),
        1,
        "{:?}",
        d.runsc_containers()
    );
}

/// Waits until the daemon's `runsc wait` processes are exactly one for
/// each container of `running` (and none for anything else).
async fn expect_waiters(d: &Daemon, running: &[String], when: &str) {
    let want: std::collections::BTreeMap<String, usize> =
        running.iter().map(|c| (c.clone(), 1)).collect();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let have = d.waiters();
        if have == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{when}: waiters {have:?}, want one for each of {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restarts_leave_one_waiter_per_running_actor_and_none_behind() {
    let mut d = Daemon::start();
    for id in ["w1", "w2", "w3"] {
        d.create(&actor_request(id, "sleep 100000")).await;
    }
    let mut cids = Vec::new();
    for id in ["w1", "w2", "w3"] {
        cids.push(
            d.client
                .get(id)
                .await
                .unwrap()
                .sandbox
                .unwrap()
                .container_id,
        );
    }
    // Sandboxes the daemon started are its children: no waiter at all.
    expect_waiters(&d, &[], "first start").await;
    for round in 0..3 {
        // A clean stop ends the waiters; a kill -9 leaves them to the
        // parent-death signal; either way a restart has one per actor.
        if round == 1 {
            d.kill9();
        } else {
            assert!(d.terminate().success());
        }
        expect_waiters(&d, &[], &format!("round {round}, daemon down")).await;
        d.restart();
        expect_waiters(&d, &cids, &format!("round {round}, after restart")).await;
    }

    // Waiters a daemon could not end (its parent-death signal missed, say)
    // are found by their marks and ended by the next start.
    let stale = Command::new("runsc")
        .arg(format!("--root={}", d.state.join("runsc").display()))
        .args(["wait", &cids[0]])
        .env("ATELET_RUNSC_ROOT", d.state.join("runsc"))
        .env("ATELET_RUNSC_OP", "wait")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let stale_pid = stale.id() as i32;
    std::thread::spawn(move || {
        let mut stale = stale;
        let _ = stale.wait();
    });
    assert_eq!(d.waiters().get(&cids[0]), Some(&2));
    d.kill9();
    d.restart();
    expect_waiters(&d, &cids, "after a stale waiter").await;
    assert!(
        d.runsc_processes()
            .iter()
            .all(|(pid, _, _)| *pid != stale_pid),
        "the stale waiter was not ended"
    );

    // An adopted sandbox killed by a signal records 137, as one the daemon
    // started does (its exit status cannot be read: it is not our child).
    let pid = d.client.get("w2").await.unwrap().sandbox.unwrap().pid;
    kill_pid(pid);
    let killed = d.wait_status("w2", ActorStatus::Failed, WAIT).await;
    assert_eq!(killed.exit_code, Some(137), "{}", killed.status_message);
    assert!(
        killed.status_message.contains("killed"),
        "{}",
        killed.status_message
    );
    expect_waiters(&d, &[cids[0].clone(), cids[2].clone()], "after a kill").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_run_through_a_wrapper_script_is_waited_for_after_a_kill() {
    use std::os::unix::fs::PermissionsExt;
    // A runsc wrapper whose checkpoint starts late: for a while only the
    // shell runs, and its command line names the script, not runsc.
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("runsc-wrapper");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = checkpoint ]; then sleep 3; fi\ndone\nruntime=$(command -v runsc)\n\"$runtime\" \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut d = Daemon::start_with(&["--runsc", wrapper.to_str().unwrap()]);
    d.create(&actor_request("wrapped", COUNTER)).await;
    d.wait_log("wrapped", WAIT, |l| numbers(l).len() >= 3).await;
    let client = d.client.clone();
    let suspend = tokio::spawn(async move { client.act("wrapped", "suspend").await });
    let deadline = std::time::Instant::now() + WAIT;
    while !d
        .runsc_processes()
        .iter()
        .any(|(_, op, _)| op == "checkpoint")
    {
        assert!(std::time::Instant::now() < deadline, "no checkpoint began");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.kill9();
    let _ = suspend.await;
    d.restart();
    assert!(
        d.log()
            .contains("waiting for a runsc command left by a previous daemon"),
        "the wrapped checkpoint was not waited for"
    );
    // The checkpoint completed while nobody watched: the actor is back
    // with its memory (revived or suspended), never lost.
    let a = d.client.get("wrapped").await.unwrap();
    assert!(
        matches!(a.status, ActorStatus::Running | ActorStatus::Suspended),
        "{}: {}",
        a.status,
        a.status_message
    );
    if a.status == ActorStatus::Suspended {
        d.client.act("wrapped", "resume").await.unwrap();
    }
    let before = numbers(&d.logs("wrapped").await).len();
    let log = d
        .wait_log("wrapped", WAIT, |l| numbers(l).len() > before + 2)
        .await;
    atelet_e2e::assert_consecutive(&numbers(&log));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_actor_resumes_from_its_latest_snapshot() {
    let d = Daemon::start();
    d.create(&actor_request("phoenix", COUNTER)).await;
    d.wait_log("phoenix", WAIT, |l| numbers(l).len() >= 3).await;
    let s = d.client.act("phoenix", "suspend").await.unwrap();
    let at_snapshot = *numbers(&d.logs("phoenix").await).last().unwrap();
    d.client.act("phoenix", "resume").await.unwrap();
    d.wait_log("phoenix", WAIT, |l| {
        numbers(l).last().is_some_and(|n| *n > at_snapshot + 2)
    })
    .await;
    let pid = d.client.get("phoenix").await.unwrap().sandbox.unwrap().pid;
    kill_pid(pid);
    let failed = d.wait_status("phoenix", ActorStatus::Failed, WAIT).await;
    assert_eq!(failed.snapshots, s.snapshots, "snapshots kept");

    // Back to the snapshot: the counter goes on from where it was taken.
    // (Nothing prints while it is FAILED: the log ends here.)
    let before = d.logs("phoenix").await.len();
    let r = d.client.act("phoenix", "resume").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
    let log = d
        .wait_log("phoenix", WAIT, |l| numbers(&l[before..]).len() >= 2)
        .await;
    let resumed = numbers(&log[before..]);
    assert_eq!(resumed[0], at_snapshot + 1, "{resumed:?}");

    // Without a snapshot there is nothing to go back to: 409.
    d.create(&actor_request("plain", "sleep 100000")).await;
    let pid = d.client.get("plain").await.unwrap().sandbox.unwrap().pid;
    kill_pid(pid);
    d.wait_status("plain", ActorStatus::Failed, WAIT).await;
    let err = d.client.act("plain", "resume").await.unwrap_err();
    assert_eq!(err.code(), Some(atelet_api::ErrorCode::Conflict), "{err}");
    assert!(
        err.to_string().contains("FAILED with a committed snapshot"),
        "{err}"
    );
}
