//! The image cache as the API sees it: listing with users, and removal of
//! unused images.

use super::*;

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
