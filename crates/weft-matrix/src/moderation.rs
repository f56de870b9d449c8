//! Moderation across the bridge: weft's roles become Matrix power levels, and moderators on
//! either side act on both.
//!
//! - **Power levels.** Weft is the authority on its members' roles: a room moderator's puppet
//!   has power 50 and a room admin's 100 ([`ROLE_LEVELS`]), kept in sync whenever roles change
//!   (every role change logs `RoomUpdated`). Matrix users keep whatever levels the room gives
//!   them. The homeserver enforces these levels, so a Matrix moderator can never ban or redact
//!   a weft admin.
//! - **Matrix → weft.** Bans, kicks and redactions by Matrix moderators reach weft as the
//!   homeserver accepted them; a redaction of someone else's event is applied only when its
//!   sender's power level allows redacting (the homeserver stores a redaction before it knows
//!   whether it may apply it).
//! - **Weft → Matrix.** The bridge bot bans, unbans and kicks on Matrix what weft's
//!   moderators ban, unban and remove, with their reason, and redacts what they delete.
//!
//! Spec: [power levels](https://spec.matrix.org/latest/client-server-api/#mroompower_levels),
//! [redactions](https://spec.matrix.org/latest/client-server-api/#redactions),
//! [authorization rules](https://spec.matrix.org/latest/rooms/v11/#authorization-rules).

use crate::tables::{MatrixRoom, MatrixWrites};
use serde_json::{Map, Value, json};
use weft_core::Role;

use crate::{Bridge, BridgeError};

/// The Matrix power level of each weft role.
pub(crate) const ROLE_LEVELS: [(Role, i64); 2] = [(Role::Moderator, 50), (Role::Admin, 100)];

fn level_of(role: Role) -> Option<i64> {
    ROLE_LEVELS
        .iter()
        .find(|(r, _)| *r == role)
        .map(|(_, level)| *level)
}

/// The power level a user has in a room's `m.room.power_levels` content.
pub(crate) fn power_of(levels: &Value, mxid: &str) -> i64 {
    levels["users"][mxid]
        .as_i64()
        .unwrap_or_else(|| levels["users_default"].as_i64().unwrap_or(0))
}

/// The power level needed to redact other people's events (spec default 50).
pub(crate) fn redact_level(levels: &Value) -> i64 {
    levels["redact"].as_i64().unwrap_or(50)
}

/// `levels` with every puppet's entry set from weft's roles (`staff`: puppet → level) and
/// every other entry kept; `None` if nothing changes.
pub(crate) fn with_puppet_levels(
    levels: &Value,
    staff: &[(String, i64)],
    is_puppet: impl Fn(&str) -> bool,
) -> Option<Value> {
    let current: Map<String, Value> = levels["users"].as_object().cloned().unwrap_or_default();
    let mut users: Map<String, Value> = current
        .iter()
        .filter(|(mxid, _)| !is_puppet(mxid))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (mxid, level) in staff {
        users.insert(mxid.clone(), json!(level));
    }
    if users == current {
        return None;
    }
    let mut updated = levels.clone();
    updated["users"] = Value::Object(users);
    Some(updated)
}

impl Bridge {
    /// The puppets that should hold power in a room, from weft's roles.
    pub(crate) async fn staff_levels(
        &self,
        room_id: weft_core::Id,
    ) -> Result<Vec<(String, i64)>, BridgeError> {
        let staff = self.chat().views().room_staff(room_id).await?;
        Ok(staff
            .iter()
            .filter_map(|(user, role)| level_of(*role).map(|l| (self.ids().puppet(user), l)))
            .collect())
    }

    /// Makes the Matrix room's power levels say what weft's roles say (puppets only).
    pub(crate) async fn sync_power_levels(&self, mapped: &MatrixRoom) -> Result<(), BridgeError> {
        let room = mapped.matrix_room_id.as_str();
        let Some(levels) = self.hs().state(room, "m.room.power_levels", "").await? else {
            return Ok(());
        };
        let staff = self.staff_levels(mapped.room_id).await?;
        let Some(updated) = with_puppet_levels(&levels, &staff, |mxid| {
            self.ids().puppet_user_id(mxid).is_some()
        }) else {
            return Ok(());
        };
        self.hs()
            .set_state(room, "m.room.power_levels", "", &updated, &self.ids().bot())
            .await?;
        tracing::info!(room_id = %mapped.room_id, matrix_room_id = %room, staff = staff.len(), "power levels follow weft's roles");
        Ok(())
    }

