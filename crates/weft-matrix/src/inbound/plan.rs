//! Planning an incoming event: what it becomes in weft, and whether it can wait in the
//! pending batch. New messages are prepared (checked against the room's rules and rendered)
//! here, side by side; replies, edits, reactions and redactions are prepared against the
//! message they relate to, stored or pending.

use std::collections::HashMap;
use std::ops::ControlFlow;

use serde_json::Value;
use weft_chat::{Change, ChatError, MessageRef, NewPost, PostAs, PreparedPost};
use weft_core::{Id, RoomKind};

use super::{PendingChange, PendingPost, PendingPosts, Plan, Preparation};
use crate::tables::Carried;
use crate::translate::{self, IncomingText};
use crate::{Bridge, BridgeError};

impl Bridge {
    /// The weft room of a bridged Matrix room (`None` if it is not bridged), refused when it
    /// is not public any more: from then on nothing from Matrix reaches it.
    pub(super) async fn open_room(&self, matrix_room: &str) -> Result<Option<Id>, BridgeError> {
        match self.tables().room_for_matrix(matrix_room).await? {
            Some(room_id) => self.still_open(room_id).await.map(Some),
            None => Ok(None),
        }
    }

    /// A bridged room, refused as in [`Bridge::open_room`] when it is not public any more.
    async fn still_open(&self, room_id: Id) -> Result<Id, BridgeError> {
        match self.chat().views().room(room_id).await? {
            Some(room) if room.kind == RoomKind::Public => Ok(room_id),
            Some(_) => Err(BridgeError::Refused(
                "this room is private on weft now, so nothing from Matrix reaches it".into(),
            )),
            None => Err(BridgeError::Refused("this room was deleted on weft".into())),
        }
    }

    /// Decides how to apply an event: new messages are prepared for the pending batch, and so
    /// are replies, reactions, edits and redactions (of what is stored or pending) and member
    /// events that name their sender; the rest is applied on its own.
    pub(super) async fn plan(
        &self,
        event: &Value,
        pending: &mut PendingPosts,
    ) -> Result<Plan, BridgeError> {
        let event_type = event["type"].as_str().unwrap_or_default();
        if !matches!(
            event_type,
            "m.room.message" | "m.reaction" | "m.room.redaction" | "m.room.member"
        ) {
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
            None => match self.room_of_transaction(matrix_room, pending).await {
                Ok(found) => {
                    pending.rooms.insert(matrix_room.to_string(), found);
                    found
                }
                // Redactions and member events in a room that is closed change nothing in
                // weft; what people say is refused, and they are told.
                Err(_) if matches!(event_type, "m.room.redaction" | "m.room.member") => {
                    return Ok(Plan::Skip);
                }
                Err(e) => return Err(e),
            },
        };
        let Some(room_id) = room_id else {
            return Ok(Plan::Skip);
        };
        let at = Target {
            room_id,
            matrix_room,
            event_id,
            sender,
        };
        match event_type {
            "m.room.member" => return self.plan_member(event, at).await,
            "m.reaction" => return self.plan_reaction(event, at, pending).await,
            "m.room.redaction" => return self.plan_redaction(event, at, pending).await,
            _ => {}
        }
        let content = &event["content"];
        let Some(incoming) = self.incoming_text(content).await? else {
            return Ok(Plan::Apply);
        };
        if let Some(original) = incoming.replaces.clone() {
            return self.plan_edit(at, &original, incoming, pending).await;
        }
        let reply_to = match ReplyTo::of(&incoming) {
            // Found now when the transaction looked its events up ahead, or it is pending;
            // else looked up while the message is prepared.
            Some(ReplyTo::Event(target)) if pending.holds(&target) || pending.known.is_some() => {
                match self.related_message(&target, pending).await? {
                    Related::Message(parent) => Some(ReplyTo::Message(parent)),
                    Related::Missing => None,
                    Related::Wait => return Ok(Plan::AfterPending),
                }
            }
            other => other,
        };
        let who = self.post_as(sender);
        let bridge = self.clone();
        let id = event_id.to_string();
        let prepared = tokio::spawn(async move {
            bridge
                .prepare_message(room_id, &id, who, incoming, reply_to)
                .await
        });
        Ok(Plan::Post(PendingPost {
            event_id: event_id.to_string(),
            matrix_room: matrix_room.to_string(),
            room_id,
            sender: sender.to_string(),
            prepared: Preparation::Running(prepared),
        }))
    }

    /// [`Bridge::open_room`] from the bridged rooms the transaction looked up ahead.
    async fn room_of_transaction(
        &self,
        matrix_room: &str,
        pending: &PendingPosts,
    ) -> Result<Option<Id>, BridgeError> {
        match pending.bridged.as_ref().map(|b| b.get(matrix_room)) {
            Some(Some(room_id)) => self.still_open(*room_id).await.map(Some),
            Some(None) => Ok(None),
            None => self.open_room(matrix_room).await,
        }
    }

