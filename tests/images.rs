//! Actors from real OCI images: layouts built by Debian's umoci from the
//! busybox-static rootfs, archives and zstd layers written by skopeo, an
//! uncompressed layer written here, a layer umoci left without its tar's
//! end. Each runs, suspends and resumes from the image cache; a second
//! actor of the same image does not unpack it again; the cache is listed
//! and emptied through the API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use atelet_api::{ActorStatus, ErrorCode};
use atelet_e2e::{assert_consecutive, numbers, rootfs, target_dir, Daemon};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// The image's own command: who and where it runs, then a counter.
const IMAGE_CMD: &str = "echo uid=$(id -u) gid=$(id -g) cwd=$(pwd) greeting=$GREETING; \
     i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done";

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

fn umoci(args: &[&str]) {
    run(Command::new("umoci").args(args));
}

fn skopeo_copy(extra: &[&str], from: &str, to: &str) {
    run(Command::new("skopeo")
        .arg("copy")
        .args(extra)
        .args([from, to]));
}

/// Where this test process keeps the images it builds.
fn work_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = target_dir().join("e2e-oci");
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    })
    .clone()
}

/// An OCI layout of busybox-static made with umoci (one gzip layer), with
/// config defaults for the command, env, working dir and user (by name).
fn busybox_layout() -> PathBuf {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            let l = work_dir().join("busybox");
            let image = format!("{}:latest", l.display());
            umoci(&["init", "--layout", l.to_str().unwrap()]);
            umoci(&["new", "--image", &image]);
            umoci(&["insert", "--image", &image, rootfs().to_str().unwrap(), "/"]);
            umoci(&[
                "config",
                "--image",
                &image,
                "--config.cmd",
                "/bin/sh",
                "--config.cmd",
                "-c",
                "--config.cmd",
                IMAGE_CMD,
                "--config.env",
                "GREETING=from-image",
                "--config.workingdir",
                "/tmp",
                "--config.user",
                "user",
            ]);
            l
        })
        .clone()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

/// The manifest `index.json` names (the only one) and its digest.
fn manifest_of(layout: &Path) -> (String, Value) {
    let index = read_json(&layout.join("index.json"));
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = read_json(&blob_path(layout, &digest));
    (digest, manifest)
}

fn sha256_file(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

/// Writes `bytes` as a blob of `layout`; gives its digest and size.
fn put_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let tmp = layout.join("blob.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    let digest = sha256_file(&tmp);
    std::fs::rename(&tmp, blob_path(layout, &digest)).unwrap();
    (digest, bytes.len())
}

/// A copy of the busybox layout whose layer is an uncompressed tar
/// (`gzip -dc` of umoci's layer), with the manifest and index rewritten.
fn uncompressed_layout() -> PathBuf {
    let l = work_dir().join("busybox-tar");
    run(Command::new("cp").arg("-a").arg(busybox_layout()).arg(&l));
    let (_, mut manifest) = manifest_of(&l);
    let gz = blob_path(&l, manifest["layers"][0]["digest"].as_str().unwrap());
    let tar = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&gz)
        .output()
        .unwrap()
        .stdout;
    let (digest, size) = put_blob(&l, &tar);
    manifest["layers"][0] = json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": digest, "size": size,
    });
    let (mdigest, msize) = put_blob(&l, &serde_json::to_vec(&manifest).unwrap());
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": mdigest, "size": msize,
        "annotations": {"org.opencontainers.image.ref.name": "latest"}
    }]});
    std::fs::write(l.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    l
}

/// A create request that leaves command, env, workingDir and user to the image.
fn image_actor(id: &str, image: &str) -> Value {
    json!({
        "id": id,
        "template": {"namespace": "default", "name": "images"},
        "spec": {"containers": [{"name": "app", "image": image}]}
    })
}

fn count(log: &str, message: &str) -> usize {
    log.matches(&format!("\"message\":\"{message}\"")).count()
}

