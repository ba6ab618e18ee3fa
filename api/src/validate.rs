//! Validation of requests at the boundary (docs/openapi.yaml). Every message names
//! the field it is about, in the JSON path form a client can find.

use std::collections::HashSet;
use std::fmt;
use std::path::{Component, Path};

use crate::capabilities::{parse_capability, resolve_capabilities, CapabilityEntry};
use crate::image_ref::ImageRef;
use crate::types::{ActorSpec, Container, CreateActorRequest, NetworkMode, Probe, SecurityContext};

/// Largest uid/gid accepted: 2^32−2 (2^32−1 is the kernel's "no id").
pub const MAX_ID: i64 = 4_294_967_294;

/// Most containers an actor may have.
pub const MAX_CONTAINERS: usize = 16;

/// A container name the sandbox reserves for itself.
pub const RESERVED_CONTAINER_NAME: &str = "pause";

/// Most seconds a probe timing may name (an hour): a larger one is a mistake.
pub const MAX_PROBE_SECONDS: i64 = 3600;

/// Most attempts a probe may name.
pub const MAX_PROBE_ATTEMPTS: i64 = 1000;

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
    match (&req.restore_from, &req.spec) {
        (Some(from), None) => validate_restore_from(from, req.start),
        (Some(_), Some(_)) => Err(ValidationError::new(
            "spec",
            "must not be given with restoreFrom: the spec comes with the snapshot",
        )),
        (None, Some(spec)) => validate_spec(spec),
        (None, None) => Err(ValidationError::new("spec", "required")),
    }
}

/// `restoreFrom`: exactly one source; a snapshot id only with an actor.
fn validate_restore_from(from: &crate::RestoreFrom, start: Option<bool>) -> Result {
    if start == Some(true) {
        return Err(ValidationError::new(
            "start",
            "an actor made from a snapshot is created SUSPENDED: resume it",
        ));
    }
    match (&from.actor, &from.url) {
        (Some(actor), None) => {
            label("restoreFrom.actor", actor)?;
            if let Some(s) = &from.snapshot {
                if s != "latest" {
                    label("restoreFrom.snapshot", s)?;
                }
            }
            Ok(())
        }
        (None, Some(url)) => {
            if from.snapshot.is_some() {
                return Err(ValidationError::new(
                    "restoreFrom.snapshot",
                    "only with restoreFrom.actor: a URL names one snapshot",
                ));
            }
            if !url.starts_with("s3://") || url.len() <= "s3://".len() {
                return Err(ValidationError::new(
                    "restoreFrom.url",
                    format!("{url:?} is not an s3:// URL"),
                ));
            }
            Ok(())
        }
        _ => Err(ValidationError::new(
            "restoreFrom",
            "give exactly one of actor and url",
        )),
    }
}

/// Checks a spec.
pub fn validate_spec(spec: &ActorSpec) -> Result {
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
    validate_network(spec)?;
    validate_lifecycle(spec)
}

/// The longest idle window a lifecycle policy may name: a year. Longer is
/// a mistake (or "never", which is said by leaving the field out).
pub const MAX_LIFECYCLE_SECONDS: i64 = 365 * 24 * 3600;

