//! The actors' cgroups (cgroup v1): where runsc puts each sandbox, what
//! the daemon reads back from them (CPU, memory, tasks, OOM kills), and
//! the removal of what runsc leaves behind.
//!
//! Every sandbox gets a cgroup of its own, `<parent>/<container id>`,
//! named in its bundle's `linux.cgroupsPath`; runsc creates it under each
//! controller with the bundle's `linux.resources` and removes it at
//! `runsc delete`. A container id is new for each incarnation, so a
//! restore never lands in the cgroup of the sandbox it replaces (runsc
//! would take a cgroup that already exists as the caller's, apply no
//! limits to it and never remove it). The daemon owns the parent: it
//! creates it at start and removes the children runsc left behind (a
//! delete that failed, a sandbox killed with the daemon down).

use std::path::{Path, PathBuf};

/// The v1 controllers runsc makes a sandbox's cgroup in (when mounted):
/// what the daemon sweeps.
const CONTROLLERS: [&str; 14] = [
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
    // runsc also makes the sandbox's cgroup in the named systemd hierarchy.
    "systemd",
];

/// A v1 `memory.limit_in_bytes` at or above this is "no limit" (the kernel
/// shows `PAGE_COUNTER_MAX` pages, about 2^63 bytes).
const UNLIMITED: u64 = 1 << 62;

/// The default `[cgroups] parent`.
pub(crate) const DEFAULT_PARENT: &str = "/atelet";

/// Errors of the cgroup layer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CgroupError {
    /// `[cgroups] parent` is not a clean absolute path.
    #[error("cgroups.parent {0:?} must be an absolute path of plain names (e.g. \"/atelet\")")]
    BadParent(String),
    /// A cgroup file could not be read or parsed, or a directory made or
    /// removed.
    #[error("{path}: {message}")]
    Io {
        /// Which file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// What a sandbox's cgroup shows now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Usage {
    /// `cpuacct.usage`, in seconds.
    pub cpu_seconds: Option<f64>,
    /// `cpu.cfs_quota_us / cpu.cfs_period_us`, in cores; `None` unlimited.
    pub cpu_limit: Option<f64>,
    /// `memory.usage_in_bytes`.
    pub memory_bytes: Option<u64>,
    /// `memory.limit_in_bytes`; `None` unlimited.
    pub memory_limit: Option<u64>,
    /// `pids.current`.
    pub pids: Option<u64>,
    /// `oom_kill` of `memory.oom_control`.
    pub oom_kills: Option<u64>,
}

/// The cgroup hierarchy the daemon's actors live in.
#[derive(Debug, Clone)]
pub(crate) struct Cgroups {
    /// Where the v1 controllers are mounted (`/sys/fs/cgroup`).
    root: PathBuf,
    /// `[cgroups] parent`, e.g. `/atelet`.
    parent: String,
}

impl Cgroups {
    /// The hierarchy at `root` (`/sys/fs/cgroup`) with actors under `parent`.
    pub(crate) fn new(root: PathBuf, parent: &str) -> Result<Cgroups, CgroupError> {
        let clean = parent.trim_end_matches('/');
        let ok = clean.starts_with('/')
            && clean.len() > 1
            && clean[1..].split('/').all(|part| {
                !part.is_empty()
                    && part != "."
                    && part != ".."
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
            });
        if !ok {
            return Err(CgroupError::BadParent(parent.to_string()));
        }
        Ok(Cgroups {
            root,
            parent: clean.to_string(),
        })
    }

    /// The bundle's `linux.cgroupsPath` for one sandbox.
    pub(crate) fn path_of(&self, container_id: &str) -> String {
        format!("{}/{container_id}", self.parent)
    }

    fn dir(&self, controller: &str, container_id: &str) -> PathBuf {
        self.parent_dir(controller).join(container_id)
    }

    fn parent_dir(&self, controller: &str) -> PathBuf {
        self.root
            .join(controller)
            .join(self.parent.trim_start_matches('/'))
    }

    /// Creates the parent under every mounted controller, so that the
    /// daemon's children are where an operator looks for them from the
    /// first start on. A controller that is not mounted is skipped.
    pub(crate) fn ensure_parent(&self) -> Result<(), CgroupError> {
        for c in CONTROLLERS {
            if !self.root.join(c).is_dir() {
                continue;
            }
            let dir = self.parent_dir(c);
            std::fs::create_dir_all(&dir).map_err(|e| CgroupError::Io {
                path: dir.clone(),
                message: format!("creating the actors' parent cgroup: {e}"),
            })?;
        }
        Ok(())
    }

    /// Reads a sandbox's usage; fields whose file is missing (no such
    /// cgroup, a controller not mounted) are `None`.
    pub(crate) fn usage(&self, container_id: &str) -> Usage {
        let read = |controller: &str, file: &str| -> Option<String> {
            std::fs::read_to_string(self.dir(controller, container_id).join(file)).ok()
        };
        let number = |controller: &str, file: &str| -> Option<u64> {
            read(controller, file)?.trim().parse().ok()
        };
        let quota: Option<i64> =
            read("cpu", "cpu.cfs_quota_us").and_then(|s| s.trim().parse().ok());
        let period = number("cpu", "cpu.cfs_period_us");
        Usage {
            cpu_seconds: number("cpuacct", "cpuacct.usage").map(|ns| ns as f64 / 1e9),
            cpu_limit: match (quota, period) {
                (Some(q), Some(p)) if q > 0 && p > 0 => Some(q as f64 / p as f64),
                _ => None,
            },
            memory_bytes: number("memory", "memory.usage_in_bytes"),
            memory_limit: number("memory", "memory.limit_in_bytes").filter(|l| *l < UNLIMITED),
            pids: number("pids", "pids.current"),
            oom_kills: read("memory", "memory.oom_control").and_then(|s| oom_kills(&s)),
        }
    }

