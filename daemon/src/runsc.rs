//! The runsc driver: every runsc invocation of the daemon goes through here
//! (DESIGN §8). It builds the argument lists, runs them under the one
//! [`Reaper`], parses `state`/`list` JSON and turns failures into errors that
//! carry the exit status and what runsc printed.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use crate::metrics::{Metrics, OpLabels};
use crate::reaper::{is_our_child, ExitStatus, Reaper};

/// Errors of the runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// runsc is not installed where configured or on PATH.
    #[error("runsc is not available: {0}")]
    Unavailable(String),
    /// runsc could not be started.
    #[error("could not start runsc {op}: {source}")]
    Spawn {
        /// The subcommand.
        op: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
    /// runsc ran and failed.
    #[error("runsc {op} failed ({status}): {output}")]
    Failed {
        /// The subcommand.
        op: &'static str,
        /// How it ended.
        status: ExitStatus,
        /// The tail of what it printed.
        output: String,
    },
    /// runsc did not finish in time and was killed.
    #[error("runsc {op} did not finish within {secs} s and was killed")]
    Timeout {
        /// The subcommand.
        op: &'static str,
        /// The limit.
        secs: u64,
    },
    /// runsc printed something we could not parse.
    #[error("could not parse the output of runsc {op}: {detail}")]
    Parse {
        /// The subcommand.
        op: &'static str,
        /// Parser message.
        detail: String,
    },
    /// Local I/O around a runsc call (log or pid files).
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl RuntimeError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let context = context.into();
        move |source| RuntimeError::Io { context, source }
    }
}

/// `runsc state` / `runsc list --format=json` for one container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerState {
    /// The runsc container id.
    pub id: String,
    /// `created`, `running`, `stopped`, `paused`.
    pub status: String,
    /// Sandbox pid (-1 or 0 when none).
    #[serde(default)]
    pub pid: i32,
    /// Bundle directory.
    #[serde(default)]
    pub bundle: String,
}

impl ContainerState {
    /// True when the sandbox runs.
    pub fn is_running(&self) -> bool {
        self.status == "running" && self.pid > 0
    }
}

/// How a sandbox ended, as far as we could learn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitOutcome {
    /// Exit code (128+n for a signal); `None` when it could not be learned.
    pub code: Option<i32>,
    /// Human description.
    pub message: String,
}

/// A sandbox that `run`/`restore` started.
#[derive(Debug)]
pub struct Launched {
    /// Host pid of the sandbox process.
    pub pid: i32,
    /// Resolves when the sandbox ends.
    pub exit: oneshot::Receiver<ExitOutcome>,
}

/// What `run` and `restore` need.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// runsc container id (one per incarnation of an actor).
    pub container_id: String,
    /// Bundle directory holding config.json.
    pub bundle: PathBuf,
    /// The actor's log file: the sandbox's stdout and stderr (O_APPEND).
    pub log_path: PathBuf,
}

/// Environment variable that every runsc command of the daemon carries:
/// the runsc root it works on. With [`MARK_OP`] it lets a daemon find the
/// commands a previous one left running (whatever binary or wrapper script
/// `runsc.path` names); runsc does not pass it on to sandboxes or gofers.
pub(crate) const MARK_ROOT: &str = "ATELET_RUNSC_ROOT";
/// Environment variable naming the runsc subcommand a process runs for
/// the daemon (`checkpoint`, `wait`, …); see [`MARK_ROOT`].
pub(crate) const MARK_OP: &str = "ATELET_RUNSC_OP";

/// Settings of the driver.
#[derive(Debug, Clone)]
pub struct RunscConfig {
    /// Explicit binary; otherwise `runsc` is looked up on PATH at each call.
    pub path: Option<PathBuf>,
    /// `--root`: where runsc keeps container state.
    pub root: PathBuf,
    /// `--platform` (ptrace here; KVM hangs under nested virtualisation).
    pub platform: String,
    /// `--network`.
    pub network: String,
    /// `--overlay2`; keeps each actor's writes out of the shared rootfs.
    pub overlay: String,
    /// Kill a runsc command that takes longer than this.
    pub timeout: Duration,
}

