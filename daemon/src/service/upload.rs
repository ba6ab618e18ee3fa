//! Snapshots to and from the remote store (`crate::remote`).
//!
//! Up: a suspend commits its local snapshot and answers as before; the
//! snapshot is recorded `pending` and queued, and one worker uploads the
//! queue in order, each snapshot tried [`ATTEMPTS`] times with backoff,
//! then recorded `uploaded` (with its URL) or `failed` (with the reason)
//! and tried again `[remote] retry_secs` later, for as long as the snapshot
//! exists. Each outcome is an event of the actor. After a restart, what
//! is still `pending` or `failed` is queued again. With a remote store,
//! retention waits for uploads: snapshots past `snapshot_retention` go
//! (both copies) once the newest one is uploaded, so that the newest is
//! always somewhere.
//!
//! Down: an actor made from a remote URL (`restoreFrom.url`) is created
//! SUSPENDED on the remote manifest alone, after the preflight; its first
//! resume downloads the files, verified, into a local snapshot.

use std::time::Duration;

use super::*;
use crate::remote::{Remote, RemoteError, RemoteManifest};
use crate::store::{RemoteCopy, UploadStatus};

/// Tries of one upload before it is recorded `failed`.
const ATTEMPTS: u32 = 3;
/// First pause between tries (doubled each time).
const BACKOFF: Duration = Duration::from_secs(1);

/// The longest a `?wait=uploaded` waits for its upload.
const UPLOAD_WAIT: Duration = Duration::from_secs(600);

/// The end of one round of tries of an upload.
#[derive(Debug, Clone)]
pub(crate) struct UploadDone {
    /// The actor.
    pub actor: String,
    /// The snapshot.
    pub snapshot: String,
    /// Its URL, or why it failed.
    pub result: std::result::Result<String, String>,
}

impl<R: Runtime> ActorService<R> {
    /// How a new snapshot starts with the remote store: `pending`, local.
    pub(super) fn new_remote_copy(&self) -> Option<RemoteCopy> {
        self.remote.as_ref().map(|_| RemoteCopy {
            url: None,
            status: UploadStatus::Pending,
            error: String::new(),
            local: true,
        })
    }

    /// Queues the upload of a snapshot (no-op without a remote store).
    pub(super) fn queue_upload(&self, actor: &str, snapshot: &str) {
        if let Some(tx) = self.upload_queue.get() {
            let _ = tx.send((actor.to_string(), snapshot.to_string()));
        }
    }

    /// Starts the upload worker and queues what is left to upload (after
    /// recovery). Without a remote store, nothing.
    pub(crate) fn start_uploads(self: &Arc<Self>) {
        let Some(remote) = self.remote.clone() else {
            return;
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, String)>();
        if self.upload_queue.set(tx.clone()).is_err() {
            return;
        }
        let svc = self.clone();
        tokio::spawn(async move {
            while let Some((actor, snapshot)) = rx.recv().await {
                let result = svc.upload_one(&remote, &actor, &snapshot).await;
                let result = match result {
                    // Whoever waits for it hears that there is nothing.
                    Ok(None) => Err("the actor or its snapshot is gone".to_string()),
                    Ok(Some(url)) => Ok(url),
                    Err(e) => {
                        let tx = tx.clone();
                        let (a, s) = (actor.clone(), snapshot.clone());
                        let after = remote.retry_after();
                        tokio::spawn(async move {
                            tokio::time::sleep(after).await;
                            let _ = tx.send((a, s));
                        });
                        Err(e)
                    }
                };
                let _ = svc.upload_done.send(UploadDone {
                    actor,
                    snapshot,
                    result,
                });
            }
        });
        let mut queued = 0;
        for (id, _) in self.store.summaries() {
            let Ok(Some(rec)) = self.store.get(&id) else {
                continue;
            };
            for s in &rec.snapshots {
                if s.remote
                    .as_ref()
                    .is_some_and(|r| r.local && r.status != UploadStatus::Uploaded)
                {
                    self.queue_upload(&id, &s.id);
                    queued += 1;
                }
            }
        }
        if queued > 0 {
            tracing::info!(queued, "uploads left from before the restart queued again");
        }
    }

