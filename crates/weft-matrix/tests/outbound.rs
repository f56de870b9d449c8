//! Weft → Matrix against a real store, with a stand-in homeserver on loopback that records
//! what the bridge asks of it and answers as Synapse does for the few client-server calls
//! that sending a message takes. The Synapse suite (`tests/matrix`) is the end-to-end proof;
//! this one pins the sender's side of the contract offline: log order, transaction ids from
//! log positions, the puppet as sender, typed content, the mappings and cursor recorded, and
//! nothing from Matrix sent back.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use tower::ServiceExt;
use weft_chat::{Actor, NewPost, NewUser};
use weft_matrix::{Bridge, Carried, MatrixTables};

use common::MATRIX_ROOM;

/// One request the bridge made of the homeserver.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    body: Value,
}

#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Transaction id → event id, as a homeserver deduplicates sends.
    sent: Arc<Mutex<HashMap<String, String>>>,
}

impl Recorder {
    fn sends(&self) -> Vec<Call> {
        self.calls
            .lock()
            .expect("calls")
            .iter()
            .filter(|c| c.method == "PUT" && c.path.contains("/send/"))
            .cloned()
            .collect()
    }
}

/// Answers what sending a message takes: registration, devices, profiles, joins, sends.
async fn homeserver(
    State(recorder): State<Recorder>,
    request: Request,
) -> (StatusCode, Json<Value>) {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    recorder.calls.lock().expect("calls").push(Call {
        method: method.clone(),
        path: path.clone(),
        query,
        body,
    });
    let segments: Vec<&str> = path.split('/').collect();
    let answer = match (method.as_str(), segments.as_slice()) {
        ("PUT", [.., "send", _, txn]) => {
            let mut sent = recorder.sent.lock().expect("sent");
            let n = sent.len();
            let id = sent
                .entry((*txn).to_string())
                .or_insert_with(|| format!("$sent{n}"))
                .clone();
            json!({ "event_id": id })
        }
        ("POST", [.., "join", room]) => json!({ "room_id": room }),
        ("POST", [.., "login"]) => json!({ "access_token": "unused", "device_id": "WEFT" }),
        _ => json!({}),
    };
    (StatusCode::OK, Json(answer))
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(found) = check().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_messages_reach_the_homeserver_in_log_order_once() {
    let recorder = Recorder::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let hs_url = format!("http://{}", listener.local_addr().expect("address"));
    let app = axum::Router::new()
        .fallback(homeserver)
        .with_state(recorder.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (store, guard) = weft_store::testing::sqlite().await;
    let (config, _dir) = common::bridge_config(&hs_url);
    let hs_token = config.registration.hs_token.clone();
    let chat = common::chat_over(&store);
    let tables = MatrixTables::open(store.clone()).await.expect("tables");
    let room = common::portal(&chat, &tables).await;
    let alice = chat
        .create_user(NewUser {
            username: "alice".into(),
            display_name: Some("Alice".into()),
            password: None,
            site_admin: false,
        })
        .await
        .expect("alice");
    let as_alice = Actor::user(alice.clone());
    chat.join(&as_alice, room.id).await.expect("joined");

    let bridge = Bridge::new(chat.clone(), store.clone(), config)
        .await
        .expect("the bridge");
    bridge.start();

    let say = async |text: &str| {
        chat.post(
            &as_alice,
            room.id,
            NewPost {
                text: text.into(),
                ..NewPost::default()
            },
        )
        .await
        .expect("posted")
    };
    // The sender starts from the present when it first runs: wait until it is live (a
    // warm-up message reaches the homeserver), then start afresh.
    eventually("the sender is live", async || {
        say("warm-up").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        (!recorder.sends().is_empty()).then_some(())
    })
    .await;
    let mut settled = recorder.sends().len();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = recorder.sends().len();
        if now == settled {
            break;
        }
        settled = now;
    }
    recorder
        .calls
        .lock()
        .expect("calls")
        .retain(|c| !c.path.contains("/send/"));

    let first = say("first").await;
    let second = say("**second**").await;
    chat.edit(&as_alice, room.id, first.message.id, "first, edited", None)
        .await
        .expect("edited");
    chat.react(&as_alice, room.id, second.message.id, "👍", true, None)
        .await
        .expect("reacted");
    // A message from Matrix: weft must not send it back.
    let push = Request::put("/_matrix/app/v1/transactions/1")
        .header("authorization", format!("Bearer {hs_token}"))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({ "events": [{
                "type": "m.room.message", "event_id": "$from-matrix", "sender": "@maria:hs.test",
                "room_id": MATRIX_ROOM, "origin_server_ts": 1,
                "content": { "msgtype": "m.text", "body": "from Matrix" },
            }] })
            .to_string(),
        ))
        .expect("request");
    let status = bridge
        .router()
        .oneshot(push)
        .await
        .expect("answer")
        .status();
    assert_eq!(status, StatusCode::OK);
    let third = say("third").await;

    eventually("five sends", async || {
        (recorder.sends().len() >= 5).then_some(())
    })
    .await;
    // A little longer: anything more (an echo, a duplicate) would show now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sends = recorder.sends();
    let bodies: Vec<String> = sends
        .iter()
        .map(|c| {
            c.body["m.new_content"]["body"]
                .as_str()
                .or(c.body["body"].as_str())
                .or(c.body["m.relates_to"]["key"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        bodies,
        ["first", "**second**", "first, edited", "👍", "third"],
        "in log order, each once, and nothing from Matrix: {sends:#?}"
    );
    let txns: Vec<&str> = sends
        .iter()
        .map(|c| c.path.rsplit('/').next().unwrap_or_default())
        .collect();
    assert!(txns.iter().all(|t| t.starts_with("weft-")), "{txns:?}");
    let seqs: Vec<i64> = txns
        .iter()
        .filter_map(|t| t.trim_start_matches("weft-").parse().ok())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "transaction ids follow the log: {seqs:?}"
    );
    let registered: Vec<String> = recorder
        .calls
        .lock()
        .expect("calls")
        .iter()
        .filter(|c| c.path.ends_with("/register"))
        .filter_map(|c| c.body["username"].as_str().map(str::to_string))
        .collect();
    assert!(!registered.is_empty(), "the puppet was registered");
    assert!(
        registered.iter().all(|r| *r == registered[0]),
        "one puppet: {registered:?}"
    );
    let puppet = format!("user_id=%40{}%3Ahs.test", registered[0]);
    for call in &sends {
        assert!(
            call.query.contains(&puppet) && call.query.contains("device_id=WEFT"),
            "sent as Alice's puppet ({puppet}) from its device: {call:?}"
        );
    }
    assert_eq!(
        sends[1].body["formatted_body"], "<p><strong>second</strong></p>",
        "typed content with the HTML"
    );
    assert_eq!(sends[2].body["m.relates_to"]["rel_type"], "m.replace");
    assert_eq!(sends[3].body["m.relates_to"]["rel_type"], "m.annotation");

    // What each send became is recorded, and the cursor moved past the last.
    let (event, room_of) = tables
        .event_for(&Carried::Message(third.message.id))
        .await
        .expect("lookup")
        .expect("the third message is mapped");
    assert_eq!(room_of, MATRIX_ROOM);
    assert_eq!(
        Some(event.to_string()),
        recorder.sent.lock().expect("sent").get(txns[4]).cloned(),
        "mapped to the event the homeserver answered"
    );
    let cursor = eventually("the cursor", async || {
        tables
            .cursor()
            .await
            .ok()
            .flatten()
            .filter(|c| *c >= seqs[4])
    })
    .await;
    assert!(cursor >= seqs[4]);
    drop(bridge);
    guard.finish(store).await;
}
