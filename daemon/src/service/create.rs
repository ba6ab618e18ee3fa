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
        if let Some(from) = req.restore_from.clone() {
            return match (from.actor, from.url) {
                (Some(actor), _) => {
                    self.create_clone(req, &actor, from.snapshot.as_deref())
                        .await
                }
                (None, Some(url)) => self.create_from_url(req, &url).await,
                (None, None) => Err(ServiceError::Invalid(ValidationError::new(
                    "restoreFrom",
                    "give exactly one of actor and url",
                ))),
            };
        }
        // Validation requires a spec without restoreFrom.
        let Some(spec) = req.spec.clone() else {
            return Err(ServiceError::Invalid(ValidationError::new(
                "spec", "required",
            )));
        };
        if spec.containers.len() > 1 {
            return Err(ServiceError::NotSupported(
                "spec.containers: multi-container actors are not supported yet (one container per actor)".to_string(),
            ));
        }
        // Before any image is read: image_dirs keeps the daemon from opening
        // (and unpacking) host paths the node does not allow.
        self.policy.check(&req)?;
        let asked = spec.network.as_ref().map(|n| n.mode.as_str());
        let mode = match &self.network {
            Some(net) => net.mode_for(asked),
            None if asked == Some(NetworkMode::Bridge.as_str()) => {
                return Err(ServiceError::Unavailable(
                    "spec.network.mode: networking is not set up on this daemon".to_string(),
                ))
            }
            None => NetworkMode::None,
        };
        if mode == NetworkMode::None {
            atelet_api::validate_needs_no_network(&spec)?;
        }
        // Held (pinned) until the record names the image's digest.
        let mut images = Vec::new();
        for (i, c) in spec.containers.iter().enumerate() {
            let observer = self.pull_observer(&req.id);
            let image = self
                .images
                .resolve_observed(&c.image, Some(&observer))
                .await?;
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
        // Before the record is written: a refusal creates nothing.
        let memory = if start {
            let limit = SandboxResources::of(&spec).limits.memory_bytes;
            match self.reserve_memory(&req.id, limit) {
                Ok(m) => Some(m),
                Err(e) => {
                    // No record: its lock must not outlive the request.
                    self.locks.forget(&req.id);
                    return Err(e);
                }
            }
        } else {
            None
        };
        let mut rec = ActorRecord::new(req.id, req.template, spec, now_rfc3339());
        rec.image_digest = images.first().and_then(|i| i.digest.clone());
        rec.network.mode = mode;
        if let Err(e) = self.admit(&mut rec, "created").await {
            // No record: its lock must not outlive the request.
            self.locks.forget(&rec.id);
            return Err(e);
        }
        tracing::info!(actor = %rec.id, op = "create", "actor created");
        if let Some(memory) = memory {
            self.start_locked(&mut rec, "create", images.into_iter().next(), memory)
                .await?;
        }
        Ok(rec.to_api())
    }

    /// Stores a new actor's first record, within the node's count
    /// (`max_actors`) and with its address and published ports: count,
    /// reservation and insert as one step, or concurrent creates could all
    /// pass the count or take one address. On failure nothing is kept.
    pub(super) async fn admit(&self, rec: &mut ActorRecord, reason: &str) -> Result<()> {
        let _admission = self.admission.lock().await;
        self.policy.check_count(self.store.len())?;
        self.reserve_network(rec)?;
        let inserted = self.store.insert_new(rec, reason).await;
        if inserted.is_err() {
            self.unpublish(&rec.id);
        }
        Ok(inserted?)
    }

    /// For a bridged actor: picks its address and binds its published
    /// ports (a port that is taken refuses the create, and then none of
    /// its ports stays bound). Called under the admission lock, just
    /// before the record that holds the address is written.
    pub(super) fn reserve_network(&self, rec: &mut ActorRecord) -> Result<()> {
        let Some(net) = &self.network else {
            return Ok(());
        };
        if rec.network.mode != NetworkMode::Bridge {
            return Ok(());
        }
        let subnet = net.config().subnet;
        let ip = self
            .store
            .free_ip(&subnet)?
            .ok_or(crate::network::NetworkError::Exhausted(subnet))?;
        rec.network.ip = Some(ip);
        net.ports
            .publish(&rec.id, &published_ports(&rec.spec))
            .map_err(|e| ServiceError::PortTaken(format!("cannot create actor {}: {e}", rec.id)))
    }

    /// Closes the published ports of an actor that was not created after all.
    pub(super) fn unpublish(&self, id: &str) {
        if let Some(net) = &self.network {
            net.ports.unpublish(id);
        }
    }
}

/// The (hostPort, containerPort) pairs a spec publishes.
pub(super) fn published_ports(spec: &atelet_api::ActorSpec) -> Vec<(u16, u16)> {
    spec.containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter_map(|p| {
            let host = u16::try_from(p.host_port?).ok()?;
            let container = u16::try_from(p.container_port).ok()?;
            Some((host, container))
        })
        .collect()
}
