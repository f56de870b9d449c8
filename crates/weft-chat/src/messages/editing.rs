//! Changing what was posted: edits within the edit window, deletions by authors and
//! moderators.

use weft_core::permission::{self, Standing};
use weft_core::{Attachment, Author, Event, Id, Message, MessageView, Origin, validate};
use weft_store::{EditedText, WriteTx};

use crate::{Actor, Chat, ChatError, Result};

use super::batch::Touched;
use super::posting::{Change, PostAs};
use super::subject::MessageRef;

impl Chat {
    /// Edits a message's text: its author only, within the edit window.
    pub async fn edit(
        &self,
        actor: &Actor,
        room_id: Id,
        message_id: Id,
        text: &str,
        as_virtual: Option<PostAs>,
    ) -> Result<MessageView> {
        let prepared = self
            .prepare_edit(actor, room_id, message_id, text, as_virtual)
            .await?;
        self.write_change(Change::Edit(prepared)).await?;
        self.message(actor, room_id, message_id).await
    }

    /// Checks an edit (the author, the edit window) and renders the new text, without
    /// writing it. The message may be one pending in the same batch.
    pub async fn prepare_edit(
        &self,
        actor: &Actor,
        room_id: Id,
        target: impl Into<MessageRef>,
        text: &str,
        as_virtual: Option<PostAs>,
    ) -> Result<PreparedEdit> {
        self.refuse_if_banned(room_id, as_virtual.as_ref()).await?;
        let room = self.room(actor, room_id).await?;
        let view = self.subject(room_id, &target.into()).await?;
        if !self.is_author(actor, &view, as_virtual.as_ref()) {
            return Err(ChatError::Forbidden(
                "you can only edit your own messages".into(),
            ));
        }
        if view.message.deleted {
            return Err(ChatError::Invalid(
                "a deleted message cannot be edited".into(),
            ));
        }
        let now = weft_core::now_millis();
        if now - view.message.sent > self.config().edit_window_ms {
            return Err(ChatError::Forbidden(
                "the time to edit this message has passed".into(),
            ));
        }
        let text = text.strip_prefix("/me ").unwrap_or(text).to_string();
        validate::message_text(&text)?;
        let from_elsewhere = matches!(view.message.author, Author::Virtual(_));
        let (html, mentions, issues, urls) =
            self.render(actor, &room, &text, from_elsewhere).await?;
        Ok(PreparedEdit {
            room_id,
            message: view.message,
            edited: EditedText {
                text,
                html,
                mentions,
                issues,
                urls,
            },
            at: now,
            origin: actor.origin.clone(),
        })
    }

    /// Deletes a message: its author, or a moderator. A thread parent with replies stays as a
    /// placeholder.
    ///
    /// A bridge deletes as a moderator when it names no author (`as_virtual` is `None`): it
    /// has checked that the other network's moderators may (see `moderation`).
    pub async fn delete(
        &self,
        actor: &Actor,
        room_id: Id,
        message_id: Id,
        as_virtual: Option<PostAs>,
        reason: Option<String>,
    ) -> Result<()> {
        let prepared = self
            .prepare_deletion(actor, room_id, message_id, as_virtual, reason)
            .await?;
        if !self.write_change(Change::Deletion(prepared)).await? {
            return Err(ChatError::NotFound("message"));
        }
        Ok(())
    }

    /// Checks a deletion (the author, or a moderator's right) without writing it. The
    /// message may be one pending in the same batch.
    pub async fn prepare_deletion(
        &self,
        actor: &Actor,
        room_id: Id,
        target: impl Into<MessageRef>,
        as_virtual: Option<PostAs>,
        reason: Option<String>,
    ) -> Result<PreparedDeletion> {
        let me = actor.require_user()?;
        self.refuse_if_banned(room_id, as_virtual.as_ref()).await?;
        self.room(actor, room_id).await?;
        let view = self.subject(room_id, &target.into()).await?;
        let message_id = view.message.id;
        let mut moderator = None;
        let bridge_moderates = actor.is_bridge() && as_virtual.is_none();
        if !bridge_moderates && !self.is_author(actor, &view, as_virtual.as_ref()) {
            let (membership, banned) = self.standing(actor, room_id).await?;
            if as_virtual.is_some()
                || !permission::can_moderate(Standing {
                    user: Some(me),
                    membership: membership.as_ref(),
                    banned,
                })
            {
                return Err(ChatError::Forbidden(
                    "you can only delete your own messages".into(),
                ));
            }
            moderator = Some(me.id);
        }
        let reason = reason
            .filter(|r| !r.trim().is_empty())
            .map(|r| r.chars().take(512).collect::<String>());
        Ok(PreparedDeletion {
            room_id,
            message_id,
            moderator,
            reason,
            attachments: view.message.attachments,
            origin: actor.origin.clone(),
        })
    }
}

