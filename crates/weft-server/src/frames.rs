//! Live frames: each logged event rendered once into Gitter's `{operation, model}` shape and
//! shared by every WebSocket, stream and Bayeux subscriber of this process.
//!
//! Subscribers read them through [`FrameStream`] ([`Frames::subscribe_from`], [`Frames::follow`]):
//! every frame after a log position, in order, each once. A subscriber that starts from a
//! position in the past, or falls behind the live frames, is caught up from the event log by
//! the stream itself; none of the feeds handles lag on its own.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;
use weft_chat::Chat;
use weft_core::{Author, Event, Id, LoggedEvent, MessageView};

use crate::wire;

/// What a frame is about, in Gitter's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Resource {
    /// A message (`chatMessages`).
    ChatMessages,
    /// A room's member list (`users`).
    Users,
    /// The room itself (`room`).
    Room,
    /// One user's read mark (`readState`).
    ReadState,
    /// Someone typing (`typing`).
    Typing,
}

impl Resource {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::ChatMessages => "chatMessages",
            Resource::Users => "users",
            Resource::Room => "room",
            Resource::ReadState => "readState",
            Resource::Typing => "typing",
        }
    }
}

/// What happened to the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    /// It appeared.
    Create,
    /// It changed; the model is the whole new resource.
    Update,
    /// It went away; the model holds its id.
    Remove,
    /// Some fields changed; the model holds those.
    Patch,
}

impl Operation {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Remove => "remove",
            Operation::Patch => "patch",
        }
    }
}

/// One event, rendered for live subscribers.
#[derive(Debug)]
pub struct Frame {
    /// Log sequence number (0 for ephemeral events such as typing).
    pub seq: i64,
    /// The room it belongs to.
    pub room_id: Id,
    /// Only this user may see it (their own read state).
    pub private_to: Option<Id>,
    /// The logged event it renders, as the log holds it.
    pub event: Arc<LoggedEvent>,
    /// The message it shows, for message frames that show one whole.
    pub message: Option<MessageView>,
    /// Gitter resource.
    pub resource: Resource,
    /// Gitter operation.
    pub operation: Operation,
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
            (Resource::Users, Operation::Remove) | (Resource::Room, _)
        )
    }

    /// The weft user a member-list frame is about (who joined, left or was banned).
    pub fn member(&self) -> Option<Id> {
        match self.event.event {
            Event::MemberJoined { user_id, .. }
            | Event::MemberLeft { user_id, .. }
            | Event::MemberBanned { user_id, .. } => Some(user_id),
            _ => None,
        }
    }
}

