//! Unit tests of the lifecycle state machine and of crash recovery, over a
//! fake runtime. They prove the bookkeeping (statuses, events, snapshots on
//! disk, what recovery decides); the end-to-end tests in `tests/` prove the
//! features on the real runsc.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use atelet_api::{ActorStatus, CreateActorRequest, RuntimeInfo};
use tokio::sync::oneshot;

use super::*;
use crate::reaper::ExitStatus;
use crate::runsc::{
    ContainerState, ExecChild, ExecSpec, ExitOutcome, LaunchSpec, Launched, Runtime, RuntimeError,
};
use crate::snapshots::SnapshotStore;
use crate::store::{ActorRecord, ContainerRecord, SnapshotRecord, Store};

#[derive(Default)]
struct FakeState {
    /// container id → running?
    containers: HashMap<String, bool>,
    exits: HashMap<String, oneshot::Sender<ExitOutcome>>,
    /// Next call of this op fails; `true` also kills the sandbox.
    fail: HashMap<&'static str, bool>,
    calls: Vec<String>,
    version: String,
    available: bool,
    next_pid: i32,
    /// Containers whose sandbox is winding down after a checkpoint: listed
    /// running (pid 43), gone once waited for.
    winding: std::collections::HashSet<String>,
    /// Containers frozen by `freeze`: listed `paused`; a checkpoint leaves
    /// them so, as runsc does.
    paused: std::collections::HashSet<String>,
    /// Running execs by their pid inside the sandbox: their exit, and the
    /// write end of their stdout (held open while they run).
    execs: HashMap<i32, (oneshot::Sender<ExitStatus>, std::os::fd::OwnedFd)>,
}

#[derive(Clone)]
struct Fake(Arc<Mutex<FakeState>>);

impl Fake {
    fn new() -> Fake {
        Fake(Arc::new(Mutex::new(FakeState {
            version: "fake-1".into(),
            available: true,
            next_pid: 100,
            ..Default::default()
        })))
    }
    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.0.lock().unwrap()
    }
    fn launched(&self, cid: &str) -> Launched {
        let mut s = self.state();
        s.next_pid += 1;
        s.containers.insert(cid.to_string(), true);
        let (tx, rx) = oneshot::channel();
        s.exits.insert(cid.to_string(), tx);
        Launched {
            pid: s.next_pid,
            exit: rx,
        }
    }
    fn take_fail(&self, op: &'static str) -> Option<bool> {
        self.state().fail.remove(op)
    }
    fn failed(op: &'static str) -> RuntimeError {
        RuntimeError::Failed {
            op,
            status: ExitStatus::Exited(1),
            output: format!("{op} failed on purpose"),
        }
    }
    /// The sandbox ends on its own with `code`.
    fn exit(&self, cid: &str, code: i32) {
        let mut s = self.state();
        s.containers.insert(cid.to_string(), false);
        if let Some(tx) = s.exits.remove(cid) {
            let _ = tx.send(ExitOutcome {
                code: Some(code),
                message: format!("exited with status {code}"),
            });
        }
    }
    fn running(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .state()
            .containers
            .iter()
            .filter(|(_, r)| **r)
            .map(|(c, _)| c.clone())
            .collect();
        v.sort();
        v
    }
}

