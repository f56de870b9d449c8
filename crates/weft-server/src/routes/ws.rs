//! `/v1/ws`: the WebSocket feed. A client subscribes to rooms, optionally from the last event
//! sequence number it saw, and receives every later event of those rooms exactly once, in
//! order, as `{type: "event", seq, roomId, resource, operation, model}`.
//!
//! Client messages: `{type: "subscribe", roomId, since?}`, `{type: "unsubscribe", roomId}`,
//! `{type: "typing", roomId}`, `{type: "ping"}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;
use weft_chat::Actor;
use weft_core::Id;

use crate::extract::MaybeCaller;
use crate::frames::{self, Frame};
use crate::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

async fn upgrade(
    State(state): State<AppState>,
    caller: MaybeCaller,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => ws.on_upgrade(move |socket| session(state, caller.0, socket)),
        Err(e) => ApiError::new(e.status(), e.body_text()).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum ClientMessage {
    #[serde(rename_all = "camelCase")]
    Subscribe {
        room_id: Id,
        since: Option<i64>,
    },
    #[serde(rename_all = "camelCase")]
    Unsubscribe {
        room_id: Id,
    },
    #[serde(rename_all = "camelCase")]
    Typing {
        room_id: Id,
    },
    Ping,
}

/// One connection: its rooms and, per room, the last sequence number delivered.
struct Session {
    state: AppState,
    actor: Actor,
    rooms: HashMap<Id, i64>,
    /// Keeps the subscribed rooms' frames rendered (see [`crate::frames::Watch`]).
    watches: HashMap<Id, crate::frames::Watch>,
}

impl Session {
    fn visible(&self, frame: &Frame) -> bool {
        let viewer = self.actor.user.as_ref().map(|u| u.id);
        frame.private_to.is_none_or(|p| Some(p) == viewer)
    }

    /// Sends a live frame unless it is for another room or was already delivered by a replay.
    async fn deliver(&mut self, socket: &mut WebSocket, frame: &Frame) -> bool {
        if !self.visible(frame) {
            return true;
        }
        let Some(last) = self.rooms.get_mut(&frame.room_id) else {
            return true;
        };
        if frame.seq != 0 && frame.seq <= *last {
            return true;
        }
        if frame.seq != 0 {
            *last = frame.seq;
        }
        if frame.may_revoke_access() {
            let (allowed, open) = self.recheck(socket, frame.room_id).await;
            if !allowed {
                return open;
            }
        }
        socket
            .send(WsMessage::Text(frame.text.to_string().into()))
            .await
            .is_ok()
    }

    /// Checks that the caller may still read a subscribed room; if not, the subscription
    /// ends and the client is told why. Returns whether the room is still readable and whether
    /// the socket is still usable.
    async fn recheck(&mut self, socket: &mut WebSocket, room_id: Id) -> (bool, bool) {
        match self.state.chat.room(&self.actor, room_id).await {
            Ok(_) => (true, true),
            Err(e) => {
                self.rooms.remove(&room_id);
                self.watches.remove(&room_id);
                let open = send_json(
                    socket,
                    json!({ "type": "error", "roomId": room_id, "error": e.to_string() }),
                )
                .await;
                (false, open)
            }
        }
    }

    /// Replays the log for one room from its last delivered sequence number.
    async fn replay(&mut self, socket: &mut WebSocket, room_id: Id) -> bool {
        let Some(mut last) = self.rooms.get(&room_id).copied() else {
            return true;
        };
        let (allowed, open) = self.recheck(socket, room_id).await;
        if !allowed {
            return open;
        }
        let store = self.state.chat.views().clone();
        loop {
            let events = match store.events_after(last, 1000).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!(error = %e, %room_id, "replay failed");
                    return send_json(
                        socket,
                        json!({ "type": "error", "error": "could not replay events; resubscribe" }),
                    )
                    .await;
                }
            };
            let Some(end) = events.last().map(|e| e.seq) else {
                break;
            };
            for event in events.iter().filter(|e| e.event.room_id() == Some(room_id)) {
                if let Some(frame) = frames::build(&self.state.chat, event).await
                    && self.visible(&frame)
                    && socket
                        .send(WsMessage::Text(frame.text.to_string().into()))
                        .await
                        .is_err()
                {
                    return false;
                }
            }
            last = end;
        }
        self.rooms.insert(room_id, last);
        true
    }

    async fn handle(&mut self, socket: &mut WebSocket, text: &str) -> bool {
        let message: ClientMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                return send_json(
                    socket,
                    json!({ "type": "error", "error": format!("invalid message: {e}") }),
                )
                .await;
            }
        };
        match message {
            ClientMessage::Subscribe { room_id, since } => {
                if let Err(e) = self.state.chat.room(&self.actor, room_id).await {
                    return send_json(
                        socket,
                        json!({ "type": "error", "roomId": room_id, "error": e.to_string() }),
                    )
                    .await;
                }
                // Watched before the position is read: every later event is rendered.
                self.watches
                    .entry(room_id)
                    .or_insert_with(|| self.state.frames.watch(room_id));
                let now = match self.state.chat.views().last_event_seq().await {
                    Ok(seq) => seq,
                    Err(e) => {
                        return send_json(
                            socket,
                            json!({ "type": "error", "error": e.to_string() }),
                        )
                        .await;
                    }
                };
                self.rooms.insert(room_id, since.unwrap_or(now).min(now));
                if since.is_some() && !self.replay(socket, room_id).await {
                    return false;
                }
                if !self.rooms.contains_key(&room_id) {
                    // Access was lost during the replay; the client has been told.
                    return true;
                }
                let seq = self.rooms.get(&room_id).copied().unwrap_or(now);
                send_json(
                    socket,
                    json!({ "type": "subscribed", "roomId": room_id, "seq": seq }),
                )
                .await
            }
            ClientMessage::Unsubscribe { room_id } => {
                self.rooms.remove(&room_id);
                self.watches.remove(&room_id);
                send_json(socket, json!({ "type": "unsubscribed", "roomId": room_id })).await
            }
            ClientMessage::Typing { room_id } => {
                match self.state.chat.typing(&self.actor, room_id).await {
                    Ok(()) => true,
                    Err(e) => {
                        send_json(
                            socket,
                            json!({ "type": "error", "roomId": room_id, "error": e.to_string() }),
                        )
                        .await
                    }
                }
            }
            ClientMessage::Ping => send_json(socket, json!({ "type": "pong" })).await,
        }
    }
}

async fn send_json(socket: &mut WebSocket, value: serde_json::Value) -> bool {
    socket
        .send(WsMessage::Text(value.to_string().into()))
        .await
        .is_ok()
}

async fn session(state: AppState, actor: Actor, mut socket: WebSocket) {
    // Subscribe before anything else so that nothing committed from now on can be missed.
    let mut frames: broadcast::Receiver<Arc<Frame>> = state.frames.subscribe();
    let mut session = Session {
        state,
        actor,
        rooms: HashMap::new(),
        watches: HashMap::new(),
    };
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Text(text))) => {
                    if !session.handle(&mut socket, text.as_str()).await {
                        return;
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    if !session.deliver(&mut socket, &frame).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow for the live feed: catch up from the log, room by room.
                    let rooms: Vec<Id> = session.rooms.keys().copied().collect();
                    for room_id in rooms {
                        if !session.replay(&mut socket, room_id).await {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
