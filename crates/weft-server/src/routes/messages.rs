//! `/rooms/:roomId/chatMessages`: the timeline, threads, edits, deletes, reactions, uploads.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use weft_chat::{Actor, MessageQuery, MessageRef, NewPost, PostAs, Upload};
use weft_core::{Id, MessageView, Profile};

use crate::extract::{Body, Caller, MaybeCaller, Path, Query, parse_id};
use crate::{ApiError, ApiResult, AppState, wire};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rooms/{room_id}/chatMessages", get(list).post(create))
        .route(
            "/rooms/{room_id}/chatMessages/{message_id}",
            get(one).put(edit).delete(remove),
        )
        .route(
            "/rooms/{room_id}/chatMessages/{message_id}/thread",
            get(thread),
        )
        .route(
            "/rooms/{room_id}/chatMessages/{message_id}/readBy",
            get(read_by),
        )
        .route(
            "/rooms/{room_id}/chatMessages/{message_id}/reactions",
            get(reactions).post(react),
        )
        .route(
            "/rooms/{room_id}/chatMessages/{message_id}/reactions/{emoji}",
            delete(unreact),
        )
        .route("/rooms/{room_id}/files", post(upload))
        .route("/rooms/{room_id}/typing", post(typing))
}

/// Renders messages for the caller, marking what they have not read.
async fn render(
    state: &AppState,
    actor: &Actor,
    room_id: Id,
    views: &[MessageView],
) -> ApiResult<Vec<Value>> {
    let last_read = match &actor.user {
        Some(u) => state
            .chat
            .views()
            .membership(room_id, u.id)
            .await
            .map_err(weft_chat::ChatError::from)?
            .map(|m| m.last_read_seq),
        None => None,
    };
    Ok(views
        .iter()
        .map(|v| wire::message(v, actor.user.as_ref(), last_read))
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    limit: Option<i64>,
    before_id: Option<String>,
    after_id: Option<String>,
    around_id: Option<String>,
    q: Option<String>,
    include_threads: Option<bool>,
    lookups: Option<String>,
}

fn opt_id(text: Option<&String>, what: &str) -> ApiResult<Option<Id>> {
    text.filter(|t| !t.is_empty())
        .map(|t| parse_id(t, what))
        .transpose()
}

async fn list(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(room_id): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let room_id = parse_id(&room_id, "room id")?;
    let q = MessageQuery {
        limit: query.limit,
        before_id: opt_id(query.before_id.as_ref(), "beforeId")?,
        after_id: opt_id(query.after_id.as_ref(), "afterId")?,
        around_id: opt_id(query.around_id.as_ref(), "aroundId")?,
        q: query.q,
        include_threads: query.include_threads.unwrap_or(false),
    };
    let views = state.chat.messages(&caller.0, room_id, q).await?;
    let items = render(&state, &caller.0, room_id, &views).await?;
    if query.lookups.as_deref() == Some("user") {
        // Gitter's lookups=user: authors listed once in `lookups.users`, messages refer by id.
        let mut users = serde_json::Map::new();
        let items: Vec<Value> = items
            .into_iter()
            .map(|mut item| {
                if let Some(id) = item["fromUser"]["id"].as_str().map(str::to_string) {
                    users.insert(id.clone(), item["fromUser"].take());
                    item["fromUser"] = json!(id);
                }
                item
            })
            .collect();
        return Ok(Json(
            json!({ "items": items, "lookups": { "users": users } }),
        ));
    }
    Ok(Json(Value::Array(items)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct VirtualUserBody {
    #[serde(rename = "type")]
    kind: String,
    external_id: String,
    display_name: String,
    avatar_url: Option<String>,
}

impl From<VirtualUserBody> for PostAs {
    fn from(v: VirtualUserBody) -> Self {
        PostAs {
            kind: v.kind,
            external_id: v.external_id,
            display_name: v.display_name,
            avatar_url: v.avatar_url,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    text: String,
    #[serde(default)]
    status: bool,
    parent_id: Option<String>,
    virtual_user: Option<VirtualUserBody>,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(room_id): Path<String>,
    Body(body): Body<CreateBody>,
) -> ApiResult<Json<Value>> {
    let room_id = parse_id(&room_id, "room id")?;
    let post = NewPost {
        text: body.text,
        status: body.status,
        parent: opt_id(body.parent_id.as_ref(), "parentId")?.map(MessageRef::Stored),
        as_virtual: body.virtual_user.map(PostAs::from),
        ..NewPost::default()
    };
    let view = state.chat.post(&caller.0, room_id, post).await?;
    Ok(Json(wire::message(&view, caller.0.user.as_ref(), None)))
}

fn ids(room_id: &str, message_id: &str) -> ApiResult<(Id, Id)> {
    Ok((
        parse_id(room_id, "room id")?,
        parse_id(message_id, "message id")?,
    ))
}

async fn one(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((room_id, message_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (room_id, message_id) = ids(&room_id, &message_id)?;
    let view = state.chat.message(&caller.0, room_id, message_id).await?;
    let mut rendered = render(&state, &caller.0, room_id, std::slice::from_ref(&view)).await?;
    Ok(Json(rendered.pop().unwrap_or(Value::Null)))
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<i64>,
    skip: Option<i64>,
}

/// Gitter's `readBy` list: the people who have read the message (`limit` 1–100, default 100,
/// and `skip`), as many as its `readBy` count says; Matrix users whose read receipts reached
/// weft among them, shaped as Matrix users are in `fromUser`.
async fn read_by(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((room_id, message_id)): Path<(String, String)>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let (room_id, message_id) = ids(&room_id, &message_id)?;
    let users = state
        .chat
        .readers(
            &caller.0,
            room_id,
            message_id,
            page.limit.unwrap_or(weft_chat::PEOPLE_PAGE_MAX),
            page.skip.unwrap_or(0),
        )
        .await?;
    Ok(Json(Value::Array(
        users
            .iter()
            .map(|reader| match reader {
                Profile::User(u) => wire::user(u),
                Profile::Virtual(v) => wire::virtual_as_user(v),
            })
            .collect(),
    )))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EditBody {
    text: String,
    virtual_user: Option<VirtualUserBody>,
}

async fn edit(
    State(state): State<AppState>,
    caller: Caller,
    Path((room_id, message_id)): Path<(String, String)>,
    Body(body): Body<EditBody>,
) -> ApiResult<Json<Value>> {
    let (room_id, message_id) = ids(&room_id, &message_id)?;
    let view = state
        .chat
        .edit(
            &caller.0,
            room_id,
            message_id,
            &body.text,
            body.virtual_user.map(PostAs::from),
        )
        .await?;
    Ok(Json(wire::message(&view, caller.0.user.as_ref(), None)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AsVirtualQuery {
    virtual_type: Option<String>,
    virtual_external_id: Option<String>,
    /// Why a moderator deletes the message (a weft extension; bridges pass it on).
    reason: Option<String>,
}

impl AsVirtualQuery {
    fn post_as(self) -> Option<PostAs> {
        Some(PostAs {
            kind: self.virtual_type?,
            external_id: self.virtual_external_id?,
            display_name: String::new(),
            avatar_url: None,
        })
    }
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((room_id, message_id)): Path<(String, String)>,
    Query(as_virtual): Query<AsVirtualQuery>,
) -> ApiResult<StatusCode> {
    let (room_id, message_id) = ids(&room_id, &message_id)?;
    let reason = as_virtual.reason.clone();
    state
        .chat
        .delete(&caller.0, room_id, message_id, as_virtual.post_as(), reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ThreadQuery {
    limit: Option<i64>,
}

async fn thread(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((room_id, message_id)): Path<(String, String)>,
    Query(query): Query<ThreadQuery>,
) -> ApiResult<Json<Value>> {
    let (room_id, message_id) = ids(&room_id, &message_id)?;
    let replies = state
        .chat
        .thread(&caller.0, room_id, message_id, query.limit.unwrap_or(100))
        .await?;
    Ok(Json(Value::Array(
        render(&state, &caller.0, room_id, &replies).await?,
    )))
}

async fn reactions(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((room_id, message_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (room_id, message_id) = ids(&room_id, &message_id)?;
    let view = state.chat.message(&caller.0, room_id, message_id).await?;
    Ok(Json(wire::reactions(&view.message.reactions)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReactBody {
    emoji: String,
    virtual_user: Option<VirtualUserBody>,
}

async fn react(
    State(state): State<AppState>,
    caller: Caller,
    Path((room_id, message_id)): Path<(String, String)>,
    Body(body): Body<ReactBody>,
) -> ApiResult<Json<Value>> {
    let (room_id, message_id) = ids(&room_id, &message_id)?;
    let view = state
        .chat
        .react(
            &caller.0,
            room_id,
            message_id,
            &body.emoji,
            true,
            body.virtual_user.map(PostAs::from),
        )
        .await?;
    Ok(Json(wire::reactions(&view.message.reactions)))
}

async fn unreact(
    State(state): State<AppState>,
    caller: Caller,
    Path((room_id, message_id, emoji)): Path<(String, String, String)>,
    Query(as_virtual): Query<AsVirtualQuery>,
) -> ApiResult<Json<Value>> {
    let (room_id, message_id) = ids(&room_id, &message_id)?;
    let view = state
        .chat
        .react(
            &caller.0,
            room_id,
            message_id,
            &emoji,
            false,
            as_virtual.post_as(),
        )
        .await?;
    Ok(Json(wire::reactions(&view.message.reactions)))
}

/// `multipart/form-data` with a `file` part, and optionally `text` (caption) and `parentId`.
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(room_id): Path<String>,
    form: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<Value>> {
    let room_id = parse_id(&room_id, "room id")?;
    let mut form = form.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let (mut file, mut caption, mut parent) = (None, None, None);
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            "file" => {
                let name = field.file_name().unwrap_or("file").to_string();
                let content_type = field
                    .content_type()
                    .unwrap_or("application/octet-stream")
                    .to_string();
                let bytes = field.bytes().await.map_err(multipart_error)?;
                file = Some(Upload {
                    name,
                    content_type,
                    bytes,
                });
            }
            "text" => caption = Some(field.text().await.map_err(multipart_error)?),
            "parentId" => parent = Some(field.text().await.map_err(multipart_error)?),
            _ => {}
        }
    }
    let file = file.ok_or_else(|| ApiError::bad_request("the upload needs a part named 'file'"))?;
    let parent_id = opt_id(parent.as_ref(), "parentId")?;
    let view = state
        .chat
        .upload(&caller.0, room_id, file, caption, parent_id)
        .await?;
    Ok(Json(wire::message(&view, caller.0.user.as_ref(), None)))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "file is too large")
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid multipart body: {}", e.body_text()),
        )
    }
}

async fn typing(
    State(state): State<AppState>,
    caller: Caller,
    Path(room_id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .chat
        .typing(&caller.0, parse_id(&room_id, "room id")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
