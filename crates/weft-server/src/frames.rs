//! Live frames: each logged event rendered once into Gitter's `{operation, model}` shape and
//! shared by every WebSocket and stream subscriber of this process.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;
use weft_chat::Chat;
use weft_core::{Author, Event, Id, LoggedEvent, MessageView};

use crate::wire;

/// One event, rendered for live subscribers.
#[derive(Debug)]
pub struct Frame {
    /// Log sequence number (0 for ephemeral events such as typing).
    pub seq: i64,
    /// The room it belongs to.
    pub room_id: Id,
    /// Only this user may see it (their own read state).
    pub private_to: Option<Id>,
    /// Gitter resource: `chatMessages`, `users`, `room`, `readState`, `typing`.
    pub resource: &'static str,
    /// `create`, `update`, `remove` or `patch`.
    pub operation: &'static str,
    /// The model (the message, user, room, … as JSON).
    pub model: Value,
    /// The whole frame, serialised once for every WebSocket.
    pub text: Arc<str>,
}

impl Frame {
    /// Whether this event may take away a subscriber's right to read its room (someone left
    /// or was banned, or the room changed or went away): live feeds check again on these.
    pub fn may_revoke_access(&self) -> bool {
        matches!(
            (self.resource, self.operation),
            ("users", "remove") | ("room", _)
        )
    }
}

/// The process's live frames.
#[derive(Clone)]
pub struct Frames {
    sender: broadcast::Sender<Arc<Frame>>,
    interest: Arc<Interest>,
}

/// Which rooms someone in this process is following live. Rendering a frame means reading
/// the message back and serialising it; for a room nobody follows (most rooms, most of the
/// time, and every message a bridge applies to them) that work is skipped.
#[derive(Default)]
struct Interest {
    /// Followers per room.
    rooms: std::sync::Mutex<HashMap<Id, usize>>,
    /// Followers of every room (a user's room list follows all their rooms).
    everything: std::sync::atomic::AtomicUsize,
}

impl Interest {
    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<Id, usize>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wants(&self, room_id: Id) -> bool {
        self.everything.load(std::sync::atomic::Ordering::SeqCst) > 0
            || self.rooms().contains_key(&room_id)
    }
}

