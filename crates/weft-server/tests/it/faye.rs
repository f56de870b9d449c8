//! Gitter's realtime endpoint: a Bayeux client over HTTP long-polling and over WebSocket,
//! speaking exactly what the Faye client sends.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use weft_chat::ChatConfig;
use weft_core::RoomKind;
use weft_server::ServerConfig;

use crate::harness::{TestServer, TestUser, id_of};

const WAIT: Duration = Duration::from_secs(10);

/// A server whose connects are held for one second, so tests need not wait long.
async fn server() -> TestServer {
    TestServer::start_with(
        ChatConfig::default(),
        ServerConfig {
            heartbeat: Duration::from_secs(1),
            ..ServerConfig::default()
        },
    )
    .await
}

/// POSTs a batch to `/bayeux` and returns the reply array.
async fn post(server: &TestServer, path: &str, batch: Value) -> Vec<Value> {
    let response = timeout(WAIT, server.http.post(server.url(path)).json(&batch).send())
        .await
        .expect("bayeux request timed out")
        .expect("bayeux request sent");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("text")
            .starts_with("application/json")
    );
    let body: Value = response.json().await.expect("a JSON reply");
    body.as_array().expect("a reply array").clone()
}

fn usernames(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a snapshot list")
        .iter()
        .map(|u| u["username"].as_str().expect("a username"))
        .collect()
}

fn on<'a>(replies: &'a [Value], channel: &str) -> Vec<&'a Value> {
    replies.iter().filter(|m| m["channel"] == channel).collect()
}

fn handshake(token: Option<&str>) -> Value {
    let mut message = json!({
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["websocket", "long-polling", "callback-polling"],
        "id": "1",
    });
    if let Some(token) = token {
        message["ext"] = json!({ "token": token });
    }
    message
}

async fn handshake_http(server: &TestServer, user: &TestUser) -> String {
    let replies = post(server, "/bayeux", json!([handshake(Some(&user.token))])).await;
    let reply = &replies[0];
    assert_eq!(reply["channel"], "/meta/handshake");
    assert_eq!(reply["successful"], true, "{reply}");
    assert_eq!(reply["id"], "1");
    assert_eq!(reply["version"], "1.0");
    assert!(
        reply["supportedConnectionTypes"]
            .as_array()
            .expect("an array")
            .contains(&json!("long-polling"))
    );
    assert!(reply["advice"]["timeout"].is_u64(), "{reply}");
    let client_id = reply["clientId"].as_str().expect("a client id").to_string();
    assert!(client_id.len() >= 32, "client ids are long and random");
    client_id
}

fn subscribe(client_id: &str, channel: &str, id: &str) -> Value {
    json!({ "channel": "/meta/subscribe", "clientId": client_id, "subscription": channel, "id": id })
}

fn connect(client_id: &str, kind: &str, id: &str) -> Value {
    json!({ "channel": "/meta/connect", "clientId": client_id, "connectionType": kind, "id": id })
}