    /// Whether a Matrix user may redact other people's events in a room, by its current
    /// power levels. Asks the homeserver: this happens only for a redaction of someone
    /// else's event, which is rare.
    pub(crate) async fn may_redact_others(
        &self,
        matrix_room: &str,
        mxid: &str,
    ) -> Result<bool, BridgeError> {
        let levels = self.power_levels(matrix_room).await?;
        Ok(power_of(&levels, mxid) >= redact_level(&levels))
    }

    /// A Matrix room's `m.room.power_levels` content, as the bridge bot reads it now (`null`
    /// when the room has none: everyone's level and every requirement are then the spec's
    /// defaults).
    pub(crate) async fn power_levels(&self, matrix_room: &str) -> Result<Value, BridgeError> {
        Ok(self
            .hs()
            .state(matrix_room, "m.room.power_levels", "")
            .await?
            .unwrap_or(Value::Null))
    }
}

/// What a Matrix room's members read as the reason of a weft moderator's act.
fn reason_on_matrix(what: &str, moderator: Option<&str>, reason: Option<&str>) -> String {
    let by = moderator.map(|m| format!(" by {m}")).unwrap_or_default();
    match reason {
        Some(r) => format!("{what} on weft{by}: {r}"),
        None => format!("{what} on weft{by}"),
    }
}

