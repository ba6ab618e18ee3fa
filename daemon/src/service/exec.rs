//! Exec: a command run in a running actor's container through `runsc
//! exec` (README "Exec and copy"). The service offers a session (input
//! in, output and the exit out, a guard that kills the command when the
//! client goes); the HTTP layer only frames it.
//!
//! - The process is the container's own (its `config.json` process) with
//!   the request's command and overrides: the same capability sets, never
//!   more, and the node policy's say on root.
//! - Each actor runs at most `[limits] max_execs_per_actor` at once.
//! - Stop, delete and the sandbox's own end kill its execs; a suspend
//!   refuses (409, naming them) while any runs, or with `force` kills them
//!   first: a checkpoint is never taken with an exec session inside.
//! - What runsc does not do itself: killing the `runsc exec` client leaves
//!   the process running in the sandbox, so an exec is ended by its pid
//!   inside the sandbox; those pids are kept in `<state>/execs/` so that a
//!   daemon that starts after a crash ends what the last one left.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use atelet_api::{validate_exec, ExecRequest};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::*;
use crate::runsc::{end_process_group, read_pid_file, ExecChild, ExecSpec};

/// Default of `[limits] max_execs_per_actor`.
pub(crate) const DEFAULT_MAX_EXECS: usize = 8;

/// How long a suspend with `force` waits for the killed execs to end.
const FORCE_WAIT: Duration = Duration::from_secs(10);

/// How long an exec's client may take to end after its process was killed
/// before it is killed too.
const KILL_GRACE: Duration = Duration::from_secs(3);

/// After the exec's end, how long its output may pause before the rest
/// counts as read.
const DRAIN_IDLE: Duration = Duration::from_millis(50);

/// Bytes read from a stream at once.
const CHUNK: usize = 32 * 1024;

/// Longest command text in a log line or a message.
const SHOWN_COMMAND: usize = 200;

/// Input of a session.
#[derive(Debug)]
pub(crate) enum ExecInput {
    /// Bytes for stdin.
    Stdin(Bytes),
    /// End of stdin.
    CloseStdin,
    /// The terminal's new size (tty only).
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
}

/// Output of a session; [`ExecOutput::Exit`] comes last.
#[derive(Debug)]
pub(crate) enum ExecOutput {
    /// From stdout (or the terminal).
    Stdout(Bytes),
    /// From stderr.
    Stderr(Bytes),
    /// The end.
    Exit {
        /// The exit code (128 + n for signal n); `None` if unknown.
        code: Option<i32>,
        /// `timeoutSeconds` ran out.
        timed_out: bool,
    },
}

/// A running exec, as the caller of [`ActorService::exec`] holds it.
/// Dropping it (the client went away) kills the command.
#[derive(Debug)]
pub(crate) struct ExecSession {
    /// The exec's id (in the log and in messages).
    pub id: String,
    /// Input: stdin, its end, window sizes.
    pub input: mpsc::Sender<ExecInput>,
    /// Output, then the exit.
    pub output: mpsc::Receiver<ExecOutput>,
    /// Kills the command when dropped before it ended.
    pub hangup: HangUp,
}

/// Kills an exec when dropped, unless [`HangUp::disarm`]ed.
#[derive(Debug)]
pub(crate) struct HangUp {
    kill: Option<watch::Sender<bool>>,
}

impl HangUp {
    /// The command ended: nothing to kill.
    pub(crate) fn disarm(&mut self) {
        self.kill = None;
    }
}

impl Drop for HangUp {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(true);
        }
    }
}

/// One running exec in the registry.
#[derive(Debug)]
pub(super) struct ExecEntry {
    id: String,
    command: String,
    started: Instant,
    kill: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

impl ExecEntry {
    fn describe(&self) -> String {
        format!(
            "{} ({}, running {} s)",
            self.id,
            self.command,
            self.started.elapsed().as_secs()
        )
    }
}

/// The running execs of every actor.
#[derive(Debug, Default)]
pub(super) struct Execs {
    by_actor: std::sync::Mutex<HashMap<String, Vec<Arc<ExecEntry>>>>,
    seq: AtomicU64,
}

impl Execs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Arc<ExecEntry>>>> {
        self.by_actor.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn of(&self, actor: &str) -> Vec<Arc<ExecEntry>> {
        self.lock().get(actor).cloned().unwrap_or_default()
    }

