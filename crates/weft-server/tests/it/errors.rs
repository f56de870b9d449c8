//! Bad input: each gets the right status and a clear `{"error": …}`, and none changes stored
//! data.

use serde_json::{Value, json};
use weft_chat::ChatConfig;
use weft_core::{Id, RoomKind};
use weft_server::ServerConfig;

use crate::harness::{TestServer, TestUser};

async fn setup() -> (TestServer, TestUser, Id, Value) {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.say(&alice, room, "the only message").await;
    let snapshot = server.snapshot(&alice, room).await;
    (server, alice, room, snapshot)
}

fn error_text(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a JSON error body, got {body}"))
}

#[tokio::test]
async fn malformed_json_is_400_with_the_parse_error() {
    let (server, alice, room, before) = setup().await;
    let path = format!("/v1/rooms/{room}/chatMessages");
    for body in [
        "{\"text\": ",
        "not json",
        "[1,2,3]",
        "{\"text\": 42}",
        "{\"text\": \"ok\", \"status\": \"maybe\"}",
    ] {
        let (status, response) = server
            .raw(
                reqwest::Method::POST,
                Some(&alice.token),
                &path,
                "application/json",
                body,
            )
            .await;
        assert_eq!(status, 400, "{body}: {response}");
        assert!(
            error_text(&response).contains("invalid JSON body"),
            "{body}: {response}"
        );
    }
    // Same for an edit and a room update.
    let msg = before[0]["id"].as_str().expect("id");
    let (status, response) = server
        .raw(
            reqwest::Method::PUT,
            Some(&alice.token),
            &format!("{path}/{msg}"),
            "application/json",
            "{oops}",
        )
        .await;
    assert_eq!(status, 400, "{response}");
    assert!(error_text(&response).contains("JSON"));
    let (status, response) = server
        .raw(
            reqwest::Method::PUT,
            Some(&alice.token),
            &format!("/v1/rooms/{room}"),
            "application/json",
            "{\"topic\":",
        )
        .await;
    assert_eq!(status, 400, "{response}");
    assert_eq!(server.snapshot(&alice, room).await, before);
    let (_, got) = server.get(None, &format!("/v1/rooms/{room}")).await;
    assert_eq!(got["topic"], "");
}

#[tokio::test]
async fn malformed_forms_are_400() {
    let (server, alice, room, before) = setup().await;
    let path = format!("/v1/rooms/{room}/chatMessages");
    for body in ["", "txet=typo", "status=true", "text"] {
        let (status, response) = server
            .raw(
                reqwest::Method::POST,
                Some(&alice.token),
                &path,
                "application/x-www-form-urlencoded",
                body,
            )
            .await;
        assert_eq!(status, 400, "{body:?}: {response}");
        assert!(
            error_text(&response).contains("text"),
            "{body:?}: {response}"
        );
    }
    // A value of the wrong kind.
    let (status, response) = server
        .raw(
            reqwest::Method::POST,
            Some(&alice.token),
            &path,
            "application/x-www-form-urlencoded",
            "text=hi&status=perhaps",
        )
        .await;
    assert_eq!(status, 400, "{response}");
    assert!(
        error_text(&response).contains("invalid form body"),
        "{response}"
    );
    assert_eq!(server.snapshot(&alice, room).await, before);
}

