//! The room directory and the room page: the last messages already in the HTML, the room
//! list of a signed-in user, and the data the script needs to go live from exactly there.

use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use weft_chat::{ChatError, MessageQuery};
use weft_core::{Id, Role, Room, RoomKind};

use super::html::{self, Head, esc};
use super::{not_found, page, viewer};
use crate::AppState;

/// How many messages a page shows at first and loads per scroll.
const PAGE: i64 = 50;

#[derive(Deserialize)]
pub struct DirectoryQuery {
    q: Option<String>,
}

/// `/`: public rooms, busiest first, with a search box; a signed-in user's rooms above.
pub async fn directory(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<DirectoryQuery>,
) -> Response {
    let actor = viewer(&state, &headers).await;
    let q = query.q.unwrap_or_default();
    let mut content = String::from("<main id=\"main\" class=\"narrow directory\">");
    if let Some(user) = &actor.user
        && let Ok(mine) = state.chat.rooms_of(&actor, user.id).await
        && !mine.is_empty()
    {
        content.push_str("<section><h2>Your rooms</h2><ul class=\"room-cards\">");
        for s in &mine {
            room_card(&mut content, &s.room, Some((s.unread, s.mentions)));
        }
        content.push_str("</ul></section>");
    }
    let _ = write!(
        content,
        "<section><h1>Rooms</h1><form class=\"search\" method=\"get\" action=\"/\" role=\"search\">\
         <label for=\"room-search\" class=\"visually-hidden\">Search rooms</label>\
         <input id=\"room-search\" type=\"search\" name=\"q\" value=\"{}\" placeholder=\"Search public rooms\">\
         <button type=\"submit\">Search</button></form>",
        esc(&q)
    );
    match state.chat.views().public_rooms(q.trim(), 100, 0).await {
        Ok(rooms) if rooms.is_empty() => content.push_str("<p class=\"empty\">No rooms found.</p>"),
        Ok(rooms) => {
            content.push_str("<ul class=\"room-cards\" id=\"directory\">");
            for room in &rooms {
                room_card(&mut content, room, None);
            }
            content.push_str("</ul>");
        }
        Err(e) => {
            tracing::error!(error = %e, "listing public rooms failed");
            content.push_str("<p class=\"error\">Rooms could not be listed just now.</p>");
        }
    }
    content.push_str("</section></main>");
    let mut head = Head::new("Rooms");
    head.description = Some("Developer community chat rooms".into());
    page(StatusCode::OK, html::layout(&head, &actor, &content))
}

fn room_card(out: &mut String, room: &Room, counts: Option<(i64, i64)>) {
    let Some(uri) = &room.uri else {
        return;
    };
    let _ = write!(
        out,
        "<li class=\"room-card\"><a href=\"/{path}\"><span class=\"room-name\">{name}</span> \
         <span class=\"room-uri\">{uri}</span></a>",
        path = esc(&html::path(uri)),
        name = esc(&room.name),
        uri = esc(uri),
    );
    if let Some((unread, mentions)) = counts {
        if mentions > 0 {
            let _ = write!(out, " <span class=\"mentions\">@{mentions}</span>");
        }
        if unread > 0 {
            let _ = write!(out, " <span class=\"unread\">{unread}</span>");
        }
    }
    let _ = write!(
        out,
        "<p class=\"topic\">{}</p><p class=\"members\">{} members{}</p></li>",
        esc(&room.topic),
        room.member_count,
        if room.kind == RoomKind::Private {
            " · private"
        } else {
            ""
        }
    );
}

#[derive(Deserialize)]
pub struct RoomQuery {
    at: Option<String>,
}

/// `/{community}/{room}`: the room with its last messages (or those around `?at=`), ready to
/// go live. Private rooms are not found for anyone who may not read them.
pub async fn room_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((community, room_name)): Path<(String, String)>,
    Query(query): Query<RoomQuery>,
) -> Response {
    let actor = viewer(&state, &headers).await;
    let uri = format!("{community}/{room_name}");
    let room = match state.chat.room_by_uri(&actor, &uri).await {
        Ok(room) => room,
        Err(ChatError::NotFound(_) | ChatError::Forbidden(_)) => {
            return not_found(&actor, &headers);
        }
        Err(e) => return server_error(&actor, e),
    };
    let address = Address {
        base: format!("/{}", html::path(&uri)),
        label: uri.clone(),
        name: room.name.clone(),
        uri,
    };
    show_room(&state, actor, room, address, query).await
}

