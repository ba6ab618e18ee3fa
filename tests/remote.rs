//! Snapshots that leave the node through a real object store: Garage, on
//! loopback, started by the tests (`support/garage.rs`). Two daemons on
//! this machine stand for two nodes sharing the store.

use std::time::Duration;

use atelet_api::{Actor, ActorStatus};
use atelet_e2e::garage::Garage;
use atelet_e2e::{actor_request, openssl_keys, Daemon};
use hyper::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// A counter that prints its number each 100 ms.
const COUNTER: &str = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done";

fn numbers(log: &str) -> Vec<u64> {
    log.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// `POST path` with no body: (status, body as text).
async fn post(d: &Daemon, path: &str, body: Option<serde_json::Value>) -> (u16, String) {
    let r = d
        .client
        .raw(
            Method::POST,
            path,
            body.map(|b| serde_json::to_vec(&b).unwrap()),
        )
        .await
        .unwrap();
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// A daemon whose `[remote]` is `garage`, under `prefix`, retrying failed
/// uploads every 2 s.
fn node(garage: &Garage, prefix: &str) -> Daemon {
    let config = garage.remote_config(prefix) + "retry_secs = 2\n";
    Daemon::start_with_config(&config, &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_counter_suspended_on_one_node_resumes_on_another() {
    let garage = Garage::start();
    let a = node(&garage, "fleet");
    let b = node(&garage, "fleet");
    a.create(&actor_request("mover", COUNTER)).await;
    a.wait_log("mover", WAIT, |l| numbers(l).len() >= 5).await;

    let (status, body) = post(&a, "/v1/actors/mover/suspend?wait=uploaded", None).await;
    assert_eq!(status, 200, "{body}");
    let suspended: Actor = serde_json::from_str(&body).unwrap();
    let snap = suspended.snapshots.last().unwrap();
    assert_eq!(snap.upload_status.as_deref(), Some("uploaded"));
    let url = snap.remote.clone().expect("the URL once uploaded");
    assert!(url.starts_with("s3://snaps/fleet/"), "{url}");
    assert!(snap.local);
    let stood = *numbers(&a.logs("mover").await).last().unwrap();
    // The event log says so.
    let events = a.client.events_since(0).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.actor_id == "mover" && e.reason.contains("uploaded")),
        "{events:?}"
    );

    // Node B: made from the URL, SUSPENDED, its snapshot not yet local.
    let (status, body) = post(
        &b,
        "/v1/actors",
        Some(json!({
            "id": "mover",
            "template": {"namespace": "default", "name": "moved"},
            "restoreFrom": {"url": url}
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let created: Actor = serde_json::from_str(&body).unwrap();
    assert_eq!(created.status, ActorStatus::Suspended);
    assert!(!created.snapshots[0].local);
    assert_eq!(created.spec, suspended.spec);

    // The resume downloads, verifies, restores: the counter goes on.
    let r = b.client.act("mover", "resume").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
    assert!(r.snapshots[0].local);
    let log = b
        .wait_log("mover", WAIT, |l| {
            numbers(l).last().is_some_and(|n| *n > stood + 3)
        })
        .await;
    let first = numbers(&log)[0];
    assert!(
        first > stood && first <= stood + 2,
        "B went on from {first}, A stood at {stood}"
    );

    // A URL of nothing: 404, nothing created.
    let (status, body) = post(
        &b,
        "/v1/actors",
        Some(json!({
            "id": "ghost",
            "template": {"namespace": "default", "name": "moved"},
            "restoreFrom": {"url": "s3://snaps/fleet/none/ghost/snap-000001"}
        })),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(b.client.get("ghost").await.is_err());

    // Deleting it on A removes its remote copy: B can no longer make one.
    a.client.delete("mover").await.unwrap();
    let (status, body) = post(
        &b,
        "/v1/actors",
        Some(json!({
            "id": "again",
            "template": {"namespace": "default", "name": "moved"},
            "restoreFrom": {"url": url}
        })),
    )
    .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_is_down_fails_the_upload_keeps_the_actor_and_is_retried() {
    let mut garage = Garage::start();
    let a = node(&garage, "fleet");
    a.create(&actor_request("patient", COUNTER)).await;
    a.wait_log("patient", WAIT, |l| numbers(l).len() >= 3).await;
    garage.nodes[0].stop();

    // The suspend itself succeeds; waiting for the upload answers 503.
    let (status, body) = post(&a, "/v1/actors/patient/suspend?wait=uploaded", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("upload"), "{body}");
    let s = a.client.get("patient").await.unwrap();
    assert_eq!(s.status, ActorStatus::Suspended);
    assert_eq!(s.snapshots[0].upload_status.as_deref(), Some("failed"));
    assert!(s.snapshots[0].upload_error.is_some());

    // The local copy serves a resume on this node meanwhile.
    let r = a.client.act("patient", "resume").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
    let r = a.client.act("patient", "suspend").await.unwrap();
    assert_eq!(r.status, ActorStatus::Suspended);

    // Once the store is back, the retries go through.
    garage.nodes[0].restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = a.client.get("patient").await.unwrap();
        let all_up = s
            .snapshots
            .iter()
            .all(|x| x.upload_status.as_deref() == Some("uploaded"));
        if all_up {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not uploaded after the store came back: {:?}",
            s.snapshots
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_cut_short_leaves_the_actor_suspended_and_a_retry_works() {
    let mut garage = Garage::start();
    let a = node(&garage, "fleet");
    let b = node(&garage, "fleet");
    a.create(&actor_request("far", COUNTER)).await;
    a.wait_log("far", WAIT, |l| numbers(l).len() >= 3).await;
    let (status, body) = post(&a, "/v1/actors/far/suspend?wait=uploaded", None).await;
    assert_eq!(status, 200, "{body}");
    let url = serde_json::from_str::<Actor>(&body).unwrap().snapshots[0]
        .remote
        .clone()
        .unwrap();
    let (status, body) = post(
        &b,
        "/v1/actors",
        Some(
            json!({"id": "far", "template": {"namespace": "default", "name": "t"},
                    "restoreFrom": {"url": url}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // The store goes away before the resume: a clear error, SUSPENDED.
    garage.nodes[0].stop();
    let err = b.client.act("far", "resume").await.unwrap_err();
    match &err {
        atectl::ClientError::Api {
            status, message, ..
        } => {
            assert_eq!(*status, 503, "{message}");
            assert!(message.contains("remote store"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let s = b.client.get("far").await.unwrap();
    assert_eq!(s.status, ActorStatus::Suspended);
    assert!(!s.snapshots[0].local);
    assert!(
        std::fs::read_dir(b.state.join("snapshots/far"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "nothing half-downloaded is left"
    );

    garage.nodes[0].restart();
    let r = b.client.act("far", "resume").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_node_store_takes_an_upload_with_one_node_down_and_not_with_two() {
    let mut garage = Garage::cluster(3);
    let a = node(&garage, "fleet");
    a.create(&actor_request("replicated", COUNTER)).await;
    a.wait_log("replicated", WAIT, |l| numbers(l).len() >= 3)
        .await;

    // One of three down: a quorum of two still writes.
    garage.nodes[2].stop();
    let (status, body) = post(&a, "/v1/actors/replicated/suspend?wait=uploaded", None).await;
    assert_eq!(status, 200, "{body}");
    let s: Actor = serde_json::from_str(&body).unwrap();
    assert_eq!(s.snapshots[0].upload_status.as_deref(), Some("uploaded"));

    // Two of three down: no quorum, the upload fails; the actor is kept.
    a.client.act("replicated", "resume").await.unwrap();
    garage.nodes[1].stop();
    let (status, body) = post(&a, "/v1/actors/replicated/suspend?wait=uploaded", None).await;
    assert_eq!(status, 503, "{body}");
    let s = a.client.get("replicated").await.unwrap();
    assert_eq!(s.status, ActorStatus::Suspended);
    assert_eq!(
        s.snapshots.last().unwrap().upload_status.as_deref(),
        Some("failed")
    );

    // Both back: the retry completes.
    garage.nodes[1].restart();
    garage.nodes[2].restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let s = a.client.get("replicated").await.unwrap();
        if s.snapshots.last().unwrap().upload_status.as_deref() == Some("uploaded") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not uploaded once the nodes came back: {:?}",
            s.snapshots
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_cut_by_a_kill_nine_is_done_after_the_restart() {
    let garage = Garage::start();
    let mut a = node(&garage, "fleet");
    // Some megabytes in memory, so that the upload takes a moment.
    let script = "head -c 40000000 /dev/urandom > /tmp/ballast; i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done";
    a.create(&actor_request("killed", script)).await;
    a.wait_log("killed", WAIT, |l| numbers(l).len() >= 3).await;
    let s = a.client.act("killed", "suspend").await.unwrap();
    assert_eq!(s.status, ActorStatus::Suspended);
    let status = s.snapshots[0].upload_status.clone();
    a.kill9();
    // Cut in the middle: no manifest, so no snapshot for any reader. (The
    // key: node, actor and the digits of its creation time, snapshot.)
    let node_id = std::fs::read_to_string(a.state.join("node-id")).unwrap();
    let generation: String = s.created_at.chars().filter(char::is_ascii_digit).collect();
    let url = format!(
        "s3://snaps/fleet/{}/killed.{generation}/snap-000001",
        node_id.trim()
    );
    let b = node(&garage, "fleet");
    let (code, body) = post(
        &b,
        "/v1/actors",
        Some(
            json!({"id": "early", "template": {"namespace": "default", "name": "t"},
                    "restoreFrom": {"url": url}}),
        ),
    )
    .await;
    assert_eq!(code, 404, "{body}");
    a.restart();
    // Pending (or failed) before, uploaded after the restart.
    assert_ne!(
        status.as_deref(),
        Some("uploaded"),
        "the upload was done before the kill"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let s = a.client.get("killed").await.unwrap();
        if s.snapshots[0].upload_status.as_deref() == Some("uploaded") {
            assert_eq!(s.snapshots[0].remote.as_deref(), Some(url.as_str()));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not uploaded after the restart: {:?}",
            s.snapshots
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And it resumes, here, as before.
    let r = a.client.act("killed", "resume").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_manifests_are_signed_and_a_node_takes_only_trusted_ones() {
    let keys = tempfile::tempdir().unwrap();
    let (a_key, a_pub) = openssl_keys(keys.path(), "a");
    let (_, other_pub) = openssl_keys(keys.path(), "other");
    let garage = Garage::start();
    let config = |prefix: &str, extra: String| {
        Daemon::start_with_config(&(garage.remote_config(prefix) + &extra), &[])
    };
    let a = config("fleet", format!("signing_key = {a_key:?}\n"));
    let trusting = config("fleet", format!("trusted_keys = [{a_pub:?}]\n"));
    let wary = config("fleet", format!("trusted_keys = [{other_pub:?}]\n"));
    a.create(&actor_request("signed", COUNTER)).await;
    a.wait_log("signed", WAIT, |l| numbers(l).len() >= 3).await;
    let (status, body) = post(&a, "/v1/actors/signed/suspend?wait=uploaded", None).await;
    assert_eq!(status, 200, "{body}");
    let url = serde_json::from_str::<Actor>(&body).unwrap().snapshots[0]
        .remote
        .clone()
        .unwrap();
    let from = |id: &str| {
        json!({"id": id, "template": {"namespace": "default", "name": "t"},
               "restoreFrom": {"url": url}})
    };
    let (status, body) = post(&wary, "/v1/actors", Some(from("signed"))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not among"), "{body}");
    assert!(wary.client.get("signed").await.is_err());
    let (status, body) = post(&trusting, "/v1/actors", Some(from("signed"))).await;
    assert_eq!(status, 201, "{body}");
    let r = trusting.client.act("signed", "resume").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_keeps_both_copies_in_step_and_a_delete_can_keep_the_remote_ones() {
    let garage = Garage::start();
    let config = format!("snapshot_retention = 1\n{}", garage.remote_config("fleet"));
    let a = Daemon::start_with_config(&config, &[]);
    let b = node(&garage, "fleet");
    a.create(&actor_request("kept", COUNTER)).await;
    let mut urls = Vec::new();
    for round in 0..2 {
        a.wait_log("kept", WAIT, |l| numbers(l).len() >= 3 * (round + 1))
            .await;
        let (status, body) = post(&a, "/v1/actors/kept/suspend?wait=uploaded", None).await;
        assert_eq!(status, 200, "{body}");
        let s: Actor = serde_json::from_str(&body).unwrap();
        urls.push(s.snapshots.last().unwrap().remote.clone().unwrap());
        if round == 0 {
            a.client.act("kept", "resume").await.unwrap();
        }
    }
    // One snapshot kept, here and in the store.
    let s = a.client.get("kept").await.unwrap();
    assert_eq!(s.snapshots.len(), 1, "{:?}", s.snapshots);
    assert_eq!(s.snapshots[0].id, "snap-000002");
    assert!(!a.state.join("snapshots/kept/snap-000001").exists());
    let from = |id: &str, url: &str| {
        json!({"id": id, "template": {"namespace": "default", "name": "t"},
               "restoreFrom": {"url": url}})
    };
    let (status, body) = post(&b, "/v1/actors", Some(from("old", &urls[0]))).await;
    assert_eq!(
        status, 404,
        "the first snapshot's remote copy went too: {body}"
    );
    // Deleted with keepRemote: its snapshot stays for other nodes.
    let r = a
        .client
        .raw(Method::DELETE, "/v1/actors/kept?keepRemote=true", None)
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let (status, body) = post(&b, "/v1/actors", Some(from("kept", &urls[1]))).await;
    assert_eq!(status, 201, "{body}");
}
