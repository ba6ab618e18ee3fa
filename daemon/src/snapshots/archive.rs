//! A snapshot as one tar, to carry it to another node without an object
//! store: `manifest.json` first, then its signature `manifest.sig` when
//! the node signs (see `crate::trust`), then `origin.json`, then the other
//! files the manifest lists (`checkpoint.img`), each a plain file of mode
//! 0600.
//!
//! Both ways are streamed: the export reads each file as it writes it, the
//! import writes each file into a pending snapshot as it reads it, hashing
//! as it goes, so memory stays flat however large the image. The import
//! hands the manifest and the origin to its caller before the image
//! arrives, so that a node that cannot restore the snapshot refuses it
//! before anything large is written.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{io_err, parse_manifest, Manifest, Origin, Pending, SnapshotError, MANIFEST, ORIGIN};
use crate::fsutil::{hex, sha256_hex};
use crate::trust::SIGNATURE;

/// Entries an import accepts: a manifest, an origin and a few files.
const MAX_ENTRIES: usize = 16;
/// Bytes of the manifest or the origin an import accepts.
const MAX_SMALL: u64 = 1 << 20;
/// One tar block.
const BLOCK: u64 = 512;

/// Why an import was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError<E> {
    /// The tar is not an export of a snapshot, or does not match its
    /// manifest (a changed byte, a missing or extra file).
    #[error("{0}")]
    Invalid(String),
    /// The body is larger than the node accepts.
    #[error("the snapshot is larger than max_import_bytes ({0} bytes)")]
    TooLarge(u64),
    /// The caller's check of the manifest and origin refused it.
    #[error(transparent)]
    Refused(E),
    /// Writing the files failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// The files of a committed snapshot in the order of its tar: the manifest,
/// its signature (of `sig_len` bytes, if signed), the origin, the rest as
/// the manifest lists them. `(name, size)`.
pub(crate) fn entries(
    manifest_len: u64,
    sig_len: Option<u64>,
    manifest: &Manifest,
) -> Vec<(String, u64)> {
    let mut out = vec![(MANIFEST.to_string(), manifest_len)];
    out.extend(sig_len.map(|n| (SIGNATURE.to_string(), n)));
    out.extend(
        manifest
            .files
            .iter()
            .filter(|f| f.name == ORIGIN)
            .map(|f| (f.name.clone(), f.size)),
    );
    out.extend(
        manifest
            .files
            .iter()
            .filter(|f| f.name != ORIGIN)
            .map(|f| (f.name.clone(), f.size)),
    );
    out
}

/// Bytes of the tar [`write`] makes of `entries`: a header block per file,
/// its data padded to whole blocks, and two zero blocks at the end.
pub(crate) fn tar_size(entries: &[(String, u64)]) -> u64 {
    entries
        .iter()
        .map(|(_, size)| BLOCK + size.div_ceil(BLOCK) * BLOCK)
        .sum::<u64>()
        + 2 * BLOCK
}

/// Writes the tar of the snapshot in `dir` into `out`: `entries` (from
/// [`entries`]) read from `sources` (open files, the signature), in
/// order. Blocking.
pub(crate) fn write(
    dir: &Path,
    entries: &[(String, u64)],
    sources: Vec<Box<dyn Read + Send>>,
    out: impl Write,
) -> Result<(), SnapshotError> {
    let mut tar = tar::Builder::new(out);
    for ((name, size), file) in entries.iter().zip(sources) {
        let path = dir.join(name);
        let mut header = tar::Header::new_ustar();
        header.set_size(*size);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        // A file that changed size since the manifest was read would make
        // the tar lie; take exactly what the manifest says.
        tar.append_data(&mut header, name, file.take(*size))
            .map_err(io_err(&path))?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err(dir))
}

