//! Actors made from snapshots: a clone of another actor's snapshot on this
//! node (`restoreFrom.actor`), and an import of a snapshot another node
//! exported (one tar, see `snapshots::archive`). The new actor is created SUSPENDED with a
//! snapshot of its own (the image's files hard-linked, its own manifest
//! and origin), so that a resume restores it as any other, under its own
//! id, with its own identity, address and published ports.
//!
//! Before anything is written, a preflight compares what the snapshot
//! needs (its [`Origin`]) with this node: runsc version and checkpoint
//! flags, and the image.

use super::*;
use atelet_api::ActorSpec;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::snapshots::archive::{self, ImportError};
use crate::snapshots::{Manifest, Origin};

impl<R: Runtime> ActorService<R> {
    /// What a snapshot of `rec` is taken of, for its `origin.json`.
    pub(super) fn origin_of(&self, rec: &ActorRecord) -> Origin {
        Origin {
            template: rec.template.clone(),
            spec: serde_json::to_value(&rec.spec).unwrap_or(serde_json::Value::Null),
            network_mode: rec.network.mode,
            image_digest: rec.image_digest.clone(),
            runsc_flags: self.runtime.checkpoint_flags(),
            node: self.node.clone(),
        }
    }

    /// Refuses (409, every mismatch named) a snapshot this node cannot
    /// restore; answers the image as resolved here, pinned.
    pub(super) async fn preflight(
        &self,
        what: &str,
        manifest: &Manifest,
        origin: &Origin,
        spec: &ActorSpec,
    ) -> Result<ResolvedImage> {
        let installed = self.runtime.ensure_available().map_err(runtime_err(what))?;
        let reference = &spec.containers[0].image;
        let (image, problem) = match self
            .images
            .resolve_recorded(reference, origin.image_digest.as_deref())
            .await
        {
            Ok(image) => (Some(image), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let mismatches = origin.mismatches(
            &manifest.runsc_version,
            &installed,
            &self.runtime.checkpoint_flags(),
            image.as_ref().and_then(|i| i.digest.as_deref()),
            problem.as_deref(),
        );
        match image {
            Some(image) if mismatches.is_empty() => Ok(image),
            _ => Err(ServiceError::Preflight(format!(
                "{what}: this node cannot restore snapshot {}/{}: {}",
                manifest.actor_id,
                manifest.snapshot_id,
                mismatches.join("; ")
            ))),
        }
    }

    /// `POST /v1/actors` with `restoreFrom.actor`: a clone, SUSPENDED.
    pub(super) async fn create_clone(
        self: &Arc<Self>,
        req: CreateActorRequest,
        source: &str,
        snapshot: Option<&str>,
    ) -> Result<Actor> {
        let src = self.store.get(source)?.ok_or_else(|| {
            ServiceError::NotFound(format!("restoreFrom.actor: actor {source} not found"))
        })?;
        let snap = Self::pick_snapshot(&src, snapshot).map_err(|e| match e {
            ServiceError::NotFound(m) => {
                ServiceError::NotFound(format!("restoreFrom.snapshot: {m}"))
            }
            other => other,
        })?;
        let what = format!("cloning actor {source} into {}", req.id);
        if !snap.is_local() {
            return Err(not_local(&what, source, &snap.id));
        }
        let manifest = self
            .snapshots
            .manifest(source, &snap.id)
            .map_err(snapshot_err(what.clone()))?;
        // A snapshot of an older daemon has no origin: the record says it.
        let origin = self
            .snapshots
            .origin(&manifest)
            .map_err(snapshot_err(what.clone()))?
            .unwrap_or_else(|| self.origin_of(&src));
        let spec = src.spec.clone();
        self.policy.check(&CreateActorRequest {
            id: req.id.clone(),
            template: req.template.clone(),
            spec: Some(spec.clone()),
            start: None,
            restore_from: None,
        })?;
        let image = self.preflight(&what, &manifest, &origin, &spec).await?;

        let _op = self.begin_op()?;
        let _guard = self.locks.lock(&req.id).await;
        if self.store.contains(&req.id)? {
            return Err(ServiceError::AlreadyExists(req.id));
        }
        let mut rec = ActorRecord::new(req.id, req.template, spec, now_rfc3339());
        rec.image_digest = image.digest.clone();
        rec.network.mode = src.network.mode;
        let pending = match self.snapshots.begin(&rec.id, &snapshot_id(1)) {
            Ok(p) => p,
            Err(e) => {
                self.locks.forget(&rec.id);
                return Err(snapshot_err(what)(e));
            }
        };
        let version = manifest.runsc_version.clone();
        let actor = self
            .register_from_snapshot(rec, pending, version, Some(manifest), &what, "cloned")
            .await?;
        tracing::info!(actor = %actor.id, op = "create", from = %source, snapshot = %snap.id, "actor cloned");
        Ok(actor)
    }

    /// Makes `rec` (not yet stored) SUSPENDED on the snapshot in `pending`:
    /// fills it with the files of `link` if given (a clone), writes its
    /// origin, commits it, then stores the record with its address and
    /// ports. The snapshot is committed before the record that names it: a
    /// crash in between leaves a directory no record names, which recovery
    /// removes. On failure nothing is left.
    async fn register_from_snapshot(
        &self,
        mut rec: ActorRecord,
        pending: crate::snapshots::Pending,
        runsc_version: String,
        link: Option<Manifest>,
        what: &str,
        reason: &str,
    ) -> Result<Actor> {
        rec.snapshot_seq = 1;
        rec.status = ActorStatus::Suspended;
        let created = now_rfc3339();
        let committed = match self
            .commit_as_own(&rec, pending, link, runsc_version, created, what)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir(self.snapshots.actor_dir(&rec.id));
                self.locks.forget(&rec.id);
                return Err(e);
            }
        };
        rec.snapshots.push(SnapshotRecord {
            id: committed.id.clone(),
            created_at: committed.manifest.created_at.clone(),
            size_bytes: committed.size_bytes,
            runsc_version: committed.manifest.runsc_version.clone(),
            remote: None,
        });
        if let Err(e) = self.admit(&mut rec, reason).await {
            self.locks.forget(&rec.id);
            let _ = remove_dir_if_exists(&self.snapshots.actor_dir(&rec.id));
            return Err(e);
        }
        Ok(rec.to_api())
    }

