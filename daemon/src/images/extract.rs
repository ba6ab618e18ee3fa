//! Applies layer tars onto a root filesystem directory, safely: nothing is
//! ever written outside the target directory, whatever the tar says.
//!
//! The `tar` crate parses (headers, PAX and GNU long names, sparse files);
//! this module decides what each entry may do and writes it itself, because
//! the policy below is stricter than a plain unpack and OCI whiteouts are
//! not tar's business.
//!
//! | entry | policy |
//! |---|---|
//! | name with a `..` component | **refused**: the layer is rejected (no image tool writes one) |
//! | absolute name (`/etc/x`) | **neutralised**: taken relative to the rootfs, as GNU tar and containerd do (umoci writes its root dir as `/`) |
//! | the root itself (`/`, `./`) | ignored: the rootfs dir keeps mode 0755, root-owned |
//! | symlink among the parent directories | **neutralised**: followed *inside* the rootfs, as if it were `/` (an absolute target is re-rooted, `..` stops at the root, 40 links at most), so a write "through" it lands inside |
//! | something already at the name | replaced, never written through: it is unlinked first and the new file is created with `O_EXCL`; only a directory over a directory merges |
//! | symlink entry | created with its target as given: the target is only ever resolved inside the sandbox (or re-rooted as above) |
//! | hard link | its target name gets the same checks (`..` refused, absolute re-rooted, parents resolved inside); the target must already exist in the rootfs and not be a directory; a link to a symlink links the symlink itself |
//! | character or block device, FIFO | **skipped** and counted: runsc gives the sandbox its own `/dev` |
//! | `.wh.<name>` | whiteout: removes `<name>` of lower layers (not an entry of the same layer); `<name>` `.` or `..` refused |
//! | `.wh..wh..opq` | opaque directory: everything lower layers put in the directory goes |
//! | `.wh..wh.*` (other AUFS metadata) | ignored |
//! | any other entry type | refused |
//!
//! A layer may stop right after its last entry's data, without the padding
//! to the next block and the end-of-archive blocks, as Debian's umoci
//! 0.4.7 writes them (see [`Tail`]); a layer that ends inside an entry's
//! data, its padding or a header is refused as cut short.
//!
//! Modes (setuid bits included) and owners come from the headers (owners
//! only when the daemon is root); regular files keep their mtime. Extended
//! attributes are not applied. The caller unpacks into a private directory
//! nobody else writes to, so checks and writes do not race.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use tar::EntryType;

/// Symlinks followed while resolving one name, as Linux's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Errors of applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The policy refuses an entry; the whole layer is rejected.
    #[error("entry {entry:?}: {reason}")]
    Refused {
        /// The entry's name as in the tar.
        entry: String,
        /// Why.
        reason: String,
    },
    /// The tar stream could not be read (truncated, corrupt, bad header).
    #[error("reading the layer: {0}")]
    Read(io::Error),
    /// Writing into the target directory failed.
    #[error("writing {path}: {source}")]
    Write {
        /// Where.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

impl ExtractError {
    /// Whether the layer is at fault (a 400: the policy refuses one of its
    /// entries, or its tar stream is corrupt) rather than the host it is
    /// unpacked on (a 500: writing the file system failed).
    pub fn is_client_fault(&self) -> bool {
        match self {
            ExtractError::Refused { .. } | ExtractError::Read(_) => true,
            ExtractError::Write { .. } => false,
        }
    }
}

/// What applying layers did, for the log and the cache entry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LayerStats {
    /// Regular files written.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Device nodes and FIFOs skipped.
    pub skipped: u64,
}

impl std::ops::AddAssign for LayerStats {
    fn add_assign(&mut self, o: LayerStats) {
        self.files += o.files;
        self.bytes += o.bytes;
        self.dirs += o.dirs;
        self.symlinks += o.symlinks;
        self.hardlinks += o.hardlinks;
        self.whiteouts += o.whiteouts;
        self.skipped += o.skipped;
    }
}