/// The process's live frames.
#[derive(Clone)]
pub struct Frames {
    sender: broadcast::Sender<Arc<Frame>>,
    interest: Arc<Interest>,
    chat: Chat,
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
        Frames::with_capacity(chat, 8192)
    }

    /// [`Frames::start`], holding at most `capacity` frames for subscribers that fall behind
    /// (beyond that they catch up from the log).
    pub fn with_capacity(chat: Chat, capacity: usize) -> Frames {
        let (sender, _) = broadcast::channel(capacity);
        let interest = Arc::new(Interest::default());
        let mut events = chat.live().subscribe();
        let out = sender.clone();
        let wanted = interest.clone();
        let frames = Frames {
            sender,
            interest,
            chat: chat.clone(),
        };
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
                            if let Some(frame) = build_with(&chat, event, &mut created).await {
                                let _ = out.send(Arc::new(frame));
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // The live feed outran this renderer: render the missed events from
                        // the log, so that subscribers that kept up miss nothing either.
                        match chat.views().events_after(last, 10_000).await {
                            Ok(missed) => {
                                for event in missed {
                                    last = event.seq;
                                    if !event.event.room_id().is_some_and(|room| wanted.wants(room))
                                    {
                                        continue;
                                    }
                                    if let Some(frame) = build(&chat, Arc::new(event)).await {
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
        frames
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

    /// Every frame after log position `after`, of every room someone in this process watches
    /// ([`Frames::watch`]); see [`FrameStream`].
    pub fn subscribe_from(&self, after: i64) -> FrameStream {
        FrameStream {
            live: self.sender.subscribe(),
            chat: self.chat.clone(),
            interest: self.interest.clone(),
            room: None,
            last: after,
            behind: true,
            backlog: VecDeque::new(),
        }
    }

    /// Every frame of one room after log position `after`, the room watched while the stream
    /// lives; see [`FrameStream`].
    pub fn follow(&self, room_id: Id, after: i64) -> FrameStream {
        let watch = self.watch(room_id);
        FrameStream {
            room: Some((room_id, watch)),
            ..self.subscribe_from(after)
        }
    }
}

/// Log entries read per page when a stream catches up.
const CATCH_UP_PAGE: i64 = 1000;

/// Frames after a log position, in order, each once (ephemeral frames, which have no
/// position, as they come). Starting from the past or falling behind the live frames, it
/// reads the log from its position and renders what it missed, then goes on live, dropping
/// the live frames it already delivered from the log.
pub struct FrameStream {
    live: broadcast::Receiver<Arc<Frame>>,
    chat: Chat,
    interest: Arc<Interest>,
    /// The one room followed, with the watch that keeps its frames rendered.
    room: Option<(Id, Watch)>,
    /// The last log position delivered (or passed over).
    last: i64,
    /// Whether the log may hold events after `last` that the live frames will not bring.
    behind: bool,
    /// Frames read from the log, waiting to be delivered.
    backlog: VecDeque<Arc<Frame>>,
}

impl FrameStream {
    /// The next frame; `None` once the process's frames end.
    pub async fn next(&mut self) -> Option<Arc<Frame>> {
        loop {
            if let Some(frame) = self.backlog.pop_front() {
                return Some(frame);
            }
            if self.behind {
                self.catch_up().await;
                continue;
            }
            match self.live.recv().await {
                Ok(frame) => {
                    if let Some(frame) = self.admit(frame) {
                        return Some(frame);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(
                        skipped,
                        after = self.last,
                        "a live subscriber fell behind; reading the log"
                    );
                    self.behind = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Everything the log holds after the stream's position, rendered, up to the end of the
    /// log as it is now; from then on [`FrameStream::next`] goes on live. For a feed that
    /// answers a resume with the missed frames first.
    pub async fn caught_up(&mut self) -> Vec<Arc<Frame>> {
        while self.behind {
            self.catch_up().await;
        }
        self.backlog.drain(..).collect()
    }

    /// The last log position delivered.
    pub fn position(&self) -> i64 {
        self.last
    }

    /// A live frame, unless it is another room's or was delivered from the log already.
    fn admit(&mut self, frame: Arc<Frame>) -> Option<Arc<Frame>> {
        if frame.seq == 0 {
            return self.concerns(frame.room_id).then_some(frame);
        }
        if frame.seq <= self.last {
            return None;
        }
        self.last = frame.seq;
        self.concerns(frame.room_id).then_some(frame)
    }

    fn concerns(&self, room_id: Id) -> bool {
        match &self.room {
            Some((room, _)) => *room == room_id,
            None => self.interest.wants(room_id),
        }
    }

    /// Reads one page of the log after the stream's position into the backlog. Storage
    /// trouble is logged and tried again shortly: a stream never skips what it could not read.
    async fn catch_up(&mut self) {
        let events = match self
            .chat
            .views()
            .events_after(self.last, CATCH_UP_PAGE)
            .await
        {
            Ok(events) => events,
            Err(e) => {
                tracing::error!(error = %e, after = self.last, "could not read the event log for a live subscriber");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                return;
            }
        };
        if (events.len() as i64) < CATCH_UP_PAGE {
            self.behind = false;
        }
        for event in events {
            self.last = event.seq;
            if !event
                .event
                .room_id()
                .is_some_and(|room| self.concerns(room))
            {
                continue;
            }
            if let Some(frame) = build(&self.chat, Arc::new(event)).await {
                self.backlog.push_back(Arc::new(frame));
            }
        }
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
async fn build(chat: &Chat, logged: Arc<LoggedEvent>) -> Option<Frame> {
    build_with(chat, logged, &mut HashMap::new()).await
}

/// [`build`], taking a new message's view from `created` when it was read beforehand.
async fn build_with(
    chat: &Chat,
    logged: Arc<LoggedEvent>,
    created: &mut HashMap<Id, MessageView>,
) -> Option<Frame> {
    let store = chat.views();
    let room_id = logged.event.room_id()?;
    // With its read count, so that live models agree with the REST API's. A new message is
    // the newest in its room, so nobody's read mark is on it yet: no need to count.
    let read_message = |id: Id, count_readers: bool| async move {
        let mut view = store.message(id).await.ok()??;
        if count_readers {
            let seq = view.message.seq;
            view.message.read_by = store.read_by(room_id, &[seq]).await.ok()?.pop()?;
        }
        Some(view)
    };
    use Operation::*;
    use Resource::*;
    let mut message = None;
    let (resource, operation, model) = match &logged.event {
        Event::MessageCreated { message_id, .. } => {
            let view = match created.remove(message_id) {
                Some(view) => view,
                None => read_message(*message_id, false).await?,
            };
            let model = wire::message(&view, None, None);
            message = Some(view);
            (ChatMessages, Create, model)
        }
        Event::MessageEdited { message_id, .. } | Event::MessageUndelivered { message_id, .. } => {
            let view = read_message(*message_id, true).await?;
            let model = wire::message(&view, None, None);
            message = Some(view);
            (ChatMessages, Update, model)
        }
        Event::MessageDeleted { message_id, .. } => {
            // A placeholder that stays (thread head) is shown as deleted; otherwise removed.
            match read_message(*message_id, true).await {
                Some(view) => {
                    let model = wire::message(&view, None, None);
                    message = Some(view);
                    (ChatMessages, Update, model)
                }
                None => (ChatMessages, Remove, json!({ "id": message_id })),
            }
        }
        Event::ThreadUpdated { message_id, .. } => {
            let view = store.message(*message_id).await.ok()??;
            (
                ChatMessages,
                Patch,
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
                ChatMessages,
                Patch,
                json!({ "id": message_id, "reactions": wire::reactions(&counts) }),
            )
        }
        Event::MemberJoined { user_id, .. } => {
            let user = store.user(*user_id).await.ok()??;
            (Users, Create, wire::user(&user))
        }
        Event::MemberLeft { user_id, .. } | Event::MemberBanned { user_id, .. } => {
            (Users, Remove, json!({ "id": user_id }))
        }
        Event::VirtualJoined { virtual_id, .. } => {
            let person = store.virtual_user(*virtual_id).await.ok()??;
            (Users, Create, wire::virtual_as_user(&person))
        }
        Event::VirtualBanned { virtual_id, .. }
        | Event::VirtualKicked { virtual_id, .. }
        | Event::VirtualLeft { virtual_id, .. } => (Users, Remove, json!({ "id": virtual_id })),
        Event::RoomUpdated { .. } => (Room, Update, wire::room(&store.room(room_id).await.ok()??)),
        Event::RoomDeleted { .. } => (Room, Remove, json!({ "id": room_id })),
        Event::ReadAdvanced { up_to_seq, .. } => (
            ReadState,
            Patch,
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
            (Typing, Create, model)
        }
        Event::RoomCreated { .. }
        | Event::RoomPrivacyChanged { .. }
        | Event::MemberUnbanned { .. }
        | Event::VirtualUnbanned { .. }
        | Event::GroupCreated { .. }
        | Event::UserCreated { .. }
        | Event::UserUpdated { .. }
        | Event::VirtualUserUpdated { .. } => {
            return None;
        }
    };
    let text: Arc<str> = json!({
        "type": "event",
        "seq": logged.seq,
        "roomId": room_id,
        "resource": resource.as_str(),
        "operation": operation.as_str(),
        "model": model,
    })
    .to_string()
    .into();
    Some(Frame {
        seq: logged.seq,
        room_id,
        private_to: logged.event.private_to(),
        event: logged,
        message,
        resource,
        operation,
        model,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names on the wire are the serde names, so frames built either way agree.
    #[test]
    fn wire_names_match_serde() {
        for r in [
            Resource::ChatMessages,
            Resource::Users,
            Resource::Room,
            Resource::ReadState,
            Resource::Typing,
        ] {
            assert_eq!(json!(r), json!(r.as_str()));
        }
        for o in [
            Operation::Create,
            Operation::Update,
            Operation::Remove,
            Operation::Patch,
        ] {
            assert_eq!(json!(o), json!(o.as_str()));
        }
    }
}
