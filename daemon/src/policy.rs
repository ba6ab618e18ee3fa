//! The node admission policy (docs/security.md): what a spec may ask of this node.
//! A refusal is 403 with a message naming the rule, decided before anything
//! is created.

use std::path::{Component, Path, PathBuf};

use atelet_api::capabilities::{parse_capability, Capability, CapabilityEntry};
use atelet_api::quantity::Bytes;
use atelet_api::{CreateActorRequest, ImageRef};
use serde::Deserialize;

/// Docker's default capability set: what a spec may add unless the operator
/// allows more. (`NET_ADMIN` and `SYS_ADMIN` are not in it.)
pub(crate) const DEFAULT_ALLOWED_CAPABILITIES: [&str; 14] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Where `dir:`, `oci:` and `oci-archive:` references may point by default.
pub(crate) const DEFAULT_IMAGE_DIRS: [&str; 1] = ["/var/lib/images"];

/// Actors a node holds by default.
pub(crate) const DEFAULT_MAX_ACTORS: usize = 1000;

/// `[policy]` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Capabilities a spec may add (names as in specs; `ALL` allows every one).
    pub allowed_capabilities: Option<Vec<String>>,
    /// Whether a container may start as uid 0.
    pub allow_run_as_root: Option<bool>,
    /// Most actors on the node.
    pub max_actors: Option<usize>,
    /// Directories image references may point into.
    pub image_dirs: Option<Vec<PathBuf>>,
    /// Bound on the sum of the memory limits of actors that hold a
    /// sandbox: bytes (a number or a quantity such as `"48Gi"`) or a
    /// percentage of the host's `MemTotal` (`"90%"`, the default).
    pub max_memory_commit: Option<MemoryCommit>,
    /// Refuse specs without a memory limit (default false).
    pub require_limits: Option<bool>,
    /// Registry hosts (`host[:port]`, as in references) images may be
    /// pulled from; none by default, so pulls are opt-in per node.
    pub allowed_registries: Option<Vec<String>>,
}

/// `[policy] max_memory_commit` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum MemoryCommit {
    /// Bytes.
    Bytes(u64),
    /// A quantity (`"48Gi"`) or a percentage of MemTotal (`"90%"`).
    Text(String),
}

/// The default `max_memory_commit`: 90 % of the host's memory, leaving the
/// rest to the daemon, runsc's own processes and the host.
pub(crate) const DEFAULT_MEMORY_COMMIT_PERCENT: u64 = 90;

/// A spec the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by node policy {rule}: {message}")]
pub struct PolicyViolation {
    /// The config key of the rule.
    pub rule: &'static str,
    /// What in the spec broke it.
    pub message: String,
}

/// The daemon's own files. No image may point inside one of them or
/// contain one, whatever `image_dirs` says: the state dir holds every
/// actor's snapshot (`checkpoint.img` is its whole memory) and the
/// database, and an actor's rootfs is readable inside its sandbox.
#[derive(Debug, Clone, Copy)]
pub struct DaemonPaths<'a> {
    /// The state directory.
    pub state_dir: &'a Path,
    /// The API socket.
    pub socket: &'a Path,
    /// The config file, if one was given.
    pub config: Option<&'a Path>,
}

/// One of [`DaemonPaths`], resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DaemonPath {
    /// The rule a refusal names: the setting that puts the file there.
    rule: &'static str,
    /// What it is, for the message.
    what: &'static str,
    path: PathBuf,
}

/// The resolved policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// `None`: every capability.
    allowed_capabilities: Option<Vec<Capability>>,
    allow_run_as_root: bool,
    max_actors: usize,
    image_dirs: Vec<PathBuf>,
    /// See [`AdmissionPolicy::protect`].
    daemon_paths: Vec<DaemonPath>,
    /// Bytes; `u64::MAX` when the host's memory is unknown.
    max_memory_commit: u64,
    require_limits: bool,
    allowed_registries: Vec<String>,
}

impl Default for AdmissionPolicy {
    fn default() -> Self {
        // The built-in lists are valid by construction.
        AdmissionPolicy::from_config(&PolicyConfig::default()).unwrap_or(AdmissionPolicy {
            allowed_capabilities: Some(Vec::new()),
            allow_run_as_root: true,
            max_actors: DEFAULT_MAX_ACTORS,
            image_dirs: Vec::new(),
            daemon_paths: Vec::new(),
            max_memory_commit: u64::MAX,
            require_limits: false,
            allowed_registries: Vec::new(),
        })
    }
}

