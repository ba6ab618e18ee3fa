//! Shared helpers of the end-to-end tests: a busybox-static root filesystem
//! built by the tests themselves, and a real `atelet` daemon on a
//! temporary socket and state dir, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use atectl::Client;

pub mod garage;
pub mod openapi;
use atelet_api::{Actor, ActorStatus, CreateActorRequest};
use serde_json::json;

/// `target/debug` (or whichever profile built the tests).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The daemon binary under test.
pub fn atelet_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ATELET_BIN") {
        return PathBuf::from(p);
    }
    let p = target_dir().join("atelet");
    assert!(
        p.is_file(),
        "{} is missing: build the workspace binaries first (scripts/test does: cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// The CLI under test.
pub fn atectl_bin() -> PathBuf {
    let p = target_dir().join("atectl");
    assert!(
        p.is_file(),
        "{} is missing: cargo build --workspace --bins",
        p.display()
    );
    p
}

/// A busybox-static root filesystem (built once, shared read-only by all tests).
pub fn rootfs() -> PathBuf {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS
        .get_or_init(|| {
            let dest = target_dir().join("e2e-rootfs-busybox");
            if dest.join("bin/busybox").is_file() {
                return dest;
            }
            build_busybox_rootfs(&dest);
            dest
        })
        .clone()
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// Builds a rootfs at `dest` with the project's own script.
pub fn build_busybox_rootfs(dest: &Path) {
    let out = Command::new(repo_root().join("scripts/make-rootfs"))
        .arg(dest)
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/make-rootfs");
    assert!(
        out.status.success(),
        "scripts/make-rootfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A create request for a one-container actor running `script` under sh.
pub fn actor_request(id: &str, script: &str) -> serde_json::Value {
    json!({
        "id": id,
        "template": {"namespace": "default", "name": "test"},
        "spec": {"containers": [{
            "name": "app",
            "image": format!("dir:{}", rootfs().display()),
            "command": ["/bin/sh", "-c", script]
        }]}
    })
}

/// Prints an increasing counter, one number per line.
pub const COUNTER: &str = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done";

/// A running daemon on a private socket and state dir.
pub struct Daemon {
    /// The test's own scratch directory, one of the image dirs of the
    /// default policy; apart from the daemon's files, which no image may
    /// expose.
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub client: Client,
    /// Holds `dir`, the socket, the state dir, the config and the log.
    home: PathBuf,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// A program that runs atelet (`systemd-socket-activate -l …`), if any.
    prefix: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// The bridge, subnet and nft table this daemon may use, reserved for
    /// its whole life (also across restarts).
    pub net: NetSlot,
    _tmp: Option<tempfile::TempDir>,
}

/// A network of its own for one test daemon: bridge `atbN`, subnet
/// `10.213.N.0/24`, nft table `atelet_atbN`. Reserved by an flock on
/// `/tmp/atelet-e2e-net/N.lock` (released when the test process ends, also
/// when it dies), so that daemons of tests running in parallel, in this
/// process or another, never share one.
pub struct NetSlot {
    pub n: u8,
    _lock: nix::fcntl::Flock<File>,
}

impl NetSlot {
    fn reserve() -> NetSlot {
        let dir = Path::new("/tmp/atelet-e2e-net");
        std::fs::create_dir_all(dir).unwrap();
        for n in 1..=250u8 {
            let f = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("{n}.lock")))
                .unwrap();
            if let Ok(lock) =
                nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
            {
                let slot = NetSlot { n, _lock: lock };
                // Whatever a killed test run left in this slot goes first.
                slot.remove_leftovers();
                return slot;
            }
        }
        panic!("no free test network slot in /tmp/atelet-e2e-net");
    }

    pub fn bridge(&self) -> String {
        format!("atb{}", self.n)
    }

    pub fn subnet(&self) -> String {
        format!("10.213.{}.0/24", self.n)
    }

    /// The `i`-th address actors get (`.2` first).
    pub fn actor_ip(&self, i: u8) -> String {
        format!("10.213.{}.{}", self.n, i + 2)
    }

    pub fn table(&self) -> String {
        format!("atelet_atb{}", self.n)
    }

    /// The `[network]` table of the daemon's config: mode `none` unless a
    /// spec asks for a bridge, no egress, no name servers.
    fn config(&self) -> String {
        format!(
            "\n[network]\ndefault_mode = \"none\"\nbridge = {:?}\nsubnet = {:?}\negress = false\ndns = []\n",
            self.bridge(),
            self.subnet()
        )
    }

    /// Removes the slot's bridge and table (the daemon removes them with
    /// its last bridged actor; a failed test may not get there).
    pub fn remove_leftovers(&self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table()])
            .stderr(Stdio::null())
            .status();
    }
}

