//! Async locks by name: one mutex per key, made on first use. Serialises
//! the operations on one actor (or the unpacking of one image) while
//! different keys proceed in parallel.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// A lock per key.
#[derive(Debug, Default)]
pub(crate) struct KeyedLocks {
    map: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl KeyedLocks {
    /// Waits for `key`'s lock.
    pub(crate) async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }

    /// Keys with a lock (for tests of callers that must not leak them).
    #[cfg(test)]
    pub(crate) fn keys(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Forgets a key's lock when nobody but the caller holds or waits for
    /// it. Call it while holding the key's lock (the map and the caller's
    /// guard are the two references a lone holder accounts for).
    pub(crate) fn forget(&self, key: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(key).is_some_and(|m| Arc::strong_count(m) <= 2) {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waited_for_lock_is_not_forgotten() {
        let locks = Arc::new(KeyedLocks::default());
        let held = locks.lock("a").await;
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("a").await;
        });
        // Let the waiter queue up on the same mutex.
        while Arc::strong_count(locks.map.lock().unwrap().get("a").unwrap()) < 3 {
            tokio::task::yield_now().await;
        }
        locks.forget("a");
        assert!(locks.map.lock().unwrap().contains_key("a"));
        drop(held);
        waiter.await.unwrap();
        let held = locks.lock("a").await;
        locks.forget("a");
        assert!(!locks.map.lock().unwrap().contains_key("a"));
        drop(held);
    }
}
