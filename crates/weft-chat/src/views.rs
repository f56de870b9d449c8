//! Read-only views of the chat's data, for callers that render or relay what is stored
//! without going through an actor's rights: the web app's pages and archives, the live
//! feeds, the Matrix bridge, benchmarks. Nothing here writes; every change goes through
//! [`crate::Chat`]'s operations, which check rights and append to the event log.

use std::collections::HashMap;

use tokio::sync::watch;
use weft_core::{
    Group, Id, LoggedEvent, Membership, MessageView, ReactionCount, Role, Room, Token, User,
    VirtualUser,
};
use weft_store::{Result, Store};

/// Declares read-only methods that answer exactly what the store's queries of the same
/// names answer.
macro_rules! reads {
    ($( $(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $out:ty; )*) => {
        $(
            $(#[$doc])*
            pub async fn $name(&self $(, $arg: $ty)*) -> Result<$out> {
                self.store.$name($($arg),*).await
            }
        )*
    };
}

/// Read-only access to stored chat data; see the module doc. Cheap to clone.
#[derive(Clone)]
pub struct Views {
    store: Store,
}

impl Views {
    pub(crate) fn new(store: Store) -> Views {
        Views { store }
    }

    reads! {
        /// A user by id.
        fn user(&self, id: Id) -> Option<User>;
        /// A user by username (any case).
        fn user_by_username(&self, username: &str) -> Option<User>;
        /// A virtual user by id.
        fn virtual_user(&self, id: Id) -> Option<VirtualUser>;
        /// A virtual user by network and the id it has there.
        fn virtual_user_by_external_id(&self, kind: &str, external_id: &str) -> Option<VirtualUser>;
        /// A personal token's records, without secrets.
        fn tokens_of(&self, user_id: Id) -> Vec<Token>;
        /// A room by id, whoever may read it.
        fn room(&self, id: Id) -> Option<Room>;
        /// A room by its `community/room` URI (any case).
        fn room_by_uri(&self, uri: &str) -> Option<Room>;
        /// The room whose URI, spelled with `sep` for `/`, is `flat` (see the store).
        fn room_by_flattened_uri(&self, flat: &str, sep: char) -> Option<Room>;
        /// Public rooms matching `q`, a page of them.
        fn public_rooms(&self, q: &str, limit: i64, skip: i64) -> Vec<Room>;
        /// A community by URI.
        fn community_by_uri(&self, uri: &str) -> Option<Group>;
        /// A community by id.
        fn community(&self, id: Id) -> Option<Group>;
        /// The rooms of a community, by URI.
        fn rooms_of_community(&self, community_id: Id) -> Vec<Room>;
        /// A room's moderators and admins.
        fn room_staff(&self, room_id: Id) -> Vec<(User, Role)>;
        /// A user's membership of a room.
        fn membership(&self, room_id: Id, user_id: Id) -> Option<Membership>;
        /// A page of a room's members matching `q`.
        fn members(&self, room_id: Id, q: &str, limit: i64, skip: i64) -> Vec<(User, Role)>;
        /// How many weft users are members of a room, matching `q`.
        fn member_total(&self, room_id: Id, q: &str) -> i64;
        /// A room's member ids after `after` in id order, at most `limit`.
        fn member_ids_after(&self, room_id: Id, after: Option<Id>, limit: i64) -> Vec<Id>;
        /// The external ids of one network's people listed among a room's members.
        fn virtual_member_ids(&self, room_id: Id, kind: &str) -> Vec<String>;
        /// A page of the people of other networks listed among a room's members.
        fn virtual_members(&self, room_id: Id, q: &str, limit: i64, skip: i64) -> Vec<VirtualUser>;
        /// Users by id; missing ones are left out.
        fn users_by_ids(&self, ids: &[Id]) -> Vec<User>;
        /// A message by id.
        fn message(&self, id: Id) -> Option<MessageView>;
        /// A page of a room's messages around an anchor (see the store), oldest first.
        fn messages(&self, page: weft_store::MessagePage) -> Vec<MessageView>;
        /// Messages by id; missing ones are left out.
        fn messages_by_ids(&self, ids: &[Id]) -> HashMap<Id, MessageView>;
        /// Reaction counts of a room's messages with seqs in `min_seq..=max_seq`, with whether `me` gave each.
        fn reactions(&self, room_id: Id, min_seq: i64, max_seq: i64, me: Option<Id>) -> Vec<(Id, ReactionCount)>;
        /// How many members have read each of the messages at `seqs`.
        fn read_by(&self, room_id: Id, seqs: &[i64]) -> Vec<i64>;
        /// A member's unread messages after `after_seq`, up to `cap`.
        fn unread_message_ids(&self, room_id: Id, user_id: Id, after_seq: i64, cap: i64) -> Vec<Id>;
        /// A member's unread mentions after `after_seq`, up to `cap`.
        fn unread_mention_ids(&self, room_id: Id, user_id: Id, after_seq: i64, cap: i64) -> Vec<Id>;
        /// How many messages a room has on each day between `from` and `to` (archives).
        fn message_days(&self, room_id: Id, from: i64, to: i64) -> Vec<(i64, i64)>;
        /// A page of the main feed's messages sent between `from` and `to` (archives).
        fn messages_sent_between(&self, room_id: Id, from: i64, to: i64, after_seq: i64, limit: i64) -> Vec<MessageView>;
        /// The sequence number of the last event in the log.
        fn last_event_seq(&self) -> i64;
        /// Up to `limit` log entries after `after_seq`.
        fn events_after(&self, after_seq: i64, limit: i64) -> Vec<LoggedEvent>;
        /// [`Views::events_after`] without the payloads of entries from `origin` (see the store).
        fn events_after_except(&self, after_seq: i64, limit: i64, origin: &str) -> (Vec<LoggedEvent>, Option<i64>);
    }

    /// Follows the sequence number of the last committed log entry.
    pub fn committed(&self) -> watch::Receiver<i64> {
        self.store.committed()
    }
}