impl Runtime for Fake {
    fn info(&self) -> RuntimeInfo {
        RuntimeInfo {
            path: "/fake/runsc".into(),
            version: Some(self.state().version.clone()),
            error: None,
        }
    }
    fn ensure_available(&self) -> Result<String, RuntimeError> {
        let s = self.state();
        if s.available {
            Ok(s.version.clone())
        } else {
            Err(RuntimeError::Unavailable("fake runsc removed".into()))
        }
    }
    async fn run(&self, spec: &LaunchSpec) -> Result<Launched, RuntimeError> {
        self.state()
            .calls
            .push(format!("run {}", spec.container_id));
        if self.take_fail("run").is_some() {
            return Err(Fake::failed("run"));
        }
        Ok(self.launched(&spec.container_id))
    }
    async fn restore(&self, spec: &LaunchSpec, image_dir: &Path) -> Result<Launched, RuntimeError> {
        self.state()
            .calls
            .push(format!("restore {}", spec.container_id));
        if self.take_fail("restore").is_some() || !image_dir.join("checkpoint.img").is_file() {
            return Err(Fake::failed("restore"));
        }
        Ok(self.launched(&spec.container_id))
    }
    async fn checkpoint(&self, cid: &str, image_dir: &Path) -> Result<(), RuntimeError> {
        self.state().calls.push(format!("checkpoint {cid}"));
        if let Some(kills) = self.take_fail("checkpoint") {
            std::fs::write(image_dir.join("checkpoint.img"), b"partial").unwrap();
            if kills {
                self.exit(cid, 0);
            }
            return Err(Fake::failed("checkpoint"));
        }
        std::fs::write(image_dir.join("checkpoint.img"), format!("image of {cid}")).unwrap();
        if self.take_fail("commit").is_some() {
            // Something the commit cannot hash: it fails after the image is whole.
            std::fs::create_dir(image_dir.join("junk")).unwrap();
        }
        if !self.state().paused.contains(cid) {
            self.exit(cid, 0);
        }
        Ok(())
    }
    async fn freeze(&self, cid: &str, freeze: bool) -> Result<(), RuntimeError> {
        let op = if freeze { "pause" } else { "unpause" };
        let mut s = self.state();
        s.calls.push(format!("{op} {cid}"));
        if s.fail.remove(op).is_some() {
            return Err(Fake::failed(op));
        }
        if s.containers.get(cid) != Some(&true) {
            return Err(RuntimeError::Failed {
                op,
                status: ExitStatus::Exited(1),
                output: format!("container {cid} is not running"),
            });
        }
        if freeze {
            s.paused.insert(cid.to_string());
        } else {
            s.paused.remove(cid);
        }
        Ok(())
    }
    async fn delete(&self, cid: &str, _force: bool) -> Result<(), RuntimeError> {
        if self.take_fail("delete").is_some() {
            return Err(Fake::failed("delete"));
        }
        let mut s = self.state();
        s.calls.push(format!("delete {cid}"));
        s.containers.remove(cid);
        s.paused.remove(cid);
        s.exits.remove(cid);
        Ok(())
    }
    async fn discard(&self, cid: &str) -> Result<(), RuntimeError> {
        self.delete(cid, true).await
    }
    async fn state(&self, cid: &str) -> Result<Option<ContainerState>, RuntimeError> {
        let s = self.state();
        Ok(s.containers.get(cid).map(|r| ContainerState {
            id: cid.to_string(),
            status: match (*r, s.paused.contains(cid)) {
                (true, true) => "paused",
                (true, false) => "running",
                (false, _) => "stopped",
            }
            .into(),
            pid: if *r { 42 } else { -1 },
            bundle: String::new(),
        }))
    }
    async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        let s = self.state();
        Ok(s.containers
            .iter()
            .map(|(c, r)| ContainerState {
                id: c.clone(),
                status: match (*r, s.paused.contains(c)) {
                    (true, true) => "paused",
                    (true, false) => "running",
                    (false, _) => "stopped",
                }
                .into(),
                pid: match (*r, s.winding.contains(c)) {
                    (true, true) => 43,
                    (true, false) => 42,
                    (false, _) => -1,
                },
                bundle: String::new(),
            })
            .collect())
    }
    fn adopt(&self, cid: &str, _pid: i32) -> oneshot::Receiver<ExitOutcome> {
        let (tx, rx) = oneshot::channel();
        self.state().exits.insert(cid.to_string(), tx);
        rx
    }
    async fn usage(&self, _cid: &str) -> Result<u64, RuntimeError> {
        Ok(1 << 20)
    }
    async fn settle(&self) -> usize {
        0
    }
    /// An exec that prints its argv on stdout and runs until killed.
    async fn exec(&self, spec: &ExecSpec) -> Result<ExecChild, RuntimeError> {
        let process: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&spec.process_file).unwrap()).unwrap();
        let (read, write) = nix::unistd::pipe().unwrap();
        let args = process["args"].to_string();
        nix::unistd::write(&write, args.as_bytes()).unwrap();
        let (tx, rx) = oneshot::channel();
        let mut s = self.state();
        s.calls.push(format!("exec {}", spec.container_id));
        s.next_pid += 1;
        let pid = s.next_pid;
        std::fs::write(&spec.internal_pid_file, pid.to_string()).unwrap();
        s.execs.insert(pid, (tx, write));
        Ok(ExecChild {
            pid,
            stdin: None,
            stdout: Some(read),
            stderr: None,
            console: None,
            exit: rx,
        })
    }
    async fn kill_process(&self, _cid: &str, pid: i32) -> Result<(), RuntimeError> {
        if let Some((tx, _write)) = self.state().execs.remove(&pid) {
            let _ = tx.send(ExitStatus::Signaled(9));
        }
        Ok(())
    }
    async fn wait_gone(&self, pid: i32, _limit: Duration) -> bool {
        let mut s = self.state();
        if pid != 43 {
            return false;
        }
        for c in std::mem::take(&mut s.winding) {
            s.containers.insert(c, false);
        }
        true
    }
}

struct Env {
    dir: tempfile::TempDir,
    rootfs: tempfile::TempDir,
    fake: Fake,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            rootfs: tempfile::tempdir().unwrap(),
            fake: Fake::new(),
        }
    }
    fn store(&self) -> Store {
        Store::open(&self.dir.path().join("db")).unwrap()
    }
    fn service(&self, store: Store) -> Arc<ActorService<Fake>> {
        ActorService::new(
            ServiceConfig {
                state_dir: self.dir.path().to_path_buf(),
                snapshot_retention: 0,
                log_max_bytes: 1 << 20,
                metrics: crate::metrics::Metrics::new(),
                policy: crate::policy::AdmissionPolicy::from_config(&crate::policy::PolicyConfig {
                    image_dirs: Some(vec!["/".into()]),
                    ..Default::default()
                })
                .unwrap(),
                network: None,
                remote: None,
                trust: Default::default(),
                registries: Default::default(),
                cgroups: Arc::new(
                    crate::cgroups::Cgroups::new(self.dir.path().join("cgroup"), "/atelet")
                        .unwrap(),
                ),
                max_execs_per_actor: 2,
                tiering: TieringConfig::default(),
            },
            store,
            self.fake.clone(),
        )
        .unwrap()
    }
    fn request(&self, id: &str) -> CreateActorRequest {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "template": {"namespace": "default", "name": "t"},
            "spec": {"containers": [{
                "name": "app",
                "image": format!("dir:{}", self.rootfs.path().display()),
                "command": ["/bin/sh"]
            }]}
        }))
        .unwrap()
    }
    fn record(&self, id: &str, status: ActorStatus, cid: Option<&str>) -> ActorRecord {
        let req = self.request(id);
        let mut r = ActorRecord::new(req.id, req.template, req.spec.unwrap(), now_rfc3339());
        r.status = status;
        r.incarnation = 1;
        r.container = cid.map(|c| ContainerRecord {
            id: c.to_string(),
            pid: Some(7),
            runsc_version: "fake-1".into(),
        });
        r
    }
    fn snapshots(&self) -> SnapshotStore {
        SnapshotStore::new(self.dir.path().join("snapshots"))
    }
}

fn path_of(svc: &ActorService<Fake>, id: &str) -> Vec<Option<ActorStatus>> {
    svc.events_since(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.actor_id == id)
        .map(|e| e.to)
        .collect()
}

