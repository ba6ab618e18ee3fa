//! `--registry`: creating an actor from a registry image, cold and warm,
//! against what an operator does without registry support: `skopeo copy`
//! of the same image to a local OCI layout, then a create from that layout.
//!
//! Setup: the busybox-static rootfs (`scripts/make-rootfs`) packed by umoci
//! into a layout, pushed by skopeo to Debian's `docker-registry` on a
//! loopback port (plain HTTP, `insecure = true`), and one daemon allowed to
//! pull from it. Each run, alternating the order of the two cold sides:
//!
//! - cold registry: the image removed from the cache, then `POST
//!   /v1/actors` from `docker://127.0.0.1:PORT/agent:v1` (pull + unpack +
//!   start, answered once RUNNING);
//! - skopeo + local: the image removed, `skopeo copy docker://… oci:DIR`,
//!   then `POST /v1/actors` from `oci:DIR:latest` (unpack + start);
//! - warm registry: a create from the same reference with the image cached
//!   (the manifest is still fetched, to learn what the tag names).
//!
//! Every actor is deleted after its create. Prints a Markdown table.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hyper::Method;

use crate::{Conn, Samples};

/// Removes the scratch directory, the daemon's sandboxes and the registry.
struct Setup {
    dir: PathBuf,
    socket: PathBuf,
    state: PathBuf,
    daemon: Option<Child>,
    registry: Option<Child>,
    host: String,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for child in [self.daemon.take(), self.registry.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let root = self.state.join("runsc");
        for id in crate::runsc_ids(&root) {
            let _ = crate::runsc(&root)
                .args(["delete", "--force", &id])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for(what: &str, ready: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what} did not come up");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn setup(atelet: &Path) -> Result<Setup> {
    let dir = std::env::temp_dir().join(format!("atelet-regbench-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("images"))?;
    let port = free_port()?;
    let mut s = Setup {
        socket: dir.join("atelet.sock"),
        state: dir.join("state"),
        dir,
        daemon: None,
        registry: None,
        host: format!("127.0.0.1:{port}"),
    };
    let rootfs = s.dir.join("rootfs");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    run(Command::new(repo.join("scripts/make-rootfs")).arg(&rootfs))?;
    let layout = s.dir.join("layout");
    let image = format!("{}:latest", layout.display());
    run(Command::new("umoci").args(["init", "--layout", &layout.display().to_string()]))?;
    run(Command::new("umoci").args(["new", "--image", &image]))?;
    run(Command::new("umoci").args([
        "insert",
        "--image",
        &image,
        &rootfs.display().to_string(),
        "/",
    ]))?;

    let config = s.dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {}\n",
            s.dir.join("registry").display(),
            s.host
        ),
    )?;
    let log = std::fs::File::create(s.dir.join("registry.log"))?;
    s.registry = Some(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("docker-registry (scripts/install-deps --tests installs it)")?,
    );
    wait_for("the registry", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    run(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{image}"),
        &format!("docker://{}/agent:v1", s.host),
    ]))?;

    let config = s.dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[policy]\nimage_dirs = [{:?}]\nallowed_registries = [{:?}]\n[registries.{:?}]\ninsecure = true\n[network]\ndefault_mode = \"none\"\n",
            s.dir.join("images").display().to_string(),
            s.host,
            s.host
        ),
    )?;
    s.daemon = Some(crate::spawn_daemon(
        atelet,
        &config,
        &s.socket,
        &s.state,
        &s.dir.join("daemon.log"),
        "info",
    )?);
    let socket = s.socket.clone();
    wait_for("the daemon", move || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    })?;
    Ok(s)
}

fn create_body(id: &str, image: &str) -> String {
    serde_json::json!({
        "id": id,
        "template": {"namespace": "bench", "name": "registry"},
        "spec": {"containers": [{"name": "app", "image": image,
            "command": ["/bin/sh", "-c", crate::COUNTER]}]}
    })
    .to_string()
}

