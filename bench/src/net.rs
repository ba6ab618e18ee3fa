//! The networking section: what a bridged network costs an actor's
//! lifecycle, and what the daemon's published-port proxy costs a client.
//!
//! Lifecycle, three sides per run (A B C, repeated): the daemon with
//! `"network": {"mode": "bridge"}`; raw runsc on a copy of that actor's
//! bundle, in a network namespace the bench builds as a shell script would
//! (`ip netns add`, a veth pair with its host end on the bench's own
//! bridge, address, default route) and then `run -detach` / `restore
//! -detach` with `--network=sandbox`; and the daemon with `"network":
//! {"mode": "none"}`. The raw side's times include its namespace setup, as
//! the daemon's include its own: both build a new namespace and veth for
//! every launch (the daemon keeps none while an actor is suspended). On
//! both sides the resume follows the suspend at once, so both meet the
//! kernel still tearing the old namespace down.
//!
//! Published ports: an actor serving HTTP (busybox httpd) reached through
//! the daemon's proxy on `127.0.0.1:hostPort` and directly at its address,
//! alternating: one GET per new connection, and bulk downloads.
//!
//! Safety of the machine: the bench only sends to actors' addresses on the
//! daemon's bridge, and checks with `ip route get` that they route there
//! first. It holds an flock so that two benches never share the bridges,
//! removes whatever a killed bench left under its own names, refuses to
//! start when anything else uses its subnets, and removes everything it or
//! the daemon made when it ends, also on error ([`NetGuard`]).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hyper::Method;
use nix::fcntl::{Flock, FlockArg};

use super::{copy_bundle, timed, Bench, Conn, Samples, COUNTER};

/// The daemon's bridge (`[network]` of its config). Not `atbN`, the e2e
/// tests' bridges.
const BRIDGE: &str = "atbench0";
/// The daemon's subnet, `10.213.251.0/24`: outside the e2e tests' slots
/// (`10.213.1.0/24` … `10.213.250.0/24`).
const SUBNET: [u8; 3] = [10, 213, 251];
/// The daemon's nftables table for [`BRIDGE`] (family `inet`).
const TABLE: &str = "atelet_atbench0";
/// The bench's own bridge for raw runsc, with the gateway of [`RAW_SUBNET`].
const RAW_BRIDGE: &str = "atbraw0";
const RAW_SUBNET: [u8; 3] = [10, 213, 252];
/// Prefixes of the raw side's namespaces and veth ends (then a number).
const RAW_NS: &str = "atbench-raw-";
const RAW_HOST: &str = "abrh";
const RAW_PEER: &str = "abrp";
/// Held while a bench uses the bridges above: a second bench waits for
/// nothing and fails at once rather than tear down the first's network.
const LOCK: &str = "/tmp/atelet-bench-net.lock";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// Where `ip netns add` puts its namespaces.
const NETNS_DIR: &str = "/var/run/netns";

/// runsc's flags for the raw bridged side: the daemon's, with gVisor's own
/// network stack on the namespace's interface.
const RUNSC_NET_FLAGS: [&str; 3] = [
    "--platform=ptrace",
    "--network=sandbox",
    "--overlay2=root:memory",
];
/// What a shell user must wrap `runsc run`/`restore` in: this runsc
/// refuses `--network=sandbox` when it believes it is in the host's network
/// namespace, judging by `/proc/sys/net`; a private mount namespace with a
/// tmpfs there quiets the check (the daemon does the same in `pre_exec`,
/// daemon/src/runsc/process.rs, `mask_proc_sys_net`).
const WRAPPER: [&str; 7] = [
    "unshare",
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    "mount -t tmpfs none /proc/sys/net && exec \"$@\"",
];
/// How many `ip` commands [`raw_netns`] runs (for the report).
const RAW_SETUP_STEPS: usize = 8;
/// Serves `/www` on 8080 once `/www/big` (`{mib}` MiB of zeros, in the
/// sandbox's memory overlay, so the file system is not what is measured)
/// and `/www/index.html` exist.
const WEB: &str = "mkdir -p /www && dd if=/dev/zero of=/www/big bs=1M count={mib} 2>/dev/null && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www";

