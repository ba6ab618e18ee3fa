//! Image references: where an actor's root filesystem comes from.

use std::fmt;
use std::path::{Component, Path};

/// A parsed `image` field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageRef {
    /// `dir:<rootfs>`: an unpacked root filesystem, used in place (read-only).
    Dir {
        /// Absolute path of the rootfs directory.
        path: String,
    },
    /// `oci:<dir>[:<tag>]`: an OCI image layout directory.
    OciLayout {
        /// Absolute path of the layout (holds `index.json`).
        path: String,
        /// Tag (`org.opencontainers.image.ref.name`); `None` takes the only manifest.
        tag: Option<String>,
    },
    /// `oci-archive:<file>[:<tag>]`: a tar of an OCI image layout.
    OciArchive {
        /// Absolute path of the tar file.
        path: String,
        /// As for [`ImageRef::OciLayout`].
        tag: Option<String>,
    },
    /// `docker://HOST[:PORT]/REPO[:TAG][@sha256:DIGEST]` (or the same
    /// without `docker://` when HOST has a dot or a port, or is
    /// `localhost`): an image in a registry, pulled over the OCI
    /// distribution API.
    Registry {
        /// `host[:port]`, as the registry is named in the config's
        /// `[registries."host[:port]"]` and `policy.allowed_registries`.
        host: String,
        /// The repository within the registry (`org/agent`).
        repository: String,
        /// The tag; `None` with no digest means `latest`.
        tag: Option<String>,
        /// `sha256:…`: names the manifest (or index) exactly; wins over the tag.
        digest: Option<String>,
    },
}

impl ImageRef {
    /// Parses and checks a reference: a known scheme and an absolute,
    /// `..`-free path, or a registry reference.
    pub fn parse(reference: &str) -> Result<ImageRef, String> {
        if let Some(rest) = reference.strip_prefix("docker://") {
            return parse_registry(rest);
        }
        if let Some(path) = reference.strip_prefix("dir:") {
            check_path(path)?;
            return Ok(ImageRef::Dir {
                path: path.to_string(),
            });
        }
        if let Some(rest) = reference.strip_prefix("oci-archive:") {
            let (path, tag) = split_tag(rest)?;
            return Ok(ImageRef::OciArchive { path, tag });
        }
        if let Some(rest) = reference.strip_prefix("oci:") {
            let (path, tag) = split_tag(rest)?;
            return Ok(ImageRef::OciLayout { path, tag });
        }
        // The bare form users type (`registry.internal:5000/agent:1.4`):
        // only when the part before the first slash can only be a
        // registry host, as Docker decides it (a dot, a port, or
        // `localhost`). None of the schemes above has a slash before its
        // colon, and a host never starts with one, so the forms cannot be
        // mistaken for each other. Docker Hub's short names (`busybox`)
        // are refused: this daemon has no default registry.
        if !reference.contains("://") {
            if let Some((first, _)) = reference.split_once('/') {
                if first.contains('.') || first.contains(':') || first == "localhost" {
                    return parse_registry(reference);
                }
            }
        }
        Err(format!(
            "unsupported image reference {reference:?}: expected dir:<rootfs>, oci:<layout>[:<tag>], oci-archive:<file>[:<tag>] or docker://<host>[:<port>]/<repository>[:<tag>|@sha256:<digest>]"
        ))
    }

    /// The host path the reference points at; `None` for a registry.
    pub fn path(&self) -> Option<&str> {
        match self {
            ImageRef::Dir { path }
            | ImageRef::OciLayout { path, .. }
            | ImageRef::OciArchive { path, .. } => Some(path),
            ImageRef::Registry { .. } => None,
        }
    }

    /// The registry host (`host[:port]`) of a registry reference.
    pub fn registry_host(&self) -> Option<&str> {
        match self {
            ImageRef::Registry { host, .. } => Some(host),
            _ => None,
        }
    }
}

/// Longest repository name accepted (the distribution spec's bound on a
/// name with its host).
const MAX_REPOSITORY: usize = 255;

/// Parses `HOST[:PORT]/REPO[:TAG][@sha256:HEX]` (after `docker://`), with
/// the distribution spec's grammar for each part.
fn parse_registry(rest: &str) -> Result<ImageRef, String> {
    let bad = |what: &str| format!("registry reference {rest:?}: {what}");
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| bad("expected <host>[:<port>]/<repository>"))?;
    check_host(host).map_err(|m| bad(&m))?;
    let (name, digest) = match path.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (path, None),
    };
    if let Some(d) = digest {
        let ok = d.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if !ok {
            return Err(bad(&format!(
                "digest {d:?} must be sha256: and 64 lower-case hex digits"
            )));
        }
    }
    // A colon after the host can only start the tag.
    let (repository, tag) = match name.rsplit_once(':') {
        Some((repo, tag)) => (repo, Some(tag)),
        None => (name, None),
    };
    if repository.is_empty() || repository.len() > MAX_REPOSITORY {
        return Err(bad(&format!(
            "the repository must have 1 to {MAX_REPOSITORY} characters"
        )));
    }
    for part in repository.split('/') {
        let ok = !part.is_empty()
            && part
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
            && part
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && part
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if !ok {
            return Err(bad(&format!(
                "repository part {part:?} must be lower-case letters, digits and . _ -, starting and ending with a letter or digit"
            )));
        }
    }
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(bad(&format!(
                "invalid tag {tag:?}: 1 to 128 of [A-Za-z0-9_.-], not starting with . or -"
            )));
        }
    }
    Ok(ImageRef::Registry {
        host: host.to_string(),
        repository: repository.to_string(),
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    })
}

