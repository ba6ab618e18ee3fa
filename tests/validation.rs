//! Bad input gets a clear JSON error and changes nothing.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use atelet_api::{ActorStatus, ErrorBody};
use atelet_e2e::{actor_request, Daemon};
use hyper::Method;
use serde_json::json;

/// Sends `body` to `POST /v1/actors` (or another route) and checks the
/// status, the error body, and that nothing changed.
async fn expect_error(
    d: &Daemon,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    status: u16,
    needle: &str,
) {
    let files_before = d.files();
    let actors_before = d.client.list(None).await.unwrap();
    let events_before = d.client.events_since(0).await.unwrap().len();

    let resp = d.client.raw(method.clone(), path, body).await.unwrap();
    assert_eq!(
        resp.status,
        status,
        "{method} {path}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(resp.content_type.as_deref(), Some("application/json"));
    let err: ErrorBody = serde_json::from_slice(&resp.body).unwrap_or_else(|e| {
        panic!(
            "not an error body ({e}): {}",
            String::from_utf8_lossy(&resp.body)
        )
    });
    assert_eq!(err.error.code.http_status(), status);
    assert!(
        err.error.message.contains(needle),
        "{method} {path}: message {:?} does not mention {needle:?}",
        err.error.message
    );

    // The daemon still answers, and nothing changed.
    d.client.health().await.unwrap();
    assert_eq!(d.client.list(None).await.unwrap(), actors_before);
    assert_eq!(d.client.events_since(0).await.unwrap().len(), events_before);
    assert_eq!(d.files(), files_before);
}

async fn bad_create(d: &Daemon, body: serde_json::Value, status: u16, needle: &str) {
    let bytes = serde_json::to_vec(&body).unwrap();
    expect_error(d, Method::POST, "/v1/actors", Some(bytes), status, needle).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_requests_are_refused_and_change_nothing() {
    let d = Daemon::start();
    // A running actor that prints nothing, so its log does not change.
    d.create(&actor_request("quiet", "sleep 100000")).await;

    // Malformed JSON.
    expect_error(
        &d,
        Method::POST,
        "/v1/actors",
        Some(b"{\"id\": ".to_vec()),
        400,
        "invalid request body",
    )
    .await;
    expect_error(
        &d,
        Method::POST,
        "/v1/actors",
        Some(b"not json".to_vec()),
        400,
        "invalid request body",
    )
    .await;
    // An unknown field.
    let mut body = actor_request("x1", "true");
    body["spec"]["containers"][0]["privileged"] = json!(true);
    bad_create(&d, body, 400, "unknown field `privileged`").await;
    // Bad actor ids.
    for id in ["../x", "UPPER", &"a".repeat(64)] {
        bad_create(&d, actor_request(id, "true"), 400, "id: ").await;
    }
    // Duplicate container names.
    let mut body = actor_request("dup", "true");
    let c = body["spec"]["containers"][0].clone();
    body["spec"]["containers"] = json!([c.clone(), c]);
    bad_create(&d, body, 400, "duplicate container name").await;
    // `pause` as a container name.
    let mut body = actor_request("pz", "true");
    body["spec"]["containers"][0]["name"] = json!("pause");
    bad_create(&d, body, 400, "reserved").await;
    // An unknown capability.
    let mut body = actor_request("cap", "true");
    body["spec"]["containers"][0]["securityContext"] =
        json!({"capabilities": {"add": ["NET_ADMIN", "WARP_DRIVE"]}});
    bad_create(
        &d,
        body,
        400,
        "capabilities.add[1]: unknown capability \"WARP_DRIVE\"",
    )
    .await;
    // A negative runAsUser.
    let mut body = actor_request("neg", "true");
    body["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": -1});
    bad_create(&d, body, 400, "securityContext.runAsUser").await;
    // An image that does not exist (inside the allowed image dirs: outside
    // them the node policy answers 403 before the path is looked at).
    let missing = d.dir.join("nonexistent/rootfs").display().to_string();
    let mut body = actor_request("noimg", "true");
    body["spec"]["containers"][0]["image"] = json!(format!("dir:{missing}"));
    bad_create(&d, body, 400, &missing).await;

    // 404 for an unknown actor, on every route that names one.
    expect_error(&d, Method::GET, "/v1/actors/ghost", None, 404, "ghost").await;
    for action in ["start", "suspend", "resume", "pause", "stop"] {
        expect_error(
            &d,
            Method::POST,
            &format!("/v1/actors/ghost/{action}"),
            None,
            404,
            "ghost",
        )
        .await;
    }
    expect_error(&d, Method::DELETE, "/v1/actors/ghost", None, 404, "ghost").await;
    expect_error(&d, Method::GET, "/v1/actors/ghost/logs", None, 404, "ghost").await;
    // ... and for an unknown route.
    expect_error(&d, Method::GET, "/v1/nothing", None, 404, "no route").await;
    // A bad id in a path is invalid, not a path.
    expect_error(&d, Method::GET, "/v1/actors/UPPER", None, 400, "id: ").await;
    expect_error(
        &d,
        Method::POST,
        "/v1/actors/UPPER/pause",
        None,
        400,
        "id: ",
    )
    .await;
    // An idle policy's windows are a second to a year; its keys are known.
    let mut body = actor_request("lazy", "true");
    body["spec"]["lifecycle"] = json!({"pauseAfterIdleSeconds": 0});
    bad_create(&d, body, 400, "spec.lifecycle.pauseAfterIdleSeconds: ").await;
    let mut body = actor_request("lazy", "true");
    body["spec"]["lifecycle"] = json!({"pauseAfterIdle": 5});
    bad_create(&d, body, 400, "pauseAfterIdle").await;
    expect_error(&d, Method::GET, "/v1/actors/lazy", None, 404, "lazy").await;

    // 409 for a duplicate id and for transitions not allowed.
    bad_create(&d, actor_request("quiet", "true"), 409, "already exists").await;
    expect_error(
        &d,
        Method::POST,
        "/v1/actors/quiet/resume",
        None,
        409,
        "it is RUNNING",
    )
    .await;
    expect_error(
        &d,
        Method::POST,
        "/v1/actors/quiet/start",
        None,
        409,
        "it is RUNNING",
    )
    .await;

    // A bad status filter.
    expect_error(
        &d,
        Method::GET,
        "/v1/actors?status=running",
        None,
        400,
        "unknown status",
    )
    .await;

    let quiet = d.client.get("quiet").await.unwrap();
    assert_eq!(quiet.status, ActorStatus::Running);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_network_settings_are_refused_naming_the_field() {
    let d = Daemon::start();
    let port = |p: serde_json::Value| json!([p]);
    let probe =
        |p: serde_json::Value| json!({"ports": [{"containerPort": 8080}], "readinessProbe": p});
    // (id, what the container gets, the spec's network, the field named).
    let cases: Vec<(&str, serde_json::Value, Option<&str>, &str)> = vec![
        (
            "cport-0",
            json!({"ports": port(json!({"containerPort": 0}))}),
            None,
            "spec.containers[0].ports[0].containerPort: ",
        ),
        (
            "cport-neg",
            json!({"ports": port(json!({"containerPort": -1}))}),
            None,
            "spec.containers[0].ports[0].containerPort: ",
        ),
        (
            "cport-big",
            json!({"ports": port(json!({"containerPort": 65536}))}),
            None,
            "spec.containers[0].ports[0].containerPort: ",
        ),
        (
            "hport-0",
            json!({"ports": port(json!({"containerPort": 8080, "hostPort": 0}))}),
            None,
            "spec.containers[0].ports[0].hostPort: ",
        ),
        (
            "hport-big",
            json!({"ports": port(json!({"containerPort": 8080, "hostPort": 70000}))}),
            None,
            "spec.containers[0].ports[0].hostPort: ",
        ),
        (
            "cport-dup",
            json!({"ports": [{"containerPort": 8080}, {"containerPort": 8080}]}),
            None,
            "spec.containers[0].ports[1].containerPort: ",
        ),
        (
            "hport-dup",
            json!({"ports": [
                {"containerPort": 80, "hostPort": 18080},
                {"containerPort": 81, "hostPort": 18080}
            ]}),
            None,
            "spec.containers[0].ports[1].hostPort: ",
        ),
        (
            "udp",
            json!({"ports": port(json!({"containerPort": 53, "protocol": "UDP"}))}),
            None,
            "spec.containers[0].ports[0].protocol: ",
        ),
        (
            "probe-port",
            probe(json!({"tcpSocket": {"port": 9090}})),
            None,
            "spec.containers[0].readinessProbe.tcpSocket.port: ",
        ),
        (
            "probe-http-port",
            probe(json!({"httpGet": {"path": "/", "port": 9090}})),
            None,
            "spec.containers[0].readinessProbe.httpGet.port: ",
        ),
        (
            "probe-both",
            probe(json!({"httpGet": {"port": 8080}, "tcpSocket": {"port": 8080}})),
            None,
            "spec.containers[0].readinessProbe: exactly one of",
        ),
        (
            "probe-neither",
            probe(json!({"periodSeconds": 5})),
            None,
            "spec.containers[0].readinessProbe: exactly one of",
        ),
        (
            "period-0",
            probe(json!({"tcpSocket": {"port": 8080}, "periodSeconds": 0})),
            None,
            "spec.containers[0].readinessProbe.periodSeconds: ",
        ),
        (
            "timeout-0",
            probe(json!({"tcpSocket": {"port": 8080}, "timeoutSeconds": 0})),
            None,
            "spec.containers[0].readinessProbe.timeoutSeconds: ",
        ),
        (
            "failures-0",
            probe(json!({"tcpSocket": {"port": 8080}, "failureThreshold": 0})),
            None,
            "spec.containers[0].readinessProbe.failureThreshold: ",
        ),
        (
            "delay-neg",
            probe(json!({"tcpSocket": {"port": 8080}, "initialDelaySeconds": -1})),
            None,
            "spec.containers[0].readinessProbe.initialDelaySeconds: ",
        ),
        (
            "path",
            probe(json!({"httpGet": {"path": "healthz", "port": 8080}})),
            None,
            "spec.containers[0].readinessProbe.httpGet.path: ",
        ),
        (
            "mode",
            json!({}),
            Some("host"),
            "spec.network.mode: unknown network mode \"host\"",
        ),
        (
            "none-ports",
            json!({"ports": port(json!({"containerPort": 8080}))}),
            Some("none"),
            "spec.containers[0].ports: ",
        ),
    ];
    for (id, container, mode, field) in cases {
        let mut body = actor_request(id, "sleep 100000");
        for (k, v) in container.as_object().unwrap() {
            body["spec"]["containers"][0][k] = v.clone();
        }
        if let Some(mode) = mode {
            body["spec"]["network"] = json!({"mode": mode});
        }
        bad_create(&d, body, 400, field).await;
        let resp = d
            .client
            .raw(Method::GET, &format!("/v1/actors/{id}"), None)
            .await
            .unwrap();
        assert_eq!(resp.status, 404, "{id} was created");
    }
    // A containerPort is once per actor, across its containers too.
    let mut body = actor_request("cport-dup2", "sleep 100000");
    let mut side = body["spec"]["containers"][0].clone();
    side["name"] = json!("side");
    side["ports"] = json!([{"containerPort": 8080}]);
    body["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
    body["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(side);
    bad_create(&d, body, 400, "spec.containers[1].ports[0].containerPort: ").await;
    let resp = d
        .client
        .raw(Method::GET, "/v1/actors/cport-dup2", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 404);
    assert!(d.client.list(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_runsc_cannot_start_are_refused_at_create() {
    let d = Daemon::start();
    // An empty argv[0]: runsc would look for "" and fail the start (500).
    let mut body = actor_request("e1", "true");
    body["spec"]["containers"][0]["command"] = json!([""]);
    bad_create(
        &d,
        body,
        400,
        "spec.containers[0].command[0]: must not be empty",
    )
    .await;
    // A bare name with a PATH that names no directory.
    let mut body = actor_request("e2", "true");
    body["spec"]["containers"][0]["command"] = json!(["sh", "-c", "true"]);
    body["spec"]["containers"][0]["env"] = json!([{"name": "PATH", "value": ""}]);
    bad_create(
        &d,
        body,
        400,
        "spec.containers[0].command[0]: \"sh\" is a bare program name but PATH (set by spec.containers[0].env[0])",
    )
    .await;
    // No command, and a dir: image has none to fall back on.
    let mut body = actor_request("e3", "true");
    body["spec"]["containers"][0]["command"] = json!([]);
    bad_create(
        &d,
        body,
        400,
        "spec.containers[0].command: required: the image defines no command",
    )
    .await;
    // A bare name found in the default PATH, and a relative path, run.
    let mut body = actor_request("ok1", "true");
    body["spec"]["containers"][0]["command"] = json!(["sleep", "100000"]);
    let a = d.create(&body).await;
    assert_eq!(a.status, ActorStatus::Running);
    let mut body = actor_request("ok2", "true");
    body["spec"]["containers"][0]["command"] = json!(["bin/sleep", "100000"]);
    body["spec"]["containers"][0]["env"] = json!([{"name": "PATH", "value": ""}]);
    let a = d.create(&body).await;
    assert_eq!(a.status, ActorStatus::Running, "{}", a.status_message);
}

#[tokio::test(flavor = "multi_thread")]
async fn structs_are_objects_never_arrays() {
    let d = Daemon::start();
    let good = actor_request("arr", "sleep 100000");
    let c = &good["spec"]["containers"][0];
    // serde's sequence form of each struct, the fields in declaration
    // order: it names no fields, so it must not slip past the
    // unknown-field rule. The whole request first (it created an actor).
    let whole = json!([good["id"], good["template"], good["spec"], false]);
    bad_create(&d, whole, 400, "expected a JSON object").await;
    let mut body = good.clone();
    body["template"] = json!(["default", "test"]);
    bad_create(&d, body, 400, "expected a JSON object (struct TemplateRef)").await;
    let mut body = good.clone();
    body["spec"] = json!([[c]]);
    bad_create(&d, body, 400, "expected a JSON object (struct ActorSpec)").await;
    let mut body = good.clone();
    body["spec"]["containers"] = json!([[c["name"], c["image"], c["command"]]]);
    bad_create(&d, body, 400, "expected a JSON object (struct Container)").await;
    let mut body = good.clone();
    body["spec"]["containers"][0]["env"] = json!([["A", "b"]]);
    bad_create(&d, body, 400, "expected a JSON object (struct EnvVar)").await;
    let mut body = good.clone();
    body["spec"]["containers"][0]["securityContext"] = json!([null, 1000]);
    bad_create(
        &d,
        body,
        400,
        "expected a JSON object (struct SecurityContext)",
    )
    .await;
    let mut body = good.clone();
    body["spec"]["containers"][0]["securityContext"] = json!({"capabilities": [["SETUID"]]});
    bad_create(
        &d,
        body,
        400,
        "expected a JSON object (struct Capabilities)",
    )
    .await;
    let mut body = good.clone();
    body["spec"]["volumes"] = json!([{"name": "data", "durableDir": {}}]);
    body["spec"]["containers"][0]["volumeMounts"] = json!([["data", "/data"]]);
    bad_create(&d, body, 400, "expected a JSON object (struct VolumeMount)").await;
    let mut body = good.clone();
    body["spec"]["volumes"] = json!([["data", {}]]);
    bad_create(&d, body, 400, "expected a JSON object (struct Volume)").await;
    let mut body = good.clone();
    body["spec"]["volumes"] = json!([{"name": "data", "durableDir": []}]);
    bad_create(&d, body, 400, "expected a JSON object (struct DurableDir)").await;
    // The object form is served as before.
    d.create(&good).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn path_ids_are_percent_decoded_then_validated() {
    let d = Daemon::start();
    d.create(&actor_request("quiet", "sleep 100000")).await;
    // An escaped id is the id it spells.
    let resp = d
        .client
        .raw(Method::GET, "/v1/actors/%71uie%74", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let actor: atelet_api::Actor = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(actor.id, "quiet");
    // Decoded, then refused naming the decoded id.
    expect_error(&d, Method::GET, "/v1/actors/%C3%BC", None, 400, "id: \"ü\"").await;
    // An escaped slash is part of the id, not a separator.
    expect_error(
        &d,
        Method::GET,
        "/v1/actors/a%2Fb",
        None,
        400,
        "id: \"a/b\"",
    )
    .await;
    expect_error(
        &d,
        Method::GET,
        "/v1/actors/quiet%2Flogs",
        None,
        400,
        "id: \"quiet/logs\"",
    )
    .await;
    expect_error(
        &d,
        Method::POST,
        "/v1/actors/quiet%2Fstop",
        None,
        404,
        "no route",
    )
    .await;
    // Bytes that are not UTF-8, and broken escapes.
    expect_error(&d, Method::GET, "/v1/actors/%FF", None, 400, "not UTF-8").await;
    expect_error(
        &d,
        Method::GET,
        "/v1/actors/a%2",
        None,
        400,
        "two hex digits",
    )
    .await;
    assert_eq!(
        d.client.get("quiet").await.unwrap().status,
        ActorStatus::Running
    );
}

/// One HTTP/1.1 response read off a socket.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the JSON error body with `status`, and that the
    /// daemon closes the connection after it.
    fn assert_json_error(&self, status: u16, needle: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        assert_eq!(self.header("connection"), Some("close"), "{self:?}");
        let err: ErrorBody = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not an error body ({e}): {self:?}"));
        assert_eq!(err.error.code.http_status(), status);
        assert!(
            err.error.message.contains(needle),
            "{:?}",
            err.error.message
        );
    }
}

/// Splits what the daemon sent into responses (Content-Length or chunked
/// bodies); `None` while the last one is incomplete.
fn parse_replies(mut buf: &[u8]) -> Option<Vec<Reply>> {
    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let end = find(buf, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf = &buf[end + 4..];
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(len) = reply.header("content-length") {
            let len: usize = len.parse().ok()?;
            reply.body = buf.get(..len)?.to_vec();
            buf = &buf[len..];
        } else if reply.header("transfer-encoding") == Some("chunked") {
            loop {
                let line_end = find(buf, b"\r\n")?;
                let size =
                    usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).ok()?, 16).ok()?;
                buf = &buf[line_end + 2..];
                reply.body.extend_from_slice(buf.get(..size)?);
                if buf.get(size..size + 2)? != b"\r\n" {
                    return None;
                }
                buf = &buf[size + 2..];
                if size == 0 {
                    break;
                }
            }
        }
        out.push(reply);
    }
    Some(out)
}

/// Sends each part of `parts` over one connection, each once the replies
/// to the parts before have arrived (`wait_for[i]` replies after part i),
/// then reads until the daemon closes; returns every reply.
fn exchange(d: &Daemon, parts: &[(&[u8], usize)]) -> Vec<Reply> {
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = Vec::new();
    for (bytes, wait_for) in parts {
        s.write_all(bytes).unwrap();
        let mut chunk = [0u8; 4096];
        while parse_replies(&buf).is_none_or(|r| r.len() < *wait_for) {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("reading: {e}; so far {:?}", String::from_utf8_lossy(&buf)),
            }
        }
    }
    // The daemon closes after an error; a reset after the bytes is fine.
    let _ = s.read_to_end(&mut buf);
    parse_replies(&buf)
        .unwrap_or_else(|| panic!("incomplete replies: {:?}", String::from_utf8_lossy(&buf)))
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_http_gets_the_json_error_too() {
    let d = Daemon::start();
    d.create(&actor_request("quiet", "sleep 100000")).await;
    let actors = d.client.list(None).await.unwrap();
    let files = d.files();

    // A garbage request line, a bad URI, a bad header, a bad version,
    // HTTP/2's preface (hyper answers nothing to that one by itself).
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /v1/\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/healthz HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /v1/healthz HTTP/7.5\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        let replies = exchange(&d, &[(raw, 1)]);
        assert_eq!(replies.len(), 1, "{replies:?}");
        replies[0].assert_json_error(400, "malformed HTTP request");
    }
    // Two Content-Lengths that disagree: refused before any handler runs.
    let dup = b"POST /v1/actors HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\
                Content-Length: 3\r\n\r\n{}";
    let replies = exchange(&d, &[(dup, 1)]);
    assert_eq!(replies.len(), 1, "{replies:?}");
    replies[0].assert_json_error(400, "invalid content-length");

    // After answers on a kept-alive connection, sent once they arrived: a
    // whole JSON answer, a streamed (chunked) one, then the JSON 400.
    let healthz = b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let list = b"GET /v1/actors HTTP/1.1\r\nHost: x\r\n\r\n";
    let replies = exchange(&d, &[(healthz, 1), (list, 2), (b"GARBAGE\r\n\r\n", 3)]);
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(replies[0].status, 200);
    let _: atelet_api::Health = serde_json::from_slice(&replies[0].body).unwrap();
    assert_eq!(replies[1].status, 200);
    assert_eq!(replies[1].header("transfer-encoding"), Some("chunked"));
    let listed: atelet_api::ActorList = serde_json::from_slice(&replies[1].body).unwrap();
    assert_eq!(listed.actors.len(), 1);
    replies[2].assert_json_error(400, "malformed HTTP request");
    // The same, pipelined in one write.
    let mut all = Vec::new();
    for part in [&healthz[..], &list[..], b"GARBAGE\r\n\r\n"] {
        all.extend_from_slice(part);
    }
    let replies = exchange(&d, &[(&all, 3)]);
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(replies[0].status, 200);
    assert_eq!(replies[1].status, 200);
    replies[2].assert_json_error(400, "malformed HTTP request");

    d.client.health().await.unwrap();
    assert_eq!(d.client.list(None).await.unwrap(), actors);
    assert_eq!(d.files(), files);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_get_413() {
    let d = Daemon::start();
    let mut body = actor_request("big", "true");
    body["spec"]["containers"][0]["env"] =
        json!([{"name": "PAD", "value": "x".repeat(1024 * 1024)}]);
    bad_create(&d, body, 413, "larger than").await;
}
