//! Spawning runsc under the [`Reaper`]: the command line with the global
//! flags and marks, captured output, timeouts, `run`/`restore` with
//! `--detach`, `runsc wait` for adopted sandboxes and the version probe.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use super::args::{GlobalOpts, RestoreOpts, RunOpts, RunscArgs, VersionOpts};
use super::state::parse_wait;
use super::{
    describe_exit, parse_version, ExitOutcome, LaunchSpec, Launched, Runsc, RunscConfig, Runtime,
    RuntimeError, MARK_OP, MARK_ROOT,
};
use crate::reaper::Reaper;

/// How long `runsc --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of runsc output kept in an error message.
const OUTPUT_TAIL: usize = 2048;

impl RunscConfig {
    /// The binary to run: the configured one, else `runsc` on PATH (looked
    /// up at each call, so that installing runsc is enough).
    pub(super) fn binary(&self) -> Result<PathBuf, RuntimeError> {
        match &self.path {
            Some(p) if is_executable(p) => Ok(p.clone()),
            Some(p) => Err(RuntimeError::Unavailable(format!(
                "{} does not exist or is not executable",
                p.display()
            ))),
            None => find_on_path("runsc").ok_or_else(|| {
                RuntimeError::Unavailable("runsc was not found on PATH".to_string())
            }),
        }
    }

    /// The global flags of every runsc command.
    pub(super) fn global(&self) -> GlobalOpts<'_> {
        GlobalOpts {
            root: &self.root,
            platform: &self.platform,
            network: &self.network,
            overlay: &self.overlay,
        }
    }

    /// A runsc command with the global flags, then `args` (a subcommand's
    /// [`RunscArgs::args`]); `idle` runs it at the lowest CPU priority
    /// (through `nice`), for cleanup that must not slow a lifecycle step
    /// beside it.
    pub(super) fn command(&self, binary: &Path, args: &[String], idle: bool) -> Command {
        self.command_on(binary, args, idle, None)
    }

    /// [`RunscConfig::command`] with `--network=<network>` instead of the
    /// configured one.
    pub(super) fn command_on(
        &self,
        binary: &Path,
        args: &[String],
        idle: bool,
        network: Option<&str>,
    ) -> Command {
        let mut cmd = if idle {
            let mut c = Command::new("nice");
            c.args(["-n", "19"]).arg(binary);
            c
        } else {
            Command::new(binary)
        };
        // Marked as ours in the environment (inherited by a wrapper script's
        // runsc too), so that the next daemon finds what this one left
        // running by something it controls, not by parsing command lines.
        let op = args.first().map(String::as_str).unwrap_or_default();
        let mut global = self.global();
        if let Some(n) = network {
            global.network = n;
        }
        cmd.env(MARK_ROOT, &self.root)
            .env(MARK_OP, op)
            .args(global.args())
            .args(args)
            .stdin(Stdio::null())
            // Own process group: a Ctrl-C meant for the daemon's terminal
            // must not reach the sandboxes.
            .process_group(0);
        cmd
    }
}

impl Runsc {
    /// Runs the runsc command `args` and returns what it printed on
    /// stdout; a failure carries the tail of its stderr (else stdout).
    pub(super) async fn output_inner(
        &self,
        op: &'static str,
        args: &[String],
        idle: bool,
    ) -> Result<Vec<u8>, RuntimeError> {
        let binary = self.binary()?;
        let mut cmd = self.config.command(&binary, args, idle);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let (mut child, exit) = self
            .reaper
            .spawn(&mut cmd)
            .map_err(|source| RuntimeError::Spawn { op, source })?;
        let pid = child.id() as i32;
        let stdout = child.stdout.take().map(pipe_reader).transpose();
        let stderr = child.stderr.take().map(pipe_reader).transpose();
        let (Ok(Some(mut stdout)), Ok(Some(mut stderr))) = (stdout, stderr) else {
            return Err(RuntimeError::Io {
                context: format!("runsc {op}: output pipes"),
                source: std::io::Error::other("pipe setup failed"),
            });
        };
        let work = async move {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (r1, r2) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            r1.and(r2)
                .map_err(RuntimeError::io(format!("runsc {op}: reading output")))?;
            let status = exit.await.map_err(|_| RuntimeError::Io {
                context: format!("runsc {op}"),
                source: std::io::Error::other("reaper dropped the exit status"),
            })?;
            Ok::<_, RuntimeError>((status, out, err))
        };
        let (status, out, err) = self.with_timeout(op, pid, work).await?;
        if status.success() {
            Ok(out)
        } else {
            let mut text = String::from_utf8_lossy(&err).into_owned();
            if text.trim().is_empty() {
                text = String::from_utf8_lossy(&out).into_owned();
            }
            Err(RuntimeError::Failed {
                op,
                status,
                output: tail(text.trim()),
            })
        }
    }

