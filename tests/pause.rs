//! Pause, memory tiering and idle policies on the real runsc: a paused
//! actor keeps its memory and goes on from where it stood; paused actors
//! are suspended when they hold too much memory (least recently active
//! first); an idle actor pauses and then suspends by itself, a busy one
//! never does. (Wake on connect is in `network.rs`, with the network
//! helpers.)

use std::time::{Duration, Instant};

use atelet_api::{ActorStatus, Event};
use atelet_e2e::{actor_request, assert_consecutive, numbers, Daemon, COUNTER};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// The highest number the actor printed.
async fn last_number(d: &Daemon, id: &str) -> u64 {
    numbers(&d.logs(id).await).last().copied().unwrap_or(0)
}

/// Waits until the actor printed more than `n`.
async fn wait_past(d: &Daemon, id: &str, n: u64) {
    d.wait_log(id, WAIT, |l| numbers(l).last().is_some_and(|m| *m > n))
        .await;
}

async fn events(d: &Daemon, id: &str) -> Vec<Event> {
    d.client
        .events_since(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.actor_id == id)
        .collect()
}

/// The value of the metric line starting with `prefix`, if any.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_actor_goes_on_from_where_it_stood_and_pause_and_suspend_survive_a_kill_nine() {
    let mut d = Daemon::start();
    d.create(&actor_request("p", COUNTER)).await;
    d.create(&actor_request("q", COUNTER)).await;
    wait_past(&d, "p", 10).await;

    // Paused: frozen (nothing printed), the sandbox kept.
    let a = d.client.act("p", "pause").await.unwrap();
    assert_eq!(a.status, ActorStatus::Paused);
    let sandbox = a.sandbox.expect("a paused actor keeps its sandbox");
    let at_pause = last_number(&d, "p").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(last_number(&d, "p").await, at_pause, "a paused actor ran");
    assert!(d
        .runsc_containers()
        .iter()
        .any(|(c, s)| *c == sandbox.container_id && s == "paused"));

    // Resumed: the same sandbox, the counter goes on without a gap.
    let r = d.client.act("p", "resume").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
    assert_eq!(r.activated_from.as_deref(), Some("paused"));
    assert_eq!(r.sandbox.unwrap().container_id, sandbox.container_id);
    assert!(r.last_active_at.is_some());
    wait_past(&d, "p", at_pause + 5).await;
    assert_consecutive(&numbers(&d.logs("p").await));

    // Paused, then suspended: the checkpoint of the frozen sandbox
    // restores, and the counter goes on again.
    d.client.act("p", "pause").await.unwrap();
    let s = d.client.act("p", "suspend").await.unwrap();
    assert_eq!(s.status, ActorStatus::Suspended);
    let before = last_number(&d, "p").await;
    let r = d.client.act("p", "resume").await.unwrap();
    assert_eq!(r.activated_from.as_deref(), Some("suspended"));
    wait_past(&d, "p", before + 5).await;
    assert_consecutive(&numbers(&d.logs("p").await));

    // A pause of a paused actor, an exec in one: 409 naming the status.
    d.client.act("p", "pause").await.unwrap();
    let err = d.client.act("p", "pause").await.unwrap_err();
    assert!(err.to_string().contains("PAUSED"), "{err}");

    // kill -9 with p PAUSED and q SUSPENDED: both as they were after the
    // restart, and both go on.
    d.client.act("q", "suspend").await.unwrap();
    let (p_before, q_before) = (last_number(&d, "p").await, last_number(&d, "q").await);
    d.kill9();
    d.restart();
    assert_eq!(d.client.get("p").await.unwrap().status, ActorStatus::Paused);
    assert_eq!(
        d.client.get("q").await.unwrap().status,
        ActorStatus::Suspended
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(last_number(&d, "p").await, p_before, "still frozen");
    d.client.act("p", "resume").await.unwrap();
    d.client.act("q", "resume").await.unwrap();
    wait_past(&d, "p", p_before + 5).await;
    wait_past(&d, "q", q_before + 5).await;
    for id in ["p", "q"] {
        assert_consecutive(&numbers(&d.logs(id).await));
        d.client.delete(id).await.unwrap();
    }
    assert!(
        d.runsc_containers().is_empty(),
        "{:?}",
        d.runsc_containers()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn paused_actors_over_max_paused_memory_are_suspended_least_recently_active_first() {
    let mut d = Daemon::start();
    for id in ["a", "b", "c"] {
        d.create(&actor_request(id, COUNTER)).await;
        wait_past(&d, id, 3).await;
    }
    d.client.act("a", "pause").await.unwrap();
    d.client.act("b", "pause").await.unwrap();
    // What two paused sandboxes hold (the tiering pass measures it).
    let deadline = Instant::now() + WAIT;
    let two = loop {
        if let Some(v) = metric(&d.metrics().await, "atelet_paused_memory_bytes ") {
            if v > 0.0 {
                break v as u64;
            }
        }
        assert!(Instant::now() < deadline, "paused memory never measured");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Room for two and a half of them: a third paused actor is too many.
    d.terminate();
    d.add_config(&format!(
        "[tiering]\nmax_paused_memory = {}\ninterval_ms = 200\n",
        two + two / 4
    ));
    d.restart();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in ["a", "b"] {
        assert_eq!(d.client.get(id).await.unwrap().status, ActorStatus::Paused);
    }

    d.client.act("c", "pause").await.unwrap();
    let a = d.wait_status("a", ActorStatus::Suspended, WAIT).await;
    assert_eq!(a.snapshots.len(), 1);
    let reasons: Vec<(Option<ActorStatus>, String)> = events(&d, "a")
        .await
        .into_iter()
        .map(|e| (e.to, e.reason))
        .collect();
    assert!(
        reasons.contains(&(Some(ActorStatus::Suspended), "memory-pressure".to_string())),
        "{reasons:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in ["b", "c"] {
        assert_eq!(d.client.get(id).await.unwrap().status, ActorStatus::Paused);
    }
    let m = d.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"atelet_tiering_transitions_total{reason="memory-pressure",op="suspend"} "#
        ),
        Some(1.0),
        "{m}"
    );
    // Suspended by the daemon, resumed as any other: nothing lost.
    let before = last_number(&d, "a").await;
    d.client.act("a", "resume").await.unwrap();
    wait_past(&d, "a", before + 3).await;
    assert_consecutive(&numbers(&d.logs("a").await));
    for id in ["a", "b", "c"] {
        d.client.delete(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_actor_pauses_then_suspends_by_itself_and_a_busy_one_never_does() {
    let d = Daemon::start_with_config("[tiering]\ninterval_ms = 200\n", &[]);
    let lifecycle = json!({"pauseAfterIdleSeconds": 2, "suspendAfterPausedSeconds": 3});
    let mut idle = actor_request("idle", "echo up; exec sleep 100000");
    idle["spec"]["lifecycle"] = lifecycle.clone();
    let mut busy = actor_request("busy", "echo up; while true; do :; done");
    busy["spec"]["lifecycle"] = lifecycle;
    let t0 = Instant::now();
    d.create(&idle).await;
    d.create(&busy).await;

    let p = d.wait_status("idle", ActorStatus::Paused, WAIT).await;
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "paused before its idle window"
    );
    assert!(p.last_active_at.is_some());
    d.wait_status("idle", ActorStatus::Suspended, WAIT).await;
    let reasons: Vec<(Option<ActorStatus>, String)> = events(&d, "idle")
        .await
        .into_iter()
        .map(|e| (e.to, e.reason))
        .collect();
    for to in [ActorStatus::Paused, ActorStatus::Suspended] {
        assert!(
            reasons.contains(&(Some(to), "idle".to_string())),
            "{reasons:?}"
        );
    }

    // The busy loop has been busy all along: never paused.
    let b = d.client.get("busy").await.unwrap();
    assert_eq!(b.status, ActorStatus::Running, "{}", b.status_message);
    assert!(
        !events(&d, "busy")
            .await
            .iter()
            .any(|e| e.to == Some(ActorStatus::Pausing)),
        "the busy actor was paused"
    );
    // Woken by a request, the idle one goes on as before.
    d.client.act("idle", "resume").await.unwrap();
    for id in ["idle", "busy"] {
        d.client.delete(id).await.unwrap();
    }
}