    /// Commits `pending` as a snapshot of `rec`: first filled with the
    /// files of `link` if given (a clone), with `rec`'s own origin; off the
    /// async threads. On failure the pending snapshot is removed.
    pub(super) async fn commit_as_own(
        &self,
        rec: &ActorRecord,
        pending: crate::snapshots::Pending,
        link: Option<Manifest>,
        runsc_version: String,
        created_at: String,
        what: &str,
    ) -> Result<crate::snapshots::Committed> {
        let origin = self.origin_of(rec);
        let (store, hash) = (self.snapshots.clone(), suspend::spec_hash(rec));
        let (pending, committed) = tokio::task::spawn_blocking(move || {
            let res = link
                .map_or(Ok(()), |m| store.link_from(&pending, &m))
                .and_then(|()| store.write_origin(&pending, &origin))
                .and_then(|()| store.commit(&pending, hash, runsc_version, created_at));
            (pending, res)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("{what}: {e}")))?;
        committed.map_err(|e| {
            let _ = self.snapshots.discard(&pending);
            snapshot_err(what.to_string())(e)
        })
    }

    /// The snapshot `which` (an id or `latest`) of `rec`, or 404.
    fn pick_snapshot(rec: &ActorRecord, which: Option<&str>) -> Result<SnapshotRecord> {
        match which {
            None | Some("latest") => rec.snapshots.last(),
            Some(id) => rec.snapshots.iter().find(|s| s.id == id),
        }
        .cloned()
        .ok_or_else(|| {
            ServiceError::NotFound(format!(
                "actor {} has no snapshot {}",
                rec.id,
                which.unwrap_or("(none taken yet)")
            ))
        })
    }

