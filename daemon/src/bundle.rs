//! The OCI bundle builder: one `config.json` per actor, built with
//! oci-spec from the container spec, its securityContext and its image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use atelet_api::capabilities::{resolve_capabilities, CapabilityError};
use atelet_api::validate::IDENTITY_MOUNT;
use atelet_api::SandboxResources;
use atelet_api::{validate_program, Container, TemplateRef, ValidationError};
use oci_spec::runtime::{
    Capability as OciCapability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::fsutil::write_replace;
use crate::images::ImageConfig;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `PATH` every process gets unless the image or the spec sets one.
pub(crate) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Annotation keys carrying the actor's identity.
pub(crate) const ANNOTATION_ACTOR_ID: &str = "dev.atelet.actor-id";
/// See [`ANNOTATION_ACTOR_ID`].
pub(crate) const ANNOTATION_TEMPLATE: &str = "dev.atelet.template";

/// Errors of the bundle layer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BundleError {
    /// The spec cannot be expressed (it passed validation, so this is a bug
    /// or a gap such as a missing command).
    #[error("{0}")]
    Invalid(String),
    /// A capability name that validation should have refused.
    #[error("capabilities: {0}")]
    Capability(#[from] CapabilityError),
    /// oci-spec refused the spec.
    #[error("building config.json: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
    /// Writing the bundle failed.
    #[error("writing bundle {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl BundleError {
    /// Never the client's fault: a spec reaches the builder only after
    /// validation and [`check_process`] accepted it at create, so a spec
    /// the builder cannot express is a gap between those checks and the
    /// builder (a daemon bug), and a failed write is this host's.
    pub(crate) fn is_client_fault(&self) -> bool {
        match self {
            BundleError::Invalid(_)
            | BundleError::Capability(_)
            | BundleError::Oci(_)
            | BundleError::Io { .. } => false,
        }
    }
}

/// Everything the builder needs to know about one actor.
#[derive(Debug, Clone)]
pub(crate) struct BundleInput<'a> {
    /// Actor id (hostname, identity file, annotation).
    pub actor_id: &'a str,
    /// For the annotation.
    pub template: &'a TemplateRef,
    /// The container to run as the sandbox root.
    pub container: &'a Container,
    /// Unpacked root filesystem, shared read-only.
    pub rootfs: &'a Path,
    /// Defaults from the image config.
    pub image: &'a ImageConfig,
    /// Host directories of the actor's volumes, by volume name.
    pub volumes: &'a HashMap<String, PathBuf>,
    /// The bridged network to join; `None`: a namespace of its own with
    /// loopback only.
    pub network: Option<BundleNetwork>,
}

/// What a bridged actor's bundle names of its network.
#[derive(Debug, Clone)]
pub(crate) struct BundleNetwork {
    /// The namespace to join: a stable path the daemon points at the
    /// namespace of each launch before runsc runs.
    pub netns: PathBuf,
    /// Files bound read-only over the image's (`/etc/resolv.conf`,
    /// `/etc/hosts`): (path inside, host file).
    pub files: Vec<(String, PathBuf)>,
}

/// Writes bundles under `<state>/bundles/<actor>/`.
#[derive(Debug, Clone)]
pub(crate) struct BundleBuilder {
    root: PathBuf,
}

impl BundleBuilder {
    /// Builder for bundles below `root`.
    pub(crate) fn new(root: PathBuf) -> BundleBuilder {
        BundleBuilder { root }
    }

    /// The bundle directory of an actor.
    pub(crate) fn dir(&self, actor_id: &str) -> PathBuf {
        self.root.join(actor_id)
    }

    /// Builds the spec and writes the bundle (config.json and the identity
    /// dir), replacing any previous one atomically.
    pub(crate) fn write(&self, input: &BundleInput<'_>) -> Result<PathBuf, BundleError> {
        let dir = self.dir(input.actor_id);
        let identity = dir.join("identity");
        let spec = build_spec(input, &identity)?;
        create_private_dir(&dir)?;
        create_private_dir(&identity)?;
        write_replace(&identity.join("actor-id"), input.actor_id.as_bytes())
            .map_err(io_err(&identity))?;
        let json = serde_json::to_vec_pretty(&spec)
            .map_err(|e| BundleError::Invalid(format!("serialising config.json: {e}")))?;
        write_replace(&dir.join("config.json"), &json).map_err(io_err(&dir))?;
        Ok(dir)
    }

