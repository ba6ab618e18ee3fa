//! Choosing the manifest a reference means: by tag, and for this host's
//! platform when an index lists several.

use super::*;

/// A size read with a cap of one byte past `expected`.
pub(super) fn size_found(read: u64, expected: u64) -> String {
    if read > expected {
        format!("more than {expected} bytes")
    } else {
        format!("{read} bytes")
    }
}

/// Parses an index blob (schema 2 only).
pub(crate) fn parse_index(what: &str, bytes: &[u8]) -> Result<Index, OciError> {
    let index: Index =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("{what}: {e}")))?;
    if index.schema_version != 2 {
        return Err(invalid(format!(
            "{what}: schemaVersion {} is not supported (2 is)",
            index.schema_version
        )));
    }
    Ok(index)
}

/// Go's name of this host's architecture, as images use it.
pub(crate) fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn for_this_host(d: &Descriptor) -> bool {
    d.platform
        .as_ref()
        .is_none_or(|p| p.os == "linux" && p.architecture == host_architecture())
}

/// The manifest of `index` that `tag` names (any, with `None`), for
/// this host's platform when several are listed.
pub(crate) fn pick_from_index(
    index: &Index,
    tag: Option<&str>,
    what: &str,
) -> Result<Descriptor, OciError> {
    let tags = || {
        let mut t: Vec<&str> = index.manifests.iter().filter_map(Descriptor::tag).collect();
        t.sort();
        t.dedup();
        if t.is_empty() {
            "none".to_string()
        } else {
            t.join(", ")
        }
    };
    let candidates: Vec<&Descriptor> = match tag {
        Some(tag) => index
            .manifests
            .iter()
            .filter(|d| d.tag() == Some(tag))
            .collect(),
        None => index.manifests.iter().collect(),
    };
    if candidates.is_empty() {
        return Err(invalid(match tag {
            Some(tag) => format!("{what}: no manifest is tagged {tag:?} (tags: {})", tags()),
            None => format!("{what} lists no manifests"),
        }));
    }
    let mut distinct: Vec<&Descriptor> = Vec::new();
    for d in candidates {
        if !distinct.iter().any(|x| x.digest == d.digest) {
            distinct.push(d);
        }
    }
    if distinct.len() > 1 {
        distinct.retain(|d| for_this_host(d));
    }
    match distinct.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(invalid(format!(
            "{what}: no manifest for linux/{}",
            host_architecture()
        ))),
        _ => Err(invalid(match tag {
            Some(tag) => format!("{what}: tag {tag:?} names several manifests for this platform"),
            None => format!(
                "{what} lists several manifests: name one with :<tag> (tags: {})",
                tags()
            ),
        })),
    }
}

pub(super) fn check_platform(config: &ConfigFile) -> Result<(), OciError> {
    if !config.os.is_empty() && config.os != "linux" {
        return Err(invalid(format!(
            "the image is for os {:?}; gVisor runs linux images",
            config.os
        )));
    }
    if !config.architecture.is_empty() && config.architecture != host_architecture() {
        return Err(invalid(format!(
            "the image is for {}, this node is {}",
            config.architecture,
            host_architecture()
        )));
    }
    Ok(())
}
