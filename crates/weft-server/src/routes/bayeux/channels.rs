//! Gitter's channels (`/api/v1/rooms/:id/chatMessages`, `/api/v1/user/:id/rooms`, …): what
//! each one carries, the snapshot a subscription starts with, and the feed that queues each
//! live frame for the clients subscribed to a channel it belongs on.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use weft_chat::MessageQuery;
use weft_core::Id;

use crate::frames::{Frame, Operation, Resource};
use crate::wire;

use super::{Client, Engine, SUBSCRIPTIONS_MAX};

/// What a client subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Topic {
    RoomMessages(Id),
    RoomUsers(Id),
    RoomEvents(Id),
    UserRooms(Id),
    User(Id),
    /// Accepted so that clients that follow them keep working; nothing is sent on them yet.
    UserRoomUnread(Id, Id),
    RoomReadBy(Id),
    Ping,
}

impl Topic {
    /// Gitter's channel names, under `/api/v1/` (or `/v1/`).
    pub(super) fn parse(channel: &str) -> Option<Topic> {
        let rest = channel
            .strip_prefix("/api/v1/")
            .or_else(|| channel.strip_prefix("/v1/"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let id = |s: &str| s.parse::<Id>().ok();
        Some(match parts.as_slice() {
            ["rooms", room, "chatMessages"] => Topic::RoomMessages(id(room)?),
            ["rooms", room, "users"] => Topic::RoomUsers(id(room)?),
            ["rooms", room, "events"] => Topic::RoomEvents(id(room)?),
            ["user", user, "rooms"] => Topic::UserRooms(id(user)?),
            ["user", user, "rooms", room, "unreadItems"] => {
                Topic::UserRoomUnread(id(user)?, id(room)?)
            }
            ["rooms", room, "chatMessages", message, "readBy"] => {
                id(message)?;
                Topic::RoomReadBy(id(room)?)
            }
            ["user", user] => Topic::User(id(user)?),
            ["ping2"] | ["ping"] => Topic::Ping,
            _ => return None,
        })
    }

    pub(super) fn room(self) -> Option<Id> {
        match self {
            Topic::RoomMessages(r)
            | Topic::RoomUsers(r)
            | Topic::RoomEvents(r)
            | Topic::RoomReadBy(r)
            | Topic::UserRoomUnread(_, r) => Some(r),
            _ => None,
        }
    }
}

/// A room's unread counts as the user's room list last heard them.
#[derive(Default)]
pub(super) struct Unread {
    messages: i64,
    mentions: i64,
    /// Messages the counts already include (found by the last count from the store), whose
    /// live events may still be on their way: they must not be counted twice.
    counted: Vec<Id>,
}

impl Engine {
    /// Follows the live frames and queues each for the clients subscribed to it.
    pub(super) async fn feed(self) {
        // From where the log is now: no client exists yet. Should the database not answer,
        // wait for it rather than start from the beginning of the log.
        let start = loop {
            match self.state.chat.views().last_event_seq().await {
                Ok(seq) => break seq,
                Err(e) => {
                    tracing::error!(error = %e, "bayeux waits for the event log");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let mut frames = self.state.frames.subscribe_from(start);
        while let Some(frame) = frames.next().await {
            self.dispatch(&frame).await;
        }
    }

    /// Queues one frame for every client subscribed to a channel it belongs on.
    pub(super) async fn dispatch(&self, frame: &Frame) {
        let clients: Vec<Arc<Client>> = self.clients().values().cloned().collect();
        for client in clients {
            // Only the subscriptions this frame may concern, picked under the lock.
            let (actor, candidates) = {
                let s = client.state();
                let viewer = s.actor.user.as_ref().map(|u| u.id);
                if frame.private_to.is_some_and(|p| Some(p) != viewer) {
                    continue;
                }
                let candidates: Vec<(String, Topic)> = s
                    .subscriptions
                    .iter()
                    .filter(|(_, (t, after, _))| {
                        (frame.seq == 0 || frame.seq > *after)
                            && match *t {
                                Topic::UserRooms(u) => Some(u) == viewer,
                                t => t.room() == Some(frame.room_id),
                            }
                    })
                    .map(|(c, (t, _, _))| (c.clone(), *t))
                    .collect();
                if candidates.is_empty() {
                    continue;
                }
                (s.actor.clone(), candidates)
            };
            let viewer = actor.user.as_ref().map(|u| u.id);
            let revoked = frame.may_revoke_access()
                && candidates
                    .iter()
                    .any(|(_, t)| t.room() == Some(frame.room_id))
                && self.state.chat.room(&actor, frame.room_id).await.is_err();
            let mut out = Vec::new();
            for (channel, topic) in &candidates {
                if let Some(data) = self.data_for(&client, *topic, frame, viewer, revoked).await {
                    out.push(json!({ "channel": channel, "data": data }));
                }
            }
            if revoked {
                client
                    .state()
                    .subscriptions
                    .retain(|_, (t, _, _)| t.room() != Some(frame.room_id));
            }
            if !out.is_empty() {
                self.enqueue(&client, out);
            }
        }
    }

    /// The `{operation, model}` a frame carries on a topic, if it belongs there.
    pub(super) async fn data_for(
        &self,
        client: &Client,
        topic: Topic,
        frame: &Frame,
        viewer: Option<Id>,
        revoked: bool,
    ) -> Option<Value> {
        let plain = || Some(json!({ "operation": frame.operation, "model": frame.model }));
        let room = frame.room_id;
        match (topic, frame.resource) {
            (Topic::RoomMessages(r), Resource::ChatMessages) if r == room && !revoked => plain(),
            (Topic::RoomUsers(r), Resource::Users) if r == room && !revoked => plain(),
            (Topic::RoomEvents(r), Resource::Room | Resource::Typing) if r == room && !revoked => {
                plain()
            }
            (Topic::UserRooms(u), Resource::ChatMessages) if Some(u) == viewer => {
                // Someone else's new message in one of the user's rooms: one more unread.
                let view = frame.message.as_ref()?;
                if frame.operation != Operation::Create
                    || view.message.author == weft_core::Author::User(u)
                {
                    return None;
                }
                let mentioned = view.message.mentions.iter().any(|m| m.user_id == Some(u));
                let cap = self.state.chat.config().unread_cap;
                let id = view.message.id;
                let (unread, mentions) = {
                    let mut s = client.state();
                    let counts = s.unread.as_mut()?.get_mut(&room)?;
                    if counts.counted.contains(&id) {
                        return None;
                    }
                    counts.messages = (counts.messages + 1).min(cap);
                    if mentioned {
                        counts.mentions = (counts.mentions + 1).min(cap);
                    }
                    (counts.messages, counts.mentions)
                };
                Some(json!({
                    "operation": "patch",
                    "model": { "id": room, "unreadItems": unread, "mentions": mentions },
                }))
            }
            (Topic::UserRooms(u), Resource::Users) if Some(u) == viewer => {
                if frame.member() != Some(u) {
                    return None;
                }
                if frame.operation == Operation::Create {
                    let r = self.state.chat.views().room(room).await.ok()??;
                    if let Some(unread) = client.state().unread.as_mut() {
                        unread.insert(room, Unread::default());
                    }
                    let mut model = wire::room(&r);
                    model["roomMember"] = json!(true);
                    Some(json!({ "operation": "create", "model": model }))
                } else {
                    if let Some(unread) = client.state().unread.as_mut() {
                        unread.remove(&room);
                    }
                    Some(json!({ "operation": "remove", "model": { "id": room } }))
                }
            }
            (Topic::UserRooms(u), Resource::Room) if Some(u) == viewer => {
                if frame.operation == Operation::Remove {
                    if let Some(unread) = client.state().unread.as_mut() {
                        unread.remove(&room);
                    }
                    return Some(json!({ "operation": "remove", "model": { "id": room } }));
                }
                let store = self.state.chat.views();
                store.membership(room, u).await.ok()??;
                plain()
            }
            (Topic::UserRooms(u), Resource::ReadState) if Some(u) == viewer => {
                let store = self.state.chat.views();
                let weft_core::Event::ReadAdvanced {
                    up_to_seq: mark, ..
                } = frame.event.event
                else {
                    return None;
                };
                let cap = self.state.chat.config().unread_cap;
                let ids = store.unread_message_ids(room, u, mark, cap).await.ok()?;
                let mentioned = store.unread_mention_ids(room, u, mark, cap).await.ok()?;
                let (unread, mentions) = (ids.len() as i64, mentioned.len() as i64);
                if let Some(counts) = client.state().unread.as_mut() {
                    let now = Unread {
                        messages: unread,
                        mentions,
                        counted: ids,
                    };
                    counts.insert(room, now);
                }
                Some(json!({
                    "operation": "patch",
                    "model": { "id": room, "unreadItems": unread, "mentions": mentions },
                }))
            }
            _ => None,
        }
    }

    /// Checks that the client may follow a channel, then adds it.
    pub(super) async fn subscribe(&self, client: &Client, channel: &str) -> Result<(), String> {
        let forbidden = || format!("403:{channel}:Forbidden channel");
        let topic =
            Topic::parse(channel).ok_or_else(|| format!("405:{channel}:Invalid channel"))?;
        let actor = client.state().actor.clone();
        let me = actor.user.as_ref().map(|u| u.id);
        match topic {
            Topic::UserRoomUnread(user, _) if me != Some(user) => return Err(forbidden()),
            Topic::RoomMessages(room)
            | Topic::RoomUsers(room)
            | Topic::RoomEvents(room)
            | Topic::RoomReadBy(room)
            | Topic::UserRoomUnread(_, room) => {
                self.state
                    .chat
                    .room(&actor, room)
                    .await
                    .map_err(|_| forbidden())?;
            }
            Topic::UserRooms(user) | Topic::User(user) => {
                if me != Some(user) {
                    return Err(forbidden());
                }
            }
            Topic::Ping => {}
        }
        // Watched before the position is read: every later event is rendered.
        let watch = match (topic, topic.room()) {
            (_, Some(room)) => Some(self.state.frames.watch(room)),
            (Topic::UserRooms(_), None) => Some(self.state.frames.watch_everything()),
            _ => None,
        };
        // Read before the room list below, so that nothing between the two is missed.
        let after = self
            .state
            .chat
            .views()
            .last_event_seq()
            .await
            .map_err(|_| format!("500:{channel}:Could not subscribe"))?;
        if let Topic::UserRooms(user) = topic
            && client.state().unread.is_none()
        {
            let rooms = self
                .state
                .chat
                .rooms_of(&actor, user)
                .await
                .map_err(|_| format!("500:{channel}:Could not read the room list"))?;
            client.state().unread = Some(
                rooms
                    .iter()
                    .map(|r| {
                        let counts = Unread {
                            messages: r.unread,
                            mentions: r.mentions,
                            counted: Vec::new(),
                        };
                        (r.room.id, counts)
                    })
                    .collect(),
            );
        }
        let mut s = client.state();
        if s.subscriptions.len() >= SUBSCRIPTIONS_MAX && !s.subscriptions.contains_key(channel) {
            return Err(format!("403:{channel}:Too many subscriptions"));
        }
        s.subscriptions
            .insert(channel.to_string(), (topic, after, watch));
        Ok(())
    }

    /// The current state of a subscribed channel's collection: the latest messages, the
    /// first members, or the user's rooms.
    pub(super) async fn snapshot(&self, client: &Client, channel: &str) -> Option<Value> {
        let actor = client.state().actor.clone();
        let chat = &self.state.chat;
        let list: Vec<Value> = match Topic::parse(channel)? {
            Topic::RoomMessages(room) => {
                let views = chat
                    .messages(&actor, room, MessageQuery::default())
                    .await
                    .ok()?;
                let last_read = match &actor.user {
                    Some(u) => chat
                        .views()
                        .membership(room, u.id)
                        .await
                        .ok()?
                        .map(|m| m.last_read_seq),
                    None => None,
                };
                views
                    .iter()
                    .map(|v| wire::message(v, actor.user.as_ref(), last_read))
                    .collect()
            }
            Topic::RoomUsers(room) => chat
                .room_people(&actor, room, "", 30, 0)
                .await
                .ok()?
                .iter()
                .map(|(person, role)| wire::room_person(person, *role))
                .collect(),
            Topic::UserRooms(user) => chat
                .rooms_of(&actor, user)
                .await
                .ok()?
                .iter()
                .map(wire::room_summary)
                .collect(),
            Topic::RoomEvents(_)
            | Topic::User(_)
            | Topic::UserRoomUnread(..)
            | Topic::RoomReadBy(_)
            | Topic::Ping => return None,
        };
        Some(Value::Array(list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitter_channel_names_parse() {
        let (room, user, message) = (Id::generate(), Id::generate(), Id::generate());
        for (channel, topic) in [
            (
                format!("/api/v1/rooms/{room}/chatMessages"),
                Topic::RoomMessages(room),
            ),
            (format!("/v1/rooms/{room}/users"), Topic::RoomUsers(room)),
            (
                format!("/api/v1/rooms/{room}/events"),
                Topic::RoomEvents(room),
            ),
            (format!("/api/v1/user/{user}/rooms"), Topic::UserRooms(user)),
            (
                format!("/api/v1/user/{user}/rooms/{room}/unreadItems"),
                Topic::UserRoomUnread(user, room),
            ),
            (
                format!("/api/v1/rooms/{room}/chatMessages/{message}/readBy"),
                Topic::RoomReadBy(room),
            ),
            (format!("/api/v1/user/{user}"), Topic::User(user)),
            ("/api/v1/ping2".to_string(), Topic::Ping),
        ] {
            assert_eq!(Topic::parse(&channel), Some(topic), "{channel}");
        }
        assert_eq!(Topic::RoomUsers(room).room(), Some(room));
        assert_eq!(Topic::UserRooms(user).room(), None);
        for bad in [
            "/api/v1/rooms/not-an-id/chatMessages".to_string(),
            format!("/api/v2/rooms/{room}/chatMessages"),
            format!("/api/v1/rooms/{room}/chatMessages/nope/readBy"),
            format!("/api/v1/rooms/{room}"),
            "/meta/connect".to_string(),
        ] {
            assert_eq!(Topic::parse(&bad), None, "{bad}");
        }
    }
}
