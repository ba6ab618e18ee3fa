//! Creating an actor: validation, the node's admission policy, its image,
//! and the first record (then a start, unless the request says not to).

use super::*;

impl<R: Runtime> ActorService<R> {
    /// `POST /v1/actors`.
    pub(crate) async fn create(self: &Arc<Self>, req: CreateActorRequest) -> Result<Actor> {
        // An id that fails validation is not written to the log.
        let id = match validate_actor_id(&req.id) {
            Ok(()) => req.id.clone(),
            Err(_) => "(invalid)".to_string(),
        };
        self.measured("create", &id, self.create_inner(req)).await
    }

    async fn create_inner(self: &Arc<Self>, req: CreateActorRequest) -> Result<Actor> {
        validate_create(&req)?;
        if req.spec.containers.len() > 1 {
            return Err(ServiceError::NotSupported(
                "spec.containers: multi-container actors are not supported yet (one container per actor)".to_string(),
            ));
        }
        // Before any image is read: image_dirs keeps the daemon from opening
        // (and unpacking) host paths the node does not allow.
        self.policy.check(&req)?;
        // Held (pinned) until the record names the image's digest.
        let mut images = Vec::new();
        for (i, c) in req.spec.containers.iter().enumerate() {
            let image = self.images.resolve(&c.image).await?;
            crate::bundle::check_process(&format!("spec.containers[{i}]"), c, &image.config)?;
            images.push(image);
        }
        let start = req.start.unwrap_or(true);
        let _op = self.begin_op()?;
        if start {
            self.runtime
                .ensure_available()
                .map_err(runtime_err("create"))?;
        }
        let _guard = self.locks.lock(&req.id).await;
        if self.store.contains(&req.id)? {
            return Err(ServiceError::AlreadyExists(req.id));
        }
        let mut rec = ActorRecord::new(req.id, req.template, req.spec, now_rfc3339());
        rec.image_digest = images.first().and_then(|i| i.digest.clone());
        {
            // Count and insert as one step, or concurrent creates could all
            // pass max_actors.
            let _admission = self.admission.lock().await;
            let admitted: Result<()> = match self.policy.check_count(self.store.len()) {
                Ok(()) => self
                    .store
                    .insert_new(&rec, "created")
                    .await
                    .map_err(ServiceError::from),
                Err(e) => Err(ServiceError::from(e)),
            };
            if let Err(e) = admitted {
                // No record: its lock must not outlive the request.
                self.locks.forget(&rec.id);
                return Err(e);
            }
        }
        tracing::info!(actor = %rec.id, op = "create", "actor created");
        if start {
            self.start_locked(&mut rec, "create", images.into_iter().next())
                .await?;
        }
        Ok(rec.to_api())
    }
}
