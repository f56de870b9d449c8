//! Moderation: removing and banning people, weft users and people of other networks
//! (virtual users) alike, the ban list, and the marks a bridge leaves on messages it could not
//! carry.
//!
//! A bridge actor moderates on behalf of another network's moderators: the bridge checks on
//! its side that the act was allowed there (for Matrix, the homeserver's power levels), so
//! here it may remove and ban anyone but a site admin. Every act is logged with the weft
//! moderator who did it, if any, and their reason, so that bridges can repeat it elsewhere.

use weft_core::permission::{self, Standing};
use weft_core::{Event, Id, RoomKind, Undelivered, validate};
use weft_store::Ban;

use crate::error::{from_write, rejected};
use crate::messages::PostAs;
use crate::{Actor, Chat, ChatError, Result};

/// Longest moderation reason, in characters.
const MAX_REASON_CHARS: usize = 512;

fn checked_reason(reason: Option<String>) -> Result<Option<String>> {
    let reason = reason.filter(|r| !r.trim().is_empty());
    if let Some(r) = &reason {
        validate::short_text("reason", r, MAX_REASON_CHARS)?;
    }
    Ok(reason)
}

impl Chat {
    /// Who is acting as a moderator of the room: `Some(user)` for a weft moderator, `None`
    /// for a bridge (see the module's doc); anyone else is refused.
    async fn acting_moderator(&self, actor: &Actor, room_id: Id) -> Result<Option<Id>> {
        if actor.is_bridge() {
            self.room(actor, room_id).await?;
            return Ok(None);
        }
        self.require_moderator(actor, room_id).await?;
        Ok(actor.user.as_ref().map(|u| u.id))
    }

    /// May the actor remove or ban this weft user? Moderators act on people of lower rank;
    /// bridges on anyone but site admins.
    async fn may_act_on(&self, actor: &Actor, room_id: Id, user_id: Id) -> Result<()> {
        let target = self.user(user_id).await?;
        if actor.is_bridge() {
            if target.site_admin {
                return Err(ChatError::Forbidden(
                    "site admins cannot be removed or banned from another network".into(),
                ));
            }
            return Ok(());
        }
        let (membership, banned) = self.standing(actor, room_id).await?;
        let standing = Standing {
            user: actor.user.as_ref(),
            membership: membership.as_ref(),
            banned,
        };
        let theirs = self.store().membership(room_id, user_id).await?;
        if !permission::can_moderate_member(standing, theirs.as_ref()) {
            return Err(ChatError::Forbidden(
                "only moderators may remove or ban members, and only those of lower rank".into(),
            ));
        }
        Ok(())
    }

    /// Removes a member: themselves (leaving), or anyone by a moderator (with a reason, which
    /// bridges pass on).
    pub async fn remove_member(
        &self,
        actor: &Actor,
        room_id: Id,
        user_id: Id,
        reason: Option<String>,
    ) -> Result<()> {
        let me = actor.require_user()?.clone();
        let room = self.room(actor, room_id).await?;
        let reason = checked_reason(reason)?;
        let moderator = if me.id == user_id {
            None
        } else {
            self.may_act_on(actor, room_id, user_id).await?;
            Some(me.id).filter(|_| !actor.is_bridge())
        };
        if room.kind == RoomKind::OneToOne {
            return Err(ChatError::Invalid(
                "you cannot leave a one-to-one room".into(),
            ));
        }
        let origin = actor.origin.clone();
        let removed = self
            .store()
            .write(move |tx| {
                Box::pin(async move {
                    let removed = tx.delete_membership(room_id, user_id).await?;
                    if removed {
                        let event = Event::MemberLeft {
                            room_id,
                            user_id,
                            moderator,
                            reason,
                        };
                        tx.append(&origin, &event).await?;
                    }
                    Ok(removed)
                })
            })
            .await
            .map_err(from_write)?;
        if removed {
            Ok(())
        } else {
            Err(ChatError::NotFound("member"))
        }
    }

