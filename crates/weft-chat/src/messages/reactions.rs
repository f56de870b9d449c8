//! Reactions: one per person, emoji and message, by Unicode or `:shortcode:`.

use weft_core::{Author, Event, Id, MessageView, Origin, validate};
use weft_store::WriteTx;

use crate::{Actor, Chat, ChatError, Result};

use super::batch::Touched;
use super::posting::{Change, PostAs};
use super::subject::MessageRef;

/// A reaction checked and ready to write ([`Chat::prepare_reaction`]), alone or in a batch
/// ([`crate::Change`]).
#[derive(Debug)]
pub struct PreparedReaction {
    room_id: Id,
    message_id: Id,
    emoji: String,
    add: bool,
    author: Author,
    as_virtual: Option<PostAs>,
    origin: Origin,
}

impl Chat {
    /// Adds (`add`) or removes a reaction by the actor (or the virtual user a bridge names).
    pub async fn react(
        &self,
        actor: &Actor,
        room_id: Id,
        message_id: Id,
        emoji: &str,
        add: bool,
        as_virtual: Option<PostAs>,
    ) -> Result<MessageView> {
        let prepared = self
            .prepare_reaction(actor, room_id, message_id, emoji, add, as_virtual)
            .await?;
        self.write_change(Change::Reaction(prepared)).await?;
        self.message(actor, room_id, message_id).await
    }

    /// Checks a reaction (the emoji, the actor's standing, the message) without writing it.
    /// The message may be one pending in the same batch.
    pub async fn prepare_reaction(
        &self,
        actor: &Actor,
        room_id: Id,
        target: impl Into<MessageRef>,
        emoji: &str,
        add: bool,
        as_virtual: Option<PostAs>,
    ) -> Result<PreparedReaction> {
        let emoji = resolve_emoji(emoji)?;
        let (_, standing) = self.room_with_standing(actor, room_id).await?;
        let view = self.subject(room_id, &target.into()).await?;
        let message_id = view.message.id;
        if view.message.deleted {
            return Err(ChatError::Invalid(
                "a deleted message cannot be reacted to".into(),
            ));
        }
        let author = self
            .poster(actor, room_id, &standing, as_virtual.as_ref())
            .await?;
        Ok(PreparedReaction {
            room_id,
            message_id,
            emoji,
            add,
            author,
            as_virtual,
            origin: actor.origin.clone(),
        })
    }
}

impl PreparedReaction {
    /// The message it is about.
    pub(super) fn message_id(&self) -> Id {
        self.message_id
    }

    /// The virtual user it is by, when a bridge made it.
    pub(super) fn as_virtual(&self) -> Option<&PostAs> {
        self.as_virtual.as_ref()
    }
}

/// Writes a prepared reaction in a batch, its event noted in `touched`; nothing when it is
/// already there (or already gone). Answers false, writing nothing, when its message went
/// away since it was prepared.
pub(super) async fn write_reaction(
    tx: &mut WriteTx,
    r: PreparedReaction,
    touched: &mut Touched,
) -> weft_store::Result<bool> {
    if touched
        .messages
        .get(&r.message_id)
        .is_none_or(|(m, _)| m.deleted)
    {
        return Ok(false);
    }
    let mut reactor = r.author;
    if let Some(v) = &r.as_virtual {
        reactor = Author::Virtual(touched.virtual_user(tx, v, &r.origin).await?.id);
    }
    let (room_id, message_id, emoji) = (r.room_id, r.message_id, r.emoji);
    let event = if r.add {
        tx.add_reaction(message_id, reactor, &emoji, weft_core::now_millis())
            .await?
            .then_some(Event::ReactionAdded {
                room_id,
                message_id,
                reactor,
                emoji,
            })
    } else {
        tx.remove_reaction(message_id, reactor, &emoji)
            .await?
            .then_some(Event::ReactionRemoved {
                room_id,
                message_id,
                reactor,
                emoji,
            })
    };
    touched.events.extend(event.map(|e| (r.origin, e)));
    Ok(true)
}

/// Accepts a Unicode emoji or a `:shortcode:`, returning the Unicode form.
fn resolve_emoji(key: &str) -> Result<String> {
    let key = key.trim();
    let resolved = match key.strip_prefix(':').and_then(|k| k.strip_suffix(':')) {
        Some(code) => emojis::get_by_shortcode(code)
            .map(|e| e.as_str().to_string())
            .ok_or_else(|| ChatError::Invalid(format!("unknown emoji :{code}:")))?,
        None => key.to_string(),
    };
    validate::reaction_key(&resolved)?;
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::resolve_emoji;

    #[test]
    fn emoji_keys() {
        assert_eq!(resolve_emoji(":tada:").ok().as_deref(), Some("🎉"));
        assert_eq!(resolve_emoji("👍").ok().as_deref(), Some("👍"));
        assert!(resolve_emoji(":not-an-emoji:").is_err());
        assert!(resolve_emoji("two words").is_err());
    }
}
