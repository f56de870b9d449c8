//! Gitter's streaming API: a long-lived response with one JSON document per line (`\r\n`
//! separated) and a bare newline as heartbeat.

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::json;
use weft_chat::{Actor, Chat};
use weft_core::Id;

use crate::extract::{MaybeCaller, Path, parse_id};
use crate::frames::{Frame, FrameStream, Operation, Resource};
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
        Kind::ChatMessages
            if frame.resource == Resource::ChatMessages && frame.operation == Operation::Create =>
        {
            frame.model.to_string()
        }
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
    // Events logged before the stream opened are not new to this client.
    let opened_at = state
        .chat
        .views()
        .last_event_seq()
        .await
        .map_err(weft_chat::ChatError::from)?;
    let heartbeat = state.config.heartbeat;
    struct Feed {
        frames: FrameStream,
        ticker: tokio::time::Interval,
        chat: Chat,
        actor: Actor,
    }
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.reset();
    let feed = Feed {
        frames: state.frames.follow(room_id, opened_at),
        ticker,
        chat: state.chat.clone(),
        actor: caller.0,
    };
    let body = futures_util::stream::unfold(feed, move |mut feed| async move {
        loop {
            tokio::select! {
                _ = feed.ticker.tick() => return Some((Ok::<Bytes, Infallible>(Bytes::from_static(b"\n")), feed)),
                got = feed.frames.next() => {
                    // The process's frames ended: it is shutting down.
                    let frame = got?;
                    // Someone who may no longer read the room hears nothing more from it.
                    if frame.may_revoke_access() && feed.chat.room(&feed.actor, room_id).await.is_err() {
                        return None;
                    }
                    if let Some(bytes) = line(kind, &frame, viewer) {
                        return Some((Ok(bytes), feed));
                    }
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
