//! `/v1/ws`: the WebSocket feed. A client subscribes to rooms, optionally from the last event
//! sequence number it saw, and receives every later event of those rooms exactly once, in
//! order, as `{type: "event", seq, roomId, resource, operation, model}`.
//!
//! Client messages: `{type: "subscribe", roomId, since?}`, `{type: "unsubscribe", roomId}`,
//! `{type: "typing", roomId}`, `{type: "ping"}`.

use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio_stream::{Stream, StreamExt, StreamMap};
use weft_chat::Actor;
use weft_core::Id;

use crate::extract::MaybeCaller;
use crate::frames::Frame;
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

/// One room's frames for one connection.
type RoomFeed = Pin<Box<dyn Stream<Item = Arc<Frame>> + Send>>;

/// One connection: the frames of each room it follows, each from where it asked to start.
struct Session {
    state: AppState,
    actor: Actor,
    rooms: StreamMap<Id, RoomFeed>,
}

impl Session {
    fn visible(&self, frame: &Frame) -> bool {
        let viewer = self.actor.user.as_ref().map(|u| u.id);
        frame.private_to.is_none_or(|p| Some(p) == viewer)
    }

    /// Sends a frame of a followed room.
    async fn deliver(&mut self, socket: &mut WebSocket, frame: &Frame) -> bool {
        if !self.visible(frame) {
            return true;
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
                let open = send_json(
                    socket,
                    json!({ "type": "error", "roomId": room_id, "error": e.to_string() }),
                )
                .await;
                (false, open)
            }
        }
    }

    /// Follows a room from `since` (or from now): the frames missed since then first, then
    /// `subscribed` with the position reached, then live frames.
    async fn subscribe(&mut self, socket: &mut WebSocket, room_id: Id, since: Option<i64>) -> bool {
        if let Err(e) = self.state.chat.room(&self.actor, room_id).await {
            return send_json(
                socket,
                json!({ "type": "error", "roomId": room_id, "error": e.to_string() }),
            )
            .await;
        }
        let now = match self.state.chat.views().last_event_seq().await {
            Ok(seq) => seq,
            Err(e) => {
                return send_json(socket, json!({ "type": "error", "error": e.to_string() })).await;
            }
        };
        let mut feed = self
            .state
            .frames
            .follow(room_id, since.unwrap_or(now).min(now));
        for frame in feed.caught_up().await {
            if self.visible(&frame)
                && socket
                    .send(WsMessage::Text(frame.text.to_string().into()))
                    .await
                    .is_err()
            {
                return false;
            }
        }
        let seq = feed.position();
        let feed: RoomFeed = Box::pin(futures_util::stream::unfold(feed, |mut feed| async move {
            feed.next().await.map(|frame| (frame, feed))
        }));
        self.rooms.insert(room_id, feed);
        send_json(
            socket,
            json!({ "type": "subscribed", "roomId": room_id, "seq": seq }),
        )
        .await
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
                self.subscribe(socket, room_id, since).await
            }
            ClientMessage::Unsubscribe { room_id } => {
                self.rooms.remove(&room_id);
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
    let mut session = Session {
        state,
        actor,
        rooms: StreamMap::new(),
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
            Some((_, frame)) = session.rooms.next(), if !session.rooms.is_empty() => {
                if !session.deliver(&mut socket, &frame).await {
                    return;
                }
            }
        }
    }
}
