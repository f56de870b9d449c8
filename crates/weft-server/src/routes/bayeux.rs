//! `/bayeux` and `/faye`: Gitter's realtime endpoint, the Bayeux protocol as the Faye client
//! speaks it, over HTTP long-polling (POSTed JSON arrays of messages) and WebSocket.
//!
//! A client handshakes (the access token in `ext.token`, or on the request), subscribes to
//! Gitter's channels and long-polls `/meta/connect`; data arrives as
//! `{channel, data: {operation, model}}` with the same models the `/v1/ws` feed sends (the
//! live [`Frame`]s, rendered once per event). Sessions live in this process: behind a load
//! balancer a client's requests must reach the instance it handshook with.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{Value, json};
use tokio::sync::Notify;
use weft_chat::{Actor, MessageQuery};
use weft_core::Id;

use crate::extract::bearer_token;
use crate::frames::{Frame, Operation, Resource};
use crate::{ApiError, AppState, wire};

/// Messages a client may have waiting before its session is dropped (it then handshakes again).
const QUEUE_MAX: usize = 1000;
/// Longest a `/meta/connect` is held open.
const CONNECT_HOLD_MAX: Duration = Duration::from_secs(45);
/// A session whose client has not connected for this long (beyond the hold) is dropped.
const SESSION_IDLE: Duration = Duration::from_secs(60);
/// Largest request body (a batch of messages).
const BODY_MAX: usize = 256 * 1024;
/// Largest number of channels one client may subscribe to.
const SUBSCRIPTIONS_MAX: usize = 1000;
/// Largest number of sessions this process keeps; handshakes beyond it are refused.
const CLIENTS_MAX: usize = 100_000;

/// The routes, mounted at `/bayeux` and `/faye`, sharing one engine.
pub fn router(state: &AppState) -> Router<AppState> {
    let engine = Engine::start(state.clone());
    Router::new()
        .route("/bayeux", get(upgrade).post(poll))
        .route("/faye", get(upgrade).post(poll))
        .layer(Extension(engine))
}

