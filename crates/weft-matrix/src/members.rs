//! Membership across the bridge: who is in a bridged room, on both sides.
//!
//! Each bridged room crosses its members one of three ways ([`Membership`]: the `[matrix]`
//! default, or the room's own setting from `weft matrix membership`):
//!
//! - **full**: every weft member's puppet is joined to the Matrix room, and everyone joined to
//!   the Matrix room is listed among the weft room's members (`VirtualJoined`). Live, a weft
//!   join joins the puppet and a weft leave makes it leave (the outbound sender, in the log's
//!   order); a Matrix join or leave lists or unlists the Matrix user (inbound). Kicks and bans
//!   cross as moderation does (`moderation`), and take people off the lists too.
//! - **lazy**: a puppet joins when its weft user first acts in the room and leaves when they
//!   leave it; Matrix people show in weft as they speak.
//! - **off**: nothing crosses; puppets join only to send.
//!
//! A **sync** brings a full room up to date: it lists the Matrix room's members in weft and
//! joins every weft member's puppet. Joins are paced: at most `member_sync_concurrency` in
//! flight, halved on every 429 (after waiting as long as the homeserver asks) and grown back
//! one at a time; they never share the outbound sender's path, so live messages keep flowing.
//! The sync's position is stored after every page of members (walked in id order), so a
//! crash resumes after the last page saved; a puppet already joined is skipped (the bridge
//! records every join), so nothing is joined twice. It runs under a lease per room: with
//! several instances, one syncs a room at a time.
//!
//! Spec: [joining rooms](https://spec.matrix.org/latest/client-server-api/#joining-rooms),
//! [`GET /joined_members`](https://spec.matrix.org/latest/client-server-api/#get_matrixclientv3roomsroomidjoined_members),
//! [rate limiting](https://spec.matrix.org/latest/client-server-api/#rate-limiting).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use weft_chat::{PostAs, VIRTUAL_MEMBERS_PER_WRITE};
use weft_core::{Id, RoomKind, User};

use crate::config::Membership;
use crate::tables::{MatrixRoom, MatrixWrites, MemberSync};
use crate::translate::IncomingMember;
use crate::{Bridge, BridgeError, VIRTUAL_KIND};

/// How many weft members a sync reads at a time; its position is saved after each page.
const SYNC_PAGE: i64 = 200;

impl Bridge {
    /// How a bridged room's members cross: its own setting, else the configuration's.
    pub async fn membership_of(&self, room_id: Id) -> Result<Membership, BridgeError> {
        Ok(self
            .tables()
            .membership_mode(room_id)
            .await?
            .unwrap_or(self.config().settings.membership))
    }

    /// Gives a room its own membership setting (`None`: the configuration's default).
    pub async fn set_membership(
        &self,
        room_id: Id,
        mode: Option<Membership>,
    ) -> Result<(), BridgeError> {
        self.tables().set_membership_mode(room_id, mode).await?;
        tracing::info!(%room_id, membership = mode.map(Membership::as_str).unwrap_or("default"), "a room's membership setting changed");
        self.unlist_unless_full(room_id).await
    }

    /// A room that is not full (any more) lists no Matrix people: nothing would keep that list
    /// true. They show again as they speak, or with a sync when the room is full again.
    async fn unlist_unless_full(&self, room_id: Id) -> Result<(), BridgeError> {
        if self.membership_of(room_id).await? == Membership::Full {
            return Ok(());
        }
        let listed = self
            .chat()
            .views()
            .virtual_member_ids(room_id, VIRTUAL_KIND)
            .await?;
        for chunk in listed.chunks(VIRTUAL_MEMBERS_PER_WRITE) {
            self.chat()
                .leave_virtual(self.actor(), room_id, VIRTUAL_KIND, chunk.to_vec())
                .await?;
        }
        if !listed.is_empty() {
            tracing::info!(%room_id, unlisted = listed.len(), "a room no longer full lists no Matrix people");
        }
        Ok(())
    }

