//! Daemon settings: built-in defaults, overridden by a TOML file, overridden
//! by flags (README, "Configuration").

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::http::access::{AccessConfig, AccessPolicy};
use crate::http::Limits;
use crate::network::{NetworkConfig, NetworkFileConfig};
use crate::policy::{AdmissionPolicy, DaemonPaths, PolicyConfig};
use serde::Deserialize;

/// Command line of `atelet`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "atelet",
    version,
    about = "Runs gVisor-sandboxed actors; suspends and resumes them."
)]
pub struct Flags {
    /// TOML config file (see systemd/config.toml.example).
    #[arg(long, env = "ATELET_CONFIG")]
    pub config: Option<PathBuf>,
    /// API socket [default: /run/atelet/atelet.sock].
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// State directory [default: /var/lib/atelet].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// runsc binary [default: runsc on PATH].
    #[arg(long)]
    pub runsc: Option<PathBuf>,
    /// Log format [default: text on a terminal, else json].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// How the daemon's own log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// The config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// API socket path.
    pub socket: Option<PathBuf>,
    /// Octal mode of the socket, e.g. "0660".
    pub socket_mode: Option<String>,
    /// State directory.
    pub state_dir: Option<PathBuf>,
    /// Snapshots kept per actor (newest first); 0 keeps all.
    pub snapshot_retention: Option<usize>,
    /// Bytes an actor's log may reach before it is rotated to `<id>.log.1`.
    pub log_max_bytes: Option<u64>,
    /// Log format.
    pub log_format: Option<LogFormat>,
    /// runsc settings.
    #[serde(default)]
    pub runsc: RunscFileConfig,
    /// Who may use the socket.
    #[serde(default)]
    pub access: AccessConfig,
    /// Limits on connections and requests.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// What a spec may ask of this node.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Actor networks.
    #[serde(default)]
    pub network: NetworkFileConfig,
    /// The remote snapshot store.
    #[serde(default)]
    pub remote: crate::remote::RemoteFileConfig,
    /// Where actors' cgroups go.
    #[serde(default)]
    pub cgroups: CgroupsFileConfig,
    /// `[registries."HOST[:PORT]"]`: credentials and TLS per registry.
    #[serde(default)]
    pub registries: std::collections::BTreeMap<String, crate::images::registry::RegistryFileConfig>,
    /// `[tiering]`.
    #[serde(default)]
    pub tiering: TieringFileConfig,
}

/// `[cgroups]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupsFileConfig {
    /// The cgroup every actor's sandbox gets a child of (one per sandbox,
    /// named after its runsc container id), under each v1 controller.
    pub parent: Option<String>,
}

/// `[tiering]` in the config file: when the daemon suspends paused
/// actors by itself, and what counts as idle.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TieringFileConfig {
    /// Memory PAUSED actors may hold together: bytes, a quantity
    /// (`"4Gi"`) or a percentage of MemTotal (`"25%"`); absent: no bound.
    pub max_paused_memory: Option<crate::policy::MemoryCommit>,
    /// MemAvailable below which paused actors are suspended (same forms);
    /// absent: none.
    pub min_available_memory: Option<crate::policy::MemoryCommit>,
    /// CPU use (thousandths of a core) at or below which an actor counts
    /// as idle (default 20).
    pub idle_cpu_millicores: Option<u64>,
    /// How often activity and memory are looked at, in milliseconds
    /// (default 1000; 100 to 60000).
    pub interval_ms: Option<u64>,
}

/// `[limits]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Connections served at once; when all are taken, the one idle
    /// longest is closed to make room for a new one, and while none is idle
    /// new ones wait to be accepted.
    pub max_connections: Option<usize>,
    /// Seconds a client may take to send a request's headers.
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a client may take to send a request body.
    pub body_read_timeout_secs: Option<u64>,
    /// Bytes of request head (line and headers) accepted; 8192 to 1 MiB.
    pub max_header_bytes: Option<usize>,
    /// Headers accepted in one request; 16 to 1000.
    pub max_headers: Option<usize>,
    /// Connections viewers may hold at once (at most max_connections).
    pub max_viewer_connections: Option<usize>,
    /// Bytes of a snapshot import's body.
    pub max_import_bytes: Option<u64>,
    /// Execs one actor may run at once; beyond, an exec gets 409.
    pub max_execs_per_actor: Option<usize>,
}

/// `[runsc]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunscFileConfig {
    /// Binary.
    pub path: Option<PathBuf>,
    /// `--platform` (ptrace; KVM hangs under nested virtualisation).
    pub platform: Option<String>,
    /// `--network`.
    pub network: Option<String>,
    /// `--overlay2`.
    pub overlay: Option<String>,
    /// Seconds before a runsc command is killed.
    pub timeout_secs: Option<u64>,
}

