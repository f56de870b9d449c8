//! Matrix → weft through the Application Service API the homeserver calls, against a real
//! store: what a transaction's events become in weft, that a resent transaction changes
//! nothing, that a reused transaction id with other events is applied (a homeserver that
//! restarted), and that a refusal is recorded once however often it comes back.
//!
//! No homeserver is running: applying plain messages, edits, reactions and redactions never
//! waits for one (the names of new senders are looked up in the background, and fail here
//! quietly). The end-to-end suite (`tests/matrix`) covers the same with a real Synapse.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::MATRIX_ROOM;
use serde_json::{Value, json};
use tower::ServiceExt;
use weft_chat::{Actor, Chat, MessageQuery, RoomPatch};
use weft_core::{Id, MessageView, Profile, RoomKind};
use weft_matrix::{Bridge, Carried, MatrixTables};
use weft_store::Store;
use weft_store::testing::Guard;

struct Rig {
    chat: Chat,
    tables: MatrixTables,
    app: axum::Router,
    config: weft_matrix::BridgeConfig,
    hs_token: String,
    room: Id,
    store: Store,
    guard: Guard,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start((store, guard): (Store, Guard)) -> Rig {
        // The homeserver's port is closed: nothing on the inbound path may need it.
        let (config, dir) = common::bridge_config("http://127.0.0.1:9");
        let hs_token = config.registration.hs_token.clone();
        let chat = common::chat_over(&store);
        let bridge = Bridge::new(chat.clone(), store.clone(), config.clone())
            .await
            .expect("the bridge starts");
        let tables = MatrixTables::open(store.clone()).await.expect("tables");
        let room = common::portal(&chat, &tables).await;
        Rig {
            app: bridge.router(),
            config,
            chat,
            tables,
            hs_token,
            room: room.id,
            store,
            guard,
            _dir: dir,
        }
    }

    /// A second weft instance on the same database, with its own bridge (its own caches), as
    /// behind a load balancer; its AS endpoints.
    async fn another_instance(&self) -> axum::Router {
        let chat = common::chat_over(&self.store);
        let bridge = Bridge::new(chat, self.store.clone(), self.config.clone())
            .await
            .expect("the second bridge starts");
        bridge.router()
    }

    /// Sends a transaction as the homeserver does; answers the status.
    async fn push(&self, txn_id: &str, events: &[Value]) -> StatusCode {
        self.push_to(&self.app, txn_id, events).await
    }

    /// Sends a transaction to one instance's AS endpoints.
    async fn push_to(&self, app: &axum::Router, txn_id: &str, events: &[Value]) -> StatusCode {
        let request = Request::put(format!("/_matrix/app/v1/transactions/{txn_id}"))
            .header("authorization", format!("Bearer {}", self.hs_token))
            .header("content-type", "application/json")
            .body(Body::from(json!({ "events": events }).to_string()))
            .expect("a request");
        app.clone()
            .oneshot(request)
            .await
            .expect("an answer")
            .status()
    }

    /// The room's messages, thread replies included, oldest first.
    async fn messages(&self) -> Vec<MessageView> {
        self.chat
            .messages(
                &Actor::system(),
                self.room,
                MessageQuery {
                    limit: Some(100),
                    include_threads: true,
                    ..MessageQuery::default()
                },
            )
            .await
            .expect("messages")
    }

    async fn message_of(&self, event_id: &str) -> Option<MessageView> {
        let Carried::Message(id) = self.tables.carried_by(event_id).await.expect("lookup")? else {
            panic!("{event_id} carries something else");
        };
        self.chat.views().message(id).await.expect("message")
    }

    async fn finish(self) {
        drop(self.app);
        self.guard.finish(self.store).await;
    }
}

fn text(event_id: &str, sender: &str, body: &str) -> Value {
    json!({
        "type": "m.room.message", "event_id": event_id, "sender": sender,
        "room_id": MATRIX_ROOM, "origin_server_ts": 1,
        "content": { "msgtype": "m.text", "body": body },
    })
}

fn with_content(mut event: Value, extra: Value) -> Value {
    if let (Some(content), Some(extra)) = (event["content"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            content.insert(k.clone(), v.clone());
        }
    }
    event
}

