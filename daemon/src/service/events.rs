//! The event log as the API serves it: pages of what was logged, and the
//! live feed of what is logged next.

use super::*;

impl<R: Runtime> ActorService<R> {
    /// Logged events after `since`, at most `limit`.
    pub fn events_since(&self, since: u64, limit: usize) -> Result<Vec<Event>> {
        Ok(self.store.events_since(since, limit)?)
    }

    /// Sequence number of the newest logged event.
    pub fn last_event_seq(&self) -> u64 {
        self.store.last_seq()
    }

    /// Live events.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.store.subscribe()
    }
}
