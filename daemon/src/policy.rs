//! The node admission policy (docs/security.md): what a spec may ask of this node.
//! A refusal is 403 with a message naming the rule, decided before anything
//! is created.

use std::path::{Component, Path, PathBuf};

use atelet_api::capabilities::{parse_capability, Capability, CapabilityEntry};
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
}

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
        Ok(AdmissionPolicy {
            allowed_capabilities: caps,
            allow_run_as_root: c.allow_run_as_root.unwrap_or(true),
            max_actors: c.max_actors.unwrap_or(DEFAULT_MAX_ACTORS),
            image_dirs: dirs.iter().map(|d| resolve(d)).collect(),
            daemon_paths: Vec::new(),
        })
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
        let path = resolve(Path::new(image.path()));
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

    /// Checks a (validated) create request against the policy's rules on
    /// specs (the count is [`AdmissionPolicy::check_count`]).
    pub fn check(&self, req: &CreateActorRequest) -> Result<(), PolicyViolation> {
        for (i, c) in req.spec.containers.iter().enumerate() {
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
        }
        Ok(())
    }
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