#[tokio::test]
async fn suspend_and_resume_record_every_step() {
    let env = Env::new();
    let svc = env.service(env.store());
    let a = svc.create(env.request("a")).await.unwrap();
    assert_eq!(a.status, ActorStatus::Running);
    let s = svc.suspend("a").await.unwrap();
    assert_eq!(s.status, ActorStatus::Suspended);
    assert_eq!(s.snapshots.len(), 1);
    let snap = env.snapshots().dir("a", &s.snapshots[0].id);
    assert!(snap.join("checkpoint.img").is_file() && snap.join("manifest.json").is_file());
    let r = svc.resume("a").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
    use ActorStatus::*;
    assert_eq!(
        path_of(&svc, "a"),
        [Created, Starting, Running, Suspending, Suspended, Resuming, Running].map(Some)
    );
    // A fresh container id for each incarnation.
    let cid = r.sandbox.unwrap().container_id;
    assert!(cid.starts_with("a_2."), "{cid}");
    assert_eq!(env.fake.running(), [cid]);
}

#[tokio::test]
async fn disallowed_transitions_are_refused_and_change_nothing() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    let before = svc.get("a").unwrap();
    let events = svc.last_event_seq();
    let calls = env.fake.state().calls.len();
    for (op, res) in [
        ("resume", svc.resume("a").await),
        ("start", svc.start("a").await),
    ] {
        assert!(
            matches!(res, Err(ServiceError::Transition { .. })),
            "{op}: {res:?}"
        );
    }
    assert_eq!(svc.get("a").unwrap(), before);
    assert_eq!(svc.last_event_seq(), events);
    assert_eq!(env.fake.state().calls.len(), calls);
    assert!(matches!(
        svc.create(env.request("a")).await,
        Err(ServiceError::AlreadyExists(_))
    ));
}

#[tokio::test]
async fn a_failed_checkpoint_keeps_the_actor_running_and_registers_nothing() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    env.fake.state().fail.insert("checkpoint", false);
    let err = svc.suspend("a").await.unwrap_err();
    assert!(
        err.to_string().contains("checkpoint failed on purpose"),
        "{err}"
    );
    let a = svc.get("a").unwrap();
    assert_eq!(a.status, ActorStatus::Running);
    assert!(a.status_message.contains("suspend failed"));
    assert!(a.snapshots.is_empty());
    assert!(
        env.snapshots().entries("a").unwrap().is_empty(),
        "temp dir left"
    );
    // It can be suspended later.
    assert_eq!(
        svc.suspend("a").await.unwrap().status,
        ActorStatus::Suspended
    );
}

#[tokio::test]
async fn a_checkpoint_that_kills_the_sandbox_leaves_the_actor_failed() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    env.fake.state().fail.insert("checkpoint", true);
    svc.suspend("a").await.unwrap_err();
    let a = svc.get("a").unwrap();
    assert_eq!(a.status, ActorStatus::Failed);
    assert!(
        a.status_message.contains("sandbox is gone"),
        "{}",
        a.status_message
    );
    assert!(env.snapshots().entries("a").unwrap().is_empty());
    // With no snapshot to go back to, resume is refused and changes nothing.
    assert!(matches!(
        svc.resume("a").await,
        Err(ServiceError::Transition { .. })
    ));
    assert_eq!(svc.get("a").unwrap(), a);
}

#[tokio::test]
async fn a_half_made_sandbox_kept_on_a_failed_record_is_ended_by_stop_or_start() {
    let env = Env::new();
    let svc = env.service(env.store());
    let mut req = env.request("a");
    req.start = Some(false);
    svc.create(req).await.unwrap();
    // The start fails and so does the removal of what it made.
    let fail_both = || {
        let mut s = env.fake.state();
        s.fail.insert("run", false);
        s.fail.insert("delete", false);
    };
    fail_both();
    svc.start("a").await.unwrap_err();
    let a = svc.get("a").unwrap();
    assert_eq!(a.status, ActorStatus::Failed);
    let half = env.fake.state().calls.last().cloned().unwrap();
    assert!(half.starts_with("run a_1"), "{half}");
    // stop ends it (STOPPED, nothing on record)...
    assert_eq!(svc.stop("a").await.unwrap().status, ActorStatus::Stopped);
    assert!(svc.get("a").unwrap().sandbox.is_none());
    // ...and start removes it before it boots the actor again.
    fail_both();
    svc.start("a").await.unwrap_err();
    env.fake.state().calls.clear();
    let r = svc.start("a").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
    let calls = env.fake.state().calls.clone();
    assert!(
        calls[0].starts_with("delete a_2") && calls[1].starts_with("run a_3"),
        "{calls:?}"
    );
    // A FAILED actor with nothing on record has nothing to stop.
    env.fake.exit(&r.sandbox.unwrap().container_id, 1);
    while svc.get("a").unwrap().status != ActorStatus::Failed {
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        svc.stop("a").await,
        Err(ServiceError::Transition { .. })
    ));
}

#[tokio::test]
async fn a_failed_actor_with_a_snapshot_resumes_from_the_latest() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    let first = svc.suspend("a").await.unwrap().snapshots[0].id.clone();
    svc.resume("a").await.unwrap();
    env.fake.state().fail.insert("checkpoint", true);
    svc.suspend("a").await.unwrap_err();
    assert_eq!(svc.get("a").unwrap().status, ActorStatus::Failed);
    // A restore that fails leaves it FAILED, snapshot kept.
    env.fake.state().fail.insert("restore", false);
    svc.resume("a").await.unwrap_err();
    let a = svc.get("a").unwrap();
    assert_eq!(a.status, ActorStatus::Failed, "{}", a.status_message);
    assert_eq!(a.snapshots.len(), 1);
    let r = svc.resume("a").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
    assert_eq!(r.latest_snapshot.as_deref(), Some(first.as_str()));
    assert!(env
        .fake
        .state()
        .calls
        .last()
        .is_some_and(|c| c.starts_with("restore a_")));
}