    /// `GET /v1/actors/{id}/snapshots/{snapshot}/export`: the size of the
    /// tar and its bytes as they are read (see `snapshots::archive`).
    pub(crate) fn export(&self, id: &str, snapshot: &str) -> Result<(u64, mpsc::Receiver<Bytes>)> {
        validate_actor_id(id)?;
        let rec = self
            .store
            .get(id)?
            .ok_or_else(|| ServiceError::NotFound(format!("actor {id} not found")))?;
        let snap = Self::pick_snapshot(&rec, Some(snapshot))?;
        let what = format!("exporting snapshot {} of actor {id}", snap.id);
        if !snap.is_local() {
            return Err(not_local(&what, id, &snap.id));
        }
        let manifest = self
            .snapshots
            .manifest(id, &snap.id)
            .map_err(snapshot_err(what.clone()))?;
        if !manifest
            .files
            .iter()
            .any(|f| f.name == crate::snapshots::ORIGIN)
        {
            return Err(ServiceError::NotSupported(format!(
                "{what}: it was taken by an atelet that did not record its origin; suspend the actor again to take one that can be exported"
            )));
        }
        let dir = self.snapshots.dir(id, &snap.id);
        let manifest_bytes = std::fs::read(dir.join(crate::snapshots::MANIFEST))
            .map_err(|e| ServiceError::Internal(format!("{what}: {e}")))?;
        let signature = self.trust.sign(&manifest_bytes);
        let list = archive::entries(
            manifest_bytes.len() as u64,
            signature.as_ref().map(|s| s.len() as u64),
            &manifest,
        );
        // Opened now: a snapshot removed (retention, delete) while the tar
        // streams is still read whole.
        let mut sources: Vec<Box<dyn std::io::Read + Send>> = Vec::new();
        for (name, _) in &list {
            if name == crate::trust::SIGNATURE {
                sources.push(Box::new(std::io::Cursor::new(
                    signature.clone().unwrap_or_default(),
                )));
            } else if name == crate::snapshots::MANIFEST {
                sources.push(Box::new(std::io::Cursor::new(manifest_bytes.clone())));
            } else {
                let f = std::fs::File::open(dir.join(name))
                    .map_err(|e| ServiceError::Internal(format!("{what}: {e}")))?;
                sources.push(Box::new(f));
            }
        }
        let files = sources;
        let size = archive::tar_size(&list);
        let (tx, rx) = mpsc::channel(8);
        tokio::task::spawn_blocking(move || {
            let out = crate::bridge::ChannelWriter::new(tx);
            if let Err(e) = archive::write(&dir, &list, files, out) {
                tracing::warn!(error = %e, "{what}: the export ended early");
            }
        });
        tracing::info!(actor = %id, snapshot = %snap.id, bytes = size, "exporting a snapshot");
        Ok((size, rx))
    }

