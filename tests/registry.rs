//! Actors from a real registry: Debian's `docker-registry` (the CNCF
//! distribution registry) started here on loopback, once over TLS with a CA
//! and certificate the test makes and htpasswd basic auth, once over plain
//! HTTP marked insecure. Images are built with umoci from busybox-static
//! and pushed with `skopeo copy`. Every registry is stopped when its test
//! ends, also when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atelet_api::{ActorStatus, ErrorCode, Event};
use atelet_e2e::{assert_consecutive, numbers, rootfs, target_dir, Daemon};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
const USER: &str = "agent";
const PASSWORD: &str = "pull-secret";

/// Prints the image's version file, then counts.
const SCRIPT: &str =
    "cat /etc/agent-version; i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done";

fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch directory of this test.
fn scratch(name: &str) -> PathBuf {
    let d = target_dir().join("e2e-registry").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An OCI layout (umoci, one gzip layer) of busybox-static plus
/// `/etc/agent-version` holding `version`, tagged `latest`.
fn layout(dir: &Path, version: &str) -> PathBuf {
    let l = dir.join(format!("layout-{version}"));
    let image = format!("{}:latest", l.display());
    let extra = dir.join(format!("extra-{version}"));
    std::fs::create_dir_all(extra.join("etc")).unwrap();
    std::fs::write(extra.join("etc/agent-version"), format!("{version}\n")).unwrap();
    let umoci = |args: &[&str]| run(Command::new("umoci").args(args));
    umoci(&["init", "--layout", l.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    umoci(&["insert", "--image", &image, rootfs().to_str().unwrap(), "/"]);
    umoci(&["insert", "--image", &image, extra.to_str().unwrap(), "/"]);
    l
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry serve` on 127.0.0.1; killed when dropped.
struct Registry {
    port: u16,
    storage: PathBuf,
    child: Option<Child>,
    tls: bool,
    log: PathBuf,
}

impl Registry {
    /// Plain HTTP, no auth.
    fn insecure(dir: &Path) -> Registry {
        Registry::start(dir, None)
    }

    /// TLS with `cert`/`key` and htpasswd basic auth for USER.
    fn tls(dir: &Path, cert: &Path, key: &Path) -> Registry {
        let htpasswd = run(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
        let file = dir.join("htpasswd");
        std::fs::write(&file, htpasswd).unwrap();
        let extra = format!(
            "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: atelet-test\n    path: {}\n",
            cert.display(),
            key.display(),
            file.display()
        );
        Registry::start(dir, Some(extra))
    }

    fn start(dir: &Path, tls_and_auth: Option<String>) -> Registry {
        let port = free_port();
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{}",
            storage.display(),
            tls_and_auth.clone().unwrap_or_default()
        );
        let path = dir.join("registry.yml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("registry.log");
        let mut r = Registry {
            port,
            storage,
            child: None,
            tls: tls_and_auth.is_some(),
            log,
        };
        r.spawn(&path);
        r
    }

    fn spawn(&mut self, config: &Path) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (scripts/install-deps installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not come up: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes the layout's `tag` as `repo:tag_to` (skopeo; `--all` keeps an index).
    fn push(&self, layout: &Path, tag: &str, repo_tag: &str) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--all", "--dest-tls-verify=false"]);
        if self.tls {
            cmd.arg(format!("--dest-creds={USER}:{PASSWORD}"));
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host()));
        run(&mut cmd);
    }

    /// The file of a blob on the registry's disk.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a certificate for 127.0.0.1 and localhost that it signs.
fn make_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n).display().to_string();
    let openssl = |args: &[&str]| run(Command::new("openssl").args(args));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=atelet test CA",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("san.ext"),
        "-out",
        &p("server.pem"),
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// A Docker config.json for `host`, mode 0600.
fn auth_file(dir: &Path, name: &str, host: &str, password: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let auth = run(Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s '{USER}:{password}' | base64 -w0")));
    let path = dir.join(name);
    std::fs::write(
        &path,
        json!({"auths": {host: {"auth": auth.trim()}}}).to_string(),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn actor(id: &str, image: &str) -> Value {
    json!({
        "id": id,
        "template": {"namespace": "default", "name": "registry"},
        "spec": {"containers": [{"name": "app", "image": image,
                                 "command": ["/bin/sh", "-c", SCRIPT]}]}
    })
}

/// The error a create of `image` is refused with.
async fn refused(d: &Daemon, id: &str, image: &str) -> (ErrorCode, String) {
    let resp = d
        .client
        .raw(
            hyper::Method::POST,
            "/v1/actors",
            Some(actor(id, image).to_string().into_bytes()),
        )
        .await
        .unwrap();
    assert!(resp.status >= 400, "{image} was accepted");
    let e = atectl::api_error(resp.status, &resp.body);
    (e.code().unwrap(), e.to_string())
}

async fn pulling_events(d: &Daemon, actor: &str) -> Vec<Event> {
    d.client
        .events_since(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.reason == "pulling" && e.actor_id == actor)
        .collect()
}

fn count(log: &str, message: &str) -> usize {
    log.matches(&format!("\"message\":\"{message}\"")).count()
}

/// Waits for the pull's last event (bytes done = total), logged just
/// after the create answers.
async fn wait_pulled(d: &Daemon, actor: &str) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = pulling_events(d, actor).await;
        if let Some(p) = events.last().and_then(|e| e.pull.as_ref()) {
            if p.bytes_done == p.bytes_total {
                return events;
            }
        }
        assert!(Instant::now() < deadline, "no complete pull: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_registry_with_basic_auth_serves_actors_pinned_to_their_digest() {
    let dir = scratch("tls");
    let (ca, cert, key) = make_tls(&dir);
    let mut reg = Registry::tls(&dir, &cert, &key);
    reg.push(&layout(&dir, "v1"), "latest", "agent:v1");
    let host = reg.host();
    let port = reg.port;
    // `localhost:PORT` is the same registry under another name, configured
    // with a wrong password.
    let good = auth_file(&dir, "auth.json", &host, PASSWORD);
    let bad = auth_file(&dir, "bad.json", &format!("localhost:{port}"), "wrong");
    let config = format!(
        "[policy]\nallowed_capabilities = [\"ALL\"]\nallowed_registries = [\"{host}\", \"localhost:{port}\"]\n\
         [registries.\"{host}\"]\nauth_file = {:?}\nca_file = {:?}\n\
         [registries.\"localhost:{port}\"]\nauth_file = {:?}\nca_file = {:?}\n",
        good.display().to_string(),
        ca.display().to_string(),
        bad.display().to_string(),
        ca.display().to_string()
    );
    let d = Daemon::start_with_config(&config, &[]);
    let image = format!("docker://{host}/agent:v1");

    // Runs, suspends and resumes, from the pulled image.
    let a = d.create(&actor("a1", &image)).await;
    assert_eq!(a.status, ActorStatus::Running);
    let log = d.wait_log("a1", WAIT, |l| numbers(l).len() >= 5).await;
    assert!(log.starts_with("v1\n"), "{log}");
    assert_eq!(
        d.client.act("a1", "suspend").await.unwrap().status,
        ActorStatus::Suspended
    );
    let stood = *numbers(&d.logs("a1").await).last().unwrap();
    assert_eq!(
        d.client.act("a1", "resume").await.unwrap().status,
        ActorStatus::Running
    );
    let log = d
        .wait_log("a1", WAIT, |l| {
            numbers(l).last().is_some_and(|n| *n >= stood + 3)
        })
        .await;
    assert_consecutive(&numbers(&log));

    // The pull showed in the event stream, bytes done up to the total.
    let events = wait_pulled(&d, "a1").await;
    let last = events.last().unwrap().pull.clone().unwrap();
    assert!(last.bytes_total > 500_000, "{last:?}");
    assert_eq!(last.reference, image);
    assert!(events.iter().all(|e| e.from.is_none() && e.to.is_none()));

    // The cache lists the registry reference; a second actor pulls nothing.
    let images = d.client.images().await.unwrap();
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].references, std::slice::from_ref(&image));
    let v1_digest = images[0].digest.clone();
    assert_eq!(last.digest, v1_digest);
    d.create(&actor("a2", &image)).await;
    d.wait_log("a2", WAIT, |l| l.starts_with("v1\n")).await;
    assert!(pulling_events(&d, "a2").await.is_empty());
    assert_eq!(count(&d.log(), "pulling image"), 1);
    // atectl pull warms nothing new either, and names the digest.
    let out = d.atectl_ok(&["pull", &image, "-o", "json"]);
    assert!(out.contains(&v1_digest), "{out}");

    // The tag moves to other content: new actors get it, a1 stays on v1,
    // even once its cache entry is gone (pulled again by digest).
    reg.push(&layout(&dir, "v2"), "latest", "agent:v1");
    d.create(&actor("a3", &image)).await;
    d.wait_log("a3", WAIT, |l| l.starts_with("v2\n")).await;
    d.client.act("a1", "stop").await.unwrap();
    d.client.delete("a2").await.unwrap();
    std::fs::remove_dir_all(
        d.state
            .join("images/sha256")
            .join(v1_digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();
    d.client.act("a1", "start").await.unwrap();
    let log = d
        .wait_log("a1", WAIT, |l| l.matches("v1\n").count() >= 2)
        .await;
    assert!(!log.contains("v2"), "{log}");
    assert_eq!(
        d.client.get("a1").await.unwrap().status,
        ActorStatus::Running
    );

    // Refusals name what is wrong, and change nothing.
    let before = d.client.images().await.unwrap();
    let (code, msg) = refused(
        &d,
        "bad-pass",
        &format!("docker://localhost:{port}/agent:v1"),
    )
    .await;
    assert_eq!(code, ErrorCode::Unauthorized, "{msg}");
    assert!(msg.contains(&format!("localhost:{port}")), "{msg}");
    let (code, msg) = refused(&d, "no-tag", &format!("docker://{host}/agent:nope")).await;
    assert_eq!(code, ErrorCode::InvalidArgument, "{msg}");
    assert!(msg.contains("agent:nope"), "{msg}");
    let (code, msg) = refused(&d, "not-allowed", "docker://127.0.0.1:1/agent:v1").await;
    assert_eq!(code, ErrorCode::Unauthorized, "{msg}");
    assert!(msg.contains("allowed_registries"), "{msg}");
    reg.stop();
    let (code, msg) = refused(&d, "stopped", &image).await;
    assert_eq!(code, ErrorCode::Unavailable, "{msg}");
    assert!(msg.contains(&host) && msg.contains("try again"), "{msg}");
    assert_eq!(d.client.images().await.unwrap(), before);
    for id in ["bad-pass", "no-tag", "not-allowed", "stopped"] {
        assert!(d.client.get(id).await.is_err(), "{id} was created");
    }
}

fn sha256_file(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn put_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let tmp = layout.join("blob.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    let digest = sha256_file(&tmp);
    std::fs::rename(&tmp, blob_path(layout, &digest)).unwrap();
    (digest, bytes.len())
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Adds to the layout an index tagged `multi`: an arm64 image (this one's
/// manifest with its config saying arm64) listed before this node's amd64
/// one. Gives the amd64 manifest's digest.
fn add_multi_platform_index(l: &Path) -> String {
    let index = read_json(&l.join("index.json"));
    let amd64 = index["manifests"][0].clone();
    let amd64_digest = amd64["digest"].as_str().unwrap().to_string();
    let mut manifest = read_json(&blob_path(l, &amd64_digest));
    let mut config = read_json(&blob_path(
        l,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    config["architecture"] = json!("arm64");
    let (cd, cs) = put_blob(l, &serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = json!(cd);
    manifest["config"]["size"] = json!(cs);
    let (md, ms) = put_blob(l, &serde_json::to_vec(&manifest).unwrap());
    let media = "application/vnd.oci.image.manifest.v1+json";
    let list = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": media, "digest": md, "size": ms,
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": media, "digest": amd64_digest, "size": amd64["size"],
             "platform": {"architecture": "amd64", "os": "linux"}},
        ]
    });
    let (ld, ls) = put_blob(l, &serde_json::to_vec(&list).unwrap());
    let mut index = index;
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": ld, "size": ls,
        "annotations": {"org.opencontainers.image.ref.name": "multi"}
    }));
    std::fs::write(l.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    amd64_digest
}

#[tokio::test(flavor = "multi_thread")]
async fn an_insecure_registry_resolves_indexes_and_refuses_corrupt_blobs() {
    let dir = scratch("insecure");
    let reg = Registry::insecure(&dir);
    let host = reg.host();
    let l = layout(&dir, "multi");
    let amd64 = add_multi_platform_index(&l);
    reg.push(&l, "multi", "agent:multi");
    let corrupt = layout(&dir, "corrupt");
    reg.push(&corrupt, "latest", "corrupt:v1");
    let config = format!(
        "[policy]\nallowed_capabilities = [\"ALL\"]\nallowed_registries = [\"{host}\"]\n\
         [registries.\"{host}\"]\ninsecure = true\n"
    );
    let d = Daemon::start_with_config(&config, &[]);

    // The index lists arm64 first: this node gets its own platform's image.
    d.create(&actor("multi", &format!("{host}/agent:multi")))
        .await;
    d.wait_log("multi", WAIT, |l| {
        l.starts_with("multi\n") && numbers(l).len() >= 3
    })
    .await;
    let images = d.client.images().await.unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].digest, amd64);
    assert!(
        d.log().contains("plain HTTP"),
        "the insecure registry was not logged"
    );

    // A layer changed on the registry's disk (same size): refused, nothing cached.
    let (_, manifest) = {
        let index = read_json(&corrupt.join("index.json"));
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        (digest.clone(), read_json(&blob_path(&corrupt, &digest)))
    };
    let mut layers = manifest["layers"].as_array().unwrap().clone();
    let layer = layers.pop().unwrap();
    let file = reg.blob_file(layer["digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let (code, msg) = refused(&d, "corrupt", &format!("docker://{host}/corrupt:v1")).await;
    assert_eq!(code, ErrorCode::InvalidArgument, "{msg}");
    assert!(msg.contains("layer"), "{msg}");
    assert_eq!(d.client.images().await.unwrap().len(), 1);
    let tmp: Vec<_> = std::fs::read_dir(d.state.join("images/tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "an unpack was left behind: {tmp:?}");
}