    /// Bans a user from a room (moderators and bridges); they are removed and cannot rejoin.
    pub async fn ban(
        &self,
        actor: &Actor,
        room_id: Id,
        user_id: Id,
        reason: Option<String>,
    ) -> Result<()> {
        let moderator = self.acting_moderator(actor, room_id).await?;
        if actor.user.as_ref().is_some_and(|u| u.id == user_id) {
            return Err(ChatError::Invalid("you cannot ban yourself".into()));
        }
        self.may_act_on(actor, room_id, user_id).await?;
        let reason = checked_reason(reason)?;
        let origin = actor.origin.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    let at = weft_core::now_millis();
                    tx.insert_ban(room_id, user_id, at, moderator, reason.as_deref())
                        .await?;
                    let event = Event::MemberBanned {
                        room_id,
                        user_id,
                        moderator,
                        reason,
                    };
                    tx.append(&origin, &event).await?;
                    Ok(())
                })
            })
            .await
            .map_err(from_write)
    }

    /// Lifts a ban (moderators and bridges).
    pub async fn unban(&self, actor: &Actor, room_id: Id, user_id: Id) -> Result<()> {
        self.acting_moderator(actor, room_id).await?;
        let origin = actor.origin.clone();
        let lifted = self
            .store()
            .write(move |tx| {
                Box::pin(async move {
                    let lifted = tx.delete_ban(room_id, user_id).await?;
                    if lifted {
                        tx.append(&origin, &Event::MemberUnbanned { room_id, user_id })
                            .await?;
                    }
                    Ok(lifted)
                })
            })
            .await
            .map_err(from_write)?;
        if lifted {
            Ok(())
        } else {
            Err(ChatError::NotFound("ban"))
        }
    }

    /// Bans somebody of another network (`kind`, `external_id`, e.g. `matrix`,
    /// `@spammer:example.org`) from a room, whether or not weft has met them: nothing they
    /// send reaches the room while the ban stands. Answers their virtual user's id.
    pub async fn ban_virtual(
        &self,
        actor: &Actor,
        room_id: Id,
        kind: &str,
        external_id: &str,
        reason: Option<String>,
    ) -> Result<Id> {
        let moderator = self.acting_moderator(actor, room_id).await?;
        validate::short_text("virtual user id", external_id, 256)?;
        if kind.is_empty() || external_id.trim().is_empty() {
            return Err(ChatError::Invalid("say whom to ban".into()));
        }
        let reason = checked_reason(reason)?;
        let who = PostAs {
            kind: kind.to_string(),
            external_id: external_id.to_string(),
            display_name: String::new(),
            avatar_url: None,
        };
        let origin = actor.origin.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    let (vu, _) = tx
                        .upsert_virtual_user(&who.kind, &who.external_id, None, None)
                        .await?;
                    // Banned people are not in the room (the `VirtualBanned` entry tells
                    // the member lists).
                    tx.delete_virtual_membership(room_id, vu.id).await?;
                    if tx
                        .insert_virtual_ban(room_id, vu.id, moderator, reason.as_deref())
                        .await?
                    {
                        let event = Event::VirtualBanned {
                            room_id,
                            virtual_id: vu.id,
                            moderator,
                            reason,
                        };
                        tx.append(&origin, &event).await?;
                    }
                    Ok(vu.id)
                })
            })
            .await
            .map_err(from_write)
    }

    /// Lifts a virtual user's ban (moderators and bridges).
    pub async fn unban_virtual(&self, actor: &Actor, room_id: Id, virtual_id: Id) -> Result<()> {
        self.acting_moderator(actor, room_id).await?;
        let origin = actor.origin.clone();
        let lifted = self
            .store()
            .write(move |tx| {
                Box::pin(async move {
                    let lifted = tx.delete_virtual_ban(room_id, virtual_id).await?;
                    if lifted {
                        let event = Event::VirtualUnbanned {
                            room_id,
                            virtual_id,
                        };
                        tx.append(&origin, &event).await?;
                    }
                    Ok(lifted)
                })
            })
            .await
            .map_err(from_write)?;
        if lifted {
            Ok(())
        } else {
            Err(ChatError::NotFound("ban"))
        }
    }

    /// Removes a virtual user from a room (moderators): a bridge removes them on their
    /// network; unlike a ban, they may come back.
    pub async fn kick_virtual(
        &self,
        actor: &Actor,
        room_id: Id,
        virtual_id: Id,
        reason: Option<String>,
    ) -> Result<()> {
        let moderator = self.acting_moderator(actor, room_id).await?;
        if self.store().virtual_user(virtual_id).await?.is_none() {
            return Err(ChatError::NotFound("user"));
        }
        let reason = checked_reason(reason)?;
        let origin = actor.origin.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    tx.delete_virtual_membership(room_id, virtual_id).await?;
                    let event = Event::VirtualKicked {
                        room_id,
                        virtual_id,
                        moderator,
                        reason,
                    };
                    tx.append(&origin, &event).await?;
                    Ok(())
                })
            })
            .await
            .map_err(from_write)
    }

    /// A room's ban list, weft users and virtual users alike (moderators only).
    pub async fn bans(&self, actor: &Actor, room_id: Id) -> Result<Vec<Ban>> {
        self.acting_moderator(actor, room_id).await?;
        Ok(self.store().bans(room_id).await?)
    }

    /// Refuses what a banned virtual user does in a room.
    pub(crate) async fn refuse_if_banned(&self, room_id: Id, who: Option<&PostAs>) -> Result<()> {
        let Some(who) = who else {
            return Ok(());
        };
        if self
            .store()
            .is_virtual_banned(room_id, &who.kind, &who.external_id)
            .await?
        {
            return Err(ChatError::Forbidden("you are banned from this room".into()));
        }
        Ok(())
    }

    /// Records that a bridge gave up carrying a message to its network, for good, so that
    /// the people in the room can see it never arrived there (bridge actors only).
    pub async fn mark_undelivered(
        &self,
        actor: &Actor,
        room_id: Id,
        message_id: Id,
        network: &str,
        reason: &str,
    ) -> Result<()> {
        if !actor.is_bridge() {
            return Err(ChatError::Forbidden(
                "only bridges mark messages undelivered".into(),
            ));
        }
        let mark = Undelivered {
            network: network.to_string(),
            reason: reason.chars().take(MAX_REASON_CHARS).collect(),
        };
        let origin = actor.origin.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    if !tx.set_undelivered(message_id, &mark).await? {
                        return Err(rejected(ChatError::NotFound("message")));
                    }
                    let event = Event::MessageUndelivered {
                        room_id,
                        message_id,
                    };
                    tx.append(&origin, &event).await?;
                    Ok(())
                })
            })
            .await
            .map_err(from_write)
    }
}
