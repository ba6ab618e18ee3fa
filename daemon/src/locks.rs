//! Async locks by name: one mutex per key, made on first use. Serialises
//! the operations on one actor (or the unpacking of one image) while
//! different keys proceed in parallel.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// A lock per key.
#[derive(Debug, Default)]
pub struct KeyedLocks {
    map: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl KeyedLocks {
    /// Waits for `key`'s lock.
    pub async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }

    /// Forgets a key's lock when nobody else holds or waits for it (the
    /// caller may still hold it).
    pub fn forget(&self, key: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(key).is_some_and(|m| Arc::strong_count(m) <= 2) {
            map.remove(key);
        }
    }
}
