//! The snapshot store (DESIGN §6): one directory per snapshot under
//! `<state>/snapshots/<actor>/<snapshot>/`, holding `checkpoint.img` and
//! `manifest.json`.
//!
//! A snapshot is written into `.tmp-<snapshot>`, its files are fsynced, the
//! manifest (with sizes and sha256) is written and fsynced, and only then is
//! the directory renamed into place and the parent fsynced. The caller
//! records it in sled after that; a directory that is not in sled does not
//! count and is removed by crash recovery.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil::{hex, remove_dir_if_exists};

/// Manifest layout version.
pub const MANIFEST_VERSION: u32 = 1;
/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// Prefix of directories being written.
pub const TMP_PREFIX: &str = ".tmp-";

/// Errors of the snapshot layer.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file operation failed.
    #[error("snapshot {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The manifest is unreadable or does not match the files.
    #[error("snapshot {path} is corrupt: {detail}")]
    Corrupt {
        /// The snapshot dir.
        path: PathBuf,
        /// What does not match.
        detail: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestFile {
    /// Name within the snapshot dir.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Hex sha256.
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// Whose snapshot.
    pub actor_id: String,
    /// Its id.
    pub snapshot_id: String,
    /// sha256 of the actor's spec (JSON), to tell what it was taken of.
    pub spec_hash: String,
    /// The runsc that wrote the image; restore needs the same.
    pub runsc_version: String,
    /// RFC 3339.
    pub created_at: String,
    /// Every file but the manifest.
    pub files: Vec<ManifestFile>,
}

/// What a committed snapshot is, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Snapshot id.
    pub id: String,
    /// Bytes on disk, manifest included.
    pub size_bytes: u64,
    /// The manifest written.
    pub manifest: Manifest,
}

/// A snapshot directory being written.
#[derive(Debug)]
pub struct Pending {
    /// The temporary directory runsc writes into.
    pub dir: PathBuf,
    actor_id: String,
    snapshot_id: String,
}

/// Snapshots on disk.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    root: PathBuf,
}

impl SnapshotStore {
    /// Store rooted at `<state>/snapshots`.
    pub fn new(root: PathBuf) -> SnapshotStore {
        SnapshotStore { root }
    }

    /// `<root>/<actor>`.
    pub fn actor_dir(&self, actor_id: &str) -> PathBuf {
        self.root.join(actor_id)
    }

    /// `<root>/<actor>/<snapshot>`.
    pub fn dir(&self, actor_id: &str, snapshot_id: &str) -> PathBuf {
        self.actor_dir(actor_id).join(snapshot_id)
    }

