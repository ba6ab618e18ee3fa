//! The event log as the API serves it: a page of what was logged, and a
//! stream that replays the log and then follows it live without missing
//! or repeating an event.

use tokio::sync::mpsc;

use super::*;

/// Events read from the log at a time while replaying.
const REPLAY_PAGE: usize = 512;

/// Events a stream holds for a slow reader before the replay or the live
/// feed waits for it.
const STREAM_BUFFER: usize = 16;

impl<R: Runtime> ActorService<R> {
    /// Logged events after `since`, at most `limit`.
    pub(crate) fn events_since(&self, since: u64, limit: usize) -> Result<Vec<Event>> {
        Ok(self.store.events_since(since, limit)?)
    }

    /// Sequence number of the newest logged event.
    pub(crate) fn last_event_seq(&self) -> u64 {
        self.store.last_seq()
    }

    /// The events in sequence order, each once: with `since`, those logged
    /// after it first (so a client that reconnects with the last sequence
    /// number it saw misses nothing); with `follow`, then each new one as
    /// it is logged, until the receiver is dropped. Without `follow` the
    /// stream ends after the replay; it also ends early if the log cannot
    /// be read.
    pub(crate) fn events(
        self: &Arc<Self>,
        since: Option<u64>,
        follow: bool,
    ) -> mpsc::Receiver<Event> {
        // Subscribe before reading the log, so nothing falls between the two.
        let mut live = self.store.subscribe();
        // Without `since`, the stream starts at what is logged now, when
        // the request is answered, not when the task first runs: a client
        // that has its answer must not miss what is logged in between.
        let mut last = since.unwrap_or_else(|| self.last_event_seq());
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let svc = self.clone();
        tokio::spawn(async move {
            if since.is_some() && !svc.replay(&tx, &mut last).await {
                return;
            }
            if !follow {
                return;
            }
            loop {
                tokio::select! {
                    ev = live.recv() => match ev {
                        Ok(ev) => {
                            if ev.seq <= last {
                                continue;
                            }
                            // Writes of different actors may be announced
                            // out of order; every event up to this one is
                            // already in the log, so a gap is filled from
                            // there.
                            if ev.seq > last + 1 {
                                if !svc.replay(&tx, &mut last).await {
                                    return;
                                }
                                continue;
                            }
                            last = ev.seq;
                            if tx.send(ev).await.is_err() {
                                return;
                            }
                        }
                        // Fell behind: catch up from the log.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            if !svc.replay(&tx, &mut last).await {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        rx
    }

    /// Sends what the log holds after `last`, page by page, moving `last`
    /// along; false once the receiver is gone or the log cannot be read.
    async fn replay(&self, tx: &mpsc::Sender<Event>, last: &mut u64) -> bool {
        loop {
            let Ok(page) = self.events_since(*last, REPLAY_PAGE) else {
                return false;
            };
            if page.is_empty() {
                return true;
            }
            for ev in page {
                *last = ev.seq;
                if tx.send(ev).await.is_err() {
                    return false;
                }
            }
        }
    }
}