#[tokio::test]
async fn a_snapshot_that_cannot_be_committed_is_restored_and_the_actor_kept_running() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    env.fake.state().fail.insert("commit", false);
    let err = svc.suspend("a").await.unwrap_err();
    assert!(err.to_string().contains("committing snapshot"), "{err}");
    let a = svc.get("a").unwrap();
    assert_eq!(a.status, ActorStatus::Running);
    assert!(
        a.status_message.contains("actor kept running"),
        "{}",
        a.status_message
    );
    assert!(a.snapshots.is_empty());
    assert!(
        env.snapshots().entries("a").unwrap().is_empty(),
        "temp dir left"
    );
    use ActorStatus::*;
    assert_eq!(
        path_of(&svc, "a"),
        [Created, Starting, Running, Suspending, Resuming, Running].map(Some)
    );
}

#[tokio::test]
async fn a_failed_restore_leaves_the_actor_suspended_with_its_snapshot() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    svc.suspend("a").await.unwrap();
    env.fake.state().fail.insert("restore", false);
    svc.resume("a").await.unwrap_err();
    let a = svc.get("a").unwrap();
    assert_eq!(a.status, ActorStatus::Suspended);
    assert_eq!(a.snapshots.len(), 1);
    assert!(env.fake.running().is_empty(), "half-made container left");
    assert_eq!(svc.resume("a").await.unwrap().status, ActorStatus::Running);
}

#[tokio::test]
async fn resume_refuses_a_snapshot_of_another_runsc_before_touching_anything() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    svc.suspend("a").await.unwrap();
    env.fake.state().version = "fake-2".into();
    // (The suspended sandbox's runsc state is removed in the background.)
    let steps = |f: &Fake| {
        f.state()
            .calls
            .iter()
            .filter(|c| !c.starts_with("delete"))
            .count()
    };
    let calls = steps(&env.fake);
    let err = svc.resume("a").await.unwrap_err();
    assert!(matches!(err, ServiceError::RuntimeMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("fake-1") && msg.contains("fake-2"), "{msg}");
    assert_eq!(svc.get("a").unwrap().status, ActorStatus::Suspended);
    assert_eq!(steps(&env.fake), calls);
}

#[tokio::test]
async fn runtime_missing_is_unavailable_and_changes_nothing() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    env.fake.state().available = false;
    let before = svc.get("a").unwrap();
    for res in [svc.suspend("a").await, svc.stop("a").await] {
        assert!(matches!(res, Err(ServiceError::Unavailable(_))), "{res:?}");
    }
    assert!(matches!(
        svc.create(env.request("b")).await,
        Err(ServiceError::Unavailable(_))
    ));
    assert_eq!(svc.get("a").unwrap(), before);
    assert!(matches!(svc.get("b"), Err(ServiceError::NotFound(_))));
}