    /// A weft user joined a bridged room: in a full room, their puppet joins the Matrix room.
    pub(crate) async fn member_joined_on_matrix(
        &self,
        mapped: &MatrixRoom,
        user_id: Id,
    ) -> Result<(), BridgeError> {
        if self.membership_of(mapped.room_id).await? != Membership::Full {
            return Ok(());
        }
        let Some(user) = self.chat().views().user(user_id).await? else {
            return Ok(());
        };
        self.join_puppet(&mapped.matrix_room_id, &user).await?;
        Ok(())
    }

    /// A weft user left a bridged room on their own: unless membership is off, their puppet
    /// leaves the Matrix room too. (A moderator's removal is a kick, see `moderation`.)
    pub(crate) async fn member_left_on_matrix(
        &self,
        mapped: &MatrixRoom,
        user_id: Id,
    ) -> Result<(), BridgeError> {
        if self.membership_of(mapped.room_id).await? == Membership::Off {
            return Ok(());
        }
        let Some(user) = self.chat().views().user(user_id).await? else {
            return Ok(());
        };
        let (room, mxid) = (mapped.matrix_room_id.clone(), self.ids().puppet(&user));
        if !self.tables().is_member(&room, &mxid).await? {
            return Ok(());
        }
        self.hs().leave(&room, &mxid).await?;
        self.tables()
            .write(move |tx| Box::pin(async move { tx.delete_matrix_member(&room, &mxid).await }))
            .await?;
        tracing::info!(room_id = %mapped.room_id, matrix_room_id = %mapped.matrix_room_id, %user_id, "a puppet left with its weft user");
        Ok(())
    }