/// Checks the idle policy: each window, when given, is 1 second to a year.
fn validate_lifecycle(spec: &ActorSpec) -> Result {
    let Some(l) = &spec.lifecycle else {
        return Ok(());
    };
    for (name, value) in [
        ("pauseAfterIdleSeconds", l.pause_after_idle_seconds),
        ("suspendAfterPausedSeconds", l.suspend_after_paused_seconds),
    ] {
        if let Some(v) = value {
            if !(1..=MAX_LIFECYCLE_SECONDS).contains(&v) {
                return Err(ValidationError::new(
                    format!("spec.lifecycle.{name}"),
                    format!("must be 1 to {MAX_LIFECYCLE_SECONDS} seconds (leave it out for never), got {v}"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks the network part of a spec: the mode's name, the ports (1-65535,
/// TCP, no containerPort or hostPort twice in the actor: the containers
/// share one network stack) and that every probe names a port of its own
/// container. A spec that asks for mode `none` itself may have neither
/// ports nor probes; one that leaves the mode to the node is checked by
/// the daemon, which knows the default ([`validate_needs_no_network`]).
fn validate_network(spec: &ActorSpec) -> Result {
    if let Some(n) = &spec.network {
        let mode = n
            .mode
            .parse::<NetworkMode>()
            .map_err(|m| ValidationError::new("spec.network.mode", m))?;
        if mode == NetworkMode::None {
            validate_needs_no_network(spec)?;
        }
    }
    let mut container_ports = HashSet::new();
    let mut host_ports = HashSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, p) in c.ports.iter().enumerate() {
            let f = format!("spec.containers[{i}].ports[{j}]");
            let port = port_number(&format!("{f}.containerPort"), p.container_port)?;
            if !container_ports.insert(port) {
                return Err(ValidationError::new(
                    format!("{f}.containerPort"),
                    format!("containerPort {port} is declared twice in this actor (its containers share one network)"),
                ));
            }
            if let Some(h) = p.host_port {
                let h = port_number(&format!("{f}.hostPort"), h)?;
                if !host_ports.insert(h) {
                    return Err(ValidationError::new(
                        format!("{f}.hostPort"),
                        format!("hostPort {h} is published twice in this actor"),
                    ));
                }
            }
            match p.protocol.as_deref() {
                None | Some("TCP") => {}
                Some(proto @ ("UDP" | "SCTP")) => {
                    return Err(ValidationError::new(
                        format!("{f}.protocol"),
                        format!("{proto:?} is not supported yet: only \"TCP\""),
                    ))
                }
                Some(other) => {
                    return Err(ValidationError::new(
                        format!("{f}.protocol"),
                        format!("unknown protocol {other:?}; expected \"TCP\""),
                    ))
                }
            }
        }
        if let Some(probe) = &c.readiness_probe {
            validate_probe(&format!("spec.containers[{i}].readinessProbe"), probe, c)?;
        }
    }
    Ok(())
}

/// Checks a TCP port number: 1-65535.
fn port_number(field: &str, value: i64) -> Result<u16> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            ValidationError::new(field, format!("{value} is not a port: expected 1-65535"))
        })
}

fn validate_probe(field: &str, probe: &Probe, c: &Container) -> Result {
    let port = match (&probe.http_get, &probe.tcp_socket) {
        (Some(h), None) => {
            if let Some(path) = &h.path {
                if !path.starts_with('/') || path.chars().any(|ch| ch.is_control() || ch == ' ') {
                    return Err(ValidationError::new(
                        format!("{field}.httpGet.path"),
                        format!("{path:?} must start with '/' and contain no spaces or control characters"),
                    ));
                }
            }
            (format!("{field}.httpGet.port"), h.port)
        }
        (None, Some(t)) => (format!("{field}.tcpSocket.port"), t.port),
        _ => {
            return Err(ValidationError::new(
                field,
                "exactly one of httpGet and tcpSocket is required",
            ))
        }
    };
    let number = port_number(&port.0, port.1)?;
    if !c
        .ports
        .iter()
        .any(|p| p.container_port == i64::from(number))
    {
        return Err(ValidationError::new(
            port.0,
            format!("port {number} is not among this container's ports (containerPort)"),
        ));
    }
    for (name, value, min, max) in [
        (
            "initialDelaySeconds",
            probe.initial_delay_seconds,
            0,
            MAX_PROBE_SECONDS,
        ),
        ("periodSeconds", probe.period_seconds, 1, MAX_PROBE_SECONDS),
        (
            "timeoutSeconds",
            probe.timeout_seconds,
            1,
            MAX_PROBE_SECONDS,
        ),
        (
            "failureThreshold",
            probe.failure_threshold,
            1,
            MAX_PROBE_ATTEMPTS,
        ),
    ] {
        if let Some(v) = value {
            if !(min..=max).contains(&v) {
                return Err(ValidationError::new(
                    format!("{field}.{name}"),
                    format!("{v} is out of range: expected {min} to {max}"),
                ));
            }
        }
    }
    Ok(())
}

/// Refuses ports and readiness probes in a spec that will have no network
/// (mode `none`, asked for or the node's default): nothing could reach them.
pub fn validate_needs_no_network(spec: &ActorSpec) -> Result {
    for (i, c) in spec.containers.iter().enumerate() {
        if !c.ports.is_empty() {
            return Err(ValidationError::new(
                format!("spec.containers[{i}].ports"),
                "ports need network mode \"bridge\" (this actor's mode is \"none\")",
            ));
        }
        if c.readiness_probe.is_some() {
            return Err(ValidationError::new(
                format!("spec.containers[{i}].readinessProbe"),
                "a readiness probe needs network mode \"bridge\" (this actor's mode is \"none\")",
            ));
        }
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
    if let Some(r) = &c.resources {
        crate::resources::validate_resources(&format!("{field}.resources"), r)?;
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

    /// The base request with `ports` on its container.
    fn with_ports(ports: serde_json::Value) -> serde_json::Value {
        with(&["spec", "containers", "0", "ports"], ports)
    }

    /// The base request with port 8080 and `probe` on its container.
    fn with_probe(probe: serde_json::Value) -> serde_json::Value {
        let mut v = with_ports(json!([{"containerPort": 8080}]));
        v["spec"]["containers"][0]["readinessProbe"] = probe;
        v
    }

    /// Asserts that `v` is refused naming exactly `field`.
    #[track_caller]
    fn refused(v: serde_json::Value, field: &str) -> String {
        let err = check(v.clone()).unwrap_err();
        assert!(err.starts_with(&format!("{field}: ")), "{v}: {err}");
        err
    }

    /// A second container, named `name`, with `ports`.
    fn second(name: &str, ports: serde_json::Value) -> serde_json::Value {
        let mut c = base()["spec"]["containers"][0].clone();
        c["name"] = json!(name);
        c["ports"] = ports;
        c
    }

    #[test]
    fn ports_are_accepted_with_and_without_a_host_port_and_protocol() {
        check(with_ports(json!([
            {"containerPort": 1},
            {"containerPort": 8080, "hostPort": 18080},
            {"containerPort": 65535, "hostPort": 65535, "protocol": "TCP"},
        ])))
        .unwrap();
        let mut v = with_ports(json!([{"containerPort": 80, "hostPort": 8080}]));
        v["spec"]["containers"].as_array_mut().unwrap().push(second(
            "side",
            json!([{"containerPort": 81, "hostPort": 8081}]),
        ));
        check(v).unwrap();
    }

    #[test]
    fn port_numbers_out_of_range_are_refused() {
        for bad in [0, -1, 65536, i64::MAX] {
            let err = refused(
                with_ports(json!([{"containerPort": bad}])),
                "spec.containers[0].ports[0].containerPort",
            );
            assert!(err.contains(&bad.to_string()), "{err}");
            refused(
                with_ports(json!([{"containerPort": 8080, "hostPort": bad}])),
                "spec.containers[0].ports[0].hostPort",
            );
        }
        // The index of the bad entry is named.
        refused(
            with_ports(json!([{"containerPort": 80}, {"containerPort": 81, "hostPort": 70000}])),
            "spec.containers[0].ports[1].hostPort",
        );
    }

    #[test]
    fn a_container_port_is_declared_once_in_the_actor() {
        let err = refused(
            with_ports(json!([{"containerPort": 8080}, {"containerPort": 8080}])),
            "spec.containers[0].ports[1].containerPort",
        );
        assert!(err.contains("twice"), "{err}");
        // The containers share one network stack.
        let mut v = with_ports(json!([{"containerPort": 8080}]));
        v["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(second("side", json!([{"containerPort": 8080}])));
        refused(v, "spec.containers[1].ports[0].containerPort");
    }

    #[test]
    fn a_host_port_is_published_once_in_the_actor() {
        let err = refused(
            with_ports(json!([
                {"containerPort": 80, "hostPort": 8080},
                {"containerPort": 81, "hostPort": 8080},
            ])),
            "spec.containers[0].ports[1].hostPort",
        );
        assert!(err.contains("twice"), "{err}");
        let mut v = with_ports(json!([{"containerPort": 80, "hostPort": 8080}]));
        v["spec"]["containers"].as_array_mut().unwrap().push(second(
            "side",
            json!([{"containerPort": 81, "hostPort": 8080}]),
        ));
        refused(v, "spec.containers[1].ports[0].hostPort");
    }

    #[test]
    fn only_tcp_is_a_protocol() {
        for bad in ["UDP", "SCTP", "tcp", "", "HTTP"] {
            let err = refused(
                with_ports(json!([{"containerPort": 53, "protocol": bad}])),
                "spec.containers[0].ports[0].protocol",
            );
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        check(with_ports(
            json!([{"containerPort": 53, "protocol": "TCP"}]),
        ))
        .unwrap();
        check(with_ports(json!([{"containerPort": 53}]))).unwrap();
    }

    #[test]
    fn lifecycle_windows_are_a_second_to_a_year() {
        let lifecycle = |v| with(&["spec", "lifecycle"], v);
        check(lifecycle(json!({}))).unwrap();
        check(lifecycle(json!({
            "pauseAfterIdleSeconds": 2, "suspendAfterPausedSeconds": 3, "wakeOnConnect": false
        })))
        .unwrap();
        refused(
            lifecycle(json!({"pauseAfterIdleSeconds": 0})),
            "spec.lifecycle.pauseAfterIdleSeconds",
        );
        refused(
            lifecycle(json!({"suspendAfterPausedSeconds": MAX_LIFECYCLE_SECONDS + 1})),
            "spec.lifecycle.suspendAfterPausedSeconds",
        );
        assert!(check(lifecycle(json!({"pauseAfterIdle": 2}))).is_err());
        assert!(check(lifecycle(json!({"wakeOnConnect": "yes"}))).is_err());
    }

    #[test]
    fn network_modes_are_known_by_name() {
        for mode in ["bridge", "none"] {
            check(with(&["spec", "network"], json!({"mode": mode}))).unwrap();
        }
        for bad in ["host", "Bridge", ""] {
            let err = refused(
                with(&["spec", "network"], json!({"mode": bad})),
                "spec.network.mode",
            );
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        // The mode is required, and nothing else may be there.
        assert!(check(with(&["spec", "network"], json!({}))).is_err());
        let err = check(with(
            &["spec", "network"],
            json!({"mode": "bridge", "ip": "10.0.0.1"}),
        ))
        .unwrap_err();
        assert!(err.contains("unknown field `ip`"), "{err}");
    }

    #[test]
    fn good_probes_are_accepted() {
        check(with_probe(json!({"tcpSocket": {"port": 8080}}))).unwrap();
        check(with_probe(json!({"httpGet": {"port": 8080}}))).unwrap();
        check(with_probe(json!({
            "httpGet": {"path": "/healthz?x=1", "port": 8080},
            "initialDelaySeconds": 0,
            "periodSeconds": 1,
            "timeoutSeconds": 1,
            "failureThreshold": 1,
        })))
        .unwrap();
        check(with_probe(json!({
            "tcpSocket": {"port": 8080},
            "initialDelaySeconds": MAX_PROBE_SECONDS,
            "periodSeconds": MAX_PROBE_SECONDS,
            "timeoutSeconds": MAX_PROBE_SECONDS,
            "failureThreshold": MAX_PROBE_ATTEMPTS,
        })))
        .unwrap();
    }

    #[test]
    fn a_probe_names_a_port_of_its_own_container() {
        let err = refused(
            with_probe(json!({"tcpSocket": {"port": 9090}})),
            "spec.containers[0].readinessProbe.tcpSocket.port",
        );
        assert!(err.contains("9090"), "{err}");
        refused(
            with_probe(json!({"httpGet": {"port": 9090}})),
            "spec.containers[0].readinessProbe.httpGet.port",
        );
        refused(
            with_probe(json!({"httpGet": {"port": 0}})),
            "spec.containers[0].readinessProbe.httpGet.port",
        );
        // A container without ports has nothing to probe.
        refused(
            with(
                &["spec", "containers", "0", "readinessProbe"],
                json!({"tcpSocket": {"port": 8080}}),
            ),
            "spec.containers[0].readinessProbe.tcpSocket.port",
        );
        // Another container's port is not this one's.
        let mut v = with_ports(json!([{"containerPort": 8080}]));
        let mut side = second("side", json!([{"containerPort": 9090}]));
        side["readinessProbe"] = json!({"tcpSocket": {"port": 8080}});
        v["spec"]["containers"].as_array_mut().unwrap().push(side);
        refused(v, "spec.containers[1].readinessProbe.tcpSocket.port");
    }

    #[test]
    fn a_probe_has_exactly_one_action() {
        for probe in [
            json!({"httpGet": {"port": 8080}, "tcpSocket": {"port": 8080}}),
            json!({}),
            json!({"periodSeconds": 5}),
        ] {
            let err = refused(with_probe(probe), "spec.containers[0].readinessProbe");
            assert!(
                err.contains("exactly one of httpGet and tcpSocket"),
                "{err}"
            );
        }
    }

    #[test]
    fn probe_timings_are_range_checked() {
        for (name, bad) in [
            ("periodSeconds", 0),
            ("periodSeconds", -1),
            ("periodSeconds", MAX_PROBE_SECONDS + 1),
            ("timeoutSeconds", 0),
            ("timeoutSeconds", -1),
            ("failureThreshold", 0),
            ("failureThreshold", MAX_PROBE_ATTEMPTS + 1),
            ("initialDelaySeconds", -1),
            ("initialDelaySeconds", MAX_PROBE_SECONDS + 1),
        ] {
            let err = refused(
                with_probe(json!({"tcpSocket": {"port": 8080}, name: bad})),
                &format!("spec.containers[0].readinessProbe.{name}"),
            );
            assert!(err.contains("out of range"), "{name}={bad}: {err}");
        }
    }

    #[test]
    fn an_http_probe_path_is_absolute() {
        for bad in ["healthz", "", "/a b", "/a\nb"] {
            refused(
                with_probe(json!({"httpGet": {"path": bad, "port": 8080}})),
                "spec.containers[0].readinessProbe.httpGet.path",
            );
        }
        check(with_probe(json!({"httpGet": {"path": "/", "port": 8080}}))).unwrap();
    }

    #[test]
    fn without_a_network_there_are_no_ports_or_probes() {
        let spec = |v: serde_json::Value| -> ActorSpec {
            let bytes = serde_json::to_vec(&v["spec"]).unwrap();
            crate::from_json_slice(&bytes).unwrap()
        };
        validate_needs_no_network(&spec(base())).unwrap();
        let e = validate_needs_no_network(&spec(with_ports(json!([{"containerPort": 80}]))))
            .unwrap_err();
        assert_eq!(e.field, "spec.containers[0].ports");
        assert!(e.message.contains("\"bridge\""), "{e}");
        // A probe without ports: the probe is named.
        let e = validate_needs_no_network(&spec(with(
            &["spec", "containers", "0", "readinessProbe"],
            json!({"tcpSocket": {"port": 80}}),
        )))
        .unwrap_err();
        assert_eq!(e.field, "spec.containers[0].readinessProbe");
        // A spec that asks for no network itself is refused at create.
        let mut v = with_ports(json!([{"containerPort": 80}]));
        v["spec"]["network"] = json!({"mode": "none"});
        let err = refused(v.clone(), "spec.containers[0].ports");
        assert!(err.contains("\"bridge\""), "{err}");
        v["spec"]["network"] = json!({"mode": "bridge"});
        check(v).unwrap();
        let mut v = with(
            &["spec", "containers", "0", "readinessProbe"],
            json!({"tcpSocket": {"port": 80}}),
        );
        v["spec"]["network"] = json!({"mode": "none"});
        refused(v, "spec.containers[0].readinessProbe");
        // In the second container.
        let mut v = base();
        v["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(second("side", json!([{"containerPort": 80}])));
        let e = validate_needs_no_network(&spec(v)).unwrap_err();
        assert_eq!(e.field, "spec.containers[1].ports");
    }

    #[test]
    fn status_names_parse() {
        assert_eq!(
            "RUNNING".parse::<ActorStatus>().unwrap(),
            ActorStatus::Running
        );
        assert!("running".parse::<ActorStatus>().is_err());
    }

    fn from(restore: serde_json::Value, extra: serde_json::Value) -> Result {
        let mut v = json!({
            "id": "copy-1",
            "template": {"namespace": "default", "name": "counter"},
            "restoreFrom": restore
        });
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        let req: CreateActorRequest = serde_json::from_value(v).unwrap();
        validate_create(&req)
    }

    #[test]
    fn restore_from_takes_one_source_and_no_spec() {
        assert!(from(json!({"actor": "a"}), json!({})).is_ok());
        assert!(from(json!({"actor": "a", "snapshot": "latest"}), json!({})).is_ok());
        assert!(from(json!({"actor": "a", "snapshot": "snap-000002"}), json!({})).is_ok());
        assert!(from(json!({"url": "s3://b/p/a/snap-000001"}), json!({})).is_ok());
        assert!(from(json!({"actor": "a"}), json!({"start": false})).is_ok());
        for (restore, extra, field) in [
            (json!({}), json!({}), "restoreFrom"),
            (
                json!({"actor": "a", "url": "s3://b/p"}),
                json!({}),
                "restoreFrom",
            ),
            (json!({"actor": "A_"}), json!({}), "restoreFrom.actor"),
            (
                json!({"actor": "a", "snapshot": "../x"}),
                json!({}),
                "restoreFrom.snapshot",
            ),
            (json!({"url": "http://x/y"}), json!({}), "restoreFrom.url"),
            (
                json!({"url": "s3://b/p", "snapshot": "s"}),
                json!({}),
                "restoreFrom.snapshot",
            ),
            (json!({"actor": "a"}), json!({"start": true}), "start"),
            (
                json!({"actor": "a"}),
                json!({"spec": {"containers": []}}),
                "spec",
            ),
        ] {
            let err = from(restore.clone(), extra).unwrap_err();
            assert_eq!(err.field, field, "{restore}: {err}");
        }
        // Without restoreFrom, a spec is required.
        let mut v = base();
        v.as_object_mut().unwrap().remove("spec");
        let req: CreateActorRequest = serde_json::from_value(v).unwrap();
        assert_eq!(validate_create(&req).unwrap_err().field, "spec");
    }
}
