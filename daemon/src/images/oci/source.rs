//! Where an image's blobs come from: a layout directory or a tar of one,
//! read index → manifest → config, every blob checked against its digest.

use super::*;

/// Where an image's blobs are read from.
#[derive(Debug, Clone)]
pub(crate) struct ImageSource {
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
pub(crate) type Blob = Box<dyn Read + Send>;

impl ImageSource {
    /// An image layout directory (holds `oci-layout` and `index.json`).
    pub(crate) fn open_layout(dir: &Path) -> Result<ImageSource, OciError> {
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
    pub(crate) fn open_archive(path: &Path) -> Result<ImageSource, OciError> {
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
    pub(crate) fn open_blob(&self, digest: &Digest) -> Result<(Blob, u64), OciError> {
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
        check_blob(what, desc, &bytes)?;
        Ok(bytes)
    }

    /// The manifest `tag` names in `index.json` (following nested indexes
    /// to this host's platform), or the only one when `tag` is `None`.
    /// Reading it is cheap: the cache is looked up by this digest before any
    /// blob is read.
    pub(crate) fn select_manifest(&self, tag: Option<&str>) -> Result<Descriptor, OciError> {
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
    pub(crate) fn load(&self, desc: &Descriptor) -> Result<Image, OciError> {
        let bytes = self.read_verified("manifest", desc)?;
        let manifest = parse_manifest(desc, &bytes)?;
        let config_bytes = self.read_verified("config", &manifest.config)?;
        image_of(desc, &manifest, &config_bytes)
    }

    /// Opens a layer as an uncompressed tar stream. Its digests are checked
    /// by [`LayerReader::finish`], which the caller must call after
    /// consuming the tar and before using anything unpacked from it.
    pub(crate) fn open_layer(&self, layer: &Layer) -> Result<LayerReader, OciError> {
        let (blob, _) = self.open_blob(&layer.digest)?;
        Ok(LayerReader::over(layer, blob))
    }
}

/// Checks a blob read whole against the descriptor that names it: size,
/// then digest.
pub(crate) fn check_blob(what: &str, desc: &Descriptor, bytes: &[u8]) -> Result<(), OciError> {
    let digest =
        Digest::parse(&desc.digest).map_err(|e| invalid(format!("{what} descriptor: {e}")))?;
    if bytes.len() as u64 != desc.size {
        return Err(OciError::Mismatch {
            what: what.to_string(),
            digest,
            expected: format!("{} bytes", desc.size),
            actual: size_found(bytes.len() as u64, desc.size),
        });
    }
    let actual = Digest::of(bytes);
    if actual != digest {
        return Err(OciError::Mismatch {
            what: what.to_string(),
            digest,
            expected: "that digest".to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Parses a (verified) manifest blob and checks what can be checked
/// without its config: the schema, its media type against the
/// descriptor's, and that its config is an image config.
pub(crate) fn parse_manifest(desc: &Descriptor, bytes: &[u8]) -> Result<Manifest, OciError> {
    let digest =
        Digest::parse(&desc.digest).map_err(|e| invalid(format!("manifest descriptor: {e}")))?;
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("manifest {digest}: {e}")))?;
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
    Ok(manifest)
}

/// The image a manifest and its (verified) config describe: the config
/// checked against this host's platform and against the manifest's layers.
pub(crate) fn image_of(
    desc: &Descriptor,
    manifest: &Manifest,
    config_bytes: &[u8],
) -> Result<Image, OciError> {
    let digest =
        Digest::parse(&desc.digest).map_err(|e| invalid(format!("manifest descriptor: {e}")))?;
    let config: ConfigFile = serde_json::from_slice(config_bytes)
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