    /// Sets the cgroup and limits of the next launch in the actor's
    /// `config.json` (see [`apply_placement`]), atomically. Done at every
    /// launch, restores included, so that the limits in force are the
    /// record's whatever daemon wrote the bundle.
    pub(crate) fn place(&self, actor_id: &str, placement: &Placement) -> Result<(), BundleError> {
        let dir = self.dir(actor_id);
        let path = dir.join("config.json");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            // No bundle: nothing to place, and runsc reports the missing
            // bundle as it did before limits existed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut spec: Spec = serde_json::from_slice(&text)
            .map_err(|e| BundleError::Invalid(format!("reading {}: {e}", path.display())))?;
        apply_placement(&mut spec, placement)?;
        let json = serde_json::to_vec_pretty(&spec)
            .map_err(|e| BundleError::Invalid(format!("serialising config.json: {e}")))?;
        write_replace(&path, &json).map_err(io_err(&dir))
    }

    /// True when the actor's bundle is complete on disk (a bundle lost to
    /// a power cut, being written without fsync, reads as missing and is
    /// rebuilt).
    pub(crate) fn exists(&self, actor_id: &str) -> bool {
        let dir = self.dir(actor_id);
        let nonempty = |p: PathBuf| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0);
        nonempty(dir.join("config.json")) && nonempty(dir.join("identity/actor-id"))
    }
}

/// The OCI spec of one container (pure: no I/O).
pub(crate) fn build_spec(
    input: &BundleInput<'_>,
    identity_dir: &Path,
) -> Result<Spec, BundleError> {
    let c = input.container;
    let sc = c.security_context.as_ref();

    let args = process_args(c, input.image);
    if args.is_empty() {
        return Err(BundleError::Invalid(format!(
            "container {:?}: no command given and the image defines none",
            c.name
        )));
    }
    let env = process_env(c, input.image);

    let cwd = c
        .working_dir
        .clone()
        .or_else(|| input.image.working_dir.clone())
        .unwrap_or_else(|| "/".to_string());

    // runAsUser wins over the image's User; unset means root.
    let uid = match sc.and_then(|s| s.run_as_user) {
        Some(u) => to_id("runAsUser", u)?,
        None => input.image.uid.unwrap_or(0),
    };
    let gid = match sc.and_then(|s| s.run_as_group) {
        Some(g) => to_id("runAsGroup", g)?,
        None => input.image.gid.unwrap_or(0),
    };

    let caps = resolve_capabilities(sc)?
        .into_iter()
        .map(to_oci_capability)
        .collect::<Result<std::collections::HashSet<_>, _>>()?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps.clone())
        .inheritable(caps)
        .build()?;

    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(uid).gid(gid).build()?)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .no_new_privileges(true)
        .build()?;

    let mut mounts = vec![
        mount("/proc", "proc", "proc", &[])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            IDENTITY_MOUNT,
            "bind",
            &identity_dir.to_string_lossy(),
            &["rbind", "ro"],
        )?,
    ];
    if let Some(net) = &input.network {
        for (target, source) in &net.files {
            mounts.push(mount(
                target,
                "bind",
                &source.to_string_lossy(),
                &["bind", "ro"],
            )?);
        }
    }
    for m in &c.volume_mounts {
        let source = input.volumes.get(&m.name).ok_or_else(|| {
            BundleError::Invalid(format!("volume {:?} has no host directory", m.name))
        })?;
        let mode = if m.read_only { "ro" } else { "rw" };
        mounts.push(mount(
            &m.mount_path,
            "bind",
            &source.to_string_lossy(),
            &["rbind", mode],
        )?);
    }

    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
    ]
    .into_iter()
    .map(|typ| {
        let mut ns = LinuxNamespaceBuilder::default().typ(typ);
        // A bridged actor joins the namespace the daemon made for it.
        if let (LinuxNamespaceType::Network, Some(net)) = (typ, &input.network) {
            ns = ns.path(net.netns.clone());
        }
        ns.build()
    })
    .collect::<Result<Vec<_>, _>>()?;
    let mut linux = LinuxBuilder::default().namespaces(namespaces).build()?;
    // The cgroup and its limits are set per launch ([`apply_placement`]):
    // each incarnation gets a cgroup of its own.
    linux.set_resources(None);

    let annotations = HashMap::from([
        (ANNOTATION_ACTOR_ID.to_string(), input.actor_id.to_string()),
        (
            ANNOTATION_TEMPLATE.to_string(),
            format!("{}/{}", input.template.namespace, input.template.name),
        ),
    ]);

    let spec = SpecBuilder::default()
        .version("1.0.2")
        .hostname(input.actor_id)
        .root(
            RootBuilder::default()
                .path(input.rootfs)
                // Writable inside; runsc's memory overlay keeps writes out of
                // the shared rootfs.
                .readonly(false)
                .build()?,
        )
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .annotations(annotations)
        .build()?;
    Ok(spec)
}

