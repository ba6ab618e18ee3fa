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
pub const MAX_JSON_BLOB: u64 = 4 * 1024 * 1024;

/// How deep an index may nest other indexes (multi-platform images).
const MAX_INDEX_DEPTH: usize = 4;

const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Media types of manifests and indexes, OCI and their Docker schema 2
/// equivalents (which skopeo may keep when it copies from a registry).
pub mod media_type {
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
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
pub struct Descriptor {
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
pub struct Platform {
    /// Go's GOARCH names (`amd64`, `arm64`).
    pub architecture: String,
    /// `linux`.
    pub os: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
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
pub enum Compression {
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
    pub fn of_media_type(media_type: &str) -> Option<Compression> {
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
pub struct Layer {
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
pub struct Image {
    /// The manifest's digest: the image's identity (and its cache key).
    pub digest: Digest,
    /// The config.
    pub config: ConfigFile,
    /// Layers, base first.
    pub layers: Vec<Layer>,
}

/// Where an image's blobs are read from.
#[derive(Debug, Clone)]
pub struct ImageSource {
    kind: SourceKind,
}

#[derive(Debug, Clone)]
enum SourceKind {
    /// An image layout directory.
    Layout(PathBuf),
    /// A tar of one: regular members by name, read in place.
    Archive {
        path: PathBuf,
        file: Arc<File>,
        members: HashMap<String, Member>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Member {
    offset: u64,
    size: u64,
}

/// A blob being read.
pub type Blob = Box<dyn Read + Send>;

impl ImageSource {
    /// An image layout directory (holds `oci-layout` and `index.json`).
    pub fn open_layout(dir: &Path) -> Result<ImageSource, OciError> {
        let meta = std::fs::metadata(dir).map_err(|source| OciError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(invalid(format!(
                "{} is not a directory (an OCI image layout is one; use oci-archive: for a tar)",
                dir.display()
            )));
        }
        let source = ImageSource {
            kind: SourceKind::Layout(dir.to_path_buf()),
        };
        source.check_layout_version()?;
        Ok(source)
    }

    /// A tar of an image layout (what `skopeo copy … oci-archive:` writes).
    /// Its member list is read once; blobs are then read in place.
    pub fn open_archive(path: &Path) -> Result<ImageSource, OciError> {
        let io_err = |source| OciError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        if file.metadata().map_err(io_err)?.is_dir() {
            return Err(invalid(format!(
                "{} is a directory (use oci: for an image layout directory)",
                path.display()
            )));
        }
        let mut members = HashMap::new();
        let mut archive = tar::Archive::new(&file);
        let not_a_tar =
            |e: io::Error| invalid(format!("{} is not a readable tar: {e}", path.display()));
        for entry in archive.entries_with_seek().map_err(not_a_tar)? {
            let entry = entry.map_err(not_a_tar)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = name.trim_start_matches("./").trim_start_matches('/');
            members.insert(
                name.to_string(),
                Member {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
            );
        }
        let source = ImageSource {
            kind: SourceKind::Archive {
                path: path.to_path_buf(),
                file: Arc::new(file),
                members,
            },
        };
        source.check_layout_version()?;
        Ok(source)
    }

    fn describe(&self) -> String {
        match &self.kind {
            SourceKind::Layout(p) => p.display().to_string(),
            SourceKind::Archive { path, .. } => path.display().to_string(),
        }
    }

    /// Opens a file of the layout by its name within the layout.
    fn open(&self, name: &str) -> Result<Option<(Blob, u64)>, OciError> {
        match &self.kind {
            SourceKind::Layout(dir) => {
                let path = dir.join(name);
                match File::open(&path) {
                    Ok(f) => {
                        let size = f
                            .metadata()
                            .map_err(|source| OciError::Io {
                                path: path.clone(),
                                source,
                            })?
                            .len();
                        Ok(Some((Box::new(f), size)))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(OciError::Io { path, source }),
                }
            }
            SourceKind::Archive { file, members, .. } => Ok(members.get(name).map(|m| {
                let blob: Blob = Box::new(MemberReader {
                    file: file.clone(),
                    pos: m.offset,
                    end: m.offset + m.size,
                });
                (blob, m.size)
            })),
        }
    }

    /// Reads a small file whole, refusing one over `limit` bytes.
    fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>, OciError> {
        let (blob, size) = self
            .open(name)?
            .ok_or_else(|| invalid(format!("{}: {name} is missing", self.describe())))?;
        if size > limit {
            return Err(invalid(format!(
                "{}: {name} has {size} bytes, more than the {limit} accepted",
                self.describe()
            )));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        blob.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| OciError::Io {
                path: PathBuf::from(self.describe()).join(name),
                source,
            })?;
        Ok(bytes)
    }

    fn check_layout_version(&self) -> Result<(), OciError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct OciLayout {
            image_layout_version: String,
        }
        let bytes = self.read_small("oci-layout", MAX_JSON_BLOB).map_err(|_| {
            invalid(format!(
                "{} is not an OCI image layout (no oci-layout file)",
                self.describe()
            ))
        })?;
        let layout: OciLayout = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("{}: oci-layout: {e}", self.describe())))?;
        if layout.image_layout_version != "1.0.0" {
            return Err(invalid(format!(
                "{}: imageLayoutVersion {:?} is not supported (1.0.0 is)",
                self.describe(),
                layout.image_layout_version
            )));
        }
        Ok(())
    }

    /// Opens the blob a descriptor names, checking only that it exists.
    pub fn open_blob(&self, digest: &Digest) -> Result<(Blob, u64), OciError> {
        self.open(&format!("blobs/sha256/{}", digest.hex()))?
            .ok_or_else(|| invalid(format!("{}: blob {digest} is missing", self.describe())))
    }

    /// Reads a JSON blob whole and checks its size and digest.
    fn read_verified(&self, what: &str, desc: &Descriptor) -> Result<Vec<u8>, OciError> {
        let digest =
            Digest::parse(&desc.digest).map_err(|e| invalid(format!("{what} descriptor: {e}")))?;
        if desc.size > MAX_JSON_BLOB {
            return Err(invalid(format!(
                "{what} {digest} has {} bytes, more than the {MAX_JSON_BLOB} accepted",
                desc.size
            )));
        }
        let (blob, _) = self.open_blob(&digest)?;
        let mut bytes = Vec::new();
        blob.take(desc.size + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| OciError::Io {
                path: PathBuf::from(self.describe()).join(format!("blobs/sha256/{}", digest.hex())),
                source,
            })?;
        let actual = Digest::of(&bytes);
        if bytes.len() as u64 != desc.size {
            return Err(OciError::Mismatch {
                what: what.to_string(),
                digest,
                expected: format!("{} bytes", desc.size),
                actual: size_found(bytes.len() as u64, desc.size),
            });
        }
        if actual != digest {
            return Err(OciError::Mismatch {
                what: what.to_string(),
                digest,
                expected: "that digest".to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// The manifest `tag` names in `index.json` (following nested indexes
    /// to this host's platform), or the only one when `tag` is `None`.
    /// Reading it is cheap: the cache is looked up by this digest before any
    /// blob is read.
    pub fn select_manifest(&self, tag: Option<&str>) -> Result<Descriptor, OciError> {
        let bytes = self.read_small("index.json", MAX_JSON_BLOB)?;
        let index = parse_index("index.json", &bytes)?;
        let mut desc = pick_from_index(&index, tag, "index.json")?;
        for _ in 0..MAX_INDEX_DEPTH {
            match desc.media_type.as_str() {
                media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST => return Ok(desc),
                media_type::OCI_INDEX | media_type::DOCKER_LIST => {
                    let what = format!("index {}", desc.digest);
                    let bytes = self.read_verified(&what, &desc)?;
                    let nested = parse_index(&what, &bytes)?;
                    desc = pick_from_index(&nested, None, &what)?;
                }
                other => {
                    return Err(invalid(format!(
                        "index.json: manifest {} has mediaType {other:?}, which is not an image manifest or index",
                        desc.digest
                    )))
                }
            }
        }
        Err(invalid(format!(
            "index.json: indexes nest more than {MAX_INDEX_DEPTH} deep"
        )))
    }

    /// Reads and checks the manifest and config `desc` names; the layers
    /// are checked as they are read ([`ImageSource::open_layer`]).
    pub fn load(&self, desc: &Descriptor) -> Result<Image, OciError> {
        let digest = Digest::parse(&desc.digest)
            .map_err(|e| invalid(format!("manifest descriptor: {e}")))?;
        let bytes = self.read_verified("manifest", desc)?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("manifest {digest}: {e}")))?;
        if manifest.schema_version != 2 {
            return Err(invalid(format!(
                "manifest {digest}: schemaVersion {} is not supported (2 is)",
                manifest.schema_version
            )));
        }
        if let Some(mt) = &manifest.media_type {
            if mt != &desc.media_type {
                return Err(invalid(format!(
                    "manifest {digest}: mediaType {mt:?} differs from the index's {:?}",
                    desc.media_type
                )));
            }
        }
        match manifest.config.media_type.as_str() {
            media_type::OCI_CONFIG | media_type::DOCKER_CONFIG => {}
            other => {
                return Err(invalid(format!(
                    "manifest {digest}: config mediaType {other:?} is not an image config (not a container image?)"
                )))
            }
        }
        let config_bytes = self.read_verified("config", &manifest.config)?;
        let config: ConfigFile = serde_json::from_slice(&config_bytes)
            .map_err(|e| invalid(format!("config {}: {e}", manifest.config.digest)))?;
        check_platform(&config)?;
        let diff_ids = match &config.rootfs {
            Some(r) if r.kind == "layers" => &r.diff_ids,
            _ => {
                return Err(invalid(format!(
                    "config {}: rootfs.type must be \"layers\"",
                    manifest.config.digest
                )))
            }
        };
        if diff_ids.len() != manifest.layers.len() {
            return Err(invalid(format!(
                "manifest {digest} lists {} layers but its config has {} diff_ids",
                manifest.layers.len(),
                diff_ids.len()
            )));
        }
        let layers = manifest
            .layers
            .iter()
            .zip(diff_ids)
            .enumerate()
            .map(|(index, (l, diff_id))| {
                let compression = Compression::of_media_type(&l.media_type).ok_or_else(|| {
                    invalid(format!(
                        "layer {index} ({}) has mediaType {:?}, which is not supported (tar, tar+gzip, tar+zstd are)",
                        l.digest, l.media_type
                    ))
                })?;
                Ok(Layer {
                    index,
                    digest: Digest::parse(&l.digest)
                        .map_err(|e| invalid(format!("layer {index}: {e}")))?,
                    size: l.size,
                    compression,
                    diff_id: Digest::parse(diff_id)
                        .map_err(|e| invalid(format!("config diff_ids[{index}]: {e}")))?,
                })
            })
            .collect::<Result<Vec<_>, OciError>>()?;
        Ok(Image {
            digest,
            config,
            layers,
        })
    }

    /// Opens a layer as an uncompressed tar stream. Its digests are checked
    /// by [`LayerReader::finish`], which the caller must call after
    /// consuming the tar and before using anything unpacked from it.
    pub fn open_layer(&self, layer: &Layer) -> Result<LayerReader, OciError> {
        let (blob, _) = self.open_blob(&layer.digest)?;
        // One byte past the size is enough to tell a longer blob.
        let blob: Blob = Box::new(blob.take(layer.size.saturating_add(1)));
        let raw = HashingReader::new(blob);
        let decoder = match layer.compression {
            Compression::None => Decoder::None(raw),
            Compression::Gzip => Decoder::Gzip(MultiGzDecoder::new(raw)),
            Compression::Zstd => Decoder::Zstd(Box::new(ZstdFrames::new(raw))),
        };
        Ok(LayerReader {
            layer: layer.clone(),
            decoded: HashingReader::new(decoder),
        })
    }
}

/// A size read with a cap of one byte past `expected`.
fn size_found(read: u64, expected: u64) -> String {
    if read > expected {
        format!("more than {expected} bytes")
    } else {
        format!("{read} bytes")
    }
}

fn parse_index(what: &str, bytes: &[u8]) -> Result<Index, OciError> {
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
pub fn host_architecture() -> &'static str {
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

fn pick_from_index(index: &Index, tag: Option<&str>, what: &str) -> Result<Descriptor, OciError> {
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

fn check_platform(config: &ConfigFile) -> Result<(), OciError> {
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

/// Reads a member of an archive by position, so that several can be open
/// at once on one file descriptor.
struct MemberReader {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside a member",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Hashes and counts what passes through.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads what is left, then gives the digest, the byte count and the reader.
    fn finish(mut self) -> io::Result<(Digest, u64, R)> {
        io::copy(&mut self, &mut io::sink())?;
        let digest = Digest {
            hex: hex(&self.hasher.finalize()),
        };
        Ok((digest, self.count, self.inner))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// The decompressor of one layer, over the hashed blob.
enum Decoder {
    None(HashingReader<Blob>),
    Gzip(MultiGzDecoder<HashingReader<Blob>>),
    Zstd(Box<ZstdFrames<HashingReader<Blob>>>),
}

impl Decoder {
    fn into_inner(self) -> HashingReader<Blob> {
        match self {
            Decoder::None(r) => r,
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => d.source.into_inner(),
        }
    }
}

impl Read for Decoder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::None(r) => r.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

/// A zstd stream of any number of frames (ruzstd decodes one frame at a
/// time and leaves the sequence, and skippable frames, to the caller).
struct ZstdFrames<R: Read> {
    source: BufReader<R>,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: Read> ZstdFrames<R> {
    fn new(source: R) -> Self {
        ZstdFrames {
            source: BufReader::new(source),
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: Read> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.in_frame {
                if self.decoder.can_collect() > 0 {
                    return self.decoder.read(buf);
                }
                if !self.decoder.is_finished() {
                    self.decoder
                        .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(io::Error::other)?;
                    continue;
                }
                self.in_frame = false;
            }
            if self.source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(
                        &mut (&mut self.source).take(u64::from(length)),
                        &mut io::sink(),
                    )?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd stream ends inside a skippable frame",
                        ));
                    }
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

/// A layer as an uncompressed tar stream, hashed on both sides of the
/// decompressor.
pub struct LayerReader {
    layer: Layer,
    decoded: HashingReader<Decoder>,
}

impl std::fmt::Debug for LayerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerReader")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.decoded.read(buf)
    }
}

impl LayerReader {
    /// Reads what the tar reader left (end-of-archive padding), then checks
    /// the blob's size and digest and the uncompressed digest (diff_id).
    pub fn finish(self) -> Result<(), OciError> {
        let layer = self.layer;
        let what = format!("layer {}", layer.index);
        let corrupt = |e: io::Error| invalid(format!("{what} ({}): {e}", layer.digest));
        let (diff_id, _, decoder) = self.decoded.finish().map_err(corrupt)?;
        let (digest, size, _) = decoder.into_inner().finish().map_err(corrupt)?;
        if size != layer.size {
            return Err(OciError::Mismatch {
                what,
                digest: layer.digest,
                expected: format!("{} bytes", layer.size),
                actual: size_found(size, layer.size),
            });
        }
        if digest != layer.digest {
            return Err(OciError::Mismatch {
                what,
                digest: layer.digest,
                expected: "that digest".to_string(),
                actual: digest.to_string(),
            });
        }
        if diff_id != layer.diff_id {
            return Err(OciError::Mismatch {
                what: format!("{what} uncompressed"),
                digest: layer.digest,
                expected: format!("diff_id {}", layer.diff_id),
                actual: diff_id.to_string(),
            });
        }
        Ok(())
    }
}

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