/// Creates (timed) and deletes an actor; gives the create's duration and
/// the image digest its record names.
async fn create_once(s: &Setup, id: &str, image: &str) -> Result<(Duration, String)> {
    let mut c = Conn::open(&s.socket).await?;
    let t0 = Instant::now();
    c.ok(Method::POST, "/v1/actors", Some(create_body(id, image)))
        .await?;
    let took = t0.elapsed();
    let images = c.ok(Method::GET, "/v1/images", None).await?;
    let digest = images["images"]
        .as_array()
        .and_then(|a| {
            a.iter().find(|i| {
                i["actors"]
                    .as_array()
                    .is_some_and(|u| u.iter().any(|x| x == id))
            })
        })
        .and_then(|i| i["digest"].as_str())
        .unwrap_or_default()
        .to_string();
    c.call(Method::DELETE, &format!("/v1/actors/{id}"), None)
        .await?;
    Ok((took, digest))
}

async fn uncache(s: &Setup, digest: &str) -> Result<()> {
    if digest.is_empty() {
        return Ok(());
    }
    let mut c = Conn::open(&s.socket).await?;
    let (status, body) = c
        .call(Method::DELETE, &format!("/v1/images/{digest}"), None)
        .await?;
    if status != 204 && status != 404 {
        bail!(
            "removing {digest}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

/// Runs the section and prints its report.
pub(crate) async fn run_section(atelet: Option<&Path>, runs: usize, quick: bool) -> Result<()> {
    let atelet = crate::atelet_binary(atelet)?;
    let runs = if quick { 1 } else { runs.max(1) };
    let s = setup(&atelet)?;
    let reference = format!("docker://{}/agent:v1", s.host);
    let (mut cold, mut skopeo, mut copy_only, mut local, mut warm) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    // One untimed create first: the digest to remove, and the daemon's
    // first-use costs (TLS stack, runsc) out of the numbers.
    let (_, mut digest) = create_once(&s, "warmup", &reference).await?;
    for i in 0..runs {
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            uncache(&s, &digest).await?;
            if side == 0 {
                let (d, dg) = create_once(&s, &format!("cold-{i}"), &reference).await?;
                cold.push(d);
                digest = dg;
            } else {
                let dest = s.dir.join("images").join(format!("copy-{i}"));
                let t0 = Instant::now();
                run(Command::new("skopeo").args([
                    "copy",
                    "--src-tls-verify=false",
                    &reference,
                    &format!("oci:{}:latest", dest.display()),
                ]))?;
                let copied = t0.elapsed();
                let (d, dg) = create_once(
                    &s,
                    &format!("local-{i}"),
                    &format!("oci:{}:latest", dest.display()),
                )
                .await?;
                copy_only.push(copied);
                local.push(d);
                skopeo.push(copied + d);
                digest = dg;
                std::fs::remove_dir_all(&dest)?;
            }
        }
        // Cached now (by whichever side ran last: one digest).
        let (d, _) = create_once(&s, &format!("warm-{i}"), &reference).await?;
        warm.push(d);
        eprintln!("registry run {}/{runs} done", i + 1);
    }
    let row = |name: &str, m: &Samples| {
        format!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} |",
            m.pct(50.0),
            m.pct(95.0),
            m.pct(0.0),
            m.pct(100.0)
        )
    };
    println!("## Create from a registry: cold, warm, and skopeo copy + local create\n");
    println!("{runs} runs; busybox-static in one gzip layer; registry on loopback (plain HTTP).\n");
    println!("| mode (ms) | p50 | p95 | min | max |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "{}",
        row("create + start from `docker://`, cold cache", &cold)
    );
    println!(
        "{}",
        row(
            "`skopeo copy` to a layout + create + start from `oci:`",
            &skopeo
        )
    );
    println!("{}", row("… of which `skopeo copy`", &copy_only));
    println!(
        "{}",
        row("… of which the create from `oci:` (cold cache)", &local)
    );
    println!(
        "{}",
        row("create + start from `docker://`, warm cache", &warm)
    );
    println!(
        "\nRatio, cold registry create / (skopeo copy + local create), p50: {:.2}",
        cold.pct(50.0) / skopeo.pct(50.0)
    );
    drop(s);
    Ok(())
}
