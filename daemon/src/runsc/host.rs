//! What `/proc` shows of runsc processes: whether a pid lives, the
//! commands and waiters a previous daemon left running (found by the
//! environment marks [`MARK_ROOT`] and [`MARK_OP`]).

use std::path::Path;

use super::{MARK_OP, MARK_ROOT};
use crate::reaper::is_our_child;

/// True while `pid` exists and is not a zombie.
pub(crate) fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// runsc subcommands that change a container's state: a daemon that
/// starts waits for those a previous one left running.
const STATEFUL: [&str; 9] = [
    "run",
    "restore",
    "checkpoint",
    "delete",
    "create",
    "start",
    "kill",
    "pause",
    "resume",
];

/// Pids of the other processes on the host (not this one, nor its children).
fn foreign_pids() -> Vec<i32> {
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    proc_dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me && !is_our_child(*pid))
        .collect()
}

/// The runsc subcommand a process runs for a daemon on `root`, read from
/// the marks in its environment ([`MARK_ROOT`], [`MARK_OP`]).
fn marked_op(pid: i32, root: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let mut on_root = false;
    let mut op = None;
    for var in raw.split(|b| *b == 0) {
        if let Some(v) = var.strip_prefix(format!("{MARK_ROOT}=").as_bytes()) {
            on_root = v == root.as_os_str().as_bytes();
        } else if let Some(v) = var.strip_prefix(format!("{MARK_OP}=").as_bytes()) {
            op = Some(String::from_utf8_lossy(v).into_owned());
        }
    }
    op.filter(|_| on_root)
}

fn command_line(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// runsc commands on `root` that change state (not sandboxes, gofers or
/// `wait`), by pid and command line: found by the daemon's marks, and,
/// for commands of a daemon from before the marks, by the `--root` flag
/// (`root_flag`) and subcommand on their command line.
pub(super) fn stray_commands(root: &Path, root_flag: &str) -> Vec<(i32, String)> {
    foreign_pids()
        .into_iter()
        .filter_map(|pid| {
            let args = command_line(pid);
            let stateful = match marked_op(pid, root) {
                Some(op) => STATEFUL.contains(&op.as_str()),
                None => {
                    args.iter().any(|a| a == root_flag)
                        && args
                            .iter()
                            .skip(1)
                            .find(|a| !a.starts_with('-'))
                            .is_some_and(|sub| STATEFUL.contains(&sub.as_str()))
                }
            };
            stateful.then(|| (pid, args.join(" ")))
        })
        .collect()
}

/// Ends the `runsc wait` processes a previous daemon on `root` left
/// behind (found by their marks); returns how many.
pub(super) fn end_stale_waiters(root: &Path) -> usize {
    end_stale(root, "wait")
}

/// Ends the processes running runsc subcommand `op` for a previous daemon
/// on `root` (found by their marks: `wait` waiters, `exec` clients whose
/// output nobody reads any more); returns how many.
pub(super) fn end_stale(root: &Path, op: &str) -> usize {
    let stale: Vec<i32> = foreign_pids()
        .into_iter()
        .filter(|pid| marked_op(*pid, root).as_deref() == Some(op))
        .collect();
    for pid in &stale {
        end_process_group(*pid);
    }
    stale.len()
}

/// SIGKILL to `pid` and, when it leads its own process group (every runsc
/// command the daemon starts does), to the whole group: a wrapper script
/// and the runsc it runs go together.
pub(crate) fn end_process_group(pid: i32) {
    use nix::sys::signal::{kill, killpg, Signal};
    let p = nix::unistd::Pid::from_raw(pid);
    if nix::unistd::getpgid(Some(p)) == Ok(p) {
        let _ = killpg(p, Signal::SIGKILL);
    } else {
        let _ = kill(p, Signal::SIGKILL);
    }
}