    /// Creates a fresh temporary directory for a checkpoint.
    pub fn begin(&self, actor_id: &str, snapshot_id: &str) -> Result<Pending, SnapshotError> {
        use std::os::unix::fs::DirBuilderExt;
        let parent = self.actor_dir(actor_id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&parent)
            .map_err(io_err(&parent))?;
        let dir = parent.join(format!("{TMP_PREFIX}{snapshot_id}"));
        remove_dir_if_exists(&dir).map_err(io_err(&dir))?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(&dir))?;
        Ok(Pending {
            dir,
            actor_id: actor_id.to_string(),
            snapshot_id: snapshot_id.to_string(),
        })
    }

    /// Throws a pending snapshot away (failed checkpoint).
    pub fn discard(&self, pending: Pending) -> Result<(), SnapshotError> {
        remove_dir_if_exists(&pending.dir).map_err(io_err(&pending.dir))
    }

    /// Makes a pending snapshot durable: fsync, manifest, rename, fsync.
    /// Blocking; run it off the async threads.
    pub fn commit(
        &self,
        pending: &Pending,
        spec_hash: String,
        runsc_version: String,
        created_at: String,
    ) -> Result<Committed, SnapshotError> {
        let mut files = Vec::new();
        let mut names: Vec<String> = std::fs::read_dir(&pending.dir)
            .map_err(io_err(&pending.dir))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(io_err(&pending.dir))?;
        names.sort();
        if !names.iter().any(|n| n == "checkpoint.img") {
            return Err(SnapshotError::Corrupt {
                path: pending.dir.clone(),
                detail: "runsc wrote no checkpoint.img".to_string(),
            });
        }
        // The image's writeback (fsync) runs while it is hashed and the
        // manifest written; both must be done before the rename.
        let (bytes, manifest) = std::thread::scope(|scope| {
            let syncs: Vec<_> = names
                .iter()
                .map(|name| {
                    let path = pending.dir.join(name);
                    scope.spawn(move || sync_private(&path))
                })
                .collect();
            let written = (|| {
                for name in &names {
                    let path = pending.dir.join(name);
                    let (size, sha256) = hash_file(&path)?;
                    files.push(ManifestFile {
                        name: name.clone(),
                        size,
                        sha256,
                    });
                }
                let manifest = Manifest {
                    version: MANIFEST_VERSION,
                    actor_id: pending.actor_id.clone(),
                    snapshot_id: pending.snapshot_id.clone(),
                    spec_hash,
                    runsc_version,
                    created_at,
                    files,
                };
                let bytes =
                    serde_json::to_vec_pretty(&manifest).map_err(|e| SnapshotError::Corrupt {
                        path: pending.dir.clone(),
                        detail: e.to_string(),
                    })?;
                let mpath = pending.dir.join(MANIFEST);
                let mut f = {
                    use std::os::unix::fs::OpenOptionsExt;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&mpath)
                        .map_err(io_err(&mpath))?
                };
                f.write_all(&bytes).map_err(io_err(&mpath))?;
                f.sync_all().map_err(io_err(&mpath))?;
                sync_dir(&pending.dir)?;
                Ok::<_, SnapshotError>((bytes, manifest))
            })();
            for s in syncs {
                s.join().unwrap_or_else(|_| {
                    Err(SnapshotError::Corrupt {
                        path: pending.dir.clone(),
                        detail: "fsync thread panicked".to_string(),
                    })
                })?;
            }
            written
        })?;
        let dest = self.dir(&pending.actor_id, &pending.snapshot_id);
        remove_dir_if_exists(&dest).map_err(io_err(&dest))?;
        std::fs::rename(&pending.dir, &dest).map_err(io_err(&dest))?;
        sync_dir(&self.actor_dir(&pending.actor_id))?;
        let size_bytes = manifest.files.iter().map(|f| f.size).sum::<u64>() + bytes.len() as u64;
        Ok(Committed {
            id: pending.snapshot_id.clone(),
            size_bytes,
            manifest,
        })
    }

    /// Reads a committed snapshot's manifest.
    pub fn manifest(&self, actor_id: &str, snapshot_id: &str) -> Result<Manifest, SnapshotError> {
        let dir = self.dir(actor_id, snapshot_id);
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| SnapshotError::Corrupt {
            path: dir.clone(),
            detail: format!("manifest: {e}"),
        })?;
        if m.actor_id != actor_id || m.snapshot_id != snapshot_id {
            return Err(SnapshotError::Corrupt {
                path: dir,
                detail: format!(
                    "manifest names {}/{}, not {actor_id}/{snapshot_id}",
                    m.actor_id, m.snapshot_id
                ),
            });
        }
        Ok(m)
    }

    /// Checks that every file has the size the manifest says (cheap; the
    /// resume path). `full` also checks the sha256 of each file.
    pub fn verify(&self, manifest: &Manifest, full: bool) -> Result<(), SnapshotError> {
        let dir = self.dir(&manifest.actor_id, &manifest.snapshot_id);
        for f in &manifest.files {
            let path = dir.join(&f.name);
            let size = std::fs::metadata(&path).map_err(io_err(&path))?.len();
            if size != f.size {
                return Err(SnapshotError::Corrupt {
                    path: dir,
                    detail: format!("{} has {size} bytes, manifest says {}", f.name, f.size),
                });
            }
            if full {
                let (_, sha) = hash_file(&path)?;
                if sha != f.sha256 {
                    return Err(SnapshotError::Corrupt {
                        path: dir,
                        detail: format!("{} sha256 {sha}, manifest says {}", f.name, f.sha256),
                    });
                }
            }
        }
        Ok(())
    }

    /// Removes one snapshot directory.
    pub fn remove(&self, actor_id: &str, snapshot_id: &str) -> Result<(), SnapshotError> {
        let dir = self.dir(actor_id, snapshot_id);
        remove_dir_if_exists(&dir).map_err(io_err(&dir))
    }

    /// Removes all of an actor's snapshots.
    pub fn remove_actor(&self, actor_id: &str) -> Result<(), SnapshotError> {
        let dir = self.actor_dir(actor_id);
        remove_dir_if_exists(&dir).map_err(io_err(&dir))
    }

    /// Names of the directories under an actor's snapshot dir (committed and temporary).
    pub fn entries(&self, actor_id: &str) -> Result<Vec<String>, SnapshotError> {
        list_dir(&self.actor_dir(actor_id))
    }
}

fn list_dir(dir: &Path) -> Result<Vec<String>, SnapshotError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_err(dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

fn hash_file(path: &Path) -> Result<(u64, String), SnapshotError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    hash_reader(&mut f, path)
}

fn hash_reader(f: &mut File, path: &Path) -> Result<(u64, String), SnapshotError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex(&hasher.finalize())))
}

/// Makes a file private (0600: a snapshot holds the actor's whole memory)
/// and fsyncs it.
fn sync_private(path: &Path) -> Result<(), SnapshotError> {
    use std::os::unix::fs::PermissionsExt;
    let f = File::open(path).map_err(io_err(path))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_is_atomic_and_verifiable() {
        let root = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(root.path().join("snapshots"));
        let p = store.begin("a", "snap-000001").unwrap();
        std::fs::write(p.dir.join("checkpoint.img"), b"image bytes").unwrap();
        assert_eq!(store.entries("a").unwrap(), [".tmp-snap-000001"]);
        let c = store
            .commit(&p, "spec".into(), "v1".into(), "t".into())
            .unwrap();
        assert_eq!(store.entries("a").unwrap(), ["snap-000001"]);
        let m = store.manifest("a", "snap-000001").unwrap();
        assert_eq!(m, c.manifest);
        assert_eq!(m.files[0].size, 11);
        assert_eq!(m.files[0].sha256, crate::fsutil::sha256_hex(b"image bytes"));
        store.verify(&m, true).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let dir = store.dir("a", "snap-000001");
        for f in ["checkpoint.img", "manifest.json"] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(
            store.dir("a", "snap-000001").join("checkpoint.img"),
            b"image byteZ",
        )
        .unwrap();
        store.verify(&m, false).unwrap();
        assert!(matches!(
            store.verify(&m, true),
            Err(SnapshotError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_checkpoint_without_an_image_does_not_commit() {
        let root = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(root.path().to_path_buf());
        let p = store.begin("a", "s1").unwrap();
        assert!(store
            .commit(&p, "h".into(), "v".into(), "t".into())
            .is_err());
        store.discard(p).unwrap();
        assert!(store.entries("a").unwrap().is_empty());
    }
}