    fn remove(&self, actor: &str, id: &str) {
        let mut map = self.lock();
        if let Some(list) = map.get_mut(actor) {
            list.retain(|e| e.id != id);
            if list.is_empty() {
                map.remove(actor);
            }
        }
    }
}

/// What the pump of one exec needs.
struct Pump {
    actor: String,
    container: String,
    id: String,
    command: String,
    user: String,
    child: ExecChild,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
    input: mpsc::Receiver<ExecInput>,
    output: mpsc::Sender<ExecOutput>,
    kill: watch::Receiver<bool>,
    done: watch::Sender<bool>,
    pid_file: PathBuf,
    process_file: PathBuf,
}

impl<R: Runtime> ActorService<R> {
    /// `POST /v1/actors/{id}/exec`: starts `req` in the actor's container.
    /// `interactive` (the upgraded stream) carries stdin and allows a tty;
    /// otherwise stdin is the request's own bytes and no tty is allowed.
    pub(crate) async fn exec(
        self: &Arc<Self>,
        id: &str,
        req: ExecRequest,
        interactive: bool,
    ) -> Result<ExecSession> {
        drop(self.begin_op()?);
        validate_actor_id(id)?;
        let valid = validate_exec(&req)?;
        if req.tty && !interactive {
            return Err(ValidationError::new(
                "tty",
                "a terminal needs the interactive stream (Connection: Upgrade, Upgrade: tcp)",
            )
            .into());
        }
        if interactive && valid.stdin.is_some() {
            return Err(ValidationError::new(
                "stdin",
                "the interactive stream carries stdin itself; leave this field out",
            )
            .into());
        }
        // The actor's lock: no lifecycle step runs between the status read
        // here and the exec's registration, so a stop or suspend that
        // follows sees it.
        let _lock = self.locks.lock(id).await;
        let rec = match self.record(id) {
            Ok(r) => r,
            Err(e) => {
                self.locks.forget(id);
                return Err(e);
            }
        };
        if rec.status != ActorStatus::Running {
            return Err(ServiceError::ExecRefused(format!(
                "cannot exec in actor {id}: it is {} (exec needs RUNNING{})",
                rec.status,
                match rec.status {
                    ActorStatus::Suspended | ActorStatus::Paused => "; resume it first",
                    ActorStatus::Stopped | ActorStatus::Created | ActorStatus::Failed =>
                        "; start it first",
                    _ => "; retry when its step has finished",
                }
            )));
        }
        let Some(container) = rec.container.as_ref().map(|c| c.id.clone()) else {
            return Err(ServiceError::Internal(format!(
                "actor {id} is RUNNING but has no container on record"
            )));
        };
        let running = self.execs.of(id);
        if running.len() >= self.max_execs {
            return Err(ServiceError::ExecRefused(format!(
                "actor {id} runs {} execs already, the most max_execs_per_actor ({}) allows: wait for one to end",
                running.len(),
                self.max_execs
            )));
        }
        self.runtime
            .ensure_available()
            .map_err(runtime_err("exec"))?;
        let bundle = self.bundles.dir(id).join("config.json");
        let mut process = container_process(&bundle)?;
        let uid = valid
            .user
            .map(|u| u.uid)
            .unwrap_or_else(|| process.user().uid());
        self.policy.check_exec_user(uid, valid.user.is_some())?;
        apply_request(&mut process, &req, valid.user)?;
        let user = format!("{}:{}", process.user().uid(), process.user().gid());

        let seq = self.execs.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let exec_id = format!("exec-{seq}");
        let dir = self.execs_dir.join(&container);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ServiceError::Internal(format!("creating {}: {e}", dir.display())))?;
        let process_file = dir.join(format!("{exec_id}.json"));
        let pid_file = dir.join(format!("{exec_id}.pid"));
        let json = serde_json::to_vec(&process)
            .map_err(|e| ServiceError::Internal(format!("encoding the exec's process: {e}")))?;
        std::fs::write(&process_file, json).map_err(|e| {
            ServiceError::Internal(format!("writing {}: {e}", process_file.display()))
        })?;
        // A short path of its own: socket paths are limited to 107 bytes.
        let console_socket = req.tty.then(|| self.execs_dir.join(format!("{seq}.sock")));
        let spec = ExecSpec {
            container_id: container.clone(),
            process_file: process_file.clone(),
            internal_pid_file: pid_file.clone(),
            console_socket,
        };
        let child = match self.runtime.exec(&spec).await {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&process_file);
                let _ = std::fs::remove_file(&pid_file);
                return Err(runtime_err(format!("exec in actor {id}"))(e));
            }
        };
        let command = shown_command(&req.command);
        let (kill_tx, kill_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let entry = Arc::new(ExecEntry {
            id: exec_id.clone(),
            command: command.clone(),
            started: Instant::now(),
            kill: kill_tx.clone(),
            done: done_rx,
        });
        self.execs
            .lock()
            .entry(id.to_string())
            .or_default()
            .push(entry);
        let (in_tx, in_rx) = mpsc::channel(16);
        let (out_tx, out_rx) = mpsc::channel(16);
        tracing::info!(actor = %id, exec = %exec_id, user = %user, command = %command, tty = req.tty, "exec started");
        let pump = Pump {
            actor: id.to_string(),
            container,
            id: exec_id.clone(),
            command,
            user,
            child,
            stdin: valid.stdin,
            timeout: req.timeout_seconds.map(Duration::from_secs),
            input: in_rx,
            output: out_tx,
            kill: kill_rx,
            done: done_tx,
            pid_file,
            process_file,
        };
        let svc = self.clone();
        tokio::spawn(async move { svc.pump(pump).await });
        Ok(ExecSession {
            id: exec_id,
            input: in_tx,
            output: out_rx,
            hangup: HangUp {
                kill: Some(kill_tx),
            },
        })
    }

    /// Moves one exec's input and output until it ends, kills it when
    /// asked (or when its time is up), then logs it and forgets it.
    async fn pump(self: Arc<Self>, p: Pump) {
        let Pump {
            actor,
            container,
            id,
            command,
            user,
            mut child,
            stdin,
            timeout,
            mut input,
            output,
            mut kill,
            done,
            pid_file,
            process_file,
        } = p;
        let t0 = Instant::now();
        let tty = child.console.is_some();
        let streams = Streams::new(&mut child);
        let (mut stdout, mut stderr, mut writer, console) = match streams {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(actor = %actor, exec = %id, error = %e, "exec stdio");
                (None, None, None, None)
            }
        };
        // The buffered mode's stdin: its bytes, then end of file; written
        // beside the reads below, so that a command that prints before it
        // reads cannot block on a full pipe.
        let mut close_when_written = stdin.is_some();
        let mut stdin_bytes = stdin.map(Bytes::from);
        // A channel whose sender is gone answers None at once, every
        // time: once it has, it is not polled again.
        let mut input_open = true;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut timed_out = false;
        let mut killed = false;
        let mut client_gone = false;
        let mut out_buf = vec![0u8; CHUNK];
        let mut err_buf = vec![0u8; CHUNK];
        let mut exit = child.exit;
        let status = loop {
            tokio::select! {
                status = &mut exit => break status.ok(),
                n = read_some(&mut stdout, &mut out_buf) => match n {
                    Some(n) => {
                        let chunk = Bytes::copy_from_slice(&out_buf[..n]);
                        if output.send(ExecOutput::Stdout(chunk)).await.is_err() {
                            client_gone = true;
                        }
                    }
                    None => stdout = None,
                },
                n = read_some(&mut stderr, &mut err_buf) => match n {
                    Some(n) => {
                        let chunk = Bytes::copy_from_slice(&err_buf[..n]);
                        if output.send(ExecOutput::Stderr(chunk)).await.is_err() {
                            client_gone = true;
                        }
                    }
                    None => stderr = None,
                },
                res = write_stdin(&mut writer, &mut stdin_bytes), if stdin_bytes.is_some() => {
                    if res.is_err() || stdin_bytes.as_ref().is_some_and(Bytes::is_empty) {
                        stdin_bytes = None;
                        if close_when_written {
                            close_when_written = false;
                            writer = None;
                        }
                    }
                }
                msg = input.recv(), if input_open && stdin_bytes.is_none() => match msg {
                    Some(ExecInput::Stdin(data)) => {
                        stdin_bytes = Some(data);
                    }
                    Some(ExecInput::CloseStdin) => {
                        if tty {
                            // End of file on a terminal is its EOF character.
                            stdin_bytes = Some(Bytes::from_static(&[4]));
                        } else {
                            writer = None;
                        }
                    }
                    Some(ExecInput::Resize { cols, rows }) => {
                        if let Some(fd) = &console {
                            set_window_size(fd, cols, rows);
                        }
                    }
                    None => {
                        // Input ended: a buffered exec's stdin is done; an
                        // interactive client that hung up is gone.
                        if !tty {
                            writer = None;
                        }
                        input_open = false;
                    }
                },
                changed = kill.changed(), if !killed => {
                    if changed.is_err() || *kill.borrow() {
                        killed = true;
                        client_gone = client_gone || changed.is_err() || output.is_closed();
                        self.end_exec(&container, &pid_file, child.pid).await;
                    }
                }
                () = sleep_until(deadline), if !timed_out && !killed => {
                    timed_out = true;
                    killed = true;
                    self.end_exec(&container, &pid_file, child.pid).await;
                }
            }
            if client_gone && !killed {
                killed = true;
                self.end_exec(&container, &pid_file, child.pid).await;
            }
        };
        // What is left in the pipes. The process has ended and its writes
        // with it, but the sandbox may hold the pipes' write ends for a
        // while (end of file comes late): what is there is read until
        // nothing more comes for DRAIN_IDLE.
        for (stream, buf, is_out) in [
            (&mut stdout, &mut out_buf, true),
            (&mut stderr, &mut err_buf, false),
        ] {
            let drain = async {
                while let Ok(Some(n)) =
                    tokio::time::timeout(DRAIN_IDLE, read_some(stream, buf)).await
                {
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    let item = if is_out {
                        ExecOutput::Stdout(chunk)
                    } else {
                        ExecOutput::Stderr(chunk)
                    };
                    if output.send(item).await.is_err() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        }
        let code = status.map(|s| s.code());
        let _ = output.send(ExecOutput::Exit { code, timed_out }).await;
        self.execs.remove(&actor, &id);
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&process_file);
        let _ = done.send(true);
        tracing::info!(
            actor = %actor,
            exec = %id,
            user = %user,
            command = %command,
            exit_code = code,
            timed_out,
            killed,
            duration_ms = t0.elapsed().as_millis() as u64,
            "exec ended"
        );
    }

    /// Ends an exec: its process inside the sandbox by pid (the client
    /// then exits with its status); the client itself if it has not
    /// ended after [`KILL_GRACE`] (or when the pid is not known yet).
    async fn end_exec(&self, container: &str, pid_file: &Path, client: i32) {
        match read_pid_file(pid_file) {
            Some(pid) => {
                if let Err(e) = self.runtime.kill_process(container, pid).await {
                    tracing::debug!(container, pid, error = %e, "killing an exec's process");
                }
                let gone = self.runtime.wait_gone(client, KILL_GRACE).await;
                if !gone {
                    end_process_group(client);
                }
            }
            None => end_process_group(client),
        }
    }

    /// Kills every exec of `actor` and waits (up to `limit`) for them to
    /// end; the ids of those still running after it.
    pub(super) async fn kill_execs(&self, actor: &str, limit: Duration) -> Vec<String> {
        let entries = self.execs.of(actor);
        if entries.is_empty() {
            return Vec::new();
        }
        for e in &entries {
            let _ = e.kill.send(true);
        }
        let deadline = tokio::time::Instant::now() + limit;
        let mut left = Vec::new();
        for e in entries {
            let mut done = e.done.clone();
            let ended = tokio::time::timeout_at(deadline, done.wait_for(|d| *d)).await;
            if !matches!(ended, Ok(Ok(_))) {
                left.push(e.id.clone());
            }
        }
        tracing::info!(actor, left = left.len(), "killed the actor's execs");
        left
    }

    /// The check of a suspend or pause (`verb`), under the actor's lock:
    /// with execs running it refuses naming them, or with `force` kills
    /// them first. A checkpoint is never taken with an exec session inside
    /// (see the module documentation), so one that cannot be ended fails
    /// the suspend; a frozen sandbox would leave an exec's client hanging.
    pub(super) async fn settle_execs_before(
        &self,
        verb: &str,
        id: &str,
        force: bool,
    ) -> Result<()> {
        let running = self.execs.of(id);
        if running.is_empty() {
            return Ok(());
        }
        if !force {
            let shown: Vec<String> = running.iter().take(5).map(|e| e.describe()).collect();
            let more = match running.len() {
                n if n > 5 => format!(" and {} more", n - 5),
                _ => String::new(),
            };
            return Err(ServiceError::ExecRefused(format!(
                "cannot {verb} actor {id}: execs are running: {}{more}; wait for them to end{}",
                shown.join(", "),
                if verb == "suspend" {
                    ", or suspend with ?force=true to kill them first"
                } else {
                    ""
                }
            )));
        }
        let left = self.kill_execs(id, FORCE_WAIT).await;
        if !left.is_empty() {
            return Err(ServiceError::Internal(format!(
                "cannot {verb} actor {id}: execs {} did not end within {} s of being killed; the actor keeps running",
                left.join(", "),
                FORCE_WAIT.as_secs()
            )));
        }
        Ok(())
    }

    /// At start, after recovery: the processes of execs a previous daemon
    /// left running inside sandboxes (their pid files) are killed, and
    /// the `runsc exec` clients it left are ended; nothing is then left
    /// inside a sandbox that nobody can reach.
    pub(crate) async fn end_orphaned_execs(&self) {
        let clients = self.runtime.end_stale_execs();
        let Ok(dirs) = std::fs::read_dir(&self.execs_dir) else {
            return;
        };
        let mut killed = 0;
        for dir in dirs.flatten() {
            let path = dir.path();
            if !path.is_dir() {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let container = dir.file_name().to_string_lossy().into_owned();
            let running = self
                .runtime
                .state(&container)
                .await
                .ok()
                .flatten()
                .is_some_and(|s| s.is_running());
            if running {
                for file in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                    let f = file.path();
                    if f.extension().is_some_and(|e| e == "pid") {
                        if let Some(pid) = read_pid_file(&f) {
                            if self.runtime.kill_process(&container, pid).await.is_ok() {
                                killed += 1;
                            }
                        }
                    }
                }
            }
            let _ = std::fs::remove_dir_all(&path);
        }
        if clients > 0 || killed > 0 {
            tracing::warn!(
                clients,
                processes = killed,
                "ended execs a previous daemon left running"
            );
        }
    }
}

