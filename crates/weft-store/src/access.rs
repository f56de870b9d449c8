//! A cache of rooms and of people's standing in them (membership, ban), the two reads every
//! post and every read of a room needs for its permission check.
//!
//! Correctness comes before speed here: a ban must stop the next post. So the cache is
//! emptied whenever this process commits a write that changed a room, a membership or a ban
//! (the writer does it after `COMMIT` and before it answers the caller), and whenever the
//! event log shows such a change made elsewhere (another instance, the CLI; see
//! [`Store::forget_access`]). A generation number, checked under the same lock as the
//! insert, keeps a read that raced with an invalidation from putting stale data back. Entries
//! also expire after [`ACCESS_CACHE_TTL`], a backstop for changes that leave no event.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weft_core::{Id, Membership, Room};

use crate::{Result, Store};

/// How long a cached room or standing is trusted at most.
pub const ACCESS_CACHE_TTL: Duration = Duration::from_secs(5);

/// Entries kept before the cache drops everything and starts again.
const MAX_ENTRIES: usize = 100_000;

/// A membership (if any) and whether a ban stands.
type Standing = (Option<Membership>, bool);

/// The virtual users banned from one room: external ids by kind.
pub(crate) type VirtualBans = Arc<HashMap<String, HashSet<String>>>;

#[derive(Default)]
pub(crate) struct AccessCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    generation: u64,
    rooms: HashMap<Id, (Room, Instant)>,
    standings: HashMap<(Id, Id), (Standing, Instant)>,
    virtual_bans: HashMap<Id, (VirtualBans, Instant)>,
}

impl AccessCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything: something a permission check depends on has changed.
    pub(crate) fn invalidate(&self) {
        let mut entries = self.entries();
        entries.generation += 1;
        entries.rooms.clear();
        entries.standings.clear();
        entries.virtual_bans.clear();
    }

    fn generation(&self) -> u64 {
        self.entries().generation
    }

    fn room(&self, id: Id) -> Option<Room> {
        let entries = self.entries();
        let (room, at) = entries.rooms.get(&id)?;
        (at.elapsed() < ACCESS_CACHE_TTL).then(|| room.clone())
    }

    fn put_room(&self, generation: u64, room: Room) {
        let mut entries = self.entries();
        if entries.generation != generation {
            return;
        }
        if entries.rooms.len() >= MAX_ENTRIES {
            entries.rooms.clear();
        }
        entries.rooms.insert(room.id, (room, Instant::now()));
    }

    fn standing(&self, key: (Id, Id)) -> Option<Standing> {
        let entries = self.entries();
        let (standing, at) = entries.standings.get(&key)?;
        (at.elapsed() < ACCESS_CACHE_TTL).then(|| standing.clone())
    }

    fn put_standing(&self, generation: u64, key: (Id, Id), standing: Standing) {
        let mut entries = self.entries();
        if entries.generation != generation {
            return;
        }
        if entries.standings.len() >= MAX_ENTRIES {
            entries.standings.clear();
        }
        entries.standings.insert(key, (standing, Instant::now()));
    }
}

impl AccessCache {
    fn virtual_bans(&self, room_id: Id) -> Option<VirtualBans> {
        let entries = self.entries();
        let (bans, at) = entries.virtual_bans.get(&room_id)?;
        (at.elapsed() < ACCESS_CACHE_TTL).then(|| bans.clone())
    }

    fn put_virtual_bans(&self, generation: u64, room_id: Id, bans: VirtualBans) {
        let mut entries = self.entries();
        if entries.generation != generation {
            return;
        }
        if entries.virtual_bans.len() >= MAX_ENTRIES {
            entries.virtual_bans.clear();
        }
        entries.virtual_bans.insert(room_id, (bans, Instant::now()));
    }
}

impl Store {
    /// Whether the virtual user `(kind, external_id)` is banned from the room. Cached per
    /// room, like standings: every message a bridge brings in asks.
    pub async fn is_virtual_banned(
        &self,
        room_id: Id,
        kind: &str,
        external_id: &str,
    ) -> Result<bool> {
        let bans = match self.access.virtual_bans(room_id) {
            Some(bans) => bans,
            None => {
                let generation = self.access.generation();
                let bans: VirtualBans = Arc::new(self.load_virtual_bans(room_id).await?);
                self.access
                    .put_virtual_bans(generation, room_id, bans.clone());
                bans
            }
        };
        Ok(bans.get(kind).is_some_and(|ids| ids.contains(external_id)))
    }

    /// A room by id, from the access cache when it can be trusted.
    pub async fn room(&self, id: Id) -> Result<Option<Room>> {
        if let Some(room) = self.access.room(id) {
            return Ok(Some(room));
        }
        let generation = self.access.generation();
        let room = self.load_room(id).await?;
        if let Some(room) = &room {
            self.access.put_room(generation, room.clone());
        }
        Ok(room)
    }

    /// A user's standing in a room for a permission check: their membership (if any) and
    /// whether they are banned. Cached: the membership's role is current, but its read mark
    /// and favourite flag may lag; read those with [`Store::membership`].
    pub async fn standing(&self, room_id: Id, user_id: Id) -> Result<Standing> {
        let key = (room_id, user_id);
        if let Some(standing) = self.access.standing(key) {
            return Ok(standing);
        }
        let generation = self.access.generation();
        let membership = self.membership(room_id, user_id).await?;
        let banned = membership.is_none() && self.is_banned(room_id, user_id).await?;
        self.access
            .put_standing(generation, key, (membership.clone(), banned));
        Ok((membership, banned))
    }

    /// Drops cached rooms and standings because the event log shows a change to rooms or
    /// memberships made outside this process's writer (another instance, the CLI).
    pub fn forget_access(&self) {
        self.access.invalidate();
    }
}
