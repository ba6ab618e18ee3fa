//! Activation from PAUSED and from SUSPENDED, side by side with raw
//! `runsc resume` and `runsc restore` of the same bundle.
//!
//! Per run, the daemon: a counter actor (no network) is paused and resumed
//! by request, then suspended and resumed (request → the answer, which
//! comes once the actor is RUNNING); a bridged web actor with a published
//! port is paused, then suspended, and each time woken by a GET through
//! the port (connection → the whole tiny answer). Raw runsc, on a copy of
//! the counter's bundle: `run -detach`, `pause`, then `resume` timed;
//! `checkpoint` + `delete`, then `restore -detach` timed.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::Result;
use hyper::Method;

use crate::{copy_bundle, create_body, net, row, runsc, timed, Bench, Conn, Samples};

/// A web server with a tiny page.
const PAGE: &str = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www";

/// The samples of one side.
#[derive(Default)]
pub(crate) struct Activation {
    from_paused: Samples,
    from_suspended: Samples,
    connect_paused: Samples,
    connect_suspended: Samples,
}

/// A port of 127.0.0.1 free now.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs the section: `runs` rounds of daemon then raw.
pub(crate) async fn run(b: &Bench, runs: usize) -> Result<(Activation, Activation)> {
    let (mut daemon, mut raw) = (Activation::default(), Activation::default());
    let mut c = Conn::open(&b.socket).await?;
    let raw_root = b.dir.join("raw-pause-root");
    std::fs::create_dir_all(&raw_root)?;
    let log = b.dir.join("raw-pause.log");
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..runs {
        // The daemon, by request.
        let id = format!("pc{i}");
        c.ok(
            Method::POST,
            "/v1/actors",
            Some(create_body(&id, &b.rootfs, true)),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.ok(Method::POST, &format!("/v1/actors/{id}/pause"), None)
            .await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t0 = Instant::now();
        c.ok(Method::POST, &format!("/v1/actors/{id}/resume"), None)
            .await?;
        daemon.from_paused.push(t0.elapsed());
        c.ok(Method::POST, &format!("/v1/actors/{id}/suspend"), None)
            .await?;
        let t0 = Instant::now();
        c.ok(Method::POST, &format!("/v1/actors/{id}/resume"), None)
            .await?;
        daemon.from_suspended.push(t0.elapsed());
        let bundle = b.dir.join(format!("raw-pause-bundle-{i}"));
        copy_bundle(b, &id, &bundle)?;
        c.ok(Method::DELETE, &format!("/v1/actors/{id}"), None)
            .await
            .ok();

        // The daemon, woken by a connection to its published port.
        let web = format!("pw{i}");
        let port = free_port()?;
        let extra = serde_json::json!({
            "ports": [{"containerPort": 8080, "hostPort": port}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
        });
        c.ok(
            Method::POST,
            "/v1/actors",
            Some(net::body(&web, b, "bridge", PAGE, extra, true)),
        )
        .await?;
        let to: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        for (op, samples) in [
            ("pause", &mut daemon.connect_paused),
            ("suspend", &mut daemon.connect_suspended),
        ] {
            c.ok(Method::POST, &format!("/v1/actors/{web}/{op}"), None)
                .await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let got = tokio::task::block_in_place(|| net::get(to, "/index.html", &mut buf))?;
            samples.push(got.time);
        }
        c.ok(Method::DELETE, &format!("/v1/actors/{web}"), None)
            .await
            .ok();

        // Raw runsc on the counter's bundle.
        let rid = format!("rp{i}");
        let bundle_s = bundle.display().to_string();
        let mut run = runsc(&raw_root);
        run.args(["run", "--detach", "--bundle", &bundle_s, &rid]);
        timed(run, &log)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut pause = runsc(&raw_root);
        pause.args(["pause", &rid]);
        timed(pause, &log)?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut resume = runsc(&raw_root);
        resume.args(["resume", &rid]);
        raw.from_paused.push(timed(resume, &log)?);
        let image = b.dir.join(format!("raw-pause-image-{i}"));
        std::fs::create_dir_all(&image)?;
        let image_s = format!("--image-path={}", image.display());
        let mut ck = runsc(&raw_root);
        ck.args(["checkpoint", &image_s, &rid]);
        timed(ck, &log)?;
        let mut del = runsc(&raw_root);
        del.args(["delete", &rid]);
        timed(del, &log)?;
        let rid2 = format!("rp{i}b");
        let mut restore = runsc(&raw_root);
        restore.args([
            "restore", "--detach", &image_s, "--bundle", &bundle_s, &rid2,
        ]);
        raw.from_suspended.push(timed(restore, &log)?);
        let _ = runsc(&raw_root)
            .args(["delete", "--force", &rid2])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&image);
        eprintln!("pause run {}/{runs} done", i + 1);
    }
    Ok((daemon, raw))
}

/// The section's table.
pub(crate) fn report(d: &Activation, r: &Activation) {
    println!("\n| activation (ms) | daemon p50 | daemon p95 | raw p50 | raw p95 | ratio p50 | ratio p95 |");
    println!("|---|---|---|---|---|---|---|");
    for (name, d, r) in [
        (
            "from PAUSED: resume request → RUNNING (raw: `runsc resume`)",
            &d.from_paused,
            &r.from_paused,
        ),
        (
            "from SUSPENDED: resume request → RUNNING (raw: `restore -detach`)",
            &d.from_suspended,
            &r.from_suspended,
        ),
        (
            "from PAUSED: connection → answer through the port (raw: `runsc resume`)",
            &d.connect_paused,
            &r.from_paused,
        ),
        (
            "from SUSPENDED: connection → answer through the port (raw: `restore -detach`)",
            &d.connect_suspended,
            &r.from_suspended,
        ),
    ] {
        println!("{}", row(name, d, r));
    }
}
