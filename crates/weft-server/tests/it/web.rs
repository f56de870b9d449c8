//! The web app's pages over HTTP: server-rendered rooms and archives, private rooms hidden,
//! escaping, sessions by cookie and the rule that a cookie alone never authorises a change.
//! (The browser tests drive the same pages in Chromium.)

use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::json;
use weft_chat::NewUser;
use weft_core::RoomKind;

use crate::harness::TestServer;

async fn html(server: &TestServer, path: &str, cookie: Option<&str>) -> (u16, String) {
    let mut req = server
        .http
        .get(server.url(path))
        .header(ACCEPT, "text/html");
    if let Some(c) = cookie {
        req = req.header(COOKIE, format!("weft_session={c}"));
    }
    let response = req.send().await.expect("request sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Signs in through the form; returns the session token from the cookie.
async fn sign_in(server: &TestServer, username: &str, password: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    let response = client
        .post(server.url("/login"))
        .header(ORIGIN, &server.base)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!(
            "username={username}&password={}&next=%2Fa%2Fb",
            password.replace(' ', "+")
        ))
        .send()
        .await
        .expect("request sent");
    if response.status().as_u16() != 303 {
        return None;
    }
    assert_eq!(response.headers()[LOCATION], "/a/b");
    let cookie = response.headers()[SET_COOKIE].to_str().expect("ascii");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    cookie
        .strip_prefix("weft_session=")
        .and_then(|rest| rest.split(';').next())
        .map(str::to_string)
}

#[tokio::test]
async fn a_public_room_is_rendered_with_its_messages_escaped() {
    let server = TestServer::start().await;
    let owner = server.user("owner").await;
    let room = server.room(&owner, "rust/general", RoomKind::Public).await;
    server
        .put(
            Some(&owner.token),
            &format!("/v1/rooms/{room}"),
            json!({ "topic": "<script>alert(1)</script>" }),
        )
        .await;
    server
        .say(&owner, room, "first <img src=x onerror=alert(2)>")
        .await;
    server.say(&owner, room, "second **bold**").await;
    let (status, page) = html(&server, "/rust/general", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("<strong>bold</strong>"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("<img src=x"), "{page}");
    assert!(
        page.contains("\"seq\":"),
        "the feed position is in the page"
    );
    let messages = &page[page.find("id=\"messages\"").expect("message list")..];
    let first = messages.find("first").expect("first message");
    let second = messages.find("second").expect("second message");
    assert!(first < second, "oldest first");
}

#[tokio::test]
async fn private_rooms_and_their_archives_are_not_found_for_visitors() {
    let server = TestServer::start().await;
    let owner = server.user("owner").await;
    server.room(&owner, "rust/secret", RoomKind::Private).await;
    for path in [
        "/rust/secret",
        "/rust/secret/archives",
        "/rust/secret/archives/2024/01/01",
    ] {
        let (status, page) = html(&server, path, None).await;
        assert_eq!(status, 404, "{path}");
        assert!(page.contains("Not found"), "{path}: {page}");
    }
    let (status, body) = server.get(None, "/rust/secret").await;
    assert_eq!(status, 404, "API clients still get JSON: {body}");
}

#[tokio::test]
async fn archives_show_days_with_messages_and_honour_noindex() {
    let server = TestServer::start().await;
    let owner = server.user("owner").await;
    let room = server.room(&owner, "rust/general", RoomKind::Public).await;
    let message = server.say(&owner, room, "archived words").await;
    let day = message["sent"].as_str().expect("sent")[..10].replace('-', "/");
    let (status, calendar) = html(&server, "/rust/general/archives", None).await;
    assert_eq!(status, 200);
    assert!(
        calendar.contains(&format!("href=\"archives/{day}\"")),
        "{calendar}"
    );
    let (status, page) = html(&server, &format!("/rust/general/archives/{day}"), None).await;
    assert_eq!(status, 200);
    assert!(page.contains("archived words"));
    assert!(!page.contains("noindex"));
    assert!(!page.contains("<script"), "archives need no script");
    server
        .put(
            Some(&owner.token),
            &format!("/v1/rooms/{room}"),
            json!({ "noindex": true }),
        )
        .await;
    let (_, page) = html(&server, &format!("/rust/general/archives/{day}"), None).await;
    assert!(page.contains("<meta name=\"robots\" content=\"noindex\">"));
    let (status, _) = html(&server, "/rust/general/archives/2024/02/30", None).await;
    assert_eq!(status, 404, "no such date");
    let sitemap = server
        .http
        .get(server.url("/sitemap.xml"))
        .send()
        .await
        .expect("sitemap")
        .text()
        .await
        .expect("body");
    assert!(!sitemap.contains("rust/general"), "{sitemap}");
}

#[tokio::test]
async fn a_session_cookie_reads_but_changes_only_with_the_apps_header() {
    let server = TestServer::start().await;
    let owner = server.user("owner").await;
    let room = server.room(&owner, "rust/general", RoomKind::Public).await;
    server
        .chat
        .create_user(NewUser {
            username: "alice".into(),
            display_name: None,
            password: Some("a long password".into()),
            site_admin: false,
        })
        .await
        .expect("user");
    assert!(sign_in(&server, "alice", "wrong password").await.is_none());
    let session = sign_in(&server, "alice", "a long password")
        .await
        .expect("signed in");
    let me = server
        .http
        .get(server.url("/v1/user/me"))
        .header(COOKIE, format!("weft_session={session}"))
        .send()
        .await
        .expect("me");
    assert_eq!(me.status().as_u16(), 200);
    let join = |csrf: bool| {
        let mut req = server
            .http
            .post(server.url("/v1/rooms"))
            .header(COOKIE, format!("weft_session={session}"))
            .json(&json!({ "uri": "rust/general" }));
        if csrf {
            req = req.header("X-Requested-With", "weft");
        }
        req.send()
    };
    assert_eq!(join(false).await.expect("sent").status().as_u16(), 403);
    assert_eq!(join(true).await.expect("sent").status().as_u16(), 200);
    let (_, page) = html(&server, "/rust/general", Some(&session)).await;
    assert!(page.contains("id=\"composer\""), "members get a composer");
    // Logging out from another site is refused; from weft's own page it revokes the token.
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    let logout = |origin: &str| {
        client
            .post(server.url("/logout"))
            .header(COOKIE, format!("weft_session={session}"))
            .header(ORIGIN, origin)
            .send()
    };
    let refused = logout("http://evil.example").await.expect("sent");
    assert_eq!(refused.status().as_u16(), 403);
    let done = logout(&server.base).await.expect("sent");
    assert_eq!(done.status().as_u16(), 303);
    let (status, _) = server
        .get(Some(&session), &format!("/v1/rooms/{room}"))
        .await;
    assert_eq!(status, 401, "the session's token is revoked");
}

#[tokio::test]
async fn the_member_list_links_matrix_to_only_where_the_bridge_runs() {
    let bridged = TestServer::start_with(
        weft_chat::ChatConfig::default(),
        weft_server::ServerConfig {
            matrix_server_name: Some("chat.example.org".into()),
            ..Default::default()
        },
    )
    .await;
    let owner = bridged.user("owner").await;
    bridged.room(&owner, "Rust/General", RoomKind::Public).await;
    let (status, page) = html(&bridged, "/Rust/General", None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("href=\"https://matrix.to/#/#rust_general:chat.example.org\""),
        "{page}"
    );
    assert!(
        page.contains("data-matrix-server=\"chat.example.org\""),
        "{page}"
    );
    assert!(page.contains("id=\"member-list\""), "{page}");
    bridged.room(&owner, "Rust/Secret", RoomKind::Private).await;
    let (status, page) = html(&bridged, "/Rust/Secret", Some(&owner.token)).await;
    assert_eq!(status, 200);
    assert!(
        !page.contains("matrix.to"),
        "Matrix cannot join private rooms: {page}"
    );

    let plain = TestServer::start().await;
    let owner = plain.user("owner").await;
    plain.room(&owner, "rust/general", RoomKind::Public).await;
    let (status, page) = html(&plain, "/rust/general", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"member-list\""), "{page}");
    assert!(!page.contains("matrix.to"), "{page}");
    assert!(!page.contains("data-matrix-server"), "{page}");
}

#[tokio::test]
async fn room_settings_and_the_star_are_rendered_only_for_who_may_use_them() {
    let server = TestServer::start().await;
    let owner = server.user("owner").await;
    let member = server.user("member").await;
    server.room(&owner, "rust/general", RoomKind::Public).await;
    server.join(&member, "rust/general").await;
    let (_, page) = html(&server, "/rust/general", Some(&owner.token)).await;
    assert!(page.contains("id=\"room-settings\""), "{page}");
    assert!(page.contains("id=\"settings-dialog\""), "{page}");
    assert!(page.contains("id=\"favourite\""), "{page}");
    let (_, page) = html(&server, "/rust/general", Some(&member.token)).await;
    assert!(!page.contains("room-settings"), "{page}");
    assert!(!page.contains("settings-dialog"), "{page}");
    assert!(page.contains("id=\"favourite\""), "{page}");
    let (_, page) = html(&server, "/rust/general", None).await;
    assert!(!page.contains("id=\"favourite\""), "{page}");
    assert!(!page.contains("room-settings"), "{page}");
}

#[tokio::test]
async fn a_one_to_one_page_is_found_only_by_its_two_members() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let (status, room) = server
        .post(Some(&alice.token), "/v1/rooms", json!({ "uri": "bob" }))
        .await;
    assert_eq!(status, 200, "{room}");
    let id = room["id"].as_str().expect("room id").to_string();
    let path = format!("/-/dm/{id}");
    server.say(&bob, id.parse().expect("id"), "psst").await;

    let (status, page) = html(&server, &path, Some(&alice.token)).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("psst"), "{page}");
    assert!(
        page.contains("<span class=\"room-uri\">@bob</span>"),
        "{page}"
    );
    assert!(
        page.contains("<meta name=\"robots\" content=\"noindex\">"),
        "{page}"
    );
    assert!(
        page.contains(&format!("<a href=\"{path}\" aria-current=\"page\">")),
        "the menu lists it: {page}"
    );
    let (status, _) = html(&server, &path, Some(&bob.token)).await;
    assert_eq!(status, 200);
    let (status, page) = html(&server, &path, Some(&carol.token)).await;
    assert_eq!(status, 404);
    assert!(!page.contains("psst"), "{page}");
    let (status, _) = html(&server, &path, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_message_a_bridge_gave_up_on_is_marked_on_the_page() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bridge = server.user_with("matrix-bridge", false, true).await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    let said = server.say(&alice, room, "hello matrix").await;
    let bridge_actor = server
        .chat
        .authenticate_token(&bridge.token)
        .await
        .expect("bridge actor");
    let id = crate::harness::id_of(&said);
    server
        .chat
        .mark_undelivered(
            &bridge_actor,
            room,
            id.parse().expect("id"),
            "matrix",
            "the <puppet> is banned",
        )
        .await
        .expect("marked");
    let (status, page) = html(&server, "/acme/general", None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains(
            "class=\"undelivered\" title=\"Not delivered to Matrix: the &lt;puppet&gt; is banned\""
        ),
        "{page}"
    );
}

#[tokio::test]
async fn only_moderators_get_the_ban_controls() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    server.room(&alice, "acme/general", RoomKind::Public).await;
    server.join(&bob, "acme/general").await;
    // A session cookie holds a token like any other.
    let (_, as_owner) = html(&server, "/acme/general", Some(&alice.token)).await;
    let (_, as_bob) = html(&server, "/acme/general", Some(&bob.token)).await;
    assert!(as_owner.contains("id=\"ban-form\""), "the room admin bans");
    assert!(!as_bob.contains("id=\"ban-form\""), "a member does not");
}
