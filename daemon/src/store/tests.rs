//! Unit tests of the store: writes and reopens, the layout version rule,
//! and the quarantine of records that cannot be read.

use super::schema::RECORD_VERSION;
use super::*;
use serde_json::json;

/// Opens the store at `dir`, waiting (up to 10 s) for the lock that a
/// store just dropped in the same process may still hold: sled's
/// background flusher lets go of the database a moment after the drop.
fn open(dir: &std::path::Path) -> Store {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open(dir) {
            Ok(s) => return s,
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("opening the store: {e}"),
        }
    }
}

/// sled at `dir`, waiting (as [`open`] does) for a just-dropped store's lock.
fn sled_open(dir: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("opening sled: {e}"),
        }
    }
}

fn rec(id: &str) -> ActorRecord {
    let spec: ActorSpec = serde_json::from_value(json!({
        "containers": [{"name": "app", "image": "dir:/r", "command": ["/bin/true"]}]
    }))
    .unwrap();
    ActorRecord::new(
        id.to_string(),
        TemplateRef {
            namespace: "default".into(),
            name: "t".into(),
        },
        spec,
        now_rfc3339(),
    )
}

/// Writes `bytes` under `key` of sled tree `tree` at `dir`, as another
/// daemon (or a disk fault) would have left them.
fn raw_put(dir: &std::path::Path, tree: &str, key: &str, bytes: &[u8]) {
    let db = sled_open(dir);
    db.open_tree(tree).unwrap().insert(key, bytes).unwrap();
    db.flush().unwrap();
}

/// What sled holds under `key` of `tree` at `dir`.
fn raw_get(dir: &std::path::Path, tree: &str, key: &str) -> Option<Vec<u8>> {
    let db = sled_open(dir);
    let v = db.open_tree(tree).unwrap().get(key).unwrap();
    v.map(|v| v.to_vec())
}

/// A record as daemons before the schema module wrote it: layout 1.0
/// (no `schemaMinor`), from before `imageDigest` existed.
fn layout_1_0(id: &str) -> serde_json::Value {
    json!({
        "schemaVersion": 1,
        "id": id,
        "template": {"namespace": "default", "name": "t"},
        "spec": {"containers": [{
            "name": "app", "image": "dir:/r", "command": ["/bin/sh"],
            "env": [{"name": "A", "value": "1"}],
            "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}, "runAsUser": 1000}
        }]},
        "status": "SUSPENDED",
        "statusMessage": "",
        "createdAt": "2025-01-01T00:00:00.000Z",
        "updatedAt": "2025-01-01T00:00:01.000Z",
        "container": null,
        "snapshots": [{
            "id": "snap-000001", "createdAt": "2025-01-01T00:00:01.000Z",
            "sizeBytes": 42, "runscVersion": "v1"
        }],
        "exitCode": null,
        "incarnation": 1,
        "snapshotSeq": 1,
        "pendingSnapshot": null,
        "pending": null
    })
}

#[tokio::test]
async fn records_and_events_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let mut r = rec("a");
        store.insert_new(&r, "created").await.unwrap();
        assert!(matches!(
            store.insert_new(&r, "created").await,
            Err(StoreError::Exists(_))
        ));
        r.status = ActorStatus::Running;
        store
            .save(
                &r,
                Some(Transition {
                    from: Some(ActorStatus::Created),
                    to: Some(ActorStatus::Running),
                    reason: "start".into(),
                }),
            )
            .await
            .unwrap();
        store.insert_new(&rec("b"), "created").await.unwrap();
        store
            .remove("b", ActorStatus::Created, "deleted")
            .await
            .unwrap();
    }
    let store = open(dir.path());
    let a = store.get("a").unwrap().unwrap();
    assert_eq!(a.status, ActorStatus::Running);
    assert!(store.get("b").unwrap().is_none());
    let events = store.events_since(0, 100).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(events[3].to, None);
    assert_eq!(store.events_since(2, 100).unwrap().len(), 2);
    // The sequence goes on from where it stood.
    store.insert_new(&rec("c"), "created").await.unwrap();
    assert_eq!(store.last_seq(), 5);
    // The in-memory summaries follow the writes and survive a reopen.
    assert_eq!(store.len(), 2);
    let mut s = store.summaries();
    s.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(s[0].0, "a");
    assert_eq!(s[0].1.status, ActorStatus::Running);
    assert!(store.quarantined().is_empty());
}

