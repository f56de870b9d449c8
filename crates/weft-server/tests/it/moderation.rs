//! Moderation that reaches people of other networks: bans of Matrix users by Matrix ID, the
//! ban list with both kinds of people, kicks of virtual users, bridges moderating on behalf of
//! another network, reasons, and undelivered marks.

use serde_json::json;
use weft_core::RoomKind;

use crate::harness::{TestServer, TestUser, id_of};

const SPAMMER: &str = "@spammer:example.org";

async fn post_as_matrix_user(
    server: &TestServer,
    bridge: &TestUser,
    room: weft_core::Id,
    who: &str,
    text: &str,
) -> (u16, serde_json::Value) {
    server
        .post(
            Some(&bridge.token),
            &format!("/v1/rooms/{room}/chatMessages"),
            json!({ "text": text, "virtualUser": { "type": "matrix", "externalId": who, "displayName": "Spam" } }),
        )
        .await
}

#[tokio::test]
async fn a_matrix_id_is_banned_before_weft_has_met_them_and_listed_with_weft_users() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let bridge = server.user_with("matrix-bridge", false, true).await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.join(&bob, "acme/general").await;
    server.join(&bridge, "acme/general").await;

    let (status, body) = server
        .post(
            Some(&bob.token),
            &format!("/v1/rooms/{room}/bans"),
            json!({ "username": SPAMMER }),
        )
        .await;
    assert_eq!(status, 403, "a plain member cannot ban: {body}");

    let (status, body) = server
        .post(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/bans"),
            json!({ "username": SPAMMER, "reason": "link spam" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["username"], SPAMMER);

    let (status, body) = post_as_matrix_user(&server, &bridge, room, SPAMMER, "buy now").await;
    assert_eq!(
        status, 403,
        "a banned Matrix user's message must be refused: {body}"
    );
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("banned")),
        "{body}"
    );
    let (status, body) =
        post_as_matrix_user(&server, &bridge, room, "@honest:example.org", "hi").await;
    assert_eq!(status, 200, "others still post: {body}");

    let (status, body) = server
        .post(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/bans"),
            json!({ "username": "bob", "reason": "rude" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, list) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}/bans"))
        .await;
    assert_eq!(status, 200, "{list}");
    let entries = list.as_array().expect("a list");
    assert_eq!(entries.len(), 2, "{list}");
    let names: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["user"]["username"].as_str())
        .collect();
    assert!(names.contains(&"bob") && names.contains(&SPAMMER), "{list}");
    for entry in entries {
        assert_eq!(entry["bannedBy"]["username"], "alice", "{entry}");
        assert!(entry["dateBanned"].as_str().is_some(), "{entry}");
    }
    let spam = entries
        .iter()
        .find(|e| e["user"]["username"] == SPAMMER)
        .expect("the Matrix user");
    assert_eq!(spam["reason"], "link spam");
    let (status, _) = server
        .get(Some(&bob.token), &format!("/v1/rooms/{room}/bans"))
        .await;
    assert_eq!(status, 403, "only moderators see the ban list");

    let encoded = SPAMMER.replace('@', "%40").replace(':', "%3A");
    let (status, body) = server
        .delete(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/bans/{encoded}"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_as_matrix_user(&server, &bridge, room, SPAMMER, "sorry").await;
    assert_eq!(status, 200, "unbanned, they may post again: {body}");
}

