//! `--remote`: snapshots that leave the node, through a real object store
//! (a one-node Garage on loopback, started with the e2e tests' harness,
//! `tests/support/garage.rs`), against the same bytes moved with
//! `object_store` directly, side by side in one run.
//!
//! Two release daemons (A and B) share the store, each with its own state
//! dir and socket, under one prefix (a fleet shares it: a node resumes only URLs under its own). Each run, alternating daemon and direct:
//!
//! 1. A starts a counter actor that first fills `/tmp` (in the sandbox's
//!    memory overlay, so in the checkpoint image) with [`RANDOM_BYTES`] of
//!    `/dev/urandom` and [`TEXT_BYTES`] of one repeated line of text;
//! 2. local: a plain suspend on A (its background upload waited for, so
//!    it disturbs nothing) and a resume on A up to RUNNING;
//! 3. migration: `suspend?wait=uploaded` on A, create on B from the URL,
//!    resume on B up to RUNNING;
//! 4. direct, on the same Garage: the checkpoint image of A's snapshot
//!    put in 8 MiB parts (sequential, uncompressed) and got back; the
//!    daemon's own compressed parts got, and put again under another key;
//!    the image compressed and decompressed by the bench with ruzstd at
//!    its fastest level, part by part, on one thread.
//!
//! The daemons' times are their own log lines ("snapshot uploaded",
//! "remote snapshot downloaded": `bytes`, `duration_ms`), so that they
//! hold the transfer and nothing of the API around it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use atelet_e2e::garage::Garage;
use bytes::Bytes;
use hyper::Method;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use serde_json::Value;
use sha2::Digest;

use super::{runsc, runsc_ids, Conn, Samples};

/// Bytes per part, as the daemon's (`daemon/src/remote/mod.rs`).
const PART_BYTES: usize = 8 << 20;
/// Incompressible bytes the actor holds in `/tmp`.
const RANDOM_BYTES: u64 = 32_000_000;
/// Bytes of one repeated line of text the actor holds in `/tmp`: memory
/// that compresses very well, as zeroed or repetitive pages do.
const TEXT_BYTES: u64 = 32_000_000;
/// The repeated line.
const TEXT_LINE: &str = "atelet remote snapshot bench: a line of text, again and again";
/// The daemons' bridges and subnets: never created (actors have no
/// network), but a daemon removes its configured bridge at start when no
/// actor uses it, so they must be no one else's (not the default
/// `atelet0`, the e2e tests' `atbN` nor the other bench sections').
const NETS: [(&str, &str); 2] = [
    ("atrbench-a", "10.213.253.0/24"),
    ("atrbench-b", "10.213.254.0/24"),
];
/// How long a fill, an upload or a state change may take before the run
/// is given up.
const PATIENCE: Duration = Duration::from_secs(180);