/// `/-/dm/{room_id}`: a one-to-one room, which has no URI. Only its two members may see it;
/// anyone else gets the same "not found" as for a room that does not exist.
pub async fn one_to_one_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(room_id): Path<String>,
    Query(query): Query<RoomQuery>,
) -> Response {
    let actor = viewer(&state, &headers).await;
    let (Some(user), Ok(room_id)) = (&actor.user, room_id.parse::<Id>()) else {
        return not_found(&actor, &headers);
    };
    let room = match state.chat.room(&actor, room_id).await {
        Ok(room) if room.kind == RoomKind::OneToOne => room,
        Ok(_) | Err(ChatError::NotFound(_) | ChatError::Forbidden(_)) => {
            return not_found(&actor, &headers);
        }
        Err(e) => return server_error(&actor, e),
    };
    match state.chat.views().membership(room.id, user.id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(&actor, &headers),
        Err(e) => return server_error(&actor, e.into()),
    }
    let other = match state.chat.members(&actor, room.id, "", 2, 0).await {
        Ok(members) => members
            .into_iter()
            .map(|(u, _)| u)
            .find(|u| u.id != user.id),
        Err(e) => return server_error(&actor, e),
    };
    let (label, name) = match &other {
        Some(o) => (format!("@{}", o.username), o.display_name.clone()),
        None => (String::new(), room.name.clone()),
    };
    let address = Address {
        base: format!("/-/dm/{}", room.id),
        uri: label.clone(),
        label,
        name,
    };
    show_room(&state, actor, room, address, query).await
}

/// How a room page names and addresses its room: `community/room`, or the other person of a
/// one-to-one room.
struct Address {
    /// The page's path, for permalinks.
    base: String,
    /// What the header shows under the name.
    label: String,
    /// The room's name (the other person's, one to one).
    name: String,
    /// The room URI (joining uses it).
    uri: String,
}

