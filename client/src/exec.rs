//! `atectl exec` and `atectl cp`: both over the interactive exec stream
//! (`POST /v1/actors/{id}/exec` upgraded), which carries stdin, stdout,
//! stderr, window sizes and the exit code as frames.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use atectl::{read_exec_event, Client, ExecEvent};
use atelet_api::exec::stream;
use atelet_api::{EnvVar, ExecRequest};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::cli::ExecArgs;
use crate::failure::Failure;

/// `atectl exec`: the command's exit code is atectl's.
pub async fn exec(client: &Client, args: ExecArgs) -> Result<(), Failure> {
    let env = args
        .env
        .iter()
        .map(|e| match e.split_once('=') {
            Some((n, v)) => Ok(EnvVar {
                name: n.to_string(),
                value: v.to_string(),
            }),
            None => Err(Failure::Invalid(format!(
                "--env {e:?}: the form is NAME=VALUE"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tty = args.tty;
    let req = ExecRequest {
        command: args.command.clone(),
        env,
        working_dir: args.workdir.clone(),
        user: args.user.clone(),
        timeout_seconds: args.timeout,
        tty,
        ..Default::default()
    };
    let conn = client.exec_stream(&args.id, &req).await?;
    let (mut rd, mut wr) = tokio::io::split(conn);
    // Raw mode only on a terminal; restored when this drops, whatever happens.
    let raw = if tty { RawMode::enter() } else { None };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    if tty {
        if let Some((cols, rows)) = window_size() {
            let _ = tx
                .send(stream::frame(stream::RESIZE, &stream::resize(cols, rows)))
                .await;
        }
        spawn_resizes(tx.clone());
    }
    if args.interactive {
        spawn_stdin(tx.clone());
    } else {
        let _ = tx.send(stream::frame(stream::STDIN_CLOSE, &[])).await;
    }
    drop(tx);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
        // Keep the connection open: closing it would hang up the exec.
        std::future::pending::<()>().await;
    });
    let code = loop {
        match read_exec_event(&mut rd).await {
            Ok(Some(ExecEvent::Stdout(b))) => write_out(&mut std::io::stdout(), &b),
            Ok(Some(ExecEvent::Stderr(b))) => write_out(&mut std::io::stderr(), &b),
            Ok(Some(ExecEvent::Exit(code))) => break code,
            Ok(None) => {
                drop(raw);
                writer.abort();
                return Err(Failure::Lost(
                    "the exec stream ended without an exit code".into(),
                ));
            }
            Err(e) => {
                drop(raw);
                writer.abort();
                return Err(e.into());
            }
        }
    };
    writer.abort();
    drop(raw);
    match code {
        Some(0) => Ok(()),
        Some(c) => Err(Failure::Exited(u8::try_from(c.clamp(0, 255)).unwrap_or(1))),
        None => Err(Failure::Lost(
            "the daemon could not read the exit code".into(),
        )),
    }
}

fn write_out(out: &mut dyn Write, bytes: &[u8]) {
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// Local stdin → STDIN frames, then STDIN_CLOSE at its end. A blocking
/// thread: stdin may be a terminal, which tokio cannot poll.
fn spawn_stdin(tx: mpsc::Sender<Vec<u8>>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        let mut stdin = std::io::stdin();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.blocking_send(stream::frame(stream::STDIN_CLOSE, &[]));
                    return;
                }
                Ok(n) => {
                    if tx
                        .blocking_send(stream::frame(stream::STDIN, &buf[..n]))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
}

/// SIGWINCH → RESIZE frames.
fn spawn_resizes(tx: mpsc::Sender<Vec<u8>>) {
    tokio::spawn(async move {
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some((cols, rows)) = window_size() {
                if tx
                    .send(stream::frame(stream::RESIZE, &stream::resize(cols, rows)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
}

/// The terminal's size on stdout (else stdin).
fn window_size() -> Option<(u16, u16)> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into the pointer, which
        // lives for the call.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws as *mut libc::winsize) };
        if rc == 0 && ws.ws_col > 0 {
            return Some((ws.ws_col, ws.ws_row));
        }
    }
    None
}

/// The local terminal in raw mode (keys go to the remote process as
/// typed, Ctrl-C included), restored when dropped.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        use nix::sys::termios::{tcsetattr, SetArg};
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

/// One side of `atectl cp`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Local(PathBuf),
    Actor { id: String, path: String },
}

/// `ID:/path` is in an actor (an id is a DNS label, and the path
/// absolute); anything else is local (`./a:b` for a local name with a colon).
fn place(arg: &str) -> Place {
    if let Some((id, path)) = arg.split_once(':') {
        if atelet_api::validate::is_dns_label(id) && path.starts_with('/') {
            return Place::Actor {
                id: id.to_string(),
                path: path.to_string(),
            };
        }
    }
    Place::Local(PathBuf::from(arg))
}

/// `atectl cp SRC DST`.
pub async fn cp(client: &Client, src: &str, dst: &str) -> Result<(), Failure> {
    match (place(src), place(dst)) {
        (Place::Actor { id, path }, Place::Local(local)) => from_actor(client, &id, &path, &local).await,
        (Place::Local(local), Place::Actor { id, path }) => to_actor(client, &id, &local, &path).await,
        _ => Err(Failure::Invalid(
            "cp copies between an actor and this machine: one of SRC and DST is ID:/path, the other a local path".into(),
        )),
    }
}

/// A path's parent and last name inside the actor.
fn split_remote(path: &str) -> Result<(String, String), Failure> {
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
    if name.is_empty() || name == "." || name == ".." {
        return Err(Failure::Invalid(format!(
            "{path:?}: name a file or directory, not the root or '..'"
        )));
    }
    Ok((
        if parent.is_empty() {
            "/".into()
        } else {
            parent.into()
        },
        name.into(),
    ))
}

/// The message for a tar that failed in the actor.
fn tar_failure(id: &str, code: i32, stderr: &[u8]) -> Failure {
    let text = String::from_utf8_lossy(stderr).trim().to_string();
    if code == 127
        || code == 126
        || text.contains("executable file not found")
        || text.contains("tar: not found")
        || (text.contains("tar") && text.contains("no such file"))
    {
        return Failure::Invalid(format!(
            "actor {id}: its image has no usable tar, which cp needs in the container (tar exited {code}: {text})"
        ));
    }
    Failure::Invalid(format!("actor {id}: tar exited {code}: {text}"))
}

fn exec_req(command: &[&str]) -> ExecRequest {
    ExecRequest {
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Copies `path` out of actor `id` to `local`: a tar of it streams out
/// of the actor and is unpacked here as it arrives. An existing local
/// directory receives it under its own name; otherwise `local` becomes
/// the copy.
async fn from_actor(client: &Client, id: &str, path: &str, local: &Path) -> Result<(), Failure> {
    let (parent, name) = split_remote(path)?;
    let target = if local.is_dir() {
        local.join(&name)
    } else {
        local.to_path_buf()
    };
    let conn = client
        .exec_stream(
            id,
            &exec_req(&["tar", "-c", "-f", "-", "-C", &parent, &name]),
        )
        .await?;
    let (mut rd, mut wr) = tokio::io::split(conn);
    wr.write_all(&stream::frame(stream::STDIN_CLOSE, &[]))
        .await
        .map_err(|e| Failure::Lost(e.to_string()))?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
    let unpack_target = target.clone();
    let unpacker =
        tokio::task::spawn_blocking(move || unpack(ChannelReader::new(rx), &unpack_target));
    let mut stderr = Vec::new();
    let code = loop {
        match read_exec_event(&mut rd).await? {
            Some(ExecEvent::Stdout(b)) => {
                if tx.send(b).is_err() {
                    // The unpacker failed: its error is reported below.
                    break None;
                }
            }
            Some(ExecEvent::Stderr(b)) => stderr.extend_from_slice(&b),
            Some(ExecEvent::Exit(code)) => break code,
            None => {
                return Err(Failure::Lost(
                    "the exec stream ended without an exit code".into(),
                ))
            }
        }
    };
    drop(tx);
    drop(wr);
    let unpacked = unpacker
        .await
        .map_err(|e| Failure::Lost(format!("unpacking: {e}")))?;
    match code {
        Some(0) => unpacked,
        Some(c) => Err(tar_failure(id, c, &stderr)),
        None => unpacked.and(Err(Failure::Lost(
            "tar's exit code was not received".into(),
        ))),
    }
}

/// Unpacks a tar whose entries all start with one name (the copied file
/// or directory) at `target` instead of that name. Entries that would
/// land outside `target` are refused.
fn unpack(reader: impl Read, target: &Path) -> Result<(), Failure> {
    let io = |what: &str, e: std::io::Error| Failure::Io {
        what: what.to_string(),
        source: e,
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    let entries = archive.entries().map_err(|e| io("reading the tar", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| io("reading the tar", e))?;
        let name = entry
            .path()
            .map_err(|e| io("reading the tar", e))?
            .into_owned();
        let mut rest = PathBuf::new();
        for (i, c) in name.components().enumerate() {
            match c {
                Component::Normal(part) if i > 0 => rest.push(part),
                Component::Normal(_) | Component::CurDir => {}
                _ => {
                    return Err(Failure::Invalid(format!(
                        "the actor's tar holds {name:?}, which is not inside the copied path"
                    )))
                }
            }
        }
        // The copied name itself is `target` (joining an empty path
        // would add a trailing slash, which a file cannot have).
        let dest = if rest.as_os_str().is_empty() {
            target.to_path_buf()
        } else {
            target.join(&rest)
        };
        // The actor's tar is not trusted: an earlier entry may have made a
        // symbolic link on the way, and writing through it would put a
        // file outside `target`. A link at `dest` itself is replaced, as
        // `tar -x` does.
        let is_link =
            |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
        let mut below = target.to_path_buf();
        for part in rest.parent().into_iter().flat_map(Path::components) {
            below.push(part);
            if is_link(&below) {
                return Err(Failure::Invalid(format!(
                    "the actor's tar holds {name:?} below the symbolic link {}: not written",
                    below.display()
                )));
            }
        }
        if !rest.as_os_str().is_empty() && is_link(&dest) {
            std::fs::remove_file(&dest)
                .map_err(|e| io(&format!("replacing {}", dest.display()), e))?;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| io(&format!("creating {}", parent.display()), e))?;
        }
        entry
            .unpack(&dest)
            .map_err(|e| io(&format!("writing {}", dest.display()), e))?;
    }
    Ok(())
}

/// Copies `local` into actor `id` at `path`: a tar made here streams into
/// `tar -x` in the actor. An existing directory at `path` receives it
/// under its own name; otherwise `path` becomes the copy.
async fn to_actor(client: &Client, id: &str, local: &Path, path: &str) -> Result<(), Failure> {
    let meta = std::fs::metadata(local).map_err(|e| Failure::Io {
        what: format!("reading {}", local.display()),
        source: e,
    })?;
    let is_dir_there = client
        .exec(id, &exec_req(&["test", "-d", path]))
        .await?
        .exit_code
        == 0;
    let (dir, name) = if is_dir_there {
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                Failure::Invalid(format!("{}: name a file or directory", local.display()))
            })?;
        (path.to_string(), name)
    } else {
        split_remote(path)?
    };
    let conn = client
        .exec_stream(id, &exec_req(&["tar", "-x", "-f", "-", "-C", &dir]))
        .await?;
    let (mut rd, mut wr) = tokio::io::split(conn);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    let local_path = local.to_path_buf();
    let packer = tokio::task::spawn_blocking(move || {
        let mut builder = tar::Builder::new(ChannelWriter { tx });
        builder.follow_symlinks(false);
        let res = if meta.is_dir() {
            builder.append_dir_all(&name, &local_path)
        } else {
            builder.append_path_with_name(&local_path, &name)
        };
        res.and_then(|()| builder.finish())
            .map_err(|e| Failure::Io {
                what: format!("reading {}", local_path.display()),
                source: e,
            })
    });
    let sender = async {
        while let Some(chunk) = rx.recv().await {
            for piece in chunk.chunks(stream::MAX_PAYLOAD) {
                wr.write_all(&stream::frame(stream::STDIN, piece)).await?;
            }
        }
        wr.write_all(&stream::frame(stream::STDIN_CLOSE, &[])).await
    };
    let mut stderr = Vec::new();
    let reader = async {
        loop {
            match read_exec_event(&mut rd).await? {
                Some(ExecEvent::Stdout(_)) => {}
                Some(ExecEvent::Stderr(b)) => stderr.extend_from_slice(&b),
                Some(ExecEvent::Exit(code)) => return Ok::<_, Failure>(code),
                None => {
                    return Err(Failure::Lost(
                        "the exec stream ended without an exit code".into(),
                    ))
                }
            }
        }
    };
    // The sender ends (stdin closed) before tar can exit; a tar that fails
    // early ends the reader first.
    let code = {
        tokio::pin!(reader);
        tokio::select! {
            sent = sender => {
                sent.map_err(|e| Failure::Lost(format!("sending the tar: {e}")))?;
                (&mut reader).await?
            }
            code = &mut reader => code?,
        }
    };
    let packed = packer
        .await
        .map_err(|e| Failure::Lost(format!("packing: {e}")))?;
    match code {
        Some(0) => packed,
        Some(c) => Err(tar_failure(id, c, &stderr)),
        None => Err(Failure::Lost("tar's exit code was not received".into())),
    }
}

/// `Read` over chunks from a channel (the tar arriving from the actor).
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    fn new(rx: std::sync::mpsc::Receiver<Vec<u8>>) -> ChannelReader {
        ChannelReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// `Write` into a channel (the tar going to the actor).
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(buf.to_vec())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_actor_paths_or_local() {
        assert_eq!(
            place("web-1:/etc/hosts"),
            Place::Actor {
                id: "web-1".into(),
                path: "/etc/hosts".into()
            }
        );
        assert_eq!(place("./a:b"), Place::Local("./a:b".into()));
        assert_eq!(place("a:rel"), Place::Local("a:rel".into()));
        assert_eq!(place("/tmp/x"), Place::Local("/tmp/x".into()));
    }

    #[test]
    fn remote_paths_split_into_parent_and_name() {
        assert_eq!(split_remote("/a/b/").unwrap(), ("/a".into(), "b".into()));
        assert_eq!(split_remote("/x").unwrap(), ("/".into(), "x".into()));
        assert!(split_remote("/").is_err());
        assert!(split_remote("/a/..").is_err());
    }

    #[test]
    fn a_tar_unpacks_at_the_target_name_and_escapes_are_refused() {
        let dir = std::env::temp_dir().join(format!("atectl-unpack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "src/sub/f", &b"hi"[..]).unwrap();
        let data = b.into_inner().unwrap();
        unpack(&data[..], &dir.join("dst")).unwrap();
        assert_eq!(std::fs::read(dir.join("dst/sub/f")).unwrap(), b"hi");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_cksum();
        // The tar crate refuses to write "..": set the raw name.
        h.as_gnu_mut().unwrap().name[..8].copy_from_slice(b"a/../../");
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        let data = b.into_inner().unwrap();
        assert!(unpack(&data[..], &dir.join("evil")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_tar_cannot_write_through_a_link_it_made() {
        let dir = std::env::temp_dir().join(format!("atectl-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let outside = dir.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "src/link", &outside).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "src/link/f", &b"hi"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let err = unpack(&data[..], &dir.join("dst")).unwrap_err();
        assert!(matches!(err, Failure::Invalid(_)), "{err:?}");
        assert!(!outside.join("f").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