/// The `[network]` table of the daemon's config: actors are not bridged
/// unless their spec asks, no egress (nothing leaves the machine, and
/// `ip_forward` is left alone), no name servers.
pub(crate) fn daemon_config() -> String {
    format!(
        "[network]\ndefault_mode = \"none\"\nbridge = \"{BRIDGE}\"\nsubnet = \"{}\"\negress = false\ndns = []\n",
        subnet(SUBNET)
    )
}

fn subnet(net: [u8; 3]) -> String {
    format!("{}.{}.{}.0/24", net[0], net[1], net[2])
}

fn addr(net: [u8; 3], host: u8) -> Ipv4Addr {
    Ipv4Addr::new(net[0], net[1], net[2], host)
}

/// `ip ARGS`, output to `log`; fails unless it succeeds.
fn ip(args: &[&str], log: &Path) -> Result<Duration> {
    let mut cmd = Command::new("ip");
    cmd.args(args).stdin(Stdio::null());
    timed(cmd, log)
}

/// `ip ARGS` for cleanup: whatever it says is beside the point.
fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Names of the host's links (`ip -o link show`: `N: name@peer: <…>`).
fn link_names() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// The bench's hold on the host's networking: the lock, the raw side's
/// bridge, and the cleanup of everything under the bench's names (raw
/// namespaces and veths, both bridges, the daemon's nft table) when it is
/// dropped, which [`Bench`] does after killing the daemon and deleting
/// every sandbox. The daemon removes its bridge and table itself when its
/// last bridged actor is deleted; this is for runs that end early.
pub(crate) struct NetGuard {
    _lock: Flock<File>,
    ip_forward: Option<String>,
}

impl NetGuard {
    /// Takes the lock, removes a killed bench's leftovers, refuses subnets
    /// that anything else uses, and sets up the raw side's bridge.
    pub(crate) fn new(log: &Path) -> Result<NetGuard> {
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)
            .with_context(|| format!("opening {LOCK}"))?;
        let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            anyhow!("another atelet-bench holds {LOCK} ({e}): run one at a time")
        })?;
        let guard = NetGuard {
            _lock: lock,
            ip_forward: std::fs::read_to_string(IP_FORWARD).ok(),
        };
        guard.remove_ours();
        for net in [SUBNET, RAW_SUBNET] {
            let prefix = format!("{}.{}.{}.", net[0], net[1], net[2]);
            for what in [["-o", "-4", "addr", "show"], ["-o", "-4", "route", "show"]] {
                let out = Command::new("ip").args(what).output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                if let Some(line) = text.lines().find(|l| l.contains(&prefix)) {
                    bail!(
                        "{} is in use on this host ({}); the bench needs it for itself",
                        subnet(net),
                        line.trim()
                    );
                }
            }
        }
        let gw = format!("{}/24", addr(RAW_SUBNET, 1));
        ip(&["link", "add", RAW_BRIDGE, "type", "bridge"], log)?;
        ip(&["addr", "add", &gw, "dev", RAW_BRIDGE], log)?;
        ip(&["link", "set", RAW_BRIDGE, "up"], log)?;
        Ok(guard)
    }

    /// Removes everything under the bench's names. Only a bench holding
    /// the lock makes these, so whatever exists is this bench's or a
    /// killed one's.
    fn remove_ours(&self) {
        if let Ok(rd) = std::fs::read_dir(NETNS_DIR) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with(RAW_NS) {
                    ip_quiet(&["netns", "del", &name]);
                }
            }
        }
        for name in link_names() {
            if name.starts_with(RAW_HOST) || name == RAW_BRIDGE || name == BRIDGE {
                ip_quiet(&["link", "del", &name]);
            }
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", TABLE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        self.remove_ours();
        // The daemon runs without egress and should not have touched it;
        // if anything did, it is put back.
        if let Some(was) = &self.ip_forward {
            if std::fs::read_to_string(IP_FORWARD).ok().as_ref() != Some(was) {
                let _ = std::fs::write(IP_FORWARD, was);
            }
        }
    }
}

