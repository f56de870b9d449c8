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
//! under the name weft already stored, or their Matrix ID if weft has never met them; in the
//! background the stored name is remembered, or, for someone weft has never named, their
//! profile is looked up, which renames the virtual user once it answers.
//!
//! Every instance keeps its own cache, and any of them may apply a transaction, so the cache
//! only says *whether* weft has a name for someone, never *which*: messages claim no name
//! (posting keeps the stored one), so an instance that is behind cannot rename a person back
//! with their next message, and a profile's answer renames nobody weft has named since. A
//! rename is logged ([`weft_core::Event::VirtualUserUpdated`]) for whoever shows names.
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

    /// Remembers that weft has a name for `mxid`.
    pub(crate) fn set(&self, mxid: &str, name: &str) {
        lock(&self.known).put(mxid.to_string(), name.to_string());
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
    /// The virtual user a Matrix user posts as. It claims no name: posting keeps the name
    /// weft stored (a new virtual user is named by its Matrix ID), so only a member event or
    /// a profile renames anyone, and an instance whose cache is behind never renames people
    /// back. Never waits for the homeserver: for someone weft has no name for, a look-up
    /// starts in the background.
    pub(crate) fn post_as(&self, mxid: &str) -> weft_chat::PostAs {
        if self.names().get(mxid).is_none() {
            self.look_up_profile(mxid);
        }
        weft_chat::PostAs {
            kind: VIRTUAL_KIND.into(),
            external_id: mxid.to_string(),
            display_name: String::new(),
            avatar_url: None,
        }
    }

    /// The profile a Matrix user's own member event gives their virtual user (written by the
    /// caller); from then on no profile look-up renames them.
    pub(crate) fn named_by_member_event(&self, mxid: &str, name: String) -> weft_chat::PostAs {
        self.names().set(mxid, &name);
        weft_chat::PostAs {
            kind: VIRTUAL_KIND.into(),
            external_id: mxid.to_string(),
            display_name: name,
            avatar_url: None,
        }
    }

    /// Renames a Matrix user's virtual user. Always written (the store changes nothing when
    /// the name is the same): this instance's cache may be behind another's rename.
    pub(crate) async fn rename_virtual_user(
        &self,
        mxid: &str,
        name: &str,
    ) -> Result<(), crate::BridgeError> {
        self.names().set(mxid, name);
        let who = weft_chat::PostAs {
            kind: VIRTUAL_KIND.into(),
            external_id: mxid.to_string(),
            display_name: name.to_string(),
            avatar_url: None,
        };
        self.chat().update_virtual_user(self.actor(), who).await?;
        Ok(())
    }

    /// Learns a sender's name in the background: the one weft stored (after a restart, or
    /// when the cache let it go), or else their profile from the homeserver, which renames
    /// the virtual user, unless a member event named them meanwhile.
    fn look_up_profile(&self, mxid: &str) {
        if !self.names().should_ask(mxid) {
            return;
        }
        let bridge = self.clone();
        let mxid = mxid.to_string();
        tokio::spawn(async move {
            match bridge
                .chat()
                .views()
                .virtual_user_by_external_id(VIRTUAL_KIND, &mxid)
                .await
            {
                // Named before (a member event, a profile): that name stands.
                Ok(Some(stored)) if stored.display_name != mxid => {
                    bridge.names().set(&mxid, &stored.display_name);
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%mxid, error = %e, "could not read a virtual user");
                    return;
                }
            }
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
            // Or named them on another instance meanwhile.
            if let Ok(Some(stored)) = bridge
                .chat()
                .views()
                .virtual_user_by_external_id(VIRTUAL_KIND, &mxid)
                .await
                && stored.display_name != mxid
            {
                bridge.names().set(&mxid, &stored.display_name);
                return;
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
