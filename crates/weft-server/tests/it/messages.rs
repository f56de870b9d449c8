//! The timeline: posting (JSON and forms), rendering, edits, deletes, threads, pages,
//! search, reactions, unread items and virtual users.

use std::time::Duration;

use serde_json::{Value, json};
use weft_chat::ChatConfig;
use weft_core::{Id, RoomKind};
use weft_server::ServerConfig;

use crate::harness::{TestServer, TestUser, id_of, ids};

/// A server with a public room `acme/general` run by Alice, which Bob has joined.
async fn room_with_two() -> (TestServer, TestUser, TestUser, Id) {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.join(&bob, "acme/general").await;
    (server, alice, bob, room)
}

fn messages_path(room: Id) -> String {
    format!("/v1/rooms/{room}/chatMessages")
}

#[tokio::test]
async fn posting_json_and_forms_renders_gitter_messages() {
    let (server, alice, bob, room) = room_with_two().await;

    let (status, m) = server
        .post(
            Some(&alice.token),
            &messages_path(room),
            json!({ "text": "hey @bob :smile: see #42 and https://example.com/docs, also $x^2$" }),
        )
        .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(
        m["text"],
        "hey @bob :smile: see #42 and https://example.com/docs, also $x^2$"
    );
    let html = m["html"].as_str().expect("html");
    assert!(
        html.contains(
            r#"<span class="mention" data-link-type="mention" data-screen-name="bob">@bob</span>"#
        ),
        "{html}"
    );
    assert!(html.contains('😄'), "{html}");
    assert!(html.contains("<math"), "{html}");
    assert!(html.contains(r#"data-issue="42""#), "{html}");
    assert!(
        html.contains(r#"href="https://example.com/docs""#),
        "{html}"
    );
    assert_eq!(
        m["mentions"],
        json!([{ "screenName": "bob", "userId": bob.user.id, "userIds": [bob.user.id] }])
    );
    assert_eq!(m["issues"], json!([{ "number": "42" }]));
    assert_eq!(m["urls"], json!([{ "url": "https://example.com/docs" }]));
    assert_eq!(m["fromUser"]["id"], json!(alice.user.id));
    assert_eq!(m["fromUser"]["username"], "alice");
    assert_eq!(m["status"], false);
    assert_eq!(m["editedAt"], Value::Null);
    assert_eq!(m["unread"], false);
    assert_eq!(m["threadMessageCount"], 0);
    assert_eq!(m["reactions"], json!([]));
    assert_eq!(m["v"], 1);
    let sent = m["sent"].as_str().expect("sent");
    assert!(sent.ends_with('Z') && sent.len() == 24, "{sent}");
    assert_eq!(id_of(&m).len(), 24);

    // A mention of someone who does not exist stays a screen name without a user id.
    let m2 = server.say(&alice, room, "ping @ghost").await;
    assert_eq!(m2["mentions"], json!([{ "screenName": "ghost" }]));

    // Form-encoded, as old bots send.
    let (status, form) = server
        .raw(
            reqwest::Method::POST,
            Some(&bob.token),
            &messages_path(room),
            "application/x-www-form-urlencoded",
            "text=sent+as+a+form+%26+decoded",
        )
        .await;
    assert_eq!(status, 200, "{form}");
    assert_eq!(form["text"], "sent as a form & decoded");
    assert_eq!(form["fromUser"]["username"], "bob");
    let (status, form_status) = server
        .raw(
            reqwest::Method::POST,
            Some(&bob.token),
            &messages_path(room),
            "application/x-www-form-urlencoded; charset=utf-8",
            "text=waves&status=true",
        )
        .await;
    assert_eq!(status, 200, "{form_status}");
    assert_eq!(form_status["status"], true);

    // Everything reads back in order, with the same rendering.
    let list = server.snapshot(&alice, room).await;
    assert_eq!(
        ids(&list),
        [id_of(&m), id_of(&m2), id_of(&form), id_of(&form_status)]
    );
    assert_eq!(list[0]["html"], m["html"]);
    let (status, one) = server
        .get(
            Some(&bob.token),
            &format!("{}/{}", messages_path(room), id_of(&m)),
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["html"], m["html"]);
    assert_eq!(one["mentions"], m["mentions"]);
    assert_eq!(one["unread"], true, "Bob has not read Alice's message yet");
}

#[tokio::test]
async fn status_messages_from_me_prefix_or_flag() {
    let (server, alice, _bob, room) = room_with_two().await;
    let me = server.say(&alice, room, "/me is deploying").await;
    assert_eq!(me["status"], true);
    assert_eq!(me["text"], "is deploying");
    let (status, flagged) = server
        .post(
            Some(&alice.token),
            &messages_path(room),
            json!({ "text": "is done", "status": true }),
        )
        .await;
    assert_eq!(status, 200, "{flagged}");
    assert_eq!(flagged["status"], true);
    assert_eq!(flagged["text"], "is done");
    let plain = server.say(&alice, room, "/meh not a status").await;
    assert_eq!(plain["status"], false);
    assert_eq!(plain["text"], "/meh not a status");
    let list = server.snapshot(&alice, room).await;
    let statuses: Vec<&Value> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|m| &m["status"])
        .collect();
    assert_eq!(statuses, [&json!(true), &json!(true), &json!(false)]);
}

#[tokio::test]
async fn message_length_limit_is_4096_characters() {
    let (server, alice, _bob, room) = room_with_two().await;
    let (status, body) = server
        .post(
            Some(&alice.token),
            &messages_path(room),
            json!({ "text": "a".repeat(4097) }),
        )
        .await;
    assert_eq!(
        status,
        400,
        "{}",
        body.to_string().chars().take(200).collect::<String>()
    );
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("4096")),
        "{body}"
    );
    assert_eq!(server.snapshot(&alice, room).await, json!([]));

    // Characters, not bytes: 4096 two-byte characters are fine.
    let long = "é".repeat(4096);
    let m = server.say(&alice, room, &long).await;
    assert_eq!(m["text"].as_str().map(|t| t.chars().count()), Some(4096));
    let max = server.say(&alice, room, &"b".repeat(4096)).await;
    assert_eq!(max["text"].as_str().map(str::len), Some(4096));

    // Empty and blank texts are refused.
    for text in ["", "   \n  "] {
        let (status, body) = server
            .post(
                Some(&alice.token),
                &messages_path(room),
                json!({ "text": text }),
            )
            .await;
        assert_eq!(status, 400, "{text:?}: {body}");
    }
    let (status, body) = server
        .post(Some(&alice.token), &messages_path(room), json!({}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("text")),
        "{body}"
    );
    assert_eq!(
        ids(&server.snapshot(&alice, room).await),
        [id_of(&m), id_of(&max)]
    );
}