#[tokio::test]
async fn long_polling_client_receives_messages_posted_through_the_api() {
    let server = server().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/lobby", RoomKind::Public).await;
    server.join(&bob, "acme/lobby").await;

    let client = handshake_http(&server, &bob).await;
    let channel = format!("/api/v1/rooms/{room}/chatMessages");
    let users_channel = format!("/api/v1/rooms/{room}/users");
    let own_rooms = format!("/api/v1/user/{}/rooms", bob.user.id);
    let replies = post(
        &server,
        "/bayeux",
        json!([
            subscribe(&client, &channel, "2"),
            subscribe(&client, &users_channel, "3"),
            subscribe(&client, &own_rooms, "4"),
            subscribe(&client, "/api/v1/ping2", "5"),
        ]),
    )
    .await;
    assert_eq!(replies.len(), 4, "{replies:?}");
    for reply in &replies {
        assert_eq!(reply["channel"], "/meta/subscribe");
        assert_eq!(reply["successful"], true, "{reply}");
        assert_eq!(reply["clientId"], json!(client));
    }
    assert_eq!(replies[0]["subscription"], json!(channel));
    // Each answer carries the collection as it stands, as Gitter's did.
    assert_eq!(replies[0]["ext"]["snapshot"], json!([]), "no messages yet");
    let members = usernames(&replies[1]["ext"]["snapshot"]);
    assert_eq!(members, vec!["alice", "bob"]);
    assert_eq!(replies[2]["ext"]["snapshot"][0]["id"], json!(room));
    assert!(replies[3].get("ext").is_none(), "no snapshot for ping2");

    // Sent along with other messages, Faye asks for the connect to be answered at once.
    let started = std::time::Instant::now();
    let mut quick = connect(&client, "long-polling", "5a");
    quick["advice"] = json!({ "timeout": 0 });
    let replies = post(
        &server,
        "/bayeux",
        json!([subscribe(&client, "/api/v1/ping2", "5b"), quick]),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "answered at once"
    );
    assert_eq!(on(&replies, "/meta/connect")[0]["successful"], true);
    assert_eq!(on(&replies, "/meta/subscribe")[0]["successful"], true);

    // A connect with nothing to deliver is held, then answered with advice.
    let started = std::time::Instant::now();
    let replies = post(
        &server,
        "/bayeux",
        json!([connect(&client, "long-polling", "6")]),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "the connect was held"
    );
    let connect_reply = on(&replies, "/meta/connect");
    assert_eq!(connect_reply.len(), 1);
    assert_eq!(connect_reply[0]["successful"], true);
    assert_eq!(connect_reply[0]["advice"]["reconnect"], "retry");

    // A message posted through the REST API arrives on the next connect.
    let poll = {
        let server_http = server.http.clone();
        let url = server.url("/bayeux");
        let body = json!([connect(&client, "long-polling", "7")]);
        tokio::spawn(async move {
            let response = server_http
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("sent");
            response.json::<Value>().await.expect("JSON")
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let posted = server.say(&alice, room, "hello over **faye**").await;
    let replies = timeout(WAIT, poll)
        .await
        .expect("poll answered")
        .expect("poll ran");
    let replies = replies.as_array().expect("array").clone();
    let data = on(&replies, &channel);
    assert_eq!(data.len(), 1, "{replies:?}");
    assert_eq!(data[0]["data"]["operation"], "create");
    let model = &data[0]["data"]["model"];
    assert_eq!(model["id"], json!(id_of(&posted)));
    assert_eq!(model["text"], "hello over **faye**");
    assert_eq!(model["html"], posted["html"]);
    assert_eq!(model["fromUser"]["username"], "alice");
    assert_eq!(on(&replies, "/meta/connect").len(), 1, "{replies:?}");
    // Bob's room list learns of one more unread message at the same time.
    let patch = on(&replies, &own_rooms);
    assert_eq!(patch.len(), 1, "{replies:?}");
    assert_eq!(
        patch[0]["data"],
        json!({ "operation": "patch", "model": { "id": room, "unreadItems": 1, "mentions": 0 } })
    );

    // Marking it read patches the reader's room list; unsubscribed channels go quiet.
    let replies = post(
        &server,
        "/bayeux",
        json!([{ "channel": "/meta/unsubscribe", "clientId": client, "subscription": channel, "id": "8" }]),
    )
    .await;
    assert_eq!(replies[0]["successful"], true, "{replies:?}");
    let (status, _) = server
        .post(
            Some(&bob.token),
            &format!("/v1/user/me/rooms/{room}/unreadItems"),
            json!({ "chat": [id_of(&posted)] }),
        )
        .await;
    assert_eq!(status, 200);
    server.say(&alice, room, "not for the unsubscribed").await;
    let mut seen = Vec::new();
    for id in ["9", "10", "10a"] {
        let replies = post(
            &server,
            "/bayeux",
            json!([connect(&client, "long-polling", id)]),
        )
        .await;
        seen.extend(replies);
        let last = on(&seen, &own_rooms)
            .last()
            .map(|m| m["data"]["model"]["unreadItems"].clone());
        if last == Some(json!(1)) {
            break;
        }
    }
    // Read (0), then one new message (1); when the count after reading already saw the new
    // message, the one patch says 1 and the message is not counted twice.
    let unread: Vec<&Value> = on(&seen, &own_rooms)
        .iter()
        .map(|m| &m["data"]["model"]["unreadItems"])
        .collect();
    assert!(
        unread == vec![&json!(0), &json!(1)] || unread == vec![&json!(1)],
        "{seen:?}"
    );
    assert!(on(&seen, &channel).is_empty(), "{seen:?}");

    // A disconnected client is forgotten: its next connect is told to handshake again.
    let replies = post(
        &server,
        "/faye",
        json!([{ "channel": "/meta/disconnect", "clientId": client, "id": "11" }]),
    )
    .await;
    assert_eq!(replies[0]["successful"], true);
    let replies = post(
        &server,
        "/bayeux",
        json!([connect(&client, "long-polling", "12")]),
    )
    .await;
    assert_eq!(replies[0]["successful"], false);
    assert!(
        replies[0]["error"]
            .as_str()
            .expect("a string")
            .starts_with("401:")
    );
    assert_eq!(replies[0]["advice"]["reconnect"], "handshake");
}

#[tokio::test]
async fn websocket_client_receives_messages_posted_through_the_api() {
    let server = server().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/lobby", RoomKind::Public).await;
    server.join(&bob, "acme/lobby").await;

    let (mut ws, _) = timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{}/bayeux", server.addr)),
    )
    .await
    .expect("connect timed out")
    .expect("WebSocket connects");
    // The token comes on subscribe's ext here, as some clients send it.
    let replies = exchange(&mut ws, json!([handshake(None)])).await;
    assert_eq!(replies[0]["successful"], true, "{replies:?}");
    let client = replies[0]["clientId"]
        .as_str()
        .expect("a string")
        .to_string();
    let channel = format!("/api/v1/rooms/{room}/chatMessages");
    let earlier = server.say(&alice, room, "before subscribing").await;
    let mut message = subscribe(&client, &channel, "2");
    message["ext"] = json!({ "token": bob.token });
    let replies = exchange(&mut ws, json!([message])).await;
    assert_eq!(replies[0]["successful"], true, "{replies:?}");
    assert_eq!(
        replies[0]["ext"]["snapshot"][0]["id"],
        json!(id_of(&earlier))
    );
    assert_eq!(
        replies[0]["ext"]["snapshot"][0]["unread"], true,
        "Bob has not read it"
    );
    let mut again = subscribe(&client, &format!("/api/v1/rooms/{room}/users"), "2b");
    again["ext"] = json!({ "snapshot": false });
    let replies = exchange(&mut ws, json!([again])).await;
    assert_eq!(replies[0]["successful"], true, "{replies:?}");
    assert!(
        replies[0].get("ext").is_none(),
        "snapshot: false asks for none"
    );
    // Now signed in as Bob, his own user channel is allowed.
    let own = format!("/api/v1/user/{}", bob.user.id);
    let replies = exchange(&mut ws, json!([subscribe(&client, &own, "3")])).await;
    assert_eq!(replies[0]["successful"], true, "{replies:?}");

    ws.send(WsMessage::text(
        json!([connect(&client, "websocket", "4")]).to_string(),
    ))
    .await
    .expect("sent");
    let posted = server.say(&alice, room, "hello over a socket").await;
    let mut seen = Vec::new();
    let about_posted = |seen: &[Value], operation: &str| {
        on(seen, &channel)
            .into_iter()
            .find(|m| {
                m["data"]["model"]["id"] == json!(id_of(&posted))
                    && m["data"]["operation"] == operation
            })
            .cloned()
    };
    while about_posted(&seen, "create").is_none() {
        seen.extend(next_batch(&mut ws).await);
    }
    let data = about_posted(&seen, "create").expect("the message");
    // The message from before the subscription came in the snapshot, not live.
    assert!(
        seen.iter()
            .all(|m| m["data"]["model"]["id"] != json!(id_of(&earlier))),
        "{seen:?}"
    );
    assert_eq!(data["data"]["model"]["text"], "hello over a socket");

    // Edits arrive as updates.
    let (status, _) = server
        .post(
            Some(&bob.token),
            &format!("/v1/user/me/rooms/{room}/unreadItems"),
            json!({ "chat": [id_of(&posted)] }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .put(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages/{}", id_of(&posted)),
            json!({ "text": "edited" }),
        )
        .await;
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    while about_posted(&seen, "update").is_none() {
        seen.extend(next_batch(&mut ws).await);
    }
    let data = about_posted(&seen, "update").expect("the edit");
    assert_eq!(data["data"]["model"]["text"], "edited");
    // Its read count agrees with the readBy list: Bob read it before the edit.
    let (_, readers) = server
        .get(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages/{}/readBy", id_of(&posted)),
        )
        .await;
    assert_eq!(
        data["data"]["model"]["readBy"],
        json!(readers.as_array().map(Vec::len))
    );
    assert_eq!(data["data"]["model"]["readBy"], 1);
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn exchange(ws: &mut Ws, batch: Value) -> Vec<Value> {
    ws.send(WsMessage::text(batch.to_string()))
        .await
        .expect("sent");
    next_batch(ws).await
}

async fn next_batch(ws: &mut Ws) -> Vec<Value> {
    loop {
        let frame = timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("socket open")
            .expect("socket ok");
        if let WsMessage::Text(text) = frame {
            let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
            return match value {
                Value::Array(list) => list,
                other => vec![other],
            };
        }
    }
}

#[tokio::test]
async fn bad_tokens_and_other_peoples_channels_are_refused() {
    let server = server().await;
    let alice = server.user("alice").await;
    let mallory = server.user("mallory").await;
    let secret = server.room(&alice, "acme/staff", RoomKind::Private).await;
    let public = server.room(&alice, "acme/lobby", RoomKind::Public).await;

    // A wrong token fails the handshake, and no client id is given.
    let replies = post(&server, "/bayeux", json!([handshake(Some("not-a-token"))])).await;
    assert_eq!(replies[0]["channel"], "/meta/handshake");
    assert_eq!(replies[0]["successful"], false, "{replies:?}");
    assert!(
        replies[0]["error"]
            .as_str()
            .expect("a string")
            .starts_with("401:")
    );
    assert!(replies[0]["clientId"].is_null());

    let client = handshake_http(&server, &mallory).await;
    let refused = [
        format!("/api/v1/rooms/{secret}/chatMessages"),
        format!("/api/v1/rooms/{secret}/users"),
        format!("/api/v1/rooms/{secret}/events"),
        format!("/api/v1/user/{}/rooms", alice.user.id),
        format!("/api/v1/user/{}", alice.user.id),
        format!("/api/v1/user/{}/rooms/{public}/unreadItems", alice.user.id),
        format!("/api/v1/rooms/{secret}/chatMessages/0123456789abcdef01234567/readBy"),
    ];
    for (i, channel) in refused.iter().enumerate() {
        let replies = post(
            &server,
            "/bayeux",
            json!([subscribe(&client, channel, &i.to_string())]),
        )
        .await;
        assert_eq!(replies[0]["successful"], false, "{channel}: {replies:?}");
        assert_eq!(
            replies[0]["error"],
            json!(format!("403:{channel}:Forbidden channel"))
        );
    }
    // Unknown channels and publishing are refused too; an unknown client must handshake.
    let replies = post(
        &server,
        "/bayeux",
        json!([subscribe(&client, "/api/v1/nonsense", "9")]),
    )
    .await;
    assert!(
        replies[0]["error"]
            .as_str()
            .expect("a string")
            .starts_with("405:"),
        "{replies:?}"
    );
    let replies = post(
        &server,
        "/bayeux",
        json!([{ "channel": format!("/api/v1/rooms/{public}/chatMessages"), "clientId": client, "data": { "text": "spoofed" }, "id": "10" }]),
    )
    .await;
    assert_eq!(replies[0]["successful"], false, "{replies:?}");
    let replies = post(
        &server,
        "/bayeux",
        json!([subscribe("0000", "/api/v1/ping2", "11")]),
    )
    .await;
    assert_eq!(replies[0]["successful"], false);
    assert_eq!(replies[0]["advice"]["reconnect"], "handshake");

    // A token for one user may not take over a session signed in as another.
    let mut message = subscribe(
        &client,
        &format!("/api/v1/rooms/{public}/chatMessages"),
        "12",
    );
    message["ext"] = json!({ "token": alice.token });
    let replies = post(&server, "/bayeux", json!([message])).await;
    assert_eq!(replies[0]["successful"], false, "{replies:?}");

    // A wrong token on the request itself is a 401.
    let response = server
        .http
        .post(server.url("/bayeux?access_token=wrong"))
        .json(&json!([handshake(None)]))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 401);

    // The public room is fine; nothing was posted by the refused publish.
    let replies = post(
        &server,
        "/bayeux",
        json!([subscribe(
            &client,
            &format!("/api/v1/rooms/{public}/chatMessages"),
            "13"
        )]),
    )
    .await;
    assert_eq!(replies[0]["successful"], true, "{replies:?}");
    let (_, messages) = server
        .get(
            Some(&alice.token),
            &format!("/v1/rooms/{public}/chatMessages"),
        )
        .await;
    assert_eq!(messages, json!([]));
}

#[tokio::test]
async fn a_revoked_token_ends_the_session() {
    let server = server().await;
    let alice = server.user("alice").await;
    let room = server.room(&alice, "acme/lobby", RoomKind::Public).await;
    let client = handshake_http(&server, &alice).await;
    // Channels Gitter's web client follows are accepted, for one's own rooms only.
    let message = server.say(&alice, room, "hi").await;
    let replies = post(
        &server,
        "/bayeux",
        json!([
            subscribe(
                &client,
                &format!("/api/v1/user/{}/rooms/{room}/unreadItems", alice.user.id),
                "1"
            ),
            subscribe(
                &client,
                &format!(
                    "/api/v1/rooms/{room}/chatMessages/{}/readBy",
                    id_of(&message)
                ),
                "2"
            ),
        ]),
    )
    .await;
    assert!(
        replies.iter().all(|r| r["successful"] == true),
        "{replies:?}"
    );

    let tokens = server
        .chat
        .views()
        .tokens_of(alice.user.id)
        .await
        .expect("tokens");
    server
        .chat
        .revoke_token(&weft_chat::Actor::user(alice.user.clone()), tokens[0].id)
        .await
        .expect("revoked");
    let replies = post(
        &server,
        "/bayeux",
        json!([connect(&client, "long-polling", "3")]),
    )
    .await;
    assert_eq!(replies[0]["successful"], false, "{replies:?}");
    assert!(
        replies[0]["error"]
            .as_str()
            .expect("an error")
            .starts_with("401:"),
        "{replies:?}"
    );
    assert_eq!(replies[0]["advice"]["reconnect"], "handshake");
    let replies = post(&server, "/bayeux", json!([handshake(Some(&alice.token))])).await;
    assert_eq!(replies[0]["successful"], false, "{replies:?}");
}

#[tokio::test]
async fn a_banned_subscriber_stops_receiving_the_room() {
    let server = server().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/lobby", RoomKind::Public).await;
    server.join(&bob, "acme/lobby").await;
    let client = handshake_http(&server, &bob).await;
    let channel = format!("/api/v1/rooms/{room}/chatMessages");
    let replies = post(
        &server,
        "/bayeux",
        json!([subscribe(&client, &channel, "1")]),
    )
    .await;
    assert_eq!(replies[0]["successful"], true, "{replies:?}");

    let (status, body) = server
        .post(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/bans"),
            json!({ "username": "bob" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    server.say(&alice, room, "after the ban").await;
    let mut seen = Vec::new();
    for id in ["2", "3"] {
        seen.extend(
            post(
                &server,
                "/bayeux",
                json!([connect(&client, "long-polling", id)]),
            )
            .await,
        );
    }
    assert!(on(&seen, &channel).is_empty(), "{seen:?}");
    // Nor may Bob subscribe again.
    let replies = post(
        &server,
        "/bayeux",
        json!([subscribe(&client, &channel, "4")]),
    )
    .await;
    assert_eq!(replies[0]["successful"], false, "{replies:?}");
}