/// Where one launch's sandbox goes and what it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    /// `linux.cgroupsPath`: the sandbox's own cgroup under the daemon's
    /// parent (`/atelet/<container id>`).
    pub cgroups_path: String,
    /// The sandbox's limits and requests.
    pub resources: SandboxResources,
}

/// CFS period of every sandbox: 100 ms, the kernel's default, so that a
/// quota is `millicores × 100` µs.
pub(crate) const CPU_PERIOD_US: u64 = 100_000;

/// Puts `placement` into a spec: `linux.cgroupsPath`, and `linux.resources`
/// with the memory limit (`memory.limit_in_bytes`), the memory request as
/// the soft limit the kernel reclaims down to under pressure, the CPU
/// limit as a CFS quota per [`CPU_PERIOD_US`], and the CPU request (else
/// the limit, as Kubernetes defaults it) as `cpu.shares` (1024 a core).
/// runsc creates the cgroup with these values when it starts or restores
/// the sandbox. Pure: no I/O.
pub(crate) fn apply_placement(spec: &mut Spec, placement: &Placement) -> Result<(), BundleError> {
    let r = &placement.resources;
    let to_i64 = |what: &str, v: u64| {
        i64::try_from(v).map_err(|_| BundleError::Invalid(format!("{what} {v} is out of range")))
    };
    let mut memory = LinuxMemoryBuilder::default();
    let mut any_memory = false;
    if let Some(limit) = r.limits.memory_bytes {
        memory = memory.limit(to_i64("memory limit", limit)?);
        any_memory = true;
    }
    if let Some(request) = r.requests.memory_bytes {
        memory = memory.reservation(to_i64("memory request", request)?);
        any_memory = true;
    }
    let mut cpu = LinuxCpuBuilder::default();
    let mut any_cpu = false;
    if let Some(millis) = r.limits.cpu_millis {
        let quota = millis.saturating_mul(CPU_PERIOD_US) / 1000;
        cpu = cpu.quota(to_i64("cpu quota", quota)?).period(CPU_PERIOD_US);
        any_cpu = true;
    }
    if let Some(millis) = r.requests.cpu_millis.or(r.limits.cpu_millis) {
        // Kubernetes' conversion, with its floor of 2.
        cpu = cpu.shares((millis.saturating_mul(1024) / 1000).max(2));
        any_cpu = true;
    }
    let mut resources = LinuxResourcesBuilder::default();
    if any_memory {
        resources = resources.memory(memory.build()?);
    }
    if any_cpu {
        resources = resources.cpu(cpu.build()?);
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_cgroups_path(Some(PathBuf::from(&placement.cgroups_path)));
    linux.set_resources(
        (any_memory || any_cpu)
            .then(|| resources.build())
            .transpose()?,
    );
    spec.set_linux(Some(linux));
    Ok(())
}

/// The argv of the container's process: the spec's command, else the
/// image's Entrypoint + Cmd.
pub(crate) fn process_args(c: &Container, image: &ImageConfig) -> Vec<String> {
    if c.command.is_empty() {
        image.command.clone()
    } else {
        c.command.clone()
    }
}

/// The environment of the container's process: the image's Env, then the
/// spec's; a spec variable replaces the image's of the same name in place
/// (a duplicate would leave which one a program sees to its libc). Without
/// a PATH from either, [`DEFAULT_PATH`] comes first.
pub(crate) fn process_env(c: &Container, image: &ImageConfig) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let image_sets_path = image.env.iter().any(|e| e.starts_with("PATH="));
    let spec_sets_path = c.env.iter().any(|e| e.name == "PATH");
    if !image_sets_path && !spec_sets_path {
        env.push(DEFAULT_PATH.to_string());
    }
    env.extend(image.env.iter().cloned());
    for e in &c.env {
        let entry = format!("{}={}", e.name, e.value);
        let prefix = format!("{}=", e.name);
        match env.iter_mut().find(|x| x.starts_with(&prefix)) {
            Some(x) => *x = entry,
            None => env.push(entry),
        }
    }
    env
}

