//! `/rooms`: joining, room settings, members and bans.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use weft_chat::RoomPatch;

use super::groups::parse_security;
use super::users::double_option;
use crate::extract::{Body, Caller, MaybeCaller, Path, Query, parse_id};
use crate::{ApiResult, AppState, wire};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rooms", get(list).post(join_by_uri))
        .route("/rooms/{room_id}", get(one).put(update).delete(remove))
        .route("/rooms/{room_id}/users", get(members))
        .route("/rooms/{room_id}/users/{user_id}", delete(remove_member))
        .route(
            "/rooms/{room_id}/users/{user_id}/role",
            axum::routing::put(set_role),
        )
        .route("/rooms/{room_id}/bans", axum::routing::post(ban))
        .route("/rooms/{room_id}/bans/{username}", delete(unban))
}

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    limit: Option<i64>,
    skip: Option<i64>,
}

/// The caller's rooms; with `q`, a search of public rooms (`{results: […]}` as Gitter did).
async fn list(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    if let Some(q) = query.q {
        let rooms = state
            .chat
            .store()
            .public_rooms(
                &q,
                query.limit.unwrap_or(30).clamp(1, 100),
                query.skip.unwrap_or(0).max(0),
            )
            .await
            .map_err(weft_chat::ChatError::from)?;
        return Ok(Json(
            json!({ "results": rooms.iter().map(wire::room).collect::<Vec<_>>() }),
        ));
    }
    let me = caller.0.require_user()?.id;
    let list = state.chat.rooms_of(&caller.0, me).await?;
    Ok(Json(Value::Array(
        list.iter().map(wire::room_summary).collect(),
    )))
}

#[derive(Deserialize)]
struct UriBody {
    uri: String,
}

async fn join_by_uri(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<UriBody>,
) -> ApiResult<Json<Value>> {
    let room = state.chat.join_by_uri(&caller.0, &body.uri).await?;
    Ok(Json(wire::room(&room)))
}

async fn one(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(room_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let room = state
        .chat
        .room(&caller.0, parse_id(&room_id, "room id")?)
        .await?;
    Ok(Json(wire::room(&room)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateBody {
    name: Option<String>,
    topic: Option<String>,
    security: Option<String>,
    noindex: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    avatar_url: Option<Option<String>>,
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(room_id): Path<String>,
    Body(body): Body<UpdateBody>,
) -> ApiResult<Json<Value>> {
    let kind = match body.security.as_deref() {
        Some(s) => Some(parse_security(Some(s))?),
        None => None,
    };
    let patch = RoomPatch {
        name: body.name,
        topic: body.topic,
        kind,
        noindex: body.noindex,
        avatar_url: body.avatar_url,
    };
    let room = state
        .chat
        .update_room(&caller.0, parse_id(&room_id, "room id")?, patch)
        .await?;
    Ok(Json(wire::room(&room)))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(room_id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .chat
        .delete_room(&caller.0, parse_id(&room_id, "room id")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn members(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(room_id): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let members = state
        .chat
        .members(
            &caller.0,
            parse_id(&room_id, "room id")?,
            query.q.as_deref().unwrap_or(""),
            query.limit.unwrap_or(30),
            query.skip.unwrap_or(0),
        )
        .await?;
    Ok(Json(Value::Array(
        members
            .iter()
            .map(|(u, role)| wire::member(u, *role))
            .collect(),
    )))
}

async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((room_id, user_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state
        .chat
        .remove_member(
            &caller.0,
            parse_id(&room_id, "room id")?,
            parse_id(&user_id, "user id")?,
        )
        .await?;
    Ok(Json(json!({ "success": true })))
}

#[derive(Deserialize)]
struct BanBody {
    username: String,
}

async fn ban(
    State(state): State<AppState>,
    caller: Caller,
    Path(room_id): Path<String>,
    Body(body): Body<BanBody>,
) -> ApiResult<Json<Value>> {
    let user = state.chat.user_by_username(&body.username).await?;
    state
        .chat
        .ban(&caller.0, parse_id(&room_id, "room id")?, user.id)
        .await?;
    Ok(Json(json!({ "success": true, "user": wire::user(&user) })))
}

async fn unban(
    State(state): State<AppState>,
    caller: Caller,
    Path((room_id, username)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user = state.chat.user_by_username(&username).await?;
    state
        .chat
        .unban(&caller.0, parse_id(&room_id, "room id")?, user.id)
        .await?;
    Ok(Json(json!({ "success": true })))
}

#[derive(Deserialize)]
struct RoleBody {
    role: String,
}

/// Gives a member a role (`member`, `moderator`, `admin`; room admins only). A weft
/// extension: Gitter had no API for it.
async fn set_role(
    State(state): State<AppState>,
    caller: Caller,
    Path((room_id, user_id)): Path<(String, String)>,
    Body(body): Body<RoleBody>,
) -> ApiResult<Json<Value>> {
    let role = weft_core::Role::parse(&body.role.to_ascii_lowercase())
        .ok_or_else(|| crate::ApiError::bad_request("role must be member, moderator or admin"))?;
    state
        .chat
        .set_role(
            &caller.0,
            parse_id(&room_id, "room id")?,
            parse_id(&user_id, "user id")?,
            role,
        )
        .await?;
    Ok(Json(json!({ "success": true, "role": role.as_str() })))
}
