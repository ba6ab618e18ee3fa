//! Images: turns an image reference into a root filesystem on this host
//! (the `images` row of docs/design.md).
//!
//! - `dir:<rootfs>` is used in place.
//! - `oci:<layout>[:<tag>]` and `oci-archive:<tar>[:<tag>]` are read by
//!   [`oci`] (every blob checked against its digest), and
//!   `docker://HOST/REPO[:TAG|@DIGEST]` is pulled by [`registry`] (its
//!   layers streamed through the same readers as they arrive); both are
//!   unpacked by
//!   [`extract`] (nothing lands outside the target, whiteouts honoured)
//!   into the content-addressed [`cache`], once per manifest digest, and
//!   shared read-only by every actor of that image.
//!
//! Concurrent resolves of one image wait on a per-digest lock, so it is
//! unpacked once. A resolved image is *pinned* until the caller drops it,
//! so that [`ImageStore::remove`] cannot take a rootfs away between the
//! resolve and the moment the actor's record names the digest.

pub(crate) mod cache;
pub mod extract;
pub(crate) mod oci;
pub mod registry;
pub(crate) mod user;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use atelet_api::ImageRef;
use tokio::sync::OwnedMutexGuard;

use self::cache::{EntryMeta, ImageCache, ENTRY_VERSION};
use self::extract::{apply_layer, ExtractError, LayerStats};
use self::oci::{ConfigFile, Digest, Image, ImageSource, Layer, LayerReader, OciError};
use self::registry::{
    ImagePullError, PullObserver, PullState, Registries, RegistryClients, RegistryError,
    RegistryFault, RegistryRef,
};
use crate::locks::KeyedLocks;
use crate::store::now_rfc3339;

/// References remembered per cache entry (the newest; each layout or
/// archive path that named the image counts once).
const MAX_REFERENCES: usize = 32;

/// Errors of the image layer.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not name something usable on this host.
    #[error("image {reference}: {message}")]
    Invalid {
        /// As given.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// The image is malformed, incomplete or fails a digest check.
    #[error("image {reference}: {source}")]
    Oci {
        /// As given.
        reference: String,
        /// What is wrong.
        source: OciError,
    },
    /// A layer could not be applied (see [`extract`] for the policy).
    #[error("image {reference}: layer {layer}: {source}")]
    Extract {
        /// As given.
        reference: String,
        /// Position of the layer, base = 0.
        layer: usize,
        /// What happened.
        source: ExtractError,
    },
    /// A registry failed or refused (see [`RegistryFault`] for what the
    /// client can do about it).
    #[error("image {reference}: {source}")]
    Registry {
        /// As given.
        reference: String,
        /// What the registry did.
        source: RegistryError,
    },
    /// No cache entry has this digest.
    #[error("image {0} is not in the cache")]
    NotFound(String),
    /// The image is used by actors (or by an operation in flight).
    #[error("image {digest} is in use by {}", users.join(", "))]
    InUse {
        /// The image.
        digest: String,
        /// Who uses it.
        users: Vec<String>,
    },
    /// The cache directory could not be read or written.
    #[error("image cache: {context}: {source}")]
    Cache {
        /// What the daemon was doing.
        context: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl ImageError {
    /// Whether the client is at fault: it named an image that cannot be
    /// used, or one the cache does not hold or cannot give up now. False
    /// when this host failed (writing the cache or a layer's files). The
    /// layer below answers for its own errors.
    pub fn is_client_fault(&self) -> bool {
        match self {
            ImageError::Invalid { .. } | ImageError::NotFound(_) | ImageError::InUse { .. } => true,
            ImageError::Oci { source, .. } => source.is_client_fault(),
            ImageError::Extract { source, .. } => source.is_client_fault(),
            ImageError::Registry { source, .. } => source.fault() != RegistryFault::Daemon,
            ImageError::Cache { .. } => false,
        }
    }
}

fn cache_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let context = context.into();
    move |source| ImageError::Cache { context, source }
}

/// Defaults an image provides for what a container spec leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// Entrypoint + Cmd.
    pub command: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// WorkingDir.
    pub working_dir: Option<String>,
    /// User, resolved to a uid.
    pub uid: Option<u32>,
    /// User's group, resolved to a gid.
    pub gid: Option<u32>,
}