impl Daemon {
    /// Starts a daemon with default settings.
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// Starts a daemon with extra flags.
    pub fn start_with(args: &[&str]) -> Daemon {
        Daemon::start_with_config("", args)
    }

    /// Starts a daemon whose config file holds `toml`. Unless `toml` has a
    /// `[policy]` table, the policy lets every capability in; unless it
    /// names `image_dirs`, images may come from the target dir (the tests'
    /// rootfs and layouts) and from `dir`.
    pub fn start_with_config(toml: &str, args: &[&str]) -> Daemon {
        let mut d = Daemon::new(toml, args);
        d.spawn();
        d
    }

    /// Starts a daemon as an argument of `prefix(&daemon)` (e.g.
    /// `systemd-socket-activate -l SOCKET`), with extra environment.
    pub fn start_under(
        prefix: impl FnOnce(&Daemon) -> Vec<OsString>,
        env: &[(&str, &OsStr)],
        args: &[&str],
    ) -> Daemon {
        let mut d = Daemon::new("", args);
        d.prefix = prefix(&d);
        d.env = env.iter().map(|(k, v)| (k.into(), v.into())).collect();
        d.spawn();
        d
    }

    fn new(toml: &str, args: &[&str]) -> Daemon {
        let tmp = tempfile::Builder::new()
            .prefix("atelet-e2e-")
            .tempdir_in("/tmp")
            .unwrap();
        let home = tmp.path().to_path_buf();
        let dir = home.join("work");
        std::fs::create_dir(&dir).unwrap();
        // `--state-dir X` among the flags replaces the private one.
        let mut extra: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let state = match extra.iter().position(|a| a == "--state-dir") {
            Some(i) if i + 1 < extra.len() => {
                let s = PathBuf::from(extra.remove(i + 1));
                extra.remove(i);
                s
            }
            _ => home.join("state"),
        };
        let image_dirs = format!(
            "image_dirs = [{:?}, {:?}]",
            target_dir().display().to_string(),
            dir.display().to_string()
        );
        let net = NetSlot::reserve();
        let mut config = toml.to_string();
        if !config.contains("[network]") {
            config.push_str(&net.config());
        } else {
            // The test's own [network] keys win; the slot fills the rest.
            let mut extra = String::new();
            for (key, line) in [
                ("bridge", format!("bridge = {:?}\n", net.bridge())),
                ("subnet", format!("subnet = {:?}\n", net.subnet())),
                ("egress", "egress = false\n".to_string()),
                ("dns", "dns = []\n".to_string()),
            ] {
                if !config.contains(&format!("{key} =")) {
                    extra.push_str(&line);
                }
            }
            config = config.replacen("[network]\n", &format!("[network]\n{extra}"), 1);
        }
        if !config.contains("[policy]") {
            config.push_str(&format!(
                "\n[policy]\nallowed_capabilities = [\"ALL\"]\n{image_dirs}\n"
            ));
        } else if !config.contains("image_dirs") {
            config = config.replacen("[policy]\n", &format!("[policy]\n{image_dirs}\n"), 1);
        }
        let config_path = home.join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        extra.insert(0, config_path.display().to_string());
        extra.insert(0, "--config".to_string());
        Daemon {
            socket: home.join("atelet.sock"),
            state,
            client: Client::new(home.join("atelet.sock")).with_observer(openapi::observer()),
            dir,
            home,
            child: None,
            extra_args: extra,
            prefix: Vec::new(),
            env: Vec::new(),
            net,
            _tmp: Some(tmp),
        }
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.home.join("daemon.log"))
            .unwrap();
        let mut cmd = match self.prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(atelet_bin());
                c
            }
            None => Command::new(atelet_bin()),
        };
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--log-format")
            .arg("json")
            .args(&self.extra_args)
            .env("RUST_LOG", "info,atelet=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("atelet exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "atelet did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `atectl --socket <this daemon's socket> args…` with stdin from
    /// /dev/null and stdout and stderr piped (so: not a terminal).
    pub fn atectl(&self, args: &[&str]) -> Output {
        Command::new(atectl_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .env_remove("ATELET_SOCKET")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs atectl and expects success with nothing on stderr (no progress
    /// output when piped); returns stdout.
    pub fn atectl_ok(&self, args: &[&str]) -> String {
        let o = self.atectl(args);
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "atectl {args:?}: {}\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Waits, reading `atectl logs id`, until the numbers the actor printed
    /// satisfy `pred`; returns them.
    pub fn atectl_wait_numbers(&self, id: &str, pred: impl Fn(&[u64]) -> bool) -> Vec<u64> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let nums = numbers(&self.atectl_ok(&["logs", id]));
            if pred(&nums) {
                return nums;
            }
            assert!(
                Instant::now() < deadline,
                "log of {id}: {nums:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("daemon.log")).unwrap_or_default()
    }

    /// Bytes in the daemon's log so far (see [`Daemon::log_from`]).
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(self.home.join("daemon.log"))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// The daemon's log from byte `offset` on: polling a long log from a
    /// mark costs what was written since, not the whole file.
    pub fn log_from(&self, offset: u64) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let mut text = Vec::new();
        if let Ok(mut f) = File::open(self.home.join("daemon.log")) {
            if f.seek(SeekFrom::Start(offset)).is_ok() {
                let _ = f.read_to_end(&mut text);
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// `kill -9` of the daemon (sandboxes keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon is running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        c.wait().unwrap()
    }

    /// Starts the daemon again on the same socket and state dir, with a new
    /// client (the old one's pooled connections went with the old daemon).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon first");
        self.client = Client::new(&self.socket).with_observer(openapi::observer());
        self.spawn();
    }

    /// Appends `toml` to the daemon's config file, for its next
    /// [`Daemon::restart`].
    pub fn add_config(&self, toml: &str) {
        let path = self.home.join("config.toml");
        let mut config = std::fs::read_to_string(&path).unwrap();
        config.push('\n');
        config.push_str(toml);
        std::fs::write(&path, config).unwrap();
    }

    /// The daemon's `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        let resp = self
            .client
            .raw(hyper::Method::GET, "/metrics", None)
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
        String::from_utf8_lossy(&resp.body).into_owned()
    }

    /// Pid of the daemon.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Every runsc process on this daemon's runsc root, found by the
    /// `--root` flag on its command line or the daemon's mark in its
    /// environment (a wrapper script's process carries only the mark), as
    /// (pid, what it runs: `wait`, `boot`, `gofer`, `checkpoint`, …, and
    /// the container it names last).
    pub fn runsc_processes(&self) -> Vec<(i32, String, String)> {
        let root = self.state.join("runsc");
        let flag = format!("--root={}", root.display());
        let mark = format!("ATELET_RUNSC_ROOT={}", root.display());
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let split = |raw: Vec<u8>| -> Vec<String> {
                raw.split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            };
            let args = split(std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default());
            let env = split(std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default());
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rfind(')')
                        .map(|i| s[i + 1..].trim_start().starts_with('Z'))
                })
                .unwrap_or(true);
            if zombie || !(args.contains(&flag) || env.contains(&mark)) {
                continue;
            }
            let op = env
                .iter()
                .find_map(|v| v.strip_prefix("ATELET_RUNSC_OP="))
                .map(str::to_string)
                .or_else(|| {
                    args.iter()
                        .skip(1)
                        .find(|a| !a.starts_with('-') && !a.contains('/'))
                        .cloned()
                })
                .unwrap_or_default();
            let target = args.last().cloned().unwrap_or_default();
            found.push((pid, op, target));
        }
        found
    }

    /// The `runsc wait` processes on this daemon's root, per container.
    pub fn waiters(&self) -> BTreeMap<String, usize> {
        let mut per = BTreeMap::new();
        for (_, op, target) in self.runsc_processes() {
            if op == "wait" {
                *per.entry(target).or_default() += 1;
            }
        }
        per
    }

    /// The runsc containers under this daemon's root.
    pub fn runsc_containers(&self) -> Vec<(String, String)> {
        let out = Command::new("runsc")
            .arg(format!("--root={}", self.state.join("runsc").display()))
            .args(["list", "--format=json"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (
                            c["id"].as_str().unwrap_or("").to_string(),
                            c["status"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Creates an actor from JSON and checks the answer.
    pub async fn create(&self, body: &serde_json::Value) -> Actor {
        let req: CreateActorRequest = serde_json::from_value(body.clone()).unwrap();
        match self.client.create(&req).await {
            Ok(a) => a,
            Err(e) => panic!("create {}: {e}\n{}", req.id, self.log()),
        }
    }

    /// Waits until `id` has `status`.
    pub async fn wait_status(&self, id: &str, status: ActorStatus, within: Duration) -> Actor {
        let deadline = Instant::now() + within;
        loop {
            let a = self.client.get(id).await.unwrap();
            if a.status == status {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "actor {id} is {} ({}), not {status}, after {within:?}",
                a.status,
                a.status_message
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The actor's log as text.
    pub async fn logs(&self, id: &str) -> String {
        String::from_utf8_lossy(&self.client.logs(id).await.unwrap()).into_owned()
    }

    /// Waits until the actor's log satisfies `pred`.
    pub async fn wait_log(
        &self,
        id: &str,
        within: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.logs(id).await;
            if pred(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "log of {id} never matched; it is:\n{text}\ndaemon log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything under the state dir but sled's own files: path → size.
    pub fn files(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        walk(&self.state, &self.state, &mut out);
        out
    }

    /// Removes every actor through the API (fast: the daemon reaps), then
    /// whatever runsc still lists under this daemon's root.
    fn cleanup(&mut self) {
        if self.child.is_some() {
            let client = self.client.clone();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = std::thread::spawn(move || {
                rt.block_on(async {
                    if let Ok(actors) = client.list(None).await {
                        for a in actors {
                            let _ = client.delete(&a.id).await;
                        }
                    }
                })
            })
            .join();
        }
        self.kill9();
        for (id, _) in self.runsc_containers() {
            let _ = Command::new("runsc")
                .arg(format!("--root={}", self.state.join("runsc").display()))
                .args(["delete", "--force", &id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        self.net.remove_leftovers();
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if rel == "db" || rel == "atelet.lock" {
            continue;
        }
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            out.insert(format!("{rel}/"), 0);
            walk(root, &p, out);
        } else {
            out.insert(rel, meta.len());
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.cleanup();
        if std::thread::panicking() {
            eprintln!(
                "---- daemon log ({}) ----\n{}",
                self.home.display(),
                self.log()
            );
        }
    }
}

/// The numbers a counter actor printed, in order.
pub fn numbers(log: &str) -> Vec<u64> {
    log.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Asserts that a counter never restarted and never skipped.
pub fn assert_consecutive(nums: &[u64]) {
    assert!(!nums.is_empty(), "the counter printed nothing");
    assert_eq!(nums[0], 0, "the counter did not start at 0: {nums:?}");
    for w in nums.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "the counter went from {} to {}: {nums:?}",
            w[0],
            w[1]
        );
    }
}

/// Parses `/proc/<pid>/status` lines printed into a log: field → value.
pub fn proc_status_fields(log: &str) -> BTreeMap<String, String> {
    log.lines()
        .filter_map(|l| l.split_once(':').or_else(|| l.split_once('=')))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// An ed25519 key pair made with openssl, as an operator would make one
/// for `[remote] signing_key` and `trusted_keys`: (private PEM, mode
/// 0600; public PEM), as paths.
pub fn openssl_keys(dir: &Path, name: &str) -> (String, String) {
    use std::os::unix::fs::PermissionsExt;
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        private.to_str().unwrap(),
    ]);
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (private.display().to_string(), public.display().to_string())
}