#[tokio::test]
async fn exits_become_stopped_or_failed_with_the_code() {
    let env = Env::new();
    let svc = env.service(env.store());
    let ok = svc.create(env.request("ok")).await.unwrap();
    let bad = svc.create(env.request("bad")).await.unwrap();
    env.fake.exit(&ok.sandbox.unwrap().container_id, 0);
    env.fake.exit(&bad.sandbox.unwrap().container_id, 3);
    for _ in 0..100 {
        let done = svc.get("ok").unwrap().status == ActorStatus::Stopped
            && svc.get("bad").unwrap().status == ActorStatus::Failed;
        if done {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(svc.get("ok").unwrap().exit_code, Some(0));
    assert_eq!(svc.get("ok").unwrap().status, ActorStatus::Stopped);
    assert_eq!(svc.get("bad").unwrap().exit_code, Some(3));
    assert_eq!(svc.get("bad").unwrap().status, ActorStatus::Failed);
}

/// Crash recovery decides each case from what runsc and the disk show.
#[tokio::test]
async fn recovery_resolves_every_interrupted_step() {
    use ActorStatus::*;
    let env = Env::new();
    let store = env.store();
    let snaps = env.snapshots();
    let running = |c: &str| env.fake.state().containers.insert(c.to_string(), true);

    // Sandbox alive: adopted whatever was in flight.
    store
        .save(&env.record("run-alive", Running, Some("run-alive_1")), None)
        .await
        .unwrap();
    running("run-alive_1");
    store
        .save(
            &env.record("start-alive", Starting, Some("start-alive_1")),
            None,
        )
        .await
        .unwrap();
    running("start-alive_1");
    let mut r = env.record("susp-alive", Suspending, Some("susp-alive_1"));
    r.pending_snapshot = Some("snap-000001".into());
    store.save(&r, None).await.unwrap();
    running("susp-alive_1");
    let tmp = snaps.begin("susp-alive", "snap-000001").unwrap();
    std::fs::write(tmp.dir.join("checkpoint.img"), b"x").unwrap();
    store
        .save(
            &env.record("res-alive", Resuming, Some("res-alive_1")),
            None,
        )
        .await
        .unwrap();
    running("res-alive_1");

    // The checkpoint completed and the sandbox is winding down: not taken
    // for a live actor (its image would be deleted and the actor lost).
    let mut r = env.record("susp-winding", Suspending, Some("susp-winding_1"));
    r.pending_snapshot = Some("snap-000001".into());
    store.save(&r, None).await.unwrap();
    running("susp-winding_1");
    env.fake.state().winding.insert("susp-winding_1".into());
    let tmp = snaps.begin("susp-winding", "snap-000001").unwrap();
    std::fs::write(tmp.dir.join("checkpoint.img"), b"image").unwrap();

    // The same, but the suspend had renamed its snapshot into place too:
    // recorded once the sandbox has ended, never deleted as unrecorded.
    let mut r = env.record("susp-renamed", Suspending, Some("susp-renamed_1"));
    r.pending_snapshot = Some("snap-000001".into());
    store.save(&r, None).await.unwrap();
    running("susp-renamed_1");
    env.fake.state().winding.insert("susp-renamed_1".into());
    let p = snaps.begin("susp-renamed", "snap-000001").unwrap();
    std::fs::write(p.dir.join("checkpoint.img"), b"image").unwrap();
    snaps
        .commit(&p, "h".into(), "fake-1".into(), now_rfc3339())
        .unwrap();

    // Renamed into place too, and its sandbox still tears down after the
    // wait: the snapshot proves the checkpoint completed; recorded, and
    // the sandbox ended.
    let mut r = env.record("susp-slow", Suspending, Some("susp-slow_1"));
    r.pending_snapshot = Some("snap-000001".into());
    store.save(&r, None).await.unwrap();
    running("susp-slow_1");
    let p = snaps.begin("susp-slow", "snap-000001").unwrap();
    std::fs::write(p.dir.join("checkpoint.img"), b"image").unwrap();
    snaps
        .commit(&p, "h".into(), "fake-1".into(), now_rfc3339())
        .unwrap();

    // Sandbox gone.
    store
        .save(&env.record("run-lost", Running, Some("run-lost_1")), None)
        .await
        .unwrap();
    let mut r = env.record("stopping", Running, Some("stopping_1"));
    r.pending = Some(PendingOp::Stop);
    store.save(&r, None).await.unwrap();
    store
        .save(
            &env.record("start-lost", Starting, Some("start-lost_1")),
            None,
        )
        .await
        .unwrap();
    // Suspend committed to disk but not to sled.
    let mut r = env.record("susp-committed", Suspending, Some("susp-committed_1"));
    r.pending_snapshot = Some("snap-000001".into());
    store.save(&r, None).await.unwrap();
    let p = snaps.begin("susp-committed", "snap-000001").unwrap();
    std::fs::write(p.dir.join("checkpoint.img"), b"image").unwrap();
    snaps
        .commit(&p, "h".into(), "fake-1".into(), now_rfc3339())
        .unwrap();
    // Checkpoint written, not committed: revived from the image.
    let mut r = env.record("susp-uncommitted", Suspending, Some("susp-uncommitted_1"));
    r.pending_snapshot = Some("snap-000001".into());
    store.save(&r, None).await.unwrap();
    let p = snaps.begin("susp-uncommitted", "snap-000001").unwrap();
    std::fs::write(p.dir.join("checkpoint.img"), b"image").unwrap();
    // Nothing written at all.
    let mut r = env.record("susp-nothing", Suspending, Some("susp-nothing_1"));
    r.pending_snapshot = Some("snap-000001".into());
    store.save(&r, None).await.unwrap();
    // Resume interrupted: back to SUSPENDED with its snapshot.
    let mut r = env.record("res-lost", Resuming, Some("res-lost_2"));
    let p = snaps.begin("res-lost", "snap-000001").unwrap();
    std::fs::write(p.dir.join("checkpoint.img"), b"image").unwrap();
    let c = snaps
        .commit(&p, "h".into(), "fake-1".into(), now_rfc3339())
        .unwrap();
    r.snapshots.push(SnapshotRecord {
        id: c.id,
        created_at: now_rfc3339(),
        size_bytes: c.size_bytes,
        runsc_version: "fake-1".into(),
        remote: None,
    });
    store.save(&r, None).await.unwrap();

    // A revive from an uncommitted image was interrupted: retried from that
    // image, never rolled back to the older committed snapshot.
    let mut r = env.record("revive", Resuming, Some("revive_3"));
    let p = snaps.begin("revive", "snap-000001").unwrap();
    std::fs::write(p.dir.join("checkpoint.img"), b"old").unwrap();
    let c = snaps
        .commit(&p, "h".into(), "fake-1".into(), now_rfc3339())
        .unwrap();
    r.snapshots.push(SnapshotRecord {
        id: c.id,
        created_at: now_rfc3339(),
        size_bytes: c.size_bytes,
        runsc_version: "fake-1".into(),
        remote: None,
    });
    r.pending_snapshot = Some("snap-000002".into());
    store.save(&r, None).await.unwrap();
    let p = snaps.begin("revive", "snap-000002").unwrap();
    std::fs::write(p.dir.join("checkpoint.img"), b"newest").unwrap();

    // Leftovers: a container and directories nobody owns.
    running("stranger_1");
    std::fs::create_dir_all(env.dir.path().join("bundles/ghost")).unwrap();
    std::fs::create_dir_all(env.dir.path().join("snapshots/ghost/snap-000001")).unwrap();

    let svc = env.service(store);
    let report = svc.reconcile().await.unwrap();
    let status = |id: &str| svc.get(id).unwrap().status;
    assert_eq!(status("run-alive"), Running);
    assert_eq!(status("start-alive"), Running);
    assert_eq!(status("susp-alive"), Running);
    assert!(
        snaps.entries("susp-alive").unwrap().is_empty(),
        "temp dir left"
    );
    assert_eq!(status("res-alive"), Running);
    assert_eq!(status("susp-winding"), Running);
    assert!(
        env.fake
            .state()
            .calls
            .iter()
            .any(|c| c.starts_with("restore susp-winding_")),
        "not revived from its image"
    );
    assert!(snaps.entries("susp-winding").unwrap().is_empty());
    assert_eq!(status("susp-slow"), Suspended);
    assert_eq!(snaps.entries("susp-slow").unwrap(), ["snap-000001"]);
    assert!(env
        .fake
        .state()
        .calls
        .iter()
        .any(|c| c == "delete susp-slow_1"));
    assert_eq!(status("susp-renamed"), Suspended);
    assert_eq!(svc.get("susp-renamed").unwrap().snapshots.len(), 1);
    assert_eq!(snaps.entries("susp-renamed").unwrap(), ["snap-000001"]);
    assert_eq!(status("run-lost"), Failed);
    assert!(svc.get("run-lost").unwrap().status_message.contains("lost"));
    assert_eq!(status("stopping"), Stopped);
    assert_eq!(status("start-lost"), Failed);
    assert_eq!(status("susp-committed"), Suspended);
    assert_eq!(svc.get("susp-committed").unwrap().snapshots.len(), 1);
    assert_eq!(status("susp-uncommitted"), Running);
    assert!(snaps.entries("susp-uncommitted").unwrap().is_empty());
    assert_eq!(status("susp-nothing"), Failed);
    assert_eq!(status("res-lost"), Suspended);
    assert_eq!(svc.get("res-lost").unwrap().snapshots.len(), 1);

    let revived = svc.get("revive").unwrap();
    assert_eq!(revived.status, Running, "{}", revived.status_message);
    assert_eq!(revived.snapshots.len(), 1);
    assert_eq!(snaps.entries("revive").unwrap(), ["snap-000001"]);

    assert_eq!(report.removed_containers, ["stranger_1"]);
    assert!(!env.dir.path().join("bundles/ghost").exists());
    assert!(!env.dir.path().join("snapshots/ghost").exists());
    let mut adopted = report.adopted.clone();
    adopted.sort();
    assert_eq!(
        adopted,
        [
            "res-alive",
            "revive",
            "run-alive",
            "start-alive",
            "susp-alive",
            "susp-uncommitted",
            "susp-winding"
        ]
    );
    // Every change was logged as an event from recovery, revives too.
    let events = svc.events_since(0, 1000).unwrap();
    assert!(events
        .iter()
        .any(|e| e.actor_id == "run-lost" && e.to == Some(Failed) && e.reason == "recovery"));
    for e in &events {
        assert_eq!(e.reason, "recovery", "{e:?}");
    }
    assert!(events
        .iter()
        .any(|e| e.actor_id == "susp-uncommitted" && e.to == Some(Resuming)));
}

#[tokio::test]
async fn requests_for_unknown_actors_leave_no_lock_behind() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    let locks = svc.locks.keys();
    for i in 0..100 {
        let id = format!("nobody-{i}");
        assert!(matches!(
            svc.suspend(&id).await,
            Err(ServiceError::NotFound(_))
        ));
        assert!(matches!(
            svc.stop(&id).await,
            Err(ServiceError::NotFound(_))
        ));
        assert!(matches!(
            svc.delete(&id).await,
            Err(ServiceError::NotFound(_))
        ));
    }
    assert_eq!(svc.locks.keys(), locks);
}

/// A record that cannot be read is set aside at start: health says
/// degraded and names it, what it owns (files, a running sandbox) is kept,
/// its id is not reused, and the other actors are served.
#[tokio::test]
async fn a_record_in_quarantine_degrades_health_and_keeps_what_it_owns() {
    use ActorStatus::*;
    let env = Env::new();
    {
        let store = env.store();
        for id in ["good", "bad"] {
            let r = env.record(id, Running, Some(&format!("{id}_1")));
            store.save(&r, None).await.unwrap();
        }
    }
    {
        let db = sled::open(env.dir.path().join("db")).unwrap();
        let actors = db.open_tree("actors").unwrap();
        actors
            .insert("bad", &b"{\"schemaVersion\":1,\"id\""[..])
            .unwrap();
        db.flush().unwrap();
    }
    for c in ["good_1", "bad_1"] {
        env.fake.state().containers.insert(c.to_string(), true);
    }
    let owned = [
        "snapshots/bad/snap-000001",
        "volumes/bad/data",
        "bundles/bad",
    ];
    for d in owned {
        std::fs::create_dir_all(env.dir.path().join(d)).unwrap();
    }
    std::fs::create_dir_all(env.dir.path().join("logs")).unwrap();
    std::fs::write(env.dir.path().join("logs/bad.log"), b"out").unwrap();

    let svc = env.service(env.store());
    let report = svc.reconcile().await.unwrap();
    assert!(report.removed_containers.is_empty(), "{report:?}");
    assert!(report.removed_dirs.is_empty(), "{report:?}");
    assert_eq!(env.fake.running(), ["bad_1", "good_1"]);
    for d in owned {
        assert!(env.dir.path().join(d).is_dir(), "{d}");
    }
    assert!(env.dir.path().join("logs/bad.log").is_file());

    let h = svc.health().unwrap();
    assert_eq!(h.status, "degraded");
    assert_eq!(
        h.quarantined,
        Some(Quarantined {
            count: 1,
            ids: vec!["bad".into()]
        })
    );
    assert_eq!(h.actors[&Running], 1);
    assert_eq!(svc.get("good").unwrap().status, Running);
    assert!(matches!(svc.get("bad"), Err(ServiceError::NotFound(_))));
    assert!(matches!(
        svc.create(env.request("bad")).await,
        Err(ServiceError::AlreadyExists(_))
    ));
    // The others are served as before.
    assert_eq!(svc.stop("good").await.unwrap().status, Stopped);
}

/// A snapshot whose manifest is of a newer major (a newer atelet wrote it)
/// is refused on resume with both versions, the actor left as it was; and
/// recovery keeps such a snapshot on record rather than sweep it.
#[tokio::test]
async fn a_snapshot_of_a_newer_manifest_major_is_refused_on_resume_and_kept() {
    use ActorStatus::*;
    let env = Env::new();
    let store = env.store();
    let snaps = env.snapshots();
    // A suspend cut short after the rename: committed on disk, not on record.
    let mut r = env.record("s", Suspending, Some("s_1"));
    r.pending_snapshot = Some("snap-000001".into());
    store.save(&r, None).await.unwrap();
    let p = snaps.begin("s", "snap-000001").unwrap();
    std::fs::write(p.dir.join("checkpoint.img"), b"image").unwrap();
    snaps
        .commit(
            &p,
            "h".into(),
            "fake-1".into(),
            "2025-01-01T00:00:00Z".into(),
        )
        .unwrap();
    let path = snaps
        .dir("s", "snap-000001")
        .join(crate::snapshots::MANIFEST);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["version"] = serde_json::json!(2);
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();

    let svc = env.service(store);
    svc.reconcile().await.unwrap();
    let s = svc.get("s").unwrap();
    assert_eq!(s.status, Suspended, "{}", s.status_message);
    assert_eq!(s.latest_snapshot.as_deref(), Some("snap-000001"));
    assert_eq!(s.snapshots[0].created_at, "2025-01-01T00:00:00Z");
    assert_eq!(snaps.entries("s").unwrap(), ["snap-000001"]);

    let err = svc.resume("s").await.unwrap_err();
    assert_eq!(
        crate::http::error::error_code(&err),
        atelet_api::ErrorCode::Conflict
    );
    let msg = err.to_string();
    assert!(
        msg.contains("manifest version 2.0") && msg.contains("1.0"),
        "{msg}"
    );
    assert_eq!(svc.get("s").unwrap(), s);
    assert_eq!(snaps.entries("s").unwrap(), ["snap-000001"]);
    assert!(!env
        .fake
        .state()
        .calls
        .iter()
        .any(|c| c.starts_with("restore")));
}

/// The next item of a stream, failing the test if none comes in time.
async fn next<T>(rx: &mut tokio::sync::mpsc::Receiver<T>) -> Option<T> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the stream stalled")
}