/// A scratch directory, removed when dropped (last: declared first).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One daemon of the run.
struct Node {
    socket: PathBuf,
    state: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let root = self.state.join("runsc");
        for id in runsc_ids(&root) {
            let _ = runsc(&root)
                .args(["delete", "--force", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Node {
    /// Starts the daemon `atelet` in `home` with the `[remote]` table
    /// `remote`; answers once its socket accepts.
    fn start(
        atelet: &Path,
        home: &Path,
        net: (&str, &str),
        images: &Path,
        remote: &str,
    ) -> Result<Node> {
        std::fs::create_dir_all(home)?;
        let config = home.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[policy]\nimage_dirs = [{:?}]\n\
                 [network]\ndefault_mode = \"none\"\nbridge = {:?}\nsubnet = {:?}\negress = false\ndns = []\n\
                 {remote}retry_secs = 5\n",
                images.display().to_string(),
                net.0,
                net.1
            ),
        )?;
        let socket = home.join("atelet.sock");
        let state = home.join("state");
        let log = home.join("daemon.log");
        // Info, for the upload and download lines with their times.
        let child =
            crate::spawn_daemon(atelet, &config, &socket, &state, &log, "warn,atelet=info")?;
        let mut node = Node {
            socket,
            state,
            log,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&node.socket).is_err() {
            if let Some(status) = node.child.try_wait()? {
                bail!("atelet exited with {status}; see {}", node.log.display());
            }
            if Instant::now() > deadline {
                bail!("atelet did not come up; see {}", node.log.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(node)
    }

    async fn conn(&self) -> Result<Conn> {
        Conn::open(&self.socket).await
    }

    /// Polls the actor until it reads RUNNING (as the lifecycle section
    /// does: its activation).
    async fn wait_running(&self, id: &str) -> Result<()> {
        let mut c = self.conn().await?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let a = c.ok(Method::GET, &format!("/v1/actors/{id}"), None).await?;
            match a["status"].as_str() {
                Some("RUNNING") => return Ok(()),
                Some("FAILED") | Some("STOPPED") => bail!("actor {id}: {a}"),
                _ if Instant::now() > deadline => bail!("actor {id} not RUNNING: {a}"),
                _ => {}
            }
        }
    }

    /// Waits for the daemon's log line `message` about `actor` (and
    /// `snapshot`, if given); answers its `bytes` and `duration_ms`.
    async fn wait_log(
        &self,
        message: &str,
        actor: &str,
        snapshot: Option<&str>,
    ) -> Result<(u64, Duration)> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let found = text
                .lines()
                .rev()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| {
                    field(v, "message") == message
                        && field(v, "actor") == actor
                        && snapshot.is_none_or(|s| field(v, "snapshot") == s)
                });
            if let Some(v) = found {
                let bytes = field(&v, "bytes").as_u64().context("no bytes")?;
                let ms = field(&v, "duration_ms")
                    .as_u64()
                    .context("no duration_ms")?;
                return Ok((bytes, Duration::from_millis(ms)));
            }
            if Instant::now() > deadline {
                bail!(
                    "no log line {message:?} for {actor}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A field of a JSON log line, flattened or not.
fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    match v.get(key) {
        Some(x) => x,
        None => &v["fields"][key],
    }
}

/// The actor's script: the fill, then a counter.
fn script(random: u64, text: u64) -> String {
    format!(
        "head -c {random} /dev/urandom > /tmp/random && yes '{TEXT_LINE}' | head -c {text} > /tmp/text && echo filled; \
         i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"
    )
}

/// The garage processes this process started (its children): after the
/// harness panicked half-way, its `Garage` (whose drop stops them) was
/// never made.
fn kill_own_garages() {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).unwrap_or("");
        if comm.ends_with("(garage") && ppid == me {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// The `[default]` keys of an AWS shared-credentials file.
fn credentials(path: &Path) -> Result<(String, String)> {
    let text = std::fs::read_to_string(path)?;
    let get = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
            .with_context(|| format!("no {name} in {}", path.display()))
    };
    Ok((get("aws_access_key_id")?, get("aws_secret_access_key")?))
}

/// A client of the Garage's bucket, built as the daemon builds its own
/// (`Remote::new`), for the direct side.
fn direct_store(garage: &Garage) -> Result<AmazonS3> {
    let (id, secret) = credentials(&garage.credentials)?;
    Ok(AmazonS3Builder::new()
        .with_bucket_name(&garage.bucket)
        .with_region("garage")
        .with_access_key_id(id)
        .with_secret_access_key(secret)
        .with_endpoint(format!("http://127.0.0.1:{}", garage.nodes[0].s3_port))
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()?)
}

/// Puts `parts` under `prefix`, one after the other; their keys and the
/// time taken.
async fn put_parts(
    store: &AmazonS3,
    prefix: &str,
    parts: &[Bytes],
) -> Result<(Vec<ObjectPath>, Duration)> {
    let keys: Vec<ObjectPath> = (0..parts.len())
        .map(|n| ObjectPath::from(format!("{prefix}.{n:05}")))
        .collect();
    let t0 = Instant::now();
    for (k, p) in keys.iter().zip(parts) {
        store.put(k, PutPayload::from(p.clone())).await?;
    }
    Ok((keys, t0.elapsed()))
}

/// Gets `keys` one after the other; their bytes and the time taken.
async fn get_parts(store: &AmazonS3, keys: &[ObjectPath]) -> Result<(Vec<Bytes>, Duration)> {
    let t0 = Instant::now();
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        out.push(store.get(k).await?.bytes().await?);
    }
    Ok((out, t0.elapsed()))
}

/// What one section's runs measured.
#[derive(Default)]
struct Measured {
    /// The daemon's uploads (its log line), both of each run.
    up_daemon: Samples,
    up_daemon_mbs: Samples,
    /// `suspend?wait=uploaded` minus the plain suspend of the same run.
    up_wait_minus_suspend: Samples,
    up_wait_minus_suspend_mbs: Samples,
    /// The image's raw parts put directly.
    up_direct: Samples,
    up_direct_mbs: Samples,
    /// The daemon's compressed parts put directly.
    up_direct_zst: Samples,
    down_daemon: Samples,
    down_daemon_mbs: Samples,
    down_direct: Samples,
    down_direct_mbs: Samples,
    /// The daemon's compressed parts got directly.
    down_direct_zst: Samples,
    /// The image compressed and decompressed by the bench (ms).
    compress: Samples,
    compress_mbs: Samples,
    decompress: Samples,
    decompress_mbs: Samples,
    /// sha256 of the image, and the image written to a file and synced,
    /// by the bench: what a download does besides getting parts.
    sha256: Samples,
    write_sync: Samples,
    /// Bytes of the image; raw and compressed bytes of the remote manifest.
    image_bytes: Vec<u64>,
    manifest_raw: Vec<u64>,
    manifest_zst: Vec<u64>,
    migrate: Samples,
    migrate_suspend: Samples,
    migrate_create: Samples,
    migrate_resume: Samples,
    local: Samples,
    local_suspend: Samples,
    local_resume: Samples,
    raw_transfer: Samples,
}

fn mbs(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

/// Runs the section with `runs` runs (a small fill with `quick`) and prints
/// its Markdown report.
pub(crate) async fn run(atelet: Option<&Path>, runs: usize, quick: bool) -> Result<()> {
    let atelet = crate::atelet_binary(atelet)?;
    let (runs, random, text) = if quick {
        (1, 2_000_000, 2_000_000)
    } else {
        (runs.max(1), RANDOM_BYTES, TEXT_BYTES)
    };
    let scratch =
        Scratch(std::env::temp_dir().join(format!("atelet-rbench-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)?;
    let images = scratch.0.join("images");
    let rootfs = images.join("busybox");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if !Command::new(repo.join("scripts/make-rootfs"))
        .arg(&rootfs)
        .status()?
        .success()
    {
        bail!("scripts/make-rootfs failed");
    }
    let garage = match tokio::task::spawn_blocking(Garage::start).await {
        Ok(g) => g,
        Err(e) => {
            kill_own_garages();
            bail!("starting garage: {e}");
        }
    };
    let a = Node::start(
        &atelet,
        &scratch.0.join("a"),
        NETS[0],
        &images,
        &garage.remote_config("fleet"),
    )?;
    let b = Node::start(
        &atelet,
        &scratch.0.join("b"),
        NETS[1],
        &images,
        &garage.remote_config("fleet"),
    )?;
    let store = direct_store(&garage)?;
    let mut m = Measured::default();
    for i in 0..runs {
        one_run(i, &a, &b, &store, &rootfs, random, text, &mut m)
            .await
            .with_context(|| format!("run {i}"))?;
        eprintln!("remote run {}/{runs} done", i + 1);
    }
    report(&m, runs, random, text);
    drop((a, b, garage, scratch));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn one_run(
    i: usize,
    a: &Node,
    b: &Node,
    store: &AmazonS3,
    rootfs: &Path,
    random: u64,
    text: u64,
    m: &mut Measured,
) -> Result<()> {
    let id = format!("mig{i}");
    let body = serde_json::json!({
        "id": id,
        "template": {"namespace": "bench", "name": "remote"},
        "spec": {"containers": [{
            "name": "app",
            "image": format!("dir:{}", rootfs.display()),
            "command": ["/bin/sh", "-c", script(random, text)]
        }]},
        "start": true
    })
    .to_string();
    a.conn()
        .await?
        .ok(Method::POST, "/v1/actors", Some(body))
        .await?;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, log) = a
            .conn()
            .await?
            .call(Method::GET, &format!("/v1/actors/{id}/logs"), None)
            .await?;
        let log = String::from_utf8_lossy(&log);
        if status == 200 && log.lines().any(|l| l == "filled") {
            break;
        }
        if Instant::now() > deadline {
            bail!("{id} did not fill /tmp: {status} {log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Local: a plain suspend, its upload waited for, a resume.
    let mut c = a.conn().await?;
    let t0 = Instant::now();
    let s = c
        .ok(Method::POST, &format!("/v1/actors/{id}/suspend"), None)
        .await?;
    let local_suspend = t0.elapsed();
    let snap1 = s["latestSnapshot"].as_str().context("no snapshot")?;
    let (bytes, d) = a.wait_log("snapshot uploaded", &id, Some(snap1)).await?;
    m.up_daemon.push(d);
    m.up_daemon_mbs.0.push(mbs(bytes, d));
    let mut c = a.conn().await?;
    let t0 = Instant::now();
    c.ok(Method::POST, &format!("/v1/actors/{id}/resume"), None)
        .await?;
    a.wait_running(&id).await?;
    let local_resume = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Migration: suspend and upload on A, create and resume on B.
    let mut c = a.conn().await?;
    let t0 = Instant::now();
    let s = c
        .ok(
            Method::POST,
            &format!("/v1/actors/{id}/suspend?wait=uploaded"),
            None,
        )
        .await?;
    let migrate_suspend = t0.elapsed();
    let snap = s["snapshots"]
        .as_array()
        .and_then(|v| v.last())
        .context("no snapshot")?;
    let url = snap["remote"]
        .as_str()
        .context("no remote URL")?
        .to_string();
    let snap2 = snap["id"].as_str().context("no snapshot id")?.to_string();
    let t1 = Instant::now();
    let create = serde_json::json!({
        "id": id,
        "template": {"namespace": "bench", "name": "moved"},
        "restoreFrom": {"url": url}
    })
    .to_string();
    let mut cb = b.conn().await?;
    cb.ok(Method::POST, "/v1/actors", Some(create)).await?;
    let migrate_create = t1.elapsed();
    let t2 = Instant::now();
    cb.ok(Method::POST, &format!("/v1/actors/{id}/resume"), None)
        .await?;
    b.wait_running(&id).await?;
    let migrate_resume = t2.elapsed();
    let migrate = t0.elapsed();
    let (bytes, d) = a.wait_log("snapshot uploaded", &id, Some(&snap2)).await?;
    m.up_daemon.push(d);
    m.up_daemon_mbs.0.push(mbs(bytes, d));
    let wait_minus = migrate_suspend.saturating_sub(local_suspend);
    m.up_wait_minus_suspend.push(wait_minus);
    m.up_wait_minus_suspend_mbs.0.push(mbs(bytes, wait_minus));
    let (bytes, d) = b.wait_log("remote snapshot downloaded", &id, None).await?;
    m.down_daemon.push(d);
    m.down_daemon_mbs.0.push(mbs(bytes, d));
    m.migrate.push(migrate);
    m.migrate_suspend.push(migrate_suspend);
    m.migrate_create.push(migrate_create);
    m.migrate_resume.push(migrate_resume);

    // Direct: the same image, the same store.
    let image = a
        .state
        .join("snapshots")
        .join(&id)
        .join(&snap2)
        .join("checkpoint.img");
    let raw =
        Bytes::from(std::fs::read(&image).with_context(|| format!("reading {}", image.display()))?);
    let parts: Vec<Bytes> = (0..raw.len())
        .step_by(PART_BYTES)
        .map(|o| raw.slice(o..(o + PART_BYTES).min(raw.len())))
        .collect();
    let n = raw.len() as u64;
    m.image_bytes.push(n);
    let (keys, put) = put_parts(store, &format!("bench-direct/{id}/raw"), &parts).await?;
    let (got, get) = get_parts(store, &keys).await?;
    if got.iter().map(Bytes::len).sum::<usize>() != raw.len() {
        bail!("direct get of {id}: not the bytes put");
    }
    m.up_direct.push(put);
    m.up_direct_mbs.0.push(mbs(n, put));
    m.down_direct.push(get);
    m.down_direct_mbs.0.push(mbs(n, get));
    m.raw_transfer.push(put + get);
    m.local_suspend.push(local_suspend);
    m.local_resume.push(local_resume);
    m.local.push(local_suspend + local_resume + put + get);

    // The daemon's compressed parts, as its manifest lists them.
    let key = url
        .strip_prefix("s3://")
        .and_then(|r| r.split_once('/'))
        .map(|(_, k)| k.to_string())
        .context("URL is not s3://BUCKET/KEY")?;
    let manifest = store
        .get(&ObjectPath::from(format!("{key}/manifest.json")))
        .await?
        .bytes()
        .await?;
    let manifest: Value = serde_json::from_slice(&manifest)?;
    let (mut raw_sum, mut zst_sum) = (0, 0);
    let mut zst_keys = Vec::new();
    for f in manifest["files"].as_array().context("manifest: no files")? {
        for p in f["parts"].as_array().context("manifest: no parts")? {
            raw_sum += p["rawSize"].as_u64().context("manifest: rawSize")?;
            zst_sum += p["size"].as_u64().context("manifest: size")?;
            if f["name"] == "checkpoint.img" {
                let k = p["key"].as_str().context("manifest: key")?;
                zst_keys.push(ObjectPath::from(format!("{key}/{k}")));
            }
        }
    }
    m.manifest_raw.push(raw_sum);
    m.manifest_zst.push(zst_sum);
    let (zst, get_zst) = get_parts(store, &zst_keys).await?;
    m.down_direct_zst.push(get_zst);
    let (zst_keys2, put_zst) = put_parts(store, &format!("bench-direct/{id}/zst"), &zst).await?;
    m.up_direct_zst.push(put_zst);

    // Compression by the bench, one thread, as the daemon's reader does.
    let t0 = Instant::now();
    let packed: Vec<Vec<u8>> = parts
        .iter()
        .map(|p| {
            ruzstd::encoding::compress_to_vec(&p[..], ruzstd::encoding::CompressionLevel::Fastest)
        })
        .collect();
    let d = t0.elapsed();
    m.compress.push(d);
    m.compress_mbs.0.push(mbs(n, d));
    let t0 = Instant::now();
    let mut unpacked = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    for p in &packed {
        let mut dec = ruzstd::decoding::StreamingDecoder::new(&p[..])
            .map_err(|e| anyhow::anyhow!("zstd: {e}"))?;
        loop {
            let k = std::io::Read::read(&mut dec, &mut buf)?;
            if k == 0 {
                break;
            }
            unpacked += k;
        }
    }
    let d = t0.elapsed();
    if unpacked != raw.len() {
        bail!(
            "zstd round trip of {id}: {unpacked} bytes, not {}",
            raw.len()
        );
    }
    m.decompress.push(d);
    m.decompress_mbs.0.push(mbs(n, d));
    let t0 = Instant::now();
    std::hint::black_box(sha2::Sha256::digest(&raw[..]));
    m.sha256.push(t0.elapsed());
    // On the disk of B's state dir, as the download writes it.
    let copy = b.state.join(format!("bench-copy-{id}"));
    let t0 = Instant::now();
    let written = std::fs::File::create(&copy)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &raw).and_then(|()| f.sync_all()));
    m.write_sync.push(t0.elapsed());
    let _ = std::fs::remove_file(&copy);
    written.with_context(|| format!("writing {}", copy.display()))?;

    // Nothing of this run stays: B's actor, A's (with its remote copies),
    // the direct objects.
    b.conn()
        .await?
        .ok(Method::DELETE, &format!("/v1/actors/{id}"), None)
        .await?;
    a.conn()
        .await?
        .ok(Method::DELETE, &format!("/v1/actors/{id}"), None)
        .await?;
    for k in keys.iter().chain(&zst_keys2) {
        store.delete(k).await?;
    }
    Ok(())
}

fn p(s: &Samples, q: f64) -> String {
    format!("{:.0}", s.pct(q))
}

fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn report(m: &Measured, runs: usize, random: u64, text: u64) {
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let garage = Command::new(atelet_e2e::garage::garage_bin())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("## Remote snapshots: run of {date}\n");
    println!("- command: `cargo run --release -p atelet-bench -- --remote {runs}`");
    println!("- machine: {cores} cores; {garage}, one node on loopback (sqlite metadata, data on the same disk)");
    println!(
        "- actor: busybox sh holding {random} bytes of /dev/urandom and {text} bytes of one repeated line in /tmp, then a counter; {runs} runs"
    );
    let img = median(&m.image_bytes);
    let (raw, zst) = (median(&m.manifest_raw), median(&m.manifest_zst));
    println!(
        "- checkpoint image: {:.1} MB (median); remote snapshot {:.1} MB raw, {:.1} MB compressed\n",
        img as f64 / 1e6,
        raw as f64 / 1e6,
        zst as f64 / 1e6
    );
    println!("| transfer | daemon p50 ms | daemon p95 ms | direct p50 ms | direct p95 ms | daemon MB/s p50 | direct MB/s p50 | **ratio p50** | ratio slowest 5 % | goal |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let row = |name: &str, d: &Samples, dm: &Samples, r: &Samples, rm: &Samples| {
        println!(
            "| {name} | {} | {} | {} | {} | {:.0} | {:.0} | **{:.2}** | {:.2} | ≥ 0.9 |",
            p(d, 50.0),
            p(d, 95.0),
            p(r, 50.0),
            p(r, 95.0),
            dm.pct(50.0),
            rm.pct(50.0),
            dm.pct(50.0) / rm.pct(50.0),
            dm.pct(5.0) / rm.pct(5.0)
        );
    };
    row(
        "upload (daemon log) vs put of the raw parts",
        &m.up_daemon,
        &m.up_daemon_mbs,
        &m.up_direct,
        &m.up_direct_mbs,
    );
    row(
        "upload (`wait=uploaded` − plain suspend) vs put",
        &m.up_wait_minus_suspend,
        &m.up_wait_minus_suspend_mbs,
        &m.up_direct,
        &m.up_direct_mbs,
    );
    row(
        "download (daemon log) vs get of the raw parts",
        &m.down_daemon,
        &m.down_daemon_mbs,
        &m.down_direct,
        &m.down_direct_mbs,
    );
    println!(
        "\n| where the time goes (one thread each) | p50 ms | p95 ms | MB/s of the image p50 |"
    );
    println!("|---|---|---|---|");
    let mbs_at = |s: &Samples| img as f64 / 1e6 / (s.pct(50.0) / 1000.0);
    for (name, s) in [
        ("compress the image, ruzstd Fastest (bench)", &m.compress),
        ("decompress it (bench)", &m.decompress),
        ("sha256 of the image (bench)", &m.sha256),
        ("write the image to a file + fsync (bench)", &m.write_sync),
        ("put the raw parts", &m.up_direct),
        ("put the daemon's compressed parts", &m.up_direct_zst),
        ("get the raw parts", &m.down_direct),
        ("get the daemon's compressed parts", &m.down_direct_zst),
        ("daemon upload", &m.up_daemon),
        ("daemon download", &m.down_daemon),
    ] {
        println!(
            "| {name} | {} | {} | {:.0} |",
            p(s, 50.0),
            p(s, 95.0),
            mbs_at(s)
        );
    }
    println!(
        "\n| compression | value |\n|---|---|\n| ratio, raw / compressed (remote manifest) | **{:.2}** |\n| compress, MB/s p50 (p95 time: {:.0} MB/s) | {:.0} |\n| decompress, MB/s p50 | {:.0} |",
        raw as f64 / zst.max(1) as f64,
        img as f64 / 1e6 / (m.compress.pct(95.0) / 1000.0),
        m.compress_mbs.pct(50.0),
        m.decompress_mbs.pct(50.0)
    );
    println!("\n| migration (ms) | p50 | p95 |\n|---|---|---|");
    for (name, s) in [
        ("A: `suspend?wait=uploaded`", &m.migrate_suspend),
        ("B: create from the URL", &m.migrate_create),
        ("B: resume → RUNNING (download, restore)", &m.migrate_resume),
        ("**migration, total**", &m.migrate),
        ("A: plain suspend", &m.local_suspend),
        ("A: resume → RUNNING", &m.local_resume),
        ("raw transfer: put + get of the image", &m.raw_transfer),
        ("**local suspend + resume + raw transfer**", &m.local),
    ] {
        println!("| {name} | {} | {} |", p(s, 50.0), p(s, 95.0));
    }
    println!(
        "| **ratio, migration / local + raw transfer** | **{:.2}** | {:.2} |",
        m.migrate.pct(50.0) / m.local.pct(50.0),
        m.migrate.pct(95.0) / m.local.pct(95.0)
    );
}
