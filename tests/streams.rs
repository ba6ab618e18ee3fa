//! Streaming endpoints: `logs?follow=true` and the NDJSON event stream.

use std::time::Duration;

use atelet_api::{ActorStatus, Event};
use atelet_e2e::{actor_request, numbers, Daemon, COUNTER};
use http_body_util::BodyExt;
use hyper::Method;

const WAIT: Duration = Duration::from_secs(20);

/// Reads from a streaming body until `done(text)` or the stream ends.
async fn read_until(
    body: &mut hyper::body::Incoming,
    text: &mut String,
    done: impl Fn(&str) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(text) {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    text.push_str(&String::from_utf8_lossy(&data));
                }
            }
            Ok(Some(Err(e))) => panic!("stream error: {e}"),
            Ok(None) => return false,
            Err(_) => panic!("stream stalled; got so far:\n{text}"),
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_streams_new_log_lines_until_the_actor_is_deleted() {
    let d = Daemon::start();
    d.create(&actor_request("talker", COUNTER)).await;
    let resp = d
        .client
        .send(Method::GET, "/v1/actors/talker/logs?follow=true", None)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut text = String::new();
    assert!(read_until(&mut body, &mut text, |t| numbers(t).len() >= 5).await);
    // Across a suspend and a resume, the same stream keeps going.
    d.client.act("talker", "suspend").await.unwrap();
    d.client.act("talker", "resume").await.unwrap();
    let seen = numbers(&text).len();
    assert!(read_until(&mut body, &mut text, |t| numbers(t).len() >= seen + 5).await);
    atelet_e2e::assert_consecutive(&numbers(&text));
    // Deleting the actor ends the stream.
    d.client.delete("talker").await.unwrap();
    assert!(!read_until(&mut body, &mut text, |_| false).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_shows_transitions_as_they_happen() {
    let d = Daemon::start();
    let resp = d
        .client
        .send(Method::GET, "/v1/events", None)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/x-ndjson"
    );
    let mut body = resp.into_body();
    d.create(&actor_request("watched", "sleep 100000")).await;
    d.client.act("watched", "stop").await.unwrap();
    let mut text = String::new();
    assert!(read_until(&mut body, &mut text, |t| t.contains("\"to\":\"STOPPED\"")).await);
    let events: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let path: Vec<Option<ActorStatus>> = events.iter().map(|e| e.to).collect();
    assert_eq!(
        path,
        [
            Some(ActorStatus::Created),
            Some(ActorStatus::Starting),
            Some(ActorStatus::Running),
            Some(ActorStatus::Stopped)
        ]
    );
    assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert!(events
        .iter()
        .all(|e| e.actor_id == "watched" && !e.time.is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_stream_misses_nothing_when_actors_change_at_once() {
    let d = Daemon::start();
    let resp = d
        .client
        .send(Method::GET, "/v1/events", None)
        .await
        .unwrap();
    let mut body = resp.into_body();
    // Five actors created and stopped concurrently: their writes interleave.
    let mut tasks = Vec::new();
    for i in 0..5 {
        let body = actor_request(&format!("many-{i}"), "sleep 100000");
        let client = d.client.clone();
        tasks.push(tokio::spawn(async move {
            let id = body["id"].as_str().unwrap().to_string();
            client
                .create_raw(serde_json::to_vec(&body).unwrap())
                .await
                .unwrap();
            client.act(&id, "stop").await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let logged = d.client.events_since(0).await.unwrap();
    let last = logged.last().unwrap().seq;
    let mut text = String::new();
    assert!(
        read_until(&mut body, &mut text, |t| t
            .contains(&format!("\"seq\":{last},")))
        .await,
        "stream ended early"
    );
    let streamed: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(streamed, logged, "the live stream differs from the log");
}