async fn a_transaction_becomes_weft_messages_once(rig: Rig) {
    let (maria, matt) = ("@maria:hs.test", "@matt:hs.test");
    let events = vec![
        text("$1", maria, "hello"),
        with_content(
            text("$2", matt, "**bold** reply"),
            json!({ "format": "org.matrix.custom.html", "formatted_body": "<strong>bold</strong> reply" }),
        ),
        // A thread reply to a message of the same transaction, still pending when planned.
        with_content(
            text("$3", matt, "in the thread"),
            json!({ "m.relates_to": { "rel_type": "m.thread", "event_id": "$1", "is_falling_back": true, "m.in_reply_to": { "event_id": "$1" } } }),
        ),
        with_content(
            text("$4", maria, "* hello there"),
            json!({ "m.new_content": { "msgtype": "m.text", "body": "hello there" }, "m.relates_to": { "rel_type": "m.replace", "event_id": "$1" } }),
        ),
        json!({
            "type": "m.reaction", "event_id": "$5", "sender": maria, "room_id": MATRIX_ROOM,
            "origin_server_ts": 1,
            "content": { "m.relates_to": { "rel_type": "m.annotation", "event_id": "$2", "key": "👍" } },
        }),
        text("$6", matt, "oops"),
        json!({
            "type": "m.room.redaction", "event_id": "$7", "sender": matt, "room_id": MATRIX_ROOM,
            "origin_server_ts": 1, "redacts": "$6", "content": { "redacts": "$6" },
        }),
    ];
    // One write for the whole transaction, though the thread reply, the edit, the reaction
    // and the redaction each relate to a message of it that was not written yet.
    let writes = rig.store.writes_requested();
    assert_eq!(rig.push("1", &events).await, StatusCode::OK);
    assert_eq!(rig.store.writes_requested() - writes, 1, "one write");

    let messages = rig.messages().await;
    let texts: Vec<&str> = messages.iter().map(|m| m.message.text.as_str()).collect();
    assert_eq!(
        texts,
        ["hello there", "**bold** reply", "in the thread"],
        "{texts:?}"
    );
    let hello = rig.message_of("$1").await.expect("$1 stored");
    assert!(hello.message.edited_at.is_some(), "the edit applied to it");
    let reply = rig.message_of("$3").await.expect("$3 stored");
    assert_eq!(
        reply.message.parent_id,
        Some(hello.message.id),
        "in $1's thread"
    );
    let bold = rig.message_of("$2").await.expect("$2 stored");
    assert!(
        bold.message.html.contains("<strong>bold</strong>"),
        "{}",
        bold.message.html
    );
    let reacted = messages
        .iter()
        .find(|m| m.message.id == bold.message.id)
        .expect("listed");
    assert_eq!(
        reacted
            .message
            .reactions
            .iter()
            .map(|r| (r.emoji.as_str(), r.count))
            .collect::<Vec<_>>(),
        [("👍", 1)]
    );
    assert!(
        rig.message_of("$6").await.is_none(),
        "the redacted message is gone"
    );
    match &hello.author {
        Some(Profile::Virtual(v)) => {
            assert_eq!((v.kind.as_str(), v.external_id.as_str()), ("matrix", maria));
            // Named at once, by their Matrix ID (what the spec shows for a user without a
            // display name), until their member event or profile names them.
            assert_eq!(v.display_name, maria);
        }
        other => panic!("a Matrix person's message is theirs: {other:?}"),
    }

    // Reactions, edits and redactions of what is stored already go into the transaction's
    // one write, with what their events carry.
    let later = vec![
        json!({
            "type": "m.reaction", "event_id": "$9", "sender": matt, "room_id": MATRIX_ROOM,
            "origin_server_ts": 2,
            "content": { "m.relates_to": { "rel_type": "m.annotation", "event_id": "$1", "key": "🎉" } },
        }),
        with_content(
            text("$10", matt, "* **bold** reply, edited"),
            json!({ "m.new_content": { "msgtype": "m.text", "body": "**bold** reply, edited" }, "m.relates_to": { "rel_type": "m.replace", "event_id": "$2" } }),
        ),
        json!({
            "type": "m.room.redaction", "event_id": "$11", "sender": maria, "room_id": MATRIX_ROOM,
            "origin_server_ts": 2, "redacts": "$5", "content": { "redacts": "$5" },
        }),
        text("$12", maria, "still here"),
        // Her member event names her, in the same write as the messages around it.
        json!({
            "type": "m.room.member", "event_id": "$14", "sender": maria, "state_key": maria,
            "room_id": MATRIX_ROOM, "origin_server_ts": 2,
            "content": { "membership": "join", "displayname": "Maria M" },
        }),
    ];
    let writes = rig.store.writes_requested();
    assert_eq!(rig.push("2", &later).await, StatusCode::OK);
    assert_eq!(rig.store.writes_requested() - writes, 1, "one write");
    let bold = rig.message_of("$2").await.expect("$2 stored");
    assert_eq!(bold.message.text, "**bold** reply, edited");
    let named = rig
        .chat
        .views()
        .virtual_user_by_external_id("matrix", maria)
        .await
        .expect("lookup")
        .expect("maria's virtual user");
    assert_eq!(named.display_name, "Maria M");
    assert_eq!(
        rig.tables.carried_by("$10").await.expect("lookup"),
        Some(Carried::Edit(bold.message.id))
    );
    let by_id = |id: Id, list: &[MessageView]| {
        list.iter().find(|m| m.message.id == id).map(|m| {
            m.message
                .reactions
                .iter()
                .map(|r| (r.emoji.clone(), r.count))
                .collect::<Vec<_>>()
        })
    };
    let listed = rig.messages().await;
    assert_eq!(
        by_id(bold.message.id, &listed),
        Some(vec![]),
        "the 👍 was redacted"
    );
    assert_eq!(
        by_id(hello.message.id, &listed),
        Some(vec![("🎉".to_string(), 1)])
    );
    // The same reaction event again, in another transaction beside a new message: the
    // reaction is known by its event id and counted once.
    let again = vec![later[0].clone(), text("$13", matt, "and more")];
    assert_eq!(rig.push("3", &again).await, StatusCode::OK);
    let listed = rig.messages().await;
    assert_eq!(
        by_id(hello.message.id, &listed),
        Some(vec![("🎉".to_string(), 1)])
    );
    assert_eq!(listed.len(), 5, "$12 and $13 joined");

    // The homeserver sends it again (it missed the answer): nothing changes.
    let seq = rig.chat.views().last_event_seq().await.expect("seq");
    assert_eq!(rig.push("1", &events).await, StatusCode::OK);
    assert_eq!(
        rig.chat.views().last_event_seq().await.expect("seq"),
        seq,
        "nothing logged"
    );
    assert_eq!(rig.messages().await.len(), 5);

    // After a restart the homeserver numbers transactions from 1 again: other events under a
    // known id are a new transaction.
    assert_eq!(
        rig.push("1", &[text("$8", maria, "after the restart")])
            .await,
        StatusCode::OK
    );
    assert_eq!(rig.messages().await.len(), 6);
    rig.finish().await;
}

