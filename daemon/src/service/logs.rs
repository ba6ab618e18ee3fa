//! Actor logs: where each is written, their rotation, and reading one as
//! it grows.

use std::io::SeekFrom;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::*;

/// How often a followed log is checked for growth.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Bytes read from a log at a time: one chunk of the stream.
const CHUNK: usize = 64 * 1024;

/// Chunks a stream holds for a slow reader before reading the log waits.
const STREAM_BUFFER: usize = 16;

impl<R: Runtime> ActorService<R> {
    /// The actor's log file (stdout and stderr of its sandboxes).
    pub(crate) fn log_path(&self, id: &str) -> PathBuf {
        self.logs_dir.join(format!("{id}.log"))
    }

    /// Moves aside every actor log over `log_max_bytes`: its content goes to
    /// `<id>.log.1` (replacing the previous one) and the log starts empty
    /// again (copy and truncate: the sandbox keeps its O_APPEND descriptor).
    /// An actor cannot fill the disk that holds sled and the snapshots with
    /// its output. Lines written between the copy and the truncation are
    /// lost.
    pub(crate) async fn rotate_logs(&self) {
        let dir = self.logs_dir.clone();
        let max = self.log_max_bytes;
        let rotated_logs = tokio::task::spawn_blocking(move || rotate_logs_in(&dir, max)).await;
        match rotated_logs {
            Ok(names) if !names.is_empty() => tracing::info!(logs = ?names, "rotated actor logs"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "rotating logs"),
        }
    }

    /// What actor `id` printed, in chunks; with `follow`, then what it
    /// appends, until the receiver is dropped or the actor is deleted. A
    /// log that shrank was rotated: it is read again from its start, so
    /// nothing written after the rotation is missed.
    pub(crate) fn logs(self: &Arc<Self>, id: &str, follow: bool) -> Result<mpsc::Receiver<Bytes>> {
        if !self.exists(id)? {
            return Err(ServiceError::NotFound(id.to_string()));
        }
        let id = id.to_string();
        let path = self.log_path(&id);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let svc = self.clone();
        tokio::spawn(async move {
            let mut offset = 0u64;
            let mut buf = vec![0u8; CHUNK];
            loop {
                if let Ok(mut f) = tokio::fs::File::open(&path).await {
                    // Rotated (truncated) since the last read: start over.
                    if f.metadata().await.is_ok_and(|m| m.len() < offset) {
                        offset = 0;
                    }
                    if f.seek(SeekFrom::Start(offset)).await.is_ok() {
                        loop {
                            match f.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    offset += n as u64;
                                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                                    if tx.send(chunk).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    }
                }
                if !follow || !matches!(svc.exists(&id), Ok(true)) {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(FOLLOW_POLL) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(rx)
    }

    /// Whether actor `id` has a record (a bad id is an error).
    fn exists(&self, id: &str) -> Result<bool> {
        validate_actor_id(id)?;
        Ok(self.store.contains(id)?)
    }
}

/// Where a log is rotated to.
pub(super) fn rotated(log: &std::path::Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Rotates the logs in `dir` over `max` bytes; returns their names.
pub(super) fn rotate_logs_in(dir: &std::path::Path, max: u64) -> Vec<String> {
    let mut done = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return done;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_log = path.extension().is_some_and(|e| e == "log");
        if !is_log || entry.metadata().map(|m| m.len()).unwrap_or(0) <= max {
            continue;
        }
        let res = std::fs::copy(&path, rotated(&path)).and_then(|_| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(0))
        });
        match res {
            Ok(()) => done.push(entry.file_name().to_string_lossy().into_owned()),
            Err(e) => tracing::warn!(log = %path.display(), error = %e, "rotating a log"),
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_over_the_limit_are_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("a.log");
        let small = dir.path().join("b.log");
        std::fs::write(&big, vec![b'x'; 10_000]).unwrap();
        std::fs::write(&small, b"short").unwrap();
        let done = rotate_logs_in(dir.path(), 4096);
        assert_eq!(done, ["a.log"]);
        assert_eq!(std::fs::metadata(&big).unwrap().len(), 0);
        assert_eq!(std::fs::metadata(rotated(&big)).unwrap().len(), 10_000);
        assert_eq!(std::fs::read(&small).unwrap(), b"short");
        // The rotated copy itself is never rotated again.
        assert!(rotate_logs_in(dir.path(), 4096).is_empty());
    }
}