/// Applies one layer (an uncompressed tar stream) onto `root`, following
/// the policy of this module. The stream is read up to the tar's end
/// marker, or up to its end when it stops right after an entry's data or
/// at a block boundary (see [`Tail`]); the caller checks digests after.
pub fn apply_layer<R: Read>(root: &Path, layer: &mut R) -> Result<LayerStats, ExtractError> {
    let tail = Rc::new(Tail::default());
    let mut archive = tar::Archive::new(TailReader {
        inner: layer,
        tail: tail.clone(),
        zeros: 0,
    });
    let mut applier = Applier {
        root,
        written: HashSet::new(),
        stats: LayerStats::default(),
        chown: nix::unistd::geteuid().is_root(),
        buf: vec![0; 64 * 1024],
    };
    // The last entry read whole, for the message of a layer cut short.
    let mut last: Option<String> = None;
    let read_err = |e: io::Error, last: &Option<String>, entry: Option<&str>| {
        ExtractError::Read(match tail.cut.get() {
            Some((at, cut)) => cut.error(at, last.as_deref(), entry),
            None => e,
        })
    };
    for entry in archive.entries().map_err(ExtractError::Read)? {
        let mut entry = entry.map_err(|e| read_err(e, &last, None))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        tail.data_begins();
        let applied = applier.apply(&mut entry).and_then(|()| {
            // What the applier did not read (a directory's or a
            // whiteout's data, say), so that the stream stands at the
            // end of this entry's data.
            io::copy(&mut entry, &mut io::sink())
                .map(drop)
                .map_err(ExtractError::Read)
        });
        match applied {
            Err(ExtractError::Read(e)) => return Err(read_err(e, &last, Some(&name))),
            other => other?,
        }
        tail.data_ended();
        last = Some(name);
    }
    Ok(applier.stats)
}

/// Where the tar stream stands, shared between [`TailReader`] and
/// [`apply_layer`], which knows where an entry's data begins and ends.
///
/// Why: umoci 0.4.7 (Debian's) never closes its tar writer, so a layer it
/// writes stops right after the last entry's data, without the zero
/// padding to the next 512-byte block nor the two end-of-archive blocks
/// (umoci issue #436). The layer's digests are computed over exactly those
/// bytes and `umoci unpack` accepts it, so this daemon does too: an end of
/// the stream exactly where the last entry's data ends is read as if the
/// padding were there, and an end at a block boundary between entries as
/// the end of the archive (the `tar` crate does that already). Any other
/// end is a layer cut short and is refused, naming where it ends.
#[derive(Debug)]
struct Tail {
    /// Bytes of the stream read so far, supplied zeros included.
    pos: Cell<u64>,
    /// Where the last entry read whole ends; `None` while an entry's data
    /// is being read.
    data_end: Cell<Option<u64>>,
    /// Where the stream ended, and inside what, when it ended too early.
    cut: Cell<Option<(u64, Cut)>>,
}

/// What a layer cut short ends inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    Data,
    Padding,
    Header,
}

const BLOCK: u64 = 512;

impl Default for Tail {
    fn default() -> Tail {
        Tail {
            pos: Cell::new(0),
            // The stream starts as if after an empty entry's data.
            data_end: Cell::new(Some(0)),
            cut: Cell::new(None),
        }
    }
}

impl Tail {
    fn data_begins(&self) {
        self.data_end.set(None);
    }

    fn data_ended(&self) {
        self.data_end.set(Some(self.pos.get()));
    }

    /// At the end of the stream: how many zeros to supply (padding the
    /// last entry's data to its block), or where it was cut.
    fn at_end(&self) -> Result<u64, Cut> {
        let pos = self.pos.get();
        match self.data_end.get() {
            None => Err(Cut::Data),
            Some(_) if pos.is_multiple_of(BLOCK) => Ok(0),
            Some(end) if pos == end => Ok(BLOCK - pos % BLOCK),
            Some(end) if pos < end.div_ceil(BLOCK) * BLOCK => Err(Cut::Padding),
            Some(_) => Err(Cut::Header),
        }
    }
}

