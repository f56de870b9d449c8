//! What happens to a Matrix event weft cannot take. Nothing fails silently:
//!
//! - a failure that retrying can mend (storage, the homeserver unreachable, a media download
//!   answered 5xx or 429) fails the whole transaction, so the homeserver sends it again; a
//!   transaction is never refused for a reason retrying cannot change, since the homeserver
//!   retries its oldest transaction before any other. A transient failure that goes on for
//!   [`GIVE_UP_AFTER`] is taken as permanent, so one lost file cannot stop a room for ever;
//! - a permanent refusal (sender banned, room private, file too large, unknown relation) is
//!   logged with room and event ids, recorded for admins (`weft matrix failures`), and the
//!   sender hears of it: a short notice from the bridge bot in the room, replying to their
//!   event, at most one per sender per minute.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;
use weft_chat::ChatError;

use crate::{Bridge, BridgeError};

/// How long a transient failure of one event may keep its transaction coming back.
pub(crate) const GIVE_UP_AFTER: Duration = Duration::from_secs(15 * 60);

/// At most one notice per sender in this time.
const NOTICE_INTERVAL: Duration = Duration::from_secs(60);

/// Senders and events remembered at most.
const REMEMBERED: usize = 10_000;

/// The bridge's memory of recent refusals and retries.
pub(crate) struct Refusals {
    /// When each sender was last told.
    told: Mutex<LruCache<String, Instant>>,
    /// When each event first failed transiently.
    failing_since: Mutex<LruCache<String, Instant>>,
}

impl Default for Refusals {
    fn default() -> Self {
        let size = NonZeroUsize::new(REMEMBERED).unwrap_or(NonZeroUsize::MIN);
        Refusals {
            told: Mutex::new(LruCache::new(size)),
            failing_since: Mutex::new(LruCache::new(size)),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What to do about an inbound event's failure.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Fail the transaction: the homeserver sends it again.
    Retry,
    /// Record it, tell the sender, and go on with the transaction.
    Refuse,
}

impl BridgeError {
    /// Whether retrying the same event later may succeed.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            BridgeError::Store(_) | BridgeError::Chat(ChatError::Store(_)) => true,
            BridgeError::Homeserver(e) => e.is_transient(),
            _ => false,
        }
    }

    /// What the sender of a refused event is told.
    fn for_sender(&self) -> String {
        match self {
            BridgeError::Refused(why)
            | BridgeError::Chat(
                ChatError::Forbidden(why) | ChatError::Invalid(why) | ChatError::TooLarge(why),
            ) => why.clone(),
            BridgeError::Chat(ChatError::NotFound(what)) => format!("{what} not found on weft"),
            _ => "weft could not take it; its admins can see why".into(),
        }
    }
}

impl Bridge {
    /// Decides between retrying and refusing an inbound event's failure.
    pub(crate) fn verdict(&self, event_id: &str, error: &BridgeError) -> Verdict {
        if !error.is_transient() {
            return Verdict::Refuse;
        }
        // Storage trouble is weft's own and never becomes a refusal.
        if !matches!(error, BridgeError::Homeserver(_)) {
            return Verdict::Retry;
        }
        let mut failing = lock(&self.inner.refusals.failing_since);
        let since = *failing.get_or_insert(event_id.to_string(), Instant::now);
        if since.elapsed() < GIVE_UP_AFTER {
            Verdict::Retry
        } else {
            failing.pop(event_id);
            Verdict::Refuse
        }
    }

    /// Tells a Matrix user that weft refused their event: a notice from the bridge bot,
    /// replying to it, at most once a minute per sender. Sent in the background: the
    /// homeserver is waiting for the transaction's answer.
    pub(crate) fn tell_sender(
        &self,
        matrix_room: &str,
        event_id: &str,
        sender: &str,
        error: &BridgeError,
    ) {
        if matrix_room.is_empty() || event_id.is_empty() || self.ids().is_ours(sender) {
            return;
        }
        {
            let mut told = lock(&self.inner.refusals.told);
            if told
                .get(sender)
                .is_some_and(|at| at.elapsed() < NOTICE_INTERVAL)
            {
                return;
            }
            told.put(sender.to_string(), Instant::now());
        }
        let text = format!("Not delivered to weft: {}", error.for_sender());
        let Ok(refused) = <&ruma::EventId>::try_from(event_id) else {
            return;
        };
        let content = crate::translate::refusal_notice(&text, refused, sender);
        let (bridge, room, txn) = (
            self.clone(),
            matrix_room.to_string(),
            format!("refused-{event_id}"),
        );
        tokio::spawn(async move {
            let bot = bridge.ids().bot();
            if let Err(e) = bridge
                .send(&room, "m.room.message", &txn, &content, &bot)
                .await
            {
                tracing::warn!(matrix_room_id = %room, error = %e, "could not tell a Matrix user that weft refused their event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HsError;

    fn hs(status: Option<u16>) -> BridgeError {
        BridgeError::Homeserver(HsError {
            status,
            errcode: "M_UNKNOWN".into(),
            message: String::new(),
            retry_after_ms: None,
        })
    }

    #[test]
    fn transient_is_what_retrying_can_mend() {
        assert!(hs(None).is_transient(), "unreachable");
        assert!(hs(Some(502)).is_transient());
        assert!(hs(Some(429)).is_transient());
        assert!(!hs(Some(404)).is_transient());
        assert!(!BridgeError::Refused("no".into()).is_transient());
        assert!(!BridgeError::Chat(ChatError::TooLarge("big".into())).is_transient());
    }

    #[test]
    fn senders_hear_the_reason() {
        let e = BridgeError::Chat(ChatError::Forbidden("you are banned from this room".into()));
        assert_eq!(e.for_sender(), "you are banned from this room");
        assert!(hs(Some(404)).for_sender().contains("admins"));
    }
}