/// `name[:port]` or `[v6]:port`: a DNS name or an address, and a port of 1 to 65535.
fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("host {host:?}: an IPv6 address needs its closing ]"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("host {host:?}: {addr:?} is not an IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            p => (
                addr,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("host {host:?}: expected :<port> after ]"))?,
                ),
            ),
        }
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !host.starts_with('[')
        && (name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok))
    {
        return Err(format!("host {host:?} is not a host name or address"));
    }
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) || p.starts_with('0') {
            return Err(format!("host {host:?}: port {p:?} is not 1 to 65535"));
        }
    }
    Ok(())
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Dir { path } => write!(f, "dir:{path}"),
            ImageRef::OciLayout { path, tag } => {
                write!(f, "oci:{path}")?;
                tag.iter().try_for_each(|t| write!(f, ":{t}"))
            }
            ImageRef::OciArchive { path, tag } => {
                write!(f, "oci-archive:{path}")?;
                tag.iter().try_for_each(|t| write!(f, ":{t}"))
            }
            ImageRef::Registry {
                host,
                repository,
                tag,
                digest,
            } => {
                write!(f, "docker://{host}/{repository}")?;
                tag.iter().try_for_each(|t| write!(f, ":{t}"))?;
                digest.iter().try_for_each(|d| write!(f, "@{d}"))
            }
        }
    }
}

/// Splits `<path>[:<tag>]`; a colon followed by a `/` belongs to the path.
fn split_tag(rest: &str) -> Result<(String, Option<String>), String> {
    let (path, tag) = match rest.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => (path, Some(tag)),
        _ => (rest, None),
    };
    check_path(path)?;
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(format!(
                "invalid image tag {tag:?}: 1 to 128 of [A-Za-z0-9_.-]"
            ));
        }
    }
    Ok((path.to_string(), tag.map(str::to_string)))
}

fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("image path {path:?} must be absolute"));
    }
    if path.contains('\0') {
        return Err("image path must not contain NUL".to_string());
    }
    if Path::new(path)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(format!("image path {path:?} must not contain '..'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_scheme() {
        assert_eq!(
            ImageRef::parse("dir:/srv/rootfs").unwrap(),
            ImageRef::Dir {
                path: "/srv/rootfs".into()
            }
        );
        assert_eq!(
            ImageRef::parse("oci:/var/lib/images/busybox:latest").unwrap(),
            ImageRef::OciLayout {
                path: "/var/lib/images/busybox".into(),
                tag: Some("latest".into())
            }
        );
        assert_eq!(
            ImageRef::parse("oci:/var/lib/images/busybox").unwrap(),
            ImageRef::OciLayout {
                path: "/var/lib/images/busybox".into(),
                tag: None
            }
        );
        assert_eq!(
            ImageRef::parse("oci-archive:/tmp/a.tar:v1").unwrap(),
            ImageRef::OciArchive {
                path: "/tmp/a.tar".into(),
                tag: Some("v1".into())
            }
        );
    }

    #[test]
    fn parses_registry_references_with_and_without_the_scheme() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            ImageRef::parse("docker://127.0.0.1:5000/agent:v1").unwrap(),
            ImageRef::Registry {
                host: "127.0.0.1:5000".into(),
                repository: "agent".into(),
                tag: Some("v1".into()),
                digest: None
            }
        );
        assert_eq!(
            ImageRef::parse(&format!("registry.internal:5000/org/agent@{digest}")).unwrap(),
            ImageRef::Registry {
                host: "registry.internal:5000".into(),
                repository: "org/agent".into(),
                tag: None,
                digest: Some(digest.clone())
            }
        );
        assert_eq!(
            ImageRef::parse("ghcr.io/org/agent:1.4")
                .unwrap()
                .registry_host(),
            Some("ghcr.io")
        );
        assert_eq!(
            ImageRef::parse("localhost/agent").unwrap().to_string(),
            "docker://localhost/agent"
        );
        assert!(ImageRef::parse("docker://[::1]:5000/a:b").is_ok());
        assert_eq!(ImageRef::parse("docker://h/a").unwrap().path(), None);
    }

    #[test]
    fn round_trips_through_display() {
        let d = format!("sha256:{}", "0".repeat(64));
        for r in [
            "dir:/a",
            "oci:/a/b:t",
            "oci:/a/b",
            "oci-archive:/x.tar:1.0",
            "docker://h.example:5000/a/b:t",
            &format!("docker://h/a@{d}"),
            &format!("docker://h/a:t@{d}"),
        ] {
            assert_eq!(ImageRef::parse(r).unwrap().to_string(), r);
        }
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "busybox",
            "docker://busybox",
            "dir:relative",
            "dir:/a/../etc",
            "oci:/a:bad tag",
            "oci:/a:",
            "oci:rel:tag",
            "docker://h",
            "docker://h/",
            "docker://h/UPPER",
            "docker://h/a:",
            "docker://h/a:-x",
            "docker://h/a@sha256:12",
            "docker://h:0/a",
            "docker://h:99999/a",
            "docker://-h/a",
            "docker://h/a//b",
            "library/busybox",
            "busybox:latest",
            "http://h.example/a",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
