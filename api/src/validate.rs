//! Validation of requests at the boundary (docs/openapi.yaml). Every message names
//! the field it is about, in the JSON path form a client can find.

use std::collections::HashSet;
use std::fmt;
use std::path::{Component, Path};

use crate::capabilities::{parse_capability, resolve_capabilities, CapabilityEntry};
use crate::image_ref::ImageRef;
use crate::types::{Container, CreateActorRequest, SecurityContext};

/// Largest uid/gid accepted: 2^32−2 (2^32−1 is the kernel's "no id").
pub const MAX_ID: i64 = 4_294_967_294;

/// Most containers an actor may have.
pub const MAX_CONTAINERS: usize = 16;

/// A container name the sandbox reserves for itself.
pub const RESERVED_CONTAINER_NAME: &str = "pause";

/// Where the identity dir is mounted in every container.
pub const IDENTITY_MOUNT: &str = "/run/ate";

/// A field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// JSON path of the field, e.g. `spec.containers[0].name`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ValidationError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}

type Result<T = ()> = std::result::Result<T, ValidationError>;

/// A DNS-1123 label: 1–63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain: ≤253 characters, dot-separated labels.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn label(field: &str, value: &str) -> Result {
    if is_dns_label(value) {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "{value:?} is not a DNS-1123 label (1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit)"
            ),
        ))
    }
}

/// Checks an actor id, as given in a body or a path.
pub fn validate_actor_id(id: &str) -> Result {
    label("id", id)
}

/// Checks an absolute path without `..` and without NUL.
fn absolute_clean_path(field: &str, path: &str) -> Result {
    if !path.starts_with('/') {
        return Err(ValidationError::new(
            field,
            format!("{path:?} must be an absolute path"),
        ));
    }
    if path.contains('\0') {
        return Err(ValidationError::new(field, "must not contain NUL"));
    }
    if Path::new(path)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(ValidationError::new(
            field,
            format!("{path:?} must not contain '..'"),
        ));
    }
    Ok(())
}

fn no_nul(field: &str, value: &str) -> Result {
    if value.contains('\0') {
        Err(ValidationError::new(field, "must not contain NUL"))
    } else {
        Ok(())
    }
}