#[tokio::test]
async fn editing_is_for_the_author_within_the_window() {
    let (server, alice, bob, room) = room_with_two().await;
    let m = server.say(&alice, room, "helo wrold").await;
    let path = format!("{}/{}", messages_path(room), id_of(&m));

    let (status, edited) = server
        .put(
            Some(&alice.token),
            &path,
            json!({ "text": "hello **world** @bob" }),
        )
        .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["id"], m["id"]);
    assert_eq!(edited["text"], "hello **world** @bob");
    assert!(
        edited["html"]
            .as_str()
            .is_some_and(|h| h.contains("<strong>world</strong>")),
        "{edited}"
    );
    assert_eq!(edited["mentions"][0]["userId"], json!(bob.user.id));
    assert!(edited["editedAt"].is_string(), "{edited}");
    assert!(edited["v"].as_i64() > m["v"].as_i64(), "{edited}");
    assert_eq!(edited["sent"], m["sent"]);

    let (_, read) = server.get(Some(&bob.token), &path).await;
    assert_eq!(read["text"], "hello **world** @bob");
    assert_eq!(read["editedAt"], edited["editedAt"]);

    // Bob may not edit Alice's message, and trying changes nothing.
    let before = server.snapshot(&alice, room).await;
    let (status, body) = server
        .put(Some(&bob.token), &path, json!({ "text": "pwned" }))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("own messages")),
        "{body}"
    );
    // Nor may a visitor, nor an empty text.
    let (status, _) = server.put(None, &path, json!({ "text": "anon" })).await;
    assert_eq!(status, 401);
    let (status, body) = server
        .put(Some(&alice.token), &path, json!({ "text": " " }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(server.snapshot(&alice, room).await, before);

    // An unknown message is 404.
    let (status, body) = server
        .put(
            Some(&alice.token),
            &format!("{}/{}", messages_path(room), Id::generate()),
            json!({ "text": "x" }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn editing_after_the_window_is_refused() {
    let server = TestServer::start_with(
        ChatConfig {
            edit_window_ms: 0,
            ..Default::default()
        },
        ServerConfig::default(),
    )
    .await;
    let alice = server.user("alice").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    let m = server.say(&alice, room, "typo").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = server.snapshot(&alice, room).await;
    let (status, body) = server
        .put(
            Some(&alice.token),
            &format!("{}/{}", messages_path(room), id_of(&m)),
            json!({ "text": "fixed" }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("time to edit")),
        "{body}"
    );
    let after = server.snapshot(&alice, room).await;
    assert_eq!(after, before);
    assert_eq!(after[0]["text"], "typo");
    assert_eq!(after[0]["editedAt"], Value::Null);
}

#[tokio::test]
async fn deleting_removes_messages_and_keeps_thread_heads_as_placeholders() {
    let (server, alice, bob, room) = room_with_two().await;
    let keep = server.say(&alice, room, "keep me").await;
    let gone = server.say(&bob, room, "delete me").await;
    let gone_path = format!("{}/{}", messages_path(room), id_of(&gone));

    // Alice is the room's admin, but first: Carol, a plain member, may not delete Bob's message.
    let carol = server.user("carol").await;
    server.join(&carol, "acme/general").await;
    let before = server.snapshot(&alice, room).await;
    let (status, body) = server.delete(Some(&carol.token), &gone_path).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("own messages")),
        "{body}"
    );
    assert_eq!(server.snapshot(&alice, room).await, before);

    let (status, body) = server.delete(Some(&bob.token), &gone_path).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, Value::Null);
    let (status, body) = server.get(Some(&bob.token), &gone_path).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(ids(&server.snapshot(&alice, room).await), [id_of(&keep)]);
    let (status, body) = server.delete(Some(&bob.token), &gone_path).await;
    assert_eq!(status, 404, "deleting twice: {body}");

    // A thread head with replies stays as a placeholder; a moderator (the admin) deletes it.
    let head = server.say(&bob, room, "thread head").await;
    let (status, reply) = server
        .post(
            Some(&alice.token),
            &messages_path(room),
            json!({ "text": "a reply", "parentId": id_of(&head) }),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let head_path = format!("{}/{}", messages_path(room), id_of(&head));
    let (status, body) = server.delete(Some(&alice.token), &head_path).await;
    assert_eq!(status, 204, "{body}");
    let (status, placeholder) = server.get(Some(&bob.token), &head_path).await;
    assert_eq!(status, 200, "{placeholder}");
    assert_eq!(placeholder["deleted"], true);
    assert_eq!(placeholder["text"], "");
    assert_eq!(placeholder["html"], "");
    assert_eq!(placeholder["threadMessageCount"], 1);
    let (status, thread) = server
        .get(Some(&bob.token), &format!("{head_path}/thread"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(ids(&thread), [id_of(&reply)]);
    let main = server.snapshot(&alice, room).await;
    let main_ids = ids(&main);
    assert!(
        main_ids.contains(&id_of(&head)),
        "the placeholder stays in the feed"
    );
    // A placeholder cannot be edited or reacted to.
    let (status, body) = server
        .put(Some(&bob.token), &head_path, json!({ "text": "back" }))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server
        .post(
            Some(&bob.token),
            &format!("{head_path}/reactions"),
            json!({ "emoji": "👍" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(server.snapshot(&alice, room).await, main);
}

#[tokio::test]
async fn threads_count_replies_and_stay_out_of_the_main_feed() {
    let (server, alice, bob, room) = room_with_two().await;
    let parent = server.say(&alice, room, "what should we name it?").await;
    let after = server.say(&alice, room, "unrelated").await;
    let mut replies = Vec::new();
    for text in ["weft", "warp"] {
        let (status, r) = server
            .post(
                Some(&bob.token),
                &messages_path(room),
                json!({ "text": text, "parentId": id_of(&parent) }),
            )
            .await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["parentId"], parent["id"]);
        replies.push(r);
    }
    // A reply to a reply joins the same thread.
    let (status, nested) = server
        .post(
            Some(&alice.token),
            &messages_path(room),
            json!({ "text": "weft it is", "parentId": id_of(&replies[0]) }),
        )
        .await;
    assert_eq!(status, 200, "{nested}");
    assert_eq!(nested["parentId"], parent["id"]);
    replies.push(nested);
    let reply_ids: Vec<String> = replies.iter().map(id_of).collect();

    let (_, head) = server
        .get(
            Some(&alice.token),
            &format!("{}/{}", messages_path(room), id_of(&parent)),
        )
        .await;
    assert_eq!(head["threadMessageCount"], 3);

    let (_, main) = server.get(Some(&alice.token), &messages_path(room)).await;
    assert_eq!(ids(&main), [id_of(&parent), id_of(&after)]);
    assert_eq!(main[0]["threadMessageCount"], 3);
    let (_, all) = server
        .get(
            Some(&alice.token),
            &format!("{}?includeThreads=true", messages_path(room)),
        )
        .await;
    let mut expected = vec![id_of(&parent), id_of(&after)];
    expected.extend(reply_ids.iter().cloned());
    assert_eq!(ids(&all), expected);

    let (status, thread) = server
        .get(
            None,
            &format!("{}/{}/thread", messages_path(room), id_of(&parent)),
        )
        .await;
    assert_eq!(status, 200, "{thread}");
    assert_eq!(ids(&thread), reply_ids);
    assert_eq!(thread[0]["text"], "weft");

    // Deleting a reply lowers the count.
    let (status, _) = server
        .delete(
            Some(&bob.token),
            &format!("{}/{}", messages_path(room), reply_ids[1]),
        )
        .await;
    assert_eq!(status, 204);
    let (_, head) = server
        .get(
            Some(&alice.token),
            &format!("{}/{}", messages_path(room), id_of(&parent)),
        )
        .await;
    assert_eq!(head["threadMessageCount"], 2);

    // A parent that does not exist, or lives in another room, is refused and posts nothing.
    let other = server.room(&alice, "acme/other", RoomKind::Public).await;
    let elsewhere = server.say(&alice, other, "over here").await;
    let before = server.snapshot(&alice, room).await;
    let (status, body) = server
        .post(
            Some(&alice.token),
            &messages_path(room),
            json!({ "text": "x", "parentId": Id::generate().to_hex() }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .post(
            Some(&alice.token),
            &messages_path(room),
            json!({ "text": "x", "parentId": id_of(&elsewhere) }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server
        .post(
            Some(&alice.token),
            &messages_path(room),
            json!({ "text": "x", "parentId": "nope" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(server.snapshot(&alice, room).await, before);
}

#[tokio::test]
async fn pagination_by_limit_before_after_and_around() {
    let (server, alice, _bob, room) = room_with_two().await;
    let mut all = Vec::new();
    for i in 0..30 {
        all.push(id_of(
            &server.say(&alice, room, &format!("message {i}")).await,
        ));
    }
    let page = |query: String| {
        let server = &server;
        let token = alice.token.clone();
        async move {
            let (status, body) = server
                .get(Some(&token), &format!("{}?{query}", messages_path(room)))
                .await;
            assert_eq!(status, 200, "{query}: {body}");
            ids(&body)
        }
    };

    assert_eq!(
        page(String::new()).await,
        all,
        "default limit 50 returns all 30, oldest first"
    );
    assert_eq!(page("limit=10".into()).await, all[20..30]);
    assert_eq!(page("limit=1".into()).await, all[29..30]);
    assert_eq!(page("limit=100".into()).await, all);
    assert_eq!(
        page(format!("beforeId={}&limit=5", all[20])).await,
        all[15..20]
    );
    assert_eq!(page(format!("beforeId={}", all[3])).await, all[0..3]);
    assert_eq!(
        page(format!("beforeId={}", all[0])).await,
        Vec::<String>::new()
    );
    assert_eq!(page(format!("afterId={}&limit=3", all[5])).await, all[6..9]);
    assert_eq!(page(format!("afterId={}", all[25])).await, all[26..30]);
    assert_eq!(
        page(format!("afterId={}", all[29])).await,
        Vec::<String>::new()
    );
    assert_eq!(
        page(format!("aroundId={}&limit=5", all[15])).await,
        all[13..18]
    );
    let edge = page(format!("aroundId={}&limit=4", all[0])).await;
    assert!(!edge.is_empty() && edge.len() <= 4, "{edge:?}");
    assert_eq!(
        edge,
        all[..edge.len()],
        "around the first message: a run from the start"
    );
    let edge = page(format!("aroundId={}&limit=4", all[29])).await;
    assert!(!edge.is_empty() && edge.len() <= 4, "{edge:?}");
    assert_eq!(
        edge,
        all[30 - edge.len()..],
        "around the last message: a run up to the end"
    );
    assert!(edge.contains(&all[29]));

    // Walking backwards page by page visits every message exactly once.
    let mut walked: Vec<String> = page("limit=7".into()).await;
    loop {
        let older = page(format!("beforeId={}&limit=7", walked[0])).await;
        if older.is_empty() {
            break;
        }
        walked.splice(0..0, older);
    }
    assert_eq!(walked, all);

    // Bad limits and anchors are 400 / 404 with an error.
    let before = server.snapshot(&alice, room).await;
    for bad in ["limit=0", "limit=101", "limit=-1"] {
        let (status, body) = server
            .get(
                Some(&alice.token),
                &format!("{}?{bad}", messages_path(room)),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("limit")),
            "{bad}: {body}"
        );
    }
    let (status, body) = server
        .get(
            Some(&alice.token),
            &format!("{}?beforeId=xyz", messages_path(room)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("beforeId")),
        "{body}"
    );
    let (status, body) = server
        .get(
            Some(&alice.token),
            &format!("{}?afterId={}", messages_path(room), Id::generate()),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(server.snapshot(&alice, room).await, before);
}

#[tokio::test]
async fn search_finds_words() {
    let (server, alice, bob, room) = room_with_two().await;
    let fox1 = server.say(&alice, room, "the quick brown fox").await;
    server.say(&bob, room, "jumps over the lazy dog").await;
    let fox2 = server.say(&bob, room, "another fox appears").await;
    let (status, found) = server
        .get(None, &format!("{}?q=fox", messages_path(room)))
        .await;
    assert_eq!(status, 200, "{found}");
    let mut found_ids = ids(&found);
    found_ids.sort();
    let mut expected = vec![id_of(&fox1), id_of(&fox2)];
    expected.sort();
    assert_eq!(found_ids, expected);
    let (_, found) = server
        .get(None, &format!("{}?q=lazy", messages_path(room)))
        .await;
    assert_eq!(found.as_array().map(Vec::len), Some(1));
    assert_eq!(found[0]["text"], "jumps over the lazy dog");
    let (_, found) = server
        .get(None, &format!("{}?q=elephant", messages_path(room)))
        .await;
    assert_eq!(found, json!([]));
    // Search follows edits and deletes.
    let (status, _) = server
        .put(
            Some(&alice.token),
            &format!("{}/{}", messages_path(room), id_of(&fox1)),
            json!({ "text": "the quick brown cat" }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, found) = server
        .get(None, &format!("{}?q=fox", messages_path(room)))
        .await;
    assert_eq!(ids(&found), [id_of(&fox2)]);
    let (_, found) = server
        .get(None, &format!("{}?q=cat", messages_path(room)))
        .await;
    assert_eq!(ids(&found), [id_of(&fox1)]);
    let (status, _) = server
        .delete(
            Some(&bob.token),
            &format!("{}/{}", messages_path(room), id_of(&fox2)),
        )
        .await;
    assert_eq!(status, 204);
    let (_, found) = server
        .get(None, &format!("{}?q=fox", messages_path(room)))
        .await;
    assert_eq!(found, json!([]));
    // Search terms with syntax characters do not break the query.
    let (status, found) = server
        .get(None, &format!("{}?q=%22fox%20AND%20(", messages_path(room)))
        .await;
    assert_eq!(status, 200, "{found}");
}

#[tokio::test]
async fn lookups_user_lists_authors_once() {
    let (server, alice, bob, room) = room_with_two().await;
    server.say(&alice, room, "one").await;
    server.say(&bob, room, "two").await;
    server.say(&alice, room, "three").await;
    let (status, body) = server
        .get(
            Some(&bob.token),
            &format!("{}?lookups=user", messages_path(room)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    let from: Vec<&Value> = items.iter().map(|m| &m["fromUser"]).collect();
    let a = json!(alice.user.id);
    let b = json!(bob.user.id);
    assert_eq!(from, [&a, &b, &a]);
    let users = body["lookups"]["users"].as_object().expect("lookups.users");
    assert_eq!(users.len(), 2);
    assert_eq!(users[&alice.user.id.to_hex()]["username"], "alice");
    assert_eq!(users[&bob.user.id.to_hex()]["username"], "bob");
    assert_eq!(items[1]["text"], "two");
}

#[tokio::test]
async fn reactions_add_once_and_remove() {
    let (server, alice, bob, room) = room_with_two().await;
    let m = server.say(&alice, room, "shipped!").await;
    let path = format!("{}/{}/reactions", messages_path(room), id_of(&m));

    let (status, r) = server
        .post(Some(&bob.token), &path, json!({ "emoji": ":tada:" }))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r, json!([{ "emoji": "🎉", "count": 1, "me": true }]));
    let (status, r) = server
        .post(Some(&bob.token), &path, json!({ "emoji": ":tada:" }))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r,
        json!([{ "emoji": "🎉", "count": 1, "me": true }]),
        "reacting twice counts once"
    );
    let (status, r) = server
        .post(Some(&bob.token), &path, json!({ "emoji": "🎉" }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        r[0]["count"], 1,
        "the shortcode and the emoji are the same reaction"
    );

    // Others see the count without `me`; a second person raises it.
    let (status, r) = server.get(Some(&alice.token), &path).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r, json!([{ "emoji": "🎉", "count": 1, "me": false }]));
    let (_, r) = server
        .post(Some(&alice.token), &path, json!({ "emoji": ":tada:" }))
        .await;
    assert_eq!(r, json!([{ "emoji": "🎉", "count": 2, "me": true }]));
    let (_, listed) = server.get(Some(&bob.token), &messages_path(room)).await;
    assert_eq!(
        listed[0]["reactions"],
        json!([{ "emoji": "🎉", "count": 2, "me": true }])
    );

    // Unknown shortcodes and junk are refused without changing anything.
    let before = server.snapshot(&alice, room).await;
    for bad in [":definitely-not-an-emoji:", "two words", ""] {
        let (status, body) = server
            .post(Some(&bob.token), &path, json!({ "emoji": bad }))
            .await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert!(body["error"].is_string());
    }
    assert_eq!(server.snapshot(&alice, room).await, before);

    // Removing, by Unicode or by shortcode.
    let (status, r) = server.delete(Some(&bob.token), &format!("{path}/🎉")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r, json!([{ "emoji": "🎉", "count": 1, "me": false }]));
    let (status, r) = server
        .delete(Some(&alice.token), &format!("{path}/:tada:"))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r, json!([]));
    let (_, one) = server
        .get(
            Some(&bob.token),
            &format!("{}/{}", messages_path(room), id_of(&m)),
        )
        .await;
    assert_eq!(one["reactions"], json!([]));
}

#[tokio::test]
async fn unread_items_and_read_receipts() {
    let (server, alice, bob, room) = room_with_two().await;
    let unread_path = format!("/v1/user/{}/rooms/{room}/unreadItems", bob.user.id);

    let (status, items) = server.get(Some(&bob.token), &unread_path).await;
    assert_eq!(status, 200, "{items}");
    assert_eq!(items, json!({ "chat": [], "mention": [] }));

    let plain = server.say(&alice, room, "good morning").await;
    let mention = server.say(&alice, room, "@bob can you review?").await;
    let own = server.say(&bob, room, "my own words").await;
    let (_, items) = server.get(Some(&bob.token), &unread_path).await;
    assert_eq!(
        items["chat"],
        json!([id_of(&plain), id_of(&mention)]),
        "{items}"
    );
    assert_eq!(items["mention"], json!([id_of(&mention)]), "{items}");
    // `me` works for the user id as well.
    let (_, same) = server
        .get(
            Some(&bob.token),
            &format!("/v1/user/me/rooms/{room}/unreadItems"),
        )
        .await;
    assert_eq!(same, items);
    // Nobody reads another user's unread items.
    let (status, body) = server.get(Some(&alice.token), &unread_path).await;
    assert_eq!(status, 403, "{body}");

    let (_, m) = server
        .get(
            Some(&alice.token),
            &format!("{}/{}", messages_path(room), id_of(&plain)),
        )
        .await;
    let read_by_before = m["readBy"].as_i64().expect("readBy");
    let (_, as_bob) = server
        .get(
            Some(&bob.token),
            &format!("{}/{}", messages_path(room), id_of(&plain)),
        )
        .await;
    assert_eq!(as_bob["unread"], true);

    // Marking the newest one read clears both.
    let (status, body) = server
        .post(
            Some(&bob.token),
            &unread_path,
            json!({ "chat": [id_of(&mention)] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    let (_, items) = server.get(Some(&bob.token), &unread_path).await;
    assert_eq!(items, json!({ "chat": [], "mention": [] }));
    let (_, rooms) = server.get(Some(&bob.token), "/v1/rooms").await;
    assert_eq!(rooms[0]["unreadItems"], 0);
    assert_eq!(rooms[0]["mentions"], 0);

    let (_, m) = server
        .get(
            Some(&alice.token),
            &format!("{}/{}", messages_path(room), id_of(&plain)),
        )
        .await;
    assert_eq!(m["readBy"].as_i64(), Some(read_by_before + 1), "{m}");
    let (_, as_bob) = server
        .get(
            Some(&bob.token),
            &format!("{}/{}", messages_path(room), id_of(&plain)),
        )
        .await;
    assert_eq!(as_bob["unread"], false);
    let _ = own;

    // Bad ids in the body are 400 and change nothing.
    let next = server.say(&alice, room, "one more").await;
    let (status, body) = server
        .post(Some(&bob.token), &unread_path, json!({ "chat": ["bogus"] }))
        .await;
    assert_eq!(status, 400, "{body}");
    let (_, items) = server.get(Some(&bob.token), &unread_path).await;
    assert_eq!(items["chat"], json!([id_of(&next)]));

    // Everything read at once.
    let (status, _) = server
        .delete(Some(&bob.token), &format!("{unread_path}/all"))
        .await;
    assert_eq!(status, 204);
    let (_, items) = server.get(Some(&bob.token), &unread_path).await;
    assert_eq!(items, json!({ "chat": [], "mention": [] }));
}

#[tokio::test]
async fn only_bridge_tokens_post_as_virtual_users() {
    let (server, alice, bob, room) = room_with_two().await;
    let bridge = server.user_with("matrix-bridge", false, true).await;
    server.join(&bridge, "acme/general").await;
    let virtual_user = json!({ "type": "matrix", "externalId": "@carol:example.org", "displayName": "Carol (Matrix)" });

    let before = server.snapshot(&alice, room).await;
    let (status, body) = server
        .post(
            Some(&bob.token),
            &messages_path(room),
            json!({ "text": "I am Carol", "virtualUser": virtual_user }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("bridge")),
        "{body}"
    );
    assert_eq!(server.snapshot(&alice, room).await, before);

    let (status, m) = server
        .post(
            Some(&bridge.token),
            &messages_path(room),
            json!({ "text": "hello from matrix", "virtualUser": virtual_user }),
        )
        .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["virtualUser"]["type"], "matrix");
    assert_eq!(m["virtualUser"]["externalId"], "@carol:example.org");
    assert_eq!(m["virtualUser"]["displayName"], "Carol (Matrix)");
    assert_eq!(m["fromUser"]["displayName"], "Carol (Matrix)");
    assert_ne!(m["fromUser"]["id"], json!(bridge.user.id));

    // Read back by someone else, it still shows the virtual author.
    let (_, list) = server.get(Some(&alice.token), &messages_path(room)).await;
    let last = list.as_array().and_then(|l| l.last()).expect("a message");
    assert_eq!(last["id"], m["id"]);
    assert_eq!(last["virtualUser"]["displayName"], "Carol (Matrix)");
    assert_eq!(last["fromUser"]["displayName"], "Carol (Matrix)");

    // The same virtual user again is the same author.
    let (_, m2) = server
        .post(
            Some(&bridge.token),
            &messages_path(room),
            json!({ "text": "again", "virtualUser": virtual_user }),
        )
        .await;
    assert_eq!(m2["fromUser"]["id"], m["fromUser"]["id"]);

    // The bridge edits as that virtual user; not as someone else, and not without saying who.
    let path = format!("{}/{}", messages_path(room), id_of(&m));
    let (status, body) = server
        .put(Some(&bridge.token), &path, json!({ "text": "hijack" }))
        .await;
    assert_eq!(status, 403, "{body}");
    let other =
        json!({ "type": "matrix", "externalId": "@dave:example.org", "displayName": "Dave" });
    let (status, body) = server
        .put(
            Some(&bridge.token),
            &path,
            json!({ "text": "hijack", "virtualUser": other }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, edited) = server
        .put(
            Some(&bridge.token),
            &path,
            json!({ "text": "hello from matrix (edited)", "virtualUser": virtual_user }),
        )
        .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["text"], "hello from matrix (edited)");
    assert_eq!(edited["virtualUser"]["displayName"], "Carol (Matrix)");

    // A virtual user without an id is refused.
    let (status, body) = server
        .post(
            Some(&bridge.token),
            &messages_path(room),
            json!({ "text": "who?", "virtualUser": { "type": "matrix", "externalId": "", "displayName": "x" } }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

/// Regression: a bridge taking back a virtual user's reaction names them by id only
/// (`?virtualType=&virtualExternalId=`); that used to blank the virtual user's display name.
#[tokio::test]
async fn removing_a_virtual_reaction_keeps_the_virtual_users_name() {
    let (server, alice, _bob, room) = room_with_two().await;
    let bridge = server.user_with("matrix-bridge", false, true).await;
    server.join(&bridge, "acme/general").await;
    let carol = json!({ "type": "matrix", "externalId": "@carol:example.org", "displayName": "Carol (Matrix)" });
    let (_, m) = server
        .post(
            Some(&bridge.token),
            &messages_path(room),
            json!({ "text": "hi", "virtualUser": carol }),
        )
        .await;
    let reactions = format!("{}/{}/reactions", messages_path(room), id_of(&m));
    let (status, body) = server
        .post(
            Some(&bridge.token),
            &reactions,
            json!({ "emoji": "👍", "virtualUser": carol }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["count"], 1, "{body}");
    let (status, body) = server
        .delete(
            Some(&bridge.token),
            &format!("{reactions}/👍?virtualType=matrix&virtualExternalId=@carol:example.org"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!([]), "the reaction is gone");
    let (_, again) = server
        .get(
            Some(&alice.token),
            &format!("{}/{}", messages_path(room), id_of(&m)),
        )
        .await;
    assert_eq!(
        again["virtualUser"]["displayName"], "Carol (Matrix)",
        "{again}"
    );
}

/// Posts arriving together are written together (one store job for many): each caller still
/// gets back exactly its own message, threads and virtual users included, and the room shows
/// every one once, in the order they were stored.
#[tokio::test]
async fn concurrent_posts_each_come_back_as_their_own() {
    let (server, alice, bob, room) = room_with_two().await;
    let bridge = server.user_with("matrix-bridge", false, true).await;
    server.join(&bridge, "acme/general").await;
    let head = server.say(&alice, room, "thread head").await;
    let path = format!("/v1/rooms/{room}/chatMessages");
    let posts = (0..60).map(|i| {
        let (token, body) = match i % 3 {
            0 => (&alice.token, json!({ "text": format!("alice {i}") })),
            1 => (
                &bob.token,
                json!({ "text": format!("bob {i} in the thread"), "parentId": id_of(&head) }),
            ),
            _ => (
                &bridge.token,
                json!({
                    "text": format!("matrix {i}"),
                    "virtualUser": { "type": "matrix", "externalId": format!("@m{}:example.org", i % 2), "displayName": format!("M{}", i % 2) },
                }),
            ),
        };
        let server = &server;
        let path = &path;
        async move { (i, server.post(Some(token), path, body).await) }
    });
    let answers = futures_util::future::join_all(posts).await;
    let mut posted = Vec::new();
    for (i, (status, body)) in answers {
        assert_eq!(status, 200, "{body}");
        let text = body["text"].as_str().expect("text");
        match i % 3 {
            0 => {
                assert_eq!(text, format!("alice {i}"));
                assert_eq!(body["fromUser"]["username"], "alice");
            }
            1 => {
                assert_eq!(text, format!("bob {i} in the thread"));
                assert_eq!(body["parentId"], json!(id_of(&head)));
            }
            _ => {
                assert_eq!(text, format!("matrix {i}"));
                assert_eq!(
                    body["virtualUser"]["externalId"],
                    format!("@m{}:example.org", i % 2)
                );
            }
        }
        posted.push(id_of(&body));
    }
    let (_, stored) = server
        .get(
            Some(&alice.token),
            &format!("{path}?limit=100&includeThreads=true"),
        )
        .await;
    let mut stored = ids(&stored);
    assert_eq!(stored.len(), 61, "the head and the 60 posts, each once");
    stored.retain(|id| *id != id_of(&head));
    posted.sort();
    stored.sort();
    assert_eq!(posted, stored);
    let (_, head_now) = server
        .get(Some(&alice.token), &format!("{path}/{}", id_of(&head)))
        .await;
    assert_eq!(head_now["threadMessageCount"], 20);
}
