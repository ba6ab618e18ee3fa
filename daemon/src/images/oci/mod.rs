//! Reading OCI images (image-spec v1): an image layout directory or a tar
//! of one, walked index → manifest → config → layers.
//!
//! Nothing read from an image is trusted until it is checked: every blob is
//! named by its sha256 digest, and each one (a nested index, the manifest,
//! the config, every layer) is hashed as it is read and compared with the
//! descriptor that named it, size included. Each layer is also hashed after
//! decompression and compared with the config's `rootfs.diff_ids`. Only
//! `index.json` has no digest: it is what the reference points at.
//! Media types this module cannot handle are refused by name.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::fsutil::hex;

/// Largest JSON blob (index, manifest, config) read into memory.
pub(crate) const MAX_JSON_BLOB: u64 = 4 * 1024 * 1024;

/// How deep an index may nest other indexes (multi-platform images).
const MAX_INDEX_DEPTH: usize = 4;

const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Media types of manifests and indexes, OCI and their Docker schema 2
/// equivalents (which skopeo may keep when it copies from a registry).
pub(crate) mod media_type {
    /// OCI image index.
    pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image manifest.
    pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image config.
    pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker manifest list.
    pub(crate) const DOCKER_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker schema 2 manifest.
    pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker image config.
    pub(crate) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
}

/// Errors of reading an image.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A file of the layout or the archive could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The image is not what the spec describes (bad JSON, missing blob,
    /// unknown media type, no such tag…); the message names what.
    #[error("{0}")]
    Invalid(String),
    /// A blob's content does not match the descriptor that names it.
    #[error("{what} {digest}: content has {actual}, the descriptor says {expected}")]
    Mismatch {
        /// Which blob (`manifest`, `config`, `layer 2`…).
        what: String,
        /// Its digest as named.
        digest: Digest,
        /// What was expected (digest or size).
        expected: String,
        /// What was found.
        actual: String,
    },
}

impl OciError {
    /// Whether the image the client named is at fault (a 400) rather than
    /// this host: every way an image cannot be read is the image's, since
    /// its reference names the layout or archive to read — a file of it
    /// missing or unreadable, content that is not what the OCI spec
    /// describes, a blob that fails its digest.
    pub fn is_client_fault(&self) -> bool {
        match self {
            OciError::Io { .. } | OciError::Invalid(_) | OciError::Mismatch { .. } => true,
        }
    }
}

fn invalid(message: impl Into<String>) -> OciError {
    OciError::Invalid(message.into())
}

/// A content digest: `sha256:` and 64 lower-case hex digits. Parsing
/// refuses anything else, which also makes the hex safe as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<hex>`; other algorithms are refused by name.
    pub fn parse(s: &str) -> Result<Digest, OciError> {
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err(invalid(format!(
                "digest {s:?} is not of the form sha256:<hex>"
            )));
        };
        if algorithm != "sha256" {
            return Err(invalid(format!(
                "digest {s:?}: algorithm {algorithm:?} is not supported (only sha256)"
            )));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid(format!(
                "digest {s:?}: a sha256 digest is 64 lower-case hex digits"
            )));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            hex: hex(&Sha256::digest(bytes)),
        }
    }

    /// The hex part (a file name in `blobs/sha256/` and in the cache).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// A content descriptor, as in index.json and manifests.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    /// What the blob is.
    pub media_type: String,
    /// Its digest, as written (parsed on use).
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// `org.opencontainers.image.ref.name` (the tag) lives here.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Which platform a manifest in an index is for.
    #[serde(default)]
    pub platform: Option<Platform>,
}

impl Descriptor {
    fn tag(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_REF_NAME)
            .map(String::as_str)
    }
}

/// The platform of a manifest in an index.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Platform {
    /// Go's GOARCH names (`amd64`, `arm64`).
    pub architecture: String,
    /// `linux`.
    pub os: String,
}

/// An image index (or Docker manifest list).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Index {
    schema_version: u32,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The parts of the image config atelet uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ConfigFile {
    /// Go's GOARCH name.
    #[serde(default)]
    pub architecture: String,
    /// `linux`.
    #[serde(default)]
    pub os: String,
    /// The execution defaults.
    #[serde(default)]
    pub config: Option<ExecConfig>,
    /// The layers' uncompressed digests.
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// `config` of the image config: the defaults for a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ExecConfig {
    /// `user`, `uid`, `user:group`, `uid:gid`.
    #[serde(rename = "User", default)]
    pub user: Option<String>,
    /// `NAME=value`.
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    /// Prepended to Cmd.
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    /// Default working directory.
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
}

/// `rootfs` of the image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct RootFs {
    /// `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// sha256 of each uncompressed layer tar, base first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// A plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

impl Compression {
    /// The compression of a layer media type; `None` for one this daemon
    /// does not unpack (foreign URLs, encrypted layers, …).
    pub(crate) fn of_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }
}

/// One layer to apply: where it is and what it must hash to.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    /// Position, base = 0 (for messages).
    pub index: usize,
    /// The blob.
    pub digest: Digest,
    /// The blob's size.
    pub size: u64,
    /// How it is compressed.
    pub compression: Compression,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
}

/// A manifest with its config, checked against each other: what
/// [`ImageSource::load`] gives.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    /// The manifest's digest: the image's identity (and its cache key).
    pub digest: Digest,
    /// The config.
    pub config: ConfigFile,
    /// Layers, base first.
    pub layers: Vec<Layer>,
}

mod readers;
mod select;
mod source;

pub(crate) use readers::LayerReader;
use readers::MemberReader;
#[cfg(test)]
pub(crate) use select::host_architecture;
use select::{check_platform, size_found};
pub(crate) use select::{parse_index, pick_from_index};
pub(crate) use source::{check_blob, image_of, parse_manifest, Blob, ImageSource};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_an_image_cannot_be_read_is_the_clients_fault() {
        let digest = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
        for e in [
            OciError::Io {
                path: "/srv/layout/index.json".into(),
                source: io::Error::from(io::ErrorKind::NotFound),
            },
            invalid("no manifest is tagged \"x\""),
            OciError::Mismatch {
                what: "layer 0".into(),
                digest,
                expected: "10 bytes".into(),
                actual: "9 bytes".into(),
            },
        ] {
            assert!(e.is_client_fault(), "{e}");
        }
    }
}