#[tokio::test]
async fn bans_and_kicks_are_logged_with_moderator_and_reason() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let bridge = server.user_with("matrix-bridge", false, true).await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.join(&bob, "acme/general").await;
    server.join(&bridge, "acme/general").await;
    let (_, said) =
        post_as_matrix_user(&server, &bridge, room, "@visitor:example.org", "hello").await;
    let virtual_id = said["fromUser"]["id"]
        .as_str()
        .expect("virtual id")
        .to_string();
    let from = server.chat.views().last_event_seq().await.expect("log");

    let (status, body) = server
        .delete(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/users/{virtual_id}?reason=off%20topic"),
        )
        .await;
    assert_eq!(status, 200, "kicking a Matrix user: {body}");
    let (status, body) = server
        .delete(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/users/{}?reason=cool%20off", bob.user.id),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    server
        .chat
        .unban(
            &weft_chat::Actor::user(alice.user.clone()),
            room,
            bob.user.id,
        )
        .await
        .expect_err("bob was removed, not banned");

    let events = server
        .chat
        .views()
        .events_after(from, 100)
        .await
        .expect("log");
    let kinds: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::to_value(&e.event).expect("json"))
        .collect();
    let kicked = kinds
        .iter()
        .find(|e| e["type"] == "virtualKicked")
        .expect("the kick is logged");
    assert_eq!(kicked["moderator"], json!(alice.user.id));
    assert_eq!(kicked["reason"], "off topic");
    let left = kinds
        .iter()
        .find(|e| e["type"] == "memberLeft")
        .expect("the removal is logged");
    assert_eq!(left["moderator"], json!(alice.user.id));
    assert_eq!(left["reason"], "cool off");
}

#[tokio::test]
async fn a_bridge_moderates_for_its_network_but_never_a_site_admin() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let root = server.user_with("root", true, false).await;
    let bob = server.user("bob").await;
    let bridge = server.user_with("matrix-bridge", false, true).await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.join(&bob, "acme/general").await;
    server.join(&root, "acme/general").await;
    let said = server.say(&bob, room, "rude words").await;
    let bridge_actor = server
        .chat
        .authenticate_token(&bridge.token)
        .await
        .expect("bridge actor");
    assert!(bridge_actor.is_bridge());

    server
        .chat
        .delete(
            &bridge_actor,
            room,
            id_of(&said).parse().expect("id"),
            None,
            Some("spam".into()),
        )
        .await
        .expect("a bridge deletes on behalf of a Matrix moderator");
    server
        .chat
        .ban(&bridge_actor, room, bob.user.id, None)
        .await
        .expect("a bridge bans on behalf of a Matrix moderator");
    let err = server
        .chat
        .ban(&bridge_actor, room, root.user.id, None)
        .await
        .expect_err("never a site admin");
    assert!(matches!(err, weft_chat::ChatError::Forbidden(_)), "{err}");
    let plain = weft_chat::Actor::user(bob.user.clone());
    assert!(
        server
            .chat
            .mark_undelivered(
                &plain,
                room,
                id_of(&said).parse().expect("id"),
                "matrix",
                "x"
            )
            .await
            .is_err(),
        "only bridges mark messages undelivered"
    );
}

#[tokio::test]
async fn an_undelivered_message_says_so_in_the_api() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bridge = server.user_with("matrix-bridge", false, true).await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    let said = server.say(&alice, room, "hello matrix").await;
    let id = id_of(&said);
    let bridge_actor = server
        .chat
        .authenticate_token(&bridge.token)
        .await
        .expect("bridge actor");
    server
        .chat
        .mark_undelivered(
            &bridge_actor,
            room,
            id.parse().expect("id"),
            "matrix",
            "the puppet is banned",
        )
        .await
        .expect("marked");
    let (status, message) = server
        .get(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages/{id}"),
        )
        .await;
    assert_eq!(status, 200, "{message}");
    assert_eq!(
        message["undelivered"],
        json!({ "network": "matrix", "reason": "the puppet is banned" })
    );
    let (_, page) = server
        .get(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages"),
        )
        .await;
    let listed = page
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["id"] == id)
        .expect("the message is listed");
    assert_eq!(listed["undelivered"]["network"], "matrix", "{listed}");
}

