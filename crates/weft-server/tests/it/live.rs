//! Live delivery: Gitter's streaming API and the WebSocket feed, including resuming.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use weft_chat::ChatConfig;
use weft_core::{Id, RoomKind};
use weft_server::{Operation, Resource, ServerConfig};

use crate::harness::{TestServer, TestUser, id_of};

/// How long to wait for something that should arrive.
const WAIT: Duration = Duration::from_secs(5);
/// How long to listen to show that nothing more arrives.
const QUIET: Duration = Duration::from_millis(400);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(server: &TestServer, user: Option<&TestUser>) -> Ws {
    let (ws, _) = timeout(
        WAIT,
        tokio_tungstenite::connect_async(server.ws_url(user.map(|u| u.token.as_str()))),
    )
    .await
    .expect("WebSocket connect timed out")
    .expect("WebSocket connects");
    ws
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(WsMessage::text(value.to_string()))
        .await
        .expect("WebSocket send");
}

/// The next JSON text frame, failing the test after [`WAIT`].
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a WebSocket frame")
            .expect("WebSocket closed")
            .expect("WebSocket error");
        match message {
            WsMessage::Text(text) => {
                return serde_json::from_str(text.as_str()).expect("frame is JSON");
            }
            WsMessage::Close(frame) => panic!("WebSocket closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Asserts that no text frame arrives for a little while.
async fn expect_quiet(ws: &mut Ws) {
    let deadline = tokio::time::Instant::now() + QUIET;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(WsMessage::Text(text)))) => panic!("unexpected frame: {text}"),
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("WebSocket ended: {other:?}"),
        }
    }
}

async fn subscribe(ws: &mut Ws, room: Id, since: Option<i64>) -> Value {
    let mut request = json!({ "type": "subscribe", "roomId": room });
    if let Some(since) = since {
        request["since"] = json!(since);
    }
    send(ws, request).await;
    let reply = next_json(ws).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["roomId"], json!(room));
    reply
}