/// A transaction that comes again after part of it was written (the homeserver timed out
/// while weft was writing a file it held, say) finds its first messages stored: what relates
/// to them in it must change the stored messages, not the copies that will not be written.
async fn a_partly_written_transaction_relates_to_what_is_stored(rig: Rig) {
    let maria = "@maria:hs.test";
    assert_eq!(
        rig.push("a", &[text("$p1", maria, "first words")]).await,
        StatusCode::OK
    );
    // Under another id, as after a restart: $p1 is planned again beside what relates to it.
    let again = vec![
        text("$p1", maria, "first words"),
        with_content(
            text("$p2", maria, "* first words, fixed"),
            json!({ "m.new_content": { "msgtype": "m.text", "body": "first words, fixed" }, "m.relates_to": { "rel_type": "m.replace", "event_id": "$p1" } }),
        ),
        json!({
            "type": "m.reaction", "event_id": "$p3", "sender": maria, "room_id": MATRIX_ROOM,
            "origin_server_ts": 1,
            "content": { "m.relates_to": { "rel_type": "m.annotation", "event_id": "$p1", "key": "👀" } },
        }),
        with_content(
            text("$p4", maria, "a reply"),
            json!({ "m.relates_to": { "m.in_reply_to": { "event_id": "$p1" } } }),
        ),
    ];
    assert_eq!(rig.push("b", &again).await, StatusCode::OK);
    let messages = rig.messages().await;
    assert_eq!(messages.len(), 2, "$p1 once, and the reply: {messages:?}");
    let first = rig.message_of("$p1").await.expect("$p1 stored");
    assert_eq!(first.message.text, "first words, fixed");
    assert_eq!(first.message.thread_count, 1);
    let listed = messages
        .iter()
        .find(|m| m.message.id == first.message.id)
        .expect("listed");
    assert_eq!(listed.message.reactions.len(), 1, "{listed:?}");
    let reply = rig.message_of("$p4").await.expect("$p4 stored");
    assert_eq!(reply.message.parent_id, Some(first.message.id));
    rig.finish().await;
}

