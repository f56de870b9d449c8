//! People of other networks in a room. A bridge whose room's membership is synced lists the
//! people in the room on its network among the room's members ([`Event::VirtualJoined`],
//! [`Event::VirtualLeft`]), so that the member list and the member count show everyone in the
//! room, whichever side they are on. Only bridges list them; banning or removing one takes
//! them off the list too (see `moderation`).

use weft_core::{Event, Id, Profile, Role};

use crate::error::from_write;
use crate::messages::posting::virtual_author;
use crate::{Actor, Chat, ChatError, PostAs, Result};

/// The most people one call lists or unlists: one write each.
pub const VIRTUAL_MEMBERS_PER_WRITE: usize = 500;

impl Chat {
    /// Lists people of another network among a room's members, naming them as given (a bridge
    /// only); answers how many were not listed yet. People banned from the room are not
    /// listed.
    pub async fn join_virtual(
        &self,
        actor: &Actor,
        room_id: Id,
        people: Vec<PostAs>,
    ) -> Result<usize> {
        self.require_bridge(actor, room_id, people.len()).await?;
        let origin = actor.origin.clone();
        let at = weft_core::now_millis();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    let claims: Vec<(Id, &str, &str)> = people
                        .iter()
                        .map(|p| (room_id, p.kind.as_str(), p.external_id.as_str()))
                        .collect();
                    let banned = tx.virtual_bans_among(&claims).await?;
                    let mut joined = 0;
                    for person in &people {
                        if banned
                            .iter()
                            .any(|(_, k, e)| *k == person.kind && *e == person.external_id)
                        {
                            continue;
                        }
                        let vu = virtual_author(tx, person, &origin).await?;
                        if tx.insert_virtual_membership(room_id, vu.id, at).await? {
                            let event = Event::VirtualJoined {
                                room_id,
                                virtual_id: vu.id,
                            };
                            tx.append(&origin, &event).await?;
                            joined += 1;
                        }
                    }
                    Ok(joined)
                })
            })
            .await
            .map_err(from_write)
    }

    /// Takes people of another network (`kind`, by external id) off a room's members (a
    /// bridge only); answers how many were listed.
    pub async fn leave_virtual(
        &self,
        actor: &Actor,
        room_id: Id,
        kind: &str,
        external_ids: Vec<String>,
    ) -> Result<usize> {
        self.require_bridge(actor, room_id, external_ids.len())
            .await?;
        let origin = actor.origin.clone();
        let kind = kind.to_string();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    let ids: Vec<&str> = external_ids.iter().map(String::as_str).collect();
                    let known = tx.virtual_users(&kind, &ids).await?;
                    let mut left = 0;
                    for vu in known.values() {
                        if tx.delete_virtual_membership(room_id, vu.id).await? {
                            let event = Event::VirtualLeft {
                                room_id,
                                virtual_id: vu.id,
                            };
                            tx.append(&origin, &event).await?;
                            left += 1;
                        }
                    }
                    Ok(left)
                })
            })
            .await
            .map_err(from_write)
    }

    /// A page of everyone in a room: its weft members by username with their roles, then the
    /// people of other networks listed in it (role `member`). `q` filters by name prefix.
    pub async fn room_people(
        &self,
        actor: &Actor,
        room_id: Id,
        q: &str,
        limit: i64,
        skip: i64,
    ) -> Result<Vec<(Profile, Role)>> {
        self.room(actor, room_id).await?;
        let (limit, skip) = (limit.clamp(1, 100), skip.max(0));
        let store = self.store();
        let mut page: Vec<(Profile, Role)> = store
            .members(room_id, q, limit, skip)
            .await?
            .into_iter()
            .map(|(u, role)| (Profile::User(u), role))
            .collect();
        let room_for = limit - page.len() as i64;
        if room_for > 0 {
            // Past the weft members: where the people of other networks start on this page.
            let weft_total = store.member_total(room_id, q).await?;
            let virtual_skip = (skip - weft_total).max(0);
            page.extend(
                store
                    .virtual_members(room_id, q, room_for, virtual_skip)
                    .await?
                    .into_iter()
                    .map(|v| (Profile::Virtual(v), Role::Member)),
            );
        }
        Ok(page)
    }

    /// Refuses anyone but a bridge, a room that does not exist, and more `people` than one
    /// write takes.
    async fn require_bridge(&self, actor: &Actor, room_id: Id, people: usize) -> Result<()> {
        if !actor.is_bridge() {
            return Err(ChatError::Forbidden(
                "only bridges list people of other networks".into(),
            ));
        }
        if people > VIRTUAL_MEMBERS_PER_WRITE {
            return Err(ChatError::Invalid(format!(
                "at most {VIRTUAL_MEMBERS_PER_WRITE} people at a time"
            )));
        }
        self.room(actor, room_id).await?;
        Ok(())
    }
}