/// Checks a frame's envelope and returns its sequence number.
fn event(frame: &Value, room: Id, resource: &str, operation: &str) -> i64 {
    assert_eq!(frame["type"], "event", "{frame}");
    assert_eq!(frame["roomId"], json!(room), "{frame}");
    assert_eq!(frame["resource"], resource, "{frame}");
    assert_eq!(frame["operation"], operation, "{frame}");
    frame["seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("frame without seq: {frame}"))
}

#[tokio::test]
async fn websocket_delivers_create_update_patch_remove_in_order() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.join(&bob, "acme/general").await;
    let other = server.room(&alice, "acme/other", RoomKind::Public).await;

    let mut ws = connect(&server, Some(&bob)).await;
    send(&mut ws, json!({ "type": "ping" })).await;
    assert_eq!(next_json(&mut ws).await, json!({ "type": "pong" }));
    let subscribed = subscribe(&mut ws, room, None).await;
    let mut last = subscribed["seq"].as_i64().expect("subscribed seq");

    // Activity in a room Bob did not subscribe to is not delivered.
    server.say(&alice, other, "elsewhere").await;

    let m = server.say(&alice, room, "live one").await;
    let frame = next_json(&mut ws).await;
    let seq = event(&frame, room, "chatMessages", "create");
    assert!(seq > last, "{seq} after {last}");
    last = seq;
    assert_eq!(frame["model"]["id"], m["id"]);
    assert_eq!(frame["model"]["text"], "live one");
    assert_eq!(frame["model"]["html"], m["html"]);
    assert_eq!(frame["model"]["fromUser"]["username"], "alice");

    let path = format!("/v1/rooms/{room}/chatMessages/{}", id_of(&m));
    let (status, _) = server
        .put(
            Some(&alice.token),
            &path,
            json!({ "text": "live one, edited" }),
        )
        .await;
    assert_eq!(status, 200);
    let frame = next_json(&mut ws).await;
    let seq = event(&frame, room, "chatMessages", "update");
    assert!(seq > last);
    last = seq;
    assert_eq!(frame["model"]["id"], m["id"]);
    assert_eq!(frame["model"]["text"], "live one, edited");
    assert!(frame["model"]["editedAt"].is_string(), "{frame}");

    let (status, _) = server
        .post(
            Some(&bob.token),
            &format!("{path}/reactions"),
            json!({ "emoji": ":tada:" }),
        )
        .await;
    assert_eq!(status, 200);
    let frame = next_json(&mut ws).await;
    let seq = event(&frame, room, "chatMessages", "patch");
    assert!(seq > last);
    last = seq;
    assert_eq!(frame["model"]["id"], m["id"]);
    assert_eq!(frame["model"]["reactions"][0]["emoji"], "🎉");
    assert_eq!(frame["model"]["reactions"][0]["count"], 1);

    let (status, _) = server.delete(Some(&alice.token), &path).await;
    assert_eq!(status, 204);
    let frame = next_json(&mut ws).await;
    let seq = event(&frame, room, "chatMessages", "remove");
    assert!(seq > last);
    assert_eq!(frame["model"]["id"], m["id"]);

    // Threads: the reply is created and the head's count patched; deleting the head leaves a
    // placeholder, sent as an update.
    let head = server.say(&alice, room, "thread head").await;
    let (status, reply) = server
        .post(
            Some(&bob.token),
            &format!("/v1/rooms/{room}/chatMessages"),
            json!({ "text": "reply", "parentId": head["id"] }),
        )
        .await;
    assert_eq!(status, 200);
    let frame = next_json(&mut ws).await;
    let mut last = event(&frame, room, "chatMessages", "create");
    assert_eq!(frame["model"]["id"], head["id"]);
    let frame = next_json(&mut ws).await;
    let seq = event(&frame, room, "chatMessages", "create");
    assert!(seq > last);
    last = seq;
    assert_eq!(frame["model"]["id"], reply["id"]);
    assert_eq!(frame["model"]["parentId"], head["id"]);
    let frame = next_json(&mut ws).await;
    let seq = event(&frame, room, "chatMessages", "patch");
    assert!(seq > last);
    last = seq;
    assert_eq!(
        frame["model"],
        json!({ "id": head["id"], "threadMessageCount": 1 })
    );
    let (status, _) = server
        .delete(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages/{}", id_of(&head)),
        )
        .await;
    assert_eq!(status, 204);
    let frame = next_json(&mut ws).await;
    assert!(event(&frame, room, "chatMessages", "update") > last);
    assert_eq!(frame["model"]["id"], head["id"]);
    assert_eq!(frame["model"]["deleted"], true);
    assert_eq!(frame["model"]["text"], "");

    // Typing is announced live, without a sequence number.
    let (status, _) = server
        .post(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/typing"),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    let frame = next_json(&mut ws).await;
    assert_eq!(frame["seq"], 0, "{frame}");
    assert_eq!(frame["resource"], "typing");
    assert_eq!(frame["model"]["username"], "alice");

    expect_quiet(&mut ws).await;

    // After unsubscribing, nothing more arrives.
    send(&mut ws, json!({ "type": "unsubscribe", "roomId": room })).await;
    assert_eq!(next_json(&mut ws).await["type"], "unsubscribed");
    server.say(&alice, room, "nobody listening").await;
    expect_quiet(&mut ws).await;

    // Garbage from the client gets an error, and the connection stays usable.
    ws.send(WsMessage::text("{not json")).await.expect("send");
    assert_eq!(next_json(&mut ws).await["type"], "error");
    send(&mut ws, json!({ "type": "ping" })).await;
    assert_eq!(next_json(&mut ws).await["type"], "pong");
}

#[tokio::test]
async fn websocket_resume_replays_exactly_the_missed_events() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    let other = server.room(&alice, "acme/other", RoomKind::Public).await;
    server.join(&bob, "acme/general").await;

    let mut ws = connect(&server, Some(&bob)).await;
    subscribe(&mut ws, room, None).await;
    let m1 = server.say(&alice, room, "one").await;
    let frame = next_json(&mut ws).await;
    let seen = event(&frame, room, "chatMessages", "create");
    assert_eq!(frame["model"]["id"], m1["id"]);
    ws.close(None).await.expect("close");
    drop(ws);

    // Missed while away: two messages and an edit here, and chatter in another room.
    let m2 = server.say(&alice, room, "two").await;
    server.say(&alice, other, "not for you").await;
    let m3 = server.say(&alice, room, "three").await;
    let (status, _) = server
        .put(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages/{}", id_of(&m2)),
            json!({ "text": "two!" }),
        )
        .await;
    assert_eq!(status, 200);

    let mut ws = connect(&server, Some(&bob)).await;
    send(
        &mut ws,
        json!({ "type": "subscribe", "roomId": room, "since": seen }),
    )
    .await;
    let mut seqs = vec![seen];
    let expected = [
        ("create", &m2, "two"),
        ("create", &m3, "three"),
        ("update", &m2, "two!"),
    ];
    for (operation, message, text) in expected {
        let frame = next_json(&mut ws).await;
        let seq = event(&frame, room, "chatMessages", operation);
        assert_eq!(frame["model"]["id"], message["id"], "{frame}");
        // A replayed create shows the message as it is now (the edit included).
        if operation == "update" || message["id"] != m2["id"] {
            assert_eq!(frame["model"]["text"], text, "{frame}");
        }
        seqs.push(seq);
    }
    let subscribed = next_json(&mut ws).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(
        subscribed["seq"].as_i64(),
        seqs.last().copied(),
        "{subscribed}"
    );

    // Live again: the next event arrives once, and nothing is repeated.
    let m4 = server.say(&alice, room, "four").await;
    let frame = next_json(&mut ws).await;
    seqs.push(event(&frame, room, "chatMessages", "create"));
    assert_eq!(frame["model"]["id"], m4["id"]);
    expect_quiet(&mut ws).await;
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, seqs, "sequence numbers increase and none repeats");

    // Resuming from the newest seq replays nothing.
    let last = *seqs.last().expect("seq");
    let mut ws2 = connect(&server, Some(&bob)).await;
    let reply = subscribe(&mut ws2, room, Some(last)).await;
    assert_eq!(reply["seq"], json!(last));
    expect_quiet(&mut ws2).await;
}

