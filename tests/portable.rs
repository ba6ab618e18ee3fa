//! Snapshots that leave their actor, against the real runsc: a clone of
//! another actor's snapshot on one node, with its own id inside; and the
//! refusals of a `restoreFrom` that cannot be met, which change nothing.

use std::time::Duration;

use atelet_api::ActorStatus;
use atelet_e2e::{actor_request, openssl_keys, Daemon};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// A counter that prints its number and the id it reads from
/// `/run/ate/actor-id` each time: after a restore, the id of whoever it
/// now is.
const COUNTER_WITH_ID: &str =
    "i=0; while true; do echo \"$i $(cat /run/ate/actor-id)\"; i=$((i+1)); sleep 0.1; done";

/// `(number, id)` of each line of a log.
fn lines(log: &str) -> Vec<(u64, String)> {
    log.lines()
        .filter_map(|l| {
            let (n, id) = l.split_once(' ')?;
            Some((n.parse().ok()?, id.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clone_runs_on_from_the_snapshot_under_its_own_id() {
    let d = Daemon::start();
    d.create(&actor_request("origin", COUNTER_WITH_ID)).await;
    d.wait_log("origin", WAIT, |l| lines(l).len() >= 5).await;
    let s = d.client.act("origin", "suspend").await.unwrap();
    let snapshot = s.latest_snapshot.clone().unwrap();
    let stood = lines(&d.logs("origin").await).last().unwrap().0;

    // Two clones: one of the latest snapshot, one naming it.
    for (id, which) in [("copy-1", json!("latest")), ("copy-2", json!(snapshot))] {
        let c = d
            .create(&json!({
                "id": id,
                "template": {"namespace": "default", "name": "copies"},
                "restoreFrom": {"actor": "origin", "snapshot": which}
            }))
            .await;
        assert_eq!(c.status, ActorStatus::Suspended, "{id}");
        assert_eq!(c.snapshots.len(), 1);
        assert_eq!(c.spec, s.spec, "the spec comes with the snapshot");
        assert_eq!(c.template.name, "copies");
        // Its own snapshot dir: the image and the origin, its own manifest.
        let dir = d.state.join("snapshots").join(id).join(&c.snapshots[0].id);
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["actorId"], id);
        assert!(dir.join("checkpoint.img").is_file());
        let origin: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("origin.json")).unwrap()).unwrap();
        assert_eq!(origin["template"]["name"], "copies");
    }

    // All three resume, each going on from where the origin stood, each
    // reading its own id.
    for id in ["origin", "copy-1", "copy-2"] {
        let r = d.client.act(id, "resume").await.unwrap();
        assert_eq!(r.status, ActorStatus::Running, "{id}");
    }
    for id in ["origin", "copy-1", "copy-2"] {
        let log = d
            .wait_log(id, WAIT, |l| {
                lines(l)
                    .last()
                    .is_some_and(|(n, who)| *n > stood + 3 && who == id)
            })
            .await;
        let after: Vec<(u64, String)> = lines(&log)
            .into_iter()
            .filter(|(n, _)| *n > stood)
            .collect();
        // Never back to 0: the clones' logs start where the origin stood.
        let first = after.first().unwrap().0;
        assert!(first <= stood + 2, "{id} went on from {first}, not {stood}");
        if id != "origin" {
            assert!(
                lines(&log).iter().all(|(n, _)| *n > stood),
                "{id} counted from the start: {log}"
            );
        }
    }
    // Deleting the origin leaves the clones' snapshots whole.
    d.client.delete("origin").await.unwrap();
    d.client.act("copy-1", "suspend").await.unwrap();
    let r = d.client.act("copy-1", "resume").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_from_that_cannot_be_met_is_refused_and_creates_nothing() {
    let d = Daemon::start();
    d.create(&actor_request("fresh", COUNTER_WITH_ID)).await;
    let template = json!({"namespace": "default", "name": "copies"});
    let cases = [
        // No such actor; no snapshot yet; no such snapshot.
        (json!({"actor": "nobody"}), 404, "actor nobody not found"),
        (json!({"actor": "fresh"}), 404, "has no snapshot"),
        (
            json!({"actor": "fresh", "snapshot": "snap-000009"}),
            404,
            "snap-000009",
        ),
        // Two sources, or none.
        (
            json!({"actor": "fresh", "url": "s3://b/p"}),
            400,
            "restoreFrom",
        ),
        (json!({}), 400, "restoreFrom"),
    ];
    for (from, status, needle) in cases {
        let body = json!({"id": "copy", "template": template, "restoreFrom": from});
        let err = d
            .client
            .create_raw(serde_json::to_vec(&body).unwrap())
            .await
            .unwrap_err();
        match &err {
            atectl::ClientError::Api {
                status: s, message, ..
            } => {
                assert_eq!(*s, status, "{from}: {message}");
                assert!(message.contains(needle), "{from}: {message}");
            }
            other => panic!("{from}: {other:?}"),
        }
        assert!(d.client.get("copy").await.is_err(), "{from}");
    }
    // A spec with restoreFrom, and start: true, are refused by name.
    for (extra, field) in [
        (json!({"spec": {"containers": []}}), "spec"),
        (json!({"start": true}), "start"),
    ] {
        let mut body = json!({"id": "copy", "template": template,
                              "restoreFrom": {"actor": "fresh"}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let err = d
            .client
            .create_raw(serde_json::to_vec(&body).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, atectl::ClientError::Api { status: 400, message, .. } if message.starts_with(field)),
            "{err:?}"
        );
    }
    // An id that exists is a conflict, and the existing actor is untouched.
    d.client.act("fresh", "suspend").await.unwrap();
    let err = d
        .client
        .create_raw(
            serde_json::to_vec(
                &json!({"id": "fresh", "template": template, "restoreFrom": {"actor": "fresh"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, atectl::ClientError::Api { status: 409, .. }),
        "{err:?}"
    );
    assert_eq!(d.client.get("fresh").await.unwrap().snapshots.len(), 1);
    assert!(!d.state.join("snapshots/copy").exists());
}

/// Replaces every `from` in `tar` by `to` (of the same length, so that
/// the tar's layout holds).
fn replace(tar: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= tar.len() {
        if &tar[i..i + from.len()] == from {
            tar[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_imported_on_another_node_resumes_where_it_stood() {
    // Two nodes on one machine: two daemons, two state dirs and sockets.
    let a = Daemon::start();
    let b = Daemon::start();
    a.create(&actor_request("mover", COUNTER_WITH_ID)).await;
    a.wait_log("mover", WAIT, |l| lines(l).len() >= 5).await;
    a.client.act("mover", "suspend").await.unwrap();
    let stood = lines(&a.logs("mover").await).last().unwrap().0;

    let tar = a.dir.join("mover.tar");
    let out = a.atectl(&["export", "mover", "-o", tar.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&tar).unwrap();
    assert!(bytes.len() > 100_000, "{} bytes", bytes.len());

    // A byte of the image changed: refused by name, nothing registered.
    let mut tampered = bytes.clone();
    let at = tampered.len() - 4096;
    tampered[at] ^= 0x40;
    let bad = b.dir.join("tampered.tar");
    std::fs::write(&bad, &tampered).unwrap();
    let out = b.atectl(&["import", bad.to_str().unwrap(), "--id", "mover"]);
    assert_eq!(out.status.code(), Some(5), "400 is exit status 5");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checkpoint.img") && err.contains("sha256"),
        "{err}"
    );
    assert!(b.client.get("mover").await.is_err());
    assert!(!b.state.join("snapshots/mover").exists());

    // A manifest naming another runsc: 409 naming both versions.
    let version = a.client.health().await.unwrap().runsc.version.unwrap();
    let other = version.replace("2022", "2099");
    let mut foreign = bytes.clone();
    assert_eq!(
        replace(&mut foreign, version.as_bytes(), other.as_bytes()),
        1
    );
    let answer = b
        .client
        .raw(
            hyper::Method::POST,
            "/v1/snapshots/import?id=mover",
            Some(foreign),
        )
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&answer.body);
    assert_eq!(answer.status, 409, "{text}");
    assert!(text.contains(&version) && text.contains(&other), "{text}");
    assert!(b.client.get("mover").await.is_err());

    // The export itself: SUSPENDED on B, then it counts on from A's number.
    let out = b.atectl(&["import", tar.to_str().unwrap(), "--id", "mover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "mover SUSPENDED"
    );
    let imported = b.client.get("mover").await.unwrap();
    assert_eq!(imported.snapshots.len(), 1);
    assert_eq!(imported.spec, a.client.get("mover").await.unwrap().spec);
    let r = b.client.act("mover", "resume").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
    let log = b
        .wait_log("mover", WAIT, |l| {
            lines(l).last().is_some_and(|(n, _)| *n > stood + 3)
        })
        .await;
    let first = lines(&log).first().unwrap().0;
    assert!(
        first > stood && first <= stood + 2,
        "B went on from {first}, A stood at {stood}"
    );
    // An id taken on B is a conflict.
    let out = b.atectl(&["import", tar.to_str().unwrap(), "--id", "mover"]);
    assert_eq!(out.status.code(), Some(4), "409 is exit status 4");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_trusted_keys_takes_only_snapshots_signed_by_them() {
    let keys = tempfile::tempdir().unwrap();
    let (a_key, a_pub) = openssl_keys(keys.path(), "a");
    let (other_key, _) = openssl_keys(keys.path(), "other");
    let signer = |key: &str| format!("[remote]\nsigning_key = {key:?}\n");
    let a = Daemon::start_with_config(&signer(&a_key), &[]);
    let stranger = Daemon::start_with_config(&signer(&other_key), &[]);
    let unsigned = Daemon::start();
    let b = Daemon::start_with_config(&format!("[remote]\ntrusted_keys = [{a_pub:?}]\n"), &[]);

    // One suspended counter on each of the three senders, exported.
    let mut tars = Vec::new();
    for (d, name) in [
        (&a, "signed"),
        (&stranger, "stranger"),
        (&unsigned, "unsigned"),
    ] {
        d.create(&actor_request(name, COUNTER_WITH_ID)).await;
        d.wait_log(name, WAIT, |l| lines(l).len() >= 3).await;
        d.client.act(name, "suspend").await.unwrap();
        let tar = d.dir.join(format!("{name}.tar"));
        let out = d.atectl(&["export", name, "-o", tar.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tars.push((name, tar));
    }
    let import =
        |tar: &std::path::Path, id: &str| b.atectl(&["import", tar.to_str().unwrap(), "--id", id]);
    // Unsigned, and signed by a key B does not trust: refused by name.
    for (name, needle) in [("unsigned", "not signed"), ("stranger", "not among")] {
        let tar = &tars.iter().find(|(n, _)| *n == name).unwrap().1;
        let out = import(tar, name);
        assert_eq!(out.status.code(), Some(5), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{name}: {err}");
        assert!(b.client.get(name).await.is_err());
    }
    // Signed by A, but its manifest changed after signing: a bad signature.
    let signed = &tars.iter().find(|(n, _)| *n == "signed").unwrap().1;
    let mut bytes = std::fs::read(signed).unwrap();
    let at = bytes
        .windows(9)
        .position(|w| w == b"\"signed\"," || w == b"\"signed\"\n")
        .or_else(|| bytes.windows(8).position(|w| w == b"\"signed\""))
        .unwrap();
    bytes[at + 1] = b'S';
    let changed = b.dir.join("changed.tar");
    std::fs::write(&changed, &bytes).unwrap();
    let out = import(&changed, "changed");
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad"), "{err}");
    // As A signed it: taken, and it runs on.
    let out = import(signed, "signed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = b.client.act("signed", "resume").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clone_of_a_bridged_actor_serves_at_an_address_of_its_own() {
    use std::io::{Read, Write};
    let d = Daemon::start_with_config("[network]\n", &[]);
    let script = "mkdir -p /www; (while true; do cat /run/ate/actor-id > /www/who.tmp; mv /www/who.tmp /www/who; sleep 0.2; done) & exec httpd -f -p 8080 -h /www";
    let mut req = actor_request("web", script);
    req["spec"]["network"] = json!({"mode": "bridge"});
    req["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
    req["spec"]["containers"][0]["readinessProbe"] =
        json!({"httpGet": {"path": "/who", "port": 8080}, "periodSeconds": 1});
    d.create(&req).await;
    d.client.act("web", "suspend").await.unwrap();
    let clone = d
        .create(
            &json!({"id": "web-2", "template": {"namespace": "default", "name": "t"},
                        "restoreFrom": {"actor": "web"}}),
        )
        .await;
    for id in ["web", "web-2"] {
        let r = d.client.act(id, "resume").await.unwrap();
        assert!(r.ready, "{id}");
    }
    // Each keeps the address it was given: the clone its own.
    assert_eq!(
        clone.network.ip.as_deref(),
        Some(d.net.actor_ip(1).as_str())
    );
    let ips = [d.net.actor_ip(0), d.net.actor_ip(1)];
    for (id, ip) in ["web", "web-2"].iter().zip(&ips) {
        // Routed to this daemon's bridge, or nothing is sent.
        let route = std::process::Command::new("ip")
            .args(["-o", "route", "get", ip])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&route.stdout).contains(&format!("dev {}", d.net.bridge())),
            "{ip}: {route:?}"
        );
        // The clone was restored with the source's page; its loop writes
        // its own id within 0.2 s of running again.
        let get = || {
            let mut s = std::net::TcpStream::connect((ip.as_str(), 8080)).unwrap();
            // Closed with a reset: nothing left in TIME_WAIT in the actor.
            let linger = nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Linger, &linger).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /who HTTP/1.0\r\n\r\n").unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            answer
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut answer = get();
        while !answer.trim_end().ends_with(id) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            answer = get();
        }
        assert!(answer.trim_end().ends_with(id), "{id} at {ip}: {answer}");
    }
}
