//! The names weft shows for Matrix users' virtual users.
//!
//! Matrix clients show a person's name in a room from their own `m.room.member` event, which
//! the homeserver sends in the same transaction stream as their messages; the global profile
//! is only a fallback ([spec: calculating display names]). So a member event whose
//! `state_key` is its sender names that sender, and nothing else does: a member event about
//! someone else (an invite, a kick, a ban) carries the *target's* profile and says nothing
//! about who sent it.
//!
//! Nothing here waits for the homeserver on a transaction's path: the homeserver is waiting
//! for weft's answer to that very transaction. A sender weft has no name for is posted
//! under the name weft already stored, or their Matrix ID if weft has never met them, and
//! their profile is looked up in the background, which renames the virtual user once it
//! answers.
//!
//! [spec: calculating display names]: https://spec.matrix.org/latest/client-server-api/#calculating-the-display-name-for-a-user

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::sync::Semaphore;

use crate::{Bridge, VIRTUAL_KIND};

/// Names remembered at most; the rest are read again from member events or profiles.
const CACHE_SIZE: usize = 50_000;

/// Profile look-ups running at once, so a room full of new people never floods the
/// homeserver.
const LOOKUPS_IN_FLIGHT: usize = 4;

/// How long a failed or unanswered look-up is not tried again.
const RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long one profile look-up may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Known display names of Matrix users, and the profile look-ups under way.
pub(crate) struct Names {
    known: Mutex<LruCache<String, String>>,
    /// Matrix users whose profile was asked for, and when.
    asked: Mutex<LruCache<String, Instant>>,
    lookups: Semaphore,
}

impl Default for Names {
    fn default() -> Self {
        let size = NonZeroUsize::new(CACHE_SIZE).unwrap_or(NonZeroUsize::MIN);
        Names {
            known: Mutex::new(LruCache::new(size)),
            asked: Mutex::new(LruCache::new(size)),
            lookups: Semaphore::new(LOOKUPS_IN_FLIGHT),
        }
    }
}

impl Names {
    /// The name weft knows for `mxid`, if any.
    pub(crate) fn get(&self, mxid: &str) -> Option<String> {
        lock(&self.known).get(mxid).cloned()
    }

    /// Remembers a name; true if it differs from the one remembered before.
    pub(crate) fn set(&self, mxid: &str, name: &str) -> bool {
        lock(&self.known)
            .put(mxid.to_string(), name.to_string())
            .as_deref()
            != Some(name)
    }

    /// Whether a profile look-up for `mxid` should start now (none recently).
    fn should_ask(&self, mxid: &str) -> bool {
        let mut asked = lock(&self.asked);
        if asked.get(mxid).is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return false;
        }
        asked.put(mxid.to_string(), Instant::now());
        true
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Bridge {
    /// The virtual user a Matrix user posts as. Never waits for the homeserver: an empty name
    /// keeps the name weft stored (a new virtual user is named by its Matrix ID), and a
    /// profile look-up starts in the background.
    pub(crate) fn post_as(&self, mxid: &str) -> weft_chat::PostAs {
        let display_name = match self.names().get(mxid) {
            Some(name) => name,
            None => {
                self.look_up_profile(mxid);
                String::new()
            }
        };
        weft_chat::PostAs {
            kind: VIRTUAL_KIND.into(),
            external_id: mxid.to_string(),
            display_name,
            avatar_url: None,
        }
    }

    /// The profile a Matrix user's own member event gives their virtual user, remembered at
    /// once so that their later messages carry it; written by the caller.
    pub(crate) fn named_by_member_event(&self, mxid: &str, name: String) -> weft_chat::PostAs {
        self.names().set(mxid, &name);
        weft_chat::PostAs {
            kind: VIRTUAL_KIND.into(),
            external_id: mxid.to_string(),
            display_name: name,
            avatar_url: None,
        }
    }

    /// Renames a Matrix user's virtual user (from their own `m.room.member` event, or their
    /// profile), if the name is new.
    pub(crate) async fn rename_virtual_user(
        &self,
        mxid: &str,
        name: &str,
    ) -> Result<(), crate::BridgeError> {
        if !self.names().set(mxid, name) {
            return Ok(());
        }
        let who = weft_chat::PostAs {
            kind: VIRTUAL_KIND.into(),
            external_id: mxid.to_string(),
            display_name: name.to_string(),
            avatar_url: None,
        };
        self.chat().update_virtual_user(self.actor(), who).await?;
        Ok(())
    }

    /// Asks the homeserver for a profile in the background and renames the virtual user
    /// with the answer, unless a member event named them meanwhile.
    fn look_up_profile(&self, mxid: &str) {
        if !self.names().should_ask(mxid) {
            return;
        }
        let bridge = self.clone();
        let mxid = mxid.to_string();
        tokio::spawn(async move {
            let Ok(_permit) = bridge.names().lookups.acquire().await else {
                return;
            };
            let answer =
                tokio::time::timeout(LOOKUP_TIMEOUT, bridge.hs().display_name(&mxid)).await;
            let name = match answer {
                Ok(Ok(Some(name))) if !name.trim().is_empty() => name,
                Ok(Ok(_)) => return,
                Ok(Err(e)) => {
                    tracing::debug!(%mxid, error = %e, "profile look-up failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%mxid, "profile look-up timed out");
                    return;
                }
            };
            if bridge.names().get(&mxid).is_some() {
                return; // A member event, which wins, named them first.
            }
            if let Err(e) = bridge.rename_virtual_user(&mxid, &name).await {
                tracing::warn!(%mxid, error = %e, "could not rename a Matrix user's virtual user");
            }
        });
    }

    fn names(&self) -> &Names {
        &self.inner.names
    }
}
