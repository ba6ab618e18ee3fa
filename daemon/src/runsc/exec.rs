//! `runsc exec` and `runsc kill --pid`: a process started in a running
//! container, and how it is ended.
//!
//! What this runsc does (README "Exec and copy"): the `runsc exec` client
//! stays in the foreground for as long as the process runs and exits with
//! its status; the process's stdio are the client's (pipes here) or, with
//! `--console-socket`, a pseudo-terminal whose master end runsc sends to
//! that socket. Killing the client does not end the process inside the
//! sandbox: it is ended by its pid inside the sandbox (`--internal-pid-file`,
//! then `runsc kill --pid`).

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::sync::oneshot;

use super::args::{ExecOpts, KillOpts, RunscArgs, TerminalProcess, WaitPidOpts};
use super::{Runsc, RuntimeError};
use crate::reaper::ExitStatus;

/// How long runsc may take to hand over the terminal of a tty exec.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What `runsc exec` needs.
#[derive(Debug, Clone)]
pub(crate) struct ExecSpec {
    /// The container.
    pub container_id: String,
    /// The OCI process (JSON) to run: args, env, cwd, user, capabilities.
    pub process_file: PathBuf,
    /// Where runsc writes the process's pid inside the sandbox.
    pub internal_pid_file: PathBuf,
    /// With a tty: where runsc sends the terminal's master end.
    pub console_socket: Option<PathBuf>,
}

/// A started exec: the `runsc exec` client and the process's stdio.
#[derive(Debug)]
pub(crate) struct ExecChild {
    /// Host pid of the `runsc exec` client (it leads its own process group).
    pub pid: i32,
    /// The process's stdin (without a tty).
    pub stdin: Option<OwnedFd>,
    /// Its stdout (without a tty).
    pub stdout: Option<OwnedFd>,
    /// Its stderr (without a tty).
    pub stderr: Option<OwnedFd>,
    /// With a tty: the terminal's master end (stdin and output).
    pub console: Option<OwnedFd>,
    /// Resolves with the client's status, which is the process's.
    pub exit: oneshot::Receiver<ExitStatus>,
}