impl AdmissionPolicy {
    /// Resolves the config, refusing unknown capability names and relative dirs.
    pub fn from_config(c: &PolicyConfig) -> Result<AdmissionPolicy, String> {
        let names: Vec<String> = match &c.allowed_capabilities {
            Some(list) => list.clone(),
            None => DEFAULT_ALLOWED_CAPABILITIES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let mut caps = Some(Vec::new());
        for name in &names {
            match parse_capability(name) {
                Ok(CapabilityEntry::All) => caps = None,
                Ok(CapabilityEntry::Cap(cap)) => {
                    if let Some(v) = caps.as_mut() {
                        v.push(cap);
                    }
                }
                Ok(CapabilityEntry::Blank) => {}
                Err(e) => return Err(format!("policy.allowed_capabilities: {e}")),
            }
        }
        let dirs = c
            .image_dirs
            .clone()
            .unwrap_or_else(|| DEFAULT_IMAGE_DIRS.iter().map(PathBuf::from).collect());
        for d in &dirs {
            if !d.is_absolute() {
                return Err(format!(
                    "policy.image_dirs: {} is not absolute",
                    d.display()
                ));
            }
        }
        let mem_total = host_mem_total();
        Ok(AdmissionPolicy {
            allowed_capabilities: caps,
            allow_run_as_root: c.allow_run_as_root.unwrap_or(true),
            max_actors: c.max_actors.unwrap_or(DEFAULT_MAX_ACTORS),
            image_dirs: dirs.iter().map(|d| resolve(d)).collect(),
            daemon_paths: Vec::new(),
            max_memory_commit: memory_commit(c.max_memory_commit.as_ref(), mem_total)?,
            require_limits: c.require_limits.unwrap_or(false),
            allowed_registries: allowed_registries(c.allowed_registries.as_deref())?,
        })
    }

    /// Checks that an actor whose sandbox has memory limit `asking` may
    /// take a sandbox while the others that hold one have `committed`
    /// bytes of limits. An actor without a limit asks nothing (the rule
    /// bounds promises; `require_limits` makes every actor promise).
    pub fn check_memory_commit(
        &self,
        id: &str,
        committed: u64,
        asking: Option<u64>,
    ) -> Result<(), PolicyViolation> {
        let Some(asking) = asking else {
            return Ok(());
        };
        let total = committed.saturating_add(asking);
        if total > self.max_memory_commit {
            return Err(PolicyViolation {
                rule: "max_memory_commit",
                message: format!(
                    "actor {id} asks for a memory limit of {}; running actors already hold {} of the node's {}, and {} would exceed it",
                    Bytes(asking),
                    Bytes(committed),
                    Bytes(self.max_memory_commit),
                    Bytes(total)
                ),
            });
        }
        Ok(())
    }

    /// The bound of [`AdmissionPolicy::check_memory_commit`], in bytes.
    pub fn max_memory_commit(&self) -> u64 {
        self.max_memory_commit
    }

    /// Refuses, from now on, images that point inside the daemon's own
    /// files or contain them (symlinks resolved), whatever `image_dirs`
    /// says. Fails, naming both paths, when an image dir is, contains or
    /// lies inside the state dir: the first two are how the state dir was
    /// handed out to any client (`image_dirs = ["/tmp/x"]` with the state
    /// in `/tmp/x/state`), the last allows only images that are refused
    /// anyway, so such a config is a mistake best reported at start.
    pub fn protect(mut self, paths: DaemonPaths<'_>) -> Result<AdmissionPolicy, String> {
        let state = resolve(paths.state_dir);
        for d in &self.image_dirs {
            let how = if d == &state {
                "is"
            } else if state.starts_with(d) {
                "contains"
            } else if d.starts_with(&state) {
                "is inside"
            } else {
                continue;
            };
            return Err(format!(
                "policy.image_dirs: {} {how} the state dir {}: images there would expose every actor's snapshots; keep the image dirs and the state dir apart",
                d.display(),
                state.display()
            ));
        }
        self.daemon_paths = vec![
            DaemonPath {
                rule: "state_dir",
                what: "the daemon's state dir",
                path: state,
            },
            DaemonPath {
                rule: "socket",
                what: "the daemon's API socket",
                path: resolve(paths.socket),
            },
        ];
        if let Some(config) = paths.config {
            self.daemon_paths.push(DaemonPath {
                rule: "config",
                what: "the daemon's config file",
                path: resolve(config),
            });
        }
        Ok(self)
    }

    /// Checks that one more actor fits on a node that holds `actors`.
    pub fn check_count(&self, actors: usize) -> Result<(), PolicyViolation> {
        if actors >= self.max_actors {
            return Err(PolicyViolation {
                rule: "max_actors",
                message: format!(
                    "the node holds {actors} actors, the limit is {}",
                    self.max_actors
                ),
            });
        }
        Ok(())
    }

    /// Checks that an image reference points into the allowed directories
    /// and neither inside nor around the daemon's own files (symlinks
    /// resolved). `field` names it in the message.
    pub fn check_image(&self, field: &str, reference: &str) -> Result<(), PolicyViolation> {
        let Ok(image) = ImageRef::parse(reference) else {
            // Validation refuses it with a better message.
            return Ok(());
        };
        let Some(path) = image.path() else {
            return self.check_registry(field, &image);
        };
        let path = resolve(Path::new(path));
        // First: image_dirs cannot allow these.
        for d in &self.daemon_paths {
            let how = if path == d.path {
                "is"
            } else if path.starts_with(&d.path) {
                "is inside"
            } else if d.path.starts_with(&path) {
                "contains"
            } else {
                continue;
            };
            return Err(PolicyViolation {
                rule: d.rule,
                message: format!(
                    "{field}: {} {how} {} {}; no image may expose the daemon's own files, whatever image_dirs allows",
                    path.display(),
                    d.what,
                    d.path.display()
                ),
            });
        }
        if self.image_dirs.iter().any(|d| path.starts_with(d)) {
            return Ok(());
        }
        let dirs: Vec<String> = self
            .image_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        Err(PolicyViolation {
            rule: "image_dirs",
            message: format!(
                "{field}: {} is outside the image directories [{}]",
                path.display(),
                dirs.join(", ")
            ),
        })
    }

    /// Checks that a registry reference names a host the node pulls from
    /// (before any connection is made).
    fn check_registry(&self, field: &str, image: &ImageRef) -> Result<(), PolicyViolation> {
        let host = image.registry_host().unwrap_or_default();
        if self.allowed_registries.iter().any(|h| h == host) {
            return Ok(());
        }
        let allowed = if self.allowed_registries.is_empty() {
            "none: this node pulls from no registry".to_string()
        } else {
            format!("[{}]", self.allowed_registries.join(", "))
        };
        Err(PolicyViolation {
            rule: "allowed_registries",
            message: format!(
                "{field}: registry {host} is not one this node pulls from (allowed: {allowed})"
            ),
        })
    }

    /// Refuses an exec as root (`uid` 0, asked for or the container's
    /// own) where `allow_run_as_root = false`: an exec must not be a way
    /// around what the node refuses at create.
    pub fn check_exec_user(&self, uid: u32, asked: bool) -> Result<(), PolicyViolation> {
        if self.allow_run_as_root || uid != 0 {
            return Ok(());
        }
        Err(PolicyViolation {
            rule: "allow_run_as_root",
            message: if asked {
                "user: commands may not run as root on this node; give a non-zero UID".to_string()
            } else {
                "user: the container runs as root, which this node does not allow; give a non-zero UID".to_string()
            },
        })
    }

    /// Checks a (validated) create request against the policy's rules on
    /// specs (the count is [`AdmissionPolicy::check_count`]).
    pub fn check(&self, req: &CreateActorRequest) -> Result<(), PolicyViolation> {
        for (i, c) in req.spec.iter().flat_map(|s| &s.containers).enumerate() {
            let field = format!("spec.containers[{i}]");
            let sc = c.security_context.as_ref();
            if let (Some(allowed), Some(caps)) = (
                &self.allowed_capabilities,
                sc.and_then(|s| s.capabilities.as_ref()),
            ) {
                for (k, entry) in caps.add.iter().enumerate() {
                    if let Ok(CapabilityEntry::Cap(cap)) = parse_capability(entry) {
                        if !allowed.contains(&cap) {
                            return Err(PolicyViolation {
                                rule: "allowed_capabilities",
                                message: format!(
                                    "{field}.securityContext.capabilities.add[{k}]: {cap} is not allowed on this node"
                                ),
                            });
                        }
                    }
                }
            }
            if !self.allow_run_as_root && sc.and_then(|s| s.run_as_user).unwrap_or(0) == 0 {
                return Err(PolicyViolation {
                    rule: "allow_run_as_root",
                    message: format!(
                        "{field}.securityContext.runAsUser: containers may not run as root on this node; set a non-zero runAsUser"
                    ),
                });
            }
            self.check_image(&format!("{field}.image"), &c.image)?;
            if self.require_limits
                && c.resources
                    .as_ref()
                    .and_then(|r| r.limits.as_ref())
                    .and_then(|l| l.memory.as_ref())
                    .is_none()
            {
                return Err(PolicyViolation {
                    rule: "require_limits",
                    message: format!(
                        "{field}.resources.limits.memory: every container needs a memory limit on this node"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// `policy.allowed_registries`, each checked to be `host[:port]`.
fn allowed_registries(hosts: Option<&[String]>) -> Result<Vec<String>, String> {
    let hosts = hosts.unwrap_or_default();
    for h in hosts {
        match ImageRef::parse(&format!("docker://{h}/x")) {
            Ok(r) if r.registry_host() == Some(h.as_str()) => {}
            _ => {
                return Err(format!(
                    "policy.allowed_registries: {h:?} is not HOST or HOST:PORT"
                ))
            }
        }
    }
    Ok(hosts.to_vec())
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    crate::fsutil::meminfo_field(meminfo, "MemTotal:")
}

/// Resolves `max_memory_commit` against the host's memory. A percentage
/// needs `mem_total`; on a host whose `/proc/meminfo` cannot be read it
/// bounds nothing rather than refusing every actor.
fn memory_commit(value: Option<&MemoryCommit>, mem_total: Option<u64>) -> Result<u64, String> {
    match value {
        None => Ok(percent_of(DEFAULT_MEMORY_COMMIT_PERCENT, mem_total)),
        Some(v) => memory_amount("policy.max_memory_commit", v, mem_total),
    }
}

/// `p` % of `mem_total`; unbounded when the total is unknown.
fn percent_of(p: u64, mem_total: Option<u64>) -> u64 {
    mem_total.map_or(u64::MAX, |t| {
        u64::try_from(u128::from(t) * u128::from(p) / 100).unwrap_or(u64::MAX)
    })
}

/// An amount of memory as the config writes it: bytes, a quantity
/// (`"48Gi"`) or a percentage of the host's `MemTotal` (`"90%"`, which
/// is unbounded when MemTotal cannot be read). `field` names it in errors.
pub(crate) fn memory_amount(
    field: &str,
    value: &MemoryCommit,
    mem_total: Option<u64>,
) -> Result<u64, String> {
    match value {
        MemoryCommit::Bytes(b) => Ok(*b),
        MemoryCommit::Text(t) => match t.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<u64>() {
                Ok(p) if (1..=1000).contains(&p) => Ok(percent_of(p, mem_total)),
                _ => Err(format!(
                    "{field} {t:?}: a percentage of MemTotal is 1% to 1000%"
                )),
            },
            None => atelet_api::parse_bytes(t).map_err(|e| format!("{field}: {e}")),
        },
    }
}

/// The host's `MemTotal`, in bytes, if `/proc/meminfo` says.
pub(crate) fn host_mem_total() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_total(&t))
}

/// The path with symlinks resolved (so a link cannot lead out of an
/// allowed directory, nor into the daemon's own files). Where it does not
/// exist (yet), its longest existing ancestor is resolved and the rest
/// appended, lexically cleaned. A relative path is taken from the current
/// directory, as the daemon opens it.
fn resolve(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut clean = PathBuf::from("/");
    for c in absolute.components() {
        match c {
            Component::Normal(n) => clean.push(n),
            Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    let mut existing = clean.clone();
    let mut missing = Vec::new();
    while let Some(name) = existing.file_name().map(|n| n.to_os_string()) {
        existing.pop();
        missing.push(name);
        if let Ok(mut p) = std::fs::canonicalize(&existing) {
            p.extend(missing.iter().rev());
            return p;
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(image: &str, sc: serde_json::Value) -> CreateActorRequest {
        let mut c = json!({"name": "app", "image": image, "command": ["/bin/sh"]});
        if !sc.is_null() {
            c["securityContext"] = sc;
        }
        serde_json::from_value(json!({
            "id": "a", "template": {"namespace": "d", "name": "t"},
            "spec": {"containers": [c]}
        }))
        .unwrap()
    }

    fn policy(toml_text: &str) -> AdmissionPolicy {
        AdmissionPolicy::from_config(&toml::from_str(toml_text).unwrap()).unwrap()
    }

    #[test]
    fn an_exec_as_root_is_refused_where_root_is() {
        let strict = policy("allow_run_as_root = false");
        assert_eq!(
            strict.check_exec_user(0, true).unwrap_err().rule,
            "allow_run_as_root"
        );
        assert!(strict
            .check_exec_user(0, false)
            .unwrap_err()
            .message
            .contains("the container runs as root"));
        assert!(strict.check_exec_user(1000, true).is_ok());
        assert!(policy("").check_exec_user(0, true).is_ok());
    }

    #[test]
    fn defaults_allow_dockers_set_and_refuse_net_admin() {
        let p = AdmissionPolicy::default();
        let ok = req(
            "dir:/var/lib/images/busybox",
            json!({"capabilities": {"add": ["setuid", "CAP_SETGID"]}}),
        );
        p.check(&ok).unwrap();
        let bad = req(
            "dir:/var/lib/images/busybox",
            json!({"capabilities": {"add": ["SETUID", "NET_ADMIN"]}}),
        );
        let e = p.check(&bad).unwrap_err();
        assert_eq!(e.rule, "allowed_capabilities");
        assert!(e.message.contains("add[1]: CAP_NET_ADMIN"), "{e}");
        assert!(e
            .to_string()
            .starts_with("refused by node policy allowed_capabilities"));
    }

    #[test]
    fn all_allows_every_capability() {
        let p = policy("allowed_capabilities = [\"ALL\"]\nimage_dirs = [\"/\"]");
        p.check(&req(
            "dir:/x",
            json!({"capabilities": {"add": ["SYS_ADMIN"]}}),
        ))
        .unwrap();
    }

    #[test]
    fn run_as_root_can_be_refused() {
        let p = policy("allow_run_as_root = false\nimage_dirs = [\"/srv\"]");
        for sc in [serde_json::Value::Null, json!({}), json!({"runAsUser": 0})] {
            let e = p.check(&req("dir:/srv/r", sc)).unwrap_err();
            assert_eq!(e.rule, "allow_run_as_root");
        }
        p.check(&req("dir:/srv/r", json!({"runAsUser": 1000})))
            .unwrap();
    }

    #[test]
    fn memory_commit_takes_bytes_quantities_and_percentages() {
        let total = Some(1000 << 20);
        assert_eq!(memory_commit(None, total), Ok(900 << 20));
        assert_eq!(memory_commit(None, None), Ok(u64::MAX));
        let t = |s: &str| MemoryCommit::Text(s.to_string());
        assert_eq!(memory_commit(Some(&t("50%")), total), Ok(500 << 20));
        assert_eq!(memory_commit(Some(&t("150%")), total), Ok(1500 << 20));
        assert_eq!(memory_commit(Some(&t("256Mi")), total), Ok(256 << 20));
        assert_eq!(memory_commit(Some(&MemoryCommit::Bytes(7)), total), Ok(7));
        for bad in ["0%", "x%", "lots", "-1Gi"] {
            let e = memory_commit(Some(&t(bad)), total).unwrap_err();
            assert!(e.starts_with("policy.max_memory_commit"), "{e}");
        }
        assert_eq!(mem_total("MemTotal:       65536 kB\n"), Some(64 << 20));
        let p = policy("max_memory_commit = \"200Mi\"\nimage_dirs = [\"/srv\"]");
        assert_eq!(p.max_memory_commit(), 200 << 20);
        let p = policy("max_memory_commit = 1000\nimage_dirs = [\"/srv\"]");
        assert_eq!(p.max_memory_commit(), 1000);
    }

    #[test]
    fn the_memory_commit_refusal_names_the_rule_and_the_numbers() {
        let p = policy("max_memory_commit = \"200Mi\"\nimage_dirs = [\"/srv\"]");
        p.check_memory_commit("a", 128 << 20, Some(64 << 20))
            .unwrap();
        p.check_memory_commit("a", 1 << 40, None).unwrap();
        let e = p
            .check_memory_commit("b", 128 << 20, Some(128 << 20))
            .unwrap_err();
        assert_eq!(e.rule, "max_memory_commit");
        assert_eq!(
            e.message,
            "actor b asks for a memory limit of 134217728 bytes (128Mi); running actors already hold 134217728 bytes (128Mi) of the node's 209715200 bytes (200Mi), and 268435456 bytes (256Mi) would exceed it"
        );
    }

    #[test]
    fn require_limits_refuses_a_container_without_a_memory_limit() {
        let p = policy("require_limits = true\nimage_dirs = [\"/srv\"]");
        let mut r = req("dir:/srv/r", serde_json::Value::Null);
        let e = p.check(&r).unwrap_err();
        assert_eq!(e.rule, "require_limits");
        assert!(
            e.message
                .starts_with("spec.containers[0].resources.limits.memory"),
            "{e}"
        );
        if let Some(spec) = r.spec.as_mut() {
            spec.containers[0].resources =
                Some(serde_json::from_value(json!({"limits": {"cpu": "1"}})).unwrap());
        }
        assert_eq!(p.check(&r).unwrap_err().rule, "require_limits");
        if let Some(spec) = r.spec.as_mut() {
            spec.containers[0].resources =
                Some(serde_json::from_value(json!({"limits": {"memory": "64Mi"}})).unwrap());
        }
        p.check(&r).unwrap();
        AdmissionPolicy::default()
            .check(&req("dir:/var/lib/images/x", serde_json::Value::Null))
            .unwrap();
    }

    #[test]
    fn max_actors_is_enforced() {
        let p = policy("max_actors = 2\nimage_dirs = [\"/srv\"]");
        p.check_count(1).unwrap();
        assert_eq!(p.check_count(2).unwrap_err().rule, "max_actors");
    }

    #[test]
    fn images_must_live_in_the_allowed_dirs_even_through_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("images");
        std::fs::create_dir_all(allowed.join("busybox")).unwrap();
        std::os::unix::fs::symlink("/etc", allowed.join("sneaky")).unwrap();
        let p = policy(&format!("image_dirs = [\"{}\"]", allowed.display()));
        let ok = format!("dir:{}/busybox", allowed.display());
        p.check(&req(&ok, serde_json::Value::Null)).unwrap();
        for bad in [
            "dir:/etc".to_string(),
            format!("dir:{}/sneaky", allowed.display()),
            "oci:/nonexistent/layout:latest".to_string(),
            format!("dir:{}-evil/x", allowed.display()),
        ] {
            let e = p.check(&req(&bad, serde_json::Value::Null)).unwrap_err();
            assert_eq!(e.rule, "image_dirs", "{bad}");
        }
    }

    /// A node laid out as in the defect report, the image dirs apart from
    /// the state dir: `<root>/images` allowed, the state dir (with a
    /// snapshot), the socket and the config elsewhere under `<root>`.
    struct Node {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        policy: AdmissionPolicy,
    }

    fn node(image_dirs: &[&str]) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let snap = root.join("state/snapshots/a/s1");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("checkpoint.img"), "memory").unwrap();
        std::fs::create_dir_all(root.join("images/busybox")).unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir_all(root.join("etc/atelet")).unwrap();
        std::fs::write(root.join("etc/atelet/config.toml"), "").unwrap();
        let dirs: Vec<String> = image_dirs
            .iter()
            .map(|d| format!("{:?}", root.join(d).display().to_string()))
            .collect();
        let policy = policy(&format!("image_dirs = [{}]", dirs.join(", ")))
            .protect(DaemonPaths {
                state_dir: &root.join("state"),
                socket: &root.join("run/atelet.sock"),
                config: Some(&root.join("etc/atelet/config.toml")),
            })
            .unwrap();
        Node {
            _tmp: tmp,
            root,
            policy,
        }
    }

    impl Node {
        fn rule(&self, reference: &str) -> Option<&'static str> {
            let r = reference.replace("<root>", &self.root.display().to_string());
            self.policy
                .check(&req(&r, serde_json::Value::Null))
                .err()
                .map(|e| {
                    assert!(e.message.contains("spec.containers[0].image"), "{e}");
                    e.rule
                })
        }
    }

    #[test]
    fn no_image_may_point_into_or_around_the_state_dir() {
        let n = node(&["images"]);
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(n.root.join(target), n.root.join("images").join(name))
                .unwrap()
        };
        link("state", "sneaky");
        link("state/snapshots", "snaps");
        link("", "everything");
        assert_eq!(n.rule("dir:<root>/images/busybox"), None);
        for (bad, rule) in [
            // Named directly: state_dir, not image_dirs, whatever those say.
            ("dir:<root>/state", "state_dir"),
            ("dir:<root>/state/snapshots/a/s1", "state_dir"),
            ("oci:<root>/state/snapshots/a:latest", "state_dir"),
            (
                "oci-archive:<root>/state/snapshots/a/s1/checkpoint.img",
                "state_dir",
            ),
            ("oci-archive:<root>/state/not-yet-there.tar", "state_dir"),
            // Through symlinks inside an allowed dir.
            ("dir:<root>/images/sneaky", "state_dir"),
            ("dir:<root>/images/snaps/a", "state_dir"),
            ("oci:<root>/images/sneaky/snapshots", "state_dir"),
            // Around it: the rootfs would show it.
            ("dir:<root>", "state_dir"),
            ("dir:<root>/images/everything", "state_dir"),
            ("dir:/", "state_dir"),
        ] {
            assert_eq!(n.rule(bad), Some(rule), "{bad}");
        }
        let e = n
            .policy
            .check_image("image", &format!("dir:{}/images/sneaky", n.root.display()))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "refused by node policy state_dir: image: {0}/state is the daemon's state dir {0}/state; no image may expose the daemon's own files, whatever image_dirs allows",
                n.root.canonicalize().unwrap().display()
            )
        );
    }

    #[test]
    fn no_image_may_expose_the_socket_or_the_config_file() {
        // Image dirs around the socket's and the config's dirs are allowed,
        // but not an image that is or contains one of those files.
        let n = node(&["images", "run", "etc"]);
        assert_eq!(n.rule("dir:<root>/run/rootfs"), None);
        assert_eq!(n.rule("dir:<root>/etc/rootfs"), None);
        for (bad, rule) in [
            ("dir:<root>/run", "socket"),
            ("oci-archive:<root>/run/atelet.sock", "socket"),
            ("dir:<root>/etc", "config"),
            ("dir:<root>/etc/atelet", "config"),
            ("oci-archive:<root>/etc/atelet/config.toml", "config"),
        ] {
            assert_eq!(n.rule(bad), Some(rule), "{bad}");
        }
        std::os::unix::fs::symlink(
            n.root.join("etc/atelet/config.toml"),
            n.root.join("images/c.tar"),
        )
        .unwrap();
        assert_eq!(n.rule("oci-archive:<root>/images/c.tar"), Some("config"));
    }

    #[test]
    fn image_dirs_around_or_inside_the_state_dir_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("x/state")).unwrap();
        std::os::unix::fs::symlink(root.join("x"), root.join("link")).unwrap();
        let protect = |dir: &Path, state: &Path| {
            policy(&format!("image_dirs = [{:?}]", dir.display().to_string())).protect(
                DaemonPaths {
                    state_dir: state,
                    socket: Path::new("/run/atelet/atelet.sock"),
                    config: None,
                },
            )
        };
        let x = root.join("x");
        let state = root.join("x/state");
        for (dir, state, how) in [
            (x.clone(), state.clone(), "contains"),
            (state.clone(), state.clone(), "is"),
            (state.join("images"), state.clone(), "is inside"),
            // Through a symlink, and for a state dir not created yet.
            (root.join("link"), state.clone(), "contains"),
            (x.clone(), root.join("link/new-state"), "contains"),
        ] {
            let err = protect(&dir, &state).unwrap_err();
            let resolved = |p: &Path| resolve(p).display().to_string();
            assert!(
                err.starts_with(&format!(
                    "policy.image_dirs: {} {how} the state dir {}",
                    resolved(&dir),
                    resolved(&state)
                )),
                "{err}"
            );
        }
        protect(&root.join("images"), &state).unwrap();
    }

    #[test]
    fn bad_policy_configs_are_errors() {
        let c: PolicyConfig = toml::from_str("allowed_capabilities = [\"WARP\"]").unwrap();
        assert!(AdmissionPolicy::from_config(&c)
            .unwrap_err()
            .contains("WARP"));
        let c: PolicyConfig = toml::from_str("image_dirs = [\"relative\"]").unwrap();
        assert!(AdmissionPolicy::from_config(&c).is_err());
    }
}