impl Cut {
    /// The error of a stream cut at `at`; `last` is the last entry read
    /// whole, `entry` the one whose data was being read.
    fn error(self, at: u64, last: Option<&str>, entry: Option<&str>) -> io::Error {
        let inside = match (self, last, entry) {
            (Cut::Data, _, Some(e)) => format!("the data of {e:?}"),
            (Cut::Data, _, None) => "an entry's data".to_string(),
            (Cut::Padding, Some(l), _) => format!("the padding after {l:?}"),
            (Cut::Padding, None, _) => "the padding after an entry".to_string(),
            (Cut::Header, Some(l), _) => format!("the header after {l:?}"),
            (Cut::Header, None, _) => "the first header".to_string(),
        };
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the layer ends at byte {at}, inside {inside}: it is cut short"),
        )
    }
}

/// The layer stream under the tar reader: counts what it reads and, at
/// the end of the stream, supplies the padding or names the cut, as
/// [`Tail`] decides. The supplied zeros never reach the layer's hashes,
/// which are computed below this reader.
struct TailReader<R> {
    inner: R,
    tail: Rc<Tail>,
    /// Zeros still to supply.
    zeros: u64,
}

impl<R: Read> Read for TailReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = if self.zeros > 0 {
            let n = buf
                .len()
                .min(usize::try_from(self.zeros).unwrap_or(usize::MAX));
            buf[..n].fill(0);
            self.zeros -= n as u64;
            n
        } else {
            let n = self.inner.read(buf)?;
            if n == 0 {
                match self.tail.at_end() {
                    Ok(0) => return Ok(0),
                    Ok(zeros) => {
                        self.zeros = zeros;
                        return self.read(buf);
                    }
                    Err(cut) => {
                        let at = self.tail.pos.get();
                        self.tail.cut.set(Some((at, cut)));
                        return Err(cut.error(at, None, None));
                    }
                }
            }
            n
        };
        self.tail.pos.set(self.tail.pos.get() + n as u64);
        Ok(n)
    }
}

/// Why a name could not be resolved inside the root.
#[derive(Debug)]
pub enum ResolveError {
    /// More than [`MAX_SYMLINKS`] symlinks.
    Loop,
    /// A component that must be a directory is something else.
    NotADirectory(PathBuf),
    /// The file system failed.
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::Loop => write!(f, "too many levels of symbolic links"),
            ResolveError::NotADirectory(p) => write!(f, "/{} is not a directory", p.display()),
            ResolveError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

/// Resolves `path` inside `root` as if `root` were `/`: every symlink met
/// is followed with an absolute target re-rooted and `..` stopping at the
/// root. Gives the path relative to `root` of what it names, with no
/// symlink left in it, or `None` when something on the way is missing.
/// Missing directories are created (and added to `created`) when
/// `created` is given. The last component may be a non-directory only
/// when `last_may_be_file`; a final symlink is followed too.
pub fn resolve_in_root(
    root: &Path,
    path: &Path,
    mut created: Option<&mut HashSet<PathBuf>>,
    last_may_be_file: bool,
) -> Result<Option<PathBuf>, ResolveError> {
    // Components still to walk, last one on top.
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, path);
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&part);
        let abs = root.join(&next);
        match fs::symlink_metadata(&abs) {
            Ok(m) if m.is_dir() => cur = next,
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(ResolveError::Loop);
                }
                let target = fs::read_link(&abs).map_err(|e| ResolveError::Io(next.clone(), e))?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                push_components(&mut todo, &target);
            }
            Ok(_) if todo.is_empty() && last_may_be_file => cur = next,
            Ok(_) => return Err(ResolveError::NotADirectory(next)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match created.as_deref_mut() {
                Some(created) => {
                    // Explicitly 0755 whatever the daemon's umask: the
                    // sandbox's users must be able to traverse it.
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&abs)
                        .and_then(|()| fs::set_permissions(&abs, fs::Permissions::from_mode(0o755)))
                        .map_err(|e| ResolveError::Io(next.clone(), e))?;
                    created.insert(next.clone());
                    cur = next;
                }
                None => return Ok(None),
            },
            Err(e) => return Err(ResolveError::Io(next, e)),
        }
    }
    Ok(Some(cur))
}

/// Pushes `path`'s components so that the first is popped first; `.` and
/// the root are dropped, `..` kept (the walk clamps it at the root).
fn push_components(todo: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    todo.extend(parts.into_iter().rev());
}

