//! Bayeux's meta channels as the Faye client speaks them: handshake (with Gitter's token in
//! `ext`), connect (held until messages are queued), subscribe, unsubscribe, disconnect.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Notify;
use weft_chat::Actor;

use super::{Auth, CLIENTS_MAX, CONNECT_HOLD_MAX, Client, ClientState, Engine, Topic};

impl Engine {
    /// How long a connect is held: the configured heartbeat, at most 45 s.
    pub(super) fn hold(&self) -> Duration {
        self.state.config.heartbeat.min(CONNECT_HOLD_MAX)
    }

    pub(super) fn advice(&self) -> Value {
        json!({ "reconnect": "retry", "interval": 0, "timeout": self.hold().as_millis() as u64 })
    }

    /// Answers a batch of messages. `held` receives the connect to hold, if the batch has one,
    /// and for how long: its reply goes out once messages are queued or the hold ends.
    pub(super) async fn handle_batch(
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

    pub(super) async fn handle(
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

    pub(super) async fn handshake(
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
    pub(super) async fn accept_ext_token(
        &self,
        client: &Client,
        message: &Value,
    ) -> Result<(), String> {
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

    /// Holds a connect until messages are queued for its client, a newer connect arrives, or
    /// the hold ends; returns the queued messages followed by the connect's reply.
    pub(super) async fn hold_connect(
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
pub(super) fn finish_connect(s: &mut ClientState, reply: Value) -> Vec<Value> {
    s.last_seen = Instant::now();
    let mut out: Vec<Value> = s.queue.drain(..).collect();
    out.push(reply);
    out
}

/// 20 random bytes as hex: a client id nobody can guess.
pub(super) fn hex_id() -> String {
    let bytes: [u8; 20] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
