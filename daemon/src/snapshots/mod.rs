//! The snapshot store (docs/design.md §6): one directory per snapshot under
//! `<state>/snapshots/<actor>/<snapshot>/`, holding `checkpoint.img` and
//! `manifest.json`.
//!
//! A snapshot is written into `.tmp-<snapshot>`, its files are fsynced, the
//! manifest (with sizes and sha256) is written and fsynced, and only then is
//! the directory renamed into place and the parent fsynced. The caller
//! records it in sled after that; a directory that is not in sled does not
//! count and is removed by crash recovery.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil::{hex, remove_dir_if_exists};

pub(crate) mod archive;
use crate::store::schema::Version;

/// Manifest layout, under the rule of the store's records
/// ([`crate::store::schema`]): a newer minor is read (unknown fields
/// ignored), a newer major refused. `version` holds the major, the one
/// field older daemons check; `minor` is written only when not 0, as
/// daemons before this rule refused unknown manifest fields.
pub(crate) const MANIFEST_VERSION: Version = Version::new(1, 0);
/// The manifest's file name.
pub(crate) const MANIFEST: &str = "manifest.json";
/// The file of a snapshot that says what it was taken of ([`Origin`]).
pub(crate) const ORIGIN: &str = "origin.json";
/// Prefix of directories being written.
pub(crate) const TMP_PREFIX: &str = ".tmp-";

/// Errors of the snapshot layer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
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
    /// The manifest is of a newer major layout: this daemon cannot tell
    /// what the snapshot holds, the newer one that wrote it can.
    #[error("snapshot {path} has manifest version {found}, newer than the {supported} this atelet reads: it was written by a newer atelet, which can resume it")]
    Newer {
        /// The snapshot dir.
        path: PathBuf,
        /// The manifest's version.
        found: Version,
        /// What this daemon reads.
        supported: Version,
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
pub(crate) struct ManifestFile {
    /// Name within the snapshot dir.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Hex sha256.
    pub sha256: String,
}

/// `manifest.json`. Unknown fields are ignored: they are a newer minor's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    /// Major of [`MANIFEST_VERSION`] when written.
    pub version: u32,
    /// Minor of [`MANIFEST_VERSION`] when written; absent when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor: u32,
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

/// What a snapshot was taken of: enough for another actor, on this node or
/// another, to be made from it, and for a node to tell beforehand whether
/// it can restore it ([`Origin::mismatches`]). Written as [`ORIGIN`], a
/// file of the snapshot like the image (hashed in the manifest), rather
/// than a manifest field: daemons of the first manifest layout refused
/// unknown fields, and a rollback must still read what this one writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Origin {
    /// The template the actor was made from.
    pub template: atelet_api::TemplateRef,
    /// The actor's spec, as the API writes it. Kept as JSON: a spec of a
    /// newer daemon is read (and refused by name) where it is used, not
    /// where the manifest is.
    pub spec: serde_json::Value,
    /// `bridge` or `none`.
    pub network_mode: atelet_api::NetworkMode,
    /// The image's manifest digest (`oci:` images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// runsc's flags that a restore must repeat (platform, overlay).
    pub runsc_flags: BTreeMap<String, String>,
    /// The node that took it.
    pub node: String,
}