#[tokio::test]
async fn a_ban_committed_between_preparing_and_writing_a_post_still_wins() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bridge = server.user_with("matrix-bridge", false, true).await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    let bridge_actor = server
        .chat
        .authenticate_token(&bridge.token)
        .await
        .expect("bridge actor");
    let post = weft_chat::NewPost {
        text: "prepared before the ban".into(),
        as_virtual: Some(weft_chat::PostAs {
            kind: "matrix".into(),
            external_id: SPAMMER.into(),
            display_name: "Spam".into(),
            avatar_url: None,
        }),
        ..weft_chat::NewPost::default()
    };
    let prepared = server
        .chat
        .prepare_post(&bridge_actor, room, post)
        .await
        .expect("not banned yet");
    server
        .chat
        .ban_virtual(
            &weft_chat::Actor::user(alice.user.clone()),
            room,
            "matrix",
            SPAMMER,
            None,
        )
        .await
        .expect("banned");
    let written = server
        .chat
        .write_batch(vec![weft_chat::Change::Post(prepared)], |_| {
            Box::pin(async { Ok(true) })
        })
        .await;
    assert!(
        written.is_err(),
        "the ban must stop a post prepared before it"
    );
    let (_, page) = server
        .get(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages"),
        )
        .await;
    assert_eq!(page.as_array().map(Vec::len), Some(0), "{page}");
}

/// A batch holds changes prepared earlier; the message one of them is about may be deleted
/// meanwhile (by a moderator on weft, say). That change then writes nothing, and the rest of
/// the batch (here a post, and a reaction to a message still there) is written: a bridge's
/// transaction must never wedge on one stale change.
#[tokio::test]
async fn a_batch_skips_changes_whose_message_went_away_since_they_were_prepared() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bridge = server.user_with("matrix-bridge", false, true).await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    let bridge_actor = server
        .chat
        .authenticate_token(&bridge.token)
        .await
        .expect("bridge actor");
    let who = weft_chat::PostAs {
        kind: "matrix".into(),
        external_id: "@maria:hs".into(),
        display_name: "Maria".into(),
        avatar_url: None,
    };
    let post = |text: &str| weft_chat::NewPost {
        text: text.into(),
        as_virtual: Some(who.clone()),
        ..weft_chat::NewPost::default()
    };
    let chat = &server.chat;
    let doomed = chat
        .post(&bridge_actor, room, post("to be deleted"))
        .await
        .expect("posted");
    let kept = chat
        .post(&bridge_actor, room, post("to be kept"))
        .await
        .expect("posted");
    let doomed_id = doomed.message.id;
    let reaction_to_doomed = chat
        .prepare_reaction(
            &bridge_actor,
            room,
            doomed_id,
            "👍",
            true,
            Some(who.clone()),
        )
        .await
        .expect("prepared");
    let edit_of_doomed = chat
        .prepare_edit(&bridge_actor, room, doomed_id, "edited", Some(who.clone()))
        .await
        .expect("prepared");
    let reaction_to_kept = chat
        .prepare_reaction(
            &bridge_actor,
            room,
            kept.message.id,
            "🎉",
            true,
            Some(who.clone()),
        )
        .await
        .expect("prepared");
    let late_post = chat
        .prepare_post(&bridge_actor, room, post("after the deletion"))
        .await
        .expect("prepared");
    // Alice, the room's admin, deletes the message before the batch is written.
    chat.delete(
        &weft_chat::Actor::user(alice.user.clone()),
        room,
        doomed_id,
        None,
        None,
    )
    .await
    .expect("deleted");
    let before_batch = chat.views().last_event_seq().await.expect("seq");
    let written = chat
        .write_batch(
            vec![
                weft_chat::Change::Reaction(reaction_to_doomed),
                weft_chat::Change::Edit(edit_of_doomed),
                weft_chat::Change::Reaction(reaction_to_kept),
                weft_chat::Change::Post(late_post),
            ],
            |_| Box::pin(async { Ok(true) }),
        )
        .await
        .expect("the batch is written despite the stale changes");
    assert!(written);
    let logged = chat
        .views()
        .events_after(before_batch, 100)
        .await
        .expect("the log");
    let about_doomed: Vec<_> = logged
        .iter()
        .filter(|e| {
            matches!(e.event,
                weft_core::Event::ReactionAdded { message_id, .. }
                | weft_core::Event::MessageEdited { message_id, .. } if message_id == doomed_id)
        })
        .collect();
    assert!(
        about_doomed.is_empty(),
        "nothing logged about the deleted message: {about_doomed:?}"
    );
    assert_eq!(
        logged.len(),
        2,
        "the kept reaction and the post: {logged:?}"
    );
    let (_, page) = server
        .get(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages"),
        )
        .await;
    let texts: Vec<&str> = page
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["to be kept", "after the deletion"], "{page}");
    let kept_json = &page[0];
    assert_eq!(
        kept_json["reactions"],
        json!([{ "count": 1, "emoji": "🎉", "me": false }]),
        "{kept_json}"
    );
}