/// The resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// API socket path.
    pub socket: PathBuf,
    /// Socket file mode.
    pub socket_mode: u32,
    /// State directory.
    pub state_dir: PathBuf,
    /// runsc binary; `None` looks it up on PATH at each call.
    pub runsc_path: Option<PathBuf>,
    /// `--platform`.
    pub platform: String,
    /// `--network` of actors without a bridged network.
    pub runsc_network: String,
    /// `--overlay2`.
    pub overlay: String,
    /// runsc command timeout.
    pub runsc_timeout: Duration,
    /// Snapshots kept per actor.
    pub snapshot_retention: usize,
    /// Bytes an actor's log may reach before it is rotated.
    pub log_max_bytes: u64,
    /// Log format; `None` picks by whether stderr is a terminal.
    pub log_format: Option<LogFormat>,
    /// Who may use the socket.
    pub access: AccessPolicy,
    /// Connection and request limits.
    pub limits: Limits,
    /// The admission policy.
    pub policy: AdmissionPolicy,
    /// Actor networks.
    pub network: NetworkConfig,
    /// The remote snapshot store, if any.
    pub remote: Option<crate::remote::RemoteConfig>,
    /// Signing and trusted keys of snapshot manifests.
    pub trust: crate::trust::Trust,
    /// `[cgroups] parent`, checked.
    pub cgroups_parent: String,
    /// Registry credentials and TLS settings, files read.
    pub registries: crate::images::registry::Registries,
    /// Execs one actor may run at once (at least 1).
    pub max_execs_per_actor: usize,
    /// `[tiering]`, resolved.
    pub(crate) tiering: crate::service::TieringConfig,
}

/// Built-in defaults.
pub const DEFAULT_SOCKET: &str = "/run/atelet/atelet.sock";
/// See [`DEFAULT_SOCKET`].
pub const DEFAULT_STATE_DIR: &str = "/var/lib/atelet";
/// Where the cgroup v1 controllers are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl Config {
    /// Defaults ← file ← flags.
    pub fn resolve(flags: &Flags) -> Result<Config, String> {
        let file = match &flags.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let socket_mode = match &file.socket_mode {
            Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| format!("socket_mode {m:?} is not an octal file mode"))?,
            None => 0o660,
        };
        let access = AccessPolicy::from_config(&file.access).map_err(|e| format!("access: {e}"))?;
        let socket = flags
            .socket
            .clone()
            .or(file.socket)
            .unwrap_or_else(|| DEFAULT_SOCKET.into());
        let state_dir = flags
            .state_dir
            .clone()
            .or(file.state_dir)
            .unwrap_or_else(|| DEFAULT_STATE_DIR.into());
        let policy = AdmissionPolicy::from_config(&file.policy)?.protect(DaemonPaths {
            state_dir: &state_dir,
            socket: &socket,
            config: flags.config.as_deref(),
        })?;
        let l = &file.limits;
        let defaults = Limits::default();
        let max_connections = l.max_connections.unwrap_or(defaults.max_connections).max(1);
        let limits = Limits {
            max_connections,
            max_viewer_connections: l
                .max_viewer_connections
                .unwrap_or(defaults.max_viewer_connections)
                .clamp(1, max_connections),
            header_read_timeout: l
                .header_read_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(defaults.header_read_timeout),
            body_read_timeout: l
                .body_read_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(defaults.body_read_timeout),
            max_header_bytes: l
                .max_header_bytes
                .unwrap_or(defaults.max_header_bytes)
                .clamp(8192, 1 << 20),
            max_headers: l
                .max_headers
                .unwrap_or(defaults.max_headers)
                .clamp(16, 1000),
            max_import_bytes: l.max_import_bytes.unwrap_or(defaults.max_import_bytes),
        };
        let network = NetworkConfig::from_file(&file.network)?;
        let remote = crate::remote::RemoteConfig::from_file(&file.remote)?;
        let trust = crate::trust::Trust::from_files(
            file.remote.signing_key.as_deref(),
            file.remote.trusted_keys.as_deref().unwrap_or_default(),
        )?;
        let cgroups_parent = file
            .cgroups
            .parent
            .clone()
            .unwrap_or_else(|| crate::cgroups::DEFAULT_PARENT.to_string());
        crate::cgroups::Cgroups::new(CGROUP_ROOT.into(), &cgroups_parent)
            .map_err(|e| e.to_string())?;
        let registries = crate::images::registry::Registries::from_file(&file.registries)?;
        let max_execs_per_actor = l
            .max_execs_per_actor
            .unwrap_or(crate::service::DEFAULT_MAX_EXECS)
            .max(1);
        let tiering = tiering(&file.tiering)?;
        let r = file.runsc;
        Ok(Config {
            tiering,
            max_execs_per_actor,
            cgroups_parent,
            registries,
            network,
            remote,
            trust,
            access,
            limits,
            policy,
            socket,
            socket_mode,
            state_dir,
            runsc_path: flags.runsc.clone().or(r.path),
            platform: r.platform.unwrap_or_else(|| "ptrace".into()),
            runsc_network: r.network.unwrap_or_else(|| "none".into()),
            overlay: overlay(r.overlay)?,
            runsc_timeout: Duration::from_secs(r.timeout_secs.unwrap_or(300)),
            snapshot_retention: file.snapshot_retention.unwrap_or(3),
            log_max_bytes: file.log_max_bytes.unwrap_or(64 << 20).max(4096),
            log_format: flags.log_format.or(file.log_format),
        })
    }
}