/// Checks the program a container runs, `argv0` (the first word of its
/// command), the way runsc will look for it, so that a command runsc cannot
/// start is refused at create (400) rather than failing the start (500)
/// after the actor was recorded. It must not be empty; a bare name (no `/`)
/// is searched in PATH, so when `path` (the PATH value the process gets and
/// what set it, if known here) holds no directory the name cannot be found.
/// A name with a `/` is taken relative to the working directory, as by
/// `execvp`, and needs no PATH.
pub fn validate_program(field: &str, argv0: &str, path: Option<(&str, &str)>) -> Result {
    if argv0.is_empty() {
        return Err(ValidationError::new(
            field,
            "must not be empty: it names the program to run",
        ));
    }
    if let Some((value, set_by)) = path {
        if !argv0.contains('/') && value.split(':').all(str::is_empty) {
            return Err(ValidationError::new(
                field,
                format!(
                    "{argv0:?} is a bare program name but PATH (set by {set_by}) names no directory to find it in: give an absolute path or a PATH"
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a whole create request. Nothing is changed by validation; the
/// daemon only acts on a request that passed.
pub fn validate_create(req: &CreateActorRequest) -> Result {
    validate_actor_id(&req.id)?;
    label("template.namespace", &req.template.namespace)?;
    if !is_dns_subdomain(&req.template.name) {
        return Err(ValidationError::new(
            "template.name",
            format!("{:?} is not a DNS-1123 subdomain", req.template.name),
        ));
    }

    let spec = &req.spec;
    if spec.containers.is_empty() {
        return Err(ValidationError::new(
            "spec.containers",
            "at least one container is required",
        ));
    }
    if spec.containers.len() > MAX_CONTAINERS {
        return Err(ValidationError::new(
            "spec.containers",
            format!("at most {MAX_CONTAINERS} containers are allowed"),
        ));
    }

    let mut volumes = HashSet::new();
    for (i, vol) in spec.volumes.iter().enumerate() {
        let field = format!("spec.volumes[{i}]");
        label(&format!("{field}.name"), &vol.name)?;
        if !volumes.insert(vol.name.as_str()) {
            return Err(ValidationError::new(
                format!("{field}.name"),
                format!("duplicate volume name {:?}", vol.name),
            ));
        }
        if vol.durable_dir.is_none() {
            return Err(ValidationError::new(
                field,
                "a volume needs a source: durableDir",
            ));
        }
    }

    let mut names = HashSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let field = format!("spec.containers[{i}]");
        if !names.insert(c.name.as_str()) {
            return Err(ValidationError::new(
                format!("{field}.name"),
                format!("duplicate container name {:?}", c.name),
            ));
        }
        validate_container(&field, c, &volumes)?;
    }
    Ok(())
}

fn validate_container(field: &str, c: &Container, volumes: &HashSet<&str>) -> Result {
    label(&format!("{field}.name"), &c.name)?;
    if c.name == RESERVED_CONTAINER_NAME {
        return Err(ValidationError::new(
            format!("{field}.name"),
            "\"pause\" is reserved for the sandbox",
        ));
    }
    ImageRef::parse(&c.image).map_err(|m| ValidationError::new(format!("{field}.image"), m))?;
    for (j, arg) in c.command.iter().enumerate() {
        no_nul(&format!("{field}.command[{j}]"), arg)?;
    }
    for (j, env) in c.env.iter().enumerate() {
        let f = format!("{field}.env[{j}].name");
        if env.name.is_empty() {
            return Err(ValidationError::new(f, "must not be empty"));
        }
        if env.name.contains('=') {
            return Err(ValidationError::new(
                f,
                format!("{:?} must not contain '='", env.name),
            ));
        }
        no_nul(&f, &env.name)?;
        no_nul(&format!("{field}.env[{j}].value"), &env.value)?;
    }
    if let Some(argv0) = c.command.first() {
        // The spec's last PATH is the one the process gets; without one the
        // image's or the default PATH applies, which the daemon checks.
        let path = c
            .env
            .iter()
            .enumerate()
            .rev()
            .find(|(_, e)| e.name == "PATH")
            .map(|(j, e)| (e.value.as_str(), format!("{field}.env[{j}]")));
        validate_program(
            &format!("{field}.command[0]"),
            argv0,
            path.as_ref().map(|(v, by)| (*v, by.as_str())),
        )?;
    }
    if let Some(wd) = &c.working_dir {
        absolute_clean_path(&format!("{field}.workingDir"), wd)?;
    }
    if let Some(sc) = &c.security_context {
        validate_security_context(&format!("{field}.securityContext"), sc)?;
    }
    let mut paths = HashSet::new();
    for (j, m) in c.volume_mounts.iter().enumerate() {
        let f = format!("{field}.volumeMounts[{j}]");
        if !volumes.contains(m.name.as_str()) {
            return Err(ValidationError::new(
                format!("{f}.name"),
                format!("no volume named {:?} in spec.volumes", m.name),
            ));
        }
        let pf = format!("{f}.mountPath");
        absolute_clean_path(&pf, &m.mount_path)?;
        let normal = normalise(&m.mount_path);
        if reserved_mount_path(&normal) {
            return Err(ValidationError::new(
                pf,
                format!(
                    "{:?} is reserved (/, /proc, /dev, /sys and {IDENTITY_MOUNT} belong to the sandbox)",
                    m.mount_path
                ),
            ));
        }
        if !paths.insert(normal) {
            return Err(ValidationError::new(
                pf,
                format!("{:?} is mounted twice", m.mount_path),
            ));
        }
    }
    Ok(())
}

/// `/a//b/./c/` → `/a/b/c`.
fn normalise(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn reserved_mount_path(normal: &str) -> bool {
    normal == "/"
        || ["/proc", "/dev", "/sys", IDENTITY_MOUNT]
            .iter()
            .any(|r| normal == *r || normal.starts_with(&format!("{r}/")))
}

fn validate_security_context(field: &str, sc: &SecurityContext) -> Result {
    for (name, value) in [
        ("runAsUser", sc.run_as_user),
        ("runAsGroup", sc.run_as_group),
    ] {
        if let Some(v) = value {
            if !(0..=MAX_ID).contains(&v) {
                return Err(ValidationError::new(
                    format!("{field}.{name}"),
                    format!("{v} is out of range: must be between 0 and {MAX_ID}"),
                ));
            }
        }
    }
    if let Some(caps) = &sc.capabilities {
        for (list, entries) in [("add", &caps.add), ("drop", &caps.drop)] {
            for (k, entry) in entries.iter().enumerate() {
                let f = format!("{field}.capabilities.{list}[{k}]");
                match parse_capability(entry) {
                    Ok(CapabilityEntry::All) if list == "add" => {
                        return Err(ValidationError::new(
                            f,
                            "\"ALL\" may only be used in drop, not in add",
                        ))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(ValidationError::new(f, e.to_string())),
                }
            }
        }
    }
    // The resolver must agree with the per-entry checks above.
    resolve_capabilities(Some(sc))
        .map_err(|e| ValidationError::new(format!("{field}.capabilities"), e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;
    use serde_json::json;

    fn base() -> serde_json::Value {
        json!({
            "id": "counter-1",
            "template": {"namespace": "default", "name": "counter"},
            "spec": {"containers": [{
                "name": "app",
                "image": "dir:/srv/rootfs",
                "command": ["/bin/sh", "-c", "sleep 1"]
            }]}
        })
    }

    fn check(v: serde_json::Value) -> std::result::Result<(), String> {
        let bytes = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
        let req: CreateActorRequest = crate::from_json_slice(&bytes).map_err(|e| e.to_string())?;
        validate_create(&req).map_err(|e| e.to_string())
    }

    fn with(path: &[&str], value: serde_json::Value) -> serde_json::Value {
        let mut v = base();
        let mut cur = &mut v;
        for p in &path[..path.len() - 1] {
            cur = match p.parse::<usize>() {
                Ok(i) => &mut cur[i],
                Err(_) => &mut cur[*p],
            };
        }
        cur[path[path.len() - 1]] = value;
        v
    }

    #[test]
    fn the_design_example_is_valid() {
        let v = json!({
          "id": "counter-1",
          "template": {"namespace": "default", "name": "counter"},
          "spec": {
            "containers": [{
              "name": "app",
              "image": "oci:/var/lib/images/busybox:latest",
              "command": ["/bin/sh", "-c", "..."],
              "env": [{"name": "A", "value": "b"}],
              "workingDir": "/",
              "securityContext": {
                "capabilities": {"add": ["NET_ADMIN", "CAP_SETUID"], "drop": []},
                "runAsUser": 1000,
                "runAsGroup": 1000
              },
              "volumeMounts": [{"name": "data", "mountPath": "/data"}]
            }],
            "volumes": [{"name": "data", "durableDir": {}}]
          }
        });
        check(v).unwrap();
    }

    #[test]
    fn bad_actor_ids_are_rejected() {
        for id in [
            "../x",
            "UPPER",
            &"a".repeat(64),
            "",
            "-a",
            "a-",
            "a_b",
            "a.b",
        ] {
            let err = check(with(&["id"], json!(id))).unwrap_err();
            assert!(err.starts_with("id: "), "{id}: {err}");
        }
        check(with(&["id"], json!("a".repeat(63)))).unwrap();
    }

    #[test]
    fn template_fields_are_checked() {
        let err = check(with(&["template", "namespace"], json!("Default"))).unwrap_err();
        assert!(err.starts_with("template.namespace"), "{err}");
        check(with(&["template", "name"], json!("a.b-c"))).unwrap();
        let err = check(with(&["template", "name"], json!("a..b"))).unwrap_err();
        assert!(err.starts_with("template.name"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = check(with(
            &["spec", "containers", "0", "imagePullPolicy"],
            json!("x"),
        ))
        .unwrap_err();
        assert!(err.contains("unknown field `imagePullPolicy`"), "{err}");
        let err = check(with(&["extra"], json!(1))).unwrap_err();
        assert!(err.contains("unknown field `extra`"), "{err}");
    }

    #[test]
    fn container_names_must_be_unique_labels_and_not_pause() {
        let c = base()["spec"]["containers"][0].clone();
        let err = check(with(&["spec", "containers"], json!([c.clone(), c.clone()]))).unwrap_err();
        assert!(
            err.starts_with("spec.containers[1].name: duplicate"),
            "{err}"
        );
        let err = check(with(&["spec", "containers", "0", "name"], json!("pause"))).unwrap_err();
        assert!(err.contains("reserved"), "{err}");
        let err = check(with(&["spec", "containers", "0", "name"], json!("App"))).unwrap_err();
        assert!(err.starts_with("spec.containers[0].name"), "{err}");
        let err = check(with(&["spec", "containers"], json!([]))).unwrap_err();
        assert!(err.starts_with("spec.containers: "), "{err}");
    }

    #[test]
    fn env_names_are_checked() {
        for (name, want) in [("", "must not be empty"), ("A=B", "must not contain '='")] {
            let err = check(with(
                &["spec", "containers", "0", "env"],
                json!([{"name": name, "value": "x"}]),
            ))
            .unwrap_err();
            assert!(err.starts_with("spec.containers[0].env[0].name"), "{err}");
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn mount_paths_are_checked() {
        let mut v = with(
            &["spec", "volumes"],
            json!([{"name": "data", "durableDir": {}}]),
        );
        for (path, ok) in [
            ("/data", true),
            ("data", false),
            ("/a/../b", false),
            ("/", false),
            ("/proc/x", false),
            ("/run/ate", false),
            ("/run/ate2", true),
        ] {
            v["spec"]["containers"][0]["volumeMounts"] =
                json!([{"name": "data", "mountPath": path}]);
            let res = check(v.clone());
            assert_eq!(res.is_ok(), ok, "{path}: {res:?}");
            if let Err(e) = res {
                assert!(
                    e.starts_with("spec.containers[0].volumeMounts[0].mountPath"),
                    "{e}"
                );
            }
        }
        v["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "nope", "mountPath": "/x"}]);
        assert!(check(v).unwrap_err().contains("no volume named"));
    }

    #[test]
    fn run_as_ids_are_range_checked() {
        for (v, ok) in [
            (json!(0), true),
            (json!(1000), true),
            (json!(4294967294u64), true),
            (json!(4294967295u64), false),
            (json!(-1), false),
        ] {
            for f in ["runAsUser", "runAsGroup"] {
                let res = check(with(
                    &["spec", "containers", "0", "securityContext"],
                    json!({ f: v.clone() }),
                ));
                assert_eq!(res.is_ok(), ok, "{f}={v}: {res:?}");
                if let Err(e) = res {
                    assert!(e.contains(&format!("securityContext.{f}")), "{e}");
                }
            }
        }
    }

    #[test]
    fn unknown_capabilities_are_named() {
        let err = check(with(
            &["spec", "containers", "0", "securityContext"],
            json!({"capabilities": {"add": ["NET_ADMIN", "NET_ADMINN"]}}),
        ))
        .unwrap_err();
        assert!(
            err.starts_with("spec.containers[0].securityContext.capabilities.add[1]"),
            "{err}"
        );
        assert!(err.contains("NET_ADMINN"), "{err}");
    }

    #[test]
    fn image_references_are_checked() {
        let err = check(with(
            &["spec", "containers", "0", "image"],
            json!("busybox"),
        ))
        .unwrap_err();
        assert!(err.starts_with("spec.containers[0].image"), "{err}");
    }

    #[test]
    fn nul_bytes_are_rejected() {
        let err = check(with(
            &["spec", "containers", "0", "command"],
            json!(["/bin/sh", "a\u{0}b"]),
        ))
        .unwrap_err();
        assert!(err.starts_with("spec.containers[0].command[1]"), "{err}");
    }

    #[test]
    fn argv0_must_not_be_empty() {
        for cmd in [json!([""]), json!(["", "-c", "true"])] {
            let err = check(with(&["spec", "containers", "0", "command"], cmd)).unwrap_err();
            assert!(
                err.starts_with("spec.containers[0].command[0]: must not be empty"),
                "{err}"
            );
        }
        // An empty or absent command leaves it to the image (which the
        // daemon checks at create, knowing the image).
        check(with(&["spec", "containers", "0", "command"], json!([]))).unwrap();
        let mut v = base();
        v["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("command");
        check(v).unwrap();
    }

    #[test]
    fn a_bare_program_name_needs_a_path_to_be_found_in() {
        for (path, argv0, ok) in [
            ("", "sh", false),
            (":", "sh", false),
            ("/bin", "sh", true),
            ("::/bin", "sh", true),
            ("", "/bin/sh", true),
            ("", "./sh", true),
            ("", "bin/sh", true),
        ] {
            let mut v = with(&["spec", "containers", "0", "command"], json!([argv0]));
            v["spec"]["containers"][0]["env"] =
                json!([{"name": "A", "value": ""}, {"name": "PATH", "value": path}]);
            let res = check(v);
            assert_eq!(res.is_ok(), ok, "PATH={path:?} {argv0}: {res:?}");
            if let Err(e) = res {
                assert!(e.starts_with("spec.containers[0].command[0]: "), "{e}");
                assert!(e.contains("spec.containers[0].env[1]"), "{e}");
            }
        }
        // The last PATH of the spec is the one the process gets.
        let mut v = with(&["spec", "containers", "0", "command"], json!(["sh"]));
        v["spec"]["containers"][0]["env"] =
            json!([{"name": "PATH", "value": "/bin"}, {"name": "PATH", "value": ""}]);
        assert!(check(v).is_err());
        // Without a PATH in the spec, the image's or the default one is
        // used: only the daemon knows which.
        check(with(&["spec", "containers", "0", "command"], json!(["sh"]))).unwrap();
    }

    #[test]
    fn validate_program_names_where_path_came_from() {
        validate_program("f", "sh", None).unwrap();
        validate_program("f", "sh", Some(("/bin", "the image"))).unwrap();
        let e = validate_program("f", "sh", Some(("", "the image"))).unwrap_err();
        assert_eq!(e.field, "f");
        assert!(e.message.contains("the image"), "{e}");
        let e = validate_program("f", "", None).unwrap_err();
        assert!(e.message.contains("must not be empty"), "{e}");
    }

    #[test]
    fn dns_helpers() {
        assert!(is_dns_label("a"));
        assert!(is_dns_label("a-1"));
        assert!(!is_dns_label("a-"));
        assert!(is_dns_subdomain("a.b"));
        assert!(!is_dns_subdomain(".a"));
        assert!(!is_dns_subdomain(&"a.".repeat(130)));
    }

    #[test]
    fn volumes_need_unique_names_and_a_source() {
        let err = check(with(&["spec", "volumes"], json!([{"name": "d"}]))).unwrap_err();
        assert!(err.contains("durableDir"), "{err}");
        let err = check(with(
            &["spec", "volumes"],
            json!([{"name": "d", "durableDir": {}}, {"name": "d", "durableDir": {}}]),
        ))
        .unwrap_err();
        assert!(err.contains("duplicate volume"), "{err}");
    }

    #[test]
    fn status_names_parse() {
        assert_eq!(
            "RUNNING".parse::<ActorStatus>().unwrap(),
            ActorStatus::Running
        );
        assert!("running".parse::<ActorStatus>().is_err());
    }
}
