//! Communities, rooms and memberships.

use weft_core::permission::{self, Standing};
use weft_core::{Event, Group, Id, Membership, Role, Room, RoomKind, User, validate};

use crate::error::{from_write, rejected};
use crate::{Actor, Chat, ChatError, Result};

/// A room to create in a community.
#[derive(Debug, Clone)]
pub struct NewRoom {
    /// The community.
    pub group_id: Id,
    /// The room's name: the second half of its URI.
    pub name: String,
    /// Topic line.
    pub topic: String,
    /// Public or private.
    pub kind: RoomKind,
}

/// Changes to a room's settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct RoomPatch {
    /// New display name.
    pub name: Option<String>,
    /// New topic.
    pub topic: Option<String>,
    /// Public or private (one-to-one rooms cannot change).
    pub kind: Option<RoomKind>,
    /// Ask search engines not to index the archives.
    pub noindex: Option<bool>,
    /// New avatar (`Some(None)` removes it).
    pub avatar_url: Option<Option<String>>,
}

/// A room as it appears in a user's room list.
#[derive(Debug, Clone)]
pub struct RoomSummary {
    /// The room.
    pub room: Room,
    /// The user's membership.
    pub membership: Membership,
    /// Unread messages (capped).
    pub unread: i64,
    /// Unread mentions (capped).
    pub mentions: i64,
    /// The other person, for one-to-one rooms.
    pub other_user: Option<User>,
}

impl Chat {
    /// The caller's standing in a room: membership and ban.
    pub(crate) async fn standing(
        &self,
        actor: &Actor,
        room_id: Id,
    ) -> Result<(Option<Membership>, bool)> {
        let Some(user) = &actor.user else {
            return Ok((None, false));
        };
        Ok(self.store().standing(room_id, user.id).await?)
    }

    /// A room the caller may read; private rooms they may not see are reported as not found.
    pub async fn room(&self, actor: &Actor, room_id: Id) -> Result<Room> {
        self.room_with_standing(actor, room_id)
            .await
            .map(|(room, _)| room)
    }

    /// A room the caller may read, with their standing in it (so that callers who go on to
    /// check posting rights need not look it up again).
    pub(crate) async fn room_with_standing(
        &self,
        actor: &Actor,
        room_id: Id,
    ) -> Result<(Room, (Option<Membership>, bool))> {
        let room = self
            .store()
            .room(room_id)
            .await?
            .ok_or(ChatError::NotFound("room"))?;
        let (membership, banned) = self.standing(actor, room_id).await?;
        let s = Standing {
            user: actor.user.as_ref(),
            membership: membership.as_ref(),
            banned,
        };
        if permission::can_read(&room, s) {
            Ok((room, (membership, banned)))
        } else if banned {
            Err(ChatError::Forbidden("you are banned from this room".into()))
        } else {
            Err(ChatError::NotFound("room"))
        }
    }

    /// A room by `community/room` URI, if the caller may read it.
    pub async fn room_by_uri(&self, actor: &Actor, uri: &str) -> Result<Room> {
        let room = self
            .store()
            .room_by_uri(uri)
            .await?
            .ok_or(ChatError::NotFound("room"))?;
        self.room(actor, room.id).await
    }

