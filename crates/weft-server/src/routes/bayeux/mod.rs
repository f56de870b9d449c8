//! `/bayeux` and `/faye`: Gitter's realtime endpoint, the Bayeux protocol as the Faye client
//! speaks it, over HTTP long-polling (POSTed JSON arrays of messages) and WebSocket.
//!
//! A client handshakes (the access token in `ext.token`, or on the request), subscribes to
//! Gitter's channels and long-polls `/meta/connect`; data arrives as
//! `{channel, data: {operation, model}}` with the same models the `/v1/ws` feed sends (the
//! live [`Frame`]s, rendered once per event). Sessions live in this process: behind a load
//! balancer a client's requests must reach the instance it handshook with.

//!
//! The module's parts: [`protocol`] (Bayeux's meta channels: handshake, connect, subscribe,
//! disconnect, and a session's life), [`channels`] (Gitter's channels: what each carries and
//! its first snapshot, fed from the live frames), [`transport`] (HTTP long-polling and
//! WebSocket, and reading a request's batch of messages).

mod channels;
mod protocol;
mod transport;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Extension, Router};
use serde_json::Value;
use tokio::sync::Notify;
use weft_chat::Actor;
use weft_core::Id;

use crate::AppState;

use channels::{Topic, Unread};
use transport::{poll, upgrade};

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

/// Who a request's own bearer token stands for, and the token.
type Auth = (Actor, String);

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
}