    /// Every child of the parent, under any controller, by name (each a
    /// sandbox's, named after its container id).
    pub(crate) fn children(&self) -> Vec<String> {
        let mut names = std::collections::BTreeSet::new();
        for c in CONTROLLERS {
            let Ok(entries) = std::fs::read_dir(self.parent_dir(c)) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    if let Some(name) = e.file_name().to_str() {
                        names.insert(name.to_string());
                    }
                }
            }
        }
        names.into_iter().collect()
    }

    /// Removes a sandbox's cgroup under every controller (what runsc did
    /// not remove). Missing is fine; one that still holds tasks is an
    /// error (the kernel refuses with EBUSY), and is left in place.
    pub(crate) fn remove(&self, container_id: &str) -> Result<(), CgroupError> {
        let mut first_error = None;
        for c in CONTROLLERS {
            let dir = self.dir(c, container_id);
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_error.get_or_insert(CgroupError::Io {
                        path: dir,
                        message: format!("removing a sandbox's cgroup: {e}"),
                    });
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// True when the memory controller is mounted where expected (v1):
    /// without it the daemon can neither enforce nor observe limits.
    pub(crate) fn available(&self) -> bool {
        self.root
            .join("memory")
            .join("memory.limit_in_bytes")
            .is_file()
    }

    /// The root the controllers are mounted at.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }
}

/// `oom_kill N` of a `memory.oom_control` text (kernels since 4.13).
fn oom_kills(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_must_be_clean_absolute_paths() {
        for ok in [
            "/atelet",
            "/atelet/",
            "/system.slice/atelet-actors",
            "/a/b_c",
        ] {
            Cgroups::new("/sys/fs/cgroup".into(), ok).unwrap();
        }
        for bad in ["", "/", "atelet", "/a/../b", "/a//b", "/a b", "/./a"] {
            assert!(Cgroups::new("/sys/fs/cgroup".into(), bad).is_err(), "{bad}");
        }
        let c = Cgroups::new("/sys/fs/cgroup".into(), "/atelet/").unwrap();
        assert_eq!(c.path_of("a_1.n"), "/atelet/a_1.n");
    }

    #[test]
    fn usage_is_read_from_the_controllers_files() {
        let root = tempfile::tempdir().unwrap();
        let c = Cgroups::new(root.path().into(), "/p").unwrap();
        let put = |ctl: &str, file: &str, text: &str| {
            let d = root.path().join(ctl).join("p").join("x_1.n");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(file), text).unwrap();
        };
        assert_eq!(c.usage("x_1.n"), Usage::default());
        put("cpuacct", "cpuacct.usage", "2500000000\n");
        put("cpu", "cpu.cfs_quota_us", "50000\n");
        put("cpu", "cpu.cfs_period_us", "100000\n");
        put("memory", "memory.usage_in_bytes", "1048576\n");
        put("memory", "memory.limit_in_bytes", "67108864\n");
        put(
            "memory",
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        put("pids", "pids.current", "25\n");
        let u = c.usage("x_1.n");
        assert_eq!(u.cpu_seconds, Some(2.5));
        assert_eq!(u.cpu_limit, Some(0.5));
        assert_eq!(u.memory_bytes, Some(1 << 20));
        assert_eq!(u.memory_limit, Some(64 << 20));
        assert_eq!(u.pids, Some(25));
        assert_eq!(u.oom_kills, Some(1));
        // No limits: quota -1, the page counter's maximum.
        put("cpu", "cpu.cfs_quota_us", "-1\n");
        put("memory", "memory.limit_in_bytes", "9223372036854771712\n");
        let u = c.usage("x_1.n");
        assert_eq!((u.cpu_limit, u.memory_limit), (None, None));
        assert_eq!(c.children(), vec!["x_1.n".to_string()]);
    }

    #[test]
    fn remove_takes_every_controller_and_tolerates_missing_ones() {
        let root = tempfile::tempdir().unwrap();
        let c = Cgroups::new(root.path().into(), "/p").unwrap();
        for ctl in ["memory", "cpu", "pids"] {
            std::fs::create_dir_all(root.path().join(ctl)).unwrap();
        }
        c.ensure_parent().unwrap();
        for ctl in ["memory", "cpu"] {
            std::fs::create_dir_all(root.path().join(ctl).join("p/a_1.n")).unwrap();
        }
        assert_eq!(c.children(), vec!["a_1.n".to_string()]);
        c.remove("a_1.n").unwrap();
        assert!(c.children().is_empty());
        c.remove("a_1.n").unwrap();
        assert!(root.path().join("pids/p").is_dir());
    }

    #[test]
    fn oom_kill_count_needs_the_line() {
        assert_eq!(
            oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            Some(3)
        );
        assert_eq!(oom_kills("oom_kill_disable 0\nunder_oom 0\n"), None);
    }
}