    async fn with_timeout<T>(
        &self,
        op: &'static str,
        pid: i32,
        work: impl std::future::Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        match tokio::time::timeout(self.config.timeout, work).await {
            Ok(res) => res,
            Err(_) if pid > 0 => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                Err(RuntimeError::Timeout {
                    op,
                    secs: self.config.timeout.as_secs(),
                })
            }
            Err(_) => Err(RuntimeError::Timeout {
                op,
                secs: self.config.timeout.as_secs(),
            }),
        }
    }

    /// `run`, or `restore` from `image_path`, with `--detach`: see
    /// [`Runsc::launch`].
    pub(super) async fn launch_inner(
        &self,
        op: &'static str,
        spec: &LaunchSpec,
        image_path: Option<&Path>,
    ) -> Result<Launched, RuntimeError> {
        let binary = self.binary()?;
        let log = open_log(&spec.log_path)?;
        let log_start = log
            .metadata()
            .map(|m| m.len())
            .map_err(RuntimeError::io("actor log"))?;
        let pid_file = spec.bundle.join(format!("{}.pid", spec.container_id));
        let _ = std::fs::remove_file(&pid_file);
        let args = match image_path {
            None => RunOpts {
                bundle: &spec.bundle,
                pid_file: &pid_file,
                container_id: &spec.container_id,
            }
            .args(),
            Some(image_path) => RestoreOpts {
                bundle: &spec.bundle,
                pid_file: &pid_file,
                image_path,
                container_id: &spec.container_id,
            }
            .args(),
        };
        let mut cmd = if spec.sandbox_network {
            let mut cmd = self
                .config
                .command_on(&binary, &args, false, Some("sandbox"));
            mask_proc_sys_net(&mut cmd);
            cmd
        } else {
            self.config.command(&binary, &args, false)
        };
        let stderr = log.try_clone().map_err(RuntimeError::io("actor log"))?;
        cmd.stdout(log).stderr(stderr);
        let mark = self.reaper.mark();
        let (child, exit) = self
            .reaper
            .spawn(&mut cmd)
            .map_err(|source| RuntimeError::Spawn { op, source })?;
        let runsc_pid = child.id() as i32;
        drop(child);
        let status = self
            .with_timeout(op, runsc_pid, async {
                exit.await.map_err(|_| RuntimeError::Io {
                    context: format!("runsc {op}"),
                    source: std::io::Error::other("reaper dropped the exit status"),
                })
            })
            .await?;
        if !status.success() {
            return Err(RuntimeError::Failed {
                op,
                status,
                output: read_tail(&spec.log_path, log_start),
            });
        }
        let pid = std::fs::read_to_string(&pid_file)
            .map_err(RuntimeError::io(format!("reading {}", pid_file.display())))?
            .trim()
            .parse::<i32>()
            .map_err(|e| RuntimeError::Parse {
                op,
                detail: format!("pid file: {e}"),
            })?;
        let _ = std::fs::remove_file(&pid_file);
        let exit = if let Some(reaped) = self.reaper.watch(pid, mark) {
            let (tx, rx) = oneshot::channel();
            tokio::spawn(async move {
                let outcome = match reaped.await {
                    Ok(status) => ExitOutcome {
                        code: Some(status.code()),
                        message: describe_exit(status),
                    },
                    Err(_) => ExitOutcome {
                        code: None,
                        message: "sandbox lost".to_string(),
                    },
                };
                let _ = tx.send(outcome);
            });
            rx
        } else {
            // Started by a runsc that did not pass it to us (should not
            // happen when we are a subreaper); watch it as an adopted one.
            self.adopt(&spec.container_id, pid)
        };
        Ok(Launched { pid, exit })
    }

    /// `runsc --version` of the binary at `path`, cached by mtime.
    pub(super) fn version_of(&self, path: &Path) -> Result<String, RuntimeError> {
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| RuntimeError::Unavailable(format!("{}: {e}", path.display())))?;
        let mut cache = self.version_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, t, v)) = cache.as_ref() {
            if p == path && *t == mtime {
                return Ok(v.clone());
            }
        }
        // Once per binary, a few milliseconds; bounded, so that a binary
        // that hangs cannot hold the caller's thread.
        let mut cmd = Command::new(path);
        cmd.args(VersionOpts.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let (mut child, exit) = self
            .reaper
            .spawn(&mut cmd)
            .map_err(|e| RuntimeError::Unavailable(format!("{} --version: {e}", path.display())))?;
        drop(exit);
        let stdout = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = String::new();
            if let Some(mut stdout) = stdout {
                let _ = stdout.read_to_string(&mut out);
            }
            let _ = tx.send(out);
        });
        let out = rx.recv_timeout(VERSION_TIMEOUT).map_err(|_| {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            RuntimeError::Unavailable(format!(
                "{} --version did not answer within {} s",
                path.display(),
                VERSION_TIMEOUT.as_secs()
            ))
        })?;
        let version = parse_version(&out);
        let Some(version) = version else {
            return Err(RuntimeError::Unavailable(format!(
                "{} --version printed no version ({})",
                path.display(),
                out.trim()
            )));
        };
        *cache = Some((path.to_path_buf(), mtime, version.clone()));
        Ok(version)
    }
}