/// What a client subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topic {
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
    fn parse(channel: &str) -> Option<Topic> {
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

    fn room(self) -> Option<Id> {
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

/// One Bayeux client session.
struct Client {
    id: String,
    inner: Mutex<ClientState>,
    /// Woken when messages are queued or a newer connect replaces a held one.
    wake: Notify,
}

struct ClientState {
    actor: Actor,
    /// The token the session signed in with, checked again on every connect so that a
    /// revoked token ends the session.
    secret: Option<String>,
    /// Each channel with the event log position it was subscribed at: older events, still on
    /// their way, are not news to it.
    /// The guard keeps the channel's rooms' frames rendered.
    subscriptions: HashMap<String, (Topic, i64, Option<crate::frames::Watch>)>,
    queue: VecDeque<Value>,
    last_seen: Instant,
    /// Counts connects, so that a held connect learns a newer one replaced it.
    connects: u64,
    closed: bool,
    /// Unread messages and mentions per room of the user, kept once they subscribe to their
    /// room list, so that each new message patches it without a query.
    unread: Option<HashMap<Id, Unread>>,
}

impl Client {
    fn state(&self) -> std::sync::MutexGuard<'_, ClientState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A room's unread counts as the user's room list last heard them.
#[derive(Default)]
struct Unread {
    messages: i64,
    mentions: i64,
    /// Messages the counts already include (found by the last count from the store), whose
    /// live events may still be on their way: they must not be counted twice.
    counted: Vec<Id>,
}

/// The sessions of this process and the task that feeds them.
#[derive(Clone)]
pub(crate) struct Engine {
    state: AppState,
    clients: Arc<Mutex<HashMap<String, Arc<Client>>>>,
}

impl Engine {
    fn start(state: AppState) -> Engine {
        let engine = Engine {
            state,
            clients: Arc::new(Mutex::new(HashMap::new())),
        };
        tokio::spawn(engine.clone().feed());
        tokio::spawn(engine.clone().sweep());
        engine
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Client>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client(&self, id: &str) -> Option<Arc<Client>> {
        self.clients().get(id).cloned()
    }

    fn drop_client(&self, id: &str) {
        if let Some(client) = self.clients().remove(id) {
            client.state().closed = true;
            client.wake.notify_one();
        }
    }

    /// How long a connect is held: the configured heartbeat, at most 45 s.
    fn hold(&self) -> Duration {
        self.state.config.heartbeat.min(CONNECT_HOLD_MAX)
    }

    fn advice(&self) -> Value {
        json!({ "reconnect": "retry", "interval": 0, "timeout": self.hold().as_millis() as u64 })
    }

    /// Drops sessions whose clients stopped connecting. A connect refreshes `last_seen` and is
    /// held for at most [`Engine::hold`], so a live client is never idle for longer.
    async fn sweep(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let limit = self.hold() + SESSION_IDLE;
            let stale: Vec<String> = self
                .clients()
                .values()
                .filter(|c| c.state().last_seen.elapsed() > limit)
                .map(|c| c.id.clone())
                .collect();
            for id in stale {
                self.drop_client(&id);
            }
        }
    }

    /// Follows the live frames and queues each for the clients subscribed to it.
    async fn feed(self) {
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
    async fn dispatch(&self, frame: &Frame) {
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
    async fn data_for(
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

    /// Queues messages for a client; a client that lets too many pile up loses its session
    /// (its next connect is told to handshake again).
    fn enqueue(&self, client: &Client, messages: Vec<Value>) {
        let overflow = {
            let mut s = client.state();
            s.queue.extend(messages);
            s.queue.len() > QUEUE_MAX
        };
        if overflow {
            tracing::warn!(client = %client.id, "bayeux client fell too far behind; session dropped");
            self.drop_client(&client.id);
        } else {
            client.wake.notify_one();
        }
    }

    /// Answers a batch of messages. `held` receives the connect to hold, if the batch has one,
    /// and for how long: its reply goes out once messages are queued or the hold ends.
    async fn handle_batch(
        &self,
        messages: Vec<Value>,
        request_auth: Option<&Auth>,
        held: &mut Option<(Arc<Client>, Value, Duration)>,
    ) -> Vec<Value> {
        let mut replies = Vec::new();
        for message in messages {
            if let Some(reply) = self.handle(message, request_auth, held).await {
                replies.push(reply);
            }
        }
        replies
    }

    async fn handle(
        &self,
        message: Value,
        request_auth: Option<&Auth>,
        held: &mut Option<(Arc<Client>, Value, Duration)>,
    ) -> Option<Value> {
        let channel = message["channel"].as_str().unwrap_or_default().to_string();
        let mut reply = json!({ "channel": channel });
        if let Some(id) = message.get("id") {
            reply["id"] = id.clone();
        }
        let fail = |mut reply: Value, error: String| {
            reply["successful"] = json!(false);
            reply["error"] = json!(error);
            Some(reply)
        };
        if channel == "/meta/handshake" {
            return Some(self.handshake(&message, request_auth, reply).await);
        }
        if channel.is_empty() {
            return fail(reply, "400::Missing channel".into());
        }
        let client_id = message["clientId"].as_str().unwrap_or_default();
        reply["clientId"] = json!(client_id);
        let Some(client) = self.client(client_id) else {
            reply["advice"] = json!({ "reconnect": "handshake", "interval": 0 });
            return fail(reply, format!("401:{client_id}:Unknown client"));
        };
        client.state().last_seen = Instant::now();
        let secret = client.state().secret.clone();
        if let Some(secret) = secret
            && self.state.chat.authenticate_token(&secret).await.is_err()
        {
            // The token was revoked: the session ends, and handshaking again fails.
            self.drop_client(client_id);
            reply["advice"] = json!({ "reconnect": "handshake", "interval": 0 });
            return fail(reply, format!("401:{client_id}:Authentication failed"));
        }
        match channel.as_str() {
            "/meta/connect" => {
                reply["successful"] = json!(true);
                reply["advice"] = self.advice();
                client.state().connects += 1;
                // A newer connect answers any connect still held for this client.
                client.wake.notify_one();
                // Faye asks for an immediate answer (`advice.timeout: 0`) when it sends the
                // connect along with other messages.
                let hold = match message["advice"]["timeout"].as_u64() {
                    Some(ms) => Duration::from_millis(ms).min(self.hold()),
                    None => self.hold(),
                };
                // Two connects in one batch: the first is answered at once.
                held.replace((client, reply, hold))
                    .map(|(_, earlier, _)| earlier)
            }
            "/meta/disconnect" => {
                self.drop_client(client_id);
                reply["successful"] = json!(true);
                Some(reply)
            }
            "/meta/subscribe" | "/meta/unsubscribe" => {
                let subscribe = channel == "/meta/subscribe";
                let subscriptions: Vec<String> = match &message["subscription"] {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(list) => list
                        .iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect(),
                    _ => return fail(reply, "400::Missing subscription".into()),
                };
                reply["subscription"] = message["subscription"].clone();
                if subscribe && let Err(error) = self.accept_ext_token(&client, &message).await {
                    return fail(reply, error);
                }
                for subscription in &subscriptions {
                    if subscribe {
                        if let Err(error) = self.subscribe(&client, subscription).await {
                            return fail(reply, error);
                        }
                    } else {
                        client.state().subscriptions.remove(subscription);
                    }
                }
                // Gitter answered a subscription with the collection as it stands, in
                // `ext.snapshot`, unless the client asked for none.
                if subscribe
                    && let [one] = subscriptions.as_slice()
                    && message["ext"]["snapshot"] != json!(false)
                    && let Some(snapshot) = self.snapshot(&client, one).await
                {
                    reply["ext"] = json!({ "snapshot": snapshot });
                }
                reply["successful"] = json!(true);
                Some(reply)
            }
            c if c.starts_with("/meta/") => fail(reply, format!("404:{c}:Unknown channel")),
            c if Topic::parse(c) == Some(Topic::Ping) => {
                // Gitter clients publish to the ping channel to keep their session alive.
                reply["successful"] = json!(true);
                Some(reply)
            }
            c => fail(reply, format!("403:{c}:Publishing is not allowed")),
        }
    }

    async fn handshake(
        &self,
        message: &Value,
        request_auth: Option<&Auth>,
        mut reply: Value,
    ) -> Value {
        reply["version"] = json!("1.0");
        reply["supportedConnectionTypes"] = json!(["long-polling", "websocket"]);
        let (actor, secret) = match message["ext"]["token"].as_str() {
            Some(token) => match self.state.chat.authenticate_token(token).await {
                Ok(actor) => (actor, Some(token.to_string())),
                Err(_) => {
                    reply["successful"] = json!(false);
                    reply["error"] = json!("401::Authentication failed");
                    reply["advice"] = json!({ "reconnect": "none", "interval": 0 });
                    return reply;
                }
            },
            None => match request_auth {
                Some((actor, token)) => (actor.clone(), Some(token.clone())),
                None => (Actor::anonymous(), None),
            },
        };
        if self.clients().len() >= CLIENTS_MAX {
            reply["successful"] = json!(false);
            reply["error"] = json!("503::Too many clients; try again later");
            reply["advice"] = json!({ "reconnect": "handshake", "interval": 10_000 });
            return reply;
        }
        let id = hex_id();
        let client = Arc::new(Client {
            id: id.clone(),
            inner: Mutex::new(ClientState {
                actor,
                secret,
                subscriptions: HashMap::new(),
                queue: VecDeque::new(),
                last_seen: Instant::now(),
                connects: 0,
                closed: false,
                unread: None,
            }),
            wake: Notify::new(),
        });
        self.clients().insert(id.clone(), client);
        reply["clientId"] = json!(id);
        reply["successful"] = json!(true);
        reply["advice"] = self.advice();
        reply
    }

    /// A token in a subscribe's `ext` signs in a session that handshook without one.
    async fn accept_ext_token(&self, client: &Client, message: &Value) -> Result<(), String> {
        let Some(token) = message["ext"]["token"].as_str() else {
            return Ok(());
        };
        let actor = self
            .state
            .chat
            .authenticate_token(token)
            .await
            .map_err(|_| "401::Authentication failed".to_string())?;
        let mut s = client.state();
        match (&s.actor.user, &actor.user) {
            (None, _) => {
                s.actor = actor;
                s.secret = Some(token.to_string());
                Ok(())
            }
            (Some(a), Some(b)) if a.id == b.id => Ok(()),
            _ => Err("401::The token belongs to another user".into()),
        }
    }

    /// Checks that the client may follow a channel, then adds it.
    async fn subscribe(&self, client: &Client, channel: &str) -> Result<(), String> {
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
    async fn snapshot(&self, client: &Client, channel: &str) -> Option<Value> {
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
                .members(&actor, room, "", 30, 0)
                .await
                .ok()?
                .iter()
                .map(|(user, role)| wire::member(user, *role))
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

    /// Holds a connect until messages are queued for its client, a newer connect arrives, or
    /// the hold ends; returns the queued messages followed by the connect's reply.
    async fn hold_connect(
        &self,
        client: Arc<Client>,
        mut reply: Value,
        hold: Duration,
    ) -> Vec<Value> {
        let generation = client.state().connects;
        let deadline = tokio::time::Instant::now() + hold;
        loop {
            {
                let mut s = client.state();
                if s.closed {
                    reply["successful"] = json!(false);
                    reply["error"] = json!(format!("401:{}:Unknown client", client.id));
                    reply["advice"] = json!({ "reconnect": "handshake", "interval": 0 });
                    return vec![reply];
                }
                if !s.queue.is_empty() || s.connects != generation {
                    return finish_connect(&mut s, reply);
                }
            }
            tokio::select! {
                _ = client.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    let mut s = client.state();
                    return finish_connect(&mut s, reply);
                }
            }
        }
    }
}

/// The queued messages followed by a held connect's reply.
fn finish_connect(s: &mut ClientState, reply: Value) -> Vec<Value> {
    s.last_seen = Instant::now();
    let mut out: Vec<Value> = s.queue.drain(..).collect();
    out.push(reply);
    out
}

/// 20 random bytes as hex: a client id nobody can guess.
fn hex_id() -> String {
    let bytes: [u8; 20] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The messages of a request: a JSON array or one object, as a body or in a `message`
/// form field.
fn parse_messages(content_type: Option<&str>, body: &[u8]) -> Result<Vec<Value>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("request body is not valid UTF-8"))?;
    let json_text =
        if content_type.is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded")) {
            let field = text
                .split('&')
                .find_map(|pair| pair.strip_prefix("message="))
                .ok_or_else(|| ApiError::bad_request("missing message field"))?;
            percent_decode(field)?
        } else {
            text.to_string()
        };
    match serde_json::from_str::<Value>(&json_text) {
        Ok(Value::Array(list)) if list.iter().all(Value::is_object) => Ok(list),
        Ok(object @ Value::Object(_)) => Ok(vec![object]),
        _ => Err(ApiError::bad_request(
            "expected a Bayeux message or an array of them",
        )),
    }
}

fn percent_decode(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("message is not valid UTF-8"))
}

/// Who a request's own bearer token stands for, and the token.
type Auth = (Actor, String);

/// The actor behind a bearer token on the request itself (header or `?access_token=`), if any.
async fn request_actor(
    state: &AppState,
    parts: &axum::http::request::Parts,
) -> Result<Option<Auth>, ApiError> {
    match bearer_token(parts) {
        Some(token) => state
            .chat
            .authenticate_token(&token)
            .await
            .map(|actor| Some((actor, token)))
            .map_err(|_| {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid or revoked access token")
            }),
        None => Ok(None),
    }
}

/// HTTP long-polling: a POSTed batch, answered with a JSON array.
async fn poll(
    State(state): State<AppState>,
    Extension(engine): Extension<Engine>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let actor = match request_actor(&state, &parts).await {
        Ok(actor) => actor,
        Err(e) => return e.into_response(),
    };
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match axum::body::to_bytes(body, BODY_MAX).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large")
                .into_response();
        }
    };
    let messages = match parse_messages(content_type.as_deref(), &body) {
        Ok(messages) => messages,
        Err(e) => return e.into_response(),
    };
    let mut held = None;
    let mut replies = engine
        .handle_batch(messages, actor.as_ref(), &mut held)
        .await;
    if let Some((client, reply, hold)) = held {
        replies.extend(engine.hold_connect(client, reply, hold).await);
    }
    let mut response = Value::Array(replies).to_string().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    response
}

/// WebSocket: batches in text frames, answers and data as JSON arrays.
async fn upgrade(
    State(state): State<AppState>,
    Extension(engine): Extension<Engine>,
    request: Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    let actor = match request_actor(&state, &parts).await {
        Ok(actor) => actor,
        Err(e) => return e.into_response(),
    };
    match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(ws) => ws.on_upgrade(move |socket| socket_session(engine, actor, socket)),
        Err(e) => ApiError::new(e.status(), e.body_text()).into_response(),
    }
}

async fn send(socket: &mut WebSocket, messages: Vec<Value>) -> bool {
    if messages.is_empty() {
        return true;
    }
    socket
        .send(WsMessage::Text(Value::Array(messages).to_string().into()))
        .await
        .is_ok()
}

async fn socket_session(engine: Engine, actor: Option<Auth>, mut socket: WebSocket) {
    // The client whose connects this socket carries, and the connect being held.
    let mut bound: Option<Arc<Client>> = None;
    let mut held: Option<(Value, tokio::time::Instant, u64)> = None;
    loop {
        let wake = async {
            match &bound {
                Some(client) => client.wake.notified().await,
                None => std::future::pending().await,
            }
        };
        let deadline = held.as_ref().map(|(_, at, _)| *at);
        let until = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(WsMessage::Text(text))) => text,
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let messages = match parse_messages(None, text.as_bytes()) {
                    Ok(messages) => messages,
                    Err(e) => {
                        let error = json!([{ "successful": false, "error": format!("400::{}", e.message) }]);
                        if socket.send(WsMessage::Text(error.to_string().into())).await.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let mut connect = None;
                let mut replies = engine.handle_batch(messages, actor.as_ref(), &mut connect).await;
                if let Some((client, reply, hold)) = connect {
                    // A newer connect on this socket answers the one held before it.
                    if let Some((old, _, _)) = held.take() {
                        replies.push(old);
                    }
                    let generation = client.state().connects;
                    held = Some((reply, tokio::time::Instant::now() + hold, generation));
                    bound = Some(client);
                }
                if !send(&mut socket, replies).await {
                    return;
                }
            }
            _ = wake => {}
            _ = until => {}
        }
        // Deliver whatever is queued at once; answer the held connect with it or at its end.
        let Some(client) = bound.clone() else {
            continue;
        };
        let mut out = Vec::new();
        let closed = {
            let mut s = client.state();
            out.extend(s.queue.drain(..));
            s.last_seen = Instant::now();
            s.closed
        };
        if closed {
            if let Some((mut reply, _, _)) = held.take() {
                reply["successful"] = json!(false);
                reply["error"] = json!(format!("401:{}:Unknown client", client.id));
                reply["advice"] = json!({ "reconnect": "handshake", "interval": 0 });
                out.push(reply);
            }
            bound = None;
        } else if let Some((_, at, generation)) = &held {
            let due = !out.is_empty()
                || client.state().connects != *generation
                || tokio::time::Instant::now() >= *at;
            if due && let Some((reply, _, _)) = held.take() {
                out.push(reply);
            }
        }
        if !send(&mut socket, out).await {
            return;
        }
    }
}