/// A reference resolved to something runsc can use.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The root filesystem directory.
    pub rootfs: PathBuf,
    /// Defaults from the image.
    pub config: ImageConfig,
    /// The manifest digest (`sha256:…`) of a cached image; `None` for `dir:`.
    pub digest: Option<String>,
    /// Keeps the cache entry from removal while held.
    _pin: Option<Arc<Pin>>,
}

/// One hold on a cache entry; see [`ImageStore`].
#[derive(Debug)]
struct Pin {
    digest: String,
    pins: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = pins.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.digest);
            }
        }
    }
}

/// The per-digest lock, held across a removal and the caller's check of
/// who uses the image.
#[derive(Debug)]
pub struct ImageLock {
    digest: Digest,
    _guard: OwnedMutexGuard<()>,
}

impl ImageLock {
    /// The locked image's digest, `sha256:…`.
    pub fn digest(&self) -> String {
        self.digest.to_string()
    }
}

/// A cache entry as listed.
pub type CachedImage = EntryMeta;

/// Resolves image references; owns the image cache.
#[derive(Debug)]
pub struct ImageStore {
    cache: Arc<ImageCache>,
    registries: Arc<RegistryClients>,
    locks: KeyedLocks,
    pins: Arc<Mutex<HashMap<String, usize>>>,
    unpacks: AtomicU64,
}

impl ImageStore {
    /// Opens the cache at `root` (`<state>/images`), removing what an
    /// interrupted unpack left.
    pub fn open(root: PathBuf) -> Result<ImageStore, ImageError> {
        let (cache, removed) = ImageCache::open(root.clone())
            .map_err(cache_err(format!("opening {}", root.display())))?;
        for path in removed {
            tracing::warn!(path = %path.display(), "removed an interrupted image unpack");
        }
        Ok(ImageStore {
            cache: Arc::new(cache),
            registries: Arc::new(RegistryClients::new(Registries::default())),
            locks: KeyedLocks::default(),
            pins: Arc::default(),
            unpacks: AtomicU64::new(0),
        })
    }

    /// The registries this store pulls from, with their settings.
    pub fn with_registries(mut self, registries: Registries) -> ImageStore {
        self.registries = Arc::new(RegistryClients::new(registries));
        self
    }

    /// Resolves `reference` to a root filesystem, unpacking an OCI image
    /// into the cache unless it is there already.
    pub async fn resolve(&self, reference: &str) -> Result<ResolvedImage, ImageError> {
        self.resolve_observed(reference, None).await
    }

    /// As [`ImageStore::resolve`]; a pull from a registry is reported to
    /// `observer` when it starts (a cache hit pulls nothing).
    pub async fn resolve_observed(
        &self,
        reference: &str,
        observer: Option<&PullObserver>,
    ) -> Result<ResolvedImage, ImageError> {
        let invalid = |message: String| ImageError::Invalid {
            reference: reference.to_string(),
            message,
        };
        let (source, tag) = match ImageRef::parse(reference).map_err(invalid)? {
            ImageRef::Dir { path } => return resolve_dir(reference, &path),
            ImageRef::OciLayout { path, tag } => (Source::Layout(PathBuf::from(path)), tag),
            ImageRef::OciArchive { path, tag } => (Source::Archive(PathBuf::from(path)), tag),
            ImageRef::Registry {
                host,
                repository,
                tag,
                digest,
            } => {
                let r = RegistryRef {
                    host,
                    repository,
                    tag,
                    digest,
                };
                return self.resolve_registry(reference, &r, observer).await;
            }
        };
        let oci_err = |source| ImageError::Oci {
            reference: reference.to_string(),
            source,
        };
        let (source, desc) = blocking(move || {
            let source = match source {
                Source::Layout(p) => ImageSource::open_layout(&p),
                Source::Archive(p) => ImageSource::open_archive(&p),
            }?;
            let desc = source.select_manifest(tag.as_deref())?;
            Ok::<_, OciError>((source, desc))
        })
        .await?
        .map_err(oci_err)?;
        let digest = Digest::parse(&desc.digest).map_err(oci_err)?;

        let _lock = self.locks.lock(digest.hex()).await;
        let meta = match self.cached(reference, &digest)? {
            Some(meta) => meta,
            None => {
                let cache = self.cache.clone();
                let reference = reference.to_string();
                self.unpacks.fetch_add(1, Ordering::Relaxed);
                blocking(move || {
                    let image = source.load(&desc).map_err(|source| ImageError::Oci {
                        reference: reference.clone(),
                        source,
                    })?;
                    let mut open = |layer: &Layer| {
                        source.open_layer(layer).map_err(|source| ImageError::Oci {
                            reference: reference.clone(),
                            source,
                        })
                    };
                    unpack(&cache, image, &reference, &mut open, &|| None)
                })
                .await??
            }
        };
        self.cached_image(reference, &digest, &meta)
    }