/// Reads an export from `input` into `pending`. The manifest's bytes and
/// its signature (if the tar has one) go to `trust` first; then the
/// manifest and the origin go to `check`, before any other file is
/// written; then every file the manifest lists is written, its size and
/// sha256 checked as it is. Anything else in the tar, a file missing, or
/// more than `max_bytes` in all, is refused. Blocking.
pub(crate) fn read<E>(
    input: impl Read,
    pending: &Pending,
    max_bytes: u64,
    trust: &crate::trust::Trust,
    check: impl FnOnce(&Manifest, &Origin) -> Result<(), E>,
) -> Result<(Manifest, Origin), ImportError<E>> {
    let invalid = |m: String| ImportError::Invalid(format!("not a snapshot export: {m}"));
    let mut archive = tar::Archive::new(input);
    let mut entries = archive
        .entries()
        .map_err(|e| invalid(format!("reading the tar: {e}")))?;
    let mut total = 0u64;
    // The next small entry: `want`, or one of `or` in its place.
    let mut next_small = |want: &str, or: &[&str]| -> Result<(String, Vec<u8>), ImportError<E>> {
        let mut entry = entries
            .next()
            .ok_or_else(|| invalid(format!("it ends before {want}")))?
            .map_err(|e| invalid(format!("reading the tar: {e}")))?;
        let name = entry_name(&entry).map_err(invalid)?;
        if name != want && !or.contains(&name.as_str()) {
            return Err(invalid(format!(
                "its entry {name:?} comes where {want} must"
            )));
        }
        let size = entry.header().size().unwrap_or(u64::MAX);
        if size > MAX_SMALL {
            return Err(invalid(format!("{want} has {size} bytes")));
        }
        let mut buf = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut buf)
            .map_err(|e| invalid(format!("reading {want}: {e}")))?;
        Ok((name, buf))
    };
    let (_, manifest_bytes) = next_small(MANIFEST, &[])?;
    let (name, next) = next_small(ORIGIN, &[SIGNATURE])?;
    let (signature, origin_bytes) = if name == SIGNATURE {
        (Some(next), next_small(ORIGIN, &[])?.1)
    } else {
        (None, next)
    };
    trust
        .check(&manifest_bytes, signature.as_deref())
        .map_err(|e| ImportError::Invalid(format!("the snapshot is not accepted: {e}")))?;
    let manifest = parse_manifest(&manifest_bytes, &pending.dir)
        .map_err(|e| ImportError::Invalid(format!("its manifest: {e}")))?;
    if !manifest.files.iter().any(|f| f.name == "checkpoint.img") {
        return Err(invalid("its manifest lists no checkpoint.img".to_string()));
    }
    let origin: Origin =
        serde_json::from_slice(&origin_bytes).map_err(|e| invalid(format!("{ORIGIN}: {e}")))?;
    // The origin is a file of the snapshot: it must be the one the
    // manifest hashed.
    let listed = |name: &str| manifest.files.iter().find(|f| f.name == name);
    match listed(ORIGIN) {
        Some(f) if f.sha256 == sha256_hex(&origin_bytes) => {}
        Some(_) => {
            return Err(ImportError::Invalid(format!(
                "{ORIGIN} does not match its sha256 in the manifest"
            )))
        }
        None => return Err(invalid(format!("the manifest does not list {ORIGIN}"))),
    }
    total += (manifest_bytes.len() + origin_bytes.len()) as u64;
    check(&manifest, &origin).map_err(ImportError::Refused)?;
    let path = pending.dir.join(ORIGIN);
    std::fs::write(&path, &origin_bytes).map_err(io_err(&path))?;

    let mut seen = vec![ORIGIN.to_string()];
    for (n, entry) in entries.enumerate() {
        if n + 2 >= MAX_ENTRIES {
            return Err(invalid(format!("more than {MAX_ENTRIES} entries")));
        }
        let mut entry = entry.map_err(|e| invalid(format!("reading the tar: {e}")))?;
        let name = entry_name(&entry).map_err(invalid)?;
        let Some(file) = listed(&name) else {
            return Err(invalid(format!("{name:?} is not in its manifest")));
        };
        if seen.contains(&name) {
            return Err(invalid(format!("{name:?} comes twice")));
        }
        let size = entry.header().size().unwrap_or(u64::MAX);
        if size != file.size {
            return Err(ImportError::Invalid(format!(
                "{name} has {size} bytes, the manifest says {}",
                file.size
            )));
        }
        total = total.saturating_add(size);
        if total > max_bytes {
            return Err(ImportError::TooLarge(max_bytes));
        }
        let path = pending.dir.join(&name);
        let sha = copy_hashing(&mut entry, &path).map_err(|e| match e {
            CopyError::Read(e) => ImportError::Invalid(format!("reading {name}: {e}")),
            CopyError::Write(e) => ImportError::Snapshot(io_err(&path)(e)),
        })?;
        if sha != file.sha256 {
            return Err(ImportError::Invalid(format!(
                "{name} does not match its sha256 in the manifest (a changed byte?)"
            )));
        }
        seen.push(name);
    }
    if let Some(missing) = manifest.files.iter().find(|f| !seen.contains(&f.name)) {
        return Err(ImportError::Invalid(format!(
            "{} is missing (the tar was cut short?)",
            missing.name
        )));
    }
    Ok((manifest, origin))
}

