//! Finding people: Gitter's user search (`GET /v1/user?q=`) and a message's `readBy` list.

use serde_json::{Value, json};
use weft_core::RoomKind;

use crate::harness::{TestServer, id_of};

fn usernames(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a list of users")
        .iter()
        .map(|u| u["username"].as_str().expect("username"))
        .collect()
}

#[tokio::test]
async fn user_search_finds_users_by_part_of_their_name() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    for name in ["rustacean", "crusty", "rusty_bot", "bob"] {
        server.user(name).await;
    }
    let (status, _) = server
        .send(
            reqwest::Method::PATCH,
            Some(&alice.token),
            "/v1/user/me",
            json!({ "displayName": "Alice Rustworth" }),
        )
        .await;
    assert_eq!(status, 200);

    // Prefix matches of username or display name first, then other matches; any case.
    let (status, body) = server.get(Some(&alice.token), "/v1/user?q=RUST").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        usernames(&body["results"]),
        vec!["rustacean", "rusty_bot", "alice", "crusty"]
    );
    let first = &body["results"][0];
    assert_eq!(first["displayName"], "rustacean");
    assert_eq!(first["url"], "/rustacean");
    assert!(
        first["id"].is_string() && first["avatarUrl"].is_string(),
        "{first}"
    );

    // limit and skip page through the results, under /api/v1 as well.
    let (status, body) = server
        .get(Some(&alice.token), "/api/v1/user?q=rust&limit=2&skip=1")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(usernames(&body["results"]), vec!["rusty_bot", "alice"]);

    // An absurd limit is capped rather than refused; no match is an empty list.
    let (status, body) = server
        .get(Some(&alice.token), "/v1/user?q=rust&limit=100000")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(4));
    let (status, body) = server.get(Some(&alice.token), "/v1/user?q=nobody").await;
    assert_eq!((status, body), (200, json!({ "results": [] })));

    // Without q it still describes the caller; searching needs a token.
    let (status, body) = server.get(Some(&alice.token), "/v1/user").await;
    assert_eq!(status, 200);
    assert_eq!(usernames(&body), vec!["alice"]);
    let (status, _) = server.get(None, "/v1/user?q=rust").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn read_by_lists_the_members_who_read_a_message() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let mallory = server.user("mallory").await;
    let room = server.room(&alice, "acme/lobby", RoomKind::Public).await;
    server.join(&bob, "acme/lobby").await;
    server.join(&carol, "acme/lobby").await;
    let first = id_of(&server.say(&alice, room, "first").await);
    let second = id_of(&server.say(&alice, room, "second").await);
    let read_by = |message: String| format!("/v1/rooms/{room}/chatMessages/{message}/readBy");

    // Bob reads up to the second message, Carol only the first.
    for (who, up_to) in [(&bob, &second), (&carol, &first)] {
        let (status, body) = server
            .post(
                Some(&who.token),
                &format!("/v1/user/me/rooms/{room}/unreadItems"),
                json!({ "chat": [up_to] }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    let (status, body) = server
        .get(Some(&alice.token), &read_by(first.clone()))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(usernames(&body), vec!["bob", "carol"]);
    assert_eq!(body[0]["id"], json!(bob.user.id.to_hex()));
    let (status, body) = server.get(Some(&bob.token), &read_by(second.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(usernames(&body), vec!["bob"]);

    // The list and the message's readBy count agree.
    let (status, messages) = server
        .get(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages"),
        )
        .await;
    assert_eq!(status, 200);
    for m in messages.as_array().expect("messages") {
        let (_, readers) = server.get(Some(&alice.token), &read_by(id_of(m))).await;
        assert_eq!(
            m["readBy"].as_u64(),
            readers.as_array().map(|r| r.len() as u64),
            "{m} {readers}"
        );
    }

    // Paging.
    let (status, body) = server
        .get(
            Some(&alice.token),
            &format!("{}?limit=1&skip=1", read_by(first.clone())),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(usernames(&body), vec!["carol"]);

    // A visitor may read a public room's readBy; an unknown message is 404.
    let (status, body) = server.get(None, &read_by(second.clone())).await;
    assert_eq!((status, usernames(&body)), (200, vec!["bob"]));
    let (status, _) = server
        .get(
            Some(&alice.token),
            &read_by("0123456789abcdef01234567".into()),
        )
        .await;
    assert_eq!(status, 404);

    // Who may not read a private room learns nothing from it.
    let secret_room = server.room(&alice, "acme/staff", RoomKind::Private).await;
    let secret = id_of(
        &server
            .say(&alice, secret_room, "the launch is on friday")
            .await,
    );
    let path = format!("/v1/rooms/{secret_room}/chatMessages/{secret}/readBy");
    for token in [Some(mallory.token.as_str()), None] {
        let (status, body) = server.get(token, &path).await;
        assert_eq!(status, 404, "{token:?}: {body}");
    }
    let (status, body) = server.get(Some(&alice.token), &path).await;
    assert_eq!(status, 200, "{body}");
}