impl Runsc {
    /// `runsc exec --process …`, in the foreground: see [`ExecChild`].
    pub(super) async fn exec_inner(&self, spec: &ExecSpec) -> Result<ExecChild, RuntimeError> {
        let binary = self.binary()?;
        // A terminal exec's process goes on the command line (ExecOpts).
        let process = match &spec.console_socket {
            Some(_) => {
                let context = format!("reading {}", spec.process_file.display());
                let bytes =
                    std::fs::read(&spec.process_file).map_err(RuntimeError::io(context.clone()))?;
                let p: oci_spec::runtime::Process =
                    serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Io {
                        context,
                        source: std::io::Error::other(e),
                    })?;
                Some(p)
            }
            None => None,
        };
        let (cmd_args, cmd_env, cwd) = match &process {
            Some(p) => (
                p.args().clone().unwrap_or_default(),
                p.env().clone().unwrap_or_default(),
                p.cwd().display().to_string(),
            ),
            None => Default::default(),
        };
        let args = ExecOpts {
            process_file: &spec.process_file,
            internal_pid_file: &spec.internal_pid_file,
            console_socket: spec.console_socket.as_deref(),
            container_id: &spec.container_id,
            terminal: process.as_ref().map(|p| TerminalProcess {
                args: &cmd_args,
                env: &cmd_env,
                cwd: &cwd,
                uid: p.user().uid(),
                gid: p.user().gid(),
            }),
        }
        .args();
        let listener = match &spec.console_socket {
            Some(path) => {
                let _ = std::fs::remove_file(path);
                Some(
                    tokio::net::UnixListener::bind(path)
                        .map_err(RuntimeError::io(format!("binding {}", path.display())))?,
                )
            }
            None => None,
        };
        let mut cmd = self.config.command(&binary, &args, false);
        if listener.is_some() {
            // The terminal is the process's stdio; the client's own say
            // only what runsc itself complains of.
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        } else {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
        let (mut child, mut exit) = self
            .reaper
            .spawn(&mut cmd)
            .map_err(|source| RuntimeError::Spawn { op: "exec", source })?;
        let pid = child.id() as i32;
        let stdin = child.stdin.take().map(OwnedFd::from);
        let stdout = child.stdout.take().map(OwnedFd::from);
        let stderr = child.stderr.take().map(OwnedFd::from);
        drop(child);
        let console = match listener {
            None => None,
            Some(listener) => {
                let received = tokio::time::timeout(CONSOLE_TIMEOUT, async {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let (stream, _) = accepted.map_err(RuntimeError::io("console socket"))?;
                            receive_fd(stream).await.map(Some)
                        }
                        status = &mut exit => Err(RuntimeError::Failed {
                            op: "exec",
                            status: status.unwrap_or(ExitStatus::Exited(128)),
                            output: "runsc exec ended before it sent the terminal".to_string(),
                        }),
                    }
                })
                .await;
                if let Some(path) = &spec.console_socket {
                    let _ = std::fs::remove_file(path);
                }
                match received {
                    Ok(Ok(fd)) => fd,
                    Ok(Err(e)) => {
                        super::host::end_process_group(pid);
                        return Err(e);
                    }
                    Err(_) => {
                        super::host::end_process_group(pid);
                        return Err(RuntimeError::Timeout {
                            op: "exec",
                            secs: CONSOLE_TIMEOUT.as_secs(),
                        });
                    }
                }
            }
        };
        if console.is_none() {
            return Ok(ExecChild {
                pid,
                stdin,
                stdout,
                stderr,
                console,
                exit,
            });
        }
        // Detached: the client ends once the process runs; the process's
        // own end comes from `runsc wait --pid`, which stands in for the
        // client from here on.
        // runsc writes the pid once the process runs; its client may stay
        // on a while after that.
        let deadline = tokio::time::Instant::now() + CONSOLE_TIMEOUT;
        let mut ended = false;
        while read_pid_file(&spec.internal_pid_file).is_none()
            && !ended
            && tokio::time::Instant::now() < deadline
        {
            tokio::select! {
                _ = &mut exit => ended = true,
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
        let Some(inner) = read_pid_file(&spec.internal_pid_file) else {
            super::host::end_process_group(pid);
            return Err(RuntimeError::Failed {
                op: "exec",
                status: ExitStatus::Exited(128),
                output: "runsc exec started no process (no pid written)".to_string(),
            });
        };
        let wait_args = WaitPidOpts {
            container_id: &spec.container_id,
            pid: inner,
        }
        .args();
        let mut cmd = self.config.command(&binary, &wait_args, false);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let (mut waiter, waited) = self
            .reaper
            .spawn(&mut cmd)
            .map_err(|source| RuntimeError::Spawn { op: "wait", source })?;
        let wait_pid = waiter.id() as i32;
        let out = waiter.stdout.take();
        drop(waiter);
        let (tx, exit) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            if let Some(mut out) = out {
                let _ = std::io::Read::read_to_string(&mut out, &mut text);
            }
            let _ = waited.blocking_recv();
            if let Some(status) = parse_wait(&text) {
                let _ = tx.send(status);
            }
        });
        Ok(ExecChild {
            pid: wait_pid,
            stdin,
            stdout,
            stderr,
            console,
            exit,
        })
    }

    /// `runsc kill --pid <pid> <container> KILL`.
    pub(super) async fn kill_process_inner(
        &self,
        container_id: &str,
        pid: i32,
    ) -> Result<(), RuntimeError> {
        // The process and everything it started: an orphan left holding
        // the exec's stdio (host pipes) makes the sandbox's next
        // checkpoint one that this runsc cannot restore. The tree is
        // stopped first, so that none of it forks past the listing, then
        // killed.
        let mut tree = vec![pid];
        for _ in 0..TREE_ROUNDS {
            let listed = self.process_table(container_id).await.unwrap_or_default();
            let grown = descendants(&listed, &tree);
            for p in &grown {
                // One that ended meanwhile is fine.
                let _ = self.signal_process(container_id, *p, "STOP").await;
            }
            if grown.len() == tree.len() {
                break;
            }
            tree = grown;
        }
        // What counts is the exec's own process; the rest may have ended.
        let mut result = Ok(());
        for p in &tree {
            let res = self.signal_process(container_id, *p, "KILL").await;
            if *p == pid {
                result = res;
            }
        }
        result
    }

    /// Sends `signal` to one process in the sandbox.
    async fn signal_process(
        &self,
        container_id: &str,
        pid: i32,
        signal: &str,
    ) -> Result<(), RuntimeError> {
        let args = KillOpts {
            container_id,
            pid,
            signal,
        }
        .args();
        self.logged(
            "kill",
            container_id,
            self.output_inner("kill", &args, false),
        )
        .await
        .map(|_| ())
    }

    /// `runsc ps`: (pid, parent pid) of each process in the container.
    async fn process_table(&self, container_id: &str) -> Result<Vec<(i32, i32)>, RuntimeError> {
        let args = vec!["ps".to_string(), container_id.to_string()];
        let out = self
            .logged("ps", container_id, self.output_inner("ps", &args, false))
            .await?;
        Ok(parse_ps(&String::from_utf8_lossy(&out)))
    }
}