    /// The message an event relates to. A stored one is looked up first, even when the
    /// event is pending too: a transaction that comes again after part of it was written
    /// finds its first messages stored, and those are the ones to relate to. `Wait` when it
    /// is pending but not as a message that changes can name (a reaction, an edit, a message
    /// refused): the batch is written first and the event planned again.
    async fn related_message(
        &self,
        event_id: &str,
        pending: &mut PendingPosts,
    ) -> Result<Related, BridgeError> {
        if let Some(id) = self
            .carried(event_id, pending)
            .await?
            .and_then(|c| c.message())
        {
            return Ok(Related::Message(self.stored_message(id, pending)));
        }
        if !pending.holds(event_id) {
            return Ok(Related::Missing);
        }
        Ok(match pending.message(event_id).await {
            Some(message) => Related::Message(message),
            None => Related::Wait,
        })
    }

    /// A member event naming its own sender joins the batch: the name their virtual user
    /// takes from then on (spec: a user's name in a room is their member event's); the
    /// avatar it sets is fetched in the background (`avatars`). One about
    /// someone else is a moderator's act, applied on its own.
    async fn plan_member(&self, event: &Value, at: Target<'_>) -> Result<Plan, BridgeError> {
        let Some(member) = translate::incoming_member(event) else {
            return Ok(Plan::Skip);
        };
        if member.target != at.sender {
            return Ok(Plan::Apply);
        }
        if member.membership == "join" {
            match &member.avatar_url {
                Some(mxc) => self.learn_avatar(at.sender, mxc),
                None => self.forget_avatar(at.sender),
            }
        }
        // A full room lists who is in it: the join or leave is applied on its own (it names
        // them too).
        if matches!(member.membership.as_str(), "join" | "leave")
            && self.membership_of(at.room_id).await? == crate::Membership::Full
        {
            return Ok(Plan::Apply);
        }
        let Some(name) = member.display_name.filter(|_| member.membership == "join") else {
            return Ok(Plan::Skip);
        };
        let who = self.named_by_member_event(at.sender, name);
        Ok(at.change(self.chat().prepare_profile(self.actor(), who)?, None))
    }

    /// The message a reaction or edit (`at`) is about, stored or pending; or what to do
    /// instead: nothing when the event was applied already, write the batch first when its
    /// message cannot be named yet. Refused (`refusal`) when weft has no such message.
    async fn subject_of(
        &self,
        at: Target<'_>,
        target: &str,
        pending: &mut PendingPosts,
        refusal: &str,
    ) -> Result<ControlFlow<Plan, MessageRef>, BridgeError> {
        if self.carried(at.event_id, pending).await?.is_some() {
            return Ok(ControlFlow::Break(Plan::Skip));
        }
        match self.related_message(target, pending).await? {
            Related::Message(message) => Ok(ControlFlow::Continue(message)),
            Related::Wait => Ok(ControlFlow::Break(Plan::AfterPending)),
            Related::Missing => Err(BridgeError::Refused(refusal.into())),
        }
    }

    /// A reaction to a message, stored or pending, joins the batch.
    async fn plan_reaction(
        &self,
        event: &Value,
        at: Target<'_>,
        pending: &mut PendingPosts,
    ) -> Result<Plan, BridgeError> {
        let Some((target, key)) = translate::incoming_reaction(&event["content"]) else {
            return Ok(Plan::Skip);
        };
        let message = match self
            .subject_of(
                at,
                &target,
                pending,
                "it reacts to a message weft does not have",
            )
            .await?
        {
            ControlFlow::Continue(message) => message,
            ControlFlow::Break(plan) => return Ok(plan),
        };
        let message_id = message.id();
        let who = self.post_as(at.sender);
        let change = self
            .chat()
            .prepare_reaction(self.actor(), at.room_id, message, &key, true, Some(who))
            .await?;
        let carried = Carried::Reaction {
            message: message_id,
            key,
            by: None,
        };
        Ok(at.change(Change::Reaction(change), Some(carried)))
    }

