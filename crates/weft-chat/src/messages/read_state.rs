//! Read state and presence: unread items and mentions, read marks, typing.

use weft_core::{Author, Event, Id};

use crate::error::from_write;
use crate::{Actor, Chat, ChatError, Result};

use super::posting::PostAs;

/// A user's unread messages and mentions in a room.
#[derive(Debug, Clone, Default)]
pub struct UnreadItems {
    /// Unread message ids, oldest first (capped).
    pub chat: Vec<Id>,
    /// Unread messages that mention the user (capped).
    pub mention: Vec<Id>,
}

impl Chat {
    /// The actor's unread messages and mentions in a room.
    pub async fn unread_items(&self, actor: &Actor, room_id: Id) -> Result<UnreadItems> {
        let me = actor.require_user()?;
        self.room(actor, room_id).await?;
        let Some(m) = self.store().membership(room_id, me.id).await? else {
            return Ok(UnreadItems::default());
        };
        let cap = self.config().unread_cap;
        Ok(UnreadItems {
            chat: self
                .store()
                .unread_message_ids(room_id, me.id, m.last_read_seq, cap)
                .await?,
            mention: self
                .store()
                .unread_mention_ids(room_id, me.id, m.last_read_seq, cap)
                .await?,
        })
    }

    /// Marks messages as read: the read mark moves up to the newest of them.
    pub async fn mark_read(&self, actor: &Actor, room_id: Id, message_ids: &[Id]) -> Result<()> {
        let me = actor.require_user()?.id;
        self.room(actor, room_id).await?;
        let mut newest = None;
        for id in message_ids {
            if let Some(view) = self.store().message(*id).await?
                && view.message.room_id == room_id
            {
                newest = newest.max(Some(view.message.seq));
            }
        }
        let Some(seq) = newest else { return Ok(()) };
        self.advance_read(actor, room_id, me, seq).await
    }

    /// Marks everything in a room as read.
    pub async fn mark_all_read(&self, actor: &Actor, room_id: Id) -> Result<()> {
        let me = actor.require_user()?.id;
        self.room(actor, room_id).await?;
        let seq = self.store().last_message_seq(room_id).await?;
        self.advance_read(actor, room_id, me, seq).await
    }

    async fn advance_read(&self, actor: &Actor, room_id: Id, user_id: Id, seq: i64) -> Result<()> {
        let origin = actor.origin.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    if tx.advance_read(room_id, user_id, seq).await? {
                        tx.append(
                            &origin,
                            &Event::ReadAdvanced {
                                room_id,
                                user_id,
                                up_to_seq: seq,
                            },
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(from_write)
    }

    /// Announces that the actor is typing in a room (not stored).
    pub async fn typing(&self, actor: &Actor, room_id: Id) -> Result<()> {
        let me = actor.require_user()?.id;
        self.room(actor, room_id).await?;
        self.live().publish_ephemeral(
            actor.origin.clone(),
            Event::Typing {
                room_id,
                who: Author::User(me),
            },
        );
        Ok(())
    }

    /// Says that someone from another network is typing (bridge actors only). Typing is
    /// fleeting: someone weft has not met yet (no message, no profile) is not announced.
    pub async fn typing_as(&self, actor: &Actor, room_id: Id, who: &PostAs) -> Result<()> {
        if !actor.is_bridge() {
            return Err(ChatError::Forbidden(
                "only bridge tokens may speak for virtual users".into(),
            ));
        }
        self.room(actor, room_id).await?;
        if self.refuse_if_banned(room_id, Some(who)).await.is_err() {
            return Ok(()); // Banned: not announced.
        }
        let Some(known) = self
            .store()
            .virtual_user_by_external_id(&who.kind, &who.external_id)
            .await?
        else {
            return Ok(());
        };
        self.live().publish_ephemeral(
            actor.origin.clone(),
            Event::Typing {
                room_id,
                who: Author::Virtual(known.id),
            },
        );
        Ok(())
    }

    /// Records read receipts of people of other networks (bridge actors only): each
    /// `(room, who, message)` moves that person's read mark in the room up to the message,
    /// so it counts in the message's `readBy` and lists them among its readers. Left out:
    /// someone weft has not met (no message, no profile: a receipt is no reason to create
    /// anyone), someone banned from the room, a message of another room or not stored, a
    /// mark older than the one recorded. One write for all; answers how many marks moved.
    ///
    /// Nothing is logged: no live client shows other people's read marks as they move (a
    /// message's readers are read when asked for), and receipts are too many to log each.
    pub async fn mark_read_as(
        &self,
        actor: &Actor,
        receipts: Vec<(Id, PostAs, Id)>,
    ) -> Result<usize> {
        if !actor.is_bridge() {
            return Err(ChatError::Forbidden(
                "only bridge tokens may speak for virtual users".into(),
            ));
        }
        let mut rooms: Vec<Id> = receipts.iter().map(|(room, _, _)| *room).collect();
        rooms.sort();
        rooms.dedup();
        for room_id in rooms {
            self.room(actor, room_id).await?;
        }
        if receipts.is_empty() {
            return Ok(0);
        }
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    let message_ids: Vec<Id> = receipts.iter().map(|(_, _, m)| *m).collect();
                    let messages = tx.messages_to_change(&message_ids).await?;
                    let readers: Vec<(&str, &str)> = receipts
                        .iter()
                        .map(|(_, who, _)| (who.kind.as_str(), who.external_id.as_str()))
                        .collect();
                    let known = super::posting::known_virtual_users(tx, &readers).await?;
                    let claims: Vec<(Id, &str, &str)> = receipts
                        .iter()
                        .map(|(room, who, _)| (*room, who.kind.as_str(), who.external_id.as_str()))
                        .collect();
                    let banned = tx.virtual_bans_among(&claims).await?;
                    let mut marks = Vec::new();
                    for (room_id, who, message_id) in &receipts {
                        let key = (who.kind.clone(), who.external_id.clone());
                        let Some(vu) = known.get(&key) else {
                            continue;
                        };
                        let is_banned = banned.iter().any(|(r, k, e)| {
                            r == room_id && *k == who.kind && *e == who.external_id
                        });
                        match messages.get(message_id) {
                            Some((m, _)) if m.room_id == *room_id && !is_banned => {
                                marks.push((*room_id, vu.id, m.seq));
                            }
                            _ => {}
                        }
                    }
                    tx.advance_virtual_reads(&marks).await
                })
            })
            .await
            .map_err(from_write)
    }
}
