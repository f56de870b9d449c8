//! Gitter's JSON shapes: how weft's records look on the wire, so that existing Gitter bots
//! and client libraries read them unchanged.

use serde_json::{Value, json};
use weft_chat::RoomSummary;
use weft_core::{
    Group, Message, MessageView, Profile, ReactionCount, Role, Room, RoomKind, User, VirtualUser,
    iso8601,
};

/// A user as Gitter showed one.
pub fn user(u: &User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "displayName": u.display_name,
        "url": format!("/{}", u.username),
        "avatarUrl": avatar(&u.avatar_url, &u.username),
        "avatarUrlSmall": avatar(&u.avatar_url, &u.username),
        "avatarUrlMedium": avatar(&u.avatar_url, &u.username),
        "v": 1,
    })
}

/// A user with their role in a room (room member lists).
pub fn member(u: &User, role: Role) -> Value {
    let mut v = user(u);
    v["role"] = json!(role.as_str());
    v
}

/// Anyone in a room with their role: a weft member, or somebody from another network
/// (`virtual: true`, `badge` naming the network).
pub fn room_person(p: &Profile, role: Role) -> Value {
    match p {
        Profile::User(u) => member(u, role),
        Profile::Virtual(v) => {
            let mut out = virtual_as_user(v);
            out["role"] = json!(role.as_str());
            out
        }
    }
}

fn avatar(url: &Option<String>, name: &str) -> String {
    url.clone().unwrap_or_else(|| format!("/avatars/{name}"))
}

/// A virtual user in Gitter's `virtualUser` shape.
pub fn virtual_user(v: &VirtualUser) -> Value {
    json!({
        "type": v.kind,
        "externalId": v.external_id,
        "displayName": v.display_name,
        "avatarUrl": v.avatar_url,
    })
}

/// A virtual user where Gitter shows a user: standing in `fromUser`, so clients that only
/// read `fromUser` still show who wrote the message, and in ban lists.
pub fn virtual_as_user(v: &VirtualUser) -> Value {
    json!({
        "id": v.id,
        "username": v.external_id,
        "displayName": v.display_name,
        "url": null,
        "avatarUrl": v.avatar_url,
        "avatarUrlSmall": v.avatar_url,
        "avatarUrlMedium": v.avatar_url,
        "virtual": true,
        "badge": v.kind,
        "v": 1,
    })
}

/// Reaction counts as weft shows them (Gitter had none).
pub fn reactions(list: &[ReactionCount]) -> Value {
    Value::Array(
        list.iter()
            .map(|r| json!({ "emoji": r.emoji, "count": r.count, "me": r.me }))
            .collect(),
    )
}

/// A message as Gitter showed one; `last_read_seq` (the viewer's read mark) sets `unread`.
pub fn message(view: &MessageView, viewer: Option<&User>, last_read_seq: Option<i64>) -> Value {
    let m: &Message = &view.message;
    let mine = viewer.is_some_and(|u| weft_core::Author::User(u.id) == m.author);
    let unread = matches!(last_read_seq, Some(seq) if m.seq > seq) && !mine;
    let (from_user, virtual_user_json) = match &view.author {
        Some(Profile::User(u)) => (user(u), Value::Null),
        Some(Profile::Virtual(v)) => (virtual_as_user(v), virtual_user(v)),
        None => (Value::Null, Value::Null),
    };
    let mut out = json!({
        "id": m.id,
        "text": m.text,
        "html": m.html,
        "sent": iso8601(m.sent),
        "editedAt": m.edited_at.map(iso8601),
        "fromUser": from_user,
        "unread": unread,
        "readBy": m.read_by,
        "urls": m.urls.iter().map(|u| json!({ "url": u })).collect::<Vec<_>>(),
        "mentions": m.mentions.iter().map(|x| {
            let mut v = json!({ "screenName": x.screen_name });
            if let Some(id) = x.user_id {
                v["userId"] = json!(id);
                v["userIds"] = json!([id]);
            }
            if x.all {
                v["group"] = json!(true);
            }
            v
        }).collect::<Vec<_>>(),
        "issues": m.issues.iter().map(|i| {
            let mut v = json!({ "number": i.number.to_string() });
            if let Some(repo) = &i.repo {
                v["repo"] = json!(repo);
            }
            v
        }).collect::<Vec<_>>(),
        "meta": [],
        "v": m.version,
        "status": m.status,
        "threadMessageCount": m.thread_count,
        "reactions": reactions(&m.reactions),
        "attachments": m.attachments.iter().map(|a| json!({
            "id": a.file_id,
            "name": a.name,
            "mimeType": a.content_type,
            "size": a.size,
            "url": weft_chat::file_url(a.file_id, &a.name),
        })).collect::<Vec<_>>(),
    });
    if let Some(parent) = m.parent_id {
        out["parentId"] = json!(parent);
    }
    if !virtual_user_json.is_null() {
        out["virtualUser"] = virtual_user_json;
    }
    if m.deleted {
        out["deleted"] = json!(true);
    }
    if let Some(mark) = &m.undelivered {
        out["undelivered"] = json!({ "network": mark.network, "reason": mark.reason });
    }
    out
}

fn security(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::Public => "PUBLIC",
        RoomKind::Private => "PRIVATE",
        RoomKind::OneToOne => "PRIVATE",
    }
}

/// A room without viewer-specific fields.
pub fn room(r: &Room) -> Value {
    json!({
        "id": r.id,
        "name": r.uri.clone().unwrap_or_else(|| r.name.clone()),
        // Not Gitter's: the room's own name (Gitter's `name` is its URI), which is the
        // Matrix room's name too.
        "displayName": r.name,
        "topic": r.topic,
        "avatarUrl": r.avatar_url,
        "uri": r.uri,
        "oneToOne": r.kind == RoomKind::OneToOne,
        "userCount": r.member_count,
        "url": r.uri.as_ref().map(|u| format!("/{u}")),
        "githubType": if r.kind == RoomKind::OneToOne { "ONETOONE" } else { "ORG_CHANNEL" },
        "security": security(r.kind),
        "public": r.kind == RoomKind::Public,
        "noindex": r.noindex,
        "groupId": r.group_id,
        "tags": [],
        "v": 1,
    })
}

/// A room in the caller's room list, with unread counts and the other person of a
/// one-to-one room.
pub fn room_summary(s: &RoomSummary) -> Value {
    let mut v = room(&s.room);
    v["unreadItems"] = json!(s.unread);
    v["mentions"] = json!(s.mentions);
    v["roomMember"] = json!(true);
    v["favourite"] = if s.membership.favourite {
        json!(1)
    } else {
        Value::Null
    };
    v["lurk"] = json!(false);
    v["lastAccessTime"] = json!(iso8601(s.membership.joined_at));
    v["role"] = json!(s.membership.role.as_str());
    if let Some(other) = &s.other_user {
        v["name"] = json!(other.display_name);
        v["url"] = json!(format!("/{}", other.username));
        v["user"] = user(other);
    }
    v
}

/// A community in Gitter's group shape.
pub fn group(g: &Group) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "uri": g.uri,
        "homeUri": format!("{}/home", g.uri),
        "backedBy": { "type": null },
        "avatarUrl": g.avatar_url,
    })
}