    /// One round of tries of an upload. `Ok(None)`: nothing to do (the
    /// actor or snapshot is gone, or it is up already).
    async fn upload_one(
        &self,
        remote: &Remote,
        actor: &str,
        snapshot: &str,
    ) -> std::result::Result<Option<String>, String> {
        let Ok(Some(rec)) = self.store.get(actor) else {
            return Ok(None);
        };
        let Some(snap) = rec.snapshots.iter().find(|s| s.id == snapshot) else {
            return Ok(None);
        };
        if let Some(RemoteCopy {
            status: UploadStatus::Uploaded,
            url: Some(url),
            ..
        }) = &snap.remote
        {
            return Ok(Some(url.clone()));
        }
        let t0 = Instant::now();
        let generation = Remote::generation(&rec.created_at);
        let attempt = async {
            let manifest = self
                .snapshots
                .manifest(actor, snapshot)
                .map_err(|e| e.to_string())?;
            let origin = self
                .snapshots
                .origin(&manifest)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "the snapshot records no origin".to_string())?;
            let dir = self.snapshots.dir(actor, snapshot);
            let mut delay = BACKOFF;
            let mut last = String::new();
            for n in 1..=ATTEMPTS {
                match remote
                    .upload(
                        &self.node,
                        &generation,
                        &dir,
                        &manifest,
                        &origin,
                        &self.trust,
                    )
                    .await
                {
                    Ok(url) => return Ok(url),
                    Err(e) => {
                        tracing::warn!(actor, snapshot, attempt = n, error = %e, "upload failed");
                        last = e.to_string();
                    }
                }
                if n < ATTEMPTS {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
            Err(last)
        }
        .await;
        let bytes = snap.size_bytes;
        let ok = attempt.is_ok();
        if !self
            .record_upload(actor, &rec.created_at, snapshot, &attempt)
            .await
        {
            // The actor was deleted (or its id taken anew) meanwhile: what
            // went up belongs to nobody.
            if let Ok(url) = &attempt {
                if let Err(e) = remote.delete(url).await {
                    tracing::warn!(actor, %url, error = %e, "removing the upload of a deleted actor");
                }
            }
            return Ok(None);
        }
        match &attempt {
            Ok(url) => {
                tracing::info!(actor, snapshot, %url, bytes, duration_ms = t0.elapsed().as_millis() as u64, "snapshot uploaded");
            }
            Err(e) => {
                tracing::warn!(actor, snapshot, error = %e, retry_in_s = remote.retry_after().as_secs(), "upload failed; tried again later")
            }
        }
        if ok {
            self.retain(remote, actor).await;
        }
        attempt.map(Some)
    }

    /// Writes an upload's outcome into the record, as an event of the
    /// actor; false when the actor (of that creation time) or the snapshot
    /// is gone.
    async fn record_upload(
        &self,
        actor: &str,
        created_at: &str,
        snapshot: &str,
        outcome: &std::result::Result<String, String>,
    ) -> bool {
        let _guard = self.locks.lock(actor).await;
        let Ok(Some(mut rec)) = self.store.get(actor) else {
            // No lock entry may outlive a deleted actor.
            self.locks.forget(actor);
            return false;
        };
        if rec.created_at != created_at {
            return false;
        }
        let Some(snap) = rec.snapshots.iter_mut().find(|s| s.id == snapshot) else {
            return false;
        };
        let reason = match outcome {
            Ok(url) => {
                snap.remote = Some(RemoteCopy {
                    url: Some(url.clone()),
                    status: UploadStatus::Uploaded,
                    error: String::new(),
                    local: true,
                });
                format!("snapshot {snapshot} uploaded to {url}")
            }
            Err(e) => {
                snap.remote = Some(RemoteCopy {
                    url: None,
                    status: UploadStatus::Failed,
                    error: e.clone(),
                    local: true,
                });
                format!("upload of snapshot {snapshot} failed: {e}")
            }
        };
        let status = rec.status;
        let saved = self
            .store
            .save(
                &rec,
                Some(Transition {
                    from: Some(status),
                    to: Some(status),
                    reason,
                }),
            )
            .await;
        if let Err(e) = saved {
            tracing::error!(actor, snapshot, error = %e, "recording an upload");
        }
        true
    }

    /// Retention with a remote store: once the newest snapshot is
    /// uploaded, snapshots past `snapshot_retention` go, both copies.
    async fn retain(&self, remote: &Remote, actor: &str) {
        if self.retention == 0 {
            return;
        }
        let gone = {
            let _guard = self.locks.lock(actor).await;
            let Ok(Some(mut rec)) = self.store.get(actor) else {
                self.locks.forget(actor);
                return;
            };
            let newest_up = rec.snapshots.last().is_some_and(|s| {
                s.remote
                    .as_ref()
                    .is_some_and(|r| r.status == UploadStatus::Uploaded)
            });
            if !newest_up || rec.snapshots.len() <= self.retention {
                return;
            }
            let n = rec.snapshots.len() - self.retention;
            let gone: Vec<SnapshotRecord> = rec.snapshots.drain(..n).collect();
            if let Err(e) = self.store.save(&rec, None).await {
                tracing::error!(actor, error = %e, "recording retention");
                return;
            }
            gone
        };
        for s in gone {
            if let Err(e) = self.snapshots.remove(actor, &s.id) {
                tracing::warn!(actor, snapshot = %s.id, error = %e, "removing old snapshot");
            }
            if let Some(url) = s.remote.and_then(|r| r.url) {
                if let Err(e) = remote.delete(&url).await {
                    tracing::warn!(actor, %url, error = %e, "removing old remote snapshot");
                }
            }
        }
    }

    /// `POST /v1/actors/{id}/suspend?wait=uploaded`: the suspend, then the
    /// first round of tries of its upload. A failed upload answers 503;
    /// the actor is SUSPENDED on its local snapshot all the same, and the
    /// upload is tried again later.
    pub(crate) async fn suspend_uploaded(self: &Arc<Self>, id: &str, force: bool) -> Result<Actor> {
        if self.remote.is_none() {
            return Err(ServiceError::NotSupported(
                "wait=uploaded: this node has no remote snapshot store ([remote] url)".to_string(),
            ));
        }
        let mut done = self.upload_done.subscribe();
        let actor = self.suspend_with(id, force).await?;
        let Some(snapshot) = actor.latest_snapshot.clone() else {
            return Ok(actor);
        };
        let deadline = tokio::time::Instant::now() + UPLOAD_WAIT;
        loop {
            let next = match tokio::time::timeout_at(deadline, done.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    return Err(ServiceError::Unavailable(format!(
                        "actor {id} is SUSPENDED; the upload of snapshot {snapshot} did not end within {} s and goes on in the background",
                        UPLOAD_WAIT.as_secs()
                    )))
                }
            };
            match next {
                Ok(d) if d.actor == id && d.snapshot == snapshot => {
                    return match d.result {
                        Ok(_) => self.get(id),
                        Err(e) => Err(ServiceError::Unavailable(format!(
                            "actor {id} is SUSPENDED, but the upload of snapshot {snapshot} failed: {e}; the snapshot is kept on this node and the upload is tried again in {} s",
                            self.remote.as_ref().map_or(0, |r| r.retry_after().as_secs())
                        ))),
                    };
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(ServiceError::Internal("the upload worker stopped".into()))
                }
            }
        }
    }

