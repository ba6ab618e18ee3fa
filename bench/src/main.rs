//! `atelet-bench`: atelet against raw runsc, side by side in one run, and
//! the API under load. Prints a Markdown report (see BENCHMARKS.md).
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p atelet-bench -- --runs 20
//! ```
//!
//! Lifecycle: for each run, the daemon side (create+start, suspend, resume
//! through the API) and then the raw side (`runsc run -detach`;
//! `checkpoint` + `delete`; `restore -detach`) on an identical bundle (a
//! copy of the one the daemon wrote), alternating A B A B. Raw runsc is run
//! as an operator would from a shell: the bench is not a subreaper.
//!
//! Registry (`--registry`, [`registry`]): creates from a registry image,
//! cold and warm, against `skopeo copy` to a layout plus a local create.
//!
//! Activation ([`pause`]): resume from PAUSED and from SUSPENDED, by
//! request and by a connection to a published port, against raw `runsc
//! resume` and `runsc restore`.
//!
//! Networking ([`net`]): the same lifecycle for a bridged actor against
//! raw runsc in a network namespace the bench sets up, and against an
//! actor without network; then the published-port proxy against a direct
//! connection to the actor.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

mod net;
mod pause;
mod registry;
mod remote;

#[derive(Debug, Parser)]
#[command(about = "Benchmark atelet against raw runsc")]
struct Args {
    /// The daemon binary [default: `atelet` beside this binary].
    #[arg(long)]
    atelet: Option<PathBuf>,
    /// Lifecycle runs per side.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Stored actor counts for the API measurements.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    actors: Vec<usize>,
    /// Seconds per API measurement.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Size of the file downloaded through the published port and
    /// directly, in MiB.
    #[arg(long, default_value_t = 64)]
    download_mib: usize,
    /// Downloads of that file per side.
    #[arg(long, default_value_t = 20)]
    downloads: usize,
    /// Seconds of sequential small GETs, both sides together.
    #[arg(long, default_value_t = 6.0)]
    http_duration: f64,
    /// Tiny counts, to prove the benchmark works (CI).
    #[arg(long)]
    quick: bool,
    /// Only snapshots through a remote store (bench/src/remote.rs), this
    /// many runs; then exit.
    #[arg(long, num_args = 0..=1, default_missing_value = "10", value_name = "RUNS")]
    remote: Option<usize>,
    /// Only creates from a registry (bench/src/registry.rs): cold and warm,
    /// against `skopeo copy` to a layout plus a local create; this many
    /// runs; then exit.
    #[arg(long, num_args = 0..=1, default_missing_value = "10", value_name = "RUNS")]
    registry: Option<usize>,
    /// Only activation from PAUSED and SUSPENDED (bench/src/pause.rs),
    /// this many runs; then exit.
    #[arg(long, num_args = 0..=1, default_missing_value = "10", value_name = "RUNS")]
    pause: Option<usize>,
}

/// Latency samples in milliseconds.
#[derive(Default, Clone)]
struct Samples(Vec<f64>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1000.0);
    }
    fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[idx.min(v.len() - 1)]
    }
}

const RUNSC_FLAGS: [&str; 3] = [
    "--platform=ptrace",
    "--network=none",
    "--overlay2=root:memory",
];
pub(crate) const COUNTER: &str = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done";