impl Origin {
    /// What keeps this node from restoring the snapshot: each line names
    /// what the snapshot needs and what this node has. `image_digest` is
    /// this node's digest of the spec's image (`None`: not an `oci:`
    /// image, or not resolvable here, said by `image_problem`).
    pub(crate) fn mismatches(
        &self,
        runsc_version: &str,
        installed_version: &str,
        flags: &BTreeMap<String, String>,
        image_digest: Option<&str>,
        image_problem: Option<&str>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        if runsc_version != installed_version {
            out.push(format!(
                "runsc version: the snapshot needs {runsc_version}, this node runs {installed_version}"
            ));
        }
        for (flag, want) in &self.runsc_flags {
            match flags.get(flag) {
                Some(have) if have == want => {}
                Some(have) => out.push(format!(
                    "runsc --{flag}: the snapshot needs {want}, this node uses {have}"
                )),
                None => out.push(format!(
                    "runsc --{flag}: the snapshot needs {want}, this node sets none"
                )),
            }
        }
        if let Some(problem) = image_problem {
            out.push(format!("image: {problem}"));
        } else if let Some(want) = &self.image_digest {
            if image_digest != Some(want.as_str()) {
                out.push(format!(
                    "image digest: the snapshot needs {want}, this node has {}",
                    image_digest.unwrap_or("none")
                ));
            }
        }
        out
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What can be told of a snapshot whose manifest is of a newer major:
/// enough to keep it on record for the daemon that can read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Foreign {
    /// The manifest's version.
    pub version: Version,
    /// `createdAt`, if the manifest has it as a string.
    pub created_at: Option<String>,
    /// `runscVersion`, if the manifest has it as a string.
    pub runsc_version: Option<String>,
    /// Bytes of the files in the snapshot dir, manifest included.
    pub size_bytes: u64,
}

/// What a committed snapshot is, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    /// Snapshot id.
    pub id: String,
    /// Bytes on disk, manifest included.
    pub size_bytes: u64,
    /// The manifest written.
    pub manifest: Manifest,
}

/// A snapshot directory being written.
#[derive(Debug)]
pub(crate) struct Pending {
    /// The temporary directory runsc writes into.
    pub dir: PathBuf,
    actor_id: String,
    snapshot_id: String,
}

/// Snapshots on disk.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotStore {
    root: PathBuf,
}

impl SnapshotStore {
    /// Store rooted at `<state>/snapshots`.
    pub(crate) fn new(root: PathBuf) -> SnapshotStore {
        SnapshotStore { root }
    }

    /// `<root>/<actor>`.
    pub(crate) fn actor_dir(&self, actor_id: &str) -> PathBuf {
        self.root.join(actor_id)
    }

    /// `<root>/<actor>/<snapshot>`.
    pub(crate) fn dir(&self, actor_id: &str, snapshot_id: &str) -> PathBuf {
        self.actor_dir(actor_id).join(snapshot_id)
    }