#[tokio::test]
async fn invalid_utf8_bodies_are_400() {
    let (server, alice, room, before) = setup().await;
    let path = format!("/v1/rooms/{room}/chatMessages");
    let json_bytes: Vec<u8> = [b"{\"text\": \"caf".as_slice(), &[0xC3, 0x28], b"\"}"].concat();
    let (status, response) = server
        .raw(
            reqwest::Method::POST,
            Some(&alice.token),
            &path,
            "application/json",
            json_bytes,
        )
        .await;
    assert_eq!(status, 400, "{response}");
    assert!(error_text(&response).contains("UTF-8"), "{response}");
    let form_bytes: Vec<u8> = [b"text=caf".as_slice(), &[0xFF, 0xFE]].concat();
    let (status, response) = server
        .raw(
            reqwest::Method::POST,
            Some(&alice.token),
            &path,
            "application/x-www-form-urlencoded",
            form_bytes,
        )
        .await;
    assert_eq!(status, 400, "{response}");
    assert!(error_text(&response).contains("UTF-8"), "{response}");
    // Percent-encoded bytes that decode to invalid UTF-8 are refused too, not mangled.
    let (status, response) = server
        .raw(
            reqwest::Method::POST,
            Some(&alice.token),
            &path,
            "application/x-www-form-urlencoded",
            "text=caf%FF%FE",
        )
        .await;
    assert_eq!(status, 400, "{response}");
    assert!(error_text(&response).contains("UTF-8"), "{response}");
    assert_eq!(server.snapshot(&alice, room).await, before);
}

