//! Changing what was posted: edits within the edit window, deletions by authors and
//! moderators.

use weft_core::permission::{self, Standing};
use weft_core::{Author, Event, Id, MessageView, validate};
use weft_store::EditedText;

use crate::error::{from_write, rejected};
use crate::{Actor, Chat, ChatError, Result};

use super::posting::PostAs;

impl Chat {
    /// Whether the actor wrote this message (directly, or as the bridge for its virtual author).
    async fn is_author(
        &self,
        actor: &Actor,
        view: &MessageView,
        as_virtual: Option<&PostAs>,
    ) -> Result<bool> {
        match view.message.author {
            Author::User(id) => {
                Ok(as_virtual.is_none() && actor.user.as_ref().is_some_and(|u| u.id == id))
            }
            Author::Virtual(id) => {
                let Some(claim) = as_virtual.filter(|_| actor.is_bridge()) else {
                    return Ok(false);
                };
                let vu = self.store().virtual_user(id).await?;
                Ok(vu
                    .is_some_and(|vu| vu.kind == claim.kind && vu.external_id == claim.external_id))
            }
        }
    }

    /// Edits a message's text: its author only, within the edit window.
    pub async fn edit(
        &self,
        actor: &Actor,
        room_id: Id,
        message_id: Id,
        text: &str,
        as_virtual: Option<PostAs>,
    ) -> Result<MessageView> {
        self.refuse_if_banned(room_id, as_virtual.as_ref()).await?;
        let room = self.room(actor, room_id).await?;
        let view = self.message(actor, room_id, message_id).await?;
        if !self.is_author(actor, &view, as_virtual.as_ref()).await? {
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
        let origin = actor.origin.clone();
        let message = view.message.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    let edited = EditedText {
                        text,
                        html,
                        mentions,
                        issues,
                        urls,
                    };
                    tx.update_message_text(&message, &edited, now).await?;
                    tx.append(
                        &origin,
                        &Event::MessageEdited {
                            room_id,
                            message_id,
                        },
                    )
                    .await?;
                    Ok(())
                })
            })
            .await
            .map_err(from_write)?;
        self.message(actor, room_id, message_id).await
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
        let me = actor.require_user()?;
        self.refuse_if_banned(room_id, as_virtual.as_ref()).await?;
        let view = self.message(actor, room_id, message_id).await?;
        let mut moderator = None;
        let bridge_moderates = actor.is_bridge() && as_virtual.is_none();
        if !bridge_moderates && !self.is_author(actor, &view, as_virtual.as_ref()).await? {
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
        let origin = actor.origin.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    // Read again inside the transaction: a reply may have arrived meanwhile.
                    let Some(current) = tx.message(message_id).await? else {
                        return Err(rejected(ChatError::NotFound("message")));
                    };
                    if current.message.deleted {
                        return Ok(());
                    }
                    let external_ref = tx.external_ref_of(message_id).await?;
                    tx.delete_message(&current.message).await?;
                    tx.append(
                        &origin,
                        &Event::MessageDeleted {
                            room_id,
                            message_id,
                            moderator,
                            reason: reason.clone(),
                            external_ref,
                        },
                    )
                    .await?;
                    if let Some(parent) = current.message.parent_id {
                        tx.append(
                            &origin,
                            &Event::ThreadUpdated {
                                room_id,
                                message_id: parent,
                            },
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(from_write)?;
        self.remove_files(&view.message.attachments).await;
        Ok(())
    }
}
