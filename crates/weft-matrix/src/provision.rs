//! What the homeserver's queries and the outbound sender ask for on demand: the Matrix room
//! of a public weft room (or the Space of a community, see `spaces`), the puppet of a weft user, a puppet's membership of a room, and
//! sending as a puppet that may have been kicked.

use serde_json::{Value, json};
use weft_core::{Room, RoomKind, User};

use crate::tables::{MatrixRoom, MatrixWrites};
use crate::{Bridge, BridgeError, Identities};

impl Bridge {
    /// The homeserver asks about a user in our namespace: register the puppet if it stands
    /// for a weft user.
    pub(crate) async fn provision_puppet_for(&self, mxid: &str) -> Result<bool, BridgeError> {
        let Some(id) = self.ids().puppet_user_id(mxid) else {
            return Ok(false);
        };
        let Some(user) = self.chat().views().user(id).await? else {
            return Ok(false);
        };
        if self.ids().puppet(&user) != mxid {
            return Ok(false);
        }
        self.ensure_puppet(&user).await?;
        Ok(true)
    }

    /// The homeserver asks about an alias: create the Matrix room of a public weft room.
    pub(crate) async fn room_for_alias(&self, alias: &str) -> Result<bool, BridgeError> {
        let Some(localpart) = self.ids().alias_to_localpart(alias) else {
            return Ok(false);
        };
        let Some(room) = self
            .chat()
            .views()
            .room_by_flattened_uri(&localpart, '_')
            .await?
        else {
            // Not a room: perhaps a community, whose Space it names.
            return self.space_for_alias(&localpart).await;
        };
        if room.kind != RoomKind::Public {
            return Ok(false);
        }
        self.ensure_matrix_room(&room).await?;
        Ok(true)
    }