    /// An edit of a message, stored or pending, joins the batch; one that weft refuses (too
    /// late, someone else's) is applied on its own, which says so in a new message.
    async fn plan_edit(
        &self,
        at: Target<'_>,
        original: &str,
        incoming: IncomingText,
        pending: &mut PendingPosts,
    ) -> Result<Plan, BridgeError> {
        let message = match self
            .subject_of(
                at,
                original,
                pending,
                "it edits a message weft does not have",
            )
            .await?
        {
            ControlFlow::Continue(message) => message,
            ControlFlow::Break(plan) => return Ok(plan),
        };
        let message_id = message.id();
        let who = self.post_as(at.sender);
        match self
            .chat()
            .prepare_edit(self.actor(), at.room_id, message, &incoming.text, Some(who))
            .await
        {
            Ok(change) => Ok(at.change(Change::Edit(change), Some(Carried::Edit(message_id)))),
            Err(ChatError::Forbidden(_)) => Ok(Plan::Apply),
            Err(e) => Err(e.into()),
        }
    }

    /// A redaction of the sender's own message (stored or pending) or of a stored reaction
    /// joins the batch; a moderator's redaction of someone else's message is applied on its
    /// own (it asks the homeserver for the room's power levels).
    async fn plan_redaction(
        &self,
        event: &Value,
        at: Target<'_>,
        pending: &mut PendingPosts,
    ) -> Result<Plan, BridgeError> {
        let Some((redacts, _)) = translate::incoming_redaction(event) else {
            return Ok(Plan::Skip);
        };
        let stored = self.carried(&redacts, pending).await?;
        if stored.is_none() && pending.holds(&redacts) {
            // A message of this transaction, removed by its sender before it was written.
            let Some(message) = pending.message(&redacts).await else {
                return Ok(Plan::AfterPending);
            };
            return self.plan_deletion(at, message).await;
        }
        match stored {
            Some(Carried::Message(id)) => {
                let message = self.stored_message(id, pending);
                self.plan_deletion(at, message).await
            }
            Some(Carried::Reaction { message, key, .. }) => match self
                .chat()
                .prepare_reaction(
                    self.actor(),
                    at.room_id,
                    self.stored_message(message, pending),
                    &key,
                    false,
                    Some(self.post_as(at.sender)),
                )
                .await
            {
                Ok(change) => Ok(at.change(Change::Reaction(change), None)),
                Err(ChatError::NotFound(_) | ChatError::Invalid(_)) => Ok(Plan::Skip),
                Err(e) => Err(e.into()),
            },
            // Redacting an edit leaves the edited text: weft keeps no history of versions.
            Some(Carried::Edit(_)) | None => Ok(Plan::Skip),
        }
    }

    /// A sender's removal of their own message joins the batch; someone else's is a
    /// moderator's, applied on its own.
    async fn plan_deletion(
        &self,
        at: Target<'_>,
        message: MessageRef,
    ) -> Result<Plan, BridgeError> {
        let who = self.post_as(at.sender);
        match self
            .chat()
            .prepare_deletion(self.actor(), at.room_id, message, Some(who), None)
            .await
        {
            Ok(change) => Ok(at.change(Change::Deletion(change), None)),
            Err(ChatError::NotFound(_)) => Ok(Plan::Skip),
            Err(ChatError::Forbidden(_)) => Ok(Plan::Apply),
            Err(e) => Err(e.into()),
        }
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
        reply_to: Option<ReplyTo>,
    ) -> Result<PreparedPost, BridgeError> {
        let parent = match reply_to {
            Some(ReplyTo::Event(target)) => {
                self.weft_message(&target).await?.map(MessageRef::Stored)
            }
            Some(ReplyTo::Message(message)) => Some(message),
            None => None,
        };
        let post = NewPost {
            text: incoming.text,
            status: incoming.status,
            parent,
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

/// What a new message answers, in a thread or as a rich reply (weft puts both in the thread).
pub(super) enum ReplyTo {
    /// An event, looked up while the message is prepared.
    Event(String),
    /// A message found already, stored or pending in the batch.
    Message(MessageRef),
}

impl ReplyTo {
    /// What the message answers: its thread's root, or else the event it replies to.
    pub(super) fn of(incoming: &IncomingText) -> Option<ReplyTo> {
        incoming
            .thread_root
            .as_deref()
            .or(incoming.in_reply_to.as_deref())
            .map(|target| ReplyTo::Event(target.to_string()))
    }
}

/// Where an event's related message was found.
enum Related {
    Message(MessageRef),
    /// Pending, but not as a message changes can name: write the batch first.
    Wait,
    /// Neither stored nor pending.
    Missing,
}

/// The event being planned, and the bridged room it is in.
#[derive(Clone, Copy)]
struct Target<'e> {
    room_id: Id,
    matrix_room: &'e str,
    event_id: &'e str,
    sender: &'e str,
}

impl Target<'_> {
    /// A prepared change for the batch, with what its event carries (recorded with it).
    fn change(self, change: Change, carried: Option<Carried>) -> Plan {
        Plan::Change(Box::new(PendingChange {
            event_id: self.event_id.to_string(),
            matrix_room: self.matrix_room.to_string(),
            change,
            carried,
        }))
    }
}
