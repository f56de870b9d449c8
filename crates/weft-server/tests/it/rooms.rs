//! Joining rooms, one-to-one rooms, room settings, members, bans and who may see what.

use serde_json::json;
use weft_core::RoomKind;

use crate::harness::{TestServer, id_of};

fn member_names(list: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .expect("array of members")
        .iter()
        .map(|u| u["username"].as_str().expect("username").to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn joining_by_uri_and_listing_rooms_with_unread_counts() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;

    let joined = server.join(&bob, "acme/general").await;
    assert_eq!(joined["id"], json!(room.to_hex()));
    assert_eq!(joined["uri"], "acme/general");
    assert_eq!(joined["userCount"], 2);
    // Joining twice is harmless.
    let again = server.join(&bob, "/acme/general").await;
    assert_eq!(again["id"], json!(room.to_hex()));
    assert_eq!(again["userCount"], 2);

    let (status, users) = server
        .get(Some(&bob.token), &format!("/v1/rooms/{room}/users"))
        .await;
    assert_eq!(status, 200, "{users}");
    assert_eq!(member_names(&users), ["alice", "bob"]);
    let roles: Vec<(String, String)> = users
        .as_array()
        .expect("array")
        .iter()
        .map(|u| {
            (
                u["username"].as_str().expect("name").into(),
                u["role"].as_str().expect("role").into(),
            )
        })
        .collect();
    assert!(
        roles.contains(&("alice".into(), "admin".into())),
        "{roles:?}"
    );
    assert!(
        roles.contains(&("bob".into(), "member".into())),
        "{roles:?}"
    );

    // Unknown room URIs are 404.
    let (status, body) = server
        .post(Some(&bob.token), "/v1/rooms", json!({ "uri": "acme/nope" }))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string());

    // Alice writes twice, once mentioning Bob; Bob's list shows the counts.
    server.say(&alice, room, "hello all").await;
    server.say(&alice, room, "@bob are you there?").await;
    let (status, rooms) = server.get(Some(&bob.token), "/v1/rooms").await;
    assert_eq!(status, 200, "{rooms}");
    let rooms = rooms.as_array().expect("array");
    assert_eq!(rooms.len(), 1, "{rooms:?}");
    assert_eq!(rooms[0]["id"], json!(room.to_hex()));
    assert_eq!(rooms[0]["unreadItems"], 2);
    assert_eq!(rooms[0]["mentions"], 1);
    assert_eq!(rooms[0]["roomMember"], true);
    assert_eq!(rooms[0]["role"], "member");
    // Alice's own messages are not unread for her.
    let (_, rooms) = server.get(Some(&alice.token), "/v1/rooms").await;
    assert_eq!(rooms[0]["unreadItems"], 0, "{rooms}");
    assert_eq!(rooms[0]["mentions"], 0, "{rooms}");
}

#[tokio::test]
async fn a_bare_username_opens_the_same_one_to_one_room_every_time() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;

    let (status, first) = server
        .post(Some(&alice.token), "/v1/rooms", json!({ "uri": "bob" }))
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["oneToOne"], true);
    assert_eq!(first["githubType"], "ONETOONE");
    assert_eq!(first["security"], "PRIVATE");
    assert_eq!(first["userCount"], 2);
    let room = id_of(&first);

    let (status, second) = server
        .post(Some(&alice.token), "/v1/rooms", json!({ "uri": "bob" }))
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(id_of(&second), room);
    let (status, from_bob) = server
        .post(Some(&bob.token), "/v1/rooms", json!({ "uri": "alice" }))
        .await;
    assert_eq!(status, 200, "{from_bob}");
    assert_eq!(id_of(&from_bob), room);

    // Both can talk there; Carol cannot even see it.
    let room_id = room.parse().expect("room id");
    let hello = server.say(&alice, room_id, "hi bob").await;
    let (status, list) = server
        .get(Some(&bob.token), &format!("/v1/rooms/{room}/chatMessages"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["id"], hello["id"]);
    for path in [
        format!("/v1/rooms/{room}"),
        format!("/v1/rooms/{room}/chatMessages"),
    ] {
        let (status, body) = server.get(Some(&carol.token), &path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }

    // In Alice's room list the room is named after Bob.
    let (_, rooms) = server.get(Some(&alice.token), "/v1/rooms").await;
    let entry = rooms
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["id"] == json!(room))
        .expect("listed");
    assert_eq!(entry["user"]["username"], "bob");
    assert_eq!(entry["url"], "/bob");
    assert_eq!(entry["unreadItems"], 0);
    let (_, rooms) = server.get(Some(&bob.token), "/v1/rooms").await;
    let entry = rooms
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["id"] == json!(room))
        .expect("listed");
    assert_eq!(entry["user"]["username"], "alice");
    assert_eq!(entry["unreadItems"], 1);

    // Not with yourself, not with nobody.
    let (status, body) = server
        .post(Some(&alice.token), "/v1/rooms", json!({ "uri": "alice" }))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server
        .post(
            Some(&alice.token),
            "/v1/rooms",
            json!({ "uri": "nobody-here" }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    // Nobody leaves a one-to-one room.
    let (status, body) = server
        .delete(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/users/{}", alice.user.id),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (_, users) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}/users"))
        .await;
    assert_eq!(member_names(&users), ["alice", "bob"]);
}