/// An edit checked and rendered ([`Chat::prepare_edit`]), ready to write alone or in a batch
/// ([`crate::Change`]).
#[derive(Debug)]
pub struct PreparedEdit {
    room_id: Id,
    message: Message,
    edited: EditedText,
    at: i64,
    origin: Origin,
}

/// A deletion checked ([`Chat::prepare_deletion`]), ready to write alone or in a batch.
#[derive(Debug)]
pub struct PreparedDeletion {
    room_id: Id,
    message_id: Id,
    moderator: Option<Id>,
    reason: Option<String>,
    /// The files the message carried, removed once the deletion is committed.
    pub(crate) attachments: Vec<Attachment>,
    origin: Origin,
}

impl PreparedEdit {
    /// The message it edits.
    pub(super) fn message_id(&self) -> Id {
        self.message.id
    }
}

impl PreparedDeletion {
    /// The message it deletes.
    pub(super) fn message_id(&self) -> Id {
        self.message_id
    }
}

/// Writes a prepared edit in a batch, its event noted in `touched`. Answers false, writing
/// nothing, when its message went away (or was deleted) since it was prepared.
pub(super) async fn write_edit(
    tx: &mut WriteTx,
    e: PreparedEdit,
    touched: &mut Touched,
) -> weft_store::Result<bool> {
    let Some((current, _)) = touched.messages.get_mut(&e.message.id) else {
        return Ok(false);
    };
    if current.deleted {
        return Ok(false);
    }
    tx.update_message_text(current, &e.edited, e.at).await?;
    // A later edit of the same batch starts from this one.
    current.text = e.edited.text;
    current.html = e.edited.html;
    current.mentions = e.edited.mentions;
    current.issues = e.edited.issues;
    current.urls = e.edited.urls;
    current.edited_at = Some(e.at);
    current.version += 1;
    let event = Event::MessageEdited {
        room_id: e.room_id,
        message_id: e.message.id,
    };
    touched.events.push((e.origin, event));
    Ok(true)
}

/// Writes a prepared deletion in a batch, its events noted in `touched`. Answers false when
/// the message is not there any more (a deletion already applied is true: it changes
/// nothing).
pub(super) async fn write_deletion(
    tx: &mut WriteTx,
    d: PreparedDeletion,
    touched: &mut Touched,
) -> weft_store::Result<bool> {
    // As it stands now, not as it was prepared: a reply may have arrived meanwhile.
    let Some((current, external_ref)) = touched.messages.get(&d.message_id).cloned() else {
        return Ok(false);
    };
    if current.deleted {
        return Ok(true);
    }
    if tx.delete_message(&current).await? {
        if let Some((kept, _)) = touched.messages.get_mut(&d.message_id) {
            kept.deleted = true;
        }
    } else {
        touched.messages.remove(&d.message_id);
        // Its parent has one reply fewer, should the batch delete the parent too.
        if let Some(parent) = current.parent_id
            && let Some((parent, _)) = touched.messages.get_mut(&parent)
        {
            parent.thread_count -= 1;
        }
    }
    let event = Event::MessageDeleted {
        room_id: d.room_id,
        message_id: d.message_id,
        moderator: d.moderator,
        reason: d.reason,
        external_ref,
    };
    touched.events.push((d.origin.clone(), event));
    if let Some(parent) = current.parent_id {
        let event = Event::ThreadUpdated {
            room_id: d.room_id,
            message_id: parent,
        };
        touched.events.push((d.origin, event));
    }
    Ok(true)
}
