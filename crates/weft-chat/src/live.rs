//! The live feed: follows the event log as commits land and fans each event out to every
//! subscriber in this process (WebSocket sessions, streams, the bridge), plus ephemeral events
//! such as typing that are never stored.

use std::sync::Arc;

use tokio::sync::broadcast;
use weft_core::{Event, LoggedEvent, Origin};
use weft_store::Store;

/// How many events a slow subscriber may fall behind before it must catch up from the log.
const CAPACITY: usize = 8192;
/// How often the log is checked for commits nobody announced.
const POLL: std::time::Duration = std::time::Duration::from_secs(1);
/// Log entries read per query while catching up.
const CHUNK: i64 = 1000;

/// The live feed of this process.
#[derive(Clone)]
pub struct Live {
    sender: broadcast::Sender<Arc<LoggedEvent>>,
}

impl Live {
    /// Starts following the store's event log from its current end.
    pub fn start(store: Store) -> Live {
        let (sender, _) = broadcast::channel(CAPACITY);
        tokio::spawn(tail(store, sender.clone()));
        Live { sender }
    }

    /// Subscribes to every event from now on. Ephemeral events have `seq` 0. A subscriber that
    /// lags (`RecvError::Lagged`) should catch up with `Store::events_after` from the last
    /// sequence number it saw.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LoggedEvent>> {
        self.sender.subscribe()
    }

    /// Publishes an event that is not stored (typing).
    pub fn publish_ephemeral(&self, origin: Origin, event: Event) {
        let _ = self.sender.send(Arc::new(LoggedEvent {
            seq: 0,
            at: weft_core::now_millis(),
            origin,
            event,
        }));
    }
}

async fn tail(store: Store, sender: broadcast::Sender<Arc<LoggedEvent>>) {
    let mut committed = store.committed();
    let mut last = *committed.borrow_and_update();
    loop {
        // Woken by this process's commits (and, on PostgreSQL, other instances'); the poll
        // catches writes by other processes on SQLite, such as the admin CLI.
        let target = tokio::select! {
            changed = committed.changed() => {
                if changed.is_err() {
                    return;
                }
                *committed.borrow_and_update()
            }
            _ = tokio::time::sleep(POLL) => match store.last_event_seq().await {
                Ok(seq) => seq,
                Err(_) => continue,
            },
        };
        while last < target {
            match store.events_after(last, CHUNK).await {
                Ok(events) if events.is_empty() => break,
                Ok(events) => {
                    for event in events {
                        last = event.seq;
                        // A change made by another process (instance, CLI) reaches this
                        // process's permission cache here; this process's own writes have
                        // already cleared it at commit.
                        if event.event.changes_access() {
                            store.forget_access();
                        }
                        let _ = sender.send(Arc::new(event));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, after_seq = last, "could not read the event log; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }
}