    /// `POST /v1/actors` with `restoreFrom.url`: the actor, SUSPENDED on
    /// the remote snapshot (downloaded at its first resume), once its
    /// manifest has passed the spec, policy and preflight checks. Nothing
    /// is downloaded or written before.
    pub(super) async fn create_from_url(
        self: &Arc<Self>,
        req: CreateActorRequest,
        url: &str,
    ) -> Result<Actor> {
        let Some(remote) = self.remote.clone() else {
            return Err(ServiceError::NotSupported(
                "restoreFrom.url: this node has no remote snapshot store ([remote] url)"
                    .to_string(),
            ));
        };
        let what = format!("creating actor {} from {url}", req.id);
        let manifest = remote
            .manifest(url, &self.trust)
            .await
            .map_err(|e| remote_err(&what, e))?;
        let (spec, image) = self
            .check_import(&what, &req.id, &manifest.snapshot, &manifest.origin)
            .await?;
        let _op = self.begin_op()?;
        let _guard = self.locks.lock(&req.id).await;
        if self.store.contains(&req.id)? {
            return Err(ServiceError::AlreadyExists(req.id));
        }
        let mut rec = ActorRecord::new(req.id, req.template, spec, now_rfc3339());
        rec.image_digest = image.digest.clone();
        rec.network.mode = manifest.origin.network_mode;
        rec.snapshot_seq = 1;
        rec.status = ActorStatus::Suspended;
        rec.snapshots.push(SnapshotRecord {
            id: snapshot_id(1),
            created_at: manifest.snapshot.created_at.clone(),
            size_bytes: manifest.snapshot.files.iter().map(|f| f.size).sum(),
            runsc_version: manifest.snapshot.runsc_version.clone(),
            remote: Some(RemoteCopy {
                url: Some(url.to_string()),
                status: UploadStatus::Uploaded,
                error: String::new(),
                local: false,
            }),
        });
        if let Err(e) = self.admit(&mut rec, "created from a remote snapshot").await {
            self.locks.forget(&rec.id);
            return Err(e);
        }
        tracing::info!(actor = %rec.id, op = "create", %url, "actor created from a remote snapshot");
        Ok(rec.to_api())
    }

