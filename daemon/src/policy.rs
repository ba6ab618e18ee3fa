//! The node admission policy (DESIGN §5): what a spec may ask of this node.
//! A refusal is 403 with a message naming the rule, decided before anything
//! is created.

use std::path::{Component, Path, PathBuf};

use atelet_api::capabilities::{parse_capability, Capability, CapabilityEntry};
use atelet_api::{CreateActorRequest, ImageRef};
use serde::Deserialize;

/// Docker's default capability set: what a spec may add unless the operator
/// allows more. (`NET_ADMIN` and `SYS_ADMIN` are not in it.)
pub const DEFAULT_ALLOWED_CAPABILITIES: [&str; 14] = [
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
pub const DEFAULT_IMAGE_DIRS: [&str; 1] = ["/var/lib/images"];

/// Actors a node holds by default.
pub const DEFAULT_MAX_ACTORS: usize = 1000;

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

/// The resolved policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// `None`: every capability.
    allowed_capabilities: Option<Vec<Capability>>,
    allow_run_as_root: bool,
    max_actors: usize,
    image_dirs: Vec<PathBuf>,
}

impl Default for AdmissionPolicy {
    fn default() -> Self {
        // The built-in lists are valid by construction.
        AdmissionPolicy::from_config(&PolicyConfig::default()).unwrap_or(AdmissionPolicy {
            allowed_capabilities: Some(Vec::new()),
            allow_run_as_root: true,
            max_actors: DEFAULT_MAX_ACTORS,
            image_dirs: Vec::new(),
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
        })
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
    /// (symlinks resolved). `field` names it in the message.
    pub fn check_image(&self, field: &str, reference: &str) -> Result<(), PolicyViolation> {
        let Ok(image) = ImageRef::parse(reference) else {
            // Validation refuses it with a better message.
            return Ok(());
        };
        let path = resolve(Path::new(image.path()));
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

/// The path with symlinks resolved where it exists (so a link cannot lead
/// out of an allowed directory), else lexically cleaned.
fn resolve(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
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