fn member(event_id: &str, sender: &str, name: &str) -> Value {
    json!({
        "type": "m.room.member", "event_id": event_id, "sender": sender, "state_key": sender,
        "room_id": MATRIX_ROOM, "origin_server_ts": 1,
        "content": { "membership": "join", "displayname": name },
    })
}

/// The name weft shows for a Matrix user.
async fn name(rig: &Rig, mxid: &str) -> String {
    rig.chat
        .views()
        .virtual_user_by_external_id("matrix", mxid)
        .await
        .expect("lookup")
        .expect("a virtual user")
        .display_name
}

/// Two instances behind a load balancer take turns with the homeserver's transactions. One
/// learns a new name from a member event; the other, which knew the old name, must not
/// rename the person back when their next message reaches it.
async fn a_rename_on_one_instance_holds_on_another(rig: Rig) {
    let other = rig.another_instance().await;
    let maria = "@maria:hs.test";
    let status = rig
        .push_to(
            &other,
            "o1",
            &[member("$m1", maria, "Maria"), text("$m2", maria, "hi")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(name(&rig, maria).await, "Maria");
    assert_eq!(
        rig.push("r1", &[member("$m3", maria, "Maria M")]).await,
        StatusCode::OK
    );
    assert_eq!(name(&rig, maria).await, "Maria M");
    let logged = rig.store.events_after(0, 1000).await.expect("the log");
    assert!(
        logged
            .iter()
            .any(|e| matches!(e.event, weft_core::Event::VirtualUserUpdated { .. })),
        "the rename is logged"
    );
    for (i, app) in [&other, &rig.app, &other].into_iter().enumerate() {
        let txn = format!("t{i}");
        let event = text(&format!("$m{}", 10 + i), maria, "still me");
        assert_eq!(rig.push_to(app, &txn, &[event]).await, StatusCode::OK);
        assert_eq!(name(&rig, maria).await, "Maria M", "after message {i}");
    }
    let messages = rig.messages().await;
    assert_eq!(messages.len(), 4);
    for m in &messages {
        match &m.author {
            Some(Profile::Virtual(v)) => assert_eq!(v.display_name, "Maria M"),
            other => panic!("{other:?}"),
        }
    }
    rig.finish().await;
}

fn reply_in_thread(event_id: &str, sender: &str, body: &str, root: &str) -> Value {
    with_content(
        text(event_id, sender, body),
        json!({ "m.relates_to": { "rel_type": "m.thread", "event_id": root, "is_falling_back": true, "m.in_reply_to": { "event_id": root } } }),
    )
}

fn edit(event_id: &str, sender: &str, of: &str, body: &str) -> Value {
    with_content(
        text(event_id, sender, &format!("* {body}")),
        json!({ "m.new_content": { "msgtype": "m.text", "body": body }, "m.relates_to": { "rel_type": "m.replace", "event_id": of } }),
    )
}

fn reaction(event_id: &str, sender: &str, of: &str, key: &str) -> Value {
    json!({
        "type": "m.reaction", "event_id": event_id, "sender": sender, "room_id": MATRIX_ROOM,
        "origin_server_ts": 1,
        "content": { "m.relates_to": { "rel_type": "m.annotation", "event_id": of, "key": key } },
    })
}

fn redaction(event_id: &str, sender: &str, of: &str) -> Value {
    json!({
        "type": "m.room.redaction", "event_id": event_id, "sender": sender, "room_id": MATRIX_ROOM,
        "origin_server_ts": 1, "redacts": of, "content": { "redacts": of },
    })
}

/// One transaction of people weft never met, whose events change each other: several threads
/// growing and shrinking, a message edited twice, a thread root removed under its replies,
/// a reaction to a message removed before it. Written together (one write, the changes in
/// multi-row statements), it must leave what applying the events one by one leaves.
async fn a_transaction_that_changes_itself_lands_as_if_applied_in_order(rig: Rig) {
    let (nina, bob, carl, dan) = (
        "@nina:hs.test",
        "@bob:hs.test",
        "@carl:hs.test",
        "@dan:hs.test",
    );
    let events = vec![
        member("$j1", nina, "Nina"),
        text("$a1", nina, "root one"),
        text("$a2", bob, "root two"),
        reply_in_thread("$r1", carl, "first answer", "$a1"),
        reply_in_thread("$r2", dan, "second answer", "$a1"),
        reply_in_thread("$r3", bob, "answer to two", "$a2"),
        edit("$e1", nina, "$a1", "root one, edited"),
        edit("$e2", nina, "$a1", "root one, edited twice"),
        reaction("$x1", carl, "$a2", "👍"),
        reaction("$x2", dan, "$a1", "🎉"),
        redaction("$d1", dan, "$r2"),
        redaction("$d2", bob, "$a2"),
        reaction("$x3", carl, "$a2", "👀"),
    ];
    let writes = rig.store.writes_requested();
    assert_eq!(rig.push("t1", &events).await, StatusCode::OK);
    assert_eq!(rig.store.writes_requested() - writes, 1, "one write");

    assert_eq!(name(&rig, nina).await, "Nina", "named by her member event");
    for who in [bob, carl, dan] {
        assert_eq!(
            name(&rig, who).await,
            who,
            "named by their Matrix ID until known"
        );
    }
    let one = rig.message_of("$a1").await.expect("$a1 stored");
    assert_eq!(one.message.text, "root one, edited twice");
    assert_eq!(one.message.thread_count, 1, "two answers, one removed");
    let two = rig.message_of("$a2").await.expect("$a2 kept");
    assert!(two.message.deleted, "removed, kept as a placeholder");
    assert_eq!(two.message.thread_count, 1);
    assert!(
        rig.tables
            .carried_by("$r2")
            .await
            .expect("lookup")
            .is_none()
    );
    let reply = rig.message_of("$r3").await.expect("$r3 stored");
    assert_eq!(reply.message.parent_id, Some(two.message.id));

    let listed = rig.messages().await;
    let reactions = |id: Id| {
        listed
            .iter()
            .find(|m| m.message.id == id)
            .map(|m| m.message.reactions.clone())
            .unwrap_or_default()
    };
    let on_one = reactions(one.message.id);
    assert_eq!(on_one.len(), 1, "{on_one:?}");
    assert_eq!(on_one[0].emoji, "🎉");
    assert!(
        reactions(two.message.id).is_empty(),
        "the removal took its reactions, and the one after it found nothing to react to"
    );

    // The log holds what happened, in the order readers need: each message created before
    // anything names it.
    let logged = rig.store.events_after(0, 1000).await.expect("the log");
    let created_at = |id: Id| {
        logged
            .iter()
            .position(|e| matches!(e.event, weft_core::Event::MessageCreated { message_id, .. } if message_id == id))
            .expect("created")
    };
    let edited = logged
        .iter()
        .filter(|e| matches!(e.event, weft_core::Event::MessageEdited { message_id, .. } if message_id == one.message.id))
        .count();
    assert_eq!(edited, 2);
    let deleted_at = logged
        .iter()
        .position(|e| matches!(e.event, weft_core::Event::MessageDeleted { message_id, .. } if message_id == two.message.id))
        .expect("the removal is logged");
    assert!(created_at(two.message.id) < deleted_at);
    assert!(created_at(reply.message.id) < deleted_at);

    // The homeserver sends it again: nothing changes.
    let writes = rig.store.writes_requested();
    assert_eq!(rig.push("t1", &events).await, StatusCode::OK);
    assert_eq!(
        rig.store.writes_requested(),
        writes,
        "a resend writes nothing"
    );
    rig.finish().await;
}

/// Sends a transaction of `events` with `m.read` receipts (`(reader, event)`) and one
/// private receipt, as the homeserver pushes them with `receive_ephemeral`.
async fn push_with_receipts(
    rig: &Rig,
    txn_id: &str,
    events: &[Value],
    read: &[(&str, &str)],
    private: (&str, &str),
) -> StatusCode {
    let mut content = serde_json::Map::new();
    for (reader, event_id) in read {
        content.insert(
            event_id.to_string(),
            json!({ "m.read": { *reader: { "ts": 1 } } }),
        );
    }
    content
        .entry(private.1.to_string())
        .or_insert_with(|| json!({}))["m.read.private"] = json!({ private.0: { "ts": 1 } });
    let body = json!({
        "events": events,
        "ephemeral": [{ "type": "m.receipt", "room_id": MATRIX_ROOM, "content": content }],
    });
    let request = Request::put(format!("/_matrix/app/v1/transactions/{txn_id}"))
        .header("authorization", format!("Bearer {}", rig.hs_token))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a request");
    rig.app
        .clone()
        .oneshot(request)
        .await
        .expect("an answer")
        .status()
}

/// The Matrix IDs among a message's readers in weft.
async fn matrix_readers(rig: &Rig, event_id: &str) -> Vec<String> {
    let message = rig.message_of(event_id).await.expect("stored");
    rig.chat
        .readers(&Actor::system(), rig.room, message.message.id, 100, 0)
        .await
        .expect("readers")
        .into_iter()
        .filter_map(|p| match p {
            Profile::Virtual(v) => Some(v.external_id),
            Profile::User(_) => None,
        })
        .collect()
}

/// Matrix users' read receipts become read marks in weft: counted and listed, moved forward
/// only, a receipt of a message of the same transaction applied after it, private receipts
/// and people weft never met left out.
async fn matrix_read_receipts_move_read_marks(rig: Rig) {
    let (maria, matt, stranger) = ("@maria:hs.test", "@matt:hs.test", "@stranger:hs.test");
    let said = [
        text("$k1", maria, "one"),
        text("$k2", matt, "two"),
        text("$k3", maria, "three"),
    ];
    assert_eq!(rig.push("k1", &said).await, StatusCode::OK);
    let status = push_with_receipts(
        &rig,
        "k2",
        &[],
        &[(maria, "$k2"), (stranger, "$k1")],
        (matt, "$k3"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(matrix_readers(&rig, "$k1").await, [maria]);
    assert_eq!(matrix_readers(&rig, "$k2").await, [maria]);
    assert!(
        matrix_readers(&rig, "$k3").await.is_empty(),
        "a private receipt counted"
    );
    let met = rig
        .chat
        .views()
        .virtual_user_by_external_id("matrix", stranger)
        .await
        .expect("lookup");
    assert!(met.is_none(), "a receipt created a virtual user");

    // A message and its sender's receipt on it in one transaction; then a late, older receipt.
    let status = push_with_receipts(
        &rig,
        "k3",
        &[text("$k4", matt, "four")],
        &[(matt, "$k4")],
        (maria, "$k4"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(matrix_readers(&rig, "$k4").await, [matt]);
    let status = push_with_receipts(&rig, "k4", &[], &[(matt, "$k1")], (maria, "$k1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        matrix_readers(&rig, "$k4").await,
        [matt],
        "a receipt moved back"
    );
    let read_by = rig
        .store
        .read_by(
            rig.room,
            &[rig.message_of("$k1").await.expect("$k1").message.seq],
        )
        .await
        .expect("read_by");
    assert_eq!(read_by, [2], "maria and matt, each once");
    // A receipt on a reaction has read the message it reacts to.
    let ada = "@ada:hs.test";
    let said = [text("$k5", ada, "five"), reaction("$k6", matt, "$k5", "👍")];
    assert_eq!(rig.push("k5", &said).await, StatusCode::OK);
    let status = push_with_receipts(&rig, "k6", &[], &[(ada, "$k6")], (matt, "$k6")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(matrix_readers(&rig, "$k5").await, [ada]);
    rig.finish().await;
}

async fn a_refusal_is_recorded_once(rig: Rig) {
    let admin = rig
        .chat
        .create_user(weft_chat::NewUser {
            username: "admin".into(),
            display_name: None,
            password: None,
            site_admin: true,
        })
        .await
        .expect("an admin");
    rig.chat
        .update_room(
            &Actor::user(admin),
            rig.room,
            RoomPatch {
                kind: Some(RoomKind::Private),
                ..RoomPatch::default()
            },
        )
        .await
        .expect("the room becomes private");
    let events = [text("$late", "@maria:hs.test", "is anyone there?")];
    for _ in 0..3 {
        // Refused, not failed: the homeserver must not send it again and again.
        assert_eq!(rig.push("9", &events).await, StatusCode::OK);
    }
    assert!(
        rig.message_of("$late").await.is_none(),
        "nothing reaches a private room"
    );
    assert_eq!(
        rig.tables.failure_count().await.expect("count"),
        1,
        "recorded once"
    );
    let failures = rig.tables.failures(10).await.expect("failures");
    assert!(failures[0].error.contains("$late"), "{failures:?}");
    rig.finish().await;
}

/// Declares each case once per database.
macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Rig::start(weft_store::testing::sqlite().await).await).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Rig::start(weft_store::testing::postgres().await).await).await;
                }
            )*
        }
    };
}

on_both!(
    a_transaction_becomes_weft_messages_once,
    a_partly_written_transaction_relates_to_what_is_stored,
    a_rename_on_one_instance_holds_on_another,
    a_transaction_that_changes_itself_lands_as_if_applied_in_order,
    matrix_read_receipts_move_read_marks,
    a_refusal_is_recorded_once
);