    /// Creates a community; the creator administers it.
    pub async fn create_group(
        &self,
        actor: &Actor,
        uri: &str,
        name: Option<String>,
    ) -> Result<Group> {
        let creator = actor.user.as_ref().map(|u| u.id);
        if creator.is_none() && !actor.system {
            return Err(ChatError::Unauthorized);
        }
        validate::uri_segment(uri)?;
        let name = name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| uri.to_string());
        validate::short_text("community name", &name, 128)?;
        let group = Group {
            id: Id::generate(),
            uri: uri.to_string(),
            name,
            avatar_url: None,
            created_at: weft_core::now_millis(),
        };
        let stored = group.clone();
        let origin = actor.origin.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    tx.insert_community(&stored, creator).await?;
                    tx.append(
                        &origin,
                        &Event::GroupCreated {
                            group_id: stored.id,
                        },
                    )
                    .await?;
                    Ok(())
                })
            })
            .await
            .map_err(|e| match from_write(e) {
                ChatError::Conflict(_) => ChatError::Conflict(format!("community {uri}")),
                other => other,
            })?;
        Ok(group)
    }

    /// A community by id.
    pub async fn group(&self, id: Id) -> Result<Group> {
        self.store()
            .community(id)
            .await?
            .ok_or(ChatError::NotFound("community"))
    }

    /// Whether the caller may create rooms in and administer a community.
    pub async fn can_administer_group(&self, actor: &Actor, group_id: Id) -> Result<bool> {
        if actor.system {
            return Ok(true);
        }
        let Some(user) = &actor.user else {
            return Ok(false);
        };
        Ok(user.site_admin || self.store().is_community_admin(group_id, user.id).await?)
    }

    /// Creates a room in a community; the creator joins it as admin.
    pub async fn create_room(&self, actor: &Actor, new: NewRoom) -> Result<Room> {
        let creator = actor.user.as_ref().map(|u| u.id);
        if creator.is_none() && !actor.system {
            return Err(ChatError::Unauthorized);
        }
        let group = self.group(new.group_id).await?;
        if !self.can_administer_group(actor, group.id).await? {
            return Err(ChatError::Forbidden(
                "only the community's admins may create rooms".into(),
            ));
        }
        validate::uri_segment(&new.name)?;
        validate::short_text("topic", &new.topic, 1024)?;
        if new.kind == RoomKind::OneToOne {
            return Err(ChatError::Invalid(
                "one-to-one rooms are created by messaging a user".into(),
            ));
        }
        let now = weft_core::now_millis();
        let room = Room {
            id: Id::generate(),
            group_id: Some(group.id),
            uri: Some(format!("{}/{}", group.uri, new.name)),
            name: new.name,
            topic: new.topic,
            kind: new.kind,
            avatar_url: None,
            noindex: false,
            member_count: i64::from(creator.is_some()),
            created_at: now,
        };
        let stored = room.clone();
        let origin = actor.origin.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    tx.insert_room(&stored, None).await?;
                    tx.append(&origin, &Event::RoomCreated { room_id: stored.id })
                        .await?;
                    if let Some(user_id) = creator {
                        let m = Membership {
                            room_id: stored.id,
                            user_id,
                            role: Role::Admin,
                            last_read_seq: 0,
                            favourite: false,
                            joined_at: now,
                        };
                        tx.insert_membership(&m).await?;
                        tx.append(
                            &origin,
                            &Event::MemberJoined {
                                room_id: stored.id,
                                user_id,
                            },
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(|e| match from_write(e) {
                ChatError::Conflict(_) => {
                    ChatError::Conflict(format!("room {}", room.uri.clone().unwrap_or_default()))
                }
                other => other,
            })?;
        Ok(room)
    }

    /// Joins the caller to a room they may join; joining twice is harmless.
    pub async fn join(&self, actor: &Actor, room_id: Id) -> Result<Room> {
        let user = actor.require_user()?.clone();
        let room = self
            .store()
            .room(room_id)
            .await?
            .ok_or(ChatError::NotFound("room"))?;
        let (membership, banned) = self.standing(actor, room_id).await?;
        if membership.is_some() {
            return Ok(room);
        }
        let s = Standing {
            user: Some(&user),
            membership: None,
            banned,
        };
        if !permission::can_join(&room, s) {
            return Err(if banned {
                ChatError::Forbidden("you are banned from this room".into())
            } else if room.kind == RoomKind::Public {
                ChatError::Forbidden("you may not join this room".into())
            } else {
                ChatError::NotFound("room")
            });
        }
        self.add_member(actor, &room, user.id, Role::Member).await?;
        self.store()
            .room(room_id)
            .await?
            .ok_or(ChatError::NotFound("room"))
    }

    /// Adds a user to a room (inside one write), starting their read mark at the newest message.
    async fn add_member(&self, actor: &Actor, room: &Room, user_id: Id, role: Role) -> Result<()> {
        let last = self.store().last_message_seq(room.id).await?;
        let room_id = room.id;
        let origin = actor.origin.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    let m = Membership {
                        room_id,
                        user_id,
                        role,
                        last_read_seq: last,
                        favourite: false,
                        joined_at: weft_core::now_millis(),
                    };
                    if tx.insert_membership(&m).await? {
                        tx.append(&origin, &Event::MemberJoined { room_id, user_id })
                            .await?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(from_write)
    }

    /// Gitter's `POST /rooms {uri}`: joins a room by `community/room`, or opens the
    /// one-to-one room with the user named by a bare username.
    pub async fn join_by_uri(&self, actor: &Actor, uri: &str) -> Result<Room> {
        let uri = uri.trim().trim_matches('/');
        if uri.contains('/') {
            let room = self
                .store()
                .room_by_uri(uri)
                .await?
                .ok_or(ChatError::NotFound("room"))?;
            self.join(actor, room.id).await
        } else {
            let other = self.user_by_username(uri).await?;
            self.one_to_one(actor, other.id).await
        }
    }

    /// The one-to-one room between the caller and another user, created on first use.
    pub async fn one_to_one(&self, actor: &Actor, other_id: Id) -> Result<Room> {
        let me = actor.require_user()?.clone();
        if me.id == other_id {
            return Err(ChatError::Invalid(
                "you cannot open a one-to-one room with yourself".into(),
            ));
        }
        let other = self.user(other_id).await?;
        if let Some(room) = self.store().one_to_one_room(me.id, other.id).await? {
            return Ok(room);
        }
        let now = weft_core::now_millis();
        let room = Room {
            id: Id::generate(),
            group_id: None,
            uri: None,
            name: String::new(),
            topic: String::new(),
            kind: RoomKind::OneToOne,
            avatar_url: None,
            noindex: true,
            member_count: 2,
            created_at: now,
        };
        let stored = room.clone();
        let origin = actor.origin.clone();
        let created = self
            .store()
            .write(move |tx| {
                Box::pin(async move {
                    tx.insert_room(&stored, Some((me.id, other.id))).await?;
                    tx.append(&origin, &Event::RoomCreated { room_id: stored.id })
                        .await?;
                    for user_id in [me.id, other.id] {
                        let m = Membership {
                            room_id: stored.id,
                            user_id,
                            role: Role::Member,
                            last_read_seq: 0,
                            favourite: false,
                            joined_at: now,
                        };
                        tx.insert_membership(&m).await?;
                        tx.append(
                            &origin,
                            &Event::MemberJoined {
                                room_id: stored.id,
                                user_id,
                            },
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .await;
        match created {
            Ok(()) => Ok(room),
            // Both opened it at once: the other write won; use its room.
            Err(weft_store::StoreError::Conflict(_)) => self
                .store()
                .one_to_one_room(me.id, other_id)
                .await?
                .ok_or(ChatError::NotFound("room")),
            Err(e) => Err(from_write(e)),
        }
    }

    pub(crate) async fn require_moderator(&self, actor: &Actor, room_id: Id) -> Result<Room> {
        let me = actor.require_user()?;
        let room = self.room(actor, room_id).await?;
        let (membership, banned) = self.standing(actor, room_id).await?;
        let s = Standing {
            user: Some(me),
            membership: membership.as_ref(),
            banned,
        };
        if permission::can_moderate(s) {
            Ok(room)
        } else {
            Err(ChatError::Forbidden(
                "only the room's moderators may do this".into(),
            ))
        }
    }

    async fn require_admin(&self, actor: &Actor, room_id: Id) -> Result<Room> {
        let me = actor.require_user()?;
        let room = self.room(actor, room_id).await?;
        let (membership, banned) = self.standing(actor, room_id).await?;
        let s = Standing {
            user: Some(me),
            membership: membership.as_ref(),
            banned,
        };
        let group_admin = match room.group_id {
            Some(g) => self.store().is_community_admin(g, me.id).await?,
            None => false,
        };
        if permission::can_administer(s) || group_admin {
            Ok(room)
        } else {
            Err(ChatError::Forbidden(
                "only the room's admins may do this".into(),
            ))
        }
    }

    /// Changes a room's settings (admins only). A bridge may change the name, topic and
    /// avatar: it has checked that the other network's member may (see the Matrix bridge's
    /// `room_details`), and only weft's admins decide who may read the room.
    pub async fn update_room(&self, actor: &Actor, room_id: Id, patch: RoomPatch) -> Result<Room> {
        let mut room = if actor.is_bridge() {
            if patch.kind.is_some() || patch.noindex.is_some() {
                return Err(ChatError::Forbidden(
                    "only the room's admins may do this".into(),
                ));
            }
            self.room(actor, room_id).await?
        } else {
            self.require_admin(actor, room_id).await?
        };
        let was_public = room.kind == RoomKind::Public;
        if let Some(name) = patch.name {
            validate::short_text("room name", &name, 128)?;
            room.name = name;
        }
        if let Some(topic) = patch.topic {
            validate::short_text("topic", &topic, 1024)?;
            room.topic = topic;
        }
        if let Some(kind) = patch.kind {
            if room.kind == RoomKind::OneToOne || kind == RoomKind::OneToOne {
                return Err(ChatError::Invalid(
                    "one-to-one rooms cannot change kind".into(),
                ));
            }
            room.kind = kind;
        }
        if let Some(noindex) = patch.noindex {
            room.noindex = noindex;
        }
        if let Some(avatar) = patch.avatar_url {
            if let Some(url) = &avatar {
                validate::avatar_url(url)?;
            }
            room.avatar_url = avatar;
        }
        let stored = room.clone();
        let origin = actor.origin.clone();
        let public = room.kind == RoomKind::Public;
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    tx.update_room(&stored).await?;
                    tx.append(&origin, &Event::RoomUpdated { room_id: stored.id })
                        .await?;
                    if public != was_public {
                        let event = Event::RoomPrivacyChanged {
                            room_id: stored.id,
                            public,
                        };
                        tx.append(&origin, &event).await?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(from_write)?;
        Ok(room)
    }

    /// Deletes a room and its history (admins only).
    pub async fn delete_room(&self, actor: &Actor, room_id: Id) -> Result<()> {
        self.require_admin(actor, room_id).await?;
        let origin = actor.origin.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    tx.delete_room(room_id).await?;
                    tx.append(&origin, &Event::RoomDeleted { room_id }).await?;
                    Ok(())
                })
            })
            .await
            .map_err(from_write)
    }

    /// Marks a room as a favourite of the caller, or not.
    pub async fn set_favourite(&self, actor: &Actor, room_id: Id, favourite: bool) -> Result<()> {
        let user_id = actor.require_user()?.id;
        let changed = self
            .store()
            .write(move |tx| {
                Box::pin(async move { tx.set_favourite(room_id, user_id, favourite).await })
            })
            .await
            .map_err(from_write)?;
        if changed {
            Ok(())
        } else {
            Err(ChatError::NotFound("membership"))
        }
    }

    /// Gives a member a role (room admins only).
    pub async fn set_role(
        &self,
        actor: &Actor,
        room_id: Id,
        user_id: Id,
        role: Role,
    ) -> Result<()> {
        self.require_admin(actor, room_id).await?;
        let origin = actor.origin.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    if !tx.set_role(room_id, user_id, role).await? {
                        return Err(rejected(ChatError::NotFound("member")));
                    }
                    tx.append(&origin, &Event::RoomUpdated { room_id }).await?;
                    Ok(())
                })
            })
            .await
            .map_err(from_write)
    }

    /// A user's rooms with unread and mention counts. Only the user themselves (or a site
    /// admin) may list them.
    pub async fn rooms_of(&self, actor: &Actor, user_id: Id) -> Result<Vec<RoomSummary>> {
        let me = actor.require_user()?;
        if me.id != user_id && !me.site_admin {
            return Err(ChatError::Forbidden(
                "you may only list your own rooms".into(),
            ));
        }
        let cap = self.config().unread_cap;
        let mut out = Vec::new();
        for entry in self.store().rooms_of_user(user_id).await? {
            let m = &entry.membership;
            let unread = self
                .store()
                .unread_message_ids(m.room_id, user_id, m.last_read_seq, cap)
                .await?
                .len();
            let mentions = self
                .store()
                .unread_mention_ids(m.room_id, user_id, m.last_read_seq, cap)
                .await?
                .len();
            let other_user = if entry.room.kind == RoomKind::OneToOne {
                self.store()
                    .members(m.room_id, "", 2, 0)
                    .await?
                    .into_iter()
                    .map(|(u, _)| u)
                    .find(|u| u.id != user_id)
            } else {
                None
            };
            out.push(RoomSummary {
                room: entry.room,
                membership: entry.membership,
                unread: unread as i64,
                mentions: mentions as i64,
                other_user,
            });
        }
        Ok(out)
    }

    /// A page of a room's members with roles.
    pub async fn members(
        &self,
        actor: &Actor,
        room_id: Id,
        q: &str,
        limit: i64,
        skip: i64,
    ) -> Result<Vec<(User, Role)>> {
        self.room(actor, room_id).await?;
        Ok(self
            .store()
            .members(room_id, q, limit.clamp(1, 100), skip.max(0))
            .await?)
    }

    /// The communities the caller belongs to (every community for a visitor's directory).
    pub async fn groups(&self, actor: &Actor) -> Result<Vec<Group>> {
        match &actor.user {
            Some(user) => Ok(self.store().communities_of(user.id).await?),
            None => Ok(self.store().communities().await?),
        }
    }

    /// The rooms of a community the caller may see.
    pub async fn group_rooms(&self, actor: &Actor, group_id: Id) -> Result<Vec<Room>> {
        self.group(group_id).await?;
        let mut visible = Vec::new();
        for room in self.store().rooms_of_community(group_id).await? {
            if room.kind == RoomKind::Public || self.room(actor, room.id).await.is_ok() {
                visible.push(room);
            }
        }
        Ok(visible)
    }
}