    /// The cache entry of `digest`, with `reference` added to its
    /// references; `None` when there is none (an unreadable one is
    /// removed, to be unpacked again). Called with the digest's lock held.
    fn cached(&self, reference: &str, digest: &Digest) -> Result<Option<EntryMeta>, ImageError> {
        match self.cache.get(digest) {
            Ok(Some(mut meta)) => {
                tracing::info!(digest = %digest, reference, "image cache hit");
                if !meta.references.iter().any(|r| r == reference) {
                    meta.references.push(reference.to_string());
                    let excess = meta.references.len().saturating_sub(MAX_REFERENCES);
                    meta.references.drain(..excess);
                    self.cache
                        .update(&meta, digest)
                        .map_err(cache_err(format!("recording a reference to {digest}")))?;
                }
                Ok(Some(meta))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!(digest = %digest, error = %e, "unreadable image cache entry: unpacking again");
                self.cache
                    .remove(digest)
                    .map_err(cache_err(format!("removing {digest}")))?;
                Ok(None)
            }
        }
    }

    /// Resolves a registry reference to this node's manifest, then pulls
    /// it unless the cache has it: the config whole, the layers streamed
    /// into the extraction as they arrive, all under the digest's lock, so
    /// concurrent creates of one image pull it once.
    async fn resolve_registry(
        &self,
        reference: &str,
        r: &RegistryRef,
        observer: Option<&PullObserver>,
    ) -> Result<ResolvedImage, ImageError> {
        let pull_err = |e: ImagePullError| match e {
            ImagePullError::Registry(source) => ImageError::Registry {
                reference: reference.to_string(),
                source,
            },
            ImagePullError::Oci(source) => ImageError::Oci {
                reference: reference.to_string(),
                source,
            },
        };
        let oci_err = |source| ImageError::Oci {
            reference: reference.to_string(),
            source,
        };
        let manifest = self.registries.resolve(r).await.map_err(pull_err)?;
        let digest = Digest::parse(&manifest.desc.digest).map_err(oci_err)?;
        let _lock = self.locks.lock(digest.hex()).await;
        if let Some(meta) = self.cached(reference, &digest)? {
            return self.cached_image(reference, &digest, &meta);
        }
        let parsed = oci::parse_manifest(&manifest.desc, &manifest.bytes).map_err(oci_err)?;
        // From here on the repository is read at this digest only.
        let pinned = r.at(&digest);
        let config = self
            .registries
            .fetch_small(&pinned, "config", &parsed.config)
            .await
            .map_err(pull_err)?;
        let image = oci::image_of(&manifest.desc, &parsed, &config).map_err(oci_err)?;
        let total = image
            .layers
            .iter()
            .fold(parsed.config.size, |t, l| t.saturating_add(l.size));
        let state = Arc::new(PullState::new(reference, &digest, total));
        state.add(config.len() as u64);
        if let Some(observe) = observer {
            observe(state.clone());
        }
        tracing::info!(digest = %digest, reference, layers = image.layers.len(), bytes = total, "pulling image");
        self.unpacks.fetch_add(1, Ordering::Relaxed);
        let failure: Arc<Mutex<Option<RegistryError>>> = Arc::default();
        let rt = tokio::runtime::Handle::current();
        let (cache, clients) = (self.cache.clone(), self.registries.clone());
        let (reference_owned, progress) = (reference.to_string(), state.clone());
        let unpacked = blocking(move || {
            let mut open = |layer: &Layer| -> Result<LayerReader, ImageError> {
                let blob =
                    clients.open_layer(&rt, &pinned, layer, progress.clone(), failure.clone());
                Ok(LayerReader::over(layer, blob))
            };
            let failed = || {
                failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .map(|source| ImageError::Registry {
                        reference: reference_owned.clone(),
                        source,
                    })
            };
            unpack(&cache, image, &reference_owned, &mut open, &failed)
        })
        .await;
        state.finish();
        let meta = unpacked??;
        self.cached_image(reference, &digest, &meta)
    }