#[test]
fn every_field_survives_the_persisted_form() {
    let mut r = rec("a");
    r.spec = serde_json::from_value(json!({
        "containers": [{
            "name": "app", "image": "oci:/l:v1", "command": ["/bin/sh", "-c", "x"],
            "env": [{"name": "A", "value": "1"}, {"name": "E"}],
            "workingDir": "/w",
            "securityContext": {
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["CHOWN"]},
                "runAsUser": 1000, "runAsGroup": 1001
            },
            "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}],
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "0.1"}}
        }],
        "volumes": [{"name": "data", "durableDir": {}}]
    }))
    .unwrap();
    r.status = ActorStatus::Suspending;
    r.status_message = "why".into();
    r.container = Some(ContainerRecord {
        id: "a_3.n".into(),
        pid: Some(7),
        runsc_version: "v1".into(),
    });
    r.snapshots.push(SnapshotRecord {
        id: "snap-000001".into(),
        created_at: "t".into(),
        size_bytes: 42,
        runsc_version: "v1".into(),
        remote: None,
    });
    r.exit_code = Some(3);
    r.incarnation = 3;
    r.snapshot_seq = 2;
    r.pending_snapshot = Some("snap-000002".into());
    r.pending = Some(PendingOp::Stop);
    r.image_digest = Some("sha256:ab".into());
    r.network = NetworkRecord {
        mode: NetworkMode::Bridge,
        ip: Some("10.88.0.2".parse().unwrap()),
    };
    r.spec.lifecycle = Some(atelet_api::LifecycleSpec {
        pause_after_idle_seconds: Some(5),
        suspend_after_paused_seconds: Some(60),
        wake_on_connect: Some(false),
    });
    r.last_active_at = Some("2026-01-01T00:00:00Z".into());
    r.activated_from = Some("paused".into());
    let bytes = encode(&r).unwrap();
    assert_eq!(decode(b"a", &bytes).unwrap(), r);
    for status in ActorStatus::ALL {
        r.status = status;
        assert_eq!(decode(b"a", &encode(&r).unwrap()).unwrap().status, status);
    }
    r.status = ActorStatus::Suspending;
    let bytes = encode(&r).unwrap();

    // What is written is layout 2.0: its spec and template are the API's
    // (a daemon of 1.x read the same JSON but refuses the major, since
    // it would misread the paused statuses).
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["schemaMinor"], RECORD_VERSION.minor);
    let spec: ActorSpec = serde_json::from_value(v["spec"].clone()).unwrap();
    assert_eq!(spec, r.spec);
    let _: TemplateRef = serde_json::from_value(v["template"].clone()).unwrap();
    assert_eq!(v["container"]["runscVersion"], "v1");
    assert_eq!(v["snapshots"][0]["sizeBytes"], 42);
    assert_eq!(v["pending"], "stop");
    assert_eq!(v["status"], "SUSPENDING");
    assert_eq!(v["network"]["ip"], "10.88.0.2");
    assert_eq!(
        v["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "0.1"}})
    );
}

#[tokio::test]
async fn a_record_of_layout_1_3_reads_as_an_actor_without_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = layout_1_0("old");
    old["schemaMinor"] = json!(3);
    raw_put(
        dir.path(),
        "actors",
        "old",
        &serde_json::to_vec(&old).unwrap(),
    );
    let store = open(dir.path());
    let r = store.get("old").unwrap().unwrap();
    assert_eq!(r.spec.containers[0].resources, None);
    assert_eq!(
        atelet_api::SandboxResources::of(&r.spec),
        atelet_api::SandboxResources::default()
    );
    store.save(&r, None).await.unwrap();
    drop(store);
    let v: serde_json::Value =
        serde_json::from_slice(&raw_get(dir.path(), "actors", "old").unwrap()).unwrap();
    assert_eq!(v["schemaVersion"], RECORD_VERSION.major);
    assert_eq!(v["schemaMinor"], RECORD_VERSION.minor);
    assert!(v["spec"]["containers"][0].get("resources").is_none());
}

#[tokio::test]
async fn a_record_of_an_older_layout_is_read_and_written_back_in_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let old = serde_json::to_vec(&layout_1_0("old")).unwrap();
    raw_put(dir.path(), "actors", "old", &old);
    {
        let store = open(dir.path());
        let r = store.get("old").unwrap().unwrap();
        assert_eq!(r.status, ActorStatus::Suspended);
        assert_eq!(r.snapshots.len(), 1);
        assert_eq!(r.snapshots[0].size_bytes, 42);
        assert_eq!(r.image_digest, None);
        assert_eq!(r.spec.containers[0].env[0].value, "1");
        let sc = r.spec.containers[0].security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_user, Some(1000));
        assert_eq!(store.summaries()[0].1.snapshot_bytes, 42);
        // Reading does not rewrite it...
        store.flush().unwrap();
    }
    assert_eq!(raw_get(dir.path(), "actors", "old").unwrap(), old);
    {
        // ...the next save does, in the current layout.
        let store = open(dir.path());
        let r = store.get("old").unwrap().unwrap();
        store.save(&r, None).await.unwrap();
    }
    let now: serde_json::Value =
        serde_json::from_slice(&raw_get(dir.path(), "actors", "old").unwrap()).unwrap();
    assert_eq!(now["schemaVersion"], RECORD_VERSION.major);
    assert_eq!(now["schemaMinor"], RECORD_VERSION.minor);
    assert_eq!(now["snapshots"], layout_1_0("old")["snapshots"]);
}