#[tokio::test]
async fn websocket_refuses_private_rooms_to_outsiders() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mallory = server.user("mallory").await;
    let private = server.room(&alice, "acme/staff", RoomKind::Private).await;
    let public = server.room(&alice, "acme/general", RoomKind::Public).await;

    for user in [Some(&mallory), None] {
        let mut ws = connect(&server, user).await;
        send(
            &mut ws,
            json!({ "type": "subscribe", "roomId": private, "since": 0 }),
        )
        .await;
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["type"], "error", "{reply}");
        assert!(reply["error"].is_string(), "{reply}");
        server.say(&alice, private, "secret").await;
        expect_quiet(&mut ws).await;
        // Typing into it is refused as well.
        send(&mut ws, json!({ "type": "typing", "roomId": private })).await;
        assert_eq!(next_json(&mut ws).await["type"], "error");
    }

    // A visitor may follow a public room.
    let mut ws = connect(&server, None).await;
    subscribe(&mut ws, public, None).await;
    let m = server.say(&alice, public, "hello visitors").await;
    let frame = next_json(&mut ws).await;
    event(&frame, public, "chatMessages", "create");
    assert_eq!(frame["model"]["id"], m["id"]);

    // A wrong token does not open a socket at all.
    let refused = tokio_tungstenite::connect_async(server.ws_url(Some("wrong"))).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 401)
        }
        other => panic!("expected a 401, got {other:?}"),
    }
}

/// Reads a streaming response line by line.
struct Lines<S> {
    stream: S,
    buffer: BytesMut,
}