/// Runs the counter of the image's command through a suspend and a resume.
async fn run_suspend_resume(d: &Daemon, id: &str) {
    let log = d.wait_log(id, WAIT, |l| numbers(l).len() >= 5).await;
    assert!(
        log.starts_with("uid=1000 gid=1000 cwd=/tmp greeting=from-image\n"),
        "the image's defaults did not apply: {log}"
    );
    let suspended = d.client.act(id, "suspend").await.unwrap();
    assert_eq!(suspended.status, ActorStatus::Suspended);
    let stood = *numbers(&d.logs(id).await).last().unwrap();
    let resumed = d.client.act(id, "resume").await.unwrap();
    assert_eq!(resumed.status, ActorStatus::Running);
    let log = d
        .wait_log(id, WAIT, |l| {
            numbers(l).last().is_some_and(|n| *n >= stood + 3)
        })
        .await;
    assert_consecutive(&numbers(&log));
}

#[tokio::test(flavor = "multi_thread")]
async fn oci_layout_actors_share_one_unpack_and_the_cache_is_managed_by_api() {
    let layout = busybox_layout();
    let reference = format!("oci:{}:latest", layout.display());
    let (digest, manifest) = manifest_of(&layout);
    // What umoci 0.4.7 writes: one gzip layer.
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    let d = Daemon::start();
    let a = d.create(&image_actor("from-layout", &reference)).await;
    assert_eq!(a.status, ActorStatus::Running);
    run_suspend_resume(&d, "from-layout").await;

    // The spec wins where it speaks; runAsUser wins over the image's User.
    let mut body = image_actor("spec-wins", &reference);
    body["spec"]["containers"][0]["command"] = json!([
        "/bin/sh",
        "-c",
        "echo uid=$(id -u) cwd=$(pwd) greeting=$GREETING; sleep 100000"
    ]);
    body["spec"]["containers"][0]["env"] = json!([{"name": "GREETING", "value": "from-spec"}]);
    body["spec"]["containers"][0]["workingDir"] = json!("/");
    body["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 0});
    d.create(&body).await;
    d.wait_log("spec-wins", WAIT, |l| {
        l.contains("uid=0 cwd=/ greeting=from-spec")
    })
    .await;

    // One unpack for both actors, observable in the daemon's log.
    let log = d.log();
    assert_eq!(count(&log, "image unpacked"), 1, "{log}");
    assert!(count(&log, "image cache hit") >= 1, "{log}");

    let images = d.client.images().await.unwrap();
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].digest, digest);
    assert_eq!(images[0].references, std::slice::from_ref(&reference));
    assert_eq!(images[0].layers, 1);
    assert!(images[0].size_bytes > 1_000_000, "{images:?}");
    assert_eq!(images[0].actors, ["from-layout", "spec-wins"]);
    let rootfs = d
        .state
        .join("images/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
        .join("rootfs");
    assert!(rootfs.join("bin/busybox").is_file());
    // atectl shows the same cache: a short digest that rmi takes.
    let short = &digest["sha256:".len()..][..12];
    let table = d.atectl_ok(&["images"]);
    let row = table.lines().nth(1).unwrap_or_default().to_string();
    assert!(row.starts_with(short), "{table}");
    assert!(row.ends_with(&reference), "{table}");

    // In use: 409, even while suspended.
    d.client.act("from-layout", "suspend").await.unwrap();
    let err = d.client.delete_image(&digest).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Conflict), "{err}");
    assert!(err.to_string().contains("from-layout"), "{err}");
    let err = d.client.delete_image("sha256:nothex").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
    assert_eq!(d.atectl(&["rmi", short]).status.code(), Some(4));

    d.client.delete("from-layout").await.unwrap();
    d.client.delete("spec-wins").await.unwrap();
    assert_eq!(d.atectl_ok(&["rmi", short]), format!("{digest} removed\n"));
    assert_eq!(d.atectl(&["rmi", short]).status.code(), Some(3));
    assert!(d.client.images().await.unwrap().is_empty());
    assert!(!rootfs.exists());
    let err = d.client.delete_image(&digest).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_of_one_image_unpack_it_once() {
    let reference = format!("oci:{}", busybox_layout().display());
    let d = Daemon::start();
    let creates: Vec<_> = (0..3)
        .map(|i| {
            let client = d.client.clone();
            let mut body = image_actor(&format!("same-{i}"), &reference);
            body["start"] = json!(false);
            tokio::spawn(async move { client.create_raw(serde_json::to_vec(&body).unwrap()).await })
        })
        .collect();
    for c in creates {
        assert_eq!(c.await.unwrap().unwrap().status, ActorStatus::Created);
    }
    let log = d.log();
    assert_eq!(count(&log, "image unpacked"), 1, "{log}");
    assert_eq!(count(&log, "image cache hit"), 2, "{log}");
    let images = d.client.images().await.unwrap();
    assert_eq!(images[0].actors, ["same-0", "same-1", "same-2"]);
    assert!(
        std::fs::read_dir(d.state.join("images/tmp"))
            .unwrap()
            .next()
            .is_none(),
        "an unpack left its temporary directory"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oci_archive_actor_runs_suspends_and_resumes() {
    let archive = work_dir().join("busybox.tar");
    skopeo_copy(
        &[],
        &format!("oci:{}:latest", busybox_layout().display()),
        &format!("oci-archive:{}:v1", archive.display()),
    );
    let d = Daemon::start();
    let reference = format!("oci-archive:{}:v1", archive.display());
    let a = d.create(&image_actor("from-archive", &reference)).await;
    assert_eq!(a.status, ActorStatus::Running);
    run_suspend_resume(&d, "from-archive").await;
    let images = d.client.images().await.unwrap();
    assert_eq!(images[0].references, [reference]);
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_and_uncompressed_layers_run() {
    let zstd = work_dir().join("busybox-zstd");
    skopeo_copy(
        &["--dest-compress-format", "zstd"],
        &format!("oci:{}:latest", busybox_layout().display()),
        &format!("oci:{}:latest", zstd.display()),
    );
    assert_eq!(
        manifest_of(&zstd).1["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let plain = uncompressed_layout();
    let d = Daemon::start();
    for (id, layout) in [("zstd", &zstd), ("plain", &plain)] {
        d.create(&image_actor(id, &format!("oci:{}", layout.display())))
            .await;
        let log = d.wait_log(id, WAIT, |l| numbers(l).len() >= 3).await;
        assert!(log.starts_with("uid=1000 gid=1000 cwd=/tmp"), "{log}");
    }
    // Three manifests, three digests, two entries here; the rootfs is the same.
    let images = d.client.images().await.unwrap();
    assert_eq!(images.len(), 2, "{images:?}");
    assert_eq!(images[0].size_bytes, images[1].size_bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_image_is_refused_with_400_and_leaves_nothing() {
    let l = work_dir().join("busybox-tampered");
    run(Command::new("cp").arg("-a").arg(busybox_layout()).arg(&l));
    let (_, manifest) = manifest_of(&l);
    let layer = blob_path(&l, manifest["layers"][0]["digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&layer, bytes).unwrap();

    let d = Daemon::start();
    for (reference, want) in [
        (format!("oci:{}", l.display()), "layer 0"),
        (
            format!("oci:{}:nosuchtag", l.display()),
            "no manifest is tagged",
        ),
        (
            format!("oci:{}", work_dir().join("no-such-layout").display()),
            "No such file",
        ),
    ] {
        let body = serde_json::to_vec(&image_actor("bad", &reference)).unwrap();
        let err = d.client.create_raw(body).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
        assert!(err.to_string().contains(want), "{err}");
    }
    // Outside the node's image_dirs: refused by the policy before any read.
    let body = serde_json::to_vec(&image_actor("bad", "oci:/etc")).unwrap();
    let err = d.client.create_raw(body).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");
    assert!(d.client.list(None).await.unwrap().is_empty());
    assert!(d.client.images().await.unwrap().is_empty());
    assert!(
        std::fs::read_dir(d.state.join("images/tmp"))
            .unwrap()
            .next()
            .is_none(),
        "a failed unpack left its temporary directory"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_umoci_left_unterminated_runs() {
    // umoci 0.4.7 never closes its tar writer: a layer whose last file's
    // size is not a multiple of 512 stops right after that file's data,
    // without padding or end-of-archive blocks (umoci issue #436).
    let l = work_dir().join("busybox-odd");
    run(Command::new("cp").arg("-a").arg(busybox_layout()).arg(&l));
    let src = work_dir().join("odd.bin");
    let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &bytes).unwrap();
    umoci(&[
        "insert",
        "--image",
        &format!("{}:latest", l.display()),
        src.to_str().unwrap(),
        "/odd.bin",
    ]);
    let (_, manifest) = manifest_of(&l);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{manifest}");
    let top = blob_path(&l, layers[1]["digest"].as_str().unwrap());
    let tar = Command::new("gzip")
        .arg("-dc")
        .arg(&top)
        .output()
        .unwrap()
        .stdout;
    // One header and the data: nothing after it.
    assert_eq!(
        tar.len(),
        512 + 1000,
        "umoci closed its tar writer after all"
    );

    let d = Daemon::start();
    let mut body = image_actor("odd", &format!("oci:{}:latest", l.display()));
    body["spec"]["containers"][0]["command"] =
        json!(["/bin/sh", "-c", "md5sum /odd.bin; sleep 100000"]);
    let a = d.create(&body).await;
    assert_eq!(a.status, ActorStatus::Running);
    let md5 = run(Command::new("md5sum").arg(&src));
    let want = format!("{}  /odd.bin", md5.split_whitespace().next().unwrap());
    d.wait_log("odd", WAIT, |log| log.contains(&want)).await;
    let images = d.client.images().await.unwrap();
    assert_eq!(images[0].layers, 2, "{images:?}");
}

/// An image whose Env empties PATH and whose command is a bare name: runsc
/// could not find the program, so create refuses the actor (400, naming
/// the command) before any record or bundle is written, instead of a 500
/// at start. An absolute command in the spec still runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_runsc_cannot_find_in_the_image_is_refused_at_create() {
    let l = work_dir().join("busybox-nopath");
    run(Command::new("cp").arg("-a").arg(busybox_layout()).arg(&l));
    let image = format!("{}:latest", l.display());
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.env",
        "PATH=",
        "--config.cmd",
        "sleep",
        "--config.cmd",
        "100000",
    ]);
    let reference = format!("oci:{image}");
    let d = Daemon::start();
    let mut with_command = image_actor("nopath", &reference);
    with_command["spec"]["containers"][0]["command"] = json!(["sh", "-c", "sleep 100000"]);
    for (body, want) in [
        (
            image_actor("nopath", &reference),
            "spec.containers[0].command: not given, and the image's command",
        ),
        (
            with_command,
            "spec.containers[0].command[0]: \"sh\" is a bare program name but PATH (set by the image's Env)",
        ),
    ] {
        let err = d
            .client
            .create_raw(serde_json::to_vec(&body).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
        assert!(err.to_string().contains(want), "{err}");
        assert!(d.client.list(None).await.unwrap().is_empty());
        assert!(
            !d.files().keys().any(|k| k.contains("nopath")),
            "{:?}",
            d.files()
        );
    }
    let mut body = image_actor("nopath", &reference);
    body["spec"]["containers"][0]["command"] = json!(["/bin/sh", "-c", "echo ran; sleep 100000"]);
    d.create(&body).await;
    d.wait_log("nopath", WAIT, |l| l.contains("ran")).await;
}