/// `[tiering]`, resolved against the host's memory.
fn tiering(t: &TieringFileConfig) -> Result<crate::service::TieringConfig, String> {
    let mem_total = crate::policy::host_mem_total();
    let amount = |field: &str, v: Option<&crate::policy::MemoryCommit>| {
        v.map(|v| crate::policy::memory_amount(field, v, mem_total))
            .transpose()
    };
    let interval_ms = t
        .interval_ms
        .unwrap_or(crate::service::DEFAULT_TIERING_INTERVAL.as_millis() as u64);
    if !(100..=60_000).contains(&interval_ms) {
        return Err(format!(
            "tiering.interval_ms {interval_ms}: 100 to 60000 milliseconds"
        ));
    }
    Ok(crate::service::TieringConfig {
        max_paused_memory: amount("tiering.max_paused_memory", t.max_paused_memory.as_ref())?,
        min_available_memory: amount(
            "tiering.min_available_memory",
            t.min_available_memory.as_ref(),
        )?,
        idle_cpu_millicores: t
            .idle_cpu_millicores
            .unwrap_or(crate::service::DEFAULT_IDLE_CPU_MILLICORES),
        interval: Duration::from_millis(interval_ms),
    })
}

/// `[runsc] overlay`: it must cover the root, because actors share their
/// image's rootfs (and the image cache) and only runsc's overlay keeps
/// their writes out of it.
fn overlay(value: Option<String>) -> Result<String, String> {
    let value = value.unwrap_or_else(|| "root:memory".into());
    // In memory, too: the snapshot space check bounds an image by the
    // machine's memory, and this runsc knows no other medium.
    if !matches!(value.as_str(), "root:memory" | "all:memory") {
        return Err(format!(
            "runsc.overlay {value:?} must be \"root:memory\" or \"all:memory\": actors share their image's rootfs read-only, and only the overlay keeps their writes out of it"
        ));
    }
    Ok(value)
}