impl Bridge {
    /// Repeats a weft moderator's act on Matrix as the bridge bot; `Ok(false)` if the event
    /// is not a moderation act.
    pub(crate) async fn moderate_on_matrix(
        &self,
        event: &weft_core::LoggedEvent,
        matrix_room: &str,
    ) -> Result<bool, BridgeError> {
        use weft_core::Event;
        let store = self.chat().views();
        let bot = self.ids().bot();
        let name_of = |id: Option<weft_core::Id>| async move {
            match id {
                Some(id) => store.user(id).await.ok().flatten().map(|u| u.username),
                None => None,
            }
        };
        let (action, target, why) = match &event.event {
            Event::MemberBanned {
                user_id,
                moderator,
                reason,
                ..
            } => {
                let Some(user) = store.user(*user_id).await? else {
                    return Ok(true);
                };
                let by = name_of(*moderator).await;
                let why = reason_on_matrix("Banned", by.as_deref(), reason.as_deref());
                ("ban", self.ids().puppet(&user), Some(why))
            }
            Event::MemberUnbanned { user_id, .. } => {
                let Some(user) = store.user(*user_id).await? else {
                    return Ok(true);
                };
                ("unban", self.ids().puppet(&user), None)
            }
            Event::MemberLeft {
                user_id,
                moderator: Some(moderator),
                reason,
                ..
            } => {
                let Some(user) = store.user(*user_id).await? else {
                    return Ok(true);
                };
                let by = name_of(Some(*moderator)).await;
                let why = reason_on_matrix("Removed", by.as_deref(), reason.as_deref());
                ("kick", self.ids().puppet(&user), Some(why))
            }
            Event::VirtualBanned {
                virtual_id,
                moderator,
                reason,
                ..
            }
            | Event::VirtualKicked {
                virtual_id,
                moderator,
                reason,
                ..
            } => {
                let Some(person) = self.matrix_person(*virtual_id).await? else {
                    return Ok(true);
                };
                let by = name_of(*moderator).await;
                let (action, what) = if matches!(event.event, Event::VirtualBanned { .. }) {
                    ("ban", "Banned")
                } else {
                    ("kick", "Removed")
                };
                let why = reason_on_matrix(what, by.as_deref(), reason.as_deref());
                (action, person, Some(why))
            }
            Event::VirtualUnbanned { virtual_id, .. } => {
                let Some(person) = self.matrix_person(*virtual_id).await? else {
                    return Ok(true);
                };
                ("unban", person, None)
            }
            _ => return Ok(false),
        };
        match self
            .hs()
            .moderate(action, matrix_room, &target, why.as_deref(), &bot)
            .await
        {
            Ok(()) => {
                tracing::info!(matrix_room_id = %matrix_room, %target, action, seq = event.seq, "repeated a weft moderator's act on Matrix");
                if action != "unban" {
                    let (r, m) = (matrix_room.to_string(), target.clone());
                    self.tables()
                        .write(move |tx| {
                            Box::pin(async move { tx.delete_matrix_member(&r, &m).await })
                        })
                        .await?;
                }
                Ok(true)
            }
            // Kicking someone who is not in the room, or unbanning someone who is not banned:
            // nothing to do on Matrix.
            Err(e) if e.status == Some(403) && action != "ban" => {
                tracing::debug!(matrix_room_id = %matrix_room, %target, action, error = %e, "nothing to repeat on Matrix");
                Ok(true)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The Matrix ID of a virtual user from Matrix; `None` for other networks'.
    async fn matrix_person(
        &self,
        virtual_id: weft_core::Id,
    ) -> Result<Option<String>, BridgeError> {
        Ok(self
            .chat()
            .views()
            .virtual_user(virtual_id)
            .await?
            .filter(|v| v.kind == crate::VIRTUAL_KIND)
            .map(|v| v.external_id))
    }

    /// A Matrix moderator banned, kicked or unbanned someone (an `m.room.member` event about
    /// another user; the homeserver checked the sender's power). Weft does the same: to the
    /// weft user a puppet stands for, or to the Matrix user's virtual user.
    pub(crate) async fn moderate_from_matrix(
        &self,
        room_id: weft_core::Id,
        member: &crate::translate::IncomingMember,
    ) -> Result<(), BridgeError> {
        let target = member.target.as_str();
        let (membership, before) = (
            member.membership.as_str(),
            member.before.as_deref().unwrap_or_default(),
        );
        let reason = member.reason.clone();
        let puppet_of = self.ids().puppet_user_id(target);
        let actor = self.actor();
        let chat = self.chat();
        let outcome = match (membership, before, puppet_of) {
            ("ban", _, Some(user_id)) => chat.ban(actor, room_id, user_id, reason).await,
            ("ban", _, None) => chat
                .ban_virtual(actor, room_id, crate::VIRTUAL_KIND, target, reason)
                .await
                .map(|_| ()),
            ("leave", "ban", Some(user_id)) => chat.unban(actor, room_id, user_id).await,
            ("leave", "ban", None) => {
                match chat
                    .views()
                    .virtual_user_by_external_id(crate::VIRTUAL_KIND, target)
                    .await?
                {
                    Some(v) => chat.unban_virtual(actor, room_id, v.id).await,
                    None => Ok(()),
                }
            }
            // A kick of a weft user's puppet removes them from the weft room.
            ("leave", _, Some(user_id)) => {
                chat.remove_member(actor, room_id, user_id, reason).await
            }
            _ => Ok(()),
        };
        match outcome {
            Ok(()) | Err(weft_chat::ChatError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn puppet(mxid: &str) -> bool {
        mxid.starts_with("@p-")
    }

    #[test]
    fn puppets_follow_weft_and_matrix_users_keep_their_levels() {
        let levels = json!({
            "users": { "@p-old-mod:hs": 50, "@matrix-mod:elsewhere": 50, "@weft:hs": 100 },
            "users_default": 0, "redact": 50
        });
        let staff = vec![("@p-admin:hs".to_string(), 100)];
        let updated = with_puppet_levels(&levels, &staff, puppet).expect("a change");
        assert_eq!(
            updated["users"],
            json!({ "@p-admin:hs": 100, "@matrix-mod:elsewhere": 50, "@weft:hs": 100 })
        );
        assert_eq!(updated["redact"], 50, "the rest of the content is kept");
        assert!(
            with_puppet_levels(&updated, &staff, puppet).is_none(),
            "no change, no event"
        );
    }

    #[test]
    fn redacting_others_needs_the_redact_level() {
        let levels = json!({ "users": { "@mod:hs": 50 }, "users_default": 0 });
        assert!(power_of(&levels, "@mod:hs") >= redact_level(&levels));
        assert!(power_of(&levels, "@nobody:hs") < redact_level(&levels));
        assert_eq!(power_of(&Value::Null, "@x:hs"), 0);
    }
}
