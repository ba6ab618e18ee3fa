//! The runsc driver: every runsc invocation of the daemon goes through here.
//! It builds the argument lists, runs them under the one [`Reaper`], parses
//! `state`/`list` JSON and turns failures into errors that carry the exit
//! status and what runsc printed.
//!
//! - `args.rs`: one option struct per runsc command, producing its argv;
//! - `error.rs`: what can go wrong;
//! - `state.rs`: what runsc reports (container state, exits, versions);
//! - `process.rs`: spawning runsc, capturing its output, timeouts;
//! - `host.rs`: what `/proc` shows of runsc processes (the environment
//!   marks, commands a previous daemon left running).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use crate::metrics::{Metrics, OpLabels};
use crate::reaper::{ExitStatus, Reaper};

mod args;
mod error;
mod exec;
mod host;
mod process;
mod state;

pub(crate) use error::RuntimeError;
pub(crate) use exec::{read_pid_file, ExecChild, ExecSpec};
pub(crate) use host::{end_process_group, pid_alive};
pub(crate) use state::{describe_exit, parse_version, ContainerState, ExitOutcome};

use args::{
    CheckpointOpts, DeleteOpts, FreezeOpts, ListOpts, RunscArgs, StateOpts, UsageOpts, WaitOpts,
};
use host::{end_stale_waiters, stray_commands};
use process::{lock, wait_adopted};
use state::{parse_list, parse_state, parse_usage};

/// A sandbox that `run`/`restore` started.
#[derive(Debug)]
pub(crate) struct Launched {
    /// Host pid of the sandbox process.
    pub pid: i32,
    /// Resolves when the sandbox ends.
    pub exit: oneshot::Receiver<ExitOutcome>,
}

/// What `run` and `restore` need.
#[derive(Debug, Clone)]
pub(crate) struct LaunchSpec {
    /// runsc container id (one per incarnation of an actor).
    pub container_id: String,
    /// Bundle directory holding config.json.
    pub bundle: PathBuf,
    /// The actor's log file: the sandbox's stdout and stderr (O_APPEND).
    pub log_path: PathBuf,
    /// The sandbox gets gVisor's own network stack (`--network=sandbox`)
    /// on the interfaces of the namespace its bundle names, instead of the
    /// configured `--network`.
    pub sandbox_network: bool,
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
pub(crate) struct RunscConfig {
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
    /// The freezer cgroup the sandboxes' own cgroups are made in (cgroup
    /// v1, `<root>/freezer/<parent>`); `None` where there is none. See
    /// [`Runtime::freeze`].
    pub freezer: Option<PathBuf>,
}

/// The runtime interface the actor service needs; [`Runsc`] is the real
/// one, and unit tests of the state machine use a fake.
pub(crate) trait Runtime: Send + Sync + 'static {
    /// Path and version of the runtime, or why it is unusable.
    fn info(&self) -> atelet_api::RuntimeInfo;
    /// The flags a checkpoint depends on, which a restore (here or on
    /// another node) must repeat: name → value.
    fn checkpoint_flags(&self) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::new()
    }
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
    /// `runsc pause` (`freeze`) or `runsc resume`: the sandbox stops or
    /// goes on using CPU; its memory stays where it is. This runsc does not
    /// stop a *restored* sandbox on `pause` (seen here: its counter went
    /// on), so the sandbox's freezer cgroup is frozen too, after the pause,
    /// and thawed before the resume; every other runsc command on the
    /// container thaws it first, since a frozen sandbox answers nothing.
    fn freeze(
        &self,
        container_id: &str,
        freeze: bool,
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
    /// `runsc exec`: starts a process in a running container and returns
    /// its stdio (or terminal) and exit; see [`ExecChild`].
    fn exec(
        &self,
        spec: &ExecSpec,
    ) -> impl std::future::Future<Output = Result<ExecChild, RuntimeError>> + Send;
    /// `runsc kill --pid`: SIGKILL to one process of a container, by its
    /// pid inside the sandbox (how an exec is ended: killing its `runsc
    /// exec` client leaves the process running).
    fn kill_process(
        &self,
        container_id: &str,
        pid: i32,
    ) -> impl std::future::Future<Output = Result<(), RuntimeError>> + Send;
    /// Ends the `runsc exec` clients a previous daemon left running on
    /// this root (found by their marks); returns how many.
    fn end_stale_execs(&self) -> usize {
        0
    }
}

/// How long a freeze or thaw of a sandbox's cgroup may take.
const FREEZE_WAIT: Duration = Duration::from_secs(2);

/// The real runtime: runsc on this host.
#[derive(Debug)]
pub(crate) struct Runsc {
    config: RunscConfig,
    reaper: Reaper,
    metrics: Arc<Metrics>,
    /// (path, mtime, version) of the last binary probed.
    version_cache: Mutex<Option<(PathBuf, SystemTime, String)>>,
    /// Pids of the `runsc wait` processes watching adopted sandboxes: at
    /// most one per sandbox, ended by [`Runtime::shutdown`].
    waiters: Arc<Mutex<HashSet<i32>>>,
}