#[test]
fn a_record_of_a_newer_major_stops_the_open_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    raw_put(
        dir.path(),
        "actors",
        "a",
        &serde_json::to_vec(&layout_1_0("a")).unwrap(),
    );
    let mut newer = layout_1_0("b");
    newer["schemaVersion"] = json!(RECORD_VERSION.major + 1);
    newer["schemaMinor"] = json!(3);
    let bytes = serde_json::to_vec(&newer).unwrap();
    raw_put(dir.path(), "actors", "b", &bytes);
    let err = loop {
        match Store::open(dir.path()) {
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => break other.unwrap_err(),
        }
    };
    assert!(
        matches!(&err, StoreError::Schema { key, found, supported }
            if key == "b" && *found == Version::new(RECORD_VERSION.major + 1, 3) && *supported == RECORD_VERSION),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("record b")
            && msg.contains(&format!("{}.3", RECORD_VERSION.major + 1))
            && msg.contains(&RECORD_VERSION.to_string()),
        "{msg}"
    );
    // Nothing is moved: the record waits for the daemon that reads it.
    assert_eq!(raw_get(dir.path(), "actors", "b").unwrap(), bytes);
    assert!(raw_get(dir.path(), "quarantine", "b").is_none());
}

#[tokio::test]
async fn a_record_of_a_newer_minor_with_unknown_fields_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut newer = layout_1_0("a");
    newer["schemaMinor"] = json!(RECORD_VERSION.minor + 5);
    newer["imageDigest"] = json!("sha256:ab");
    newer["restartPolicy"] = json!({"maxRestarts": 3});
    newer["spec"]["containers"][0]["resources"]["limits"]["gpu"] = json!("1");
    newer["spec"]["containers"][0]["securityContext"]["seccomp"] = json!("strict");
    newer["template"]["uid"] = json!("1234");
    newer["snapshots"][0]["compression"] = json!("zstd");
    raw_put(
        dir.path(),
        "actors",
        "a",
        &serde_json::to_vec(&newer).unwrap(),
    );
    let store = open(dir.path());
    assert!(store.quarantined().is_empty());
    let r = store.get("a").unwrap().unwrap();
    assert_eq!(r.status, ActorStatus::Suspended);
    assert_eq!(r.image_digest.as_deref(), Some("sha256:ab"));
    assert_eq!(r.snapshots[0].size_bytes, 42);
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(store.summaries()[0].1.status, ActorStatus::Suspended);
    // Rewritten in this daemon's layout, without what it does not know.
    store.save(&r, None).await.unwrap();
    drop(store);
    let v: serde_json::Value =
        serde_json::from_slice(&raw_get(dir.path(), "actors", "a").unwrap()).unwrap();
    assert_eq!(v["schemaMinor"], RECORD_VERSION.minor);
    assert!(v.get("restartPolicy").is_none());
}