/// Reads a log stream until its text ends with `want`.
async fn read_log_until(rx: &mut tokio::sync::mpsc::Receiver<bytes::Bytes>, want: &str) {
    let mut text = String::new();
    while !text.ends_with(want) {
        let chunk = next(rx).await.expect("the log stream ended");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn an_event_stream_replays_the_log_then_follows_it_each_event_once() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    let mut rx = svc.events(Some(1), true);
    // Logged while the stream replays, and after it has gone live.
    svc.create(env.request("b")).await.unwrap();
    tokio::task::yield_now().await;
    svc.stop("a").await.unwrap();
    svc.delete("b").await.unwrap();
    let last = svc.last_event_seq();
    let mut streamed = Vec::new();
    while streamed.last().is_none_or(|e: &Event| e.seq < last) {
        streamed.push(next(&mut rx).await.expect("the event stream ended"));
    }
    assert_eq!(streamed, svc.events_since(1, 1000).unwrap());
}

#[tokio::test]
async fn a_live_event_stream_starts_after_the_newest_logged_event() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    let before = svc.last_event_seq();
    let mut rx = svc.events(None, true);
    // Let the stream start before anything else is logged.
    tokio::task::yield_now().await;
    svc.stop("a").await.unwrap();
    let last = svc.last_event_seq();
    assert!(last > before);
    let mut streamed = Vec::new();
    while streamed.last().is_none_or(|e: &Event| e.seq < last) {
        streamed.push(next(&mut rx).await.expect("the event stream ended"));
    }
    assert_eq!(streamed, svc.events_since(before, 1000).unwrap());
}

