//! Reactions: one per person, emoji and message, by Unicode or `:shortcode:`.

use weft_core::{Author, Event, Id, MessageView, validate};

use crate::error::from_write;
use crate::{Actor, Chat, ChatError, Result};

use super::posting::{PostAs, virtual_author};

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
        let emoji = resolve_emoji(emoji)?;
        let (_, standing) = self.room_with_standing(actor, room_id).await?;
        let view = self.message(actor, room_id, message_id).await?;
        if view.message.deleted {
            return Err(ChatError::Invalid(
                "a deleted message cannot be reacted to".into(),
            ));
        }
        let author = self
            .poster(actor, room_id, &standing, as_virtual.as_ref())
            .await?;
        let origin = actor.origin.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    let mut reactor = author;
                    if let Some(v) = as_virtual {
                        let vu = virtual_author(tx, &v).await?;
                        reactor = Author::Virtual(vu.id);
                    }
                    let emoji = emoji.clone();
                    if add {
                        if tx
                            .add_reaction(message_id, reactor, &emoji, weft_core::now_millis())
                            .await?
                        {
                            tx.append(
                                &origin,
                                &Event::ReactionAdded {
                                    room_id,
                                    message_id,
                                    reactor,
                                    emoji,
                                },
                            )
                            .await?;
                        }
                    } else if tx.remove_reaction(message_id, reactor, &emoji).await? {
                        tx.append(
                            &origin,
                            &Event::ReactionRemoved {
                                room_id,
                                message_id,
                                reactor,
                                emoji,
                            },
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(from_write)?;
        self.message(actor, room_id, message_id).await
    }
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
