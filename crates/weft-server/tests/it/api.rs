//! The caller behind a token, the two API prefixes, and communities (Gitter's groups).

use serde_json::json;
use weft_core::RoomKind;

use crate::harness::TestServer;

#[tokio::test]
async fn user_endpoints_describe_the_caller() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;

    let (status, list) = server.get(Some(&alice.token), "/v1/user").await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().expect("GET /v1/user is an array");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], json!(alice.user.id.to_hex()));
    assert_eq!(list[0]["username"], "alice");
    assert_eq!(list[0]["displayName"], "alice");
    assert_eq!(list[0]["url"], "/alice");

    let (status, me) = server.get(Some(&alice.token), "/v1/user/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], json!(alice.user.id.to_hex()));
    assert_eq!(me["username"], "alice");
    assert!(me["avatarUrl"].is_string(), "{me}");
    assert_eq!(
        me, list[0],
        "both endpoints describe the same user the same way"
    );
}

#[tokio::test]
async fn missing_or_wrong_tokens_are_401_with_an_error_body() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;

    for path in ["/v1/user", "/v1/user/me", "/api/v1/user/me", "/v1/rooms"] {
        let (status, body) = server.get(None, path).await;
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("token") || e.contains("authentication")),
            "{path}: {body}"
        );

        let (status, body) = server.get(Some("not-a-real-token"), path).await;
        assert_eq!(status, 401, "{path} with a wrong token: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }

    // A wrong token is refused even where visitors may read.
    let room = server.room(&alice, "acme/lobby", RoomKind::Public).await;
    let (status, body) = server
        .get(None, &format!("/v1/rooms/{room}/chatMessages"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .get(Some("wrong"), &format!("/v1/rooms/{room}/chatMessages"))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].is_string(), "{body}");

    // Writing with a wrong token changes nothing.
    let (status, body) = server
        .post(
            Some("wrong"),
            &format!("/v1/rooms/{room}/chatMessages"),
            json!({ "text": "sneaky" }),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(server.snapshot(&alice, room).await, json!([]));
}

#[tokio::test]
async fn the_api_prefix_and_the_query_token_work_the_same() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let room = server.room(&alice, "acme/lobby", RoomKind::Public).await;

    let (status, plain) = server.get(Some(&alice.token), "/v1/user/me").await;
    assert_eq!(status, 200);
    let (status, prefixed) = server.get(Some(&alice.token), "/api/v1/user/me").await;
    assert_eq!(status, 200);
    assert_eq!(plain, prefixed);

    let (status, by_query) = server
        .get(None, &format!("/v1/user/me?access_token={}", alice.token))
        .await;
    assert_eq!(status, 200, "{by_query}");
    assert_eq!(by_query, plain);
    let (status, body) = server.get(None, "/v1/user/me?access_token=nope").await;
    assert_eq!(status, 401, "{body}");

    // A message posted through /api/v1 is read back through /v1, and the other way round.
    let (status, posted) = server
        .post(
            Some(&alice.token),
            &format!("/api/v1/rooms/{room}/chatMessages"),
            json!({ "text": "via api" }),
        )
        .await;
    assert_eq!(status, 200, "{posted}");
    let (status, posted2) = server
        .post(
            None,
            &format!("/v1/rooms/{room}/chatMessages?access_token={}", alice.token),
            json!({ "text": "via query" }),
        )
        .await;
    assert_eq!(status, 200, "{posted2}");
    assert_eq!(posted2["fromUser"]["username"], "alice");
    let (status, list) = server
        .get(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages"),
        )
        .await;
    assert_eq!(status, 200);
    let (status, list2) = server
        .get(
            Some(&alice.token),
            &format!("/api/v1/rooms/{room}/chatMessages"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list, list2);
    let texts: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["via api", "via query"]);
}

#[tokio::test]
async fn a_users_rooms_are_theirs_to_list_and_join() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;

    // `Authorization: token …` works as Gitter's clients sent it.
    let response = server
        .http
        .get(server.url("/v1/user/me"))
        .header("authorization", format!("token {}", bob.token))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);

    let rooms_path = format!("/v1/user/{}/rooms", bob.user.id);
    let (status, rooms) = server.get(Some(&bob.token), &rooms_path).await;
    assert_eq!(status, 200, "{rooms}");
    assert_eq!(rooms, json!([]));
    let (status, joined) = server
        .post(
            Some(&bob.token),
            &rooms_path,
            json!({ "id": room.to_hex() }),
        )
        .await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["id"], json!(room.to_hex()));
    let (status, rooms) = server.get(Some(&bob.token), "/v1/user/me/rooms").await;
    assert_eq!(status, 200, "{rooms}");
    assert_eq!(rooms.as_array().map(Vec::len), Some(1));
    assert_eq!(rooms[0]["uri"], "acme/general");
    assert_eq!(rooms[0]["unreadItems"], 0);

    // Not somebody else's list, and not joining on their behalf.
    let (status, body) = server.get(Some(&alice.token), &rooms_path).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = server
        .post(
            Some(&alice.token),
            &rooms_path,
            json!({ "id": room.to_hex() }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = server
        .post(Some(&bob.token), &rooms_path, json!({ "id": "nope" }))
        .await;
    assert_eq!(status, 400, "{body}");

    // A user by name.
    let (status, found) = server.get(Some(&bob.token), "/v1/users/alice").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["id"], json!(alice.user.id.to_hex()));
}

