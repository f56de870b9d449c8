//! Applying one incoming event on its own: member events, edits, files, reactions and
//! redactions, and the messages that could not wait in the pending batch; and recording what
//! could not be bridged.

use serde_json::Value;
use weft_chat::{ChatError, NewPost, PostAs};
use weft_core::Id;

use crate::tables::{Carried, MatrixWrites};
use crate::translate::{self, IncomingText};
use crate::{Bridge, BridgeError};

impl Bridge {
    /// Logs and records an event that could not be bridged. Storage trouble is not such an
    /// event: it fails the transaction, so that the homeserver retries it.
    pub(super) async fn record_failure(
        &self,
        event: &Value,
        error: &BridgeError,
    ) -> Result<(), BridgeError> {
        let event_id = event["event_id"].as_str().unwrap_or_default();
        let matrix_room = event["room_id"].as_str().unwrap_or_default();
        let sender = event["sender"].as_str().unwrap_or_default();
        let failures_total = self.count_failure();
        tracing::warn!(%event_id, room_id = %matrix_room, %sender, %error, failures_total, "a Matrix event could not be bridged");
        self.tell_sender(matrix_room, event_id, sender, error);
        let tables = self.tables();
        let weft_room = tables.room_for_matrix(matrix_room).await?;
        let note = format!("inbound {event_id}: {error}");
        let key = event_id.to_string();
        tables
            .write(move |tx| {
                Box::pin(async move { tx.insert_matrix_failure(0, weft_room, &key, &note).await })
            })
            .await?;
        Ok(())
    }

