//! A bridged room's name, topic and (from Matrix) avatar, the same from Element and from
//! weft.
//!
//! Weft → Matrix: the Matrix room is created with the weft room's name (its URI is in the
//! alias), and every change of the weft room ([`weft_core::Event::RoomUpdated`]) sets the
//! Matrix room's `m.room.name` and `m.room.topic` where they differ, as the bridge bot.
//!
//! Matrix → weft: an `m.room.name` or `m.room.topic` from a Matrix user whose power level
//! in the room allows that event renames the weft room or changes its topic, unless
//! `room_changes = "revert"`, when the bot puts weft's back. The homeserver checked the
//! sender's power before storing the event; it is checked again against the room's power
//! levels, as for moderators' redactions, since a homeserver may hold an event from another
//! server before it knows whether it may apply it. An empty name is never taken: a weft room
//! always has one. A room avatar set on Matrix is fetched in the background (as Matrix
//! users' avatars are, see `avatars`) and becomes the weft room's, on the same conditions; a
//! refused one is put back to weft's (`weft_avatars`), and a weft room's avatar reaches
//! Matrix with every change of the room.
//!
//! Spec: [`m.room.name`](https://spec.matrix.org/latest/client-server-api/#mroomname),
//! [`m.room.topic`](https://spec.matrix.org/latest/client-server-api/#mroomtopic),
//! [power levels](https://spec.matrix.org/latest/client-server-api/#mroompower_levels).

use serde_json::Value;
use weft_chat::RoomPatch;
use weft_core::{Id, Room};

use crate::config::RoomChanges;
use crate::moderation::power_of;
use crate::translate::{self, RoomDetail};
use crate::{Bridge, BridgeError};

impl Bridge {
    /// Sets the Matrix room's name, topic and avatar to the weft room's where they differ.
    pub(crate) async fn sync_room_details(
        &self,
        room: &Room,
        matrix_room: &str,
    ) -> Result<(), BridgeError> {
        let bot = self.ids().bot();
        let wanted = [
            ("m.room.name", "name", room.name.as_str()),
            ("m.room.topic", "topic", room.topic.as_str()),
        ];
        for (event_type, field, value) in wanted {
            let current = self.hs().state(matrix_room, event_type, "").await?;
            let shown = current
                .as_ref()
                .and_then(|c| c[field].as_str())
                .unwrap_or_default();
            if shown == value {
                continue;
            }
            let content = match event_type {
                "m.room.name" => translate::room_name_content(value),
                _ => translate::topic_content(value),
            };
            self.hs()
                .set_state(matrix_room, event_type, "", &content, &bot)
                .await?;
        }
        self.sync_room_avatar(room, matrix_room, false).await
    }

    /// A Matrix user's new name or topic for a bridged room: taken by the weft room when
    /// their power allows it and the settings accept it; else weft's is put back.
    pub(crate) async fn room_detail_from_matrix(
        &self,
        room_id: Id,
        matrix_room: &str,
        event: &Value,
    ) -> Result<(), BridgeError> {
        let Some(detail) = translate::incoming_room_detail(event) else {
            return Ok(());
        };
        let sender = event["sender"].as_str().unwrap_or_default();
        let event_type = event["type"].as_str().unwrap_or_default();
        let Some(room) = self.chat().views().room(room_id).await? else {
            return Ok(());
        };
        let unchanged = match &detail {
            RoomDetail::Name(name) => *name == room.name,
            RoomDetail::Topic(topic) => *topic == room.topic,
            RoomDetail::Avatar(mxc) => {
                mxc.as_deref().and_then(crate::avatars::avatar_path) == room.avatar_url
            }
        };
        if unchanged {
            return Ok(());
        }
        let allowed = self.may_set_state(matrix_room, sender, event_type).await?;
        let accepted = allowed
            && self.config().settings.room_changes == RoomChanges::Accept
            && !matches!(&detail, RoomDetail::Name(name) if name.is_empty());
        if let RoomDetail::Avatar(mxc) = detail {
            if accepted {
                self.learn_room_avatar(room_id, mxc);
                return Ok(());
            }
            tracing::info!(%room_id, room_id_matrix = %matrix_room, %sender, allowed, "a room avatar from Matrix is put back");
            return self.sync_room_avatar(&room, matrix_room, true).await;
        }
        if !accepted {
            tracing::info!(%room_id, room_id_matrix = %matrix_room, %sender, event_type, allowed, "a room change from Matrix is put back");
            return self.sync_room_details(&room, matrix_room).await;
        }
        let patch = match detail {
            RoomDetail::Name(name) => RoomPatch {
                name: Some(name),
                ..RoomPatch::default()
            },
            RoomDetail::Topic(topic) => RoomPatch {
                topic: Some(topic),
                ..RoomPatch::default()
            },
            RoomDetail::Avatar(_) => return Ok(()),
        };
        match self.chat().update_room(self.actor(), room_id, patch).await {
            Ok(_) => Ok(()),
            // Too long for weft, say: weft's stays, on both sides.
            Err(weft_chat::ChatError::Invalid(reason)) => {
                tracing::info!(%room_id, %sender, %reason, "a room change from Matrix does not fit weft; put back");
                self.sync_room_details(&room, matrix_room).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `mxid`'s power level in the room reaches what the state event `event_type`
    /// needs (its own level, else `state_default`, 50 when unset).
    async fn may_set_state(
        &self,
        matrix_room: &str,
        mxid: &str,
        event_type: &str,
    ) -> Result<bool, BridgeError> {
        let levels = self.power_levels(matrix_room).await?;
        let needed = levels["events"][event_type]
            .as_i64()
            .or_else(|| levels["state_default"].as_i64())
            .unwrap_or(50);
        Ok(power_of(&levels, mxid) >= needed)
    }
}
