//! Security defences (docs/security.md): socket access by peer credentials,
//! request limits, the node admission policy, and file modes.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use atelet_api::{ActorStatus, ErrorCode};
use atelet_e2e::{actor_request, rootfs, target_dir, Daemon};
use serde_json::json;

/// Runs curl on the daemon's socket as `uid` (via setpriv); returns the
/// status and the body.
fn curl_as(d: &Daemon, uid: u32, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    curl_as_ids(d, uid, uid, method, path, body)
}

/// [`curl_as`] with a group of its own.
fn curl_as_ids(
    d: &Daemon,
    uid: u32,
    gid: u32,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--clear-groups",
        "curl",
        "-s",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "--unix-socket",
    ])
    .arg(&d.socket)
    .args(["-X", method, &format!("http://localhost{path}")]);
    // The body goes through a world-readable file: the peer is unprivileged.
    let file = tempfile::NamedTempFile::new_in("/tmp").unwrap();
    if let Some(b) = body {
        std::fs::write(file.path(), b).unwrap();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", file.path().display()));
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Writes `bytes` on a new connection and reads until the daemon closes it
/// (or 30 s pass): how the read ended, and what came.
fn send_raw(d: &Daemon, bytes: &[u8]) -> (std::io::Result<usize>, String) {
    let mut s = UnixStream::connect(&d.socket).unwrap();
    // The daemon may answer and close before a huge head is all written:
    // the answer is still there to read.
    let _ = s.write_all(bytes);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    let n = s.read_to_end(&mut buf);
    (n, String::from_utf8_lossy(&buf).into_owned())
}

/// Waits (bounded) for a daemon that must refuse to start to exit non-zero,
/// and returns what it printed on stderr; `what` names it if it starts.
async fn refused_start(mut daemon: std::process::Child, what: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = daemon.kill();
            let _ = daemon.wait();
            panic!("{what} started");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "{what}: {status}");
    let mut stderr = String::new();
    daemon
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

fn error_code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"]["code"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_root_and_configured_peers_may_use_the_socket() {
    // A world-connectable socket, so that only the peer check stands
    // between an unprivileged user and the API.
    let cfg = "socket_mode = \"0666\"\n[access]\nallowed_uids = [65532]\nviewer_uids = [65533]\n";
    let d = Daemon::start_with_config(cfg, &[]);
    let create = serde_json::to_string(&actor_request("peer-made", "sleep 100000")).unwrap();

    // A stranger: 403 on every route, before any body is read (a body over
    // the size limit still gets 403, not 413).
    let (code, body) = curl_as(&d, 65534, "GET", "/v1/healthz", None);
    assert_eq!(code, 403, "{body}");
    assert_eq!(error_code(&body), "Unauthorized");
    assert!(body.contains("uid 65534 is not allowed"), "{body}");
    let big = "x".repeat(3 * 1024 * 1024);
    let (code, body) = curl_as(&d, 65534, "POST", "/v1/actors", Some(&big));
    assert_eq!(code, 403, "{body}");
    // Not even which routes exist.
    let (code, body) = curl_as(&d, 65534, "GET", "/v1/no-such-route?x", None);
    assert_eq!(code, 403, "{body}");

    // A viewer: reads, but may not change anything.
    let (code, _) = curl_as(&d, 65533, "GET", "/v1/actors", None);
    assert_eq!(code, 200);
    let (code, body) = curl_as(&d, 65533, "POST", "/v1/actors", Some(&create));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("may only read"), "{body}");
    // Nor export a snapshot: it holds an actor's whole memory.
    let (code, body) = curl_as(
        &d,
        65533,
        "GET",
        "/v1/actors/any/snapshots/latest/export",
        None,
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("may only read"), "{body}");

    // An allowed user, and root.
    let (code, body) = curl_as(&d, 65532, "POST", "/v1/actors", Some(&create));
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        d.client.get("peer-made").await.unwrap().status,
        ActorStatus::Running
    );
    assert!(d
        .log()
        .contains("connection from a peer that is not allowed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_socket_has_mode_0660_by_default() {
    let d = Daemon::start();
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // An unprivileged user cannot even connect.
    let (code, _) = curl_as(&d, 65534, "GET", "/v1/healthz", None);
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn members_of_the_socket_group_may_connect_and_act() {
    // nogroup (65534) stands for the `atelet` group of a real install.
    let d = Daemon::start_with_config("[access]\nsocket_group = \"nogroup\"\n", &[]);
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 65534);
    // A member (by its gid) gets through the file mode and the peer check
    // with full access: a stop of an unknown actor is 404, not 403.
    let (code, body) = curl_as_ids(&d, 65531, 65534, "POST", "/v1/actors/nobody/stop", None);
    assert_eq!(code, 404, "{body}");
    // Anyone else cannot connect.
    let (code, _) = curl_as(&d, 65531, "GET", "/v1/healthz", None);
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_body_is_cut_off_with_400() {
    let d = Daemon::start_with_config("[limits]\nbody_read_timeout_secs = 1\n", &[]);
    // The rest of the body never comes.
    let (n, reply) = send_raw(
        &d,
        b"POST /v1/actors HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":",
    );
    assert!(n.is_ok(), "the daemon did not close the connection: {n:?}");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(
        reply.contains("request body not received in time"),
        "{reply}"
    );
    assert!(d.client.list(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_header_client_is_cut_off_and_others_are_served() {
    let d = Daemon::start_with_config("[limits]\nheader_read_timeout_secs = 1\n", &[]);
    // It never finishes its headers; the daemon closes the connection.
    let (n, reply) = send_raw(&d, b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n");
    assert!(n.is_ok(), "the daemon did not close the connection: {n:?}");
    assert!(!reply.contains("200 OK"), "{reply}");
    // The daemon serves everyone else meanwhile and after.
    d.client.health().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_too_many_headers_are_refused() {
    let d = Daemon::start();
    let send = |head: String| send_raw(&d, head.as_bytes()).1;
    // A head a little over the limit (16 KiB) reaches the handler: the JSON
    // error body, and the connection is closed.
    let json_413 = |reply: &str, what: &str| {
        assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
        assert!(
            reply.to_ascii_lowercase().contains("connection: close"),
            "{reply}"
        );
        let body = &reply[reply.find("\r\n\r\n").expect("a body") + 4..];
        let body: serde_json::Value = serde_json::from_str(body).expect(body);
        assert_eq!(body["error"]["code"], "PayloadTooLarge", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(what), "{message}");
    };
    let big = format!(
        "GET /v1/healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    json_413(&send(big), "request head is");
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let reply = send(format!("GET /v1/healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n"));
    json_413(&reply, "151 headers, more than the limit of 100");
    // Far over (a buffer of four times the limit, 64 KiB), hyper refuses
    // before parsing more, so memory stays bounded; its bare 431 is
    // replaced by the same JSON 413.
    let huge = format!(
        "GET /v1/healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    json_413(&send(huge), "far over the limits");
    let lots: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let reply = send(format!("GET /v1/healthz HTTP/1.1\r\nHost: x\r\n{lots}\r\n"));
    json_413(&reply, "far over the limits");
    d.client.health().await.unwrap();
}

/// Opens a connection that follows the event stream: a response under
/// way for as long as it stays open.
fn follow_events(d: &Daemon) -> UnixStream {
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "{head:?}");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_wait_their_turn() {
    let d = Daemon::start_with_config(
        "[limits]\nmax_connections = 2\nheader_read_timeout_secs = 60\n",
        &[],
    );
    // Both slots busy with a response under way (idle connections would
    // make room: see idle_connections_make_room_for_requests).
    let a = follow_events(&d);
    let b = follow_events(&d);
    let client = d.client.clone();
    let third = tokio::spawn(async move { client.health().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served over the cap"
    );
    drop(a);
    let h = tokio::time::timeout(Duration::from_secs(20), third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.unwrap().status, "ok");
    drop(b);
}

/// Idle connections (opened, nothing sent) cannot hold every slot until
/// the header timeout: a request is served within 1 s while 300 idle
/// connections are open, more than the 256 slots, and while a client keeps
/// reopening the ones the daemon closes.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_make_room_for_requests() {
    const IDLE: usize = 300;
    let d = Daemon::start();
    let mut idle: Vec<UnixStream> = (0..IDLE)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    // Let the daemon take up its slots with them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let served = tokio::time::timeout(Duration::from_secs(1), d.client.health()).await;
    assert!(
        served.is_ok(),
        "a request was not served within 1 s while {IDLE} idle connections were open"
    );
    assert_eq!(served.unwrap().unwrap().status, "ok");

    // A client that reopens whatever the daemon closes, in a loop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reopener = {
        let stop = stop.clone();
        let socket = d.socket.clone();
        std::thread::spawn(move || {
            for s in &idle {
                s.set_nonblocking(true).unwrap();
            }
            let mut reopened = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for s in idle.iter_mut() {
                    let mut buf = [0u8; 64];
                    let closed = match s.read(&mut buf) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    };
                    if closed {
                        *s = UnixStream::connect(&socket).unwrap();
                        s.set_nonblocking(true).unwrap();
                        reopened += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            reopened
        })
    };
    for _ in 0..5 {
        let client = atelet_e2e::Client::new(&d.socket);
        let served = tokio::time::timeout(Duration::from_secs(1), client.health()).await;
        assert!(
            served.is_ok(),
            "a request was not served within 1 s while a client kept {IDLE} idle connections open"
        );
        served.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reopened = reopener.join().unwrap();
    assert!(reopened > 0, "the daemon closed no idle connection");
}

async fn refused(d: &Daemon, body: serde_json::Value, rule: &str) {
    let before = d.client.list(None).await.unwrap();
    let files = d.files();
    let err = d
        .client
        .create_raw(serde_json::to_vec(&body).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("refused by node policy {rule}")),
        "{err}"
    );
    assert_eq!(d.client.list(None).await.unwrap(), before);
    assert_eq!(d.files(), files);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admission_policy_refuses_with_the_rule_named() {
    let dirs = format!("image_dirs = [{:?}]", target_dir().display().to_string());
    let d = Daemon::start_with_config(
        &format!("[policy]\nallow_run_as_root = false\nmax_actors = 2\n{dirs}\n"),
        &[],
    );
    let with_sc = |id: &str, sc: serde_json::Value| {
        let mut b = actor_request(id, "sleep 100000");
        b["spec"]["containers"][0]["securityContext"] = sc;
        b
    };
    // Default allowed capabilities: SETUID yes, NET_ADMIN no.
    refused(
        &d,
        with_sc(
            "p1",
            json!({"runAsUser": 1000, "capabilities": {"add": ["NET_ADMIN"]}}),
        ),
        "allowed_capabilities",
    )
    .await;
    // Root is not allowed here.
    refused(&d, actor_request("p2", "sleep 100000"), "allow_run_as_root").await;
    refused(
        &d,
        with_sc("p2", json!({"runAsUser": 0})),
        "allow_run_as_root",
    )
    .await;
    // Images only from the configured directories. (`dir:/` is refused
    // too, by the rule that keeps images away from the state dir.)
    let mut outside = with_sc("p3", json!({"runAsUser": 1000}));
    outside["spec"]["containers"][0]["image"] = json!("dir:/etc");
    refused(&d, outside.clone(), "image_dirs").await;
    outside["spec"]["containers"][0]["image"] = json!("dir:/");
    refused(&d, outside, "state_dir").await;
    // Within the rules it works, up to max_actors.
    d.create(&with_sc(
        "ok1",
        json!({"runAsUser": 1000, "capabilities": {"add": ["SETUID"]}}),
    ))
    .await;
    d.create(&with_sc("ok2", json!({"runAsUser": 1000}))).await;
    refused(&d, with_sc("ok3", json!({"runAsUser": 1000})), "max_actors").await;
    assert!(rootfs().starts_with(target_dir()));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_image_may_point_into_or_around_the_state_dir() {
    let d = Daemon::start();
    // A suspended actor: its whole memory is in a checkpoint in the state dir.
    d.create(&actor_request("held", "echo ready; sleep 100000"))
        .await;
    d.wait_log("held", Duration::from_secs(20), |l| l.contains("ready"))
        .await;
    d.client.act("held", "suspend").await.unwrap();
    let snaps = d.state.join("snapshots/held");
    let snap = std::fs::read_dir(&snaps)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let checkpoint = snap.join("checkpoint.img");
    assert!(checkpoint.is_file(), "{}", checkpoint.display());
    // Links to it from inside an image dir the policy allows.
    std::os::unix::fs::symlink(&d.state, d.dir.join("sneaky")).unwrap();
    std::os::unix::fs::symlink(&snaps, d.dir.join("snaps")).unwrap();
    let (state, dir) = (d.state.display(), d.dir.display());
    let snap_name = snap.file_name().unwrap().to_string_lossy();
    for image in [
        format!("dir:{state}"),
        format!("dir:{state}/snapshots/held"),
        format!("dir:{dir}/sneaky"),
        format!("dir:{dir}/snaps/{snap_name}"),
        // Around it: the rootfs would show it.
        format!("dir:{}", d.state.parent().unwrap().display()),
        format!("oci:{state}/snapshots/held:latest"),
        format!("oci:{dir}/sneaky/images"),
        format!("oci-archive:{}", checkpoint.display()),
        format!("oci-archive:{dir}/snaps/{snap_name}/checkpoint.img:latest"),
    ] {
        let mut body = actor_request("thief", "cat /snapshots/held/*/checkpoint.img");
        body["spec"]["containers"][0]["image"] = json!(image);
        refused(&d, body, "state_dir").await;
    }
    assert!(d.client.images().await.unwrap().is_empty());
    // The actor it would have read is untouched.
    let held = d.client.act("held", "resume").await.unwrap();
    assert_eq!(held.status, ActorStatus::Running);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_whose_image_dir_holds_the_state_dir_is_refused_at_start() {
    let tmp = tempfile::Builder::new()
        .prefix("atelet-e2e-")
        .tempdir_in("/tmp")
        .unwrap();
    let home = tmp.path().canonicalize().unwrap();
    // The layout of the report: image_dirs = ["/tmp/x"], state in /tmp/x/state.
    let x = home.join("x");
    let state = x.join("state");
    let config = home.join("config.toml");
    std::fs::write(
        &config,
        format!("[policy]\nimage_dirs = [{:?}]\n", x.display().to_string()),
    )
    .unwrap();
    let daemon = Command::new(atelet_e2e::atelet_bin())
        .arg("--socket")
        .arg(home.join("atelet.sock"))
        .arg("--state-dir")
        .arg(&state)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = refused_start(daemon, "a daemon whose image dir holds its state dir").await;
    let want = format!(
        "policy.image_dirs: {} contains the state dir {}",
        x.display(),
        state.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
    // Refused before anything was created.
    assert!(!x.exists());
    assert!(!home.join("atelet.sock").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn state_files_are_private_and_the_identity_dir_is_read_only_inside() {
    let d = Daemon::start();
    let script = "cat /run/ate/actor-id; echo; if echo x > /run/ate/actor-id; then echo WRITABLE; else echo readonly; fi; sleep 100000";
    d.create(&actor_request("private", script)).await;
    let log = d
        .wait_log("private", Duration::from_secs(20), |l| {
            l.contains("readonly") || l.contains("WRITABLE")
        })
        .await;
    assert!(log.starts_with("private\n"), "{log}");
    assert!(log.contains("readonly"), "{log}");
    d.client.act("private", "suspend").await.unwrap();

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.state), 0o700);
    let snap_dir = d.state.join("snapshots/private");
    for entry in std::fs::read_dir(&snap_dir).unwrap() {
        let dir = entry.unwrap().path();
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }
    let bundle = d.state.join("bundles/private");
    assert_eq!(mode(&bundle) & 0o007, 0, "bundle dir is world-accessible");
    assert_eq!(mode(&bundle.join("config.json")) & 0o007, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_inside_an_actor_never_reach_the_shared_rootfs() {
    let d = Daemon::start();
    // A private copy: were the overlay ever to fail, the shared test
    // rootfs of the other tests would stay whole.
    let root = d.dir.join("rootfs");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(rootfs())
        .arg(&root)
        .status()
        .unwrap();
    assert!(cp.success());
    assert!(root.join("bin/yes").symlink_metadata().is_ok());
    // Inside, the root is writable: a file is added, one removed, and the
    // actor keeps reading what it wrote.
    let script = "echo kept > /etc/mark && rm /bin/yes && \
                  while true; do echo \"$(cat /etc/mark) $(ls /bin/yes 2>&1 | wc -l)\"; sleep 0.1; done";
    let mut body = actor_request("writer", script);
    body["spec"]["containers"][0]["image"] = json!(format!("dir:{}", root.display()));
    d.create(&body).await;
    d.wait_log("writer", Duration::from_secs(20), |l| l.contains("kept"))
        .await;
    // The snapshot holds the overlay: after a resume the writes are still
    // there inside.
    d.client.act("writer", "suspend").await.unwrap();
    let before = d.logs("writer").await.len();
    d.client.act("writer", "resume").await.unwrap();
    let log = d
        .wait_log("writer", Duration::from_secs(20), |l| {
            l.len() > before && l[before..].contains("kept")
        })
        .await;
    assert!(!log.contains("No such file"), "{log}");
    // On the host, the shared rootfs is as it was.
    assert!(!root.join("etc/mark").exists());
    assert!(root.join("bin/yes").symlink_metadata().is_ok());
    // A daemon configured without the root overlay refuses to start.
    let config = d.dir.join("no-overlay.toml");
    std::fs::write(&config, "[runsc]\noverlay = \"none\"\n").unwrap();
    let other = Command::new(atelet_e2e::atelet_bin())
        .arg("--socket")
        .arg(d.dir.join("other.sock"))
        .arg("--state-dir")
        .arg(d.dir.join("other-state"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = refused_start(other, "a daemon without the root overlay").await;
    assert!(stderr.contains("must be \"root:memory\""), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_cannot_take_every_connection() {
    let cfg = "socket_mode = \"0666\"\n[access]\nviewer_uids = [65533]\n\
               [limits]\nmax_viewer_connections = 2\n";
    let d = Daemon::start_with_config(cfg, &[]);
    // Two viewers follow the event stream and hold their connections.
    let follow = || {
        Command::new("setpriv")
            .args(["--reuid=65533", "--regid=65533", "--clear-groups"])
            .args(["curl", "-sN", "--unix-socket"])
            .arg(&d.socket)
            .arg("http://localhost/v1/events?follow=true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut streams = vec![follow(), follow()];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while d.log().matches("\"path\":\"/v1/events\"").count() < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", d.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A third viewer is turned away with the JSON error; others are served.
    let (code, body) = curl_as(&d, 65533, "GET", "/v1/actors", None);
    assert_eq!(code, 503, "{body}");
    assert_eq!(error_code(&body), "Unavailable");
    assert!(body.contains("max_viewer_connections (2)"), "{body}");
    d.client.health().await.unwrap();
    // Once a viewer leaves, the daemon notices the hang-up and there is
    // room again.
    let mut gone = streams.pop().unwrap();
    gone.kill().unwrap();
    gone.wait().unwrap();
    loop {
        let (code, body) = curl_as(&d, 65533, "GET", "/v1/actors", None);
        if code == 200 {
            break;
        }
        assert_eq!(code, 503, "{body}");
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for mut s in streams {
        let _ = s.kill();
        let _ = s.wait();
    }
}