/// Checks, at create and before anything is written, that the process
/// [`build_spec`] would give runsc can be started: a command (the spec's or
/// the image's) whose program runsc can find with the PATH the process
/// gets. Validation of the request alone cannot tell, because the image
/// supplies the command and the PATH the spec leaves out; without this a
/// bad one is recorded and then fails the start with a 500.
/// `field` is the container's JSON path, e.g. `spec.containers[0]`.
pub(crate) fn check_process(
    field: &str,
    c: &Container,
    image: &ImageConfig,
) -> Result<(), ValidationError> {
    let args = process_args(c, image);
    let Some(argv0) = args.first() else {
        return Err(ValidationError::new(
            format!("{field}.command"),
            "required: the image defines no command",
        ));
    };
    let env = process_env(c, image);
    let path = env.iter().find_map(|e| e.strip_prefix("PATH="));
    let set_by = if c.env.iter().any(|e| e.name == "PATH") {
        "the spec's env"
    } else {
        "the image's Env"
    };
    if c.command.is_empty() {
        validate_program(&format!("{field}.command"), argv0, path.map(|p| (p, set_by))).map_err(
            |e| {
                ValidationError::new(
                    e.field,
                    format!(
                        "not given, and the image's command (Entrypoint + Cmd) {args:?} cannot be run: argv[0] {}",
                        e.message
                    ),
                )
            },
        )
    } else {
        validate_program(
            &format!("{field}.command[0]"),
            argv0,
            path.map(|p| (p, set_by)),
        )
    }
}

fn to_id(field: &str, v: i64) -> Result<u32, BundleError> {
    u32::try_from(v)
        .ok()
        .filter(|id| *id != u32::MAX)
        .ok_or_else(|| BundleError::Invalid(format!("{field} {v} is out of range")))
}

fn to_oci_capability(
    cap: atelet_api::capabilities::Capability,
) -> Result<OciCapability, BundleError> {
    serde_json::from_value(serde_json::Value::String(cap.to_string()))
        .map_err(|e| BundleError::Invalid(format!("capability {cap} unknown to oci-spec: {e}")))
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, BundleError> {
    let mut b = MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source);
    if !options.is_empty() {
        b = b.options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    }
    Ok(b.build()?)
}