/// Whether the daemon's bridge or table still exist (after its last
/// bridged actor is deleted, neither should).
fn daemon_leftovers() -> Vec<String> {
    let mut out = Vec::new();
    if link_names().iter().any(|n| n == BRIDGE) {
        out.push(format!("bridge {BRIDGE}"));
    }
    let table = Command::new("nft")
        .args(["list", "table", "inet", TABLE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if table.map(|s| s.success()).unwrap_or(false) {
        out.push(format!("nft table inet {TABLE}"));
    }
    out
}

/// Fails unless `a` routes through `dev`: nothing may leave through
/// another interface (eth0 and its gateway above all).
fn check_route(a: Ipv4Addr, dev: &str) -> Result<()> {
    let out = Command::new("ip")
        .args(["-o", "route", "get", &a.to_string()])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let got = text.split_whitespace().skip_while(|w| *w != "dev").nth(1);
    if got != Some(dev) {
        bail!(
            "{a} routes via {got:?}, not {dev} ({}): refusing to send anything there",
            text.trim()
        );
    }
    Ok(())
}

/// A create body for the network section.
pub(crate) fn body(
    id: &str,
    b: &Bench,
    mode: &str,
    script: &str,
    extra: serde_json::Value,
    start: bool,
) -> String {
    let mut c = serde_json::json!({
        "name": "app",
        "image": format!("dir:{}", b.rootfs.display()),
        "command": ["/bin/sh", "-c", script]
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    serde_json::json!({
        "id": id,
        "template": {"namespace": "bench", "name": "net"},
        "spec": {"network": {"mode": mode}, "containers": [c]},
        "start": start
    })
    .to_string()
}

/// One side's lifecycle samples.
#[derive(Default)]
pub(crate) struct Side {
    create: Samples,
    suspend: Samples,
    resume: Samples,
}

/// The network lifecycle measurements.
#[derive(Default)]
pub(crate) struct NetLifecycle {
    bridged: Side,
    raw: Side,
    none: Side,
    /// The raw side's `ip` commands alone, before `run` and `restore`.
    raw_setup_create: Samples,
    raw_setup_resume: Samples,
    /// [`WRAPPER`] around `true`: what it adds to raw's `run`/`restore`.
    wrapper: Samples,
}

/// create + start, suspend, resume of one actor through the daemon; then
/// its bundle is copied to `bundle` (if asked) and the actor deleted.
async fn daemon_cycle(
    c: &mut Conn,
    id: &str,
    body: String,
    side: &mut Side,
    copy: Option<(&Bench, &Path)>,
) -> Result<Option<serde_json::Value>> {
    let t0 = Instant::now();
    c.ok(Method::POST, "/v1/actors", Some(body)).await?;
    side.create.push(t0.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    c.ok(Method::POST, &format!("/v1/actors/{id}/suspend"), None)
        .await?;
    side.suspend.push(t0.elapsed());
    let t0 = Instant::now();
    c.ok(Method::POST, &format!("/v1/actors/{id}/resume"), None)
        .await?;
    side.resume.push(t0.elapsed());
    let config = match copy {
        Some((b, dest)) => Some(copy_bridged_bundle(b, id, dest)?),
        None => None,
    };
    c.ok(Method::DELETE, &format!("/v1/actors/{id}"), None)
        .await?;
    Ok(config)
}

/// Copies a bridged actor's bundle with its `/etc/resolv.conf` and
/// `/etc/hosts` (which the daemon removes with the actor); answers its
/// config.json, to be written with the namespace of each launch.
fn copy_bridged_bundle(b: &Bench, id: &str, dest: &Path) -> Result<serde_json::Value> {
    copy_bundle(b, id, dest)?;
    let net_dir = b.state.join("network").join(id);
    for f in ["resolv.conf", "hosts"] {
        std::fs::copy(net_dir.join(f), dest.join(f))
            .with_context(|| format!("copying {}", net_dir.join(f).display()))?;
    }
    let text = std::fs::read_to_string(dest.join("config.json"))?.replace(
        &format!("{}/", net_dir.display()),
        &format!("{}/", dest.display()),
    );
    Ok(serde_json::from_str(&text)?)
}

/// Writes `config` into `bundle` with `netns` as its network namespace.
fn write_config(bundle: &Path, config: &serde_json::Value, netns: &Path) -> Result<()> {
    let mut config = config.clone();
    let entry = config
        .pointer_mut("/linux/namespaces")
        .and_then(|v| v.as_array_mut())
        .and_then(|a| a.iter_mut().find(|n| n["type"] == "network"))
        .context("the bridged actor's bundle names no network namespace")?;
    entry["path"] = serde_json::json!(netns);
    std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config)?)?;
    Ok(())
}

/// What a script does to give a sandbox its network (the daemon does the
/// same through netlink): a namespace, a veth pair whose host end is an
/// isolated port of the bench's bridge and whose other end is `eth0`
/// inside with the MAC the daemon would give `ip` (so that a restored
/// network stack and its neighbours agree), the address, the default
/// route. Answers the namespace's path and how long it took.
fn raw_netns(n: usize, ip_addr: Ipv4Addr, log: &Path) -> Result<(PathBuf, Duration)> {
    let ns = format!("{RAW_NS}{n}");
    let host = format!("{RAW_HOST}{n}");
    let peer = format!("{RAW_PEER}{n}");
    let o = ip_addr.octets();
    let mac = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
    let cidr = format!("{ip_addr}/24");
    let gw = addr(RAW_SUBNET, 1).to_string();
    let t0 = Instant::now();
    let steps: [&[&str]; RAW_SETUP_STEPS] = [
        &["netns", "add", &ns],
        &[
            "link", "add", &host, "type", "veth", "peer", "name", &peer, "netns", &ns,
        ],
        &["link", "set", &host, "master", RAW_BRIDGE, "up"],
        &[
            "link",
            "set",
            &host,
            "type",
            "bridge_slave",
            "isolated",
            "on",
        ],
        &["-n", &ns, "link", "set", "lo", "up"],
        &[
            "-n", &ns, "link", "set", &peer, "name", "eth0", "address", &mac, "up",
        ],
        &["-n", &ns, "addr", "add", &cidr, "dev", "eth0"],
        &["-n", &ns, "route", "add", "default", "via", &gw],
    ];
    for args in steps {
        ip(args, log)?;
    }
    Ok((Path::new(NETNS_DIR).join(ns), t0.elapsed()))
}

/// `runsc` with the raw bridged side's flags (checkpoint, delete).
fn runsc_net(root: &Path) -> Command {
    let mut c = Command::new("runsc");
    c.arg(format!("--root={}", root.display()))
        .args(RUNSC_NET_FLAGS)
        .stdin(Stdio::null());
    c
}

/// [`runsc_net`] inside [`WRAPPER`] (run, restore).
fn runsc_net_wrapped(root: &Path) -> Command {
    let mut c = Command::new(WRAPPER[0]);
    c.args(&WRAPPER[1..])
        .args(["sh", "runsc"])
        .arg(format!("--root={}", root.display()))
        .args(RUNSC_NET_FLAGS)
        .stdin(Stdio::null());
    c
}

/// The bridged lifecycle, three sides per run (see the module's doc).
pub(crate) async fn lifecycle(b: &Bench, runs: usize) -> Result<NetLifecycle> {
    let mut out = NetLifecycle::default();
    let mut c = Conn::open(&b.socket).await?;
    let root = b.dir.join("raw-net-root");
    std::fs::create_dir_all(&root)?;
    let log = b.dir.join("raw-net.log");

    // A bridged actor that is never started keeps the daemon's bridge and
    // table between runs, as any other bridged actor on a node would: the
    // measured creates pay for their own network, not the node's. The
    // warm-up create is the one that sets the node up.
    c.ok(
        Method::POST,
        "/v1/actors",
        Some(body(
            "net-keep",
            b,
            "bridge",
            COUNTER,
            serde_json::json!({}),
            false,
        )),
    )
    .await?;
    let mut warm = Side::default();
    daemon_cycle(
        &mut c,
        "net-warm",
        body(
            "net-warm",
            b,
            "bridge",
            COUNTER,
            serde_json::json!({}),
            true,
        ),
        &mut warm,
        None,
    )
    .await?;

    for i in 0..runs {
        // A: the daemon, bridged.
        let id = format!("nb{i}");
        let bundle = b.dir.join(format!("net-bundle-{i}"));
        let config = daemon_cycle(
            &mut c,
            &id,
            body(&id, b, "bridge", COUNTER, serde_json::json!({}), true),
            &mut out.bridged,
            Some((b, &bundle)),
        )
        .await?
        .context("no bundle copied")?;

        // B: raw runsc in a namespace of the bench's, on the same bundle.
        let ip_addr = addr(RAW_SUBNET, 10 + (i % 200) as u8);
        let bundle_s = bundle.display().to_string();
        // Neither id is a prefix of the other: runsc takes a prefix as an
        // id when it is unambiguous.
        let rid = format!("nr{i}a");
        let t0 = Instant::now();
        let (ns, setup) = raw_netns(2 * i, ip_addr, &log)?;
        write_config(&bundle, &config, &ns)?;
        let mut run = runsc_net_wrapped(&root);
        run.args(["run", "--detach", "--bundle", &bundle_s, &rid]);
        timed(run, &log)?;
        out.raw.create.push(t0.elapsed());
        out.raw_setup_create.push(setup);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let image = b.dir.join(format!("net-image-{i}"));
        std::fs::create_dir_all(&image)?;
        let image_s = format!("--image-path={}", image.display());
        // Suspend: the checkpoint, then the namespace goes (the daemon
        // removes its veth before it answers). The resume follows at once,
        // as the daemon's does: the kernel then still tears the old
        // namespace down while the new one is set up, on both sides. The
        // checkpointed container's runsc state goes after the resume (the
        // daemon leaves it to a background task too), not timed.
        let t0 = Instant::now();
        let mut ck = runsc_net(&root);
        ck.args(["checkpoint", &image_s, &rid]);
        timed(ck, &log)?;
        ip(&["netns", "del", &format!("{RAW_NS}{}", 2 * i)], &log)?;
        out.raw.suspend.push(t0.elapsed());
        let rid2 = format!("nr{i}b");
        let t0 = Instant::now();
        let (ns, setup) = raw_netns(2 * i + 1, ip_addr, &log)?;
        write_config(&bundle, &config, &ns)?;
        let mut restore = runsc_net_wrapped(&root);
        restore.args([
            "restore", "--detach", &image_s, "--bundle", &bundle_s, &rid2,
        ]);
        timed(restore, &log)?;
        out.raw.resume.push(t0.elapsed());
        out.raw_setup_resume.push(setup);
        // Not timed. This runsc may answer a delete of the checkpointed
        // container with an error while removing it (it is still winding
        // down, or already gone): what counts is that neither id is left.
        for id in [&rid, &rid2] {
            let mut del = runsc_net(&root);
            del.args(["delete", "--force", id]);
            if let Err(e) = timed(del, &log) {
                if crate::runsc_ids(&root).contains(id) {
                    return Err(e);
                }
            }
        }
        ip(&["netns", "del", &format!("{RAW_NS}{}", 2 * i + 1)], &log)?;
        let _ = std::fs::remove_dir_all(&image);

        // C: the daemon, no network.
        let id = format!("nn{i}");
        daemon_cycle(
            &mut c,
            &id,
            body(&id, b, "none", COUNTER, serde_json::json!({}), true),
            &mut out.none,
            None,
        )
        .await?;
        eprintln!("network run {}/{runs} done", i + 1);
    }
    for _ in 0..runs.max(5) {
        let mut w = Command::new(WRAPPER[0]);
        w.args(&WRAPPER[1..]).args(["sh", "true"]);
        out.wrapper.push(timed(w, &log)?);
    }
    Ok(out)
}

/// A read that waits at least this long, within one response, counts as
/// a stall: gVisor's netstack retransmits after its minimum RTO of 200 ms,
/// while bytes normally arrive within a millisecond of each other.
const STALL: Duration = Duration::from_millis(100);

/// One side of the published-port measurements (proxy or direct).
#[derive(Default)]
struct HttpSide {
    /// Sequential GETs of a small file, a new connection each.
    get: Samples,
    /// Seconds spent in those GETs, for the rate.
    get_secs: f64,
    /// MB/s (10^6 bytes) of each download.
    mbps: Vec<f64>,
    /// All downloads: bytes, seconds, seconds stalled, stalls.
    bytes: u64,
    secs: f64,
    stalled: f64,
    stalls: usize,
    /// Data segments the host received twice during the downloads
    /// (`TcpExt DelayedACKLost`, host-wide): the sandbox retransmitted
    /// what had arrived.
    dup_segments: u64,
    /// Busy and total jiffies of the host during the downloads.
    jiffies: (u64, u64),
}

/// The published-port measurements: `[proxy, direct]`.
#[derive(Default)]
pub(crate) struct Http {
    port: u16,
    ip: Option<Ipv4Addr>,
    mib: usize,
    sides: [HttpSide; 2],
    /// The daemon's CPU seconds during the proxied downloads.
    daemon_cpu: f64,
    /// The suspend of the served actor right after the load: status, ms.
    suspend_after: String,
}

/// Busy and total jiffies of all CPUs, from the first line of /proc/stat.
fn cpu_jiffies() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle.min(total), total)
}

/// CPU seconds `pid` has used (utime + stime; USER_HZ is 100 on Linux).
fn cpu_secs(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (tick(11) + tick(12)) as f64 / 100.0
}

/// A `TcpExt` counter of the host, from /proc/net/netstat (names on one
/// line, values on the next); 0 if it cannot be read.
fn tcp_ext(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let (Some(names), Some(values)) = (lines.first(), lines.get(1)) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// What one GET got.
pub(crate) struct Got {
    pub(crate) time: Duration,
    /// Body bytes.
    bytes: u64,
    /// Time spent in reads that waited at least [`STALL`], and how many.
    stalled: Duration,
    stalls: usize,
}

/// One `GET path` over a new HTTP/1.0 connection to `to`, read to the end,
/// the body checked against Content-Length. The connection is closed with
/// a reset (SO_LINGER 0): a FIN after the server's would leave the actor's
/// end in TIME_WAIT for 60 s, which this runsc cannot checkpoint, and the
/// daemon refuses a suspend (409) while conntrack shows one.
pub(crate) fn get(to: SocketAddr, path: &str, buf: &mut [u8]) -> Result<Got> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
        .with_context(|| format!("connecting to {to}"))?;
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Linger, &linger)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes())?;
    let mut head = Vec::new();
    let mut body: Option<u64> = None;
    let (mut stalled, mut stalls) = (Duration::ZERO, 0);
    let mut last = Instant::now();
    loop {
        let n = s.read(buf).with_context(|| format!("GET {to}{path}"))?;
        if n == 0 {
            break;
        }
        let gap = last.elapsed();
        last = Instant::now();
        if gap >= STALL {
            stalled += gap;
            stalls += 1;
        }
        match body.as_mut() {
            Some(len) => *len += n as u64,
            None => {
                head.extend_from_slice(&buf[..n]);
                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    body = Some((head.len() - end - 4) as u64);
                    head.truncate(end);
                }
            }
        }
    }
    let time = t0.elapsed();
    let head = String::from_utf8_lossy(&head);
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("GET {to}{path}: {:?}", head.lines().next().unwrap_or(""));
    }
    let bytes = body.unwrap_or(0);
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<u64>().ok())?
        })
        .with_context(|| format!("GET {to}{path}: no Content-Length"))?;
    if bytes != length {
        bail!("GET {to}{path}: {bytes} bytes of {length}");
    }
    Ok(Got {
        time,
        bytes,
        stalled,
        stalls,
    })
}

