//! Gitter's streaming API: a long-lived response with one JSON document per line (`\r\n`
//! separated) and a bare newline as heartbeat.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::json;
use tokio::sync::broadcast;
use weft_chat::{Actor, Chat};
use weft_core::Id;

use crate::extract::{MaybeCaller, Path, parse_id};
use crate::frames::Frame;
use crate::{ApiResult, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/stream/v1/rooms/{room_id}/chatMessages",
            get(chat_messages),
        )
        .route("/stream/v1/rooms/{room_id}/events", get(events))
}

/// Which frames a stream writes, and how.
#[derive(Clone, Copy)]
enum Kind {
    /// New messages, as message JSON.
    ChatMessages,
    /// Every room event, as `{resource, operation, model}`.
    Events,
}

fn line(kind: Kind, frame: &Frame, viewer: Option<Id>) -> Option<Bytes> {
    if frame.private_to.is_some_and(|p| Some(p) != viewer) {
        return None;
    }
    let text = match kind {
        Kind::ChatMessages if frame.resource == "chatMessages" && frame.operation == "create" => frame.model.to_string(),
        Kind::ChatMessages => return None,
        Kind::Events => {
            json!({ "resource": frame.resource, "operation": frame.operation, "model": frame.model, "seq": frame.seq })
                .to_string()
        }
    };
    Some(Bytes::from(format!("{text}\r\n")))
}

async fn open(
    state: AppState,
    caller: MaybeCaller,
    room_id: &str,
    kind: Kind,
) -> ApiResult<Response> {
    let room_id = parse_id(room_id, "room id")?;
    state.chat.room(&caller.0, room_id).await?;
    let viewer = caller.0.user.as_ref().map(|u| u.id);
    let frames = state.frames.subscribe();
    // Watched before the position is read: every later event of the room is rendered.
    let watch = state.frames.watch(room_id);
    // Events logged before the stream opened may still be on their way to the live frames;
    // they are not new to this client.
    let opened_at = state
        .chat
        .views()
        .last_event_seq()
        .await
        .map_err(weft_chat::ChatError::from)?;
    let heartbeat = state.config.heartbeat;
    struct Feed {
        frames: broadcast::Receiver<Arc<Frame>>,
        ticker: tokio::time::Interval,
        chat: Chat,
        actor: Actor,
        _watch: crate::frames::Watch,
    }
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.reset();
    let feed = Feed {
        frames,
        ticker,
        chat: state.chat.clone(),
        actor: caller.0,
        _watch: watch,
    };
    let body = futures_util::stream::unfold(feed, move |mut feed| async move {
        loop {
            tokio::select! {
                _ = feed.ticker.tick() => return Some((Ok::<Bytes, Infallible>(Bytes::from_static(b"\n")), feed)),
                got = feed.frames.recv() => match got {
                    Ok(frame) if frame.room_id == room_id && (frame.seq == 0 || frame.seq > opened_at) => {
                        // Someone who may no longer read the room hears nothing more from it.
                        if frame.may_revoke_access() && feed.chat.room(&feed.actor, room_id).await.is_err() {
                            return None;
                        }
                        if let Some(bytes) = line(kind, &frame, viewer) {
                            return Some((Ok(bytes), feed));
                        }
                    }
                    Ok(_) => {}
                    // A stream has no resume point: a client that fell this far behind
                    // reconnects and reads the gap through the REST API.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    Ok((
        [(CONTENT_TYPE, "application/json; charset=utf-8")],
        Body::from_stream(body),
    )
        .into_response())
}

async fn chat_messages(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(room_id): Path<String>,
) -> ApiResult<Response> {
    open(state, caller, &room_id, Kind::ChatMessages).await
}

async fn events(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(room_id): Path<String>,
) -> ApiResult<Response> {
    open(state, caller, &room_id, Kind::Events).await
}