#[tokio::test]
async fn invalid_and_unknown_ids() {
    let (server, alice, room, before) = setup().await;
    let msg = before[0]["id"].as_str().expect("id").to_string();
    let unknown = Id::generate();

    // Malformed ids in the path: 400 naming what was wrong.
    for (path, what) in [
        ("/v1/rooms/not-an-id".to_string(), "room id"),
        (
            "/v1/rooms/ZZZZZZZZZZZZZZZZZZZZZZZZ/chatMessages".to_string(),
            "room id",
        ),
        (format!("/v1/rooms/{room}/chatMessages/12345"), "message id"),
        (
            format!("/v1/rooms/{room}/chatMessages/{msg}x/thread"),
            "message id",
        ),
        ("/v1/user/bogus/rooms".to_string(), "user id"),
    ] {
        let (status, body) = server.get(Some(&alice.token), &path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(error_text(&body).contains(what), "{path}: {body}");
    }
    let (status, body) = server
        .post(
            Some(&alice.token),
            "/v1/rooms/0123/chatMessages",
            json!({ "text": "into the void" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server
        .delete(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages/xyz"),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Well-formed ids of nothing: 404.
    for path in [
        format!("/v1/rooms/{unknown}"),
        format!("/v1/rooms/{unknown}/chatMessages"),
        format!("/v1/rooms/{unknown}/users"),
        format!("/v1/rooms/{room}/chatMessages/{unknown}"),
        format!("/v1/rooms/{room}/chatMessages/{unknown}/thread"),
        format!("/v1/rooms/{room}/chatMessages/{unknown}/reactions"),
        format!("/v1/groups/{unknown}"),
    ] {
        let (status, body) = server.get(Some(&alice.token), &path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(error_text(&body).contains("not found"), "{path}: {body}");
    }
    // A message id from another room is not found in this one.
    let other = server.room(&alice, "acme/other", RoomKind::Public).await;
    let (status, body) = server
        .get(
            Some(&alice.token),
            &format!("/v1/rooms/{other}/chatMessages/{msg}"),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .delete(
            Some(&alice.token),
            &format!("/v1/rooms/{other}/chatMessages/{msg}"),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .put(
            Some(&alice.token),
            &format!("/v1/rooms/{other}/chatMessages/{msg}"),
            json!({ "text": "moved" }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .post(
            Some(&alice.token),
            &format!("/v1/rooms/{unknown}/chatMessages"),
            json!({ "text": "x" }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .delete(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages/{unknown}"),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .get(Some(&alice.token), "/v1/users/nobody-here")
        .await;
    assert_eq!(status, 404, "{body}");

    assert_eq!(server.snapshot(&alice, room).await, before);
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let (server, alice, room, before) = setup().await;
    for path in [
        "/v1/nope",
        "/api/v1/rooms/x/y/z/w",
        "/nothing/here",
        "/v2/user",
    ] {
        let (status, body) = server.get(Some(&alice.token), path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(
            error_text(&body).contains("no such endpoint"),
            "{path}: {body}"
        );
    }
    let (status, body) = server
        .post(
            Some(&alice.token),
            "/v1/rooms/chatMessages/now",
            json!({ "text": "x" }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let (status, body) = server.get(None, "/healthz").await;
    assert_eq!((status, body), (200, Value::String("ok".into())));
    assert_eq!(server.snapshot(&alice, room).await, before);
}

#[tokio::test]
async fn wrong_methods_and_undecodable_paths_are_json_errors() {
    let (server, alice, room, before) = setup().await;
    // A known path with a method it does not take.
    let (status, body) = server
        .send(
            reqwest::Method::PATCH,
            Some(&alice.token),
            &format!("/v1/rooms/{room}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 405, "{body}");
    assert!(!error_text(&body).is_empty());
    let msg = before[0]["id"].as_str().expect("id");
    let (status, body) = server
        .post(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages/{msg}"),
            json!({ "text": "x" }),
        )
        .await;
    assert_eq!(status, 405, "{body}");
    assert!(!error_text(&body).is_empty());
    // Percent-encoded bytes in a path that are not UTF-8.
    let (status, body) = server.get(Some(&alice.token), "/v1/rooms/%FF%FE").await;
    assert_eq!(status, 400, "{body}");
    assert!(!error_text(&body).is_empty());
    let (status, body) = server
        .delete(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages/{msg}/reactions/%F0%9F"),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(!error_text(&body).is_empty());
    // A plain GET of the WebSocket endpoint.
    let (status, body) = server.get(Some(&alice.token), "/v1/ws").await;
    assert!((400..500).contains(&status), "{status}: {body}");
    assert!(!error_text(&body).is_empty());
    assert_eq!(server.snapshot(&alice, room).await, before);
}

#[tokio::test]
async fn bad_query_parameters_are_400_json() {
    let (server, alice, room, before) = setup().await;
    for query in ["limit=ten", "includeThreads=perhaps", "limit=1e9"] {
        let (status, body) = server
            .get(
                Some(&alice.token),
                &format!("/v1/rooms/{room}/chatMessages?{query}"),
            )
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(!error_text(&body).is_empty(), "{query}: {body}");
    }
    assert_eq!(server.snapshot(&alice, room).await, before);
}

#[tokio::test]
async fn oversized_json_bodies_are_413() {
    let server = TestServer::start_with(
        ChatConfig {
            max_upload_bytes: 1024,
            ..Default::default()
        },
        ServerConfig::default(),
    )
    .await;
    let alice = server.user("alice").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.say(&alice, room, "small").await;
    let before = server.snapshot(&alice, room).await;

    let huge = json!({ "text": "x".repeat(300_000) });
    let (status, body) = server
        .post(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages"),
            huge,
        )
        .await;
    assert_eq!(
        status,
        413,
        "{}",
        body.to_string().chars().take(300).collect::<String>()
    );
    assert!(error_text(&body).contains("too large"), "{body}");
    let huge_topic = json!({ "topic": "y".repeat(300_000) });
    let (status, body) = server
        .put(Some(&alice.token), &format!("/v1/rooms/{room}"), huge_topic)
        .await;
    assert_eq!(
        status,
        413,
        "{}",
        body.to_string().chars().take(300).collect::<String>()
    );
    assert_eq!(server.snapshot(&alice, room).await, before);
    let (_, got) = server.get(None, &format!("/v1/rooms/{room}")).await;
    assert_eq!(got["topic"], "");
}

#[tokio::test]
async fn oversized_bodies_are_413_with_default_settings() {
    let (server, alice, room, before) = setup().await;
    // Over the default request limit (the upload limit plus room for the form).
    let limit = ChatConfig::default().max_upload_bytes + 64 * 1024;
    let text = "x".repeat(limit + 1);
    let body = format!("{{\"text\":\"{text}\"}}");
    let response = server
        .http
        .post(server.url(&format!("/v1/rooms/{room}/chatMessages")))
        .bearer_auth(&alice.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    // The server may answer before reading the whole body and close the connection; either
    // way the request must not succeed.
    if let Ok(response) = response {
        assert_eq!(response.status().as_u16(), 413);
    }
    assert_eq!(server.snapshot(&alice, room).await, before);
}

#[tokio::test]
async fn other_users_messages_cannot_be_changed() {
    let (server, alice, room, before) = setup().await;
    let bob = server.user("bob").await;
    server.join(&bob, "acme/general").await;
    let msg = before[0]["id"].as_str().expect("id");
    let path = format!("/v1/rooms/{room}/chatMessages/{msg}");
    let (status, body) = server
        .put(Some(&bob.token), &path, json!({ "text": "edited by bob" }))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(!error_text(&body).is_empty());
    let (status, body) = server.delete(Some(&bob.token), &path).await;
    assert_eq!(status, 403, "{body}");
    assert!(!error_text(&body).is_empty());
    // Removing a reaction Bob never made changes nothing.
    let (status, _) = server
        .post(
            Some(&alice.token),
            &format!("{path}/reactions"),
            json!({ "emoji": "👍" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, r) = server
        .delete(Some(&bob.token), &format!("{path}/reactions/👍"))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r, json!([{ "emoji": "👍", "count": 1, "me": false }]));
    let after = server.snapshot(&alice, room).await;
    assert_eq!(after[0]["text"], "the only message");
    assert_eq!(after[0]["editedAt"], Value::Null);
    assert_eq!(
        after[0]["reactions"],
        json!([{ "emoji": "👍", "count": 1, "me": true }])
    );
}

#[tokio::test]
async fn rate_limit_is_429_with_headers() {
    let server = TestServer::start_with(
        ChatConfig::default(),
        ServerConfig {
            rate_limit_per_minute: 3,
            ..Default::default()
        },
    )
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;

    let header = |r: &reqwest::Response, name: &str| -> i64 {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} header missing: {:?}", r.headers()))
    };
    let now = weft_core::now_millis() / 1000;
    for expected_remaining in [2, 1, 0] {
        let r = server
            .http
            .post(server.url(&format!("/v1/rooms/{room}/chatMessages")))
            .bearer_auth(&alice.token)
            .json(&json!({ "text": format!("left {expected_remaining}") }))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit"), 3);
        assert_eq!(header(&r, "x-ratelimit-remaining"), expected_remaining);
    }
    let r = server
        .http
        .post(server.url(&format!("/v1/rooms/{room}/chatMessages")))
        .bearer_auth(&alice.token)
        .json(&json!({ "text": "one too many" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(header(&r, "x-ratelimit-limit"), 3);
    assert_eq!(header(&r, "x-ratelimit-remaining"), 0);
    let reset = header(&r, "x-ratelimit-reset");
    assert!(
        reset >= now && reset <= now + 61,
        "reset {reset} should be within a minute of {now}"
    );
    assert!(header(&r, "retry-after") >= 1);
    let (_, body) = crate::harness::into_json(r).await;
    assert!(error_text(&body).contains("rate limit"), "{body}");

    // Another token has its own budget, and sees that the refused message was not posted.
    let r = server
        .http
        .get(server.url(&format!("/v1/rooms/{room}/chatMessages")))
        .bearer_auth(&bob.token)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "x-ratelimit-remaining"), 2);
    let (_, list) = crate::harness::into_json(r).await;
    let texts: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["left 2", "left 1", "left 0"]);
}

/// Budgets belong to who a request proves to be: random tokens on each request are limited
/// by address (they used to get a fresh budget each), a real user's budget is their own, and
/// wrong passwords are limited per address before the password hash is checked.
#[tokio::test]
async fn rate_limits_follow_identities_not_the_strings_requests_carry() {
    let server = TestServer::start_with(
        ChatConfig::default(),
        ServerConfig {
            rate_limit_per_minute: 1000,
            ..Default::default()
        },
    )
    .await;
    let alice = server.user("alice").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;

    let mut limited_after = None;
    for i in 0..(weft_server::FAILURES_PER_MINUTE + 5) {
        let r = server
            .http
            .get(server.url(&format!("/v1/rooms/{room}/chatMessages")))
            .bearer_auth(format!("random-guess-{i}"))
            .send()
            .await
            .expect("sent");
        if r.status().as_u16() == 429 {
            limited_after = Some(i);
            break;
        }
        assert_eq!(r.status().as_u16(), 401);
    }
    assert_eq!(
        limited_after,
        Some(weft_server::FAILURES_PER_MINUTE),
        "guessed tokens must run out of tries"
    );
    // Alice, on the same address, is not limited by the guesser.
    let (status, body) = server
        .get(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages"),
        )
        .await;
    assert_eq!(status, 200, "a valid token keeps its own budget: {body}");
    // A stale session cookie is not a guess: a signed-out browser keeps reading public rooms.
    for _ in 0..(weft_server::FAILURES_PER_MINUTE + 5) {
        let r = server
            .http
            .get(server.url(&format!("/v1/rooms/{room}/chatMessages")))
            .header("cookie", "weft_session=expired-session")
            .send()
            .await
            .expect("sent");
        assert_ne!(
            r.status().as_u16(),
            429,
            "a stale cookie must not lock a visitor out"
        );
    }
}

#[tokio::test]
async fn a_users_budget_is_their_own() {
    let server = TestServer::start_with(
        ChatConfig::default(),
        ServerConfig {
            rate_limit_per_minute: 3,
            ..Default::default()
        },
    )
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    for _ in 0..3 {
        let (status, _) = server
            .get(Some(&alice.token), &format!("/v1/rooms/{room}"))
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}"))
        .await;
    assert_eq!(status, 429);
    let (status, body) = server
        .get(Some(&bob.token), &format!("/v1/rooms/{room}"))
        .await;
    assert_eq!(
        status, 200,
        "bob, on the same address, is not limited by alice: {body}"
    );
    // A second token of alice's shares her budget.
    let (_, second) = server
        .chat
        .create_token(alice.user.id, "second", false)
        .await
        .expect("token");
    let (status, _) = server
        .get(Some(&second), &format!("/v1/rooms/{room}"))
        .await;
    assert_eq!(status, 429, "a new token does not buy a new budget");
}

#[tokio::test]
async fn wrong_passwords_are_limited_per_address() {
    let server = TestServer::start_with(
        ChatConfig::default(),
        ServerConfig {
            rate_limit_per_minute: 1000,
            ..Default::default()
        },
    )
    .await;
    server.user("alice").await;
    let mut statuses = Vec::new();
    for _ in 0..(weft_server::FAILURES_PER_MINUTE + 2) {
        let r = server
            .http
            .post(server.url("/login"))
            .header("origin", &server.base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("username=alice&password=wrong")
            .send()
            .await
            .expect("sent");
        statuses.push(r.status().as_u16());
    }
    let n = weft_server::FAILURES_PER_MINUTE as usize;
    assert!(statuses[..n].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[n..].iter().all(|s| *s == 429), "{statuses:?}");
}

/// Behind a trusted reverse proxy every request comes from the proxy's address: the client
/// the limiter counts against is the one the proxy names in `X-Forwarded-For`.
#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_budget() {
    let server = TestServer::start_with(
        ChatConfig::default(),
        ServerConfig {
            rate_limit_per_minute: 1000,
            trusted_proxies: vec!["127.0.0.1".parse().expect("ip")],
            ..Default::default()
        },
    )
    .await;
    let guess = |forwarded: &'static str, i: u32| {
        server
            .http
            .get(server.url("/v1/rooms"))
            .bearer_auth(format!("guess-{i}"))
            .header("x-forwarded-for", forwarded)
            .send()
    };
    for i in 0..weft_server::FAILURES_PER_MINUTE {
        let r = guess("203.0.113.5", i).await.expect("sent");
        assert_eq!(r.status().as_u16(), 401);
    }
    let r = guess("203.0.113.5", 99).await.expect("sent");
    assert_eq!(
        r.status().as_u16(),
        429,
        "the guessing client is out of tries"
    );
    let r = guess("198.51.100.7", 100).await.expect("sent");
    assert_eq!(
        r.status().as_u16(),
        401,
        "another client behind the same proxy is not"
    );
}