    /// The Matrix room of a public weft room, created (once, even when instances race) if
    /// needed.
    pub(crate) async fn ensure_matrix_room(&self, room: &Room) -> Result<MatrixRoom, BridgeError> {
        let tables = self.tables();
        if let Some(existing) = tables.room(room.id).await? {
            return Ok(existing);
        }
        let uri = room
            .uri
            .clone()
            .ok_or_else(|| BridgeError::Config("only community rooms are bridged".into()))?;
        let localpart = Identities::alias_localpart(&uri);
        let alias = self.ids().alias(&uri);
        let permalink = format!("{}/{uri}", self.public_url());
        let info = json!({
            "bridgebot": self.ids().bot(),
            "protocol": { "id": "weft", "displayname": "weft" },
            "channel": { "id": uri, "displayname": room.name, "external_url": permalink },
        });
        let state_key = format!("weft://{uri}");
        let staff: serde_json::Map<String, Value> = self
            .staff_levels(room.id)
            .await?
            .into_iter()
            .map(|(mxid, level)| (mxid, json!(level)))
            .collect();
        let body = json!({
            "room_alias_name": localpart,
            "name": room.name,
            "topic": room.topic,
            "preset": "public_chat",
            "visibility": "public",
            "initial_state": [
                { "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "world_readable" } },
                { "type": "m.bridge", "state_key": state_key, "content": info },
                { "type": "uk.half-shot.bridge", "state_key": state_key, "content": info },
            ],
            // Room version 12: the creator (the bot) is not listed; it administers by creation.
            // Weft's moderators and admins hold power from the start (see moderation.rs).
            "power_level_content_override": {
                "users_default": 0, "events_default": 0, "invite": 0, "users": staff,
            },
        });
        let matrix_room_id = self.create_listed_room(body, &alias).await?;
        let mapped = MatrixRoom {
            room_id: room.id,
            matrix_room_id,
            alias,
            open: true,
        };
        let first = tables.insert_room(mapped.clone()).await?;
        tracing::info!(room_id = %room.id, matrix_room_id = %mapped.matrix_room_id, alias = %mapped.alias, "bridged a room to Matrix");
        self.reconcile_spaces_soon();
        // A room whose membership is full starts with its members in (unless a sync asked
        // for the room: that sync is under way).
        if first
            && self.membership_of(room.id).await? == crate::Membership::Full
            && self.tables().member_sync(room.id).await?.is_none()
        {
            self.request_member_sync(room.id).await?;
            self.sync_members_soon(room.id);
        }
        Ok(tables.room(room.id).await?.unwrap_or(mapped))
    }

    /// Creates a public room (or Space) under `alias` and lists it in the room directory;
    /// when another instance created it first, answers theirs.
    pub(crate) async fn create_listed_room(
        &self,
        body: Value,
        alias: &str,
    ) -> Result<String, BridgeError> {
        match self.hs().create_room(body).await {
            Ok(id) => {
                // `visibility` in createRoom is subject to the homeserver's publication
                // rules; ask explicitly so the room shows in the directory.
                if let Err(e) = self.hs().publish(&id).await {
                    tracing::warn!(matrix_room_id = %id, error = %e, "could not list the room in the directory");
                }
                Ok(id)
            }
            Err(e) if e.errcode == "M_ROOM_IN_USE" => Ok(self.hs().resolve_alias(alias).await?),
            Err(e) => Err(e.into()),
        }
    }

    /// Registers a weft user's puppet and keeps its display name current.
    pub(crate) async fn ensure_puppet(&self, user: &User) -> Result<String, BridgeError> {
        let mxid = self.ids().puppet(user);
        let known = self.tables().puppet(&mxid).await?;
        if known.as_ref().and_then(|n| n.as_deref()) == Some(user.display_name.as_str()) {
            return Ok(mxid);
        }
        if known.is_none() {
            self.hs()
                .register_puppet(&self.ids().puppet_localpart(user))
                .await?;
            // Its device, for transaction ids the homeserver remembers (see `devices`).
            self.create_device(&mxid).await?;
        }
        let new_puppet = known.is_none();
        self.hs()
            .set_display_name(&mxid, &user.display_name)
            .await?;
        let (m, name) = (mxid.clone(), user.display_name.clone());
        self.tables()
            .write(move |tx| {
                Box::pin(async move { tx.upsert_matrix_puppet(&m, Some(&name)).await })
            })
            .await?;
        if new_puppet && user.avatar_url.is_some() {
            self.sync_puppet_avatar_soon(user);
        }
        Ok(mxid)
    }

    /// Makes sure a puppet is in a Matrix room; answers whether it joined now.
    pub(crate) async fn ensure_joined(
        &self,
        matrix_room_id: &str,
        mxid: &str,
    ) -> Result<bool, BridgeError> {
        if self.tables().is_member(matrix_room_id, mxid).await? {
            return Ok(false);
        }
        self.hs().join(matrix_room_id, mxid).await?;
        let (r, m) = (matrix_room_id.to_string(), mxid.to_string());
        self.tables()
            .write(move |tx| Box::pin(async move { tx.insert_matrix_member(&r, &m).await }))
            .await?;
        Ok(true)
    }

    /// Sends an event as a puppet that should be in the room. A puppet that is not (it left,
    /// or was kicked) makes the homeserver answer 403: it joins again and the event is sent
    /// once more; if it cannot join (banned), the 403 stands and is permanent.
    pub(crate) async fn send_as_member(
        &self,
        matrix_room_id: &str,
        event_type: &str,
        txn_id: &str,
        content: &Value,
        mxid: &str,
    ) -> Result<String, BridgeError> {
        match self
            .send(matrix_room_id, event_type, txn_id, content, mxid)
            .await
        {
            Err(BridgeError::Homeserver(e))
                if e.status == Some(403) && mxid != self.ids().bot() =>
            {
                tracing::info!(matrix_room_id, %mxid, error = %e, "a puppet was refused; joining the room again");
                let (r, m) = (matrix_room_id.to_string(), mxid.to_string());
                self.tables()
                    .write(move |tx| Box::pin(async move { tx.delete_matrix_member(&r, &m).await }))
                    .await?;
                self.ensure_joined(matrix_room_id, mxid).await?;
                self.send(matrix_room_id, event_type, txn_id, content, mxid)
                    .await
            }
            sent => sent,
        }
    }

    /// Weft's address as the homeserver knows it (from the registration), for permalinks.
    pub(crate) fn public_url(&self) -> String {
        self.config()
            .registration
            .url
            .clone()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string()
    }
}