/// The normal components of an entry name: leading `/` and `.` dropped
/// (neutralised), `..` refused.
fn clean_name(name: &Path) -> Result<Vec<&OsStr>, String> {
    name.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(Ok(p)),
            Component::ParentDir => Some(Err("a name with '..' is refused".to_string())),
            _ => None,
        })
        .collect()
}

struct Applier<'a> {
    root: &'a Path,
    /// Paths (relative to the root, resolved) this layer wrote: whiteouts
    /// and opaque markers apply to lower layers only.
    written: HashSet<PathBuf>,
    stats: LayerStats,
    chown: bool,
    /// For copying file contents.
    buf: Vec<u8>,
}

/// Owner, mode and mtime of an entry.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: u64,
}

impl Applier<'_> {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ExtractError> {
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
    fn parent_dir(&mut self, parents: &Path) -> Result<PathBuf, Refusal> {
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
    fn clear(&self, rel: &Path, keep_dir: bool) -> Result<bool, Refusal> {
        let abs = self.root.join(rel);
        match fs::symlink_metadata(&abs) {
            Ok(m) if m.is_dir() && keep_dir => Ok(true),
            Ok(_) => remove_any(&abs).map(|_| false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Refusal::Write(abs, e)),
        }
    }

    fn file<R: Read>(
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

    fn dir(&mut self, parents: &Path, name: &OsStr, meta: &Meta) -> Result<(), Refusal> {
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

    fn symlink(
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

    fn hardlink(&mut self, parents: &Path, name: &OsStr, target: &Path) -> Result<(), Refusal> {
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
    fn whiteout(&mut self, parents: &Path, target: &[u8]) -> Result<(), Refusal> {
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
    fn clear_lower(&self, dir: &Path) -> Result<(), Refusal> {
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
    fn set_meta(&self, f: &File, meta: &Meta) -> io::Result<()> {
        if self.chown {
            std::os::unix::fs::fchown(f, Some(meta.uid), Some(meta.gid))?;
        }
        f.set_permissions(fs::Permissions::from_mode(meta.mode))
    }
}

fn entry_meta(h: &tar::Header) -> Result<Meta, String> {
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
fn remove_any(abs: &Path) -> Result<(), Refusal> {
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
enum Refusal {
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
    fn for_entry(self, name: &Path) -> ExtractError {
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

/// The hostile-archive corpus: each test builds tars by hand (raw header
/// bytes where `tar::Builder` would refuse the name) and checks that the
/// policy above holds and that nothing outside the target changed.
#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_refused_or_corrupt_layer_is_the_clients_fault_a_failed_write_is_not() {
        let refused = ExtractError::Refused {
            entry: "../x".into(),
            reason: "a name with '..' is refused".into(),
        };
        let read = ExtractError::Read(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated"));
        let write = ExtractError::Write {
            path: "/state/images/tmp/x".into(),
            source: io::Error::other("disk full"),
        };
        assert!(refused.is_client_fault());
        assert!(read.is_client_fault());
        assert!(!write.is_client_fault());
    }

    /// Builds a tar entry by entry.
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Tar {
            Tar(tar::Builder::new(Vec::new()))
        }

        /// An entry with exactly these name and link bytes.
        fn raw(mut self, name: &[u8], kind: EntryType, link: &[u8], data: &[u8], mode: u32) -> Tar {
            let mut h = tar::Header::new_gnu();
            {
                let g = h.as_gnu_mut().unwrap();
                g.name = [0; 100];
                g.name[..name.len()].copy_from_slice(name);
                g.linkname = [0; 100];
                g.linkname[..link.len()].copy_from_slice(link);
            }
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_600_000_000);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }

        fn file(self, name: &str, data: &str) -> Tar {
            self.raw(
                name.as_bytes(),
                EntryType::Regular,
                b"",
                data.as_bytes(),
                0o644,
            )
        }

        fn dir(self, name: &str) -> Tar {
            self.raw(name.as_bytes(), EntryType::Directory, b"", b"", 0o755)
        }

        fn symlink(self, name: &str, target: &str) -> Tar {
            self.raw(
                name.as_bytes(),
                EntryType::Symlink,
                target.as_bytes(),
                b"",
                0o777,
            )
        }

        fn hardlink(self, name: &str, target: &str) -> Tar {
            self.raw(
                name.as_bytes(),
                EntryType::Link,
                target.as_bytes(),
                b"",
                0o644,
            )
        }

        /// A GNU long-name entry (names over 100 bytes).
        fn long_file(self, name: &[u8], data: &str) -> Tar {
            let mut with_nul = name.to_vec();
            with_nul.push(0);
            self.raw(
                b"././@LongLink",
                EntryType::GNULongName,
                b"",
                &with_nul,
                0o644,
            )
            .raw(
                b"truncated",
                EntryType::Regular,
                b"",
                data.as_bytes(),
                0o644,
            )
        }

        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    /// A target dir `root` and, beside it, `outside` with a secret in it.
    struct Scene {
        tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
        before: BTreeMap<PathBuf, String>,
    }

    impl Scene {
        fn new() -> Scene {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("root");
            let outside = tmp.path().join("outside");
            fs::create_dir(&root).unwrap();
            fs::create_dir(&outside).unwrap();
            fs::write(outside.join("secret"), "s").unwrap();
            fs::set_permissions(outside.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
            let mut s = Scene {
                tmp,
                root,
                outside,
                before: BTreeMap::new(),
            };
            s.before = s.outside_state();
            s
        }

        /// Everything in the temp dir but the root: path → kind, mode, links, content.
        fn outside_state(&self) -> BTreeMap<PathBuf, String> {
            fn walk(dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, String>) {
                for e in fs::read_dir(dir).unwrap() {
                    let p = e.unwrap().path();
                    if p == skip {
                        continue;
                    }
                    let m = fs::symlink_metadata(&p).unwrap();
                    let content = if m.is_file() {
                        fs::read_to_string(&p).unwrap()
                    } else {
                        String::new()
                    };
                    out.insert(p.clone(), format!("{:o} {} {content}", m.mode(), m.nlink()));
                    if m.is_dir() {
                        walk(&p, skip, out);
                    }
                }
            }
            let mut out = BTreeMap::new();
            walk(self.tmp.path(), &self.root, &mut out);
            out
        }

        fn apply(&self, tar: Tar) -> Result<LayerStats, ExtractError> {
            self.apply_bytes(&tar.bytes())
        }

        fn apply_bytes(&self, bytes: &[u8]) -> Result<LayerStats, ExtractError> {
            apply_layer(&self.root, &mut &bytes[..])
        }

        /// The invariant of every test: nothing outside `root` changed.
        fn assert_outside_untouched(&self) {
            assert_eq!(
                self.outside_state(),
                self.before,
                "something outside the root changed"
            );
        }

        fn read(&self, rel: &str) -> String {
            fs::read_to_string(self.root.join(rel)).unwrap()
        }

        /// `outside`'s absolute path without the leading `/`: where a
        /// re-rooted absolute link to it lands.
        fn outside_rel(&self) -> PathBuf {
            self.outside.strip_prefix("/").unwrap().to_path_buf()
        }
    }

    fn refused(r: Result<LayerStats, ExtractError>, want: &str) {
        match r {
            Err(ExtractError::Refused { reason, .. }) => {
                assert!(
                    reason.contains(want),
                    "refused for {reason:?}, not {want:?}"
                )
            }
            other => panic!("expected a refusal ({want}), got {other:?}"),
        }
    }

    #[test]
    fn names_with_dotdot_are_refused() {
        for name in [
            "../evil",
            "a/../../evil",
            "./../evil",
            "a/b/../../../evil",
            "..",
        ] {
            let s = Scene::new();
            refused(s.apply(Tar::new().file(name, "x")), "'..'");
            assert!(!s.tmp.path().join("evil").exists(), "{name}");
            s.assert_outside_untouched();
        }
    }

    #[test]
    fn dotdot_in_a_gnu_long_name_is_refused() {
        let s = Scene::new();
        let mut name = b"d/".repeat(60);
        name.extend_from_slice(&b"../".repeat(70));
        name.extend_from_slice(b"evil");
        refused(s.apply(Tar::new().long_file(&name, "x")), "'..'");
        s.assert_outside_untouched();
    }

    #[test]
    fn absolute_names_land_inside_the_root() {
        let s = Scene::new();
        let pwned = s.outside.join("pwned");
        let stats = s
            .apply(
                Tar::new()
                    .dir("/")
                    .file("/abs/file", "in")
                    .file(pwned.to_str().unwrap(), "in too"),
            )
            .unwrap();
        assert_eq!(stats.files, 2);
        assert_eq!(s.read("abs/file"), "in");
        assert_eq!(
            fs::read_to_string(s.root.join(s.outside_rel()).join("pwned")).unwrap(),
            "in too"
        );
        assert!(!pwned.exists());
        s.assert_outside_untouched();
    }

    #[test]
    fn writes_through_symlinked_parents_are_rerooted() {
        let s = Scene::new();
        let abs = s.outside.to_str().unwrap().to_string();
        s.apply(
            Tar::new()
                .symlink("abs", &abs)
                .file("abs/pwned", "1")
                .symlink("rel", "../../../../../../outside")
                .file("rel/pwned", "2")
                .symlink("root", "/")
                .file("root/etc/pwned", "3")
                .dir("d")
                .symlink("d/up", "..")
                .file("d/up/d/up/d/up/pwned", "4"),
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(s.root.join(s.outside_rel()).join("pwned")).unwrap(),
            "1"
        );
        assert_eq!(s.read("outside/pwned"), "2");
        assert_eq!(s.read("etc/pwned"), "3");
        assert_eq!(s.read("pwned"), "4");
        assert!(!s.outside.join("pwned").exists());
        s.assert_outside_untouched();
    }

    #[test]
    fn an_entry_over_a_symlink_replaces_it_and_never_writes_through() {
        let s = Scene::new();
        let secret = s.outside.join("secret");
        let outside = s.outside.to_str().unwrap().to_string();
        s.apply(
            Tar::new()
                .symlink("f", secret.to_str().unwrap())
                .file("f", "new")
                .symlink("d", &outside)
                .raw(b"d", EntryType::Directory, b"", b"", 0o777)
                .symlink("h", secret.to_str().unwrap())
                .file("real", "r")
                .hardlink("h", "real"),
        )
        .unwrap();
        assert_eq!(s.read("f"), "new");
        assert!(fs::symlink_metadata(s.root.join("f")).unwrap().is_file());
        let d = fs::symlink_metadata(s.root.join("d")).unwrap();
        assert!(d.is_dir());
        assert_eq!(d.mode() & 0o7777, 0o777);
        assert_eq!(s.read("h"), "r");
        s.assert_outside_untouched();
    }

    #[test]
    fn hard_links_never_reach_outside() {
        let s = Scene::new();
        let secret = s.outside.join("secret");
        let secret = secret.to_str().unwrap();
        let outside = s.outside.to_str().unwrap();
        refused(
            s.apply(Tar::new().hardlink("h", "../outside/secret")),
            "'..'",
        );
        refused(
            s.apply(Tar::new().hardlink("h", secret)),
            "not in the layers",
        );
        refused(
            s.apply(Tar::new().symlink("s", outside).hardlink("h", "s/secret")),
            "not in the layers",
        );
        refused(
            s.apply(Tar::new().dir("dir").hardlink("h", "dir")),
            "directory",
        );
        refused(
            s.apply(Tar::new().file("x", "x").hardlink("x", "x")),
            "itself",
        );
        // A link to a symlink links the symlink, not what it points at.
        let stats = s
            .apply(
                Tar::new()
                    .symlink("sl", secret)
                    .hardlink("h2", "sl")
                    .file("real", "r")
                    .hardlink("h3", "/real"),
            )
            .unwrap();
        assert_eq!(stats.hardlinks, 2);
        assert!(fs::symlink_metadata(s.root.join("h2"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::metadata(s.root.join("real")).unwrap().nlink(), 2);
        s.assert_outside_untouched();
    }

    #[test]
    fn device_nodes_and_fifos_are_skipped() {
        let s = Scene::new();
        let stats = s
            .apply(
                Tar::new()
                    .dir("dev")
                    .raw(b"dev/mem", EntryType::Char, b"", b"", 0o666)
                    .raw(b"dev/sda", EntryType::Block, b"", b"", 0o666)
                    .raw(b"fifo", EntryType::Fifo, b"", b"", 0o666)
                    .file("after", "still applied"),
            )
            .unwrap();
        assert_eq!(stats.skipped, 3);
        assert_eq!(fs::read_dir(s.root.join("dev")).unwrap().count(), 0);
        assert!(!s.root.join("fifo").exists());
        assert_eq!(s.read("after"), "still applied");
        s.assert_outside_untouched();
    }

    #[test]
    fn links_loops_files_as_parents_and_odd_types_are_refused() {
        let s = Scene::new();
        refused(
            s.apply(
                Tar::new()
                    .symlink("a", "b")
                    .symlink("b", "a")
                    .file("a/x", "x"),
            ),
            "symbolic links",
        );
        refused(
            s.apply(Tar::new().file("f", "x").file("f/x", "x")),
            "not a directory",
        );
        refused(
            s.apply(Tar::new().raw(b"v", EntryType::new(b'V'), b"", b"", 0o644)),
            "not supported",
        );
        refused(s.apply(Tar::new().symlink("empty", "")), "without a target");
        refused(
            s.apply(Tar::new().raw(b"/", EntryType::Regular, b"", b"x", 0o644)),
            "root",
        );
        s.assert_outside_untouched();
    }

    #[test]
    fn whiteouts_remove_lower_entries_only() {
        let s = Scene::new();
        s.apply(
            Tar::new()
                .file("a/x", "x")
                .file("a/y", "y")
                .file("b/c", "c")
                .file("o/1", "1")
                .file("o/sub/2", "2")
                .file("p/lower", "l"),
        )
        .unwrap();
        let stats = s
            .apply(
                Tar::new()
                    .file("a/.wh.x", "")
                    .raw(b".wh.b", EntryType::Regular, b"", b"", 0o644)
                    .dir("o")
                    .raw(b"o/.wh..wh..opq", EntryType::Regular, b"", b"", 0o644)
                    .file("o/new", "n")
                    .file("a/z", "same layer")
                    .file("a/.wh.z", "")
                    .file("p/keep", "k")
                    .file("p/.wh..wh..opq", "")
                    .file(".wh..wh.plnk", "")
                    .file("a/.wh.missing", ""),
            )
            .unwrap();
        assert_eq!(stats.whiteouts, 6);
        let names = |d: &str| {
            let mut v: Vec<String> = fs::read_dir(s.root.join(d))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names("a"), ["y", "z"]);
        assert!(!s.root.join("b").exists());
        assert_eq!(names("o"), ["new"]);
        assert_eq!(names("p"), ["keep"]);
        assert_eq!(names(""), ["a", "o", "p"]);
        s.assert_outside_untouched();
    }

    #[test]
    fn hostile_whiteouts_stay_inside() {
        let s = Scene::new();
        let outside = s.outside.to_str().unwrap().to_string();
        s.apply(Tar::new().symlink("l", &outside).file("keep", "k"))
            .unwrap();
        s.apply(
            Tar::new()
                .file("l/.wh.secret", "")
                .file("l/.wh..wh..opq", ""),
        )
        .unwrap();
        refused(s.apply(Tar::new().file(".wh..", "")), "whiteout");
        refused(s.apply(Tar::new().file("a/.wh...", "")), "whiteout");
        assert_eq!(s.read("keep"), "k");
        s.assert_outside_untouched();
    }

    #[test]
    fn modes_owners_and_contents_come_from_the_headers() {
        let s = Scene::new();
        let stats = s
            .apply(
                Tar::new()
                    .raw(b"./", EntryType::Directory, b"", b"", 0o700)
                    .raw(b"bin/su", EntryType::Regular, b"", b"#!", 0o4755)
                    .raw(b"ro", EntryType::Directory, b"", b"", 0o555)
                    .file("ro/inside", "i"),
            )
            .unwrap();
        assert_eq!(stats.files, 2);
        assert_eq!(stats.bytes, 3);
        let su = fs::metadata(s.root.join("bin/su")).unwrap();
        assert_eq!(su.mode() & 0o7777, 0o4755);
        assert_eq!(su.mtime(), 1_600_000_000);
        assert_eq!(
            fs::metadata(s.root.join("ro")).unwrap().mode() & 0o7777,
            0o555
        );
        // The root entry does not change the target dir.
        assert_eq!(fs::metadata(&s.root).unwrap().mode() & 0o7777, 0o755);
        s.assert_outside_untouched();
    }

    /// `n` bytes that tell their offset apart.
    fn content(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
    }

    /// A whole tar whose entries' sizes are not multiples of 512 (the last
    /// is `dir/last`, 1000 bytes), and where that last entry's data ends.
    fn odd_tar() -> (Vec<u8>, usize) {
        let tar = Tar::new()
            .raw(b"first", EntryType::Regular, b"", &content(700, 1), 0o644)
            .dir("dir")
            .raw(
                b"dir/middle",
                EntryType::Regular,
                b"",
                &content(5, 2),
                0o644,
            )
            .raw(
                b"dir/last",
                EntryType::Regular,
                b"",
                &content(1000, 3),
                0o644,
            )
            .bytes();
        let mut archive = tar::Archive::new(&tar[..]);
        let last = archive.entries().unwrap().last().unwrap().unwrap();
        let end = (last.raw_file_position() + last.size()) as usize;
        assert_eq!(end % 512, 1000 % 512);
        (tar, end)
    }

    fn round_up(n: usize) -> usize {
        n.div_ceil(512) * 512
    }

    #[test]
    fn a_layer_may_end_right_after_its_last_entrys_data() {
        // What umoci 0.4.7 writes: it never closes its tar writer, so the
        // last entry's padding and the end-of-archive blocks are missing.
        let (tar, end) = odd_tar();
        for (cut, what) in [
            (end, "no padding, no end blocks"),
            (round_up(end), "padding, no end blocks"),
            (round_up(end) + 512, "one end block"),
            (tar.len(), "the whole tar"),
        ] {
            let s = Scene::new();
            let stats = s
                .apply_bytes(&tar[..cut])
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!((stats.files, stats.dirs), (3, 1), "{what}");
            assert_eq!(fs::read(s.root.join("first")).unwrap(), content(700, 1));
            assert_eq!(fs::read(s.root.join("dir/middle")).unwrap(), content(5, 2));
            assert_eq!(fs::read(s.root.join("dir/last")).unwrap(), content(1000, 3));
            s.assert_outside_untouched();
        }
    }

    fn truncated(r: Result<LayerStats, ExtractError>, want: &str) {
        match r {
            Err(e @ ExtractError::Read(_)) => {
                let msg = e.to_string();
                assert!(msg.contains(want), "{msg:?} does not say {want:?}")
            }
            other => panic!("expected a truncated layer ({want}), got {other:?}"),
        }
    }

    #[test]
    fn a_layer_cut_inside_an_entrys_data_is_refused() {
        let (tar, end) = odd_tar();
        let start = end - 1000;
        // Inside the last block of data, at a block boundary inside the
        // data, and right after the header (no data at all).
        for cut in [end - 1, start + 512, start] {
            let s = Scene::new();
            truncated(
                s.apply_bytes(&tar[..cut]),
                &format!("the layer ends at byte {cut}, inside the data of \"dir/last\""),
            );
            s.assert_outside_untouched();
        }
    }

    #[test]
    fn a_layer_cut_inside_a_header_or_padding_is_refused() {
        let (tar, end) = odd_tar();
        let last_header = end - 1000 - 512;
        for (cut, inside) in [
            (last_header + 100, "the header after \"dir/middle\""),
            (last_header + 511, "the header after \"dir/middle\""),
            (100, "the first header"),
            // `first` is 700 bytes: its data ends at 1212, its padding at 1536.
            (1300, "the padding after \"first\""),
            (end + 1, "the padding after \"dir/last\""),
        ] {
            let s = Scene::new();
            truncated(
                s.apply_bytes(&tar[..cut]),
                &format!("the layer ends at byte {cut}, inside {inside}"),
            );
            s.assert_outside_untouched();
        }
    }
}
