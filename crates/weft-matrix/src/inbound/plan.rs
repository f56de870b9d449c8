//! Planning an incoming event: what it becomes in weft, and whether it can wait in the
//! pending batch. Plain new messages are prepared (checked against the room's rules and
//! rendered) here, side by side.

use std::collections::HashMap;

use serde_json::Value;
use weft_chat::{NewPost, PostAs, PreparedPost};
use weft_core::{Id, RoomKind};

use super::{PendingPost, PendingPosts, Plan};
use crate::translate::{self, IncomingText};
use crate::{Bridge, BridgeError};

impl Bridge {
    /// The weft room of a bridged Matrix room (`None` if it is not bridged), refused when it
    /// is not public any more: from then on nothing from Matrix reaches it.
    pub(super) async fn open_room(&self, matrix_room: &str) -> Result<Option<Id>, BridgeError> {
        let Some(room_id) = self.tables().room_for_matrix(matrix_room).await? else {
            return Ok(None);
        };
        match self.chat().views().room(room_id).await? {
            Some(room) if room.kind == RoomKind::Public => Ok(Some(room_id)),
            Some(_) => Err(BridgeError::Refused(
                "this room is private on weft now, so nothing from Matrix reaches it".into(),
            )),
            None => Err(BridgeError::Refused("this room was deleted on weft".into())),
        }
    }

    /// Decides how to apply an event; prepares plain messages for the pending batch.
    pub(super) async fn plan(
        &self,
        event: &Value,
        pending: &mut PendingPosts,
    ) -> Result<Plan, BridgeError> {
        if event["type"] != "m.room.message" {
            return Ok(Plan::Apply);
        }
        let sender = event["sender"].as_str().unwrap_or_default();
        let matrix_room = event["room_id"].as_str().unwrap_or_default();
        let event_id = event["event_id"].as_str().unwrap_or_default();
        if sender.is_empty() || event_id.is_empty() || self.ids().is_ours(sender) {
            return Ok(Plan::Skip);
        }
        let room_id = match pending.rooms.get(matrix_room) {
            Some(known) => *known,
            None => {
                let found = self.open_room(matrix_room).await?;
                pending.rooms.insert(matrix_room.to_string(), found);
                found
            }
        };
        let Some(room_id) = room_id else {
            return Ok(Plan::Skip);
        };
        let content = &event["content"];
        let Some(incoming) = self.incoming_text(content).await? else {
            return Ok(Plan::Apply);
        };
        if incoming.replaces.is_some() {
            return Ok(Plan::Apply);
        }
        let target = incoming
            .thread_root
            .as_deref()
            .or(incoming.in_reply_to.as_deref());
        if target.is_some_and(|t| pending.event_ids.contains(t)) {
            return Ok(Plan::AfterPending);
        }
        let who = self.post_as(sender);
        let bridge = self.clone();
        let id = event_id.to_string();
        let prepared =
            tokio::spawn(async move { bridge.prepare_message(room_id, &id, who, incoming).await });
        Ok(Plan::Post(PendingPost {
            event_id: event_id.to_string(),
            matrix_room: matrix_room.to_string(),
            room_id,
            sender: sender.to_string(),
            prepared,
        }))
    }

    /// Reads a message's text, turning pills of weft users' puppets into their usernames;
    /// `None` for content that is not text (files, unknown types).
    pub(super) async fn incoming_text(
        &self,
        content: &Value,
    ) -> Result<Option<IncomingText>, BridgeError> {
        let html = content["formatted_body"]
            .as_str()
            .or(content["m.new_content"]["formatted_body"].as_str())
            .unwrap_or_default();
        let mut usernames = HashMap::new();
        for target in translate::pill_targets(html) {
            if let Some(id) = self.ids().puppet_user_id(&target)
                && let Some(user) = self.chat().views().user(id).await?
            {
                usernames.insert(target, user.username);
            }
        }
        Ok(translate::incoming_text(content, |mxid| {
            usernames.get(mxid).cloned()
        }))
    }

    /// Checks and renders a new message from Matrix as its sender's virtual user, in the
    /// thread of the message it replies to.
    pub(super) async fn prepare_message(
        &self,
        room_id: Id,
        event_id: &str,
        who: PostAs,
        incoming: IncomingText,
    ) -> Result<PreparedPost, BridgeError> {
        let parent = match incoming
            .thread_root
            .as_deref()
            .or(incoming.in_reply_to.as_deref())
        {
            Some(target) => self.weft_message(target).await?,
            None => None,
        };
        let post = NewPost {
            text: incoming.text,
            status: incoming.status,
            parent_id: parent,
            as_virtual: Some(who),
            external_ref: Some(event_id.to_string()),
            ..NewPost::default()
        };
        Ok(self
            .chat()
            .prepare_post(self.actor(), room_id, post)
            .await?)
    }
}
