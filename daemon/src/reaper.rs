//! The one reaper of the daemon's children (docs/design.md, "runsc on these machines").
//!
//! The daemon is a child subreaper: a detached runsc sandbox, orphaned when
//! `runsc run` exits, becomes our child, and we reap it at once. Without
//! that, `runsc delete` polls for a zombie that nobody reaps (1.4 s instead
//! of 27 ms), and we could not learn a sandbox's exit status.
//!
//! One thread owns `waitid(P_ALL)`. Nothing else in the process may wait for
//! a child (so `std::process::Child::wait` and `tokio::process` are never
//! used); instead a caller subscribes to a pid's exit. Spawning happens under
//! the reaper's lock, so a child that exits at once cannot be reaped before
//! its subscription exists. The reaper peeks (`WNOWAIT`) before it takes the
//! lock, so the standard library's own wait after a failed `exec` is never
//! raced either.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::process::{Child, Command};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
}

impl ExitStatus {
    /// The shell's convention: the exit code, or 128 + the signal number.
    pub(crate) fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }

    /// True for `exit(0)`.
    pub(crate) fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exit status {c}"),
            ExitStatus::Signaled(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Exits that nobody subscribed to yet are kept this long (in entries), so
/// that a sandbox dying before its watcher is registered is not missed.
const UNCLAIMED_LIMIT: usize = 4096;

#[derive(Default)]
struct State {
    waiters: HashMap<i32, oneshot::Sender<ExitStatus>>,
    /// (sequence number, pid, status) of exits nobody was waiting for.
    unclaimed: VecDeque<(u64, i32, ExitStatus)>,
    /// Counts reaped children; lets a watcher ignore exits from before its
    /// process was started (pid reuse).
    seq: u64,
    /// Counts spawns, so the reaper thread knows when to look again.
    spawned: u64,
}

struct Inner {
    state: Mutex<State>,
    children: Condvar,
}

/// Handle to the reaper; cheap to clone.
#[derive(Clone)]
pub(crate) struct Reaper {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper").finish_non_exhaustive()
    }
}

/// A point in the reaper's history; see [`Reaper::mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Mark(u64);

impl Reaper {
    /// Makes this process a child subreaper and starts the reaper thread,
    /// once per process: two reapers would steal each other's children.
    pub(crate) fn start() -> io::Result<Reaper> {
        static GLOBAL: Mutex<Option<Reaper>> = Mutex::new(None);
        let mut global = GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reaper) = global.as_ref() {
            return Ok(reaper.clone());
        }
        nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)?;
        let reaper = Reaper {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                children: Condvar::new(),
            }),
        };
        let inner = reaper.inner.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || reap_forever(&inner))?;
        *global = Some(reaper.clone());
        Ok(reaper)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked while holding
        // it; the map itself is still consistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Spawns `cmd` and subscribes to its exit in one step.
    pub(crate) fn spawn(
        &self,
        cmd: &mut Command,
    ) -> io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
        let mut state = self.lock();
        let child = cmd.spawn()?;
        let (tx, rx) = oneshot::channel();
        state.waiters.insert(child.id() as i32, tx);
        state.spawned += 1;
        drop(state);
        self.inner.children.notify_all();
        Ok((child, rx))
    }

    /// The current point in history: exits reaped after it are "new".
    pub(crate) fn mark(&self) -> Mark {
        Mark(self.lock().seq)
    }

    /// Subscribes to the exit of `pid`, an orphan that became our child
    /// (a sandbox). An exit reaped after `since` is delivered at once.
    /// `None` when `pid` is neither our child nor reaped since `since`
    /// (someone else is its parent). The check and the subscription happen
    /// under the reaper's lock, so an exit cannot fall between them.
    pub(crate) fn watch(&self, pid: i32, since: Mark) -> Option<oneshot::Receiver<ExitStatus>> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        if let Some(pos) = state
            .unclaimed
            .iter()
            .position(|(seq, p, _)| *p == pid && *seq > since.0)
        {
            if let Some((_, _, status)) = state.unclaimed.remove(pos) {
                let _ = tx.send(status);
                return Some(rx);
            }
        }
        // A child, alive or a zombie not reaped yet (we hold the lock).
        if !is_our_child(pid) {
            return None;
        }
        state.waiters.insert(pid, tx);
        Some(rx)
    }
}

/// True when `pid` is a child of this process (and so will be reaped here).
pub(crate) fn is_our_child(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name may contain spaces and parentheses: parse after the last ')'.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let ppid = rest
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u32>().ok());
    ppid == Some(std::process::id())
}

fn reap_forever(inner: &Inner) {
    loop {
        match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(status) => {
                let Some(pid) = status.pid() else { continue };
                let mut state = inner
                    .state
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                // Reap under the lock: a spawn in progress may itself wait
                // for this pid (failed exec), in which case it is gone now.
                let reaped = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, code)) => Some(ExitStatus::Exited(code)),
                    Ok(WaitStatus::Signaled(_, sig, _)) => Some(ExitStatus::Signaled(sig as i32)),
                    _ => None,
                };
                if let Some(exit) = reaped {
                    dispatch(&mut state, pid, exit);
                }
            }
            Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => {
                // No children: sleep until one is spawned (orphans only
                // arrive from our own descendants, so nothing is missed).
                let state = inner
                    .state
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let seen = state.spawned;
                let _ = inner
                    .children
                    .wait_timeout_while(state, Duration::from_secs(1), |s| s.spawned == seen);
            }
            Err(e) => {
                tracing::error!(error = %e, "waitid failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn dispatch(state: &mut State, pid: Pid, exit: ExitStatus) {
    state.seq += 1;
    let pid = pid.as_raw();
    match state.waiters.remove(&pid) {
        Some(tx) => {
            let _ = tx.send(exit);
        }
        None => {
            let seq = state.seq;
            state.unclaimed.push_back((seq, pid, exit));
            if state.unclaimed.len() > UNCLAIMED_LIMIT {
                state.unclaimed.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(ExitStatus::Exited(3).code(), 3);
        assert_eq!(ExitStatus::Signaled(9).code(), 137);
        assert!(ExitStatus::Exited(0).success());
        assert!(!ExitStatus::Signaled(15).success());
    }

    #[tokio::test]
    async fn a_spawned_child_exit_is_delivered() {
        let reaper = Reaper::start().unwrap();
        let (_child, rx) = reaper
            .spawn(Command::new("/bin/sh").args(["-c", "exit 3"]))
            .unwrap();
        assert_eq!(rx.await.unwrap(), ExitStatus::Exited(3));
    }

    #[tokio::test]
    async fn an_orphan_is_reaped_and_its_exit_delivered_even_if_watched_late() {
        let reaper = Reaper::start().unwrap();
        let mark = reaper.mark();
        // The shell prints the pid of a background child and exits; the
        // child is orphaned, becomes ours, and exits 7 a moment later.
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", "(sleep 0.2; exit 7) & echo $!"])
            .stdout(std::process::Stdio::piped())
            .stdin(std::process::Stdio::null());
        let (mut child, rx) = reaper.spawn(&mut cmd).unwrap();
        let mut text = String::new();
        use std::io::Read;
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        let pid: i32 = text.trim().parse().unwrap();
        assert_eq!(rx.await.unwrap(), ExitStatus::Exited(0));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let exit = reaper.watch(pid, mark).unwrap().await.unwrap();
        assert_eq!(exit, ExitStatus::Exited(7));
        // Not our child and not reaped here: no subscription.
        assert!(reaper.watch(1, reaper.mark()).is_none());
    }
}