    /// `POST /v1/snapshots/import?id=NEW`: the actor of an export's tar,
    /// SUSPENDED. The tar's manifest and origin are checked (spec, policy,
    /// preflight) before its image is written; every file is checked
    /// against the manifest as it is; nothing is registered unless all
    /// pass.
    pub(crate) async fn import(
        self: &Arc<Self>,
        id: String,
        body: mpsc::Receiver<std::io::Result<Bytes>>,
        max_bytes: u64,
    ) -> Result<Actor> {
        validate_actor_id(&id)?;
        let what = format!("importing actor {id}");
        let _op = self.begin_op()?;
        let _guard = self.locks.lock(&id).await;
        if self.store.contains(&id)? {
            return Err(ServiceError::AlreadyExists(id));
        }
        let pending = match self.snapshots.begin(&id, &snapshot_id(1)) {
            Ok(p) => p,
            Err(e) => {
                self.locks.forget(&id);
                return Err(snapshot_err(what)(e));
            }
        };
        let (svc, handle, w) = (
            self.clone(),
            tokio::runtime::Handle::current(),
            what.clone(),
        );
        let new_id = id.clone();
        let trust = self.trust.clone();
        let (pending, read, checked) = tokio::task::spawn_blocking(move || {
            let mut checked = None;
            let read = archive::read(
                crate::bridge::ChannelReader::new(body),
                &pending,
                max_bytes,
                &trust,
                |manifest, origin| {
                    let c = handle.block_on(svc.check_import(&w, &new_id, manifest, origin))?;
                    checked = Some(c);
                    Ok(())
                },
            );
            (pending, read, checked)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("{what}: {e}")))?;
        let fail = |e: ServiceError| {
            let _ = self.snapshots.discard(&pending);
            let _ = std::fs::remove_dir(self.snapshots.actor_dir(&id));
            self.locks.forget(&id);
            Err(e)
        };
        let (manifest, origin) = match read {
            Ok(r) => r,
            Err(ImportError::Invalid(m)) => {
                return fail(ServiceError::Invalid(ValidationError::new(
                    "body",
                    format!("{what}: {m}"),
                )))
            }
            Err(ImportError::TooLarge(n)) => {
                return fail(ServiceError::TooLarge(format!(
                    "{what}: the snapshot is larger than max_import_bytes ({n} bytes)"
                )))
            }
            Err(ImportError::Refused(e)) => return fail(e),
            Err(ImportError::Snapshot(e)) => return fail(snapshot_err(what)(e)),
        };
        let Some((spec, image)) = checked else {
            return fail(ServiceError::Internal(format!(
                "{what}: the snapshot was not checked"
            )));
        };
        let mut rec = ActorRecord::new(id, origin.template.clone(), spec, now_rfc3339());
        rec.image_digest = image.digest.clone();
        rec.network.mode = origin.network_mode;
        let actor = self
            .register_from_snapshot(
                rec,
                pending,
                manifest.runsc_version.clone(),
                None,
                &what,
                "imported",
            )
            .await?;
        tracing::info!(actor = %actor.id, op = "import", from_actor = %manifest.actor_id, from_node = %origin.node, snapshot = %manifest.snapshot_id, "actor imported");
        Ok(actor)
    }

    /// What an imported snapshot must pass before its image is written:
    /// its spec (as a create's), the node policy, and the preflight.
    pub(super) async fn check_import(
        &self,
        what: &str,
        id: &str,
        manifest: &Manifest,
        origin: &Origin,
    ) -> Result<(ActorSpec, ResolvedImage)> {
        let spec: ActorSpec = serde_json::from_value(origin.spec.clone()).map_err(|e| {
            ServiceError::Invalid(ValidationError::new(
                "body",
                format!("{what}: the snapshot's spec: {e}"),
            ))
        })?;
        let req = CreateActorRequest {
            id: id.to_string(),
            template: origin.template.clone(),
            spec: Some(spec.clone()),
            start: None,
            restore_from: None,
        };
        validate_create(&req)?;
        if spec.containers.len() != 1 {
            return Err(ServiceError::NotSupported(format!(
                "{what}: multi-container actors are not supported"
            )));
        }
        if origin.network_mode == NetworkMode::Bridge && self.network.is_none() {
            return Err(ServiceError::Unavailable(format!(
                "{what}: the actor is bridged and networking is not set up on this daemon"
            )));
        }
        self.policy.check(&req)?;
        let image = self.preflight(what, manifest, origin, &spec).await?;
        Ok((spec, image))
    }
}

/// A snapshot of an actor made from a remote URL that has not been
/// downloaded yet: there is nothing here to copy.
fn not_local(what: &str, actor: &str, snapshot: &str) -> ServiceError {
    ServiceError::Preflight(format!(
        "{what}: snapshot {snapshot} of actor {actor} is not on this node yet (the actor was made from a remote URL): resume it once to download it"
    ))
}
