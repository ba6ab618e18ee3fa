//! Many concurrent requests against one actor and against ten: runsc steps
//! of one actor never interleave, every answer is a valid API response, and
//! each actor ends in a valid status with a coherent event history.

use std::collections::BTreeMap;
use std::time::Duration;

use atelet_api::{Actor, ActorStatus, ErrorBody};
use atelet_e2e::{actor_request, Daemon};
use hyper::Method;

const OPS: [&str; 4] = ["suspend", "resume", "get", "stop"];

/// Sends `n` requests spread over `ids`, all at once; checks every answer.
async fn storm(d: &Daemon, ids: &[String], n: usize) {
    let mut tasks = Vec::new();
    for i in 0..n {
        let client = d.client.clone();
        let id = ids[i % ids.len()].clone();
        // A fixed, varied pattern: not random, so a failure reproduces.
        let op = OPS[(i * 7 + i / 3) % OPS.len()];
        tasks.push(tokio::spawn(async move {
            let (method, path) = match op {
                "get" => (Method::GET, format!("/v1/actors/{id}")),
                _ => (Method::POST, format!("/v1/actors/{id}/{op}")),
            };
            let resp = client.raw(method, &path, None).await.unwrap();
            (op, resp)
        }));
    }
    for t in tasks {
        let (op, resp) = t.await.unwrap();
        let body = String::from_utf8_lossy(&resp.body).into_owned();
        match resp.status {
            200 => {
                let a: Actor = serde_json::from_slice(&resp.body)
                    .unwrap_or_else(|e| panic!("{op}: {e}: {body}"));
                let want = match op {
                    "suspend" => Some(ActorStatus::Suspended),
                    "resume" => Some(ActorStatus::Running),
                    "stop" => Some(ActorStatus::Stopped),
                    _ => None,
                };
                if let Some(w) = want {
                    assert_eq!(a.status, w, "{op}: {body}");
                }
            }
            409 => {
                let e: ErrorBody = serde_json::from_slice(&resp.body)
                    .unwrap_or_else(|e| panic!("{op}: {e}: {body}"));
                assert!(e.error.message.contains("cannot"), "{op}: {body}");
            }
            s => panic!("{op}: unexpected status {s}: {body}"),
        }
    }
}

/// Checks per actor: a final non-transitional status, events that chain
/// (each `from` is the previous `to`), and runsc steps that never overlap.
async fn check(d: &Daemon, ids: &[String]) {
    let events = d.client.events_since(0).await.unwrap();
    for id in ids {
        let a = d.client.get(id).await.unwrap();
        assert!(!a.status.is_transitional(), "{id} ended {}", a.status);
        let mut prev = None;
        for e in events.iter().filter(|e| &e.actor_id == id) {
            assert_eq!(e.from, prev, "{id}: event {} does not follow", e.seq);
            prev = e.to;
        }
        assert_eq!(prev, Some(a.status), "{id}: last event vs status");
    }
    // "runsc begin"/"runsc end" debug lines, grouped by actor (the
    // container id is `<actor>_<n>`).
    let mut open: BTreeMap<String, String> = BTreeMap::new();
    let mut steps = 0;
    for line in d.log().lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let msg = v["message"].as_str().unwrap_or("");
        let container = v["container"].as_str().unwrap_or("");
        let Some((actor, _)) = container.rsplit_once('_') else {
            continue;
        };
        let op = v["op"].as_str().unwrap_or("").to_string();
        // Removing a dead sandbox's runsc state ("discard") runs off the
        // actor's lock by design: it never touches the live incarnation.
        if op == "discard" {
            continue;
        }
        match msg {
            "runsc begin" => {
                steps += 1;
                if let Some(other) = open.insert(actor.to_string(), op.clone()) {
                    panic!("{actor}: runsc {op} began while {other} was running");
                }
            }
            "runsc end" => {
                open.remove(actor);
            }
            _ => {}
        }
    }
    assert!(
        steps >= ids.len() * 2,
        "only {steps} runsc steps found in the daemon log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_requests_on_one_actor() {
    let d = Daemon::start();
    d.create(&actor_request("solo", "sleep 100000")).await;
    let ids = vec!["solo".to_string()];
    storm(&d, &ids, 50).await;
    check(&d, &ids).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_requests_on_ten_actors() {
    let d = Daemon::start();
    let ids: Vec<String> = (0..10).map(|i| format!("crowd-{i}")).collect();
    for id in &ids {
        d.create(&actor_request(id, "sleep 100000")).await;
    }
    storm(&d, &ids, 50).await;
    check(&d, &ids).await;
    // The daemon still serves.
    tokio::time::timeout(Duration::from_secs(5), d.client.health())
        .await
        .unwrap()
        .unwrap();
}