    /// A cache entry as a resolved image, pinned. Called with the digest's
    /// lock held.
    fn cached_image(
        &self,
        reference: &str,
        digest: &Digest,
        meta: &EntryMeta,
    ) -> Result<ResolvedImage, ImageError> {
        let rootfs = self.cache.rootfs(digest);
        let config =
            image_config(&meta.config, &rootfs).map_err(|message| ImageError::Invalid {
                reference: reference.to_string(),
                message,
            })?;
        Ok(ResolvedImage {
            rootfs,
            config,
            digest: Some(digest.to_string()),
            _pin: Some(self.pin(digest)),
        })
    }

    /// Resolves the image an actor was created with: the cache entry of
    /// `digest` when it is there, else `reference`, which must still name
    /// that digest (a snapshot must resume on the rootfs it was taken on);
    /// a registry reference is pulled at that digest.
    pub async fn resolve_recorded(
        &self,
        reference: &str,
        digest: Option<&str>,
    ) -> Result<ResolvedImage, ImageError> {
        let Some(recorded) = digest else {
            return self.resolve(reference).await;
        };
        let d = Digest::parse(recorded).map_err(|source| ImageError::Oci {
            reference: reference.to_string(),
            source,
        })?;
        {
            let _lock = self.locks.lock(d.hex()).await;
            if let Ok(Some(meta)) = self.cache.get(&d) {
                return self.cached_image(reference, &d, &meta);
            }
        }
        // A registry image is pulled again at the recorded digest, not
        // whatever its tag names now.
        if let Ok(ImageRef::Registry {
            host,
            repository,
            tag,
            ..
        }) = ImageRef::parse(reference)
        {
            let r = RegistryRef {
                host,
                repository,
                tag,
                digest: None,
            };
            return self.resolve_registry(reference, &r.at(&d), None).await;
        }
        let image = self.resolve(reference).await?;
        if image.digest.as_deref() != Some(recorded) {
            return Err(ImageError::Invalid {
                reference: reference.to_string(),
                message: format!(
                    "the actor was created from image {recorded}, which is no longer cached, and the reference now names {}",
                    image.digest.as_deref().unwrap_or("a directory")
                ),
            });
        }
        Ok(image)
    }

    /// Unpacks started since the daemon started (a cache miss each).
    pub fn unpack_count(&self) -> u64 {
        self.unpacks.load(Ordering::Relaxed)
    }

    fn pin(&self, digest: &Digest) -> Arc<Pin> {
        let key = digest.to_string();
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        *pins.entry(key.clone()).or_default() += 1;
        Arc::new(Pin {
            digest: key,
            pins: self.pins.clone(),
        })
    }

    /// The cache entries, by digest.
    pub fn list(&self) -> Result<Vec<CachedImage>, ImageError> {
        self.cache.list().map_err(cache_err("listing"))
    }

    /// Takes the lock of one image (a malformed digest is refused).
    pub async fn lock(&self, digest: &str) -> Result<ImageLock, ImageError> {
        let digest = Digest::parse(digest).map_err(|source| ImageError::Oci {
            reference: digest.to_string(),
            source,
        })?;
        let guard = self.locks.lock(digest.hex()).await;
        Ok(ImageLock {
            digest,
            _guard: guard,
        })
    }

    /// Removes a cache entry; the caller has checked under `lock` that no
    /// actor uses it. Refused while an operation in flight holds it.
    pub fn remove(&self, lock: &ImageLock) -> Result<(), ImageError> {
        let key = lock.digest.to_string();
        let pinned = self
            .pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied()
            .unwrap_or(0);
        if pinned > 0 {
            return Err(ImageError::InUse {
                digest: key,
                users: vec![format!("{pinned} operation(s) in progress")],
            });
        }
        if !self
            .cache
            .remove(&lock.digest)
            .map_err(cache_err(format!("removing {key}")))?
        {
            return Err(ImageError::NotFound(key));
        }
        self.locks.forget(lock.digest.hex());
        tracing::info!(digest = %key, "image removed from the cache");
        Ok(())
    }
}

enum Source {
    Layout(PathBuf),
    Archive(PathBuf),
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ImageError::Cache {
            context: "image task".to_string(),
            source: std::io::Error::other(e.to_string()),
        })
}