/// Runs `cmd` in a private mount namespace with a tmpfs over
/// `/proc/sys/net`. This runsc refuses `--network=sandbox` when it thinks
/// it runs in the host's network namespace, and it decides that by finding
/// `/proc/sys/net/core/rmem_default`, which every namespace has on newer
/// kernels; hiding it (only it: the sentry reads other `/proc/sys` files)
/// lets the sandbox start in the actor's namespace. The sandbox and gofer
/// inherit the namespace; nothing of the host's mounts changes.
fn mask_proc_sys_net(cmd: &mut Command) {
    // SAFETY: only system calls run between fork and exec (unshare and
    // mount, with static strings: nothing allocates).
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let none = c"none".as_ptr();
            if libc::mount(
                none,
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::mount(
                none,
                c"/proc/sys/net".as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `runsc wait` for an adopted sandbox; `None` when it gave no exit
/// status. The waiter is registered in `waiters` while it runs, and dies
/// with the daemon (a parent-death signal; what a kill -9 leaves anyway,
/// the next start ends by its marks).
pub(super) async fn wait_adopted(
    reaper: &Reaper,
    waiters: &Mutex<HashSet<i32>>,
    cmd: &mut Command,
) -> Option<ExitOutcome> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let parent = nix::unistd::getpid();
    // SAFETY: only async-signal-safe system calls (prctl, getppid) run
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The daemon died before the signal was armed.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("the daemon is gone"));
            }
            Ok(())
        });
    }
    let (mut child, exit) = reaper.spawn(cmd).ok()?;
    let waiter = child.id() as i32;
    lock(waiters).insert(waiter);
    let mut out = Vec::new();
    if let Some(Ok(mut stdout)) = child.stdout.take().map(pipe_reader) {
        let _ = stdout.read_to_end(&mut out).await;
    }
    let _ = exit.await;
    lock(waiters).remove(&waiter);
    parse_wait(&out)
}

fn pipe_reader<F: Into<std::os::fd::OwnedFd>>(
    fd: F,
) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd.into())
}

fn open_log(path: &Path) -> Result<File, RuntimeError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(RuntimeError::io(format!("opening {}", path.display())))
}

/// The last bytes appended to `path` after `from`, for an error message.
fn read_tail(path: &Path, from: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(from);
    let start = from.max(len.saturating_sub(OUTPUT_TAIL as u64));
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_ok() {
        let _ = file.take(OUTPUT_TAIL as u64).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).trim().to_string()
}

fn tail(text: &str) -> String {
    if text.len() <= OUTPUT_TAIL {
        return text.to_string();
    }
    let mut start = text.len() - OUTPUT_TAIL;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runsc::args::{DeleteOpts, StateOpts};

    fn config() -> RunscConfig {
        RunscConfig {
            path: None,
            root: PathBuf::from("/s/runsc"),
            platform: "ptrace".into(),
            network: "none".into(),
            overlay: "root:memory".into(),
            timeout: Duration::from_secs(300),
            freezer: None,
        }
    }

    fn argv(cmd: &Command) -> Vec<String> {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_command_has_the_global_flags_and_the_marks() {
        let args = StateOpts {
            container_id: "a_1.f00d",
        }
        .args();
        let cmd = config().command(Path::new("/usr/bin/runsc"), &args, false);
        assert_eq!(
            argv(&cmd),
            [
                "/usr/bin/runsc",
                "--root=/s/runsc",
                "--platform=ptrace",
                "--network=none",
                "--overlay2=root:memory",
                "state",
                "a_1.f00d"
            ]
        );
        let env: Vec<(String, String)> = cmd
            .get_envs()
            .map(|(k, v)| {
                let v = v.map(|v| v.to_string_lossy().into_owned());
                (k.to_string_lossy().into_owned(), v.unwrap_or_default())
            })
            .collect();
        assert_eq!(
            env,
            [
                (MARK_OP.to_string(), "state".to_string()),
                (MARK_ROOT.to_string(), "/s/runsc".to_string())
            ]
        );
    }

    #[test]
    fn an_idle_command_runs_under_nice() {
        let args = DeleteOpts {
            force: true,
            container_id: "a_1.f00d",
        }
        .args();
        let cmd = config().command(Path::new("/usr/bin/runsc"), &args, true);
        assert_eq!(
            argv(&cmd),
            [
                "nice",
                "-n",
                "19",
                "/usr/bin/runsc",
                "--root=/s/runsc",
                "--platform=ptrace",
                "--network=none",
                "--overlay2=root:memory",
                "delete",
                "--force",
                "a_1.f00d"
            ]
        );
        assert!(cmd
            .get_envs()
            .any(|(k, v)| k == MARK_OP && v == Some("delete".as_ref())));
    }

    #[test]
    fn long_output_keeps_its_tail() {
        let long = "é".repeat(3000);
        let t = tail(&long);
        assert!(t.len() <= OUTPUT_TAIL + 4);
        assert!(t.starts_with('…'));
    }
}
