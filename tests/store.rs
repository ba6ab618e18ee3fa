//! Persisted state: an actor record the daemon cannot read is set aside
//! (quarantined) when it starts, named by `GET /v1/healthz`, and the other
//! actors are served as before.

use std::time::Duration;

use atelet_api::{ActorStatus, CreateActorRequest, ErrorCode};
use atelet_e2e::{actor_request, numbers, Daemon, COUNTER};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_record_is_quarantined_and_the_other_actors_are_served() {
    let mut d = Daemon::start();
    d.create(&actor_request("served", COUNTER)).await;
    d.create(&actor_request("victim", "sleep 100000")).await;
    d.wait_log("served", WAIT, |l| numbers(l).len() >= 3).await;
    let victim = d.client.get("victim").await.unwrap();
    let victim_cid = victim.sandbox.unwrap().container_id;
    assert!(d.terminate().success());

    // Cut the victim's record in half while the daemon is stopped.
    {
        let db = sled::open(d.state.join("db")).unwrap();
        let actors = db.open_tree("actors").unwrap();
        let mut bytes = actors.get("victim").unwrap().unwrap().to_vec();
        bytes.truncate(bytes.len() / 2);
        actors.insert("victim", bytes).unwrap();
        db.flush().unwrap();
    }
    d.restart();

    // Health names it; the log says why.
    let h = d.client.health().await.unwrap();
    assert_eq!(h.status, "degraded", "{h:?}");
    assert!(h.runsc.version.is_some());
    let q = h.quarantined.expect("a quarantined field");
    assert_eq!((q.count, q.ids), (1, vec!["victim".to_string()]));
    assert_eq!(h.actors[&ActorStatus::Running], 1);
    let log = d.log();
    assert!(
        log.lines().any(|l| l.contains("moved into quarantine")
            && l.contains("\"key\":\"victim\"")
            && l.contains("EOF while parsing")),
        "{log}"
    );
    let out = d.atectl(&["health"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("records: 1 in quarantine (victim)"),
        "{stdout}"
    );

    // The other actor is served as before: adopted, still printing, and
    // its steps work.
    let served = d.client.get("served").await.unwrap();
    assert_eq!(served.status, ActorStatus::Running);
    let n = numbers(&d.logs("served").await).len();
    d.wait_log("served", WAIT, |l| numbers(l).len() > n + 2)
        .await;
    let list = d.client.list(None).await.unwrap();
    let ids: Vec<&str> = list.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["served"]);
    let stopped = d.client.act("served", "stop").await.unwrap();
    assert_eq!(stopped.status, ActorStatus::Stopped);

    // The quarantined actor is not served, its id is not reused, and its
    // sandbox is left running rather than swept as a stranger's.
    let err = d.client.get("victim").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    let mut again = actor_request("victim", "true");
    again["start"] = serde_json::json!(false);
    let again: CreateActorRequest = serde_json::from_value(again).unwrap();
    let err = d.client.create(&again).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Conflict), "{err}");
    let running: Vec<String> = d
        .runsc_containers()
        .into_iter()
        .filter(|(_, s)| s == "running")
        .map(|(id, _)| id)
        .collect();
    assert!(running.contains(&victim_cid), "{running:?}");
    assert!(d.log().contains("leaving alone a runsc container"));
}