    /// Creates a fresh temporary directory for a checkpoint.
    pub(crate) fn begin(
        &self,
        actor_id: &str,
        snapshot_id: &str,
    ) -> Result<Pending, SnapshotError> {
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

    /// Fills a pending snapshot with the files of another committed one
    /// (hard links where they share a filesystem, copies otherwise): the
    /// snapshot of a clone. The caller commits it under its own manifest.
    pub(crate) fn link_from(
        &self,
        pending: &Pending,
        from: &Manifest,
    ) -> Result<(), SnapshotError> {
        let src = self.dir(&from.actor_id, &from.snapshot_id);
        for f in from.files.iter().filter(|f| f.name != ORIGIN) {
            let (a, b) = (src.join(&f.name), pending.dir.join(&f.name));
            if std::fs::hard_link(&a, &b).is_err() {
                std::fs::copy(&a, &b).map_err(io_err(&b))?;
            }
        }
        Ok(())
    }

    /// Writes `origin` into a pending snapshot (before its commit).
    pub(crate) fn write_origin(
        &self,
        pending: &Pending,
        origin: &Origin,
    ) -> Result<(), SnapshotError> {
        let path = pending.dir.join(ORIGIN);
        // Never written through a link to another snapshot's file.
        let _ = std::fs::remove_file(&path);
        let bytes = serde_json::to_vec_pretty(origin).map_err(|e| SnapshotError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        std::fs::write(&path, bytes).map_err(io_err(&path))
    }

    /// What a committed snapshot was taken of; `None` for a snapshot of a
    /// daemon that did not write it.
    pub(crate) fn origin(&self, manifest: &Manifest) -> Result<Option<Origin>, SnapshotError> {
        if !manifest.files.iter().any(|f| f.name == ORIGIN) {
            return Ok(None);
        }
        let path = self
            .dir(&manifest.actor_id, &manifest.snapshot_id)
            .join(ORIGIN);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| SnapshotError::Corrupt {
                path,
                detail: format!("{ORIGIN}: {e}"),
            })
    }

    /// Throws a pending snapshot away (a failed checkpoint, download or
    /// import).
    pub(crate) fn discard(&self, pending: &Pending) -> Result<(), SnapshotError> {
        remove_dir_if_exists(&pending.dir).map_err(io_err(&pending.dir))
    }

    /// Makes a pending snapshot durable: fsync, manifest, rename, fsync.
    /// Blocking; run it off the async threads.
    pub(crate) fn commit(
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
                    version: MANIFEST_VERSION.major,
                    minor: MANIFEST_VERSION.minor,
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

    /// Reads a committed snapshot's manifest, of any layout this daemon
    /// knows; one of a newer major is refused with both versions.
    pub(crate) fn manifest(
        &self,
        actor_id: &str,
        snapshot_id: &str,
    ) -> Result<Manifest, SnapshotError> {
        let dir = self.dir(actor_id, snapshot_id);
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let m = parse_manifest(&bytes, &dir)?;
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

    /// What can be told of a snapshot whose manifest is of a newer major
    /// (see [`SnapshotStore::manifest`]), read without regard to its
    /// layout but for the version.
    pub(crate) fn foreign(
        &self,
        actor_id: &str,
        snapshot_id: &str,
    ) -> Result<Foreign, SnapshotError> {
        let dir = self.dir(actor_id, snapshot_id);
        let (bytes, version) = read_manifest(&dir)?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| SnapshotError::Corrupt {
                path: dir.clone(),
                detail: format!("manifest: {e}"),
            })?;
        let text = |field: &str| v.get(field).and_then(|f| f.as_str()).map(str::to_string);
        let mut size_bytes = 0;
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let meta = entry.and_then(|e| e.metadata()).map_err(io_err(&dir))?;
            if meta.is_file() {
                size_bytes += meta.len();
            }
        }
        Ok(Foreign {
            version,
            created_at: text("createdAt"),
            runsc_version: text("runscVersion"),
            size_bytes,
        })
    }

    /// Checks that every file has the size the manifest says (cheap; the
    /// resume path). `full` also checks the sha256 of each file.
    pub(crate) fn verify(&self, manifest: &Manifest, full: bool) -> Result<(), SnapshotError> {
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
    pub(crate) fn remove(&self, actor_id: &str, snapshot_id: &str) -> Result<(), SnapshotError> {
        let dir = self.dir(actor_id, snapshot_id);
        remove_dir_if_exists(&dir).map_err(io_err(&dir))
    }

    /// Names of the directories under an actor's snapshot dir (committed and temporary).
    pub(crate) fn entries(&self, actor_id: &str) -> Result<Vec<String>, SnapshotError> {
        list_dir(&self.actor_dir(actor_id))
    }
}

/// A manifest from its bytes, of any layout this daemon knows; one of a
/// newer major is refused with both versions. `dir` names it in errors.
pub(crate) fn parse_manifest(bytes: &[u8], dir: &Path) -> Result<Manifest, SnapshotError> {
    let found = manifest_version(bytes, dir)?;
    if !MANIFEST_VERSION.reads(found) {
        return Err(SnapshotError::Newer {
            path: dir.to_path_buf(),
            found,
            supported: MANIFEST_VERSION,
        });
    }
    if found.major < MANIFEST_VERSION.major {
        // Each major bump adds the upgrade of the older layout here;
        // major 1 is the first ever written.
        return Err(SnapshotError::Corrupt {
            path: dir.to_path_buf(),
            detail: format!("manifest version {found} was never written by atelet"),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| SnapshotError::Corrupt {
        path: dir.to_path_buf(),
        detail: format!("manifest: {e}"),
    })
}

/// The version a manifest says it is.
fn manifest_version(bytes: &[u8], dir: &Path) -> Result<Version, SnapshotError> {
    #[derive(Deserialize)]
    struct Header {
        version: u32,
        #[serde(default)]
        minor: u32,
    }
    let h: Header = serde_json::from_slice(bytes).map_err(|e| SnapshotError::Corrupt {
        path: dir.to_path_buf(),
        detail: format!("manifest: {e}"),
    })?;
    Ok(Version::new(h.version, h.minor))
}

/// The manifest's bytes and the version it says it is.
fn read_manifest(dir: &Path) -> Result<(Vec<u8>, Version), SnapshotError> {
    let path = dir.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let version = manifest_version(&bytes, dir)?;
    Ok((bytes, version))
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

    /// A committed snapshot `a/s1` whose manifest `edit` then rewrites.
    fn with_manifest(
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> (tempfile::TempDir, SnapshotStore) {
        let root = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(root.path().to_path_buf());
        let p = store.begin("a", "s1").unwrap();
        std::fs::write(p.dir.join("checkpoint.img"), b"image").unwrap();
        store
            .commit(&p, "h".into(), "v1".into(), "2025-01-01T00:00:00Z".into())
            .unwrap();
        let path = store.dir("a", "s1").join(MANIFEST);
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        (root, store)
    }

    #[test]
    fn what_is_written_is_read_by_daemons_before_the_version_rule() {
        let (_root, store) = with_manifest(|v| {
            // As written: 1.0, no `minor` (they refused unknown fields).
            assert_eq!(v["version"], 1);
            assert!(v.get("minor").is_none(), "{v}");
        });
        let m = store.manifest("a", "s1").unwrap();
        assert_eq!((m.version, m.minor), (1, 0));
    }

    #[test]
    fn a_manifest_of_a_newer_major_is_refused_naming_both_versions() {
        let (_root, store) = with_manifest(|v| {
            v["version"] = serde_json::json!(2);
            v["minor"] = serde_json::json!(1);
            v["files"] = serde_json::json!({"layout": "changed"});
        });
        let err = store.manifest("a", "s1").unwrap_err();
        assert!(
            matches!(&err, SnapshotError::Newer { found, supported, .. }
                if *found == Version::new(2, 1) && *supported == MANIFEST_VERSION),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("2.1") && msg.contains("1.0"), "{msg}");
        // Enough is told of it to keep it on record.
        let f = store.foreign("a", "s1").unwrap();
        assert_eq!(f.version, Version::new(2, 1));
        assert_eq!(f.created_at.as_deref(), Some("2025-01-01T00:00:00Z"));
        assert_eq!(f.runsc_version.as_deref(), Some("v1"));
        let manifest_len = std::fs::metadata(store.dir("a", "s1").join(MANIFEST))
            .unwrap()
            .len();
        assert_eq!(f.size_bytes, 5 + manifest_len);
    }

    #[test]
    fn a_manifest_of_a_newer_minor_with_unknown_fields_is_read() {
        let (_root, store) = with_manifest(|v| {
            v["minor"] = serde_json::json!(4);
            v["compression"] = serde_json::json!("zstd");
            v["files"][0]["mode"] = serde_json::json!(384);
        });
        let m = store.manifest("a", "s1").unwrap();
        assert_eq!(m.minor, 4);
        assert_eq!(m.runsc_version, "v1");
        store.verify(&m, true).unwrap();
    }

    #[test]
    fn a_manifest_of_a_major_never_written_is_corrupt() {
        let (_root, store) = with_manifest(|v| v["version"] = serde_json::json!(0));
        assert!(matches!(
            store.manifest("a", "s1"),
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
        store.discard(&p).unwrap();
        assert!(store.entries("a").unwrap().is_empty());
    }
}
