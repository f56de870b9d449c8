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
        .route(
            "/rooms/{room_id}/virtualUsers",
            axum::routing::post(list_virtual),
        )
        .route(
            "/rooms/{room_id}/virtualUsers/{virtual_id}",
            delete(unlist_virtual),
        )
        .route("/rooms/{room_id}/bans", get(bans).post(ban))
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
            .views()
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
    let people = state
        .chat
        .room_people(
            &caller.0,
            parse_id(&room_id, "room id")?,
            query.q.as_deref().unwrap_or(""),
            query.limit.unwrap_or(30),
            query.skip.unwrap_or(0),
        )
        .await?;
    Ok(Json(Value::Array(
        people
            .iter()
            .map(|(person, role)| wire::room_person(person, *role))
            .collect(),
    )))
}

/// Lists somebody of a bridge's network among a room's members (bridge tokens only): for a
/// bridge whose room's membership is synced. Answers them as a member list shows them.
async fn list_virtual(
    State(state): State<AppState>,
    caller: Caller,
    Path(room_id): Path<String>,
    Body(body): Body<super::messages::VirtualUserBody>,
) -> ApiResult<Json<Value>> {
    let room_id = parse_id(&room_id, "room id")?;
    let person: weft_chat::PostAs = body.into();
    let (kind, external_id) = (person.kind.clone(), person.external_id.clone());
    let views = state.chat.views();
    let newly = state
        .chat
        .join_virtual(&caller.0, room_id, vec![person])
        .await?;
    if newly == 0
        && !views
            .virtual_member_ids(room_id, &kind)
            .await
            .map_err(weft_chat::ChatError::from)?
            .contains(&external_id)
    {
        return Err(
            weft_chat::ChatError::Forbidden("this person is banned from the room".into()).into(),
        );
    }
    let listed = views
        .virtual_user_by_external_id(&kind, &external_id)
        .await
        .map_err(weft_chat::ChatError::from)?
        .ok_or(weft_chat::ChatError::NotFound("user"))?;
    Ok(Json(wire::room_person(
        &weft_core::Profile::Virtual(listed),
        weft_core::Role::Member,
    )))
}

/// Takes somebody of a bridge's network off a room's members (bridge tokens only).
async fn unlist_virtual(
    State(state): State<AppState>,
    caller: Caller,
    Path((room_id, virtual_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let room_id = parse_id(&room_id, "room id")?;
    let person = state
        .chat
        .views()
        .virtual_user(parse_id(&virtual_id, "virtual user id")?)
        .await
        .map_err(weft_chat::ChatError::from)?
        .ok_or(weft_chat::ChatError::NotFound("user"))?;
    state
        .chat
        .leave_virtual(&caller.0, room_id, &person.kind, vec![person.external_id])
        .await?;
    Ok(Json(json!({ "success": true })))
}

#[derive(Deserialize, Default)]
struct ReasonQuery {
    reason: Option<String>,
}

/// Removes a member (a user id), or a Matrix user's virtual user (its id: the bridge
/// removes them from the Matrix room).
async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((room_id, user_id)): Path<(String, String)>,
    Query(query): Query<ReasonQuery>,
) -> ApiResult<Json<Value>> {
    let room_id = parse_id(&room_id, "room id")?;
    let user_id = parse_id(&user_id, "user id")?;
    let is_virtual = state
        .chat
        .views()
        .virtual_user(user_id)
        .await
        .map_err(weft_chat::ChatError::from)?
        .is_some();
    if is_virtual {
        state
            .chat
            .kick_virtual(&caller.0, room_id, user_id, query.reason)
            .await?;
    } else {
        state
            .chat
            .remove_member(&caller.0, room_id, user_id, query.reason)
            .await?;
    }
    Ok(Json(json!({ "success": true })))
}

#[derive(Deserialize)]
struct BanBody {
    username: String,
    reason: Option<String>,
}

/// A Matrix ID (`@localpart:server`), which names a Matrix user rather than a weft username.
fn matrix_id(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('@')?;
    let (local, server) = rest.split_once(':')?;
    (!local.is_empty() && !server.is_empty()).then_some(name)
}

/// The network name of Matrix users' virtual users (the bridge's `VIRTUAL_KIND`).
const MATRIX_KIND: &str = "matrix";

/// Bans a weft user by username, or a Matrix user by Matrix ID (whether weft has met them or
/// not).
async fn ban(
    State(state): State<AppState>,
    caller: Caller,
    Path(room_id): Path<String>,
    Body(body): Body<BanBody>,
) -> ApiResult<Json<Value>> {
    let room_id = parse_id(&room_id, "room id")?;
    if let Some(mxid) = matrix_id(&body.username) {
        let id = state
            .chat
            .ban_virtual(&caller.0, room_id, MATRIX_KIND, mxid, body.reason)
            .await?;
        let user = state
            .chat
            .views()
            .virtual_user(id)
            .await
            .map_err(weft_chat::ChatError::from)?
            .ok_or(weft_chat::ChatError::NotFound("user"))?;
        return Ok(Json(
            json!({ "success": true, "user": wire::virtual_as_user(&user) }),
        ));
    }
    let user = state.chat.user_by_username(&body.username).await?;
    state
        .chat
        .ban(&caller.0, room_id, user.id, body.reason)
        .await?;
    Ok(Json(json!({ "success": true, "user": wire::user(&user) })))
}

async fn unban(
    State(state): State<AppState>,
    caller: Caller,
    Path((room_id, username)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let room_id = parse_id(&room_id, "room id")?;
    if let Some(mxid) = matrix_id(&username) {
        let user = state
            .chat
            .views()
            .virtual_user_by_external_id(MATRIX_KIND, mxid)
            .await
            .map_err(weft_chat::ChatError::from)?
            .ok_or(weft_chat::ChatError::NotFound("ban"))?;
        state
            .chat
            .unban_virtual(&caller.0, room_id, user.id)
            .await?;
        return Ok(Json(json!({ "success": true })));
    }
    let user = state.chat.user_by_username(&username).await?;
    state.chat.unban(&caller.0, room_id, user.id).await?;
    Ok(Json(json!({ "success": true })))
}

/// The room's bans in Gitter's shape, Matrix users included (moderators only).
async fn bans(
    State(state): State<AppState>,
    caller: Caller,
    Path(room_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let room_id = parse_id(&room_id, "room id")?;
    let bans = state.chat.bans(&caller.0, room_id).await?;
    let mut out = Vec::with_capacity(bans.len());
    for ban in &bans {
        let banned_by = match ban.banned_by {
            Some(id) => state.chat.user(id).await.ok().map(|u| wire::user(&u)),
            None => None,
        };
        let user = match &ban.who {
            weft_core::Profile::User(u) => wire::user(u),
            weft_core::Profile::Virtual(v) => wire::virtual_as_user(v),
        };
        out.push(json!({
            "user": user,
            "bannedBy": banned_by,
            "dateBanned": weft_core::iso8601(ban.banned_at),
            "reason": ban.reason,
        }));
    }
    Ok(Json(Value::Array(out)))
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
