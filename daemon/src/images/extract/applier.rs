//! Applying one tar entry under the extraction policy.

use super::*;

pub(super) struct Applier<'a> {
    pub(super) root: &'a Path,
    /// Paths (relative to the root, resolved) this layer wrote: whiteouts
    /// and opaque markers apply to lower layers only.
    pub(super) written: HashSet<PathBuf>,
    pub(super) stats: LayerStats,
    pub(super) chown: bool,
    /// For copying file contents.
    pub(super) buf: Vec<u8>,
}

/// Owner, mode and mtime of an entry.
pub(super) struct Meta {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mode: u32,
    pub(super) mtime: u64,
}

impl Applier<'_> {
    pub(super) fn apply<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), ExtractError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = entry.path().map_err(ExtractError::Read)?.into_owned();
        let refuse = |reason: String| ExtractError::Refused {
            entry: raw.display().to_string(),
            reason,
        };
        let parts = clean_name(&raw).map_err(refuse)?;
        let Some((name, parents)) = parts.split_last() else {
            return if kind.is_dir() {
                Ok(())
            } else {
                Err(refuse("only a directory may name the root".to_string()))
            };
        };
        let parents: PathBuf = parents.iter().collect();
        if let Some(target) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX) {
            return self
                .whiteout(&parents, target)
                .map_err(|e| e.for_entry(&raw));
        }
        let meta = entry_meta(entry.header()).map_err(refuse)?;
        let result = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(&parents, name, entry, &meta)
            }
            EntryType::Directory => self.dir(&parents, name, &meta),
            EntryType::Symlink => {
                let target = entry.link_name().map_err(ExtractError::Read)?;
                match target {
                    Some(t) if !t.as_os_str().is_empty() => {
                        let t = t.into_owned();
                        self.symlink(&parents, name, &t, &meta)
                    }
                    _ => Err(Refusal::Policy("a symlink without a target".to_string())),
                }
            }
            EntryType::Link => {
                let target = entry.link_name().map_err(ExtractError::Read)?;
                match target {
                    Some(t) if !t.as_os_str().is_empty() => {
                        let t = t.into_owned();
                        self.hardlink(&parents, name, &t)
                    }
                    _ => Err(Refusal::Policy("a hard link without a target".to_string())),
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.stats.skipped += 1;
                Ok(())
            }
            other => Err(Refusal::Policy(format!(
                "entry type {:?} is not supported",
                other.as_byte() as char
            ))),
        };
        result.map_err(|e| e.for_entry(&raw))
    }

    /// The directory `parents` names, created where missing.
    pub(super) fn parent_dir(&mut self, parents: &Path) -> Result<PathBuf, Refusal> {
        match resolve_in_root(self.root, parents, Some(&mut self.written), false) {
            Ok(Some(dir)) => Ok(dir),
            Ok(None) => Err(Refusal::Policy(format!(
                "parent /{} could not be created",
                parents.display()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes what is at `rel` unless both it and the new entry are
    /// directories. True when a directory was kept.
    pub(super) fn clear(&self, rel: &Path, keep_dir: bool) -> Result<bool, Refusal> {
        let abs = self.root.join(rel);
        match fs::symlink_metadata(&abs) {
            Ok(m) if m.is_dir() && keep_dir => Ok(true),
            Ok(_) => remove_any(&abs).map(|_| false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Refusal::Write(abs, e)),
        }
    }

    pub(super) fn file<R: Read>(
        &mut self,
        parents: &Path,
        name: &OsStr,
        data: &mut R,
        meta: &Meta,
    ) -> Result<(), Refusal> {
        let rel = self.parent_dir(parents)?.join(name);
        self.clear(&rel, false)?;
        let abs = self.root.join(&rel);
        let werr = |e| Refusal::Write(abs.clone(), e);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&abs)
            .map_err(werr)?;
        loop {
            let n = data.read(&mut self.buf).map_err(Refusal::Read)?;
            if n == 0 {
                break;
            }
            f.write_all(&self.buf[..n]).map_err(werr)?;
            self.stats.bytes += n as u64;
        }
        self.set_meta(&f, meta).map_err(werr)?;
        f.set_modified(UNIX_EPOCH + Duration::from_secs(meta.mtime))
            .map_err(werr)?;
        self.written.insert(rel);
        self.stats.files += 1;
        Ok(())
    }

    pub(super) fn dir(&mut self, parents: &Path, name: &OsStr, meta: &Meta) -> Result<(), Refusal> {
        let rel = self.parent_dir(parents)?.join(name);
        let abs = self.root.join(&rel);
        let werr = |e| Refusal::Write(abs.clone(), e);
        if !self.clear(&rel, true)? {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&abs)
                .map_err(werr)?;
        }
        let d = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&abs)
            .map_err(werr)?;
        self.set_meta(&d, meta).map_err(werr)?;
        self.written.insert(rel);
        self.stats.dirs += 1;
        Ok(())
    }

    pub(super) fn symlink(
        &mut self,
        parents: &Path,
        name: &OsStr,
        target: &Path,
        meta: &Meta,
    ) -> Result<(), Refusal> {
        let rel = self.parent_dir(parents)?.join(name);
        self.clear(&rel, false)?;
        let abs = self.root.join(&rel);
        std::os::unix::fs::symlink(target, &abs).map_err(|e| Refusal::Write(abs.clone(), e))?;
        if self.chown {
            std::os::unix::fs::lchown(&abs, Some(meta.uid), Some(meta.gid))
                .map_err(|e| Refusal::Write(abs.clone(), e))?;
        }
        self.written.insert(rel);
        self.stats.symlinks += 1;
        Ok(())
    }

    pub(super) fn hardlink(
        &mut self,
        parents: &Path,
        name: &OsStr,
        target: &Path,
    ) -> Result<(), Refusal> {
        let target_parts = clean_name(target)
            .map_err(|r| Refusal::Policy(format!("hard link target {target:?}: {r}")))?;
        let Some((target_name, target_parents)) = target_parts.split_last() else {
            return Err(Refusal::Policy("a hard link to the root".to_string()));
        };
        let target_parents: PathBuf = target_parents.iter().collect();
        let missing = || {
            Refusal::Policy(format!(
                "hard link target {target:?} is not in the layers so far"
            ))
        };
        let src_dir =
            resolve_in_root(self.root, &target_parents, None, false)?.ok_or_else(missing)?;
        let src = src_dir.join(target_name);
        match fs::symlink_metadata(self.root.join(&src)) {
            Ok(m) if m.is_dir() => {
                return Err(Refusal::Policy(format!(
                    "hard link target {target:?} is a directory"
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(Refusal::Write(self.root.join(&src), e)),
        }
        let rel = self.parent_dir(parents)?.join(name);
        if rel == src {
            return Err(Refusal::Policy("a hard link to itself".to_string()));
        }
        self.clear(&rel, false)?;
        let abs = self.root.join(&rel);
        // linkat without AT_SYMLINK_FOLLOW: a symlink is linked, not followed.
        fs::hard_link(self.root.join(&src), &abs).map_err(|e| Refusal::Write(abs, e))?;
        self.written.insert(rel);
        self.stats.hardlinks += 1;
        Ok(())
    }

    /// `.wh.<target>` in `parents`.
    pub(super) fn whiteout(&mut self, parents: &Path, target: &[u8]) -> Result<(), Refusal> {
        if target == &OPAQUE_MARKER[WHITEOUT_PREFIX.len()..] {
            if let Some(dir) = resolve_in_root(self.root, parents, None, false)? {
                self.clear_lower(&dir)?;
                self.stats.whiteouts += 1;
            }
            return Ok(());
        }
        if target.starts_with(WHITEOUT_PREFIX) {
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(Refusal::Policy(format!(
                "whiteout of {:?} is refused",
                String::from_utf8_lossy(target)
            )));
        }
        let Some(dir) = resolve_in_root(self.root, parents, None, false)? else {
            return Ok(());
        };
        let victim = dir.join(OsStr::from_bytes(target));
        if !self.written.contains(&victim) {
            let abs = self.root.join(&victim);
            match fs::symlink_metadata(&abs) {
                Ok(_) => remove_any(&abs)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Refusal::Write(abs, e)),
            }
        }
        self.stats.whiteouts += 1;
        Ok(())
    }

    /// Removes from `dir` (recursively) whatever this layer did not write.
    pub(super) fn clear_lower(&self, dir: &Path) -> Result<(), Refusal> {
        let abs = self.root.join(dir);
        let entries = fs::read_dir(&abs).map_err(|e| Refusal::Write(abs.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Refusal::Write(abs.clone(), e))?;
            let rel = dir.join(entry.file_name());
            let is_dir = entry
                .file_type()
                .map_err(|e| Refusal::Write(entry.path(), e))?
                .is_dir();
            if !self.written.contains(&rel) {
                remove_any(&entry.path())?;
            } else if is_dir {
                self.clear_lower(&rel)?;
            }
        }
        Ok(())
    }

    /// Owner then mode (chown clears setuid bits, so it goes first).
    pub(super) fn set_meta(&self, f: &File, meta: &Meta) -> io::Result<()> {
        if self.chown {
            std::os::unix::fs::fchown(f, Some(meta.uid), Some(meta.gid))?;
        }
        f.set_permissions(fs::Permissions::from_mode(meta.mode))
    }
}

pub(super) fn entry_meta(h: &tar::Header) -> Result<Meta, String> {
    let id = |what: &str, v: io::Result<u64>| -> Result<u32, String> {
        let v = v.map_err(|e| format!("bad {what}: {e}"))?;
        u32::try_from(v).map_err(|_| format!("{what} {v} is out of range"))
    };
    Ok(Meta {
        uid: id("uid", h.uid())?,
        gid: id("gid", h.gid())?,
        mode: h.mode().map_err(|e| format!("bad mode: {e}"))? & 0o7777,
        mtime: h.mtime().unwrap_or(0),
    })
}

/// Unlinks a file or symlink, or removes a directory tree (without
/// following symlinks in it).
pub(super) fn remove_any(abs: &Path) -> Result<(), Refusal> {
    let res = match fs::symlink_metadata(abs) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(abs),
        Ok(_) => fs::remove_file(abs),
        Err(e) => Err(e),
    };
    match res {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Refusal::Write(abs.to_path_buf(), e)),
        _ => Ok(()),
    }
}

/// An entry's failure before it is tied to the entry's name.
pub(super) enum Refusal {
    Policy(String),
    Read(io::Error),
    Write(PathBuf, io::Error),
}

impl From<ResolveError> for Refusal {
    fn from(e: ResolveError) -> Refusal {
        match e {
            ResolveError::Io(p, e) => Refusal::Write(p, e),
            other => Refusal::Policy(other.to_string()),
        }
    }
}

impl Refusal {
    pub(super) fn for_entry(self, name: &Path) -> ExtractError {
        match self {
            Refusal::Policy(reason) => ExtractError::Refused {
                entry: name.display().to_string(),
                reason,
            },
            Refusal::Read(e) => ExtractError::Read(e),
            Refusal::Write(path, source) => ExtractError::Write { path, source },
        }
    }
}