/// The container's process from its bundle: what an exec starts from.
fn container_process(config: &Path) -> Result<oci_spec::runtime::Process> {
    let spec = oci_spec::runtime::Spec::load(config)
        .map_err(|e| ServiceError::Internal(format!("reading {}: {e}", config.display())))?;
    spec.process()
        .clone()
        .ok_or_else(|| ServiceError::Internal(format!("{} has no process", config.display())))
}

/// The request's command, environment, working directory and user over
/// the container's process. Capabilities, rlimits and the rest stay the
/// container's: an exec cannot ask for more.
fn apply_request(
    process: &mut oci_spec::runtime::Process,
    req: &ExecRequest,
    user: Option<atelet_api::ExecUser>,
) -> Result<()> {
    process.set_args(Some(req.command.clone()));
    let mut env = process.env().clone().unwrap_or_default();
    for var in &req.env {
        let prefix = format!("{}=", var.name);
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{}={}", var.name, var.value));
    }
    process.set_env(Some(env));
    if let Some(dir) = &req.working_dir {
        process.set_cwd(PathBuf::from(dir));
    }
    if let Some(u) = user {
        let mut pu = process.user().clone();
        pu.set_uid(u.uid);
        if let Some(gid) = u.gid {
            pu.set_gid(gid);
        } else if u.uid != process.user().uid() {
            // Another user without a group: its own number, as `runsc
            // exec --user UID` does, rather than the container's group.
            pu.set_gid(u.uid);
        }
        // The container's supplementary groups are its user's, not this one's.
        if u.uid != process.user().uid() {
            pu.set_additional_gids(None);
        }
        process.set_user(pu);
    }
    process.set_terminal(Some(req.tty));
    process.set_console_size(None);
    Ok(())
}