fn create_private_dir(dir: &Path) -> Result<(), BundleError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|source| BundleError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use atelet_api::capabilities::DEFAULT_CAPABILITIES;
    use serde_json::json;

    fn container(sc: serde_json::Value) -> Container {
        let mut v = json!({"name": "app", "image": "dir:/r", "command": ["/bin/sh"]});
        if !sc.is_null() {
            v["securityContext"] = sc;
        }
        serde_json::from_value(v).unwrap()
    }

    fn placed(resources: serde_json::Value) -> serde_json::Value {
        let mut c = container(serde_json::Value::Null);
        c.resources = serde_json::from_value(resources).unwrap();
        let mut spec = spec_for(&c).unwrap();
        let actor: atelet_api::ActorSpec =
            serde_json::from_value(json!({"containers": [serde_json::to_value(&c).unwrap()]}))
                .unwrap();
        apply_placement(
            &mut spec,
            &Placement {
                cgroups_path: "/atelet/a1_1.n".into(),
                resources: SandboxResources::of(&actor),
            },
        )
        .unwrap();
        serde_json::to_value(&spec).unwrap()["linux"].clone()
    }

    #[test]
    fn limits_become_the_cgroup_values_runsc_writes() {
        let linux = placed(json!({
            "limits": {"cpu": "500m", "memory": "64Mi"},
            "requests": {"cpu": "250m", "memory": "32Mi"}
        }));
        assert_eq!(linux["cgroupsPath"], "/atelet/a1_1.n");
        assert_eq!(linux["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(linux["resources"]["memory"]["reservation"], 32 << 20);
        assert_eq!(linux["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(linux["resources"]["cpu"]["period"], 100_000);
        assert_eq!(linux["resources"]["cpu"]["shares"], 256);
        // The namespaces built before are kept.
        assert_eq!(linux["namespaces"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn a_cpu_limit_alone_sets_the_shares_too_and_no_limits_set_only_the_path() {
        let linux = placed(json!({"limits": {"cpu": "2"}}));
        assert_eq!(linux["resources"]["cpu"]["quota"], 200_000);
        assert_eq!(linux["resources"]["cpu"]["shares"], 2048);
        assert!(linux["resources"].get("memory").is_none());
        let linux = placed(serde_json::Value::Null);
        assert_eq!(linux["cgroupsPath"], "/atelet/a1_1.n");
        assert!(linux.get("resources").is_none());
    }

    #[test]
    fn place_rewrites_only_the_cgroup_of_a_written_bundle() {
        let root = tempfile::tempdir().unwrap();
        let builder = BundleBuilder::new(root.path().to_path_buf());
        let template = TemplateRef {
            namespace: "default".into(),
            name: "t".into(),
        };
        let c = container(serde_json::Value::Null);
        let volumes = HashMap::new();
        builder
            .write(&BundleInput {
                actor_id: "a1",
                template: &template,
                container: &c,
                rootfs: Path::new("/srv/rootfs"),
                image: &ImageConfig::default(),
                volumes: &volumes,
                network: None,
            })
            .unwrap();
        let read = || -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(root.path().join("a1/config.json")).unwrap())
                .unwrap()
        };
        let before = read();
        for (n, limit) in [(1, 64u64 << 20), (2, 128 << 20)] {
            let mut resources = SandboxResources::default();
            resources.limits.memory_bytes = Some(limit);
            builder
                .place(
                    "a1",
                    &Placement {
                        cgroups_path: format!("/atelet/a1_{n}.n"),
                        resources,
                    },
                )
                .unwrap();
            let after = read();
            assert_eq!(after["linux"]["cgroupsPath"], format!("/atelet/a1_{n}.n"));
            assert_eq!(after["linux"]["resources"]["memory"]["limit"], limit);
            // The rest is as written (capability sets compared as sets).
            let spec =
                |v: &serde_json::Value| -> Spec { serde_json::from_value(v.clone()).unwrap() };
            assert_eq!(spec(&after).process(), spec(&before).process());
            assert_eq!(after["mounts"], before["mounts"]);
            assert_eq!(after["linux"]["namespaces"], before["linux"]["namespaces"]);
        }
    }

    fn spec_for(c: &Container) -> Result<Spec, BundleError> {
        spec_with_image(c, &ImageConfig::default())
    }

    fn spec_with_image(c: &Container, image: &ImageConfig) -> Result<Spec, BundleError> {
        let template = TemplateRef {
            namespace: "default".into(),
            name: "t".into(),
        };
        let volumes = HashMap::new();
        build_spec(
            &BundleInput {
                actor_id: "a1",
                template: &template,
                container: c,
                rootfs: Path::new("/srv/rootfs"),
                image,
                volumes: &volumes,
                network: None,
            },
            Path::new("/state/bundles/a1/identity"),
        )
    }

    fn cap_sets(spec: &Spec) -> Vec<Vec<String>> {
        let v = serde_json::to_value(spec).unwrap();
        let caps = &v["process"]["capabilities"];
        ["bounding", "effective", "permitted", "inheritable"]
            .iter()
            .map(|k| {
                let mut names: Vec<String> = caps[k]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect();
                names.sort();
                names
            })
            .collect()
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn empty_security_context_is_exactly_the_default_bundle() {
        let none = spec_for(&container(serde_json::Value::Null)).unwrap();
        let empty = spec_for(&container(json!({}))).unwrap();
        let empty_caps = spec_for(&container(json!({"capabilities": {}}))).unwrap();
        assert_eq!(none, empty);
        assert_eq!(none, empty_caps);
        let defaults: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
        let mut defaults_sorted = defaults.clone();
        defaults_sorted.sort();
        for set in cap_sets(&none) {
            assert_eq!(set, defaults_sorted);
        }
        let user = none.process().as_ref().unwrap().user();
        assert_eq!((user.uid(), user.gid()), (0, 0));
    }

    #[test]
    fn adds_and_run_as_reach_all_four_sets_and_the_user() {
        let spec = spec_for(&container(json!({
            "capabilities": {"add": ["NET_ADMIN", "setuid"]},
            "runAsUser": 1000, "runAsGroup": 1000
        })))
        .unwrap();
        let want = sorted(&[
            "CAP_AUDIT_WRITE",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_ADMIN",
            "CAP_SETUID",
        ]);
        for set in cap_sets(&spec) {
            assert_eq!(set, want);
        }
        let user = spec.process().as_ref().unwrap().user();
        assert_eq!((user.uid(), user.gid()), (1000, 1000));
    }

    #[test]
    fn drop_of_a_default_removes_it_everywhere() {
        let spec = spec_for(&container(json!({"capabilities": {"drop": ["KILL"]}}))).unwrap();
        for set in cap_sets(&spec) {
            assert_eq!(set, sorted(&["CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE"]));
        }
    }

    #[test]
    fn unknown_capability_and_bad_ids_are_errors_not_panics() {
        assert!(matches!(
            spec_for(&container(json!({"capabilities": {"add": ["BOGUS"]}}))),
            Err(BundleError::Capability(_))
        ));
        assert!(spec_for(&container(json!({"runAsUser": -1}))).is_err());
        assert!(spec_for(&container(json!({"runAsUser": 4294967295u64}))).is_err());
    }

    #[test]
    fn bundle_errors_are_never_the_clients_fault() {
        let errors = [
            spec_for(&container(json!({"capabilities": {"add": ["BOGUS"]}}))).unwrap_err(),
            spec_for(&container(json!({"runAsUser": -1}))).unwrap_err(),
            BundleError::Io {
                path: "/state/bundles/a".into(),
                source: std::io::Error::other("disk full"),
            },
        ];
        for e in errors {
            assert!(!e.is_client_fault(), "{e}");
        }
    }

    #[test]
    fn the_rest_of_the_bundle_follows_the_design() {
        let spec = spec_for(&container(serde_json::Value::Null)).unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["hostname"], "a1");
        assert_eq!(v["root"]["path"], "/srv/rootfs");
        assert_eq!(v["process"]["cwd"], "/");
        assert_eq!(v["process"]["env"][0], DEFAULT_PATH);
        assert_eq!(v["annotations"][ANNOTATION_ACTOR_ID], "a1");
        assert_eq!(v["annotations"][ANNOTATION_TEMPLATE], "default/t");
        let dests: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(dests, ["/proc", "/dev", "/sys", "/run/ate"]);
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network"]);
        assert!(v["linux"].get("resources").is_none());
    }

    #[test]
    fn the_process_is_checked_against_the_image_at_create() {
        let image = |command: &[&str], env: &[&str]| ImageConfig {
            command: command.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|s| s.to_string()).collect(),
            ..ImageConfig::default()
        };
        let bare: Container =
            serde_json::from_value(json!({"name": "app", "image": "oci:/l"})).unwrap();
        let given = |cmd: serde_json::Value, env: serde_json::Value| -> Container {
            serde_json::from_value(
                json!({"name": "app", "image": "oci:/l", "command": cmd, "env": env}),
            )
            .unwrap()
        };
        let f = "spec.containers[0]";
        let err = |c: &Container, i: &ImageConfig| check_process(f, c, i).unwrap_err();

        // No command anywhere.
        let e = err(&bare, &image(&[], &[]));
        assert_eq!(e.field, "spec.containers[0].command");
        assert!(e.message.contains("the image defines no command"), "{e}");
        // The image's command, when the spec gives none, must be runnable.
        let e = err(&bare, &image(&["", "x"], &[]));
        assert_eq!(e.field, "spec.containers[0].command");
        assert!(e.message.contains("must not be empty"), "{e}");
        let e = err(&bare, &image(&["serve"], &["PATH="]));
        assert_eq!(e.field, "spec.containers[0].command");
        assert!(e.message.contains("the image's Env"), "{e}");
        check_process(f, &bare, &image(&["serve"], &[])).unwrap();
        check_process(f, &bare, &image(&["serve"], &["PATH=/srv"])).unwrap();
        check_process(f, &bare, &image(&["/srv/serve"], &["PATH="])).unwrap();
        // The spec's command, with the image's PATH or the spec's.
        let sh = given(json!(["sh"]), json!([]));
        let e = err(&sh, &image(&[], &["PATH="]));
        assert_eq!(e.field, "spec.containers[0].command[0]");
        assert!(e.message.contains("the image's Env"), "{e}");
        check_process(f, &sh, &image(&[], &[])).unwrap();
        let with_path = given(json!(["sh"]), json!([{"name": "PATH", "value": "/bin"}]));
        check_process(f, &with_path, &image(&[], &["PATH="])).unwrap();
        let e = err(&given(json!([""]), json!([])), &image(&["/entry"], &[]));
        assert_eq!(e.field, "spec.containers[0].command[0]");
        // What is checked is what the bundle gets.
        let img = image(&["/entry"], &["PATH=/img"]);
        let v = serde_json::to_value(spec_with_image(&with_path, &img).unwrap()).unwrap();
        assert_eq!(v["process"]["args"], json!(process_args(&with_path, &img)));
        assert_eq!(v["process"]["env"], json!(process_env(&with_path, &img)));
    }

    #[test]
    fn image_defaults_fill_what_the_spec_leaves_out_and_the_spec_wins() {
        let image = ImageConfig {
            command: vec!["/entry".into(), "--cmd".into()],
            env: vec!["PATH=/img/bin".into(), "A=image".into(), "B=image".into()],
            working_dir: Some("/work".into()),
            uid: Some(1000),
            gid: Some(1001),
        };
        let bare: Container =
            serde_json::from_value(json!({"name": "app", "image": "oci:/l"})).unwrap();
        let v = serde_json::to_value(spec_with_image(&bare, &image).unwrap()).unwrap();
        assert_eq!(v["process"]["args"], json!(["/entry", "--cmd"]));
        assert_eq!(
            v["process"]["env"],
            json!(["PATH=/img/bin", "A=image", "B=image"])
        );
        assert_eq!(v["process"]["cwd"], "/work");
        assert_eq!(v["process"]["user"]["uid"], 1000);
        assert_eq!(v["process"]["user"]["gid"], 1001);

        let given: Container = serde_json::from_value(json!({
            "name": "app", "image": "oci:/l", "command": ["/bin/sh"],
            "env": [{"name": "B", "value": "spec"}, {"name": "C", "value": "spec"}],
            "workingDir": "/tmp",
            "securityContext": {"runAsUser": 7}
        }))
        .unwrap();
        let v = serde_json::to_value(spec_with_image(&given, &image).unwrap()).unwrap();
        assert_eq!(v["process"]["args"], json!(["/bin/sh"]));
        assert_eq!(
            v["process"]["env"],
            json!(["PATH=/img/bin", "A=image", "B=spec", "C=spec"])
        );
        assert_eq!(v["process"]["cwd"], "/tmp");
        // runAsUser wins over the image's User; the image's group stays
        // unless runAsGroup is given too.
        assert_eq!(v["process"]["user"]["uid"], 7);
        assert_eq!(v["process"]["user"]["gid"], 1001);
    }
}