fn load_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        Flags::parse_from(std::iter::once("atelet").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_apply_without_file_or_flags() {
        let c = Config::resolve(&flags(&[])).unwrap();
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(c.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(c.platform, "ptrace");
        assert_eq!(c.overlay, "root:memory");
        assert_eq!(c.socket_mode, 0o660);
        assert_eq!(c.snapshot_retention, 3);
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "socket = \"/f.sock\"\nstate_dir = \"/f\"\nsnapshot_retention = 5\n[runsc]\npath = \"/f/runsc\"\nplatform = \"kvm\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = Config::resolve(&flags(&["--config", p, "--socket", "/x.sock"])).unwrap();
        assert_eq!(c.socket, PathBuf::from("/x.sock"));
        assert_eq!(c.state_dir, PathBuf::from("/f"));
        assert_eq!(c.runsc_path, Some(PathBuf::from("/f/runsc")));
        assert_eq!(c.platform, "kvm");
        assert_eq!(c.snapshot_retention, 5);
    }

    #[test]
    fn the_shipped_example_config_parses_and_matches_the_defaults() {
        let example = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../systemd/config.toml.example"
        );
        // Every key is known and well typed.
        let file = load_file(Path::new(example)).unwrap();
        assert_eq!(file.access.socket_group.as_deref(), Some("atelet"));
        // Resolving needs the group `atelet`, which scripts/install creates;
        // where it is missing, that is the only complaint.
        let dir = tempfile::tempdir().unwrap();
        let (resolved, used) = match Config::resolve(&flags(&["--config", example])) {
            Ok(c) => (c, PathBuf::from(example)),
            Err(e) => {
                assert!(e.contains("group \"atelet\" does not exist"), "{e}");
                let copy = dir.path().join("config.toml");
                let text = std::fs::read_to_string(example).unwrap();
                std::fs::write(&copy, text.replace("\"atelet\"", "\"0\"")).unwrap();
                let c = Config::resolve(&flags(&["--config", copy.to_str().unwrap()])).unwrap();
                (c, copy)
            }
        };
        let mut defaults = Config::resolve(&flags(&[])).unwrap();
        // The config file is one of the daemon's files no image may expose.
        defaults.policy = defaults
            .policy
            .protect(DaemonPaths {
                state_dir: &defaults.state_dir,
                socket: &defaults.socket,
                config: Some(&used),
            })
            .unwrap();
        // The example spells out the defaults, plus what a service wants.
        assert_eq!(resolved.log_format, Some(LogFormat::Json));
        assert_eq!(resolved.runsc_path, Some(PathBuf::from("/usr/bin/runsc")));
        assert!(resolved.access.socket_gid.is_some());
        assert_eq!(
            Config {
                log_format: None,
                runsc_path: None,
                access: defaults.access.clone(),
                ..resolved
            },
            defaults
        );
    }

    #[test]
    fn an_overlay_that_leaves_the_shared_rootfs_writable_is_refused() {
        assert_eq!(overlay(None).unwrap(), "root:memory");
        assert_eq!(overlay(Some("all:memory".into())).unwrap(), "all:memory");
        for bad in ["none", "root", "root:", "foo:memory", "root:self", ""] {
            let err = overlay(Some(bad.into())).unwrap_err();
            assert!(err.contains("must be \"root:memory\""), "{bad}: {err}");
        }
    }

    #[test]
    fn tiering_takes_bytes_quantities_and_percentages_and_names_a_bad_key() {
        use crate::policy::MemoryCommit::{Bytes, Text};
        let t = tiering(&TieringFileConfig::default()).unwrap();
        assert_eq!(t, crate::service::TieringConfig::default());
        let t = tiering(&TieringFileConfig {
            max_paused_memory: Some(Text("4Gi".into())),
            min_available_memory: Some(Bytes(1 << 20)),
            idle_cpu_millicores: Some(50),
            interval_ms: Some(200),
        })
        .unwrap();
        assert_eq!(t.max_paused_memory, Some(4 << 30));
        assert_eq!(t.min_available_memory, Some(1 << 20));
        assert_eq!(t.idle_cpu_millicores, 50);
        assert_eq!(t.interval, Duration::from_millis(200));
        for (file, field) in [
            (
                TieringFileConfig {
                    max_paused_memory: Some(Text("lots".into())),
                    ..Default::default()
                },
                "tiering.max_paused_memory",
            ),
            (
                TieringFileConfig {
                    min_available_memory: Some(Text("0%".into())),
                    ..Default::default()
                },
                "tiering.min_available_memory",
            ),
            (
                TieringFileConfig {
                    interval_ms: Some(10),
                    ..Default::default()
                },
                "tiering.interval_ms",
            ),
        ] {
            let err = tiering(&file).unwrap_err();
            assert!(err.starts_with(field), "{err}");
        }
    }

    #[test]
    fn image_dirs_must_keep_away_from_the_daemons_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let path = root.join("c.toml");
        let config = |image_dirs: &str| {
            std::fs::write(&path, format!("[policy]\nimage_dirs = [{image_dirs:?}]\n")).unwrap();
        };
        let resolve = |state: &Path| {
            Config::resolve(&flags(&[
                "--config",
                path.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
                "--socket",
                root.join("run/atelet.sock").to_str().unwrap(),
            ]))
        };
        // The report's layout: image_dirs = ["/tmp/x"], state in /tmp/x/state.
        let x = root.join("x");
        config(x.to_str().unwrap());
        let err = resolve(&x.join("state")).unwrap_err();
        assert!(
            err.contains(&format!(
                "policy.image_dirs: {} contains the state dir {}/state",
                x.display(),
                x.display()
            )),
            "{err}"
        );
        // Apart, it starts; and the config file and socket are protected.
        let c = resolve(&root.join("state")).unwrap();
        for (image, rule) in [
            (format!("oci-archive:{}", path.display()), "config"),
            (format!("dir:{}", root.join("run").display()), "socket"),
            (
                format!("dir:{}/state/snapshots", root.display()),
                "state_dir",
            ),
        ] {
            assert_eq!(
                c.policy.check_image("image", &image).unwrap_err().rule,
                rule
            );
        }
        c.policy
            .check_image("image", &format!("dir:{}/rootfs", x.display()))
            .unwrap();
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "sockets = \"/x\"\n").unwrap();
        let err = Config::resolve(&flags(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
        let err = Config::resolve(&flags(&["--config", "/nonexistent.toml"])).unwrap_err();
        assert!(err.contains("reading config"), "{err}");
    }
}
