//! Communities as Matrix Spaces: each community with bridged rooms is a Space
//! (`#community:server`, listed in the room directory) whose children are its open bridged
//! rooms, so that a Matrix user finds a community's rooms the way Gitter's users found them
//! in its room list.
//!
//! A Space is made when its community's first room is bridged, or when someone asks the
//! homeserver for its alias (which also bridges the community's public rooms, so that the
//! Space is never empty). Which rooms a Space lists follows the bridged rooms: a room is
//! listed once bridged and open, and taken off when it closes (made private or deleted on
//! weft). [`Bridge::reconcile_spaces`] compares the two from the tables and puts right
//! what differs, so a crash between the homeserver's answer and the record, or a failed
//! request, is mended on the next run (at start and after each change).
//!
//! Spec: [Spaces](https://spec.matrix.org/latest/client-server-api/#spaces):
//! `m.space.child` in the Space, `m.space.parent` in the room (canonical: the community is
//! where the room belongs), both with the homeserver to join through (`via`).

use serde_json::json;
use weft_core::{Group, Id, RoomKind};

use crate::{Bridge, BridgeError, Identities};

/// At most this many public rooms are bridged when a Space is asked for by alias.
const ROOMS_BRIDGED_FOR_A_SPACE: usize = 100;

impl Bridge {
    /// The homeserver asks about an alias that names no room: create the Space of the
    /// community it names, if that community has public rooms; bridge those and list them.
    pub(crate) async fn space_for_alias(&self, localpart: &str) -> Result<bool, BridgeError> {
        let Some(group) = self.chat().views().community_by_uri(localpart).await? else {
            return Ok(false);
        };
        if Identities::alias_localpart(&group.uri) != localpart {
            return Ok(false);
        }
        let public: Vec<_> = self
            .chat()
            .views()
            .rooms_of_community(group.id)
            .await?
            .into_iter()
            .filter(|r| r.kind == RoomKind::Public)
            .take(ROOMS_BRIDGED_FOR_A_SPACE)
            .collect();
        if public.is_empty() {
            return Ok(false);
        }
        self.ensure_space(&group).await?;
        for room in &public {
            self.ensure_matrix_room(room).await?;
        }
        self.reconcile_spaces().await?;
        Ok(true)
    }

    /// The Matrix Space of a community (its room id), created once, even when instances
    /// race.
    pub(crate) async fn ensure_space(&self, group: &Group) -> Result<String, BridgeError> {
        if let Some((space, _)) = self.tables().space(group.id).await? {
            return Ok(space);
        }
        let localpart = Identities::alias_localpart(&group.uri);
        let alias = self.ids().alias(&group.uri);
        let body = json!({
            "room_alias_name": localpart,
            "name": group.name,
            "topic": format!("The {} community on weft", group.name),
            "preset": "public_chat",
            "visibility": "public",
            "creation_content": { "type": "m.space" },
            "initial_state": [
                { "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "world_readable" } },
            ],
            // Anyone may join and read; only the bridge (its creator) changes what it lists.
            "power_level_content_override": {
                "users_default": 0, "events_default": 100, "state_default": 100, "invite": 0,
            },
        });
        let space = self.create_listed_room(body, &alias).await?;
        self.tables().insert_space(group.id, &space, &alias).await?;
        let (space, _) = self
            .tables()
            .space(group.id)
            .await?
            .unwrap_or((space, alias.clone()));
        tracing::info!(community = %group.uri, matrix_room_id = %space, %alias, "made a community a Matrix Space");
        Ok(space)
    }

    /// Makes every Space list exactly its community's open bridged rooms (see the module
    /// documentation). Rooms outside communities (one-to-one) belong to no Space.
    pub(crate) async fn reconcile_spaces(&self) -> Result<(), BridgeError> {
        let _one_at_a_time = self.inner.spaces.lock().await;
        let (to_list, to_unlist) = self.tables().space_changes_due().await?;
        for (room_id, matrix_room) in to_list {
            self.list_in_space(room_id, &matrix_room).await?;
        }
        for (matrix_room, space) in to_unlist {
            self.link(&space, &matrix_room, false).await?;
            self.tables().set_space_child(&matrix_room, None).await?;
            tracing::info!(matrix_room_id = %matrix_room, space = %space, "took a room off its community's Space");
        }
        Ok(())
    }

    /// [`Bridge::reconcile_spaces`] in the background, after a room was bridged, closed or
    /// opened again: it asks the homeserver, which must not hold up the caller.
    pub(crate) fn reconcile_spaces_soon(&self) {
        let bridge = self.clone();
        tokio::spawn(async move {
            if let Err(e) = bridge.reconcile_spaces().await {
                tracing::warn!(error = %e, "could not bring the Matrix Spaces up to date; tried again at the next change or start");
            }
        });
    }

    async fn list_in_space(&self, room_id: Id, matrix_room: &str) -> Result<(), BridgeError> {
        let Some(room) = self.chat().views().room(room_id).await? else {
            return Ok(());
        };
        let Some(group_id) = room.group_id else {
            return Ok(());
        };
        let Some(group) = self.chat().views().community(group_id).await? else {
            return Ok(());
        };
        let space = self.ensure_space(&group).await?;
        self.link(&space, matrix_room, true).await?;
        self.tables()
            .set_space_child(matrix_room, Some(&space))
            .await?;
        tracing::info!(%room_id, matrix_room_id = %matrix_room, %space, "listed a room in its community's Space");
        Ok(())
    }

    /// Sets (or, with `listed` false, empties: the spec's way to remove) the parent event in
    /// the room and the child event in the Space.
    async fn link(&self, space: &str, room: &str, listed: bool) -> Result<(), BridgeError> {
        let via = json!([self.ids().server_name()]);
        let (child, parent) = if listed {
            (
                json!({ "via": via, "suggested": true }),
                json!({ "via": via, "canonical": true }),
            )
        } else {
            (json!({}), json!({}))
        };
        let bot = self.ids().bot();
        // The room's side first: once the Space shows the change, the room shows it too.
        self.hs()
            .set_state(room, "m.space.parent", space, &parent, &bot)
            .await?;
        self.hs()
            .set_state(space, "m.space.child", room, &child, &bot)
            .await?;
        Ok(())
    }
}
