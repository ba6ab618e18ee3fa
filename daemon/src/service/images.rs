//! The image cache as the API sees it: listing with users, pulls without
//! an actor, removal of unused images; and the `pulling` events of pulls.

use std::time::Duration;

use atelet_api::{ImageRef, PullImageRequest, PullProgress};

use super::*;
use crate::images::registry::{PullObserver, PullState};

/// How often a pull's progress is logged as a `pulling` event (besides its
/// start and its end): often enough for a progress display, seldom enough
/// that a large pull adds few events to the log.
const PULL_REPORT_PERIOD: Duration = Duration::from_millis(500);

impl<R: Runtime> ActorService<R> {
    /// `GET /v1/images`: the image cache, each entry with the actors whose
    /// record names it.
    pub(crate) fn list_images(&self) -> Result<Vec<Image>> {
        let mut users = self.image_users();
        Ok(self
            .images
            .list()?
            .into_iter()
            .map(|m| {
                let actors = users.remove(&m.digest).unwrap_or_default();
                m.to_api(actors)
            })
            .collect())
    }

    /// `POST /v1/images`: unpacks (and for a registry reference, pulls) an
    /// image into the cache without creating an actor, under the same
    /// policy as a create; answers its cache entry.
    pub(crate) async fn pull_image(self: &Arc<Self>, req: PullImageRequest) -> Result<Image> {
        let invalid = |m: String| ServiceError::Invalid(ValidationError::new("reference", m));
        if let ImageRef::Dir { .. } = ImageRef::parse(&req.reference).map_err(invalid)? {
            return Err(invalid(
                "a dir: image is used in place; there is nothing to pull or cache".to_string(),
            ));
        }
        self.policy.check_image("reference", &req.reference)?;
        let _op = self.begin_op()?;
        let observer = self.pull_observer("");
        let image = self
            .images
            .resolve_observed(&req.reference, Some(&observer))
            .await?;
        let digest = image.digest.clone().unwrap_or_default();
        self.list_images()?
            .into_iter()
            .find(|i| i.digest == digest)
            .ok_or_else(|| {
                ServiceError::Internal(format!("image {digest} was pulled but is not listed"))
            })
    }

    /// What reports a pull that `actor`'s create (or, with `""`, a pull
    /// request) starts: `pulling` events in the log, at its start, every
    /// [`PULL_REPORT_PERIOD`] while bytes arrive, and at its end.
    pub(crate) fn pull_observer(self: &Arc<Self>, actor: &str) -> PullObserver {
        let svc = self.clone();
        let actor = actor.to_string();
        Arc::new(move |state: Arc<PullState>| {
            tokio::spawn(svc.clone().report_pull(actor.clone(), state));
        })
    }

    async fn report_pull(self: Arc<Self>, actor: String, state: Arc<PullState>) {
        let mut logged = None;
        loop {
            // Read before the count: once finished, the count is final.
            let finished = state.is_finished();
            let done = state.done();
            if logged != Some(done) {
                let progress = PullProgress {
                    reference: state.reference.clone(),
                    digest: state.digest.clone(),
                    bytes_done: done,
                    bytes_total: state.total,
                };
                if let Err(e) = self.store.log_pull(&actor, progress).await {
                    tracing::warn!(error = %e, digest = %state.digest, "could not log a pulling event");
                }
                logged = Some(done);
            }
            if finished {
                return;
            }
            state.wait(PULL_REPORT_PERIOD).await;
        }
    }

    /// `DELETE /v1/images/{digest}`: refused (409) while any actor's record
    /// names the image, whatever its status: a stopped actor starts from it
    /// and a suspended one resumes on it.
    pub(crate) async fn delete_image(&self, digest: &str) -> Result<()> {
        let _op = self.begin_op()?;
        let lock = self.images.lock(digest).await?;
        let users = self
            .image_users()
            .remove(&lock.digest())
            .unwrap_or_default();
        if !users.is_empty() {
            return Err(ImageError::InUse {
                digest: lock.digest(),
                users,
            }
            .into());
        }
        Ok(self.images.remove(&lock)?)
    }

    /// The actors (sorted ids) whose record names each image digest.
    fn image_users(&self) -> HashMap<String, Vec<String>> {
        let mut users: HashMap<String, Vec<String>> = HashMap::new();
        for (id, s) in self.store.summaries() {
            if let Some(d) = s.image_digest {
                users.entry(d).or_default().push(id);
            }
        }
        users.values_mut().for_each(|ids| ids.sort());
        users
    }
}
