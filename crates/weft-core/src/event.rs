//! The one event type: every change the chat core makes becomes one [`Event`], written to the
//! event log in the same database transaction as the change. The log is what WebSocket and
//! streaming clients receive, what other instances are woken for and what the Matrix bridge's
//! outbox consumes; a new feature adds a variant and every consumer meets it in one `match`.

use serde::{Deserialize, Serialize};

use crate::{Author, Id, Millis};

/// A change to chat state. Events carry ids, not snapshots: consumers load the current state,
/// so a replay after a reconnect shows what is true now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    /// A message was posted.
    MessageCreated {
        /// Room.
        room_id: Id,
        /// New message.
        message_id: Id,
    },
    /// A message's text was edited.
    MessageEdited {
        /// Room.
        room_id: Id,
        /// Edited message.
        message_id: Id,
    },
    /// A message was deleted (or replaced by a placeholder because its thread has replies).
    MessageDeleted {
        /// Room.
        room_id: Id,
        /// Deleted message.
        message_id: Id,
        /// The moderator who deleted someone else's message (none when its author did).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        moderator: Option<Id>,
        /// Why, as the moderator said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The message's key on the network it came from (a bridge's event id), which the
        /// deleted row no longer holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_ref: Option<String>,
    },
    /// A message could not reach another network (a bridge gave up on it for good).
    MessageUndelivered {
        /// Room.
        room_id: Id,
        /// The message.
        message_id: Id,
    },
    /// A thread parent's reply count changed.
    ThreadUpdated {
        /// Room.
        room_id: Id,
        /// Thread parent.
        message_id: Id,
    },
    /// Somebody reacted to a message.
    ReactionAdded {
        /// Room.
        room_id: Id,
        /// Message reacted to.
        message_id: Id,
        /// Who reacted.
        reactor: Author,
        /// The emoji.
        emoji: String,
    },
    /// Somebody took a reaction back.
    ReactionRemoved {
        /// Room.
        room_id: Id,
        /// Message reacted to.
        message_id: Id,
        /// Who reacted.
        reactor: Author,
        /// The emoji.
        emoji: String,
    },
    /// A user joined a room.
    MemberJoined {
        /// Room.
        room_id: Id,
        /// New member.
        user_id: Id,
    },
    /// A user left or was removed from a room.
    MemberLeft {
        /// Room.
        room_id: Id,
        /// Former member.
        user_id: Id,
        /// The moderator who removed them (none when they left, or a bridge removed them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        moderator: Option<Id>,
        /// Why, as the moderator said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A user was banned from a room.
    MemberBanned {
        /// Room.
        room_id: Id,
        /// Banned user.
        user_id: Id,
        /// The moderator who banned them (none when a bridge did).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        moderator: Option<Id>,
        /// Why, as the moderator said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A user's ban from a room was lifted.
    MemberUnbanned {
        /// Room.
        room_id: Id,
        /// The user.
        user_id: Id,
    },
    /// Somebody from another network (a virtual user) was banned from a room.
    VirtualBanned {
        /// Room.
        room_id: Id,
        /// The virtual user.
        virtual_id: Id,
        /// The moderator who banned them (none when a bridge did).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        moderator: Option<Id>,
        /// Why, as the moderator said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A virtual user's ban from a room was lifted.
    VirtualUnbanned {
        /// Room.
        room_id: Id,
        /// The virtual user.
        virtual_id: Id,
    },
    /// A moderator removed a virtual user from a room (they may come back, unlike a ban).
    VirtualKicked {
        /// Room.
        room_id: Id,
        /// The virtual user.
        virtual_id: Id,
        /// The moderator.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        moderator: Option<Id>,
        /// Why, as the moderator said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Somebody from another network joined a room (a bridge whose room's membership is
    /// synced says so): they are listed among its members.
    VirtualJoined {
        /// Room.
        room_id: Id,
        /// The virtual user.
        virtual_id: Id,
    },
    /// Somebody from another network left a room, or was removed from it on their network.
    VirtualLeft {
        /// Room.
        room_id: Id,
        /// The virtual user.
        virtual_id: Id,
    },
    /// A room was created.
    RoomCreated {
        /// New room.
        room_id: Id,
    },
    /// A room's name, topic, avatar or settings changed.
    RoomUpdated {
        /// Room.
        room_id: Id,
    },
    /// A room became public or stopped being public. Logged beside [`Event::RoomUpdated`]
    /// and, unlike it, carrying the new state: whoever follows the log late (a bridge's
    /// sender) must know what was true at this point of the log, not only what is true now,
    /// or messages posted while the room was private could leave it once it is public again.
    RoomPrivacyChanged {
        /// Room.
        room_id: Id,
        /// Whether the room is public from here on.
        public: bool,
    },
    /// A room was deleted.
    RoomDeleted {
        /// Room.
        room_id: Id,
    },
    /// A community was created.
    GroupCreated {
        /// New group.
        group_id: Id,
    },
    /// A user account was created.
    UserCreated {
        /// New user.
        user_id: Id,
    },
    /// A user's name or avatar changed.
    UserUpdated {
        /// User.
        user_id: Id,
    },
    /// A virtual user (someone a bridge speaks for) was renamed or given another avatar.
    VirtualUserUpdated {
        /// Virtual user.
        virtual_user_id: Id,
    },
    /// A user read a room up to a point.
    ReadAdvanced {
        /// Room.
        room_id: Id,
        /// Reader.
        user_id: Id,
        /// Everything up to this message sequence number is read.
        up_to_seq: i64,
    },
    /// Somebody is typing. Ephemeral: published to live subscribers, never logged.
    Typing {
        /// Room.
        room_id: Id,
        /// Who is typing.
        who: Author,
    },
}

impl Event {
    /// Whether this change can alter who may read or post in a room (a membership, a ban,
    /// a role or the room itself), so that cached permission checks must be forgotten.
    pub fn changes_access(&self) -> bool {
        matches!(
            self,
            Event::MemberJoined { .. }
                | Event::MemberLeft { .. }
                | Event::MemberBanned { .. }
                | Event::MemberUnbanned { .. }
                | Event::VirtualBanned { .. }
                | Event::VirtualUnbanned { .. }
                // The cached room holds its member count.
                | Event::VirtualJoined { .. }
                | Event::VirtualLeft { .. }
                | Event::RoomUpdated { .. }
                | Event::RoomPrivacyChanged { .. }
                | Event::RoomDeleted { .. }
        )
    }

    /// The room this event belongs to, if any; live subscribers follow rooms.
    pub fn room_id(&self) -> Option<Id> {
        use Event::*;
        match self {
            MessageCreated { room_id, .. }
            | MessageEdited { room_id, .. }
            | MessageDeleted { room_id, .. }
            | MessageUndelivered { room_id, .. }
            | ThreadUpdated { room_id, .. }
            | ReactionAdded { room_id, .. }
            | ReactionRemoved { room_id, .. }
            | MemberJoined { room_id, .. }
            | MemberLeft { room_id, .. }
            | MemberBanned { room_id, .. }
            | MemberUnbanned { room_id, .. }
            | VirtualBanned { room_id, .. }
            | VirtualUnbanned { room_id, .. }
            | VirtualKicked { room_id, .. }
            | VirtualJoined { room_id, .. }
            | VirtualLeft { room_id, .. }
            | RoomCreated { room_id }
            | RoomUpdated { room_id }
            | RoomPrivacyChanged { room_id, .. }
            | RoomDeleted { room_id }
            | ReadAdvanced { room_id, .. }
            | Typing { room_id, .. } => Some(*room_id),
            GroupCreated { .. }
            | UserCreated { .. }
            | UserUpdated { .. }
            | VirtualUserUpdated { .. } => None,
        }
    }

    /// The serde tag, used as the log's `kind` column.
    pub fn kind(&self) -> &'static str {
        use Event::*;
        match self {
            MessageCreated { .. } => "messageCreated",
            MessageEdited { .. } => "messageEdited",
            MessageDeleted { .. } => "messageDeleted",
            MessageUndelivered { .. } => "messageUndelivered",
            ThreadUpdated { .. } => "threadUpdated",
            ReactionAdded { .. } => "reactionAdded",
            ReactionRemoved { .. } => "reactionRemoved",
            MemberJoined { .. } => "memberJoined",
            MemberLeft { .. } => "memberLeft",
            MemberBanned { .. } => "memberBanned",
            MemberUnbanned { .. } => "memberUnbanned",
            VirtualBanned { .. } => "virtualBanned",
            VirtualUnbanned { .. } => "virtualUnbanned",
            VirtualKicked { .. } => "virtualKicked",
            VirtualJoined { .. } => "virtualJoined",
            VirtualLeft { .. } => "virtualLeft",
            RoomCreated { .. } => "roomCreated",
            RoomUpdated { .. } => "roomUpdated",
            RoomPrivacyChanged { .. } => "roomPrivacyChanged",
            RoomDeleted { .. } => "roomDeleted",
            GroupCreated { .. } => "groupCreated",
            UserCreated { .. } => "userCreated",
            UserUpdated { .. } => "userUpdated",
            VirtualUserUpdated { .. } => "virtualUserUpdated",
            ReadAdvanced { .. } => "readAdvanced",
            Typing { .. } => "typing",
        }
    }

    /// Events only the user concerned should see (their read state).
    pub fn private_to(&self) -> Option<Id> {
        match self {
            Event::ReadAdvanced { user_id, .. } => Some(*user_id),
            _ => None,
        }
    }
}

/// Where a change came from, so a bridge never sends back what it brought in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Origin(pub String);

impl Origin {
    /// A change made through weft itself (API, web app, CLI).
    pub fn local() -> Self {
        Origin(String::from("weft"))
    }

    /// Whether this change came through weft itself.
    pub fn is_local(&self) -> bool {
        self.0 == "weft"
    }
}

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// Position in the log; strictly increasing in commit order.
    pub seq: i64,
    /// When it was logged.
    pub at: Millis,
    /// Where the change came from.
    pub origin: Origin,
    /// The change.
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_matches_serde_tag() {
        let room_id = Id::generate();
        let events = [
            Event::MessageCreated {
                room_id,
                message_id: room_id,
            },
            Event::ReadAdvanced {
                room_id,
                user_id: room_id,
                up_to_seq: 3,
            },
            Event::Typing {
                room_id,
                who: Author::Virtual(room_id),
            },
            Event::UserCreated { user_id: room_id },
            Event::VirtualUserUpdated {
                virtual_user_id: room_id,
            },
            Event::RoomPrivacyChanged {
                room_id,
                public: false,
            },
            Event::MessageDeleted {
                room_id,
                message_id: room_id,
                moderator: Some(room_id),
                reason: Some("spam".into()),
                external_ref: Some("$event".into()),
            },
            Event::MessageUndelivered {
                room_id,
                message_id: room_id,
            },
            Event::MemberLeft {
                room_id,
                user_id: room_id,
                moderator: None,
                reason: None,
            },
            Event::MemberBanned {
                room_id,
                user_id: room_id,
                moderator: Some(room_id),
                reason: None,
            },
            Event::MemberUnbanned {
                room_id,
                user_id: room_id,
            },
            Event::VirtualBanned {
                room_id,
                virtual_id: room_id,
                moderator: None,
                reason: Some("spam".into()),
            },
            Event::VirtualUnbanned {
                room_id,
                virtual_id: room_id,
            },
            Event::VirtualKicked {
                room_id,
                virtual_id: room_id,
                moderator: Some(room_id),
                reason: None,
            },
            Event::VirtualJoined {
                room_id,
                virtual_id: room_id,
            },
            Event::VirtualLeft {
                room_id,
                virtual_id: room_id,
            },
        ];
        for event in events {
            let json = serde_json::to_value(&event).expect("serialises");
            assert_eq!(json["type"], event.kind());
            let back: Event = serde_json::from_value(json).expect("parses");
            assert_eq!(back, event);
        }
    }

    #[test]
    fn entries_logged_before_moderators_were_recorded_still_parse() {
        let room_id = Id::generate();
        let old =
            serde_json::json!({ "type": "memberBanned", "roomId": room_id, "userId": room_id });
        let parsed: Event = serde_json::from_value(old).expect("an old entry parses");
        assert_eq!(
            parsed,
            Event::MemberBanned {
                room_id,
                user_id: room_id,
                moderator: None,
                reason: None
            }
        );
    }
}