impl Runsc {
    /// A driver for `config`; nothing is run yet.
    pub(crate) fn new(config: RunscConfig, reaper: Reaper, metrics: Arc<Metrics>) -> Runsc {
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
    /// The log names the last argument as the container (the container
    /// id, for the commands that take one).
    async fn output(
        &self,
        op: &'static str,
        args: &dyn RunscArgs,
    ) -> Result<Vec<u8>, RuntimeError> {
        let args = args.args();
        let container = args.last().map(String::as_str).unwrap_or("");
        self.logged(op, container, self.output_inner(op, &args, false))
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
        let args = DeleteOpts {
            force,
            container_id,
        }
        .args();
        let res = self
            .logged(op, container_id, self.output_inner(op, &args, idle))
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            // This runsc removes a paused container but then panics on its
            // status change ("invalid state transition: paused =>
            // stopped", exit 2): what counts is whether it is gone.
            Err(e) if matches!(self.state(container_id).await, Ok(None)) => {
                tracing::debug!(container = container_id, error = %e, "runsc delete failed, but the container is gone");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Freezes or thaws the container's freezer cgroup and waits until the
    /// kernel says it is done; nothing to do where there is no freezer
    /// (or no cgroup for the container: it was made without one).
    async fn set_frozen(&self, container_id: &str, frozen: bool) -> Result<(), RuntimeError> {
        let Some(parent) = &self.config.freezer else {
            return Ok(());
        };
        let file = parent.join(container_id).join("freezer.state");
        let want = if frozen { "FROZEN" } else { "THAWED" };
        // No cgroup, or already so (every suspend and delete of a running
        // sandbox asks for a thaw): one read, nothing written.
        match std::fs::read_to_string(&file) {
            Err(_) => return Ok(()),
            Ok(state) if state.trim() == want => return Ok(()),
            Ok(_) => {}
        }
        let io = |e: std::io::Error| RuntimeError::Io {
            context: format!("writing {want} to {}", file.display()),
            source: e,
        };
        std::fs::write(&file, want).map_err(io)?;
        // FREEZING until every task has stopped.
        let deadline = std::time::Instant::now() + FREEZE_WAIT;
        loop {
            let state = std::fs::read_to_string(&file).map_err(io)?;
            if state.trim() == want {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                // Left as it was asked not to be: undo a half freeze.
                let _ = std::fs::write(&file, "THAWED");
                return Err(RuntimeError::Io {
                    context: format!("{}", file.display()),
                    source: std::io::Error::other(format!(
                        "still {} after {} ms",
                        state.trim(),
                        FREEZE_WAIT.as_millis()
                    )),
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Thaws the container before a command that needs its sandbox to
    /// answer (or to die: frozen tasks do not); a failure is logged, and
    /// the command then says what it finds.
    async fn thaw(&self, container_id: &str) {
        if let Err(e) = self.set_frozen(container_id, false).await {
            tracing::warn!(container = container_id, error = %e, "thawing the sandbox");
        }
    }

    /// `run`/`restore` with `--detach`: the sandbox inherits stdout/stderr,
    /// so they go to the actor's log (never a pipe, which would never reach
    /// EOF), and runsc's own complaints are read back from the log's tail.
    async fn launch(
        &self,
        spec: &LaunchSpec,
        image_path: Option<&Path>,
    ) -> Result<Launched, RuntimeError> {
        let op = if image_path.is_some() {
            "restore"
        } else {
            "run"
        };
        self.logged(
            op,
            &spec.container_id,
            self.launch_inner(op, spec, image_path),
        )
        .await
    }
}

impl Runtime for Runsc {
    fn checkpoint_flags(&self) -> std::collections::BTreeMap<String, String> {
        [
            ("platform", &self.config.platform),
            ("overlay2", &self.config.overlay),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }

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
        self.launch(spec, None).await
    }

    async fn restore(&self, spec: &LaunchSpec, image_dir: &Path) -> Result<Launched, RuntimeError> {
        self.launch(spec, Some(image_dir)).await
    }

    async fn checkpoint(&self, container_id: &str, image_dir: &Path) -> Result<(), RuntimeError> {
        // A paused sandbox stays paused by runsc; only the cgroup thaws.
        self.set_frozen(container_id, false).await?;
        let checkpoint = CheckpointOpts {
            image_path: image_dir,
            container_id,
        };
        self.output("checkpoint", &checkpoint).await.map(|_| ())
    }

    async fn freeze(&self, container_id: &str, freeze: bool) -> Result<(), RuntimeError> {
        let op = if freeze { "pause" } else { "resume" };
        if !freeze {
            self.set_frozen(container_id, false).await?;
        }
        self.output(
            op,
            &FreezeOpts {
                freeze,
                container_id,
            },
        )
        .await?;
        if freeze {
            self.set_frozen(container_id, true).await?;
        }
        Ok(())
    }

    async fn delete(&self, container_id: &str, force: bool) -> Result<(), RuntimeError> {
        self.thaw(container_id).await;
        self.remove("delete", container_id, force, false).await
    }

    async fn discard(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.thaw(container_id).await;
        self.remove("discard", container_id, true, true).await
    }

    async fn state(&self, container_id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        match self.output("state", &StateOpts { container_id }).await {
            Ok(out) => parse_state(&out).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        let out = self.output("list", &ListOpts).await?;
        parse_list(&out)
    }

    async fn usage(&self, container_id: &str) -> Result<u64, RuntimeError> {
        // Asked of a paused actor before its suspend, which thaws it anyway.
        self.thaw(container_id).await;
        let out = self.output("usage", &UsageOpts { container_id }).await?;
        parse_usage(&out)
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
        let root = self.config.global().root_arg();
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
            let wait = WaitOpts {
                container_id: &container_id,
            }
            .args();
            loop {
                if let Ok(binary) = config.binary() {
                    let mut cmd = config.command(&binary, &wait, false);
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

    async fn exec(&self, spec: &ExecSpec) -> Result<ExecChild, RuntimeError> {
        self.exec_inner(spec).await
    }

    async fn kill_process(&self, container_id: &str, pid: i32) -> Result<(), RuntimeError> {
        self.kill_process_inner(container_id, pid).await
    }

    fn end_stale_execs(&self) -> usize {
        host::end_stale(&self.config.root, "exec")
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