impl<S: Stream<Item = reqwest::Result<Bytes>> + Unpin> Lines<S> {
    /// The next line including its terminator, failing the test after [`WAIT`].
    async fn next(&mut self) -> String {
        loop {
            if let Some(pos) = self.buffer.iter().position(|b| *b == b'\n') {
                let line = self.buffer.split_to(pos + 1);
                return String::from_utf8(line.to_vec()).expect("UTF-8 line");
            }
            let chunk = timeout(WAIT, self.stream.next())
                .await
                .expect("timed out waiting for the stream")
                .expect("stream ended")
                .expect("stream error");
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

type ByteStream = std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

async fn open_stream(server: &TestServer, token: Option<&str>, path: &str) -> Lines<ByteStream> {
    let mut request = server.http.get(server.url(path));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = timeout(WAIT, request.send())
        .await
        .expect("stream opens in time")
        .expect("stream request");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json")),
        "{:?}",
        response.headers()
    );
    Lines {
        stream: Box::pin(response.bytes_stream()),
        buffer: BytesMut::new(),
    }
}

#[tokio::test]
async fn the_streaming_api_sends_each_new_message_as_one_line() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.join(&bob, "acme/general").await;
    let before = server.say(&alice, room, "before the stream").await;

    let mut lines = open_stream(
        &server,
        Some(&bob.token),
        &format!("/stream/v1/rooms/{room}/chatMessages"),
    )
    .await;
    let m = server.say(&alice, room, "streamed @bob").await;
    let line = lines.next().await;
    assert!(line.ends_with("\r\n"), "{line:?}");
    assert_eq!(
        line.matches('\n').count(),
        1,
        "one JSON document per line: {line:?}"
    );
    let got: Value = serde_json::from_str(line.trim_end()).expect("line is JSON");
    assert_eq!(got["id"], m["id"]);
    assert_ne!(got["id"], before["id"]);
    assert_eq!(got["text"], "streamed @bob");
    assert_eq!(got["html"], m["html"]);
    assert_eq!(got["fromUser"]["username"], "alice");
    assert_eq!(got["mentions"][0]["userId"], json!(bob.user.id));

    // Edits are not new messages; the next line is the next message.
    let (status, _) = server
        .put(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages/{}", id_of(&m)),
            json!({ "text": "edited" }),
        )
        .await;
    assert_eq!(status, 200);
    let m2 = server.say(&bob, room, "second").await;
    let got: Value = serde_json::from_str(lines.next().await.trim_end()).expect("JSON");
    assert_eq!(got["id"], m2["id"]);

    // Visitors may stream a public room; the events stream shows edits too.
    let mut anon = open_stream(
        &server,
        None,
        &format!("/stream/v1/rooms/{room}/chatMessages"),
    )
    .await;
    let mut events = open_stream(
        &server,
        Some(&bob.token),
        &format!("/stream/v1/rooms/{room}/events"),
    )
    .await;
    let m3 = server.say(&alice, room, "third").await;
    let got: Value = serde_json::from_str(anon.next().await.trim_end()).expect("JSON");
    assert_eq!(got["id"], m3["id"]);
    let got: Value = serde_json::from_str(events.next().await.trim_end()).expect("JSON");
    assert_eq!(
        (got["resource"].as_str(), got["operation"].as_str()),
        (Some("chatMessages"), Some("create"))
    );
    assert_eq!(got["model"]["id"], m3["id"]);
    let (status, _) = server
        .put(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages/{}", id_of(&m3)),
            json!({ "text": "third!" }),
        )
        .await;
    assert_eq!(status, 200);
    let got: Value = serde_json::from_str(events.next().await.trim_end()).expect("JSON");
    assert_eq!(got["operation"], "update");
    assert_eq!(got["model"]["text"], "third!");
}

#[tokio::test]
async fn streams_of_private_rooms_are_404_to_outsiders() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mallory = server.user("mallory").await;
    let room = server.room(&alice, "acme/staff", RoomKind::Private).await;
    for token in [Some(mallory.token.as_str()), None] {
        let (status, body) = server
            .get(token, &format!("/stream/v1/rooms/{room}/chatMessages"))
            .await;
        assert_eq!(status, 404, "{body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let (status, body) = server
        .get(
            Some("wrong"),
            &format!("/stream/v1/rooms/{room}/chatMessages"),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = server.get(None, "/stream/v1/rooms/nope/chatMessages").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn streams_send_heartbeats() {
    let server = TestServer::start_with(
        ChatConfig::default(),
        ServerConfig {
            heartbeat: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await;
    let alice = server.user("alice").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    let mut lines = open_stream(
        &server,
        Some(&alice.token),
        &format!("/stream/v1/rooms/{room}/chatMessages"),
    )
    .await;
    assert_eq!(lines.next().await, "\n");
    assert_eq!(lines.next().await, "\n");
    let m = server.say(&alice, room, "between beats").await;
    loop {
        let line = lines.next().await;
        if line == "\n" {
            continue;
        }
        let got: Value = serde_json::from_str(line.trim_end()).expect("JSON");
        assert_eq!(got["id"], m["id"]);
        break;
    }
}

#[tokio::test]
async fn losing_access_stops_live_delivery() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/team", RoomKind::Public).await;
    server.join(&bob, "acme/team").await;

    // A visitor follows the room while it is public, and Bob while he is a member.
    let mut visitor = connect(&server, None).await;
    subscribe(&mut visitor, room, None).await;
    let mut visitor_stream = open_stream(
        &server,
        None,
        &format!("/stream/v1/rooms/{room}/chatMessages"),
    )
    .await;
    let mut bob_ws = connect(&server, Some(&bob)).await;
    subscribe(&mut bob_ws, room, None).await;
    let mut bob_stream = open_stream(
        &server,
        Some(&bob.token),
        &format!("/stream/v1/rooms/{room}/chatMessages"),
    )
    .await;
    let mut alice_ws = connect(&server, Some(&alice)).await;
    subscribe(&mut alice_ws, room, None).await;

    let m = server.say(&alice, room, "still public").await;
    let frame = next_json(&mut visitor).await;
    assert_eq!(frame["model"]["id"], m["id"]);
    let frame = next_json(&mut bob_ws).await;
    assert_eq!(frame["model"]["id"], m["id"]);
    let line: Value = serde_json::from_str(visitor_stream.next().await.trim_end()).expect("JSON");
    assert_eq!(line["id"], m["id"]);
    let line: Value = serde_json::from_str(bob_stream.next().await.trim_end()).expect("JSON");
    assert_eq!(line["id"], m["id"]);

    // The room becomes private: the visitor hears nothing said in it from then on.
    let (status, _) = server
        .put(
            Some(&alice.token),
            &format!("/v1/rooms/{room}"),
            json!({ "security": "PRIVATE" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .delete(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/users/{}", bob.user.id),
        )
        .await;
    assert_eq!(status, 200);
    let secret = server.say(&alice, room, "now private: the secret").await;

    // Bob, removed from the (now private) room, hears nothing either. Both are told that the
    // subscription ended, and both streams end.
    for ws in [&mut visitor, &mut bob_ws] {
        let mut told = false;
        loop {
            let deadline = tokio::time::Instant::now() + QUIET;
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => break,
                Ok(Some(Ok(WsMessage::Text(text)))) => {
                    assert!(
                        !text.as_str().contains("the secret"),
                        "leaked after losing access: {text}"
                    );
                    assert!(
                        !text.as_str().contains(&id_of(&secret)),
                        "leaked after losing access: {text}"
                    );
                    let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
                    if frame["type"] == "error" && frame["roomId"] == json!(room) {
                        told = true;
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => panic!("WebSocket ended: {other:?}"),
            }
        }
        assert!(told, "the client is told its subscription ended");
        // The connection itself stays usable.
        send(ws, json!({ "type": "ping" })).await;
        assert_eq!(next_json(ws).await["type"], "pong");
    }
    for stream in [&mut visitor_stream, &mut bob_stream] {
        loop {
            match timeout(WAIT, stream.stream.next())
                .await
                .expect("the stream ends")
            {
                None => break,
                Some(Err(e)) => panic!("stream error: {e}"),
                Some(Ok(chunk)) => {
                    let text = String::from_utf8_lossy(&chunk);
                    assert!(
                        !text.contains("the secret"),
                        "stream leaked after losing access: {text}"
                    );
                }
            }
        }
    }

    // A member who stays hears everything, in order.
    let mut seen = Vec::new();
    loop {
        let frame = next_json(&mut alice_ws).await;
        seen.push((
            frame["resource"].as_str().unwrap_or("").to_string(),
            frame["operation"].as_str().unwrap_or("").to_string(),
        ));
        if frame["model"]["id"] == secret["id"] {
            break;
        }
    }
    let pairs: Vec<(&str, &str)> = seen.iter().map(|(r, o)| (r.as_str(), o.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("chatMessages", "create"),
            ("room", "update"),
            ("users", "remove"),
            ("chatMessages", "create")
        ]
    );
}

/// Frames are rendered only for rooms someone follows: a message in a room nobody watches is
/// never read back or serialised, and following a room brings its frames (and only from
/// then on).
#[tokio::test]
async fn frames_are_rendered_only_for_watched_rooms() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let followed = server.room(&alice, "acme/general", RoomKind::Public).await;
    let quiet = server.room(&alice, "acme/quiet", RoomKind::Public).await;
    let frames = weft_server::Frames::start(server.chat.clone());
    let now = server.chat.views().last_event_seq().await.expect("seq");
    let mut feed = frames.subscribe_from(now);
    async fn next_message(feed: &mut weft_server::FrameStream) -> (Id, Value) {
        loop {
            let frame = timeout(Duration::from_secs(5), feed.next())
                .await
                .expect("a frame in time")
                .expect("the feed is open");
            if frame.resource == Resource::ChatMessages && frame.operation == Operation::Create {
                return (frame.room_id, frame.model["text"].clone());
            }
        }
    }
    let watch = frames.watch(followed);
    server.say(&alice, quiet, "nobody follows this room").await;
    server
        .say(&alice, followed, "someone follows this one")
        .await;
    assert_eq!(
        next_message(&mut feed).await,
        (followed, json!("someone follows this one")),
        "the unwatched room's earlier message was not rendered"
    );
    drop(watch);
    server
        .say(&alice, followed, "nobody follows it any more")
        .await;
    let _quiet = frames.watch(quiet);
    server.say(&alice, quiet, "now followed").await;
    assert_eq!(
        next_message(&mut feed).await,
        (quiet, json!("now followed"))
    );
}

/// A subscriber that falls far behind the live frames (more than they hold) still gets every
/// frame once, in order: the stream reads what it missed from the log. And one that starts
/// from a past position gets what was logged since.
#[tokio::test]
async fn a_stream_that_falls_behind_catches_up_from_the_log() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let room = server.room(&alice, "acme/busy", RoomKind::Public).await;
    let frames = weft_server::Frames::with_capacity(server.chat.clone(), 4);
    let start = server.chat.views().last_event_seq().await.expect("seq");
    let mut feed = frames.follow(room, start);
    // Live first: the stream has read the log once and follows the live frames.
    server.say(&alice, room, "first").await;
    let first = timeout(Duration::from_secs(5), feed.next())
        .await
        .expect("a frame in time")
        .expect("the feed is open");
    assert_eq!(first.model["text"], "first");
    // Then far behind: forty frames while the live feed holds four.
    for i in 0..40 {
        server.say(&alice, room, &format!("message {i}")).await;
    }
    let mut texts = Vec::new();
    let mut seqs = Vec::new();
    while texts.len() < 40 {
        let frame = timeout(Duration::from_secs(5), feed.next())
            .await
            .expect("a frame in time")
            .expect("the feed is open");
        if frame.resource == Resource::ChatMessages && frame.operation == Operation::Create {
            texts.push(frame.model["text"].as_str().unwrap_or_default().to_string());
            seqs.push(frame.seq);
        }
    }
    let expected: Vec<String> = (0..40).map(|i| format!("message {i}")).collect();
    assert_eq!(texts, expected, "every message once, in order");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    server.say(&alice, room, "live again").await;
    let next = loop {
        let frame = timeout(Duration::from_secs(5), feed.next())
            .await
            .expect("a frame in time")
            .expect("the feed is open");
        if frame.resource == Resource::ChatMessages {
            break frame;
        }
    };
    assert_eq!(
        next.model["text"], "live again",
        "nothing repeated after catching up"
    );
    assert_eq!(feed.position(), next.seq);

    // From the past: a stream opened now from the start gets the same messages.
    let mut late = frames.follow(room, start);
    let replayed: Vec<String> = late
        .caught_up()
        .await
        .iter()
        .filter(|f| f.resource == Resource::ChatMessages && f.operation == Operation::Create)
        .map(|f| f.model["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(replayed.len(), 42);
    assert_eq!(replayed[1..41], expected[..]);
}