fn resolve_dir(reference: &str, path: &str) -> Result<ResolvedImage, ImageError> {
    let invalid = |message: String| ImageError::Invalid {
        reference: reference.to_string(),
        message,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(ResolvedImage {
            rootfs: PathBuf::from(path),
            config: ImageConfig::default(),
            digest: None,
            _pin: None,
        }),
        Ok(_) => Err(invalid(format!("{path} is not a directory"))),
        Err(e) => Err(invalid(format!("{path}: {e}"))),
    }
}

/// Unpacks a checked image into a new cache entry, each layer from
/// `open_layer`. When a layer fails, `failed` may tell the cause the
/// reader only saw as an I/O error (a registry's download). Blocking.
fn unpack(
    cache: &ImageCache,
    image: Image,
    reference: &str,
    open_layer: &mut dyn FnMut(&Layer) -> Result<LayerReader, ImageError>,
    failed: &dyn Fn() -> Option<ImageError>,
) -> Result<EntryMeta, ImageError> {
    let t0 = Instant::now();
    let oci_err = |source| ImageError::Oci {
        reference: reference.to_string(),
        source,
    };
    let pending = cache
        .begin(&image.digest)
        .map_err(cache_err(format!("starting to unpack {}", image.digest)))?;
    let rootfs = pending.rootfs();
    let mut stats = LayerStats::default();
    for layer in &image.layers {
        let mut stream = open_layer(layer)?;
        let applied = apply_layer(&rootfs, &mut stream).map_err(|source| ImageError::Extract {
            reference: reference.to_string(),
            layer: layer.index,
            source,
        });
        let applied = applied.and_then(|s| stream.finish().map(|()| s).map_err(oci_err));
        match applied {
            Ok(s) => stats += s,
            Err(e) => return Err(failed().unwrap_or(e)),
        }
    }
    let unpack_ms = t0.elapsed().as_millis() as u64;
    let meta = EntryMeta {
        version: ENTRY_VERSION,
        digest: image.digest.to_string(),
        references: vec![reference.to_string()],
        created_at: now_rfc3339(),
        unpack_ms,
        layers: image.layers.len(),
        size_bytes: stats.bytes,
        config: image.config,
    };
    let t_commit = Instant::now();
    cache
        .commit(pending, &meta)
        .map_err(cache_err(format!("committing {}", image.digest)))?;
    tracing::info!(
        digest = %image.digest,
        reference,
        layers = image.layers.len(),
        files = stats.files,
        bytes = stats.bytes,
        skipped_devices = stats.skipped,
        whiteouts = stats.whiteouts,
        commit_ms = t_commit.elapsed().as_millis() as u64,
        duration_ms = t0.elapsed().as_millis() as u64,
        "image unpacked"
    );
    Ok(meta)
}