#[tokio::test]
async fn room_settings_need_an_admin() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.join(&bob, "acme/general").await;
    let path = format!("/v1/rooms/{room}");

    let (status, got) = server.get(Some(&bob.token), &path).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["uri"], "acme/general");
    assert_eq!(got["topic"], "");

    let (status, updated) = server
        .put(
            Some(&alice.token),
            &path,
            json!({ "topic": "Release planning" }),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["topic"], "Release planning");
    let (_, got) = server.get(None, &path).await;
    assert_eq!(got["topic"], "Release planning");

    let (status, body) = server
        .put(Some(&bob.token), &path, json!({ "topic": "Bob was here" }))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("admin")),
        "{body}"
    );
    let (_, got) = server.get(None, &path).await;
    assert_eq!(
        got["topic"], "Release planning",
        "a refused update changes nothing"
    );

    // A bad security value is 400 and changes nothing.
    let (status, body) = server
        .put(Some(&alice.token), &path, json!({ "security": "OPEN" }))
        .await;
    assert_eq!(status, 400, "{body}");
    let (_, got) = server.get(None, &path).await;
    assert_eq!(got["security"], "PUBLIC");

    // Making the room private hides it from visitors.
    let (status, updated) = server
        .put(Some(&alice.token), &path, json!({ "security": "PRIVATE" }))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["security"], "PRIVATE");
    let (status, _) = server.get(None, &path).await;
    assert_eq!(status, 404);
    let (status, _) = server.get(Some(&bob.token), &path).await;
    assert_eq!(status, 200, "members still see it");

    // Deleting: not by a member; by the admin, and then it is gone.
    let (status, body) = server.delete(Some(&bob.token), &path).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = server.get(Some(&alice.token), &path).await;
    assert_eq!(status, 200);
    let (status, body) = server.delete(Some(&alice.token), &path).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, serde_json::Value::Null);
    let (status, body) = server.get(Some(&alice.token), &path).await;
    assert_eq!(status, 404, "{body}");
    let (_, rooms) = server.get(Some(&bob.token), "/v1/rooms").await;
    assert_eq!(rooms, json!([]));
}