#[tokio::test]
async fn an_event_stream_without_follow_ends_after_the_replay() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    let mut rx = svc.events(Some(0), false);
    let mut streamed = Vec::new();
    while let Some(ev) = next(&mut rx).await {
        streamed.push(ev);
    }
    assert_eq!(streamed, svc.events_since(0, 1000).unwrap());
    // Without `since`, nothing is replayed.
    assert!(next(&mut svc.events(None, false)).await.is_none());
}

#[tokio::test]
async fn a_followed_log_survives_rotation_and_ends_with_the_actor() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    let log = svc.log_path("a");
    std::fs::write(&log, "one\n").unwrap();
    let mut rx = svc.logs("a", true).unwrap();
    read_log_until(&mut rx, "one\n").await;
    let append = |text: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    append("two\n");
    read_log_until(&mut rx, "two\n").await;
    // Rotation copies the log aside and truncates it: what is written next
    // is read from the start of the file.
    std::fs::write(&log, "3\n").unwrap();
    read_log_until(&mut rx, "3\n").await;
    svc.delete("a").await.unwrap();
    while next(&mut rx).await.is_some() {}
}

#[tokio::test]
async fn a_log_without_follow_ends_at_its_end_and_unknown_actors_have_none() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    std::fs::write(svc.log_path("a"), "hello\n").unwrap();
    let mut rx = svc.logs("a", false).unwrap();
    read_log_until(&mut rx, "hello\n").await;
    assert!(next(&mut rx).await.is_none());
    // No log yet: an empty stream.
    svc.create(env.request("quiet")).await.unwrap();
    assert!(next(&mut svc.logs("quiet", false).unwrap()).await.is_none());
    assert!(matches!(
        svc.logs("nobody", true),
        Err(ServiceError::NotFound(_))
    ));
    assert!(matches!(
        svc.logs("Not/An/Id", true),
        Err(ServiceError::Invalid(_))
    ));
}

