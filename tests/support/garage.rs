//! A real Garage (S3-compatible object store) for the tests, started on
//! loopback ports with a temporary data dir: one node, or a cluster whose
//! nodes can be stopped and started again. `scripts/install-deps` builds
//! it once (`cargo install garage`).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The garage binary: on PATH, else in cargo's bin directory.
pub fn garage_bin() -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([cargo_home.join("bin")])
        .map(|d| d.join("garage"))
        .find(|p| p.is_file())
        .expect("garage is missing: scripts/install-deps builds it (cargo install garage)")
}

/// A free TCP port of 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One Garage node: its config, its process.
pub struct Node {
    pub config: PathBuf,
    pub s3_port: u16,
    pub rpc_port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(garage_bin())
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Serving RPC once `status` answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.cli(&["status"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "garage did not come up:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the node (as a crash would: SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a stopped node again, with its data.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// Runs `garage -c CONFIG args…`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(garage_bin())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "garage {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn id(&self) -> String {
        let out = self.cli_ok(&["node", "id", "-q"]);
        out.trim().to_string()
    }
}

/// A Garage cluster with a bucket and a key for the daemons under test.
pub struct Garage {
    pub nodes: Vec<Node>,
    pub bucket: String,
    /// An AWS shared-credentials file (mode 0600) holding the key.
    pub credentials: PathBuf,
    _dir: tempfile::TempDir,
}

impl Garage {
    /// One node, replication factor 1.
    pub fn start() -> Garage {
        Garage::cluster(1)
    }

    /// `n` nodes on loopback, each object stored on all of them
    /// (replication factor `n`), so that a write completes with a quorum.
    pub fn cluster(n: usize) -> Garage {
        let dir = tempfile::Builder::new()
            .prefix("atelet-garage-")
            .tempdir_in("/tmp")
            .unwrap();
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + 11) as u8 ^ (std::process::id() as u8)))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..n {
            let home = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&home).unwrap();
            let (s3_port, rpc_port) = (free_port(), free_port());
            let config = home.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = {meta:?}\ndata_dir = {data:?}\ndb_engine = \"sqlite\"\n\
                     replication_factor = {n}\n\
                     rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\nrpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                     rpc_secret = \"{secret}\"\n\n\
                     [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                     root_domain = \".s3.garage.localhost\"\n",
                    meta = home.join("meta").display().to_string(),
                    data = home.join("data").display().to_string(),
                ),
            )
            .unwrap();
            let mut node = Node {
                config,
                s3_port,
                rpc_port,
                log: home.join("garage.log"),
                child: None,
            };
            node.start();
            nodes.push(node);
        }
        let ids: Vec<String> = nodes.iter().map(Node::id).collect();
        for id in &ids[1..] {
            nodes[0].cli_ok(&["node", "connect", id]);
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap();
            nodes[0].cli_ok(&[
                "layout",
                "assign",
                "-z",
                &format!("dc{i}"),
                "-c",
                "1G",
                short,
            ]);
        }
        nodes[0].cli_ok(&["layout", "apply", "--version", "1"]);
        let bucket = "snaps".to_string();
        let key = nodes[0].cli_ok(&["key", "create", "atelet-tests"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(|v| v.trim_start_matches(':').trim().to_string())
                .unwrap_or_else(|| panic!("no {name} in:\n{key}"))
        };
        let (key_id, secret_key) = (field("Key ID"), field("Secret key"));
        // The layout reaches every node before the bucket can be made.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !nodes[0]
            .cli(&["bucket", "create", &bucket])
            .status
            .success()
        {
            assert!(Instant::now() < deadline, "garage: bucket create");
            std::thread::sleep(Duration::from_millis(200));
        }
        nodes[0].cli_ok(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            &bucket,
            "--key",
            "atelet-tests",
        ]);
        let credentials = dir.path().join("credentials");
        std::fs::write(
            &credentials,
            format!(
                "[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret_key}\n"
            ),
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Garage {
            nodes,
            bucket,
            credentials,
            _dir: dir,
        }
    }

    /// The `[remote]` table of a daemon's config: this bucket under
    /// `prefix`, through node `via`.
    pub fn remote_config(&self, prefix: &str) -> String {
        format!(
            "\n[remote]\nurl = \"s3://{}/{prefix}\"\nendpoint = \"http://127.0.0.1:{}\"\nregion = \"garage\"\ncredentials_file = {:?}\n",
            self.bucket,
            self.nodes[0].s3_port,
            self.credentials.display().to_string()
        )
    }

    /// Where node `i` keeps its data.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.nodes[i]
            .config
            .parent()
            .map(|p| p.join("data"))
            .unwrap_or_default()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.stop();
        }
    }
}
