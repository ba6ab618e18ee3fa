//! The content-addressed cache of unpacked images under `<state>/images/`:
//!
//! ```text
//! sha256/<manifest hex>/rootfs/       the unpacked root filesystem, shared read-only
//! sha256/<manifest hex>/image.json    what it is: digest, references, config, size
//! tmp/                                unpacks in progress and removals (emptied at start)
//! ```
//!
//! An entry is unpacked into `tmp/`, its `image.json` written, the file
//! system synced (one `syncfs` instead of an fsync per file), and only then
//! renamed into `sha256/` and the parent fsynced: an entry under `sha256/`
//! is complete, and a crash leaves at most a directory in `tmp/`, which the
//! next start removes. Removal renames the entry out of `sha256/` first, so
//! a half-removed rootfs never looks complete either.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::oci::{ConfigFile, Digest};
use crate::fsutil::remove_dir_if_exists;

/// Layout version of `image.json`.
pub(crate) const ENTRY_VERSION: u32 = 1;
const ENTRY_FILE: &str = "image.json";
const ROOTFS: &str = "rootfs";

/// `image.json`: what a cache entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryMeta {
    /// [`ENTRY_VERSION`].
    pub version: u32,
    /// The manifest digest (`sha256:…`).
    pub digest: String,
    /// References that resolved to it, first one first.
    pub references: Vec<String>,
    /// RFC 3339 time of the unpack.
    pub created_at: String,
    /// How long the unpack took.
    pub unpack_ms: u64,
    /// Number of layers.
    pub layers: usize,
    /// Bytes of regular files in the rootfs.
    pub size_bytes: u64,
    /// The verified image config (its execution defaults).
    pub config: ConfigFile,
}

/// An unpack in progress in `tmp/`; dropped without
/// [`ImageCache::commit`], it is removed.
#[derive(Debug)]
pub(crate) struct PendingEntry {
    dir: PathBuf,
    digest: Digest,
    committed: bool,
}

impl PendingEntry {
    /// Where the layers go.
    pub(crate) fn rootfs(&self) -> PathBuf {
        self.dir.join(ROOTFS)
    }
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_dir_if_exists(&self.dir);
        }
    }
}

/// The cache directory.
#[derive(Debug)]
pub(crate) struct ImageCache {
    root: PathBuf,
    seq: AtomicU64,
}

impl ImageCache {
    /// Opens (creating) the cache at `root`, removing what an interrupted
    /// unpack or removal left in `tmp/`. Gives the paths removed.
    pub(crate) fn open(root: PathBuf) -> io::Result<(ImageCache, Vec<PathBuf>)> {
        for dir in [&root, &root.join("sha256"), &root.join("tmp")] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let mut removed = Vec::new();
        for entry in fs::read_dir(root.join("tmp"))? {
            let path = entry?.path();
            remove_dir_if_exists(&path)?;
            removed.push(path);
        }
        Ok((
            ImageCache {
                root,
                seq: AtomicU64::new(0),
            },
            removed,
        ))
    }

    fn entry_dir(&self, digest: &Digest) -> PathBuf {
        self.root.join("sha256").join(digest.hex())
    }

    fn tmp_dir(&self, what: &str, digest: &Digest) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}", digest.hex()))
    }

    /// The rootfs of a complete entry.
    pub(crate) fn rootfs(&self, digest: &Digest) -> PathBuf {
        self.entry_dir(digest).join(ROOTFS)
    }

    /// A complete entry's metadata; `Ok(None)` when there is no entry.
    pub(crate) fn get(&self, digest: &Digest) -> io::Result<Option<EntryMeta>> {
        let path = self.entry_dir(digest).join(ENTRY_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::other(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every complete entry; unreadable ones are skipped.
    pub(crate) fn list(&self) -> io::Result<Vec<EntryMeta>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.root.join("sha256"))? {
            let name = entry?.file_name();
            let Ok(digest) = Digest::parse(&format!("sha256:{}", name.to_string_lossy())) else {
                continue;
            };
            if let Ok(Some(meta)) = self.get(&digest) {
                out.push(meta);
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// Starts an unpack: an empty rootfs dir (0755) in `tmp/`.
    pub(crate) fn begin(&self, digest: &Digest) -> io::Result<PendingEntry> {
        let dir = self.tmp_dir("unpack", digest);
        fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let pending = PendingEntry {
            dir,
            digest: digest.clone(),
            committed: false,
        };
        let rootfs = pending.rootfs();
        fs::DirBuilder::new().mode(0o755).create(&rootfs)?;
        // Whatever the daemon's umask: the sandbox's users traverse it.
        fs::set_permissions(&rootfs, fs::Permissions::from_mode(0o755))?;
        Ok(pending)
    }

    /// Writes `image.json`, makes everything durable and renames the entry
    /// into place.
    pub(crate) fn commit(&self, mut pending: PendingEntry, meta: &EntryMeta) -> io::Result<()> {
        write_json(&pending.dir.join(ENTRY_FILE), meta)?;
        let dir = File::open(&pending.dir)?;
        nix::unistd::syncfs(dir.as_raw_fd()).map_err(io::Error::from)?;
        let dest = self.entry_dir(&pending.digest);
        fs::rename(&pending.dir, &dest)?;
        pending.committed = true;
        File::open(self.root.join("sha256"))?.sync_all()
    }

    /// Replaces a complete entry's metadata (write, fsync, rename).
    pub(crate) fn update(&self, meta: &EntryMeta, digest: &Digest) -> io::Result<()> {
        let path = self.entry_dir(digest).join(ENTRY_FILE);
        let tmp = path.with_extension("json.tmp");
        write_json(&tmp, meta)?;
        fs::rename(&tmp, &path)?;
        File::open(self.entry_dir(digest))?.sync_all()
    }

    /// Removes an entry: out of `sha256/` first (durably), then deleted.
    /// False when there was none.
    pub(crate) fn remove(&self, digest: &Digest) -> io::Result<bool> {
        let dir = self.entry_dir(digest);
        let doomed = self.tmp_dir("remove", digest);
        match fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        File::open(self.root.join("sha256"))?.sync_all()?;
        remove_dir_if_exists(&doomed)?;
        Ok(true)
    }
}

fn write_json(path: &Path, meta: &EntryMeta) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
    let mut f = File::create(path)?;
    f.write_all(&bytes)?;
    f.sync_all()
}

impl EntryMeta {
    /// The API view, with the actors that use the image.
    pub fn to_api(&self, actors: Vec<String>) -> atelet_api::Image {
        atelet_api::Image {
            digest: self.digest.clone(),
            references: self.references.clone(),
            size_bytes: self.size_bytes,
            layers: self.layers,
            created_at: self.created_at.clone(),
            unpack_ms: self.unpack_ms,
            actors,
        }
    }
}