/// A bridge may rename a room and change its topic (the other network's member had the power
/// there), but never change who may read it: that stays with weft's admins.
#[tokio::test]
async fn a_bridge_may_rename_a_room_but_not_change_its_privacy() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bridge = server.user_with("matrix-bridge", false, true).await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    let bridge_actor = server
        .chat
        .authenticate_token(&bridge.token)
        .await
        .expect("bridge actor");
    let renamed = server
        .chat
        .update_room(
            &bridge_actor,
            room,
            weft_chat::RoomPatch {
                name: Some("General chat".into()),
                topic: Some("from Matrix".into()),
                ..weft_chat::RoomPatch::default()
            },
        )
        .await
        .expect("renamed");
    assert_eq!(
        (renamed.name.as_str(), renamed.topic.as_str()),
        ("General chat", "from Matrix")
    );
    let private = server
        .chat
        .update_room(
            &bridge_actor,
            room,
            weft_chat::RoomPatch {
                kind: Some(RoomKind::Private),
                ..weft_chat::RoomPatch::default()
            },
        )
        .await;
    assert!(
        matches!(private, Err(weft_chat::ChatError::Forbidden(_))),
        "{private:?}"
    );
    // An ordinary member may do neither.
    let bob = server.user("bob").await;
    let bob_actor = server
        .chat
        .authenticate_token(&bob.token)
        .await
        .expect("bob");
    let refused = server
        .chat
        .update_room(
            &bob_actor,
            room,
            weft_chat::RoomPatch {
                name: Some("mine".into()),
                ..weft_chat::RoomPatch::default()
            },
        )
        .await;
    assert!(
        matches!(refused, Err(weft_chat::ChatError::Forbidden(_))),
        "{refused:?}"
    );
}

/// The usernames of a member list, in order.
fn usernames(members: &serde_json::Value) -> Vec<&str> {
    members
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["username"].as_str().unwrap_or_default())
        .collect()
}

fn matrix_person(mxid: &str, name: &str) -> weft_chat::PostAs {
    weft_chat::PostAs {
        kind: "matrix".into(),
        external_id: mxid.into(),
        display_name: name.into(),
        avatar_url: None,
    }
}