#[tokio::test]
async fn groups_are_created_listed_and_hold_rooms() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;

    let (status, group) = server
        .post(
            Some(&alice.token),
            "/v1/groups",
            json!({ "uri": "acme", "name": "Acme Inc" }),
        )
        .await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["uri"], "acme");
    assert_eq!(group["name"], "Acme Inc");
    assert_eq!(group["homeUri"], "acme/home");
    let group_id = group["id"].as_str().expect("group id").to_string();
    assert_eq!(group_id.len(), 24);

    // The same URI again is a conflict, and nothing new appears.
    let (status, body) = server
        .post(
            Some(&bob.token),
            "/v1/groups",
            json!({ "uri": "acme", "name": "Other" }),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("acme")),
        "{body}"
    );
    // A malformed URI is refused.
    let (status, body) = server
        .post(
            Some(&bob.token),
            "/v1/groups",
            json!({ "uri": "no spaces/here" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // Without a token, 401.
    let (status, _) = server
        .post(None, "/v1/groups", json!({ "uri": "anon" }))
        .await;
    assert_eq!(status, 401);

    let (status, groups) = server.get(Some(&alice.token), "/v1/groups").await;
    assert_eq!(status, 200, "{groups}");
    let groups = groups.as_array().expect("array");
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["id"], json!(group_id));
    assert_eq!(groups[0]["name"], "Acme Inc");

    let (status, one) = server.get(None, &format!("/v1/groups/{group_id}")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["uri"], "acme");

    // Rooms in the group: only its admins may create them.
    let rooms_path = format!("/v1/groups/{group_id}/rooms");
    let (status, room) = server
        .post(
            Some(&alice.token),
            &rooms_path,
            json!({ "name": "general", "topic": "Chit-chat", "security": "PUBLIC" }),
        )
        .await;
    assert_eq!(status, 200, "{room}");
    assert_eq!(room["uri"], "acme/general");
    assert_eq!(room["name"], "acme/general");
    assert_eq!(room["topic"], "Chit-chat");
    assert_eq!(room["security"], "PUBLIC");
    assert_eq!(room["public"], true);
    assert_eq!(room["oneToOne"], false);
    assert_eq!(room["groupId"], json!(group_id));
    assert_eq!(room["userCount"], 1);

    let (status, secret) = server
        .post(
            Some(&alice.token),
            &rooms_path,
            json!({ "name": "staff", "security": "PRIVATE" }),
        )
        .await;
    assert_eq!(status, 200, "{secret}");
    assert_eq!(secret["security"], "PRIVATE");
    assert_eq!(secret["public"], false);

    let (status, body) = server
        .post(
            Some(&bob.token),
            &rooms_path,
            json!({ "name": "bobs-room", "topic": "mine" }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("admin")),
        "{body}"
    );
    let (status, body) = server
        .post(
            Some(&alice.token),
            &rooms_path,
            json!({ "name": "weird", "security": "SECRETIVE" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server
        .post(
            Some(&alice.token),
            &rooms_path,
            json!({ "name": "general" }),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // Alice sees both rooms; Bob and visitors only the public one.
    let names = |list: &serde_json::Value| -> Vec<String> {
        let mut v: Vec<String> = list
            .as_array()
            .expect("array")
            .iter()
            .map(|r| r["uri"].as_str().expect("uri").to_string())
            .collect();
        v.sort();
        v
    };
    let (status, list) = server.get(Some(&alice.token), &rooms_path).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(names(&list), ["acme/general", "acme/staff"]);
    let (status, list) = server.get(Some(&bob.token), &rooms_path).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(names(&list), ["acme/general"]);
    let (status, list) = server.get(None, &rooms_path).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(names(&list), ["acme/general"]);

    // Bob belongs to the group once he is in one of its rooms.
    let (_, groups) = server.get(Some(&bob.token), "/v1/groups").await;
    assert_eq!(groups, json!([]));
    server.join(&bob, "acme/general").await;
    let (_, groups) = server.get(Some(&bob.token), "/v1/groups").await;
    assert_eq!(groups.as_array().map(Vec::len), Some(1), "{groups}");
    assert_eq!(groups[0]["uri"], "acme");

    // Unknown and malformed group ids.
    let (status, body) = server
        .get(None, "/v1/groups/000000000000000000000000/rooms")
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string());
    let (status, body) = server.get(None, "/v1/groups/not-an-id/rooms").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("group id")),
        "{body}"
    );
}

/// Tokens are cached for a few seconds after use; revoking one must still end it at once.
#[tokio::test]
async fn a_revoked_token_stops_working_at_once_despite_the_cache() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let (status, _) = server.get(Some(&alice.token), "/v1/user/me").await;
    assert_eq!(status, 200);
    let tokens = server
        .chat
        .views()
        .tokens_of(alice.user.id)
        .await
        .expect("tokens");
    let actor = weft_chat::Actor::user(alice.user.clone());
    server
        .chat
        .revoke_token(&actor, tokens[0].id)
        .await
        .expect("revoked");
    let (status, body) = server.get(Some(&alice.token), "/v1/user/me").await;
    assert_eq!(status, 401, "{body}");
}

/// A rename shows at once to the renamed user's next request, cache or not.
#[tokio::test]
async fn a_rename_is_seen_at_once_despite_the_cache() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let (_, me) = server.get(Some(&alice.token), "/v1/user/me").await;
    assert_eq!(me["displayName"], "alice");
    let (status, body) = server
        .send(
            reqwest::Method::PATCH,
            Some(&alice.token),
            "/v1/user/me",
            serde_json::json!({ "displayName": "Alice A." }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, me) = server.get(Some(&alice.token), "/v1/user/me").await;
    assert_eq!(me["displayName"], "Alice A.");
}