    pub(super) async fn apply_event(&self, event: &Value) -> Result<(), BridgeError> {
        let sender = event["sender"].as_str().unwrap_or_default();
        let matrix_room = event["room_id"].as_str().unwrap_or_default();
        let event_id = event["event_id"].as_str().unwrap_or_default();
        if sender.is_empty() || event_id.is_empty() || self.ids().is_ours(sender) {
            return Ok(());
        }
        let event_type = event["type"].as_str().unwrap_or_default();
        let room_id = match self.open_room(matrix_room).await {
            Ok(Some(id)) => id,
            Ok(None) => return Ok(()),
            // What people say is refused, and they are told; state changes and redactions
            // in a room that is closed change nothing in weft.
            Err(e)
                if matches!(
                    event_type,
                    "m.room.message" | "m.reaction" | "m.room.encrypted"
                ) =>
            {
                return Err(e);
            }
            Err(_) => return Ok(()),
        };
        let content = &event["content"];
        match event_type {
            "m.room.member" => {
                // One about someone else is a moderator's act (or an invite); a sender's own,
                // which names them, goes into the batch (`plan`) unless the room lists its
                // Matrix members.
                let Some(member) = translate::incoming_member(event) else {
                    return Ok(());
                };
                if member.target != sender {
                    self.moderate_from_matrix(room_id, &member).await?;
                }
                // Who is in the room, as weft lists its members (a full room's).
                self.matrix_member_changed(room_id, &member).await
            }
            "m.room.message" => {
                self.apply_message(room_id, matrix_room, event_id, sender, content)
                    .await
            }
            // Weft holds no keys to the room's encrypted sessions, so it cannot read what is
            // sent encrypted: the sender is told (and it is recorded) instead of it being
            // lost without a word.
            "m.room.encrypted" => Err(BridgeError::Refused(
                "weft cannot read encrypted messages, and this room is bridged to weft: \
                 send it without encryption for the people on weft to see it"
                    .into(),
            )),
            "m.room.name" | "m.room.topic" | "m.room.avatar" => {
                self.room_detail_from_matrix(room_id, matrix_room, event)
                    .await
            }
            "m.reaction" => {
                let Some((target, key)) = translate::incoming_reaction(content) else {
                    return Ok(());
                };
                let Some(message_id) = self.weft_message(&target).await? else {
                    return Err(BridgeError::Refused(
                        "it reacts to a message weft does not have".into(),
                    ));
                };
                let who = self.post_as(sender);
                self.chat()
                    .react(self.actor(), room_id, message_id, &key, true, Some(who))
                    .await?;
                let reaction = Carried::Reaction {
                    message: message_id,
                    key,
                    by: None,
                };
                self.record_inbound(event_id, matrix_room, reaction).await
            }
            "m.room.redaction" => {
                let Some((redacts, reason)) = translate::incoming_redaction(event) else {
                    return Ok(());
                };
                let Some(carried) = self.tables().carried_by(&redacts).await? else {
                    return Ok(());
                };
                let who = self.post_as(sender);
                match carried {
                    Carried::Message(id) => {
                        match self
                            .chat()
                            .delete(self.actor(), room_id, id, Some(who), None)
                            .await
                        {
                            Ok(()) | Err(ChatError::NotFound(_)) => Ok(()),
                            // Someone else's message: a Matrix moderator's redaction, which
                            // counts only if the room's power levels allow it.
                            Err(ChatError::Forbidden(_)) => {
                                if !self.may_redact_others(matrix_room, sender).await? {
                                    return Err(BridgeError::Refused(
                                        "only the room's moderators may remove other people's messages".into(),
                                    ));
                                }
                                match self
                                    .chat()
                                    .delete(self.actor(), room_id, id, None, reason)
                                    .await
                                {
                                    Ok(()) | Err(ChatError::NotFound(_)) => Ok(()),
                                    Err(e) => Err(e.into()),
                                }
                            }
                            Err(e) => Err(e.into()),
                        }
                    }
                    Carried::Reaction { message, key, .. } => {
                        self.chat()
                            .react(self.actor(), room_id, message, &key, false, Some(who))
                            .await?;
                        Ok(())
                    }
                    // Redacting an edit leaves the edited text: Matrix clients show the
                    // previous version again, weft keeps no history of versions.
                    Carried::Edit(_) => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    pub(super) async fn apply_message(
        &self,
        room_id: Id,
        matrix_room: &str,
        event_id: &str,
        sender: &str,
        content: &Value,
    ) -> Result<(), BridgeError> {
        if self.tables().carried_by(event_id).await?.is_some() {
            return Ok(());
        }
        let Some(incoming) = self.incoming_text(content).await? else {
            if let Some(file) = translate::incoming_file(content) {
                return self
                    .apply_file(room_id, event_id, sender, content, file)
                    .await;
            }
            return Err(BridgeError::Refused(format!(
                "{} messages are not bridged to weft",
                content["msgtype"].as_str().unwrap_or("unknown")
            )));
        };
        if let Some(original) = &incoming.replaces {
            let who = self.post_as(sender);
            return self
                .apply_edit(
                    room_id,
                    matrix_room,
                    event_id,
                    original,
                    incoming.clone(),
                    who,
                )
                .await;
        }
        let reply_to = super::plan::ReplyTo::of(&incoming);
        let post = self
            .prepare_message(room_id, event_id, self.post_as(sender), incoming, reply_to)
            .await?;
        self.chat()
            .write_batch(vec![weft_chat::Change::Post(post)], |_| {
                Box::pin(async { Ok(true) })
            })
            .await?;
        Ok(())
    }

    /// A file from Matrix: downloaded through authenticated media, stored in weft, posted as
    /// the virtual user under the event id.
    pub(super) async fn apply_file(
        &self,
        room_id: Id,
        event_id: &str,
        sender: &str,
        content: &Value,
        file: translate::IncomingFile,
    ) -> Result<(), BridgeError> {
        let limit = self.chat().config().max_upload_bytes as u64;
        if file.size.is_some_and(|s| s > limit) {
            return Err(ChatError::TooLarge(format!(
                "{} is larger than weft's limit of {limit} bytes",
                file.name
            ))
            .into());
        }
        let bytes = match self.hs().download(&file.url, limit).await {
            Ok(bytes) => bytes,
            Err(e) if e.errcode == "W_TOO_LARGE" => {
                return Err(ChatError::TooLarge(format!(
                    "{} is larger than weft's limit of {limit} bytes",
                    file.name
                ))
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        let parent = match translate::relation_target(content) {
            Some(target) => self.weft_message(&target).await?,
            None => None,
        };
        let post = NewPost {
            text: file.caption.unwrap_or_default(),
            parent: parent.map(weft_chat::MessageRef::Stored),
            as_virtual: Some(self.post_as(sender)),
            external_ref: Some(event_id.to_string()),
            ..NewPost::default()
        };
        let upload = weft_chat::Upload {
            name: file.name,
            content_type: file.content_type,
            bytes: bytes.into(),
        };
        // Its external key is the event id: that is its mapping.
        self.chat()
            .upload_with(self.actor(), room_id, upload, post)
            .await?;
        Ok(())
    }

    pub(super) async fn apply_edit(
        &self,
        room_id: Id,
        matrix_room: &str,
        event_id: &str,
        original: &str,
        incoming: IncomingText,
        who: PostAs,
    ) -> Result<(), BridgeError> {
        let Some(message_id) = self.weft_message(original).await? else {
            return Err(BridgeError::Refused(
                "it edits a message weft does not have".into(),
            ));
        };
        match self
            .chat()
            .edit(
                self.actor(),
                room_id,
                message_id,
                &incoming.text,
                Some(who.clone()),
            )
            .await
        {
            Ok(_) => {
                self.record_inbound(event_id, matrix_room, Carried::Edit(message_id))
                    .await
            }
            // Too late to edit in weft: say so in a new message, as Gitter did.
            Err(ChatError::Forbidden(_)) => {
                let post = NewPost {
                    text: format!("*(edited)* {}", incoming.text),
                    status: incoming.status,
                    as_virtual: Some(who),
                    external_ref: Some(event_id.to_string()),
                    ..NewPost::default()
                };
                // Its external key is the event id: that is its mapping.
                self.chat().post(self.actor(), room_id, post).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The weft message a Matrix event carries (a message, or the message an edit changed).
    pub(super) async fn weft_message(
        &self,
        matrix_event_id: &str,
    ) -> Result<Option<Id>, BridgeError> {
        Ok(self
            .tables()
            .carried_by(matrix_event_id)
            .await?
            .and_then(|carried| carried.message()))
    }
}