fn shown_command(command: &[String]) -> String {
    let text = command.join(" ");
    if text.chars().count() <= SHOWN_COMMAND {
        return text;
    }
    let cut: String = text.chars().take(SHOWN_COMMAND).collect();
    format!("{cut}…")
}

type Reader = tokio::net::unix::pipe::Receiver;
type Writer = tokio::net::unix::pipe::Sender;

/// The readers and the writer of an exec's stdio, and the terminal (for
/// window sizes).
struct Streams;

impl Streams {
    #[allow(clippy::type_complexity, clippy::new_ret_no_self)]
    fn new(
        child: &mut ExecChild,
    ) -> std::io::Result<(
        Option<Reader>,
        Option<Reader>,
        Option<Writer>,
        Option<OwnedFd>,
    )> {
        if let Some(console) = child.console.take() {
            nix::fcntl::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&console),
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .map_err(std::io::Error::from)?;
            let reader = Reader::from_owned_fd_unchecked(console.try_clone()?)?;
            let writer = Writer::from_owned_fd_unchecked(console.try_clone()?)?;
            return Ok((Some(reader), None, Some(writer), Some(console)));
        }
        let reader = |fd: Option<OwnedFd>| fd.map(Reader::from_owned_fd).transpose();
        let stdout = reader(child.stdout.take())?;
        let stderr = reader(child.stderr.take())?;
        let writer = child.stdin.take().map(Writer::from_owned_fd).transpose()?;
        Ok((stdout, stderr, writer, None))
    }
}