    /// Before a resume: the snapshot of an actor made from a remote URL is
    /// downloaded, verified and committed here (then it is local). A
    /// failed download leaves the actor as it was; a resume tries again.
    pub(super) async fn fetch_if_remote(
        &self,
        rec: &mut ActorRecord,
        snapshot: &SnapshotRecord,
    ) -> Result<()> {
        if snapshot.is_local() {
            return Ok(());
        }
        let id = rec.id.clone();
        let what = format!("resuming actor {id}");
        let (Some(remote), Some(url)) = (
            self.remote.clone(),
            snapshot.remote.as_ref().and_then(|r| r.url.clone()),
        ) else {
            return Err(ServiceError::Unavailable(format!(
                "{what}: its snapshot is in a remote store this node is not configured for"
            )));
        };
        let t0 = Instant::now();
        let manifest: RemoteManifest = match remote.manifest(&url, &self.trust).await {
            Ok(m) => m,
            // Its source removed it (retention, delete): this actor cannot
            // be resumed any more, and must not look gone itself.
            Err(e) if e.is_not_found() => {
                return Err(ServiceError::Preflight(format!(
                "{what}: its snapshot is no longer in the remote store ({url}): delete the actor"
            )))
            }
            Err(e) => return Err(remote_err(&what, e)),
        };
        let pending = self
            .snapshots
            .begin(&id, &snapshot.id)
            .map_err(snapshot_err(what.clone()))?;
        if let Err(e) = remote.download(&url, &manifest, &pending).await {
            let _ = self.snapshots.discard(&pending);
            return Err(remote_err(&what, e));
        }
        let committed = self
            .commit_as_own(
                rec,
                pending,
                None,
                manifest.snapshot.runsc_version.clone(),
                manifest.snapshot.created_at.clone(),
                &what,
            )
            .await?;
        if let Some(s) = rec.snapshots.iter_mut().find(|s| s.id == snapshot.id) {
            s.size_bytes = committed.size_bytes;
            // Local now; its remote copy is whoever uploaded it's, never
            // this actor's to remove.
            s.remote = None;
        }
        self.store.save(rec, None).await?;
        tracing::info!(actor = %id, %url, bytes = committed.size_bytes, duration_ms = t0.elapsed().as_millis() as u64, "remote snapshot downloaded");
        Ok(())
    }

    /// Removes the remote copies of `rec`'s snapshots (its delete), each
    /// tried once; what fails is logged and left.
    pub(super) async fn delete_remote_copies(&self, rec: &ActorRecord) {
        let Some(remote) = &self.remote else {
            return;
        };
        for s in &rec.snapshots {
            let Some(RemoteCopy {
                url: Some(url),
                local,
                ..
            }) = &s.remote
            else {
                continue;
            };
            // The snapshot it was made from belongs to whoever uploaded it.
            if !local {
                continue;
            }
            if let Err(e) = remote.delete(url).await {
                tracing::warn!(actor = %rec.id, %url, error = %e, "removing a remote snapshot");
            }
        }
    }
}

/// A remote-store error of `what`: the store unreachable or failing is
/// 503 (try again), a URL or manifest that is not right 400.
fn remote_err(what: &str, e: RemoteError) -> ServiceError {
    match e {
        RemoteError::BadUrl(m) => ServiceError::Invalid(ValidationError::new("restoreFrom.url", m)),
        e if e.is_not_found() => ServiceError::NotFound(format!("{what}: {e}")),
        RemoteError::Corrupt { .. } => ServiceError::Invalid(ValidationError::new(
            "restoreFrom.url",
            format!("{what}: {e}"),
        )),
        e => ServiceError::Unavailable(format!("{what}: {e}")),
    }
}