    /// A Matrix user's membership of a bridged room changed (their own join or leave, or a
    /// moderator's kick or ban): in a full room, weft's member list follows.
    pub(crate) async fn matrix_member_changed(
        &self,
        room_id: Id,
        member: &IncomingMember,
    ) -> Result<(), BridgeError> {
        let target = member.target.as_str();
        if self.ids().is_ours(target) || self.membership_of(room_id).await? != Membership::Full {
            return Ok(());
        }
        match member.membership.as_str() {
            "join" => {
                let person = match &member.display_name {
                    Some(name) => self.named_by_member_event(target, name.clone()),
                    None => PostAs {
                        kind: VIRTUAL_KIND.into(),
                        external_id: target.to_string(),
                        display_name: String::new(),
                        avatar_url: None,
                    },
                };
                if self
                    .chat()
                    .join_virtual(self.actor(), room_id, vec![person])
                    .await?
                    > 0
                {
                    tracing::info!(%room_id, mxid = %target, "a Matrix user is listed among the room's members");
                }
            }
            "leave" | "ban" => {
                self.chat()
                    .leave_virtual(
                        self.actor(),
                        room_id,
                        VIRTUAL_KIND,
                        vec![target.to_string()],
                    )
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Registers a weft user's puppet (named) and joins it to a Matrix room, unless it is in;
    /// answers whether it joined now.
    async fn join_puppet(&self, matrix_room: &str, user: &User) -> Result<bool, BridgeError> {
        let mxid = self.ids().puppet(user);
        let known = self.tables().puppet(&mxid).await?;
        let named = known.as_ref().and_then(|n| n.as_deref()) == Some(user.display_name.as_str());
        let mxid = if named {
            mxid
        } else {
            self.ensure_puppet(user).await?
        };
        self.ensure_joined(matrix_room, &mxid).await
    }

    /// Asks for a room's membership sync (a running server takes it up within a second, see
    /// [`Bridge::start`]); answers where it stands. Refused for rooms that are not bridged
    /// (private, one-to-one) or do not exist.
    pub async fn request_member_sync(&self, room_id: Id) -> Result<MemberSync, BridgeError> {
        self.syncable_room(room_id).await?;
        let total = self.chat().views().member_total(room_id, "").await?;
        let sync = self.tables().request_member_sync(room_id, total).await?;
        tracing::info!(%room_id, total, "a membership sync was asked for");
        Ok(sync)
    }

    /// Where a room's membership sync stands, if one was ever asked for.
    pub async fn member_sync(&self, room_id: Id) -> Result<Option<MemberSync>, BridgeError> {
        Ok(self.tables().member_sync(room_id).await?)
    }

    async fn syncable_room(&self, room_id: Id) -> Result<weft_core::Room, BridgeError> {
        let room = self
            .chat()
            .views()
            .room(room_id)
            .await?
            .ok_or_else(|| BridgeError::Refused("there is no such room".into()))?;
        if room.kind != RoomKind::Public {
            return Err(BridgeError::Refused(
                "only public rooms are bridged, so only their members are synced".into(),
            ));
        }
        Ok(room)
    }

    /// Runs the membership sync asked for in a room (bridging the room first if it is not
    /// yet), from where it stands: brings the membership up to date on both sides. `progress`
    /// hears where it stands after every page. Answers where it ended; a sync that is not
    /// asked for (finished, perhaps by another instance) is not run again.
    pub async fn sync_members(
        &self,
        room_id: Id,
        progress: &(dyn Fn(&MemberSync) + Send + Sync),
    ) -> Result<MemberSync, BridgeError> {
        let room = self.syncable_room(room_id).await?;
        let _lease = self
            .tables()
            .take_lease(&format!("matrix-members:{room_id}"))
            .await?;
        let Some(mut sync) = self.tables().member_sync(room_id).await? else {
            return Err(BridgeError::Refused(
                "no membership sync was asked for in this room".into(),
            ));
        };
        if sync.finished_at.is_some() {
            return Ok(sync);
        }
        if sync.walked > 0 {
            tracing::info!(%room_id, walked = sync.walked, total = sync.total, "taking up a membership sync where it stopped");
        }
        sync.updated_at = Some(weft_core::now_millis());
        self.tables().save_member_sync(sync.clone()).await?;
        let mapped = self.ensure_matrix_room(&room).await?;
        let listed = self.list_matrix_members(&mapped).await?;
        tracing::info!(%room_id, matrix_room_id = %mapped.matrix_room_id, listed, "Matrix members are listed in weft");
        progress(&sync);
        let mut pacer = Pacer::new(self.config().settings.member_sync_concurrency);
        loop {
            let page = self
                .chat()
                .views()
                .member_ids_after(room_id, sync.after_user_id, SYNC_PAGE)
                .await?;
            let Some(last) = page.last().copied() else {
                break;
            };
            let users = self.chat().views().users_by_ids(&page).await?;
            sync.joined += self
                .join_puppets(&mapped.matrix_room_id, users, &mut pacer)
                .await?;
            sync.walked += page.len() as i64;
            sync.after_user_id = Some(last);
            sync.updated_at = Some(weft_core::now_millis());
            self.tables().save_member_sync(sync.clone()).await?;
            tracing::info!(%room_id, walked = sync.walked, joined = sync.joined, total = sync.total, in_flight = pacer.limit, "membership sync");
            progress(&sync);
        }
        let now = weft_core::now_millis();
        sync.finished_at = Some(now);
        sync.updated_at = Some(now);
        self.tables().save_member_sync(sync.clone()).await?;
        progress(&sync);
        tracing::info!(%room_id, matrix_room_id = %mapped.matrix_room_id, walked = sync.walked, joined = sync.joined, "membership sync finished");
        Ok(sync)
    }

    /// Joins these weft users' puppets to a Matrix room, paced; answers how many joined.
    async fn join_puppets(
        &self,
        matrix_room: &str,
        users: Vec<User>,
        pacer: &mut Pacer,
    ) -> Result<i64, BridgeError> {
        let mut waiting: std::collections::VecDeque<User> = users
            .into_iter()
            .filter(|u| u.username != crate::BRIDGE_USERNAME)
            .collect();
        let mut in_flight = FuturesUnordered::new();
        let mut joined = 0;
        loop {
            while in_flight.len() < pacer.limit
                && let Some(user) = waiting.pop_front()
            {
                in_flight.push(async move {
                    let outcome = self.join_puppet(matrix_room, &user).await;
                    (user, outcome)
                });
            }
            let Some((user, outcome)) = in_flight.next().await else {
                return Ok(joined);
            };
            match outcome {
                Ok(now) => {
                    joined += i64::from(now);
                    pacer.succeeded();
                }
                Err(BridgeError::Homeserver(e)) if e.status == Some(429) => {
                    let wait = pacer.limited(e.retry_after_ms);
                    tracing::info!(matrix_room_id = %matrix_room, wait_ms = wait.as_millis() as u64, in_flight = pacer.limit, "the homeserver asks the membership sync to slow down");
                    waiting.push_front(user);
                    tokio::time::sleep(wait).await;
                }
                // A puppet that cannot join (banned on Matrix) stays out; the rest go on.
                Err(BridgeError::Homeserver(e)) if e.status == Some(403) => {
                    tracing::warn!(matrix_room_id = %matrix_room, user = %user.username, error = %e, "a puppet could not join");
                }
                Err(BridgeError::Homeserver(e)) if e.is_transient() => {
                    tracing::warn!(matrix_room_id = %matrix_room, error = %e, "the homeserver failed a join; retrying");
                    waiting.push_back(user);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Lists the Matrix room's members among the weft room's (and unlists those who are no
    /// longer in it); answers how many are listed.
    async fn list_matrix_members(&self, mapped: &MatrixRoom) -> Result<usize, BridgeError> {
        let room_id = mapped.room_id;
        let on_matrix: Vec<(String, Option<String>, Option<String>)> = self
            .hs()
            .joined_members(&mapped.matrix_room_id)
            .await?
            .into_iter()
            .filter(|(mxid, _, _)| !self.ids().is_ours(mxid))
            .collect();
        let listed: HashSet<String> = self
            .chat()
            .views()
            .virtual_member_ids(room_id, VIRTUAL_KIND)
            .await?
            .into_iter()
            .collect();
        let present: HashSet<&str> = on_matrix.iter().map(|(m, _, _)| m.as_str()).collect();
        let gone: Vec<String> = listed
            .iter()
            .filter(|m| !present.contains(m.as_str()))
            .cloned()
            .collect();
        for chunk in gone.chunks(VIRTUAL_MEMBERS_PER_WRITE) {
            self.chat()
                .leave_virtual(self.actor(), room_id, VIRTUAL_KIND, chunk.to_vec())
                .await?;
        }
        let mut avatars = HashMap::new();
        let people: Vec<PostAs> = on_matrix
            .iter()
            .map(|(mxid, name, avatar)| {
                if let Some(mxc) = avatar {
                    avatars.insert(mxid.clone(), mxc.clone());
                }
                PostAs {
                    kind: VIRTUAL_KIND.into(),
                    external_id: mxid.clone(),
                    display_name: name.clone().unwrap_or_default(),
                    avatar_url: None,
                }
            })
            .collect();
        for chunk in people.chunks(VIRTUAL_MEMBERS_PER_WRITE) {
            self.chat()
                .join_virtual(self.actor(), room_id, chunk.to_vec())
                .await?;
        }
        self.learn_avatars(avatars);
        Ok(on_matrix.len())
    }
}

/// How many joins a sync keeps in flight: halved on every 429, grown back by one after as
/// many successes in a row as it allows (additive increase, multiplicative decrease).
struct Pacer {
    limit: usize,
    max: usize,
    streak: usize,
}

impl Pacer {
    fn new(max: usize) -> Pacer {
        let max = max.max(1);
        Pacer {
            limit: max,
            max,
            streak: 0,
        }
    }

    fn succeeded(&mut self) {
        self.streak += 1;
        if self.streak >= self.limit && self.limit < self.max {
            self.limit += 1;
            self.streak = 0;
        }
    }

    /// A 429: fewer in flight from now on; answers how long to wait first.
    fn limited(&mut self, retry_after_ms: Option<u64>) -> Duration {
        self.limit = (self.limit / 2).max(1);
        self.streak = 0;
        Duration::from_millis(retry_after_ms.unwrap_or(1_000).clamp(50, 60_000))
    }
}

impl Bridge {
    /// Runs a room's membership sync in the background, unless this process runs it already;
    /// progress goes to the log.
    pub(crate) fn sync_members_soon(&self, room_id: Id) {
        if !self.syncing().insert(room_id) {
            return;
        }
        let bridge = self.clone();
        tokio::spawn(async move {
            // One sync at a time in this process: a homeserver is not flooded by many rooms at
            // once.
            let turn = bridge.inner.member_syncs.lock().await;
            if let Err(e) = bridge.sync_members(room_id, &|_| {}).await {
                tracing::error!(%room_id, error = %e, "a membership sync failed; it is taken up again");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            drop(turn);
            bridge.syncing().remove(&room_id);
        });
    }

    fn syncing(&self) -> std::sync::MutexGuard<'_, HashSet<Id>> {
        self.inner
            .syncing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs for as long as the bridge does: at start, asks for a sync of every open full room
    /// never synced; then, every second, takes up the syncs asked for (by `weft matrix
    /// sync-members`, by a room bridged while full) or cut off by a restart.
    pub(crate) async fn run_member_syncs(self) {
        if let Err(e) = self.ask_for_first_syncs().await {
            tracing::error!(error = %e, "could not look for full rooms never synced");
        }
        loop {
            match self.tables().unfinished_member_syncs().await {
                Ok(due) => {
                    for room_id in due {
                        self.sync_members_soon(room_id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not look for membership syncs to run"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// At start, rooms whose setting changed while no server ran (the configuration's
    /// default): a full room never synced is asked a sync, any other lists no Matrix people.
    async fn ask_for_first_syncs(&self) -> Result<(), BridgeError> {
        for mapped in self.tables().rooms().await? {
            if self.membership_of(mapped.room_id).await? != Membership::Full {
                self.unlist_unless_full(mapped.room_id).await?;
            } else if mapped.open && self.tables().member_sync(mapped.room_id).await?.is_none() {
                self.request_member_sync(mapped.room_id).await?;
            }
        }
        Ok(())
    }

    /// Fetches and sets Matrix users' avatars one after another in the background (a sync
    /// may list thousands of people: never all at once).
    fn learn_avatars(&self, avatars: HashMap<String, String>) {
        if avatars.is_empty() {
            return;
        }
        let bridge = self.clone();
        tokio::spawn(async move {
            for (mxid, mxc) in avatars {
                bridge.set_avatar_now(&mxid, &mxc).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_halves_on_429_and_grows_back_one_at_a_time() {
        let mut pacer = Pacer::new(8);
        assert_eq!(pacer.limit, 8);
        let wait = pacer.limited(Some(300));
        assert_eq!((pacer.limit, wait), (4, Duration::from_millis(300)));
        pacer.limited(None);
        pacer.limited(None);
        pacer.limited(None);
        assert_eq!(pacer.limit, 1, "never below one");
        for _ in 0..1 {
            pacer.succeeded();
        }
        assert_eq!(pacer.limit, 2);
        for _ in 0..2 {
            pacer.succeeded();
        }
        assert_eq!(pacer.limit, 3);
        for _ in 0..100 {
            pacer.succeeded();
        }
        assert_eq!(pacer.limit, 8, "never above the configured maximum");
        assert_eq!(
            pacer.limited(Some(10_000_000)),
            Duration::from_secs(60),
            "an absurd wait is capped"
        );
    }
}
