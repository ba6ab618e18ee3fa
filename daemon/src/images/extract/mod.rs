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

mod applier;
mod resolve;
mod tail;

use applier::Applier;
use resolve::clean_name;
pub use resolve::{resolve_in_root, ResolveError};
use tail::{Tail, TailReader};

/// The hostile-archive corpus: each test builds tars by hand (raw header
/// bytes where `tar::Builder` would refuse the name) and checks that the
/// policy of this module holds and that nothing outside the target changed.
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