/// The client side of [`http`], blocking: `[proxy, direct]` alternating.
fn measure_http(
    to: [SocketAddr; 2],
    daemon: u32,
    secs: f64,
    mib: usize,
    downloads: usize,
) -> Result<([HttpSide; 2], f64)> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut sides: [HttpSide; 2] = Default::default();
    for _ in 0..3 {
        for a in to {
            get(a, "/index.html", &mut buf)?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        for (side, a) in sides.iter_mut().zip(to) {
            let got = get(a, "/index.html", &mut buf)?;
            side.get_secs += got.time.as_secs_f64();
            side.get.push(got.time);
        }
    }
    let want = (mib as u64) << 20;
    let mut daemon_cpu = 0.0;
    for round in 0..downloads {
        // Alternating which side goes first, so that neither always
        // follows the other.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            let (b0, t0) = cpu_jiffies();
            let (c0, d0) = (cpu_secs(daemon), tcp_ext("DelayedACKLost"));
            let got = get(to[k], "/big", &mut buf)?;
            let (b1, t1) = cpu_jiffies();
            let side = &mut sides[k];
            side.dup_segments += tcp_ext("DelayedACKLost").saturating_sub(d0);
            if k == 0 {
                daemon_cpu += cpu_secs(daemon) - c0;
            }
            if got.bytes != want {
                bail!("GET {}/big: {} bytes, expected {want}", to[k], got.bytes);
            }
            side.jiffies.0 += b1.saturating_sub(b0);
            side.jiffies.1 += t1.saturating_sub(t0);
            side.bytes += got.bytes;
            side.secs += got.time.as_secs_f64();
            side.stalled += got.stalled.as_secs_f64();
            side.stalls += got.stalls;
            side.mbps
                .push(got.bytes as f64 / got.time.as_secs_f64() / 1e6);
        }
    }
    Ok((sides, daemon_cpu))
}