struct Bench {
    dir: PathBuf,
    socket: PathBuf,
    state: PathBuf,
    rootfs: PathBuf,
    daemon: Child,
    /// Dropped after the body of `drop` has killed the daemon and deleted
    /// every sandbox: then the bench's network goes.
    _net: net::NetGuard,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        // Whatever the raw side or the daemon left behind.
        for root in [
            self.dir.join("raw-root"),
            self.dir.join("raw-net-root"),
            self.state.join("runsc"),
        ] {
            for id in runsc_ids(&root) {
                let _ = runsc(&root).args(["delete", "--force", &id]).status();
            }
        }
        remove_raw_cgroups();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn runsc(root: &Path) -> Command {
    let mut c = Command::new("runsc");
    c.arg(format!("--root={}", root.display()))
        .args(RUNSC_FLAGS)
        .stdin(Stdio::null());
    c
}

fn runsc_ids(root: &Path) -> Vec<String> {
    let Ok(out) = runsc(root).args(["list", "--format=json"]).output() else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a raw runsc command to completion, output to `log`; its duration.
fn timed(mut cmd: Command, log: &Path) -> Result<Duration> {
    let f = File::options().create(true).append(true).open(log)?;
    let t0 = Instant::now();
    let status = cmd.stdout(f.try_clone()?).stderr(f).status()?;
    let d = t0.elapsed();
    if !status.success() {
        bail!("{cmd:?} failed: {status}; see {}", log.display());
    }
    Ok(d)
}

/// One keep-alive HTTP/1.1 connection to the daemon.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(socket: &Path) -> Result<Conn> {
        let stream = UnixStream::connect(socket).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn { sender })
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, Bytes)> {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://localhost{path}"))
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    async fn ok(
        &mut self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<serde_json::Value> {
        let (status, body) = self.call(method.clone(), path, body).await?;
        if !(200..300).contains(&status) {
            bail!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(serde_json::from_slice(&body).unwrap_or_default())
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The daemon binary: `--atelet` if given, else the `atelet` built beside
/// this bench (same profile).
fn atelet_binary(given: Option<&Path>) -> Result<PathBuf> {
    let atelet = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("bench binary has no directory")?
            .join("atelet"),
    };
    if !atelet.is_file() {
        bail!(
            "{} is missing: cargo build --release --workspace --bins",
            atelet.display()
        );
    }
    Ok(atelet)
}

/// Starts a daemon with `config` on `socket` and `state`, its JSON log
/// (at `rust_log`) appended to `log`.
fn spawn_daemon(
    atelet: &Path,
    config: &Path,
    socket: &Path,
    state: &Path,
    log: &Path,
    rust_log: &str,
) -> Result<Child> {
    let out = File::options().create(true).append(true).open(log)?;
    Command::new(atelet)
        .arg("--config")
        .arg(config)
        .arg("--socket")
        .arg(socket)
        .arg("--state-dir")
        .arg(state)
        .args(["--log-format", "json"])
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", atelet.display()))
}

fn setup(args: &Args) -> Result<Bench> {
    let atelet = atelet_binary(args.atelet.as_deref())?;
    let dir = std::env::temp_dir().join(format!("atelet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rootfs = dir.join("images/busybox");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ok = Command::new(repo.join("scripts/make-rootfs"))
        .arg(&rootfs)
        .status()?;
    if !ok.success() {
        bail!("scripts/make-rootfs failed");
    }
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "snapshot_retention = 1\n[limits]\nmax_connections = 64\n[policy]\nmax_actors = 100000\nimage_dirs = [{:?}]\n{}",
            dir.join("images").display().to_string(),
            net::daemon_config()
        ),
    )?;
    let net = net::NetGuard::new(&dir.join("raw-net.log"))?;
    let socket = dir.join("atelet.sock");
    let state = dir.join("state");
    let daemon = spawn_daemon(
        &atelet,
        &config,
        &socket,
        &state,
        &dir.join("daemon.log"),
        "warn",
    )?;
    let bench = Bench {
        dir,
        socket,
        state,
        rootfs,
        daemon,
        _net: net,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&bench.socket).is_err() {
        if Instant::now() > deadline {
            bail!(
                "atelet did not come up; see {}",
                bench.dir.join("daemon.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(bench)
}

fn create_body(id: &str, rootfs: &Path, start: bool) -> String {
    serde_json::json!({
        "id": id,
        "template": {"namespace": "bench", "name": "counter"},
        "spec": {"containers": [{
            "name": "app",
            "image": format!("dir:{}", rootfs.display()),
            "command": ["/bin/sh", "-c", COUNTER]
        }]},
        "start": start
    })
    .to_string()
}

#[derive(Default)]
struct Lifecycle {
    create: Samples,
    suspend: Samples,
    resume: Samples,
    activation: Samples,
    checkpoint_only: Samples,
}

/// Copies the daemon's bundle for `id` so the raw side runs the same spec.
fn copy_bundle(b: &Bench, id: &str, dest: &Path) -> Result<()> {
    let src = b.state.join("bundles").join(id);
    std::fs::create_dir_all(dest.join("identity"))?;
    std::fs::copy(
        src.join("identity/actor-id"),
        dest.join("identity/actor-id"),
    )?;
    let config = std::fs::read_to_string(src.join("config.json"))?;
    let config = config.replace(
        &src.join("identity").display().to_string(),
        &dest.join("identity").display().to_string(),
    );
    // The raw side gets a cgroup as the daemon's sandboxes do, but under a
    // parent of the bench's own: under the daemon's it would make (and
    // runsc leave) cgroups named like the daemon's sandboxes.
    let mut config: serde_json::Value = serde_json::from_str(&config)?;
    if let Some(path) = config.pointer_mut("/linux/cgroupsPath") {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        *path = serde_json::json!(format!("/{RAW_CGROUP_PARENT}/{name}"));
    }
    std::fs::write(dest.join("config.json"), serde_json::to_vec(&config)?)?;
    Ok(())
}

/// The cgroup parent of the raw side's sandboxes; removed at the end.
const RAW_CGROUP_PARENT: &str = "atelet-bench-raw";

/// Removes the raw side's cgroups (all empty once its sandboxes are gone).
fn remove_raw_cgroups() {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for c in controllers.flatten() {
        let parent = c.path().join(RAW_CGROUP_PARENT);
        if let Ok(children) = std::fs::read_dir(&parent) {
            for child in children.flatten() {
                if child.path().is_dir() {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&parent);
    }
}

async fn lifecycle(b: &Bench, runs: usize) -> Result<(Lifecycle, Lifecycle)> {
    let mut daemon = Lifecycle::default();
    let mut raw = Lifecycle::default();
    let mut c = Conn::open(&b.socket).await?;
    let raw_root = b.dir.join("raw-root");
    std::fs::create_dir_all(&raw_root)?;
    let log = b.dir.join("raw.log");
    for i in 0..runs {
        // A: the daemon.
        let id = format!("d{i}");
        let t0 = Instant::now();
        c.ok(
            Method::POST,
            "/v1/actors",
            Some(create_body(&id, &b.rootfs, true)),
        )
        .await?;
        daemon.create.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        c.ok(Method::POST, &format!("/v1/actors/{id}/suspend"), None)
            .await?;
        daemon.suspend.push(t0.elapsed());
        let t0 = Instant::now();
        c.ok(Method::POST, &format!("/v1/actors/{id}/resume"), None)
            .await?;
        daemon.resume.push(t0.elapsed());
        loop {
            let a = c.ok(Method::GET, &format!("/v1/actors/{id}"), None).await?;
            if a["status"] == "RUNNING" {
                break;
            }
        }
        daemon.activation.push(t0.elapsed());
        let bundle = b.dir.join(format!("raw-bundle-{i}"));
        copy_bundle(b, &id, &bundle)?;
        c.ok(Method::DELETE, &format!("/v1/actors/{id}"), None)
            .await
            .ok();

        // B: raw runsc on the same bundle.
        let rid = format!("r{i}");
        let bundle_s = bundle.display().to_string();
        let mut run = runsc(&raw_root);
        run.args(["run", "--detach", "--bundle", &bundle_s, &rid]);
        raw.create.push(timed(run, &log)?);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let image = b.dir.join(format!("raw-image-{i}"));
        std::fs::create_dir_all(&image)?;
        let image_s = format!("--image-path={}", image.display());
        let mut ck = runsc(&raw_root);
        ck.args(["checkpoint", &image_s, &rid]);
        let ck = timed(ck, &log)?;
        let mut del = runsc(&raw_root);
        del.args(["delete", &rid]);
        let del = timed(del, &log)?;
        raw.checkpoint_only.push(ck);
        raw.suspend.push(ck + del);
        let rid2 = format!("r{i}b");
        let t0 = Instant::now();
        let mut restore = runsc(&raw_root);
        restore.args([
            "restore", "--detach", &image_s, "--bundle", &bundle_s, &rid2,
        ]);
        raw.resume.push(timed(restore, &log)?);
        loop {
            let out = runsc(&raw_root).args(["state", &rid2]).output()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if v["status"] == "running" {
                break;
            }
        }
        raw.activation.push(t0.elapsed());
        let _ = runsc(&raw_root)
            .args(["delete", "--force", &rid2])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&image);
        eprintln!("run {}/{runs} done", i + 1);
    }
    Ok((daemon, raw))
}

/// Requests/s and latency of `path` over `conns` connections for `secs`.
async fn load(socket: &Path, path: &str, conns: usize, secs: f64) -> Result<(f64, Samples)> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let path = Arc::new(path.to_string());
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut c = Conn::open(socket).await?;
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Samples::default();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let (status, _) = c.call(Method::GET, &path, None).await?;
                if status != 200 {
                    bail!("GET {path}: {status}");
                }
                s.push(t0.elapsed());
            }
            Ok::<_, anyhow::Error>(s)
        }));
    }
    let t0 = Instant::now();
    let mut all = Samples::default();
    for t in tasks {
        all.0.extend(t.await??.0);
    }
    let rate = all.0.len() as f64 / t0.elapsed().as_secs_f64().max(secs);
    Ok((rate, all))
}

fn row(name: &str, d: &Samples, r: &Samples) -> String {
    format!(
        "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | **{:.2}** | {:.2} |",
        d.pct(50.0),
        d.pct(95.0),
        r.pct(50.0),
        r.pct(95.0),
        d.pct(50.0) / r.pct(50.0),
        d.pct(95.0) / r.pct(95.0)
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    if let Some(runs) = args.remote {
        return remote::run(args.atelet.as_deref(), runs, args.quick).await;
    }
    if let Some(runs) = args.registry {
        return registry::run_section(args.atelet.as_deref(), runs, args.quick).await;
    }
    if let Some(runs) = args.pause {
        let b = setup(&args)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (d, r) = pause::run(&b, runs).await?;
        println!(
            "- command: `cargo run --release -p atelet-bench -- --pause {runs}`; {runs} runs per side, daemon then raw"
        );
        pause::report(&d, &r);
        return Ok(());
    }
    if args.quick {
        args.runs = args.runs.min(2);
        args.actors = vec![50];
        args.duration = 0.3;
        args.download_mib = 4;
        args.downloads = 1;
        args.http_duration = 0.3;
    }
    let b = setup(&args)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(b.daemon.id());

    let (d, r) = lifecycle(&b, args.runs).await?;
    let net_lifecycle = net::lifecycle(&b, args.runs).await?;
    let http = net::http(&b, args.http_duration, args.download_mib, args.downloads).await?;
    let (pause_d, pause_r) = pause::run(&b, args.runs).await?;
    let net_left = net::finish(&b).await?;

    let mut api: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut rss_with = BTreeMap::new();
    let mut created = 0usize;
    for &n in &args.actors {
        // A fresh connection per phase: the daemon closes connections that
        // stay idle longer than its header timeout.
        let mut c = Conn::open(&b.socket).await?;
        let t0 = Instant::now();
        let before = created;
        while created < n {
            let id = format!("rec-{created:06}");
            c.ok(
                Method::POST,
                "/v1/actors",
                Some(create_body(&id, &b.rootfs, false)),
            )
            .await?;
            created += 1;
        }
        let per_create = t0.elapsed().as_secs_f64() * 1000.0 / (created - before).max(1) as f64;
        let mut rows = vec![format!(
            "| create (no start), {n} stored | {per_create:.2} ms each | | | |"
        )];
        let get = format!("/v1/actors/rec-{:06}", n / 2);
        for (what, path, secs) in [
            ("GET /v1/actors/{id}", get.as_str(), args.duration),
            ("GET /v1/actors (list)", "/v1/actors", args.duration),
        ] {
            for conns in [1, 8] {
                let (rate, s) = load(&b.socket, path, conns, secs).await?;
                rows.push(format!(
                    "| {what}, {n} stored, {conns} conn | {rate:.0} req/s | {:.3} | {:.3} | {} |",
                    s.pct(50.0),
                    s.pct(99.0),
                    s.0.len()
                ));
            }
        }
        api.insert(n, rows);
        rss_with.insert(n, rss_kib(b.daemon.id()));
    }
    let db = dir_size(&b.state.join("db"));

    let runsc_version = Command::new("runsc")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|k| k.parse::<u64>().ok())
        .unwrap_or(0);
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();

    println!("## Run of {date}\n");
    println!(
        "- command: `cargo run --release -p atelet-bench -- --runs {} --actors {} --duration {} --download-mib {} --downloads {} --http-duration {}`",
        args.runs,
        args.actors
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(","),
        args.duration,
        args.download_mib,
        args.downloads,
        args.http_duration
    );
    println!(
        "- machine: {cores} cores, {} GiB memory; {runsc_version} (`{}`)",
        mem / (1024 * 1024),
        RUNSC_FLAGS.join(" ")
    );
    println!(
        "- lifecycle: {} runs per side, alternating daemon / raw; a busybox counter actor\n",
        args.runs
    );
    println!("| step (ms) | daemon p50 | daemon p95 | raw p50 | raw p95 | ratio p50 | ratio p95 |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "{}",
        row("create + start (raw: `run -detach`)", &d.create, &r.create)
    );
    println!(
        "{}",
        row(
            "suspend (raw: `checkpoint` + `delete`)",
            &d.suspend,
            &r.suspend
        )
    );
    println!(
        "{}",
        row(
            "suspend vs raw `checkpoint` alone",
            &d.suspend,
            &r.checkpoint_only
        )
    );
    println!(
        "{}",
        row("resume (raw: `restore -detach`)", &d.resume, &r.resume)
    );
    println!(
        "{}",
        row(
            "activation: resume request → state reads RUNNING",
            &d.activation,
            &r.activation
        )
    );
    println!("\n| API | rate | p50 ms | p99 ms | requests |");
    println!("|---|---|---|---|---|");
    for rows in api.values() {
        for r in rows {
            println!("{r}");
        }
    }
    println!("\n| daemon memory and disk | value |");
    println!("|---|---|");
    println!("| RSS idle | {:.1} MiB |", idle_rss as f64 / 1024.0);
    for (n, rss) in &rss_with {
        println!("| RSS with {n} records | {:.1} MiB |", *rss as f64 / 1024.0);
    }
    println!(
        "| sled on disk with {created} records | {:.1} MiB |",
        db as f64 / (1024.0 * 1024.0)
    );
    net::report(&net_lifecycle, &http, &net_left);
    pause::report(&pause_d, &pause_r);
    Ok(())
}