/// The container defaults of an image config, its User resolved against
/// the unpacked rootfs.
fn image_config(config: &ConfigFile, rootfs: &Path) -> Result<ImageConfig, String> {
    let exec = config.config.clone().unwrap_or_default();
    let mut command = exec.entrypoint.unwrap_or_default();
    command.extend(exec.cmd.unwrap_or_default());
    let (uid, gid) = user::resolve_user(rootfs, exec.user.as_deref().unwrap_or(""))?;
    let working_dir = exec.working_dir.filter(|w| !w.is_empty()).map(|w| {
        if w.starts_with('/') {
            w
        } else {
            format!("/{w}")
        }
    });
    Ok(ImageConfig {
        command,
        env: exec.env.unwrap_or_default(),
        working_dir,
        uid,
        gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::io::Write;

    #[test]
    fn image_errors_say_whose_fault_they_are() {
        let reference = || "oci:/srv/l".to_string();
        let client = [
            ImageError::Invalid {
                reference: reference(),
                message: "missing".into(),
            },
            ImageError::NotFound("sha256:0".into()),
            ImageError::InUse {
                digest: "sha256:0".into(),
                users: vec!["a".into()],
            },
            ImageError::Oci {
                reference: reference(),
                source: OciError::Invalid("no index.json".into()),
            },
            ImageError::Extract {
                reference: reference(),
                layer: 1,
                source: ExtractError::Read(std::io::Error::other("corrupt")),
            },
        ];
        for e in client {
            assert!(e.is_client_fault(), "{e}");
        }
        let server = [
            ImageError::Cache {
                context: "committing".into(),
                source: std::io::Error::other("disk full"),
            },
            ImageError::Extract {
                reference: reference(),
                layer: 0,
                source: ExtractError::Write {
                    path: "/state/images/tmp/x".into(),
                    source: std::io::Error::other("disk full"),
                },
            },
        ];
        for e in server {
            assert!(!e.is_client_fault(), "{e}");
        }
    }

    /// A layer: its blob, media type and uncompressed tar.
    struct TestLayer {
        blob: Vec<u8>,
        media_type: &'static str,
        tar: Vec<u8>,
    }

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, name, data.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(parts: &[&[u8]]) -> Vec<u8> {
        // One gzip member per part: readers must take them all.
        parts
            .iter()
            .flat_map(|p| {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(p).unwrap();
                e.finish().unwrap()
            })
            .collect()
    }

    fn zstd(parts: &[&[u8]]) -> Vec<u8> {
        // One frame per part, with a skippable frame between them.
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
                out.extend_from_slice(&3u32.to_le_bytes());
                out.extend_from_slice(b"skp");
            }
            out.extend(ruzstd::encoding::compress_to_vec(
                *p,
                ruzstd::encoding::CompressionLevel::Fastest,
            ));
        }
        out
    }

    fn layer(kind: &str, files: &[(&str, &str)]) -> TestLayer {
        let tar = tar_of(files);
        let (a, b) = tar.split_at(tar.len() / 2);
        let (blob, media_type) = match kind {
            "gzip" => (gzip(&[a, b]), "application/vnd.oci.image.layer.v1.tar+gzip"),
            "zstd" => (zstd(&[a, b]), "application/vnd.oci.image.layer.v1.tar+zstd"),
            _ => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
        };
        TestLayer {
            blob,
            media_type,
            tar,
        }
    }

    fn put_blob(layout: &Path, bytes: &[u8]) -> Value {
        let d = Digest::of(bytes);
        std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        std::fs::write(layout.join("blobs/sha256").join(d.hex()), bytes).unwrap();
        json!({"digest": d.to_string(), "size": bytes.len()})
    }

    fn descriptor(media_type: &str, mut d: Value) -> Value {
        d["mediaType"] = json!(media_type);
        d
    }

    /// Writes an image into the layout at `dir` (adding to its index) and
    /// gives the manifest digest.
    fn write_image(dir: &Path, tag: &str, layers: &[TestLayer], exec: Value) -> String {
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|l| Digest::of(&l.tar).to_string())
            .collect();
        let config = serde_json::to_vec(&json!({
            "architecture": oci::host_architecture(), "os": "linux",
            "config": exec,
            "rootfs": {"type": "layers", "diff_ids": diff_ids}
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": oci::media_type::OCI_MANIFEST,
            "config": descriptor(oci::media_type::OCI_CONFIG, put_blob(dir, &config)),
            "layers": layers.iter().map(|l| descriptor(l.media_type, put_blob(dir, &l.blob))).collect::<Vec<_>>(),
        }))
        .unwrap();
        let mut m = descriptor(oci::media_type::OCI_MANIFEST, put_blob(dir, &manifest));
        m["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let mut index: Value = std::fs::read(dir.join("index.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| json!({"schemaVersion": 2, "manifests": []}));
        index["manifests"].as_array_mut().unwrap().push(m.clone());
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        m["digest"].as_str().unwrap().to_string()
    }

    /// Three layers, one per compression, the top one whiting out.
    fn busy_image(dir: &Path) -> String {
        write_image(
            dir,
            "latest",
            &[
                layer(
                    "gzip",
                    &[
                        (
                            "etc/passwd",
                            "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
                        ),
                        ("bin/tool", "v1"),
                        ("old/file", "gone soon"),
                    ],
                ),
                layer("zstd", &[("bin/tool", "v2"), ("srv/data", "d")]),
                layer("none", &[(".wh.old", ""), ("srv/more", "m")]),
            ],
            json!({"Entrypoint": ["/bin/tool"], "Cmd": ["--serve"], "Env": ["A=1"],
                   "WorkingDir": "srv", "User": "app"}),
        )
    }

    struct Fixture {
        tmp: tempfile::TempDir,
        store: ImageStore,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path().join("state/images")).unwrap();
        Fixture { tmp, store }
    }

    impl Fixture {
        fn layout(&self) -> PathBuf {
            self.tmp.path().join("layout")
        }
        fn tmp_entries(&self) -> usize {
            std::fs::read_dir(self.tmp.path().join("state/images/tmp"))
                .unwrap()
                .count()
        }
    }

    #[tokio::test]
    async fn gzip_zstd_and_plain_layers_unpack_with_whiteouts_and_defaults() {
        let f = fixture();
        let digest = busy_image(&f.layout());
        let r = format!("oci:{}:latest", f.layout().display());
        let img = f.store.resolve(&r).await.unwrap();
        assert_eq!(img.digest.as_deref(), Some(digest.as_str()));
        let read = |p: &str| std::fs::read_to_string(img.rootfs.join(p)).unwrap();
        assert_eq!(read("bin/tool"), "v2");
        assert_eq!(read("srv/data"), "d");
        assert_eq!(read("srv/more"), "m");
        assert!(!img.rootfs.join("old").exists());
        assert_eq!(
            img.config,
            ImageConfig {
                command: vec!["/bin/tool".into(), "--serve".into()],
                env: vec!["A=1".into()],
                working_dir: Some("/srv".into()),
                uid: Some(1000),
                gid: Some(1000),
            }
        );
        let list = f.store.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].digest, digest);
        assert_eq!(list[0].layers, 3);
        assert_eq!(list[0].references, [r]);
        assert_eq!(f.tmp_entries(), 0);
    }

    #[tokio::test]
    async fn concurrent_resolves_unpack_once_and_an_archive_shares_the_entry() {
        let f = fixture();
        busy_image(&f.layout());
        let r = format!("oci:{}", f.layout().display());
        let archive = f.tmp.path().join("image.tar");
        let layout = f.layout();
        let store = Arc::new(f.store);
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (store, r) = (store.clone(), r.clone());
                tokio::spawn(async move { store.resolve(&r).await.unwrap().rootfs })
            })
            .collect();
        let mut roots = Vec::new();
        for t in tasks {
            roots.push(t.await.unwrap());
        }
        roots.dedup();
        assert_eq!(roots.len(), 1);
        assert_eq!(store.unpack_count(), 1);

        // The same image as a tar of the layout: same digest, no unpack.
        let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        b.append_dir_all(".", &layout).unwrap();
        b.finish().unwrap();
        let a = format!("oci-archive:{}:latest", archive.display());
        let img = store.resolve(&a).await.unwrap();
        assert_eq!(img.rootfs, roots[0]);
        assert_eq!(store.unpack_count(), 1);
        assert_eq!(store.list().unwrap()[0].references, [r, a]);
    }

    #[tokio::test]
    async fn a_tampered_layer_is_refused_and_leaves_nothing() {
        let f = fixture();
        busy_image(&f.layout());
        // Swap the zstd layer's content for other bytes of the same size.
        let blobs = f.layout().join("blobs/sha256");
        let zstd_blob = std::fs::read_dir(&blobs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                std::fs::read(p)
                    .unwrap()
                    .starts_with(&0xFD2F_B528u32.to_le_bytes())
            })
            .unwrap();
        let mut bytes = std::fs::read(&zstd_blob).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&zstd_blob, bytes).unwrap();
        let err = f
            .store
            .resolve(&format!("oci:{}", f.layout().display()))
            .await
            .unwrap_err();
        assert!(matches!(err, ImageError::Oci { .. }), "{err}");
        assert!(err.to_string().contains("layer 1"), "{err}");
        assert!(f.store.list().unwrap().is_empty());
        assert_eq!(f.tmp_entries(), 0);
    }

    #[tokio::test]
    async fn a_layer_without_its_padding_and_end_blocks_unpacks_and_is_still_checked() {
        // What umoci 0.4.7 writes: the tar stops right after the last
        // entry's data (1000 bytes: not a multiple of 512).
        let data = "x".repeat(1000);
        let full = tar_of(&[("etc/passwd", "root:x:0:0::/:/bin/sh\n"), ("data", &data)]);
        let end = full.len() - 1024 - (512 - 1000 % 512);
        let unclosed = |kind: &str, tar: &[u8]| TestLayer {
            blob: match kind {
                "gzip" => gzip(&[tar]),
                _ => tar.to_vec(),
            },
            media_type: match kind {
                "gzip" => "application/vnd.oci.image.layer.v1.tar+gzip",
                _ => "application/vnd.oci.image.layer.v1.tar",
            },
            tar: tar.to_vec(),
        };
        let f = fixture();
        for kind in ["gzip", "none"] {
            let layout = f.tmp.path().join(kind);
            write_image(
                &layout,
                "latest",
                &[unclosed(kind, &full[..end])],
                json!({}),
            );
            let img = f
                .store
                .resolve(&format!("oci:{}", layout.display()))
                .await
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(
                std::fs::read_to_string(img.rootfs.join("data")).unwrap(),
                data
            );
        }
        // The diff_id is checked against the bytes as they are, without the
        // zeros the reader supplied: the whole tar's diff_id does not match.
        let mut wrong = unclosed("none", &full[..end]);
        wrong.tar = full.clone();
        let layout = f.tmp.path().join("wrong");
        write_image(&layout, "latest", &[wrong], json!({}));
        let err = f
            .store
            .resolve(&format!("oci:{}", layout.display()))
            .await
            .unwrap_err();
        assert!(matches!(err, ImageError::Oci { .. }), "{err}");
        assert!(err.to_string().contains("diff_id"), "{err}");
        // Cut inside the data, digests and all: refused (400), naming where.
        let layout = f.tmp.path().join("cut");
        write_image(
            &layout,
            "latest",
            &[unclosed("none", &full[..end - 1])],
            json!({}),
        );
        let err = f
            .store
            .resolve(&format!("oci:{}", layout.display()))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::Extract {
                    source: ExtractError::Read(_),
                    ..
                }
            ),
            "{err}"
        );
        let want = format!(
            "layer 0: reading the layer: the layer ends at byte {}, inside the data of \"data\"",
            end - 1
        );
        assert!(err.to_string().contains(&want), "{err}");
        assert_eq!(f.store.list().unwrap().len(), 2, "only the two good images");
        assert_eq!(f.tmp_entries(), 0);
    }

    #[tokio::test]
    async fn bad_references_name_the_problem() {
        let f = fixture();
        let layout = f.layout();
        busy_image(&layout);
        write_image(&layout, "v2", &[layer("gzip", &[("x", "x")])], json!({}));
        let msg = |r: String| {
            let store = &f.store;
            async move { store.resolve(&r).await.unwrap_err().to_string() }
        };
        let l = layout.display();
        assert!(msg(format!("oci:{l}")).await.contains("several manifests"));
        assert!(msg(format!("oci:{l}:nope")).await.contains("latest, v2"));
        assert!(msg(format!("oci:{l}/missing"))
            .await
            .contains("No such file"));
        assert!(msg(format!("oci-archive:{l}")).await.contains("directory"));
        assert!(msg("oci:relative".into()).await.contains("absolute"));

        // A media type this daemon does not unpack.
        let other = f.tmp.path().join("other");
        let mut l1 = layer("none", &[("x", "x")]);
        l1.media_type = "application/vnd.oci.image.layer.v1.tar+bzip2";
        write_image(&other, "latest", &[l1], json!({}));
        let m = msg(format!("oci:{}", other.display())).await;
        assert!(
            m.contains("tar+bzip2") && m.contains("not supported"),
            "{m}"
        );
        assert_eq!(f.tmp_entries(), 0);
    }

    #[tokio::test]
    async fn removal_waits_for_pins_and_stale_unpacks_go_at_open() {
        let f = fixture();
        let digest = busy_image(&f.layout());
        let img = f
            .store
            .resolve(&format!("oci:{}", f.layout().display()))
            .await
            .unwrap();
        let lock = f.store.lock(&digest).await.unwrap();
        assert!(matches!(
            f.store.remove(&lock),
            Err(ImageError::InUse { .. })
        ));
        drop(img);
        f.store.remove(&lock).unwrap();
        assert!(matches!(
            f.store.remove(&lock),
            Err(ImageError::NotFound(_))
        ));
        drop(lock);
        assert!(f.store.list().unwrap().is_empty());
        assert!(f.store.lock("sha256:nothex").await.is_err());

        // An unpack a crash interrupted is removed when the cache opens.
        let stale = f.tmp.path().join("state/images/tmp/unpack-x-0/rootfs");
        std::fs::create_dir_all(&stale).unwrap();
        ImageStore::open(f.tmp.path().join("state/images")).unwrap();
        assert_eq!(f.tmp_entries(), 0);
    }
}