#[tokio::test]
async fn a_record_that_cannot_be_read_is_quarantined_and_the_others_load() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.insert_new(&rec("good"), "created").await.unwrap();
        store.insert_new(&rec("zz-good"), "created").await.unwrap();
    }
    let garbage = b"{\"schemaVersion\":1,\"id\":\"bad\",\"tem".to_vec();
    raw_put(dir.path(), "actors", "bad", &garbage);
    let mut odd = layout_1_0("odd");
    odd["status"] = json!("SLEEPING");
    let odd = serde_json::to_vec(&odd).unwrap();
    raw_put(dir.path(), "actors", "odd", &odd);
    // A record filed under another actor's key is not that actor.
    raw_put(
        dir.path(),
        "actors",
        "moved",
        &serde_json::to_vec(&layout_1_0("other")).unwrap(),
    );

    {
        let store = open(dir.path());
        assert_eq!(store.quarantined(), ["bad", "moved", "odd"]);
        let ids: Vec<String> = store.list().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["good", "zz-good"]);
        assert_eq!(store.len(), 2);
        assert!(store.get("bad").unwrap().is_none());
        assert!(store.is_quarantined("odd") && !store.is_quarantined("good"));
        // Its id stays taken, so that nothing takes over its files.
        assert!(store.contains("bad").unwrap());
        assert!(matches!(
            store.insert_new(&rec("bad"), "created").await,
            Err(StoreError::Exists(_))
        ));
        // The others are served as before.
        let mut g = store.get("good").unwrap().unwrap();
        g.status = ActorStatus::Running;
        store.save(&g, None).await.unwrap();
    }
    // Kept byte for byte, not deleted.
    assert_eq!(raw_get(dir.path(), "quarantine", "bad").unwrap(), garbage);
    assert_eq!(raw_get(dir.path(), "quarantine", "odd").unwrap(), odd);
    assert!(raw_get(dir.path(), "actors", "bad").is_none());

    // A reopen finds them still in quarantine, once each; a record that
    // reads now (a daemon that knows its layout) is moved back.
    raw_put(
        dir.path(),
        "quarantine",
        "odd",
        &serde_json::to_vec(&layout_1_0("odd")).unwrap(),
    );
    let store = open(dir.path());
    assert_eq!(store.quarantined(), ["bad", "moved"]);
    assert_eq!(
        store.get("odd").unwrap().unwrap().status,
        ActorStatus::Suspended
    );
    assert_eq!(
        store.get("good").unwrap().unwrap().status,
        ActorStatus::Running
    );
    assert_eq!(store.len(), 3);
}

#[test]
fn a_second_unreadable_record_under_a_quarantined_key_does_not_overwrite_it() {
    let dir = tempfile::tempdir().unwrap();
    raw_put(dir.path(), "quarantine", "bad", b"first");
    raw_put(dir.path(), "actors", "bad", b"second");
    let store = open(dir.path());
    assert_eq!(store.quarantined(), ["bad", "bad~1"]);
    drop(store);
    assert_eq!(raw_get(dir.path(), "quarantine", "bad").unwrap(), b"first");
    assert_eq!(
        raw_get(dir.path(), "quarantine", "bad~1").unwrap(),
        b"second"
    );
}

fn bridged(id: &str, ip: &str) -> ActorRecord {
    let mut r = rec(id);
    r.network = NetworkRecord {
        mode: NetworkMode::Bridge,
        ip: Some(ip.parse().unwrap()),
    };
    r
}

#[tokio::test]
async fn an_address_is_held_by_one_actor_for_its_life_and_freed_at_delete() {
    let dir = tempfile::tempdir().unwrap();
    let subnet: crate::network::Subnet = "10.9.0.0/29".parse().unwrap();
    {
        let store = open(dir.path());
        let first = store.free_ip(&subnet).unwrap().unwrap();
        assert_eq!(first.to_string(), "10.9.0.2", "the gateway is .1");
        store
            .insert_new(&bridged("a", "10.9.0.2"), "created")
            .await
            .unwrap();
        // Another record naming the held address is refused, nothing written.
        let err = store
            .insert_new(&bridged("b", "10.9.0.2"), "created")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("held by actor a"), "{err}");
        assert!(store.get("b").unwrap().is_none());
        assert_ne!(store.free_ip(&subnet).unwrap(), Some(first));
        assert_eq!(store.ips_held(), 1);
    }
    // Kept across a reopen; freed by the removal of the record.
    let store = open(dir.path());
    assert_eq!(store.ips_held(), 1);
    store
        .remove("a", ActorStatus::Created, "deleted")
        .await
        .unwrap();
    assert_eq!(store.ips_held(), 0);
    // A full subnet says so.
    for (i, ip) in ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"]
        .iter()
        .enumerate()
    {
        assert!(store.free_ip(&subnet).unwrap().is_some());
        store
            .insert_new(&bridged(&format!("x{i}"), ip), "created")
            .await
            .unwrap();
    }
    assert_eq!(store.free_ip(&subnet).unwrap(), None);
}

#[tokio::test]
async fn an_address_of_a_record_in_quarantine_stays_held() {
    let dir = tempfile::tempdir().unwrap();
    let subnet: crate::network::Subnet = "10.9.0.0/29".parse().unwrap();
    {
        let store = open(dir.path());
        store
            .insert_new(&bridged("a", "10.9.0.2"), "created")
            .await
            .unwrap();
        store.flush().unwrap();
    }
    // Its record becomes unreadable: it goes to quarantine at the next open,
    // and its sandbox (which recovery leaves alone) still has the address.
    raw_put(dir.path(), "actors", "a", b"{not json");
    let store = open(dir.path());
    assert_eq!(store.quarantined(), ["a"]);
    assert_eq!(store.ips_held(), 1);
    assert!(store.ip_holders().contains("a"));
    let next = store.free_ip(&subnet).unwrap().unwrap();
    assert_ne!(next.to_string(), "10.9.0.2");
}