/// Reads what is there; `None` at the end (a terminal whose last process
/// ended reads EIO: the end too).
async fn read_some(reader: &mut Option<Reader>, buf: &mut [u8]) -> Option<usize> {
    match reader {
        Some(r) => match r.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

/// Writes some of `pending` to stdin; what is written is taken off it.
async fn write_stdin(
    writer: &mut Option<Writer>,
    pending: &mut Option<Bytes>,
) -> std::io::Result<()> {
    let (Some(w), Some(data)) = (writer.as_mut(), pending.as_mut()) else {
        return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
    };
    if data.is_empty() {
        return Ok(());
    }
    let n = w.write(data).await?;
    bytes::Buf::advance(data, n);
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Sets a terminal's window size (TIOCSWINSZ); the process gets SIGWINCH.
fn set_window_size(fd: &OwnedFd, cols: u16, rows: u16) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives
    // for the call; the fd is open (borrowed).
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            libc::TIOCSWINSZ,
            &size as *const libc::winsize,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "setting an exec's window size");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_overrides_command_env_dir_and_user_only() {
        let mut p = oci_spec::runtime::ProcessBuilder::default()
            .args(vec!["/bin/sleep".to_string(), "1000".to_string()])
            .env(vec!["PATH=/bin".to_string(), "A=1".to_string()])
            .cwd("/")
            .build()
            .unwrap();
        let caps = p.capabilities().clone();
        let req = ExecRequest {
            command: vec!["id".into(), "-u".into()],
            env: vec![atelet_api::EnvVar {
                name: "A".into(),
                value: "2".into(),
            }],
            working_dir: Some("/tmp".into()),
            user: Some("1000".into()),
            ..Default::default()
        };
        let user = atelet_api::exec::parse_user("1000").ok();
        apply_request(&mut p, &req, user).unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["id", "-u"]);
        assert_eq!(p.env().as_ref().unwrap(), &["PATH=/bin", "A=2"]);
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
        assert_eq!(p.capabilities(), &caps);
        assert_eq!(p.terminal(), Some(false));
    }

    #[test]
    fn long_commands_are_cut_for_the_log() {
        let long = vec!["x".repeat(500)];
        assert_eq!(shown_command(&long).chars().count(), SHOWN_COMMAND + 1);
        assert_eq!(shown_command(&["a".into(), "b".into()]), "a b");
    }
}