#[tokio::test]
async fn people_a_bridge_lists_in_a_room_are_members_until_they_leave_or_are_banned() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let bridge = server.user_with("matrix-bridge", false, true).await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.join(&bob, "acme/general").await;
    let bridge_actor = server
        .chat
        .authenticate_token(&bridge.token)
        .await
        .expect("bridge actor");

    let plain = weft_chat::Actor::user(bob.user.clone());
    let refused = server
        .chat
        .join_virtual(&plain, room, vec![matrix_person("@carol:hs", "Carol")])
        .await
        .expect_err("only bridges list people of other networks");
    assert!(
        matches!(refused, weft_chat::ChatError::Forbidden(_)),
        "{refused}"
    );

    let people = vec![
        matrix_person("@carol:hs", "Carol"),
        matrix_person("@dave:hs", "Dave"),
        matrix_person(SPAMMER, "Spam"),
    ];
    let listed = server
        .chat
        .join_virtual(&bridge_actor, room, people.clone())
        .await
        .expect("listed");
    assert_eq!(listed, 3);
    let again = server
        .chat
        .join_virtual(&bridge_actor, room, people)
        .await
        .expect("listed again");
    assert_eq!(again, 0, "listing someone twice changes nothing");

    let (status, got) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}"))
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got["userCount"], 5,
        "two weft members and three Matrix people"
    );
    let (_, members) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}/users"))
        .await;
    let names = usernames(&members);
    assert_eq!(
        names,
        ["alice", "bob", "@carol:hs", "@dave:hs", SPAMMER],
        "weft members first, then the Matrix people by name"
    );
    assert_eq!(members[2]["virtual"], true);
    assert_eq!(members[2]["badge"], "matrix");
    assert_eq!(members[2]["displayName"], "Carol");

    // Pages run across both kinds of people.
    let (_, second) = server
        .get(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/users?limit=2&skip=2"),
        )
        .await;
    assert_eq!(usernames(&second), ["@carol:hs", "@dave:hs"]);
    let (_, found) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}/users?q=car"))
        .await;
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");

    // A ban takes someone off the list; leaving too; neither can be listed while banned.
    let (status, _) = server
        .post(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/bans"),
            json!({ "username": SPAMMER }),
        )
        .await;
    assert_eq!(status, 200);
    let left = server
        .chat
        .leave_virtual(&bridge_actor, room, "matrix", vec!["@dave:hs".into()])
        .await
        .expect("unlisted");
    assert_eq!(left, 1);
    let banned_again = server
        .chat
        .join_virtual(&bridge_actor, room, vec![matrix_person(SPAMMER, "Spam")])
        .await
        .expect("answered");
    assert_eq!(banned_again, 0, "a banned person is not listed");
    let (_, got) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}"))
        .await;
    assert_eq!(got["userCount"], 3);
    let (_, members) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}/users"))
        .await;
    assert_eq!(members.as_array().map(Vec::len), Some(3), "{members}");
}

#[tokio::test]
async fn a_bridge_lists_and_unlists_its_people_over_the_api_and_nobody_else_may() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bridge = server.user_with("matrix-bridge", false, true).await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    let person = json!({ "type": "matrix", "externalId": "@carol:hs", "displayName": "Carol" });

    let (status, body) = server
        .post(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/virtualUsers"),
            person.clone(),
        )
        .await;
    assert_eq!(status, 403, "only bridges: {body}");
    let (status, listed) = server
        .post(
            Some(&bridge.token),
            &format!("/v1/rooms/{room}/virtualUsers"),
            person.clone(),
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["virtual"], true);
    assert_eq!(listed["displayName"], "Carol");
    let (_, members) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}/users"))
        .await;
    assert_eq!(members.as_array().map(Vec::len), Some(2), "{members}");

    let id = listed["id"].as_str().expect("an id");
    let (status, _) = server
        .delete(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/virtualUsers/{id}"),
        )
        .await;
    assert_eq!(status, 403, "only bridges unlist");
    let (status, _) = server
        .delete(
            Some(&bridge.token),
            &format!("/v1/rooms/{room}/virtualUsers/{id}"),
        )
        .await;
    assert_eq!(status, 200);
    let (_, members) = server
        .get(Some(&alice.token), &format!("/v1/rooms/{room}/users"))
        .await;
    assert_eq!(members.as_array().map(Vec::len), Some(1), "{members}");

    // Banned: refused, with a clear error.
    let (status, _) = server
        .post(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/bans"),
            json!({ "username": "@carol:hs" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .post(
            Some(&bridge.token),
            &format!("/v1/rooms/{room}/virtualUsers"),
            person,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("banned"),
        "{body}"
    );
}