/// Keeps a room's (or every room's) frames rendered while it is held. Take it before reading
/// the log position a feed starts from: every event after that position is then rendered.
pub struct Watch {
    interest: Arc<Interest>,
    room: Option<Id>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        match self.room {
            Some(room) => {
                let mut rooms = self.interest.rooms();
                if let Some(count) = rooms.get_mut(&room) {
                    *count -= 1;
                    if *count == 0 {
                        rooms.remove(&room);
                    }
                }
            }
            None => {
                self.interest
                    .everything
                    .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("room", &self.room).finish()
    }
}

impl Frames {
    /// Starts rendering the chat service's live events.
    pub fn start(chat: Chat) -> Frames {
        let (sender, _) = broadcast::channel(8192);
        let interest = Arc::new(Interest::default());
        let mut events = chat.live().subscribe();
        let out = sender.clone();
        let wanted = interest.clone();
        tokio::spawn(async move {
            let mut last = 0i64;
            loop {
                match events.recv().await {
                    Ok(first) => {
                        // Take what else is already waiting, so that a burst of new messages
                        // is read back in one query rather than one each.
                        let mut burst = vec![first];
                        while burst.len() < BURST {
                            match events.try_recv() {
                                Ok(next) => burst.push(next),
                                Err(_) => break,
                            }
                        }
                        burst.retain(|event| {
                            if event.seq > 0 {
                                last = event.seq;
                            }
                            event.event.room_id().is_some_and(|room| wanted.wants(room))
                        });
                        let mut created = new_messages(&chat, &burst).await;
                        for event in burst {
                            if let Some(frame) = build_with(&chat, &event, &mut created).await {
                                let _ = out.send(Arc::new(frame));
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind: catch up from the log so no subscriber misses an event.
                        match chat.views().events_after(last, 10_000).await {
                            Ok(missed) => {
                                for event in missed {
                                    last = event.seq;
                                    if !event.event.room_id().is_some_and(|room| wanted.wants(room))
                                    {
                                        continue;
                                    }
                                    if let Some(frame) = build(&chat, &event).await {
                                        let _ = out.send(Arc::new(frame));
                                    }
                                }
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "could not catch up with the event log")
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Frames { sender, interest }
    }

    /// Follows one room's frames while the returned guard lives.
    pub fn watch(&self, room_id: Id) -> Watch {
        *self.interest.rooms().entry(room_id).or_insert(0) += 1;
        Watch {
            interest: self.interest.clone(),
            room: Some(room_id),
        }
    }

    /// Follows every room's frames while the returned guard lives.
    pub fn watch_everything(&self) -> Watch {
        self.interest
            .everything
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Watch {
            interest: self.interest.clone(),
            room: None,
        }
    }

    /// Subscribes to frames from now on: those of the rooms someone watches ([`Frames::watch`]).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.sender.subscribe()
    }
}

/// Events rendered together at most, when they arrive in a burst.
const BURST: usize = 256;

/// The messages that the burst's `MessageCreated` events announce, read in one go. A lagging
/// read (a Lagged error, storage trouble) leaves the map empty and each event reads its own.
async fn new_messages(chat: &Chat, burst: &[Arc<LoggedEvent>]) -> HashMap<Id, MessageView> {
    let ids: Vec<Id> = burst
        .iter()
        .filter_map(|e| match e.event {
            Event::MessageCreated { message_id, .. } => Some(message_id),
            _ => None,
        })
        .collect();
    if ids.len() < 2 {
        return HashMap::new();
    }
    chat.views().messages_by_ids(&ids).await.unwrap_or_default()
}

/// Renders one event; `None` for events live subscribers do not see (or whose subject is
/// already gone).
pub async fn build(chat: &Chat, logged: &LoggedEvent) -> Option<Frame> {
    build_with(chat, logged, &mut HashMap::new()).await
}

/// [`build`], taking a new message's view from `created` when it was read beforehand.
async fn build_with(
    chat: &Chat,
    logged: &LoggedEvent,
    created: &mut HashMap<Id, MessageView>,
) -> Option<Frame> {
    let store = chat.views();
    let room_id = logged.event.room_id()?;
    // With its read count, so that live models agree with the REST API's. A new message is
    // the newest in its room, so nobody's read mark is on it yet: no need to count.
    let message_json = |id: Id, count_readers: bool| async move {
        let mut view = store.message(id).await.ok()??;
        if count_readers {
            let seq = view.message.seq;
            view.message.read_by = store.read_by(room_id, &[seq]).await.ok()?.pop()?;
        }
        Some(wire::message(&view, None, None))
    };
    let (resource, operation, model) = match &logged.event {
        Event::MessageCreated { message_id, .. } => (
            "chatMessages",
            "create",
            match created.remove(message_id) {
                Some(view) => wire::message(&view, None, None),
                None => message_json(*message_id, false).await?,
            },
        ),
        Event::MessageEdited { message_id, .. } | Event::MessageUndelivered { message_id, .. } => (
            "chatMessages",
            "update",
            message_json(*message_id, true).await?,
        ),
        Event::MessageDeleted { message_id, .. } => {
            // A placeholder that stays (thread head) is shown as deleted; otherwise removed.
            match store.message(*message_id).await.ok()? {
                Some(_) => (
                    "chatMessages",
                    "update",
                    message_json(*message_id, true).await?,
                ),
                None => ("chatMessages", "remove", json!({ "id": message_id })),
            }
        }
        Event::ThreadUpdated { message_id, .. } => {
            let view = store.message(*message_id).await.ok()??;
            (
                "chatMessages",
                "patch",
                json!({ "id": message_id, "threadMessageCount": view.message.thread_count }),
            )
        }
        Event::ReactionAdded { message_id, .. } | Event::ReactionRemoved { message_id, .. } => {
            let view = store.message(*message_id).await.ok()??;
            let seq = view.message.seq;
            let counts: Vec<_> = store
                .reactions(room_id, seq, seq, None)
                .await
                .ok()?
                .into_iter()
                .map(|(_, c)| c)
                .collect();
            (
                "chatMessages",
                "patch",
                json!({ "id": message_id, "reactions": wire::reactions(&counts) }),
            )
        }
        Event::MemberJoined { user_id, .. } => {
            let user = store.user(*user_id).await.ok()??;
            ("users", "create", wire::user(&user))
        }
        Event::MemberLeft { user_id, .. } | Event::MemberBanned { user_id, .. } => {
            ("users", "remove", json!({ "id": user_id }))
        }
        Event::VirtualBanned { virtual_id, .. } | Event::VirtualKicked { virtual_id, .. } => {
            ("users", "remove", json!({ "id": virtual_id }))
        }
        Event::RoomUpdated { .. } => (
            "room",
            "update",
            wire::room(&store.room(room_id).await.ok()??),
        ),
        Event::RoomDeleted { .. } => ("room", "remove", json!({ "id": room_id })),
        Event::ReadAdvanced { up_to_seq, .. } => (
            "readState",
            "patch",
            json!({ "roomId": room_id, "upToSeq": up_to_seq }),
        ),
        Event::Typing { who, .. } => {
            let model = match who {
                Author::User(id) => {
                    let user = store.user(*id).await.ok()??;
                    json!({ "userId": id, "username": user.username, "displayName": user.display_name })
                }
                Author::Virtual(id) => {
                    let v = store.virtual_user(*id).await.ok()??;
                    json!({ "userId": id, "username": v.external_id, "displayName": v.display_name })
                }
            };
            ("typing", "create", model)
        }
        Event::RoomCreated { .. }
        | Event::RoomPrivacyChanged { .. }
        | Event::MemberUnbanned { .. }
        | Event::VirtualUnbanned { .. }
        | Event::GroupCreated { .. }
        | Event::UserCreated { .. }
        | Event::UserUpdated { .. } => {
            return None;
        }
    };
    let text: Arc<str> = json!({
        "type": "event",
        "seq": logged.seq,
        "roomId": room_id,
        "resource": resource,
        "operation": operation,
        "model": model,
    })
    .to_string()
    .into();
    Some(Frame {
        seq: logged.seq,
        room_id,
        private_to: logged.event.private_to(),
        resource,
        operation,
        model,
        text,
    })
}
