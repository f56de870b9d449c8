//! `/groups`: communities and their rooms.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use weft_chat::NewRoom;
use weft_core::RoomKind;

use crate::extract::{Body, Caller, MaybeCaller, Path, parse_id};
use crate::{ApiError, ApiResult, AppState, wire};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/groups", get(list).post(create))
        .route("/groups/{group_id}", get(one))
        .route("/groups/{group_id}/rooms", get(rooms).post(create_room))
}

async fn list(State(state): State<AppState>, caller: MaybeCaller) -> ApiResult<Json<Value>> {
    let groups = state.chat.groups(&caller.0).await?;
    Ok(Json(Value::Array(groups.iter().map(wire::group).collect())))
}

#[derive(Deserialize)]
struct CreateGroup {
    uri: String,
    name: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateGroup>,
) -> ApiResult<Json<Value>> {
    let group = state
        .chat
        .create_group(&caller.0, &body.uri, body.name)
        .await?;
    Ok(Json(wire::group(&group)))
}

async fn one(
    State(state): State<AppState>,
    _caller: MaybeCaller,
    Path(group_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(wire::group(
        &state.chat.group(parse_id(&group_id, "group id")?).await?,
    )))
}

async fn rooms(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(group_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let rooms = state
        .chat
        .group_rooms(&caller.0, parse_id(&group_id, "group id")?)
        .await?;
    Ok(Json(Value::Array(rooms.iter().map(wire::room).collect())))
}

#[derive(Deserialize)]
struct CreateRoom {
    name: String,
    #[serde(default)]
    topic: String,
    security: Option<String>,
}

/// Gitter's `security`: `PUBLIC` (default) or `PRIVATE`.
pub(crate) fn parse_security(security: Option<&str>) -> ApiResult<RoomKind> {
    match security.map(str::to_ascii_uppercase).as_deref() {
        None | Some("PUBLIC") => Ok(RoomKind::Public),
        Some("PRIVATE") | Some("INHERITED") => Ok(RoomKind::Private),
        Some(other) => Err(ApiError::bad_request(format!(
            "security must be PUBLIC or PRIVATE, not {other}"
        ))),
    }
}

async fn create_room(
    State(state): State<AppState>,
    caller: Caller,
    Path(group_id): Path<String>,
    Body(body): Body<CreateRoom>,
) -> ApiResult<Json<Value>> {
    let kind = parse_security(body.security.as_deref())?;
    let room = state
        .chat
        .create_room(
            &caller.0,
            NewRoom {
                group_id: parse_id(&group_id, "group id")?,
                name: body.name,
                topic: body.topic,
                kind,
            },
        )
        .await?;
    Ok(Json(wire::room(&room)))
}