#[tokio::test]
async fn leaving_and_kicking() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.join(&bob, "acme/general").await;
    server.join(&carol, "acme/general").await;
    let users = format!("/v1/rooms/{room}/users");

    // Carol (a member) may not kick Bob.
    let (status, body) = server
        .delete(Some(&carol.token), &format!("{users}/{}", bob.user.id))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("moderator")),
        "{body}"
    );
    let (_, list) = server.get(Some(&alice.token), &users).await;
    assert_eq!(member_names(&list), ["alice", "bob", "carol"]);

    // Bob leaves by himself.
    let (status, body) = server
        .delete(Some(&bob.token), &format!("{users}/{}", bob.user.id))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    let (_, list) = server.get(Some(&alice.token), &users).await;
    assert_eq!(member_names(&list), ["alice", "carol"]);
    let (_, rooms) = server.get(Some(&bob.token), "/v1/rooms").await;
    assert_eq!(rooms, json!([]));
    // Having left, he cannot post.
    let (status, body) = server
        .post(
            Some(&bob.token),
            &format!("/v1/rooms/{room}/chatMessages"),
            json!({ "text": "still here?" }),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    // The admin kicks Carol.
    let (status, body) = server
        .delete(Some(&alice.token), &format!("{users}/{}", carol.user.id))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = server.get(Some(&alice.token), &users).await;
    assert_eq!(member_names(&list), ["alice"]);
    // Kicking someone who is not there is 404.
    let (status, body) = server
        .delete(Some(&alice.token), &format!("{users}/{}", carol.user.id))
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, got) = server.get(None, &format!("/v1/rooms/{room}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["userCount"], 1);
}

#[tokio::test]
async fn banned_users_cannot_post_or_rejoin() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.join(&bob, "acme/general").await;
    server.join(&carol, "acme/general").await;
    server.say(&bob, room, "before the ban").await;
    let bans = format!("/v1/rooms/{room}/bans");

    // Only moderators ban.
    let (status, body) = server
        .post(Some(&carol.token), &bans, json!({ "username": "bob" }))
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = server
        .post(
            Some(&alice.token),
            &bans,
            json!({ "username": "nobody-here" }),
        )
        .await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = server
        .post(Some(&alice.token), &bans, json!({ "username": "bob" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["user"]["username"], "bob");

    let (_, list) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}/users"))
        .await;
    assert_eq!(member_names(&list), ["alice", "carol"]);

    let before = server.snapshot(&alice, room).await;
    let (status, body) = server
        .post(
            Some(&bob.token),
            &format!("/v1/rooms/{room}/chatMessages"),
            json!({ "text": "let me in" }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("banned")),
        "{body}"
    );
    let (status, body) = server
        .post(
            Some(&bob.token),
            "/v1/rooms",
            json!({ "uri": "acme/general" }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("banned")),
        "{body}"
    );
    let (status, body) = server
        .post(
            Some(&bob.token),
            "/v1/user/me/rooms",
            json!({ "id": room.to_hex() }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(server.snapshot(&alice, room).await, before);
    let (_, list) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}/users"))
        .await;
    assert_eq!(member_names(&list), ["alice", "carol"]);

    // Lifting the ban lets him back in.
    let (status, body) = server
        .delete(Some(&alice.token), &format!("{bans}/bob"))
        .await;
    assert_eq!(status, 200, "{body}");
    server.join(&bob, "acme/general").await;
    server.say(&bob, room, "thanks").await;
}

#[tokio::test]
async fn private_rooms_are_invisible_to_outsiders_and_visitors() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mallory = server.user("mallory").await;
    let room = server.room(&alice, "acme/staff", RoomKind::Private).await;
    let secret = server.say(&alice, room, "the launch is on friday").await;
    let secret_id = id_of(&secret);

    let paths = [
        format!("/v1/rooms/{room}"),
        format!("/v1/rooms/{room}/chatMessages"),
        format!("/v1/rooms/{room}/chatMessages/{secret_id}"),
        format!("/v1/rooms/{room}/chatMessages/{secret_id}/thread"),
        format!("/v1/rooms/{room}/chatMessages?q=launch"),
        format!("/v1/rooms/{room}/users"),
        format!("/api/v1/rooms/{room}"),
    ];
    for path in &paths {
        for token in [Some(mallory.token.as_str()), None] {
            let (status, body) = server.get(token, path).await;
            assert_eq!(status, 404, "{path} as {token:?}: {body}");
            assert!(body["error"].is_string(), "{path}: {body}");
            assert!(
                !body.to_string().contains("friday"),
                "{path} leaked: {body}"
            );
        }
    }
    // Joining by URI does not reveal it either, nor does posting or reacting.
    let (status, body) = server
        .post(
            Some(&mallory.token),
            "/v1/rooms",
            json!({ "uri": "acme/staff" }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .post(
            Some(&mallory.token),
            &format!("/v1/rooms/{room}/chatMessages"),
            json!({ "text": "hi" }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .post(
            Some(&mallory.token),
            &format!("/v1/rooms/{room}/chatMessages/{secret_id}/reactions"),
            json!({ "emoji": "👍" }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .post(
            None,
            &format!("/v1/rooms/{room}/chatMessages"),
            json!({ "text": "hi" }),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    let (_, rooms) = server.get(Some(&mallory.token), "/v1/rooms?q=staff").await;
    assert_eq!(rooms["results"], json!([]), "{rooms}");

    let snapshot = server.snapshot(&alice, room).await;
    assert_eq!(snapshot.as_array().expect("array").len(), 1);
    assert_eq!(snapshot[0]["text"], "the launch is on friday");
    assert_eq!(snapshot[0]["reactions"], json!([]));
    let (_, users) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}/users"))
        .await;
    assert_eq!(member_names(&users), ["alice"]);
}

#[tokio::test]
async fn visitors_peek_into_public_rooms_but_posting_needs_a_token_and_membership() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    let hello = server.say(&alice, room, "welcome, everyone").await;

    let (status, list) = server
        .get(None, &format!("/v1/rooms/{room}/chatMessages"))
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().expect("array").len(), 1);
    assert_eq!(list[0]["id"], hello["id"]);
    assert_eq!(list[0]["text"], "welcome, everyone");
    assert_eq!(list[0]["unread"], false);
    let (status, got) = server.get(None, &format!("/v1/rooms/{room}")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["uri"], "acme/general");
    let (status, users) = server.get(None, &format!("/v1/rooms/{room}/users")).await;
    assert_eq!(status, 200);
    assert_eq!(member_names(&users), ["alice"]);
    // Room search finds public rooms for anyone.
    let (status, found) = server.get(None, "/v1/rooms?q=general").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["results"][0]["id"], json!(room.to_hex()));

    let before = server.snapshot(&alice, room).await;
    let (status, body) = server
        .post(
            None,
            &format!("/v1/rooms/{room}/chatMessages"),
            json!({ "text": "anon" }),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].is_string());
    let (status, body) = server
        .post(
            Some(&bob.token),
            &format!("/v1/rooms/{room}/chatMessages"),
            json!({ "text": "drive-by" }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("join the room")),
        "{body}"
    );
    let (status, body) = server
        .post(
            Some(&bob.token),
            &format!("/v1/rooms/{room}/chatMessages/{}/reactions", id_of(&hello)),
            json!({ "emoji": "👍" }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(server.snapshot(&alice, room).await, before);

    server.join(&bob, "acme/general").await;
    let posted = server.say(&bob, room, "now I can talk").await;
    assert_eq!(posted["fromUser"]["username"], "bob");
}

#[tokio::test]
async fn concurrent_requests_agree() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;

    // Both open their one-to-one room at once, several times: one room.
    let opens = (0..6).map(|i| {
        let (me, other) = if i % 2 == 0 {
            (&alice, "bob")
        } else {
            (&bob, "alice")
        };
        server.post(Some(&me.token), "/v1/rooms", json!({ "uri": other }))
    });
    let results = futures_util::future::join_all(opens).await;
    let mut room_ids: Vec<String> = results
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            id_of(body)
        })
        .collect();
    room_ids.dedup();
    assert_eq!(room_ids.len(), 1, "{room_ids:?}");

    // Joining many times at once counts one member.
    let joins = (0..5).map(|_| {
        server.post(
            Some(&bob.token),
            "/v1/rooms",
            json!({ "uri": "acme/general" }),
        )
    });
    for (status, body) in futures_util::future::join_all(joins).await {
        assert_eq!(status, 200, "{body}");
    }
    let (_, got) = server.get(None, &format!("/v1/rooms/{room}")).await;
    assert_eq!(got["userCount"], 2);

    // Reacting many times at once counts one reaction.
    let m = server.say(&alice, room, "race me").await;
    let path = format!("/v1/rooms/{room}/chatMessages/{}/reactions", id_of(&m));
    let reacts = (0..5).map(|_| server.post(Some(&bob.token), &path, json!({ "emoji": "👍" })));
    for (status, body) in futures_util::future::join_all(reacts).await {
        assert_eq!(status, 200, "{body}");
    }
    let (_, r) = server.get(None, &path).await;
    assert_eq!(r, json!([{ "emoji": "👍", "count": 1, "me": false }]));
}

/// A moderator may remove and ban members, but not the room's admin (regression: any
/// moderator could kick or ban an admin).
#[tokio::test]
async fn moderators_cannot_remove_or_ban_admins() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mo = server.user("mo").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.join(&mo, "acme/general").await;
    server.join(&bob, "acme/general").await;
    server
        .chat
        .set_role(
            &weft_chat::Actor::user(alice.user.clone()),
            room,
            mo.user.id,
            weft_core::Role::Moderator,
        )
        .await
        .expect("mo becomes moderator");

    let (status, body) = server
        .delete(
            Some(&mo.token),
            &format!("/v1/rooms/{room}/users/{}", alice.user.id),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = server
        .post(
            Some(&mo.token),
            &format!("/v1/rooms/{room}/bans"),
            json!({ "username": "alice" }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (_, list) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}/users"))
        .await;
    assert_eq!(member_names(&list), ["alice", "bob", "mo"]);

    // Bob, a plain member, can be removed by the moderator.
    let (status, body) = server
        .delete(
            Some(&mo.token),
            &format!("/v1/rooms/{room}/users/{}", bob.user.id),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}/users"))
        .await;
    assert_eq!(member_names(&list), ["alice", "mo"]);
}

#[tokio::test]
async fn room_admins_give_roles_through_the_api() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mo = server.user("mo").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.join(&mo, "acme/general").await;
    let path = format!("/v1/rooms/{room}/users/{}/role", mo.user.id);

    let (status, body) = server
        .put(Some(&mo.token), &path, json!({ "role": "admin" }))
        .await;
    assert_eq!(status, 403, "a member cannot promote themselves: {body}");
    let (status, body) = server
        .put(Some(&alice.token), &path, json!({ "role": "overlord" }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("moderator")),
        "{body}"
    );
    let (status, body) = server
        .put(Some(&alice.token), &path, json!({ "role": "moderator" }))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, users) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}/users"))
        .await;
    let role = users
        .as_array()
        .expect("members")
        .iter()
        .find(|u| u["username"] == "mo")
        .map(|u| u["role"].clone());
    assert_eq!(role, Some(json!("moderator")));
}
