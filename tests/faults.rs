//! Faults the daemon must survive without losing anything: a state dir that
//! is too small for a snapshot, and runsc disappearing at run time.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use atelet_api::{ActorStatus, ErrorCode};
use atelet_e2e::{actor_request, numbers, Daemon, COUNTER};

const WAIT: Duration = Duration::from_secs(20);

/// Bytes used on the filesystem holding `path`.
fn used(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).unwrap();
    (s.blocks() - s.blocks_free()) as u64 * s.fragment_size() as u64
}

/// A tmpfs of `size` mounted on `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_state_dir_fails_the_suspend_and_keeps_the_actor_running() {
    // The state dir lives on a 24 MiB tmpfs; the actor writes 30 MB into its
    // in-memory root overlay, which its checkpoint must hold: it cannot fit.
    let holder = tempfile::Builder::new()
        .prefix("atelet-tmpfs-")
        .tempdir_in("/tmp")
        .unwrap();
    let state = holder.path().join("state");
    let _fs = Tmpfs::mount(&state, "24m");
    let d = Daemon::start_with(&["--state-dir", state.to_str().unwrap()]);
    let script = "head -c 30000000 /dev/zero > /tmp/ballast; echo ready; i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done";
    d.create(&actor_request("big", script)).await;
    d.wait_log("big", WAIT, |l| {
        l.contains("ready") && numbers(l).len() >= 2
    })
    .await;
    let before = used(&state);

    let err = d.client.act("big", "suspend").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("cannot suspend actor big") && msg.contains("MiB free"),
        "{msg}"
    );

    // Still running, nothing registered, nothing left on disk.
    let a = d.client.get("big").await.unwrap();
    assert_eq!(a.status, ActorStatus::Running);
    assert!(a.snapshots.is_empty());
    let snaps = state.join("snapshots/big");
    let leftovers: Vec<_> = std::fs::read_dir(&snaps)
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let after = used(&state);
    // The actor's log grows a little meanwhile; no image stayed.
    assert!(after < before + (1 << 20), "used {before} -> {after}");
    let n = numbers(&d.logs("big").await).len();
    d.wait_log("big", WAIT, |l| numbers(l).len() > n + 2).await;

    // No event claims a suspend happened.
    let events = d.client.events_since(0).await.unwrap();
    assert!(
        events.iter().all(|e| e.to != Some(ActorStatus::Suspending)),
        "{events:?}"
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread")]
async fn runsc_missing_at_call_time_answers_503_and_loses_nothing() {
    let bin = tempfile::Builder::new()
        .prefix("atelet-bin-")
        .tempdir_in("/tmp")
        .unwrap();
    let runsc = bin.path().join("runsc");
    std::fs::copy("/usr/bin/runsc", &runsc).unwrap();
    let d = Daemon::start_with(&["--runsc", runsc.to_str().unwrap()]);
    d.create(&actor_request("steady", COUNTER)).await;
    d.wait_log("steady", WAIT, |l| numbers(l).len() >= 3).await;

    let away = bin.path().join("runsc.away");
    std::fs::rename(&runsc, &away).unwrap();
    for action in ["suspend", "stop"] {
        let err = d.client.act("steady", action).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{action}: {err}");
        assert!(err.to_string().contains("runsc"), "{err}");
    }
    let err = d
        .client
        .create_raw(serde_json::to_vec(&actor_request("new", "true")).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
    assert!(matches!(d.client.get("new").await, Err(e) if e.code() == Some(ErrorCode::NotFound)));
    let health = d.client.health().await.unwrap();
    assert_eq!(health.status, "degraded");
    assert!(health.runsc.version.is_none());

    // Nothing was lost: the actor still runs and still counts.
    let a = d.client.get("steady").await.unwrap();
    assert_eq!(a.status, ActorStatus::Running);
    let n = numbers(&d.logs("steady").await).len();
    d.wait_log("steady", WAIT, |l| numbers(l).len() > n + 2)
        .await;

    // Put it back: everything works again.
    std::fs::rename(&away, &runsc).unwrap();
    assert_eq!(d.client.health().await.unwrap().status, "ok");
    let s = d.client.act("steady", "suspend").await.unwrap();
    assert_eq!(s.status, ActorStatus::Suspended);
    d.client.act("steady", "resume").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chatty_actor_cannot_grow_its_log_without_bound() {
    let d = Daemon::start_with_config("log_max_bytes = 4096\n", &[]);
    let script = "while true; do echo 0123456789012345678901234567890123456789; done";
    d.create(&actor_request("chatty", script)).await;
    let log = d.state.join("logs/chatty.log");
    let rotated = d.state.join("logs/chatty.log.1");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !rotated.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the log was never rotated"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Rotation keeps the log near its limit: it is cut back whenever the
    // check runs, while the actor goes on writing.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let len = std::fs::metadata(&log).unwrap().len();
        if len < 1 << 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "log stays at {len} bytes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(d.log().contains("rotated actor logs"));
    // The logs endpoint still serves the current log.
    d.wait_log("chatty", WAIT, |l| l.contains("0123456789"))
        .await;
    d.client.delete("chatty").await.unwrap();
    assert!(!log.exists() && !rotated.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_starts_without_runsc_and_works_once_it_appears() {
    let bin = tempfile::Builder::new()
        .prefix("atelet-bin-")
        .tempdir_in("/tmp")
        .unwrap();
    let runsc = bin.path().join("runsc");
    let d = Daemon::start_with(&["--runsc", runsc.to_str().unwrap()]);
    let health = d.client.health().await.unwrap();
    assert_eq!(health.status, "degraded");
    assert!(health.runsc.version.is_none());
    let err = d
        .client
        .create_raw(serde_json::to_vec(&actor_request("early", COUNTER)).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
    assert!(err.to_string().contains("runsc"), "{err}");
    assert!(d.client.list(None).await.unwrap().is_empty());

    // Installing runsc is enough: no restart.
    std::fs::copy("/usr/bin/runsc", &runsc).unwrap();
    let health = d.client.health().await.unwrap();
    assert_eq!(health.status, "ok");
    assert!(health.runsc.version.is_some());
    let a = d.create(&actor_request("early", COUNTER)).await;
    assert_eq!(a.status, ActorStatus::Running);
}
