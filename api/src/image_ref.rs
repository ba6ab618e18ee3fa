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
}

impl ImageRef {
    /// Parses and checks a reference: a known scheme and an absolute, `..`-free path.
    pub fn parse(reference: &str) -> Result<ImageRef, String> {
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
        Err(format!(
            "unsupported image reference {reference:?}: expected dir:<rootfs>, oci:<layout>[:<tag>] or oci-archive:<file>[:<tag>]"
        ))
    }

    /// The host path the reference points at.
    pub fn path(&self) -> &str {
        match self {
            ImageRef::Dir { path }
            | ImageRef::OciLayout { path, .. }
            | ImageRef::OciArchive { path, .. } => path,
        }
    }
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
    fn round_trips_through_display() {
        for r in ["dir:/a", "oci:/a/b:t", "oci:/a/b", "oci-archive:/x.tar:1.0"] {
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
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