/// The published-port proxy against a direct connection (see the
/// module's doc); `secs` of small GETs and `downloads` downloads of `mib`
/// MiB per side.
pub(crate) async fn http(b: &Bench, secs: f64, mib: usize, downloads: usize) -> Result<Http> {
    let mut out = Http {
        mib,
        ..Http::default()
    };
    out.port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    // A connection of its own: the one of the lifecycle may have idled
    // past the daemon's timeout.
    let mut c = Conn::open(&b.socket).await?;
    let script = WEB.replace("{mib}", &mib.to_string());
    let extra = serde_json::json!({
        "ports": [{"containerPort": 8080, "hostPort": out.port}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    });
    let actor = c
        .ok(
            Method::POST,
            "/v1/actors",
            Some(body("net-web", b, "bridge", &script, extra, true)),
        )
        .await?;
    let ip_addr: Ipv4Addr = actor["network"]["ip"]
        .as_str()
        .context("the served actor has no network.ip")?
        .parse()?;
    check_route(ip_addr, BRIDGE)?;
    out.ip = Some(ip_addr);
    let to = [
        SocketAddr::from(([127, 0, 0, 1], out.port)),
        SocketAddr::V4(SocketAddrV4::new(ip_addr, 8080)),
    ];
    let daemon = b.daemon.id();
    (out.sides, out.daemon_cpu) =
        tokio::task::spawn_blocking(move || measure_http(to, daemon, secs, mib, downloads))
            .await??;

    // The client left nothing the checkpoint cannot save: the suspend
    // goes through (a 409 would name the connections). A new connection:
    // the daemon closed the first one while it idled through the load.
    let mut c = Conn::open(&b.socket).await?;
    let t0 = Instant::now();
    let (status, text) = c
        .call(Method::POST, "/v1/actors/net-web/suspend", None)
        .await?;
    out.suspend_after = if (200..300).contains(&status) {
        format!("{status} in {:.0} ms", t0.elapsed().as_secs_f64() * 1000.0)
    } else {
        format!("{status}: {}", String::from_utf8_lossy(&text))
    };
    c.ok(Method::DELETE, "/v1/actors/net-web", None).await?;
    Ok(out)
}

/// Deletes the bridged actor that kept the node set up; the daemon then
/// removes its bridge and table. Answers what it left, if anything.
pub(crate) async fn finish(b: &Bench) -> Result<Vec<String>> {
    let mut c = Conn::open(&b.socket).await?;
    c.ok(Method::DELETE, "/v1/actors/net-keep", None).await?;
    Ok(daemon_leftovers())
}

fn median(v: &[f64]) -> f64 {
    let mut s = Samples::default();
    s.0.extend_from_slice(v);
    s.pct(50.0)
}

/// Prints the section's tables (Markdown).
pub(crate) fn report(l: &NetLifecycle, h: &Http, left: &[String]) {
    println!("\n### Networking\n");
    println!(
        "- daemon `[network]`: bridge `{BRIDGE}`, subnet `{}`, no egress; raw side: bridge `{RAW_BRIDGE}`, subnet `{}`, runsc `{}` inside `{} '…'`",
        subnet(SUBNET),
        subnet(RAW_SUBNET),
        RUNSC_NET_FLAGS.join(" "),
        WRAPPER[..6].join(" ")
    );
    println!(
        "- lifecycle: {} runs, alternating daemon bridged / raw bridged / daemon none; a busybox counter actor\n",
        l.bridged.create.0.len()
    );
    println!("| step (ms) | bridged p50 | bridged p95 | raw bridged p50 | raw bridged p95 | none p50 | none p95 | bridged / raw p50 | bridged / raw p95 | bridged / none p50 | bridged / none p95 |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, d, r, n) in [
        (
            "create + start (raw: netns setup + `run -detach`)",
            &l.bridged.create,
            &l.raw.create,
            &l.none.create,
        ),
        (
            "suspend (raw: `checkpoint` + `ip netns del`)",
            &l.bridged.suspend,
            &l.raw.suspend,
            &l.none.suspend,
        ),
        (
            "resume (raw: new netns setup + `restore -detach`)",
            &l.bridged.resume,
            &l.raw.resume,
            &l.none.resume,
        ),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | **{:.2}** | {:.2} | **{:.2}** | {:.2} |",
            d.pct(50.0),
            d.pct(95.0),
            r.pct(50.0),
            r.pct(95.0),
            n.pct(50.0),
            n.pct(95.0),
            d.pct(50.0) / r.pct(50.0),
            d.pct(95.0) / r.pct(95.0),
            d.pct(50.0) / n.pct(50.0),
            d.pct(95.0) / n.pct(95.0),
        );
    }
    println!("\n| raw side, parts (ms) | p50 | p95 |");
    println!("|---|---|---|");
    for (name, s) in [
        (
            format!("netns setup before `run` ({RAW_SETUP_STEPS} `ip` commands)"),
            &l.raw_setup_create,
        ),
        (
            format!("netns setup before `restore` ({RAW_SETUP_STEPS} `ip` commands)"),
            &l.raw_setup_resume,
        ),
        (
            "`unshare` + `sh` + `mount` wrapper alone (`exec true`)".to_string(),
            &l.wrapper,
        ),
    ] {
        println!("| {name} | {:.1} | {:.1} |", s.pct(50.0), s.pct(95.0));
    }

    let ip = h.ip.map(|a| a.to_string()).unwrap_or_default();
    println!(
        "\n| published port: busybox httpd, hostPort {p} → :8080 | proxy `127.0.0.1:{p}` | direct `{ip}:8080` | proxy / direct |",
        p = h.port
    );
    println!("|---|---|---|---|");
    let [p, d] = &h.sides;
    let row = |name: &str, p: f64, d: f64, digits: usize, bold: bool| {
        let ratio = if bold {
            format!("**{:.2}**", p / d)
        } else {
            format!("{:.2}", p / d)
        };
        println!("| {name} | {p:.digits$} | {d:.digits$} | {ratio} |");
    };
    row(
        "GET /index.html, new connection each: p50 ms",
        p.get.pct(50.0),
        d.get.pct(50.0),
        2,
        true,
    );
    row("… p99 ms", p.get.pct(99.0), d.get.pct(99.0), 2, true);
    let rate = |s: &HttpSide| s.get.0.len() as f64 / s.get_secs.max(f64::MIN_POSITIVE);
    row(
        &format!(
            "… requests/s, one at a time ({} + {} requests)",
            p.get.0.len(),
            d.get.0.len()
        ),
        rate(p),
        rate(d),
        0,
        false,
    );
    let n = p.mbps.len();
    let agg = |s: &HttpSide| s.bytes as f64 / s.secs.max(f64::MIN_POSITIVE) / 1e6;
    row(
        &format!("GET {} MiB × {n}, MB/s: all bytes / all time", h.mib),
        agg(p),
        agg(d),
        0,
        true,
    );
    row(
        "… median of the downloads",
        median(&p.mbps),
        median(&d.mbps),
        0,
        true,
    );
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        format!("{lo:.0}–{hi:.0}")
    };
    println!("| … min–max | {} | {} | |", range(&p.mbps), range(&d.mbps));
    let stalls = |s: &HttpSide| format!("{} ({:.1} s of {:.1} s)", s.stalls, s.stalled, s.secs);
    println!(
        "| … stalls: reads that waited ≥ {} ms (time in them) | {} | {} | |",
        STALL.as_millis(),
        stalls(p),
        stalls(d)
    );
    let unstalled =
        |s: &HttpSide| s.bytes as f64 / (s.secs - s.stalled).max(f64::MIN_POSITIVE) / 1e6;
    row(
        "… MB/s without the stalls",
        unstalled(p),
        unstalled(d),
        0,
        false,
    );
    println!(
        "| … data segments the host received twice (`TcpExt DelayedACKLost`) | {} | {} | |",
        p.dup_segments, d.dup_segments
    );
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let busy = |s: &HttpSide| s.jiffies.0 as f64 / s.jiffies.1.max(1) as f64 * cores;
    println!(
        "| … host CPU busy during the downloads, cores of {cores} | {:.2} | {:.2} | |",
        busy(p),
        busy(d)
    );
    let gib = p.bytes as f64 / (1u64 << 30) as f64;
    println!(
        "| … daemon CPU per GiB proxied | {:.2} s | | |",
        h.daemon_cpu / gib.max(f64::MIN_POSITIVE)
    );
    println!(
        "\n- suspend of the served actor right after the load: {}",
        h.suspend_after
    );
    println!(
        "- after the last bridged actor was deleted, the daemon left: {}",
        if left.is_empty() {
            "nothing (bridge and nft table gone)".to_string()
        } else {
            left.join(", ")
        }
    );
}