impl RunscConfig {
    /// The binary to run: the configured one, else `runsc` on PATH (looked
    /// up at each call, so that installing runsc is enough).
    fn binary(&self) -> Result<PathBuf, RuntimeError> {
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

    /// A runsc command with the global flags; `idle` runs it at the lowest
    /// CPU priority (through `nice`), for cleanup that must not slow a
    /// lifecycle step beside it.
    fn command(&self, binary: &Path, args: &[&str], idle: bool) -> Command {
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
        let op = args.first().copied().unwrap_or_default();
        cmd.env(MARK_ROOT, &self.root)
            .env(MARK_OP, op)
            .arg(format!("--root={}", self.root.display()))
            .arg(format!("--platform={}", self.platform))
            .arg(format!("--network={}", self.network))
            .arg(format!("--overlay2={}", self.overlay))
            .args(args)
            .stdin(Stdio::null())
            // Own process group: a Ctrl-C meant for the daemon's terminal
            // must not reach the sandboxes.
            .process_group(0);
        cmd
    }
}

/// The runtime interface the actor service needs; [`Runsc`] is the real
/// one, and unit tests of the state machine use a fake.
pub trait Runtime: Send + Sync + 'static {
    /// Path and version of the runtime, or why it is unusable.
    fn info(&self) -> atelet_api::RuntimeInfo;
    /// The runtime's version, or [`RuntimeError::Unavailable`]; called before
    /// each lifecycle step so that a binary removed at run time is noticed.
    fn ensure_available(&self) -> Result<String, RuntimeError>;
    /// `runsc run --detach`.
    fn run(
        &self,
        spec: &LaunchSpec,
    ) -> impl std::future::Future<Output = Result<Launched, RuntimeError>> + Send;
    /// `runsc restore --detach` from a checkpoint directory.
    fn restore(
        &self,
        spec: &LaunchSpec,
        image_dir: &Path,
    ) -> impl std::future::Future<Output = Result<Launched, RuntimeError>> + Send;
    /// `runsc checkpoint`: writes `checkpoint.img` into `image_dir`; the sandbox stops.
    fn checkpoint(
        &self,
        container_id: &str,
        image_dir: &Path,
    ) -> impl std::future::Future<Output = Result<(), RuntimeError>> + Send;
    /// `runsc delete [--force]`; a container that does not exist is not an error.
    fn delete(
        &self,
        container_id: &str,
        force: bool,
    ) -> impl std::future::Future<Output = Result<(), RuntimeError>> + Send;
    /// Removes what is left of a sandbox that has stopped, in the
    /// background and at low priority (`runsc delete --force`).
    fn discard(
        &self,
        container_id: &str,
    ) -> impl std::future::Future<Output = Result<(), RuntimeError>> + Send;
    /// `runsc state`; `None` when the container does not exist.
    fn state(
        &self,
        container_id: &str,
    ) -> impl std::future::Future<Output = Result<Option<ContainerState>, RuntimeError>> + Send;
    /// `runsc list`.
    fn list(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<ContainerState>, RuntimeError>> + Send;
    /// Watches a sandbox this process did not start (found after a restart).
    fn adopt(&self, container_id: &str, pid: i32) -> oneshot::Receiver<ExitOutcome>;
    /// `runsc usage`: bytes of memory the sandbox's application uses, an
    /// upper bound of its (compressed) checkpoint image.
    fn usage(
        &self,
        container_id: &str,
    ) -> impl std::future::Future<Output = Result<u64, RuntimeError>> + Send;
    /// Waits (bounded) until runsc commands that a previous daemon left
    /// running under our root have finished, so that recovery reads a
    /// settled state. Returns how many there were.
    fn settle(&self) -> impl std::future::Future<Output = usize> + Send;
    /// Waits (up to `limit`) for the sandbox process `pid`, which this
    /// daemon may not be the parent of, to end; true when it has.
    fn wait_gone(
        &self,
        pid: i32,
        limit: Duration,
    ) -> impl std::future::Future<Output = bool> + Send;
    /// Ends the helper processes (the waiters of adopted sandboxes) that
    /// must not outlive the daemon; sandboxes keep running.
    fn shutdown(&self) {}
}

/// The real runtime: runsc on this host.
#[derive(Debug)]
pub struct Runsc {
    config: RunscConfig,
    reaper: Reaper,
    metrics: Arc<Metrics>,
    /// (path, mtime, version) of the last binary probed.
    version_cache: Mutex<Option<(PathBuf, SystemTime, String)>>,
    /// Pids of the `runsc wait` processes watching adopted sandboxes: at
    /// most one per sandbox, ended by [`Runtime::shutdown`].
    waiters: Arc<Mutex<HashSet<i32>>>,
}

/// How long `runsc --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of runsc output kept in an error message.
const OUTPUT_TAIL: usize = 2048;

impl Runsc {
    /// A driver for `config`; nothing is run yet.
    pub fn new(config: RunscConfig, reaper: Reaper, metrics: Arc<Metrics>) -> Runsc {
        Runsc {
            config,
            reaper,
            metrics,
            version_cache: Mutex::new(None),
            waiters: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The binary to run: the configured one, else `runsc` on PATH.
    fn binary(&self) -> Result<PathBuf, RuntimeError> {
        self.config.binary()
    }

    fn command(&self, binary: &Path, args: &[&str]) -> Command {
        self.config.command(binary, args, false)
    }

    /// Logs the beginning and the end of a runsc step (tests check from
    /// these lines that one actor's steps never overlap) and counts failures.
    async fn logged<T>(
        &self,
        op: &'static str,
        container: &str,
        step: impl std::future::Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        let t0 = std::time::Instant::now();
        tracing::debug!(op, container, "runsc begin");
        let res = step.await;
        tracing::debug!(
            op,
            container,
            ok = res.is_ok(),
            duration_ms = t0.elapsed().as_secs_f64() * 1000.0,
            "runsc end"
        );
        if let Err(
            RuntimeError::Failed { .. } | RuntimeError::Timeout { .. } | RuntimeError::Spawn { .. },
        ) = &res
        {
            self.metrics
                .runsc_failures
                .get_or_create(&OpLabels { op })
                .inc();
        }
        res
    }

    /// Runs a short runsc command and captures its output.
    async fn output(&self, op: &'static str, args: &[&str]) -> Result<Vec<u8>, RuntimeError> {
        let container = args.last().copied().unwrap_or("");
        self.logged(op, container, self.output_inner(op, args, false))
            .await
    }

    /// `runsc delete`; a container that does not exist is not an error.
    /// `op` names it in the log ("delete", or "discard" for background
    /// cleanup at idle priority).
    async fn remove(
        &self,
        op: &'static str,
        container_id: &str,
        force: bool,
        idle: bool,
    ) -> Result<(), RuntimeError> {
        let args: &[&str] = if force {
            &["delete", "--force", container_id]
        } else {
            &["delete", container_id]
        };
        let res = self
            .logged(op, container_id, self.output_inner(op, args, idle))
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(RuntimeError::Failed { output, .. }) if is_not_found(&output) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn output_inner(
        &self,
        op: &'static str,
        args: &[&str],
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

    /// `run`/`restore` with `--detach`: the sandbox inherits stdout/stderr,
    /// so they go to the actor's log (never a pipe, which would never reach
    /// EOF), and runsc's own complaints are read back from the log's tail.
    async fn launch(
        &self,
        op: &'static str,
        spec: &LaunchSpec,
        extra: &[&str],
    ) -> Result<Launched, RuntimeError> {
        self.logged(op, &spec.container_id, self.launch_inner(op, spec, extra))
            .await
    }

    async fn launch_inner(
        &self,
        op: &'static str,
        spec: &LaunchSpec,
        extra: &[&str],
    ) -> Result<Launched, RuntimeError> {
        let binary = self.binary()?;
        let log = open_log(&spec.log_path)?;
        let log_start = log
            .metadata()
            .map(|m| m.len())
            .map_err(RuntimeError::io("actor log"))?;
        let pid_file = spec.bundle.join(format!("{}.pid", spec.container_id));
        let _ = std::fs::remove_file(&pid_file);
        let bundle = spec.bundle.to_string_lossy().into_owned();
        let pid_arg = pid_file.to_string_lossy().into_owned();
        let mut args = vec![op, "--detach", "--bundle", &bundle, "--pid-file", &pid_arg];
        args.extend_from_slice(extra);
        args.push(&spec.container_id);
        let mut cmd = self.command(&binary, &args);
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
    fn version_of(&self, path: &Path) -> Result<String, RuntimeError> {
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
        cmd.arg("--version")
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

impl Runtime for Runsc {
    fn info(&self) -> atelet_api::RuntimeInfo {
        let configured = self
            .config
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "runsc".to_string());
        match self.binary().and_then(|p| {
            let v = self.version_of(&p)?;
            Ok((p, v))
        }) {
            Ok((path, version)) => atelet_api::RuntimeInfo {
                path: path.display().to_string(),
                version: Some(version),
                error: None,
            },
            Err(e) => atelet_api::RuntimeInfo {
                path: configured,
                version: None,
                error: Some(e.to_string()),
            },
        }
    }

    fn ensure_available(&self) -> Result<String, RuntimeError> {
        let path = self.binary()?;
        self.version_of(&path)
    }

    async fn run(&self, spec: &LaunchSpec) -> Result<Launched, RuntimeError> {
        self.launch("run", spec, &[]).await
    }

    async fn restore(&self, spec: &LaunchSpec, image_dir: &Path) -> Result<Launched, RuntimeError> {
        let image = format!("--image-path={}", image_dir.display());
        self.launch("restore", spec, &[&image]).await
    }

    async fn checkpoint(&self, container_id: &str, image_dir: &Path) -> Result<(), RuntimeError> {
        let image = format!("--image-path={}", image_dir.display());
        self.output("checkpoint", &["checkpoint", &image, container_id])
            .await
            .map(|_| ())
    }

    async fn delete(&self, container_id: &str, force: bool) -> Result<(), RuntimeError> {
        self.remove("delete", container_id, force, false).await
    }

    async fn discard(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.remove("discard", container_id, true, true).await
    }

    async fn state(&self, container_id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        match self.output("state", &["state", container_id]).await {
            Ok(out) => serde_json::from_slice(&out)
                .map(Some)
                .map_err(|e| RuntimeError::Parse {
                    op: "state",
                    detail: e.to_string(),
                }),
            Err(RuntimeError::Failed { output, .. }) if is_not_found(&output) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        let out = self.output("list", &["list", "--format=json"]).await?;
        let text = String::from_utf8_lossy(&out);
        if text.trim().is_empty() || text.trim() == "null" {
            return Ok(Vec::new());
        }
        serde_json::from_str(&text).map_err(|e| RuntimeError::Parse {
            op: "list",
            detail: e.to_string(),
        })
    }

    async fn usage(&self, container_id: &str) -> Result<u64, RuntimeError> {
        #[derive(Deserialize)]
        struct Usage {
            #[serde(rename = "Total")]
            total: u64,
        }
        let out = self.output("usage", &["usage", container_id]).await?;
        serde_json::from_slice::<Usage>(&out)
            .map(|u| u.total)
            .map_err(|e| RuntimeError::Parse {
                op: "usage",
                detail: e.to_string(),
            })
    }

    async fn settle(&self) -> usize {
        // Waiters left by a daemon that died without ending them (kill -9)
        // would watch for ever beside the new ones: at most one per sandbox.
        let ended = end_stale_waiters(&self.config.root);
        if ended > 0 {
            tracing::warn!(
                ended,
                "ended runsc wait processes left by a previous daemon"
            );
        }
        let root = format!("--root={}", self.config.root.display());
        let deadline = std::time::Instant::now() + self.config.timeout;
        let mut first = None;
        loop {
            let stray = stray_commands(&self.config.root, &root);
            if first.is_none() {
                first = Some(stray.len());
                for (pid, cmd) in &stray {
                    tracing::warn!(pid, command = %cmd, "waiting for a runsc command left by a previous daemon");
                }
            }
            if stray.is_empty() || std::time::Instant::now() > deadline {
                return first.unwrap_or(0);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn adopt(&self, container_id: &str, pid: i32) -> oneshot::Receiver<ExitOutcome> {
        // A sandbox from before a restart is not our child: `runsc wait`
        // (which asks the sandbox itself) reports its exit status. When
        // that fails while the sandbox still runs (runsc missing for a
        // while, say), it is asked again: an unknown outcome must never
        // read as an exit, or the daemon would remove a live sandbox.
        let (tx, rx) = oneshot::channel();
        let container_id = container_id.to_string();
        let reaper = self.reaper.clone();
        let config = self.config.clone();
        let waiters = self.waiters.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(binary) = config.binary() {
                    let mut cmd = config.command(&binary, &["wait", &container_id], false);
                    if let Some(outcome) = wait_adopted(&reaper, &waiters, &mut cmd).await {
                        let _ = tx.send(outcome);
                        return;
                    }
                }
                if !pid_alive(pid) {
                    // `runsc wait` reads the status from the sandbox, which
                    // reports every exit of its container; a sandbox that
                    // vanished without one was killed by a signal, which
                    // only its parent (no longer us) could read. Recorded
                    // as a kill (137), as for a sandbox we started.
                    let _ = tx.send(ExitOutcome {
                        code: Some(ExitStatus::Signaled(9).code()),
                        message: format!(
                            "sandbox (pid {pid}) killed: it ended without an exit status (after a daemon restart the signal cannot be read; recorded as SIGKILL)"
                        ),
                    });
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        rx
    }

    async fn wait_gone(&self, pid: i32, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while pid_alive(pid) {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    fn shutdown(&self) {
        let pids: Vec<i32> = lock(&self.waiters).drain().collect();
        for pid in &pids {
            end_process_group(*pid);
        }
        if !pids.is_empty() {
            tracing::info!(waiters = pids.len(), "ended the runsc wait processes");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `runsc wait` for an adopted sandbox; `None` when it gave no exit
/// status. The waiter is registered in `waiters` while it runs, and dies
/// with the daemon (a parent-death signal; what a kill -9 leaves anyway,
/// the next start ends by its marks).
async fn wait_adopted(
    reaper: &Reaper,
    waiters: &Mutex<HashSet<i32>>,
    cmd: &mut Command,
) -> Option<ExitOutcome> {
    #[derive(Deserialize)]
    struct WaitOutput {
        #[serde(rename = "exitStatus")]
        exit_status: i32,
    }
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
    // runsc already folds a signal into 128+n.
    let w = serde_json::from_slice::<WaitOutput>(&out).ok()?;
    Some(ExitOutcome {
        code: Some(w.exit_status),
        message: describe_exit(ExitStatus::Exited(w.exit_status)),
    })
}

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
fn stray_commands(root: &Path, root_flag: &str) -> Vec<(i32, String)> {
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
fn end_stale_waiters(root: &Path) -> usize {
    let stale: Vec<i32> = foreign_pids()
        .into_iter()
        .filter(|pid| marked_op(*pid, root).as_deref() == Some("wait"))
        .collect();
    for pid in &stale {
        end_process_group(*pid);
    }
    stale.len()
}

/// SIGKILL to `pid` and, when it leads its own process group (every runsc
/// command the daemon starts does), to the whole group: a wrapper script
/// and the runsc it runs go together.
fn end_process_group(pid: i32) {
    use nix::sys::signal::{kill, killpg, Signal};
    let p = nix::unistd::Pid::from_raw(pid);
    if nix::unistd::getpgid(Some(p)) == Ok(p) {
        let _ = killpg(p, Signal::SIGKILL);
    } else {
        let _ = kill(p, Signal::SIGKILL);
    }
}

/// What an operator reads in statusMessage when a sandbox ends.
pub fn describe_exit(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(0) => "exited with status 0".to_string(),
        ExitStatus::Exited(c) if c > 128 => {
            format!("exited with status {c} (killed by signal {})", c - 128)
        }
        ExitStatus::Exited(c) => format!("exited with status {c}"),
        ExitStatus::Signaled(s) => format!("sandbox killed by signal {s}"),
    }
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

fn is_not_found(output: &str) -> bool {
    output.contains("does not exist") || output.contains("not found")
}

/// `runsc version 0.0~20221219.0` → `0.0~20221219.0`.
pub fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("runsc version "))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
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

    #[test]
    fn version_is_parsed_from_the_first_line() {
        assert_eq!(
            parse_version("runsc version 0.0~20221219.0\nspec: 1.0.2-dev\n").as_deref(),
            Some("0.0~20221219.0")
        );
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn state_json_is_parsed() {
        let s: ContainerState = serde_json::from_str(
            r#"{"ociVersion":"1.0.2-dev","id":"c1","status":"running","pid":3024,"bundle":"/b"}"#,
        )
        .unwrap();
        assert!(s.is_running());
        let s: ContainerState =
            serde_json::from_str(r#"{"id":"c1","status":"stopped","pid":-1}"#).unwrap();
        assert!(!s.is_running());
    }

    #[test]
    fn exits_are_described_for_operators() {
        assert_eq!(describe_exit(ExitStatus::Exited(3)), "exited with status 3");
        assert_eq!(
            describe_exit(ExitStatus::Exited(137)),
            "exited with status 137 (killed by signal 9)"
        );
    }

    #[test]
    fn long_output_keeps_its_tail() {
        let long = "é".repeat(3000);
        let t = tail(&long);
        assert!(t.len() <= OUTPUT_TAIL + 4);
        assert!(t.starts_with('…'));
    }
}