/// A tar entry's name: one plain file name, nothing that could point
/// elsewhere.
fn entry_name<R: Read>(entry: &tar::Entry<'_, R>) -> Result<String, String> {
    if entry.header().entry_type() != tar::EntryType::Regular {
        return Err(format!(
            "an entry of type {:?}: only plain files",
            entry.header().entry_type()
        ));
    }
    let path = entry.path().map_err(|e| format!("an entry name: {e}"))?;
    let name = path.to_string_lossy().into_owned();
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!("the entry {name:?}: only plain file names"));
    }
    Ok(name)
}

enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Copies `from` into a new file at `path` (mode 0600), answering the
/// sha256 of what went through.
fn copy_hashing(from: &mut impl Read, path: &Path) -> Result<String, CopyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(CopyError::Write)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = from.read(&mut buf).map_err(CopyError::Read)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshots::SnapshotStore;

    /// A committed snapshot `a/s1` with an origin, and its tar.
    fn exported() -> (tempfile::TempDir, SnapshotStore, Vec<u8>) {
        let root = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(root.path().join("snapshots"));
        let p = store.begin("a", "s1").unwrap();
        std::fs::write(p.dir.join("checkpoint.img"), vec![7u8; 3000]).unwrap();
        let origin = Origin {
            template: atelet_api::TemplateRef {
                namespace: "default".into(),
                name: "t".into(),
            },
            spec: serde_json::json!({"containers": []}),
            network_mode: atelet_api::NetworkMode::None,
            image_digest: None,
            runsc_flags: Default::default(),
            node: "n1".into(),
        };
        store.write_origin(&p, &origin).unwrap();
        store
            .commit(&p, "h".into(), "v1".into(), "t".into())
            .unwrap();
        let m = store.manifest("a", "s1").unwrap();
        let dir = store.dir("a", "s1");
        let mlen = std::fs::metadata(dir.join(MANIFEST)).unwrap().len();
        let list = entries(mlen, None, &m);
        let files = list
            .iter()
            .map(|(n, _)| {
                Box::new(std::fs::File::open(dir.join(n)).unwrap()) as Box<dyn Read + Send>
            })
            .collect();
        let mut out = Vec::new();
        write(&dir, &list, files, &mut out).unwrap();
        assert_eq!(out.len() as u64, tar_size(&list), "the size said up front");
        (root, store, out)
    }

    fn import(
        store: &SnapshotStore,
        tar: &[u8],
        max: u64,
    ) -> Result<(Manifest, Origin), ImportError<String>> {
        let p = store.begin("b", "s1").unwrap();
        let res = read(tar, &p, max, &Default::default(), |_, _| {
            Ok::<(), String>(())
        });
        let files: Vec<String> = std::fs::read_dir(&p.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        if res.is_ok() {
            assert!(files.contains(&"checkpoint.img".to_string()), "{files:?}");
        }
        store.discard(&p).unwrap();
        res
    }

    #[test]
    fn an_export_imports_whole() {
        let (_root, store, tar) = exported();
        let (m, o) = import(&store, &tar, u64::MAX).unwrap();
        assert_eq!(m.actor_id, "a");
        assert_eq!(o.node, "n1");
    }

    #[test]
    fn a_changed_byte_a_cut_or_too_much_is_refused() {
        let (_root, store, tar) = exported();
        // A byte of the image (its data starts after three headers and the
        // two small files, each padded).
        let mut changed = tar.clone();
        let at = changed.len() - 1024 - 600;
        changed[at] ^= 1;
        let err = import(&store, &changed, u64::MAX).unwrap_err();
        assert!(err.to_string().contains("sha256"), "{err}");
        // Cut short.
        let err = import(&store, &tar[..tar.len() - 2048], u64::MAX).unwrap_err();
        assert!(matches!(err, ImportError::Invalid(_)), "{err}");
        // Over the limit.
        let err = import(&store, &tar, 1000).unwrap_err();
        assert!(matches!(err, ImportError::TooLarge(1000)), "{err}");
        // Not a tar at all.
        let err = import(&store, b"hello", u64::MAX).unwrap_err();
        assert!(matches!(err, ImportError::Invalid(_)), "{err}");
    }

    #[test]
    fn the_check_refuses_before_the_image_is_written() {
        let (_root, store, tar) = exported();
        let p = store.begin("b", "s1").unwrap();
        let err = read(&tar[..], &p, u64::MAX, &Default::default(), |m, _| {
            Err(format!("no runsc {}", m.runsc_version))
        })
        .unwrap_err();
        assert!(matches!(&err, ImportError::Refused(m) if m == "no runsc v1"));
        assert!(!p.dir.join("checkpoint.img").exists());
    }
}