async fn show_room(
    state: &AppState,
    actor: weft_chat::Actor,
    room: Room,
    address: Address,
    query: RoomQuery,
) -> Response {
    let Address {
        base,
        label,
        name: room_name,
        uri,
    } = address;
    let at: Option<Id> = query.at.as_deref().and_then(|a| a.parse().ok());
    // The event log position before loading: the feed resumes from here, so a message
    // committed while the page renders arrives over the WebSocket instead of going missing.
    let seq = match state.chat.views().last_event_seq().await {
        Ok(seq) => seq,
        Err(e) => return server_error(&actor, e.into()),
    };
    let load = |around: Option<Id>| MessageQuery {
        limit: Some(PAGE),
        around_id: around,
        ..MessageQuery::default()
    };
    let (messages, highlight) = match state.chat.messages(&actor, room.id, load(at)).await {
        Ok(list) => (list, at),
        // A permalink to a message that is gone: show the room as it is now.
        Err(ChatError::NotFound(_)) if at.is_some() => {
            match state.chat.messages(&actor, room.id, load(None)).await {
                Ok(list) => (list, None),
                Err(e) => return server_error(&actor, e),
            }
        }
        Err(e) => return server_error(&actor, e),
    };
    let at_end = match (highlight, messages.last()) {
        (Some(_), Some(last)) => {
            let after = MessageQuery {
                limit: Some(1),
                after_id: Some(last.message.id),
                ..MessageQuery::default()
            };
            state
                .chat
                .messages(&actor, room.id, after)
                .await
                .map(|l| l.is_empty())
                .unwrap_or(true)
        }
        _ => true,
    };
    let has_older = if highlight.is_some() {
        !messages.is_empty()
    } else {
        messages.len() as i64 >= PAGE
    };
    let membership = match &actor.user {
        Some(user) => state
            .chat
            .views()
            .membership(room.id, user.id)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let one_to_one = room.kind == RoomKind::OneToOne;
    let is_admin = !one_to_one
        && (membership.as_ref().is_some_and(|m| m.role == Role::Admin)
            || actor.user.as_ref().is_some_and(|u| u.site_admin));
    let is_moderator = is_admin
        || (!one_to_one
            && membership
                .as_ref()
                .is_some_and(|m| m.role >= Role::Moderator));
    let matrix_server = state
        .config
        .matrix_server_name
        .as_deref()
        // The bridge resolves aliases of public rooms only.
        .filter(|_| room.kind == RoomKind::Public);

    let mut content = String::with_capacity(64 * 1024);
    content.push_str("<div class=\"layout\">");
    if let Some(user) = &actor.user {
        content.push_str(
            "<nav class=\"sidebar\" id=\"sidebar\" aria-label=\"Your rooms\"><h2>Your rooms</h2><ul id=\"room-list\">",
        );
        if let Ok(mine) = state.chat.rooms_of(&actor, user.id).await {
            for s in &mine {
                let (href, r_label) = match (&s.room.uri, &s.other_user) {
                    (Some(r_uri), _) => (format!("/{}", html::path(r_uri)), r_uri.clone()),
                    (None, Some(other)) => {
                        (format!("/-/dm/{}", s.room.id), other.display_name.clone())
                    }
                    (None, None) => continue,
                };
                let current = s.room.id == room.id;
                let _ = write!(
                    content,
                    "<li data-room-id=\"{id}\"{cur}{fav}{dm}><a href=\"{path}\"{aria}>{name}</a>{mentions}{unread}</li>",
                    id = s.room.id,
                    cur = if current { " class=\"current\"" } else { "" },
                    fav = if s.membership.favourite {
                        " data-favourite=\"true\""
                    } else {
                        ""
                    },
                    aria = if current {
                        " aria-current=\"page\""
                    } else {
                        ""
                    },
                    dm = if s.other_user.is_some() {
                        " data-one-to-one=\"true\""
                    } else {
                        ""
                    },
                    path = esc(&href),
                    name = esc(&r_label),
                    mentions = if s.mentions > 0 && !current {
                        format!("<span class=\"mentions\">@{}</span>", s.mentions)
                    } else {
                        String::new()
                    },
                    unread = if s.unread > 0 && !current {
                        format!("<span class=\"unread\">{}</span>", s.unread)
                    } else {
                        String::new()
                    },
                );
            }
        }
        content.push_str("</ul><p><a href=\"/\">Find more rooms</a></p></nav>");
    }
    let _ = write!(
        content,
        "<main id=\"main\" class=\"room\"><header class=\"room-head\">{toggle}\
         <img class=\"room-avatar\" id=\"room-avatar\" alt=\"\" width=\"32\" height=\"32\"{avatar}>\
         <div class=\"room-title\"><h1 id=\"room-name\">{name}</h1><span class=\"room-uri\">{uri}</span>\
         <p class=\"topic\" id=\"room-topic\">{topic}</p></div>\
         <div class=\"room-actions\">{star}<button type=\"button\" class=\"link members\" id=\"members-toggle\" \
         aria-controls=\"members\" aria-expanded=\"false\"><span id=\"member-count\">{count}</span> members</button>\
         {archives}{settings}",
        archives = if one_to_one {
            String::new()
        } else {
            format!(" <a href=\"{}/archives\">Archives</a>", esc(&base))
        },
        star = match &membership {
            Some(m) => format!(
                "<button type=\"button\" class=\"star\" id=\"favourite\" aria-pressed=\"{on}\" title=\"Favourite\" aria-label=\"Favourite\">{glyph}</button>",
                on = m.favourite,
                glyph = if m.favourite { "★" } else { "☆" },
            ),
            None => String::new(),
        },
        settings = if is_admin {
            " <button type=\"button\" id=\"room-settings\" class=\"secondary\">Settings</button>"
        } else {
            ""
        },
        toggle = if actor.user.is_some() {
            "<button type=\"button\" class=\"menu-toggle\" id=\"menu-toggle\" aria-controls=\"sidebar\" aria-expanded=\"false\" title=\"Your rooms\">☰</button>"
        } else {
            ""
        },
        name = esc(&room_name),
        uri = esc(&label),
        topic = esc(&room.topic),
        count = room.member_count,
        avatar = match &room.avatar_url {
            Some(url) => format!(" src=\"{}\"", esc(url)),
            None => " hidden".to_string(),
        },
    );
    if actor.user.is_some() && membership.is_some() && room.kind != RoomKind::OneToOne {
        content
            .push_str(" <button type=\"button\" id=\"leave\" class=\"secondary\">Leave</button>");
    }
    content.push_str("</div></header>");
    if has_older {
        content.push_str("<div class=\"older\" id=\"older\"><button type=\"button\" id=\"load-older\" class=\"link\">Load older messages</button></div>");
    }
    content.push_str("<ol class=\"messages\" id=\"messages\" aria-live=\"polite\" tabindex=\"0\" aria-label=\"Messages\">");
    for view in &messages {
        content.push_str(&html::message(
            view,
            &base,
            highlight == Some(view.message.id),
        ));
    }
    content.push_str("</ol>");
    if messages.is_empty() {
        content.push_str("<p class=\"empty\" id=\"empty\">No messages yet.</p>");
    }
    if !at_end {
        let _ = write!(
            content,
            "<div class=\"newer\"><a href=\"{}\">Jump to the latest messages</a></div>",
            esc(&base)
        );
    }
    content.push_str("<div class=\"typing\" id=\"typing\" aria-live=\"polite\"></div>");
    match (&actor.user, &membership) {
        (Some(_), Some(_)) => content.push_str(
            "<form class=\"composer\" id=\"composer\"><label for=\"compose\" class=\"visually-hidden\">Message</label>\
             <textarea id=\"compose\" rows=\"1\" placeholder=\"Write a message…\" title=\"Enter sends, Shift+Enter adds a line, ↑ edits your last message\" autocomplete=\"off\"></textarea>\
             <label class=\"upload\" title=\"Upload a file\"><span aria-hidden=\"true\">📎</span><span class=\"visually-hidden\">Upload a file</span><input type=\"file\" id=\"file-input\"></label>\
             <button type=\"submit\">Send</button></form>",
        ),
        (Some(_), None) => content.push_str(
            "<div class=\"join-bar\"><button type=\"button\" id=\"join\">Join this room</button></div>",
        ),
        (None, _) => {
            let _ = write!(
                content,
                "<div class=\"join-bar\"><a class=\"button\" href=\"/login?next={}\">Sign in to join the conversation</a></div>",
                esc(&base)
            );
        }
    }
    content.push_str("</main>");
    content.push_str(
        "<aside class=\"thread-panel\" id=\"thread\" hidden aria-label=\"Thread\"><header><h2>Thread</h2>\
         <button type=\"button\" id=\"thread-close\" class=\"link\" title=\"Close the thread\">✕</button></header>\
         <div id=\"thread-parent\" class=\"thread-parent\"></div><ol class=\"messages\" id=\"thread-messages\"></ol>",
    );
    if membership.is_some() {
        content.push_str(
            "<form class=\"composer\" id=\"thread-composer\"><label for=\"thread-compose\" class=\"visually-hidden\">Reply in thread</label>\
             <textarea id=\"thread-compose\" rows=\"1\" placeholder=\"Reply in thread\"></textarea><button type=\"submit\">Reply</button></form>",
        );
    }
    content.push_str("</aside>");
    members_panel(&mut content, &uri, matrix_server, is_moderator);
    if is_admin {
        settings_dialog(&mut content, &room);
    }
    content.push_str("</div>");
    let data = json!({
        "roomId": room.id,
        "uri": uri,
        "base": base,
        "seq": seq,
        "me": actor.user.as_ref().map(|u| json!({
            "id": u.id, "username": u.username, "displayName": u.display_name,
        })),
        "member": membership.is_some(),
        "atEnd": at_end,
        "hasOlder": has_older,
        "highlight": highlight,
        "favourite": membership.as_ref().is_some_and(|m| m.favourite),
        "role": membership.as_ref().map(|m| m.role.as_str()),
        "admin": is_admin,
        "moderator": is_moderator,
        "matrixServer": matrix_server,
    });
    content.push_str(&html::json_block("weft-page", &data));

    let mut head = Head::new(format!("{room_name} ({label})"));
    head.description = (!room.topic.is_empty()).then(|| room.topic.clone());
    head.noindex = room.noindex || room.kind != RoomKind::Public;
    head.script = true;
    head.body_class = "room-page";
    page(StatusCode::OK, html::layout(&head, &actor, &content))
}

/// The member list, filled by the script: members by page, people from Matrix seen in the
/// room's messages, and where the bridge runs, the room's address on `matrix.to`.
fn members_panel(out: &mut String, uri: &str, matrix_server: Option<&str>, moderator: bool) {
    let _ = write!(
        out,
        "<aside class=\"side-panel members-panel\" id=\"members\" hidden aria-label=\"Members\"{attr}>\
         <header><h2>Members</h2><button type=\"button\" id=\"members-close\" class=\"link\" title=\"Close the member list\">✕</button></header>\
         <div class=\"panel-body\"><label for=\"member-search\" class=\"visually-hidden\">Find a member</label>\
         <input type=\"search\" id=\"member-search\" class=\"member-search\" placeholder=\"Find a member\" autocomplete=\"off\">\
         <ul class=\"member-list\" id=\"member-list\"></ul>\
         <button type=\"button\" id=\"members-more\" class=\"link\" hidden>Load more</button>\
         <section id=\"matrix-people\" hidden><h3>People from Matrix</h3><ul class=\"member-list\" id=\"matrix-list\"></ul></section>",
        attr = match matrix_server {
            Some(server) => format!(" data-matrix-server=\"{}\"", esc(server)),
            None => String::new(),
        },
    );
    if moderator {
        // Filled by the script from `GET /v1/rooms/:id/bans`.
        out.push_str(
            "<section id=\"bans\"><h3>Banned</h3><ul class=\"member-list\" id=\"ban-list\"></ul>\
             <form id=\"ban-form\" class=\"ban-form\"><label for=\"ban-name\">Ban a username or Matrix ID</label>\
             <input id=\"ban-name\" placeholder=\"@spammer:example.org\" autocomplete=\"off\" required>\
             <input id=\"ban-reason\" placeholder=\"Reason (optional)\" autocomplete=\"off\">\
             <button type=\"submit\">Ban</button></form></section>",
        );
    }
    if let Some(server) = matrix_server {
        let alias = format!("#{}:{server}", uri.to_lowercase().replace('/', "_"));
        let _ = write!(
            out,
            "<p class=\"matrix-join\"><a id=\"matrix-link\" href=\"https://matrix.to/#/{href}\" rel=\"noopener noreferrer\">Join from Matrix</a> \
             <span class=\"alias\">{alias}</span></p>",
            href = esc(&alias),
            alias = esc(&alias),
        );
    }
    out.push_str("</div></aside>");
}

/// The room settings form for admins, sent by the script to `PUT /v1/rooms/:id`.
fn settings_dialog(out: &mut String, room: &Room) {
    let public = room.kind == RoomKind::Public;
    let _ = write!(
        out,
        "<dialog id=\"settings-dialog\" aria-labelledby=\"settings-title\"><form id=\"settings-form\" method=\"dialog\">\
         <h2 id=\"settings-title\">Room settings</h2>\
         <label for=\"settings-name\">Name</label><input id=\"settings-name\" name=\"name\" value=\"{name}\" maxlength=\"200\">\
         <label for=\"settings-topic\">Topic</label><textarea id=\"settings-topic\" name=\"topic\" rows=\"3\">{topic}</textarea>\
         <label for=\"settings-avatar\">Avatar (an image's address; empty for none)</label>\
         <input id=\"settings-avatar\" name=\"avatarUrl\" value=\"{avatar}\" maxlength=\"2048\" placeholder=\"https://…\" autocomplete=\"off\">\
         <fieldset{disabled}><legend>Who can read</legend>\
         <label><input type=\"radio\" name=\"security\" value=\"PUBLIC\"{public}> Public: anyone, signed in or not</label>\
         <label><input type=\"radio\" name=\"security\" value=\"PRIVATE\"{private}> Private: members only</label></fieldset>\
         <label><input type=\"checkbox\" id=\"settings-noindex\" name=\"noindex\"{noindex}> Hide the archives from search engines</label>\
         <div class=\"dialog-buttons\"><button type=\"button\" id=\"settings-cancel\" class=\"secondary\">Cancel</button>\
         <button type=\"submit\" id=\"settings-save\">Save</button></div></form></dialog>",
        name = esc(&room.name),
        topic = esc(&room.topic),
        avatar = esc(room.avatar_url.as_deref().unwrap_or_default()),
        disabled = if room.kind == RoomKind::OneToOne {
            " disabled"
        } else {
            ""
        },
        public = if public { " checked" } else { "" },
        private = if public { "" } else { " checked" },
        noindex = if room.noindex { " checked" } else { "" },
    );
}

/// A 500 page; the details go to the log only.
pub(crate) fn server_error(actor: &weft_chat::Actor, e: ChatError) -> Response {
    tracing::error!(error = %e, "page failed");
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        html::layout(
            &Head::new("Error"),
            actor,
            "<main class=\"narrow\"><h1>Something went wrong</h1><p>Please try again.</p></main>",
        ),
    )
}
