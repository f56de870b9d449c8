//! `/user`: the caller, their rooms and unread items.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use weft_core::Id;

use crate::extract::{Body, Caller, Path, Query, parse_id};
use crate::{ApiError, ApiResult, AppState, wire};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/user", get(list_me))
        .route("/user/me", get(me).patch(update_me))
        .route("/user/{user_id}/rooms", get(rooms).post(join_room))
        .route(
            "/user/{user_id}/rooms/{room_id}",
            axum::routing::put(update_room_settings).delete(leave),
        )
        .route(
            "/user/{user_id}/rooms/{room_id}/unreadItems",
            get(unread_items).post(mark_read),
        )
        .route(
            "/user/{user_id}/rooms/{room_id}/unreadItems/all",
            delete(mark_all_read),
        )
        .route("/users/{username}", get(user_by_name))
}

/// `me` in a path means the caller, as Gitter allowed.
fn own_id(caller: &Caller, user_id: &str) -> ApiResult<Id> {
    let me = caller.0.require_user()?.id;
    let id = if user_id == "me" {
        me
    } else {
        parse_id(user_id, "user id")?
    };
    if id != me && !caller.0.user.as_ref().is_some_and(|u| u.site_admin) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "you may only act for yourself",
        ));
    }
    Ok(id)
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
    limit: Option<i64>,
    skip: Option<i64>,
}

/// The caller as an array of one, as Gitter answered; with `q`, a user search
/// (`{results: [...]}`, `limit` 1–100, default 30, and `skip`).
async fn list_me(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<SearchQuery>,
) -> ApiResult<Json<Value>> {
    let Some(q) = query.q else {
        return Ok(Json(json!([wire::user(caller.0.require_user()?)])));
    };
    let users = state
        .chat
        .find_users(
            &caller.0,
            &q,
            query.limit.unwrap_or(30),
            query.skip.unwrap_or(0),
        )
        .await?;
    Ok(Json(
        json!({ "results": users.iter().map(wire::user).collect::<Vec<_>>() }),
    ))
}

async fn me(caller: Caller) -> ApiResult<Json<Value>> {
    Ok(Json(wire::user(caller.0.require_user()?)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileBody {
    display_name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    avatar_url: Option<Option<String>>,
}

/// Distinguishes a missing field (`None`) from an explicit `null` (`Some(None)`).
pub(crate) fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

async fn update_me(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<ProfileBody>,
) -> ApiResult<Json<Value>> {
    let user = state
        .chat
        .update_profile(&caller.0, body.display_name, body.avatar_url)
        .await?;
    Ok(Json(wire::user(&user)))
}

async fn user_by_name(
    State(state): State<AppState>,
    _caller: Caller,
    Path(username): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(wire::user(
        &state.chat.user_by_username(&username).await?,
    )))
}

async fn rooms(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = own_id(&caller, &user_id)?;
    let list = state.chat.rooms_of(&caller.0, id).await?;
    Ok(Json(Value::Array(
        list.iter().map(wire::room_summary).collect(),
    )))
}

#[derive(Deserialize)]
struct JoinBody {
    id: String,
}

async fn join_room(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    Body(body): Body<JoinBody>,
) -> ApiResult<Json<Value>> {
    own_id(&caller, &user_id)?;
    let room = state
        .chat
        .join(&caller.0, parse_id(&body.id, "room id")?)
        .await?;
    Ok(Json(wire::room(&room)))
}

#[derive(Deserialize)]
struct RoomSettingsBody {
    favourite: Option<Value>,
}

async fn update_room_settings(
    State(state): State<AppState>,
    caller: Caller,
    Path((user_id, room_id)): Path<(String, String)>,
    Body(body): Body<RoomSettingsBody>,
) -> ApiResult<Json<Value>> {
    own_id(&caller, &user_id)?;
    let room_id = parse_id(&room_id, "room id")?;
    if let Some(fav) = body.favourite {
        let on = match fav {
            Value::Bool(b) => b,
            Value::Number(n) => n.as_i64().unwrap_or(0) != 0,
            Value::Null => false,
            Value::String(s) => !s.is_empty() && s != "0" && s != "false",
            _ => {
                return Err(ApiError::bad_request(
                    "favourite must be a boolean or a number",
                ));
            }
        };
        state.chat.set_favourite(&caller.0, room_id, on).await?;
    }
    Ok(Json(json!({ "success": true })))
}

async fn leave(
    State(state): State<AppState>,
    caller: Caller,
    Path((user_id, room_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let id = own_id(&caller, &user_id)?;
    state
        .chat
        .remove_member(&caller.0, parse_id(&room_id, "room id")?, id, None)
        .await?;
    Ok(Json(json!({ "success": true })))
}

async fn unread_items(
    State(state): State<AppState>,
    caller: Caller,
    Path((user_id, room_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    own_id(&caller, &user_id)?;
    let items = state
        .chat
        .unread_items(&caller.0, parse_id(&room_id, "room id")?)
        .await?;
    Ok(Json(
        json!({ "chat": items.chat, "mention": items.mention }),
    ))
}

#[derive(Deserialize)]
struct MarkReadBody {
    chat: Vec<String>,
}

async fn mark_read(
    State(state): State<AppState>,
    caller: Caller,
    Path((user_id, room_id)): Path<(String, String)>,
    Body(body): Body<MarkReadBody>,
) -> ApiResult<Json<Value>> {
    own_id(&caller, &user_id)?;
    let ids = body
        .chat
        .iter()
        .map(|id| parse_id(id, "message id"))
        .collect::<ApiResult<Vec<Id>>>()?;
    state
        .chat
        .mark_read(&caller.0, parse_id(&room_id, "room id")?, &ids)
        .await?;
    Ok(Json(json!({ "success": true })))
}

async fn mark_all_read(
    State(state): State<AppState>,
    caller: Caller,
    Path((user_id, room_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    own_id(&caller, &user_id)?;
    state
        .chat
        .mark_all_read(&caller.0, parse_id(&room_id, "room id")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