fn exec_request(cmd: &[&str]) -> atelet_api::ExecRequest {
    atelet_api::ExecRequest {
        command: cmd.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn execs_are_limited_refused_outside_running_and_block_a_suspend_unless_forced() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    let mut first = svc
        .exec("a", exec_request(&["sh", "-c", "sleep 9"]), false)
        .await
        .unwrap();
    match first.output.recv().await {
        Some(ExecOutput::Stdout(b)) => assert!(String::from_utf8_lossy(&b).contains("sleep 9")),
        other => panic!("{other:?}"),
    }
    let _second = svc.exec("a", exec_request(&["true"]), true).await.unwrap();
    let over = svc
        .exec("a", exec_request(&["true"]), false)
        .await
        .unwrap_err();
    assert!(matches!(over, ServiceError::ExecRefused(_)), "{over}");
    assert!(
        over.to_string().contains("max_execs_per_actor (2)"),
        "{over}"
    );

    let before = svc.get("a").unwrap();
    let refused = svc.suspend("a").await.unwrap_err();
    assert!(matches!(refused, ServiceError::ExecRefused(_)), "{refused}");
    assert!(
        refused.to_string().contains("exec-1 (sh -c sleep 9"),
        "{refused}"
    );
    assert_eq!(svc.get("a").unwrap(), before);

    let s = svc.suspend_with("a", true).await.unwrap();
    assert_eq!(s.status, ActorStatus::Suspended);
    // The killed exec ended with SIGKILL's code.
    loop {
        match first.output.recv().await {
            Some(ExecOutput::Exit { code, .. }) => {
                assert_eq!(code, Some(137));
                break;
            }
            Some(_) => {}
            None => panic!("no exit"),
        }
    }
    let e = svc
        .exec("a", exec_request(&["id"]), false)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("it is SUSPENDED"), "{e}");
    assert!(matches!(
        svc.exec("zz", exec_request(&["id"]), false).await,
        Err(ServiceError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_dropped_session_kills_its_exec_and_stop_kills_the_rest() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    let dropped = svc
        .exec("a", exec_request(&["sleep", "9"]), false)
        .await
        .unwrap();
    drop(dropped);
    let mut kept = svc
        .exec("a", exec_request(&["sleep", "9"]), false)
        .await
        .unwrap();
    // The dropped one's slot frees: a third fits under the limit of 2.
    let mut third = None;
    for _ in 0..100 {
        match svc.exec("a", exec_request(&["true"]), false).await {
            Ok(s) => {
                third = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    assert!(third.is_some());
    svc.stop("a").await.unwrap();
    loop {
        match kept.output.recv().await {
            Some(ExecOutput::Exit { code, .. }) => {
                assert_eq!(code, Some(137));
                break;
            }
            Some(_) => {}
            None => panic!("no exit"),
        }
    }
}

#[tokio::test]
async fn pause_freezes_resume_thaws_and_a_paused_actor_can_be_suspended() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    let p = svc.pause("a").await.unwrap();
    assert_eq!(p.status, ActorStatus::Paused);
    assert!(p.sandbox.is_some(), "a paused actor keeps its sandbox");
    // Pausing twice, or exec-free steps that need RUNNING, are refused.
    assert!(matches!(
        svc.pause("a").await.unwrap_err(),
        ServiceError::Transition { .. }
    ));
    let r = svc.resume("a").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
    assert_eq!(r.activated_from.as_deref(), Some("paused"));
    let cid = r.sandbox.unwrap().container_id;
    let calls = env.fake.state().calls.clone();
    assert!(calls.contains(&format!("pause {cid}")), "{calls:?}");
    assert!(calls.contains(&format!("unpause {cid}")), "{calls:?}");

    // Paused, then suspended: the checkpoint leaves the frozen sandbox,
    // which goes; the resume restores a new one.
    svc.pause("a").await.unwrap();
    let s = svc.suspend("a").await.unwrap();
    assert_eq!(s.status, ActorStatus::Suspended);
    assert_eq!(s.snapshots.len(), 1);
    let r = svc.resume("a").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
    assert_eq!(r.activated_from.as_deref(), Some("suspended"));
    assert_ne!(r.sandbox.unwrap().container_id, cid);
}

#[tokio::test]
async fn a_failed_pause_or_unpause_leaves_the_actor_as_it_was() {
    let env = Env::new();
    let svc = env.service(env.store());
    svc.create(env.request("a")).await.unwrap();
    env.fake.state().fail.insert("pause", false);
    svc.pause("a").await.unwrap_err();
    let a = svc.get("a").unwrap();
    assert_eq!(a.status, ActorStatus::Running);
    assert!(
        a.status_message.contains("pause failed"),
        "{}",
        a.status_message
    );
    svc.pause("a").await.unwrap();
    env.fake.state().fail.insert("unpause", false);
    svc.resume("a").await.unwrap_err();
    assert_eq!(svc.get("a").unwrap().status, ActorStatus::Paused);
    assert_eq!(svc.resume("a").await.unwrap().status, ActorStatus::Running);
}

#[tokio::test]
async fn a_restart_finds_paused_actors_paused_and_settles_interrupted_pauses() {
    use ActorStatus::*;
    let env = Env::new();
    let store = env.store();
    let frozen = |c: &str| {
        let mut s = env.fake.state();
        s.containers.insert(c.to_string(), true);
        s.paused.insert(c.to_string());
    };
    for (id, status) in [
        ("p", Paused),
        ("pausing", Pausing),
        ("unpausing", Unpausing),
    ] {
        let cid = format!("{id}_1");
        store
            .save(&env.record(id, status, Some(&cid)), None)
            .await
            .unwrap();
        frozen(&cid);
    }
    // Thawed before the daemon could record it.
    store
        .save(&env.record("thawed", Unpausing, Some("thawed_1")), None)
        .await
        .unwrap();
    env.fake.state().containers.insert("thawed_1".into(), true);
    store
        .save(&env.record("lost", Paused, Some("lost_1")), None)
        .await
        .unwrap();
    let svc = env.service(store);
    svc.reconcile().await.unwrap();
    for (id, want) in [
        ("p", Paused),
        ("pausing", Paused),
        ("unpausing", Paused),
        ("thawed", Running),
        ("lost", Failed),
    ] {
        let a = svc.get(id).unwrap();
        assert_eq!(a.status, want, "{id}: {}", a.status_message);
    }
    assert_eq!(svc.resume("p").await.unwrap().status, Running);
}