/// Reads the pid runsc wrote into an internal pid file, if it has yet.
/// `runsc wait`'s answer, `{"id": …, "exitStatus": N}` with N the exit
/// code already (128 + n for signal n), as an exit; `None` if it printed
/// none (the process was gone before the wait began: its status is not
/// known).
fn parse_wait(text: &str) -> Option<ExitStatus> {
    let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    let code = i32::try_from(v.get("exitStatus")?.as_i64()?).ok()?;
    Some(match code {
        129..=192 => ExitStatus::Signaled(code - 128),
        _ => ExitStatus::Exited(code),
    })
}

/// Rounds of listing and stopping an exec's process tree before it is
/// killed (each finds what the last one's processes forked meanwhile).
const TREE_ROUNDS: usize = 4;

/// `runsc ps`'s table (`UID PID PPID C TTY STIME TIME CMD`) as
/// (pid, parent pid) pairs; lines that do not parse are skipped.
fn parse_ps(text: &str) -> Vec<(i32, i32)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace().skip(1);
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect()
}

/// `roots` and every process below them in `table`, roots first.
fn descendants(table: &[(i32, i32)], roots: &[i32]) -> Vec<i32> {
    let mut out = roots.to_vec();
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        for (pid, ppid) in table {
            if *ppid == parent && !out.contains(pid) {
                out.push(*pid);
            }
        }
        i += 1;
    }
    out
}

pub(crate) fn read_pid_file(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
}

/// Receives the one file descriptor runsc sends on the console socket.
async fn receive_fd(stream: tokio::net::UnixStream) -> Result<OwnedFd, RuntimeError> {
    let stream = stream
        .into_std()
        .map_err(RuntimeError::io("console socket"))?;
    stream
        .set_nonblocking(false)
        .map_err(RuntimeError::io("console socket"))?;
    let _ = stream.set_read_timeout(Some(CONSOLE_TIMEOUT));
    tokio::task::spawn_blocking(move || {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 256];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| RuntimeError::Io {
            context: "receiving the terminal from runsc".to_string(),
            source: e.into(),
        })?;
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs().map_err(|e| RuntimeError::Io {
            context: "receiving the terminal from runsc".to_string(),
            source: e.into(),
        })? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                fds.extend(received);
            }
        }
        let mut owned: Vec<OwnedFd> = fds
            .into_iter()
            .map(|fd| {
                // SAFETY: the kernel just installed these descriptors in
                // this process for us (SCM_RIGHTS); nothing else owns them.
                unsafe { OwnedFd::from_raw_fd(fd) }
            })
            .collect();
        // Any extra descriptor is closed as the vector drops.
        let first = (!owned.is_empty()).then(|| owned.swap_remove(0));
        first.ok_or_else(|| RuntimeError::Parse {
            op: "exec",
            detail: "runsc sent no terminal on the console socket".to_string(),
        })
    })
    .await
    .map_err(|e| RuntimeError::Io {
        context: "receiving the terminal from runsc".to_string(),
        source: std::io::Error::other(e.to_string()),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_tree_is_found_from_runsc_ps() {
        let table = parse_ps(
            "UID       PID       PPID      C         TTY       STIME     TIME      CMD\n\
             0         1         0         0         ?         18:31     10ms      sleep\n\
             0         4         0         1         ?         18:31     10ms      sh\n\
             0         5         4         0         ?         18:31     0s        sleep\n\
             0         7         5         0         ?         18:31     0s        sleep\n\
             garbage\n",
        );
        assert_eq!(table, vec![(1, 0), (4, 0), (5, 4), (7, 5)]);
        assert_eq!(descendants(&table, &[4]), vec![4, 5, 7]);
        assert_eq!(descendants(&table, &[9]), vec![9]);
    }

    #[test]
    fn runsc_wait_answers_an_exit_code_or_a_signal() {
        assert_eq!(
            parse_wait(r#"{"id":"a","exitStatus":7}"#),
            Some(ExitStatus::Exited(7))
        );
        assert_eq!(
            parse_wait(r#"{"id":"a","exitStatus":137}"#),
            Some(ExitStatus::Signaled(9))
        );
        assert_eq!(parse_wait("waiting for PID 9: no such process"), None);
    }
}
