//! Who may do what. Pure functions over the records involved, so every door (API, web app,
//! bridge) asks the same questions.

use crate::{Membership, Role, Room, RoomKind, User};

/// The caller's standing in one room.
#[derive(Debug, Clone, Copy)]
pub struct Standing<'a> {
    /// The caller, if signed in.
    pub user: Option<&'a User>,
    /// Their membership of the room, if any.
    pub membership: Option<&'a Membership>,
    /// Banned from the room.
    pub banned: bool,
}

impl Standing<'_> {
    fn role(&self) -> Option<Role> {
        if self.user.is_some_and(|u| u.site_admin) {
            return Some(Role::Admin);
        }
        self.membership.map(|m| m.role)
    }
}

/// May read the room's messages and members. Public rooms are open to everyone, even
/// visitors who are not signed in (peeking).
pub fn can_read(room: &Room, s: Standing<'_>) -> bool {
    match room.kind {
        RoomKind::Public => !s.banned,
        RoomKind::Private | RoomKind::OneToOne => s.membership.is_some() || s.role().is_some(),
    }
}

/// May join the room without an invitation.
pub fn can_join(room: &Room, s: Standing<'_>) -> bool {
    s.user.is_some()
        && !s.banned
        && (room.kind == RoomKind::Public || s.user.is_some_and(|u| u.site_admin))
}

/// May post messages and reactions.
pub fn can_post(s: Standing<'_>) -> bool {
    s.membership.is_some() && !s.banned
}

/// May delete others' messages and remove or ban members.
pub fn can_moderate(s: Standing<'_>) -> bool {
    s.role().is_some_and(|r| r >= Role::Moderator)
}

/// May remove or ban `target` (their membership, if any): a moderator acting on someone of
/// lower rank, so a moderator cannot remove an admin; site admins may act on anyone.
pub fn can_moderate_member(s: Standing<'_>, target: Option<&Membership>) -> bool {
    if !can_moderate(s) {
        return false;
    }
    if s.user.is_some_and(|u| u.site_admin) {
        return true;
    }
    match (s.membership, target) {
        (_, None) => true,
        (Some(mine), Some(theirs)) => mine.role > theirs.role,
        (None, Some(_)) => false,
    }
}

/// May change the room (name, topic, privacy, avatar), delete it, and mention `@/all`.
pub fn can_administer(s: Standing<'_>) -> bool {
    s.role().is_some_and(|r| r >= Role::Admin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;

    fn room(kind: RoomKind) -> Room {
        Room {
            id: Id::generate(),
            group_id: None,
            uri: None,
            name: String::new(),
            topic: String::new(),
            kind,
            avatar_url: None,
            noindex: false,
            member_count: 0,
            created_at: 0,
        }
    }

    fn user(admin: bool) -> User {
        User {
            id: Id::generate(),
            username: "u".into(),
            display_name: "u".into(),
            avatar_url: None,
            site_admin: admin,
            created_at: 0,
        }
    }

    fn member(role: Role) -> Membership {
        Membership {
            room_id: Id::generate(),
            user_id: Id::generate(),
            role,
            last_read_seq: 0,
            favourite: false,
            joined_at: 0,
        }
    }

    #[test]
    fn visitors_peek_public_rooms_only() {
        let nobody = Standing {
            user: None,
            membership: None,
            banned: false,
        };
        assert!(can_read(&room(RoomKind::Public), nobody));
        assert!(!can_read(&room(RoomKind::Private), nobody));
        assert!(!can_join(&room(RoomKind::Public), nobody));
    }

    #[test]
    fn roles_rank() {
        let u = user(false);
        let m = member(Role::Moderator);
        let s = Standing {
            user: Some(&u),
            membership: Some(&m),
            banned: false,
        };
        assert!(can_post(s) && can_moderate(s) && !can_administer(s));
        let admin = user(true);
        let s = Standing {
            user: Some(&admin),
            membership: None,
            banned: false,
        };
        assert!(can_administer(s) && can_read(&room(RoomKind::Private), s) && !can_post(s));
    }

    #[test]
    fn moderators_act_only_on_lower_ranks() {
        let u = user(false);
        let moderator = member(Role::Moderator);
        let s = Standing {
            user: Some(&u),
            membership: Some(&moderator),
            banned: false,
        };
        assert!(can_moderate_member(s, Some(&member(Role::Member))));
        assert!(can_moderate_member(s, None));
        assert!(!can_moderate_member(s, Some(&member(Role::Moderator))));
        assert!(!can_moderate_member(s, Some(&member(Role::Admin))));
        let admin = member(Role::Admin);
        let s = Standing {
            user: Some(&u),
            membership: Some(&admin),
            banned: false,
        };
        assert!(can_moderate_member(s, Some(&member(Role::Moderator))));
        let plain = member(Role::Member);
        let s = Standing {
            user: Some(&u),
            membership: Some(&plain),
            banned: false,
        };
        assert!(!can_moderate_member(s, Some(&member(Role::Member))));
    }

    #[test]
    fn banned_cannot_read_or_post() {
        let u = user(false);
        let m = member(Role::Member);
        let s = Standing {
            user: Some(&u),
            membership: Some(&m),
            banned: true,
        };
        assert!(!can_read(&room(RoomKind::Public), s));
        assert!(!can_post(s));
        assert!(!can_join(&room(RoomKind::Public), s));
    }
}
