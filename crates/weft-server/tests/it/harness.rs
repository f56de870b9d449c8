//! Boots the exact application weft serves, on a fresh database, for one test.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use weft_chat::{Actor, Chat, ChatConfig, NewRoom, NewUser};
use weft_core::{Id, RoomKind, User};
use weft_server::{AppState, ServerConfig};
use weft_store::Store;

/// A running server and what a test needs to talk to it.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The port, for WebSocket URLs.
    pub addr: SocketAddr,
    /// The service behind the server, for setup and for checking stored state.
    pub chat: Chat,
    /// An HTTP client.
    pub http: reqwest::Client,
    dir: tempfile::TempDir,
}

/// A user with a token.
#[derive(Clone)]
pub struct TestUser {
    pub user: User,
    pub token: String,
}

impl TestServer {
    /// Starts a server on a fresh SQLite database.
    pub async fn start() -> TestServer {
        Self::start_with(ChatConfig::default(), ServerConfig::default()).await
    }

    /// Starts a server with the given settings.
    pub async fn start_with(chat_config: ChatConfig, server_config: ServerConfig) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("weft.db").display());
        let store = Store::open(&url).await.expect("store opens");
        let files =
            object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("file store");
        let chat = Chat::new(store, Arc::new(files), chat_config);
        let app = weft_server::app(AppState::new(chat.clone(), server_config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("serve");
        });
        TestServer {
            base: format!("http://{addr}"),
            addr,
            chat,
            http: reqwest::Client::new(),
            dir,
        }
    }

    /// How many uploaded files the file store holds.
    pub fn stored_files(&self) -> usize {
        match std::fs::read_dir(self.dir.path().join("files")) {
            Ok(entries) => entries.count(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => panic!("reading the file store: {e}"),
        }
    }

    /// A URL on the server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a user and a token for them.
    pub async fn user(&self, name: &str) -> TestUser {
        self.user_with(name, false, false).await
    }

    /// Creates a user (optionally a site admin) and a token (optionally with the bridge capability).
    pub async fn user_with(&self, name: &str, site_admin: bool, bridge: bool) -> TestUser {
        let user = self
            .chat
            .create_user(NewUser {
                username: name.into(),
                display_name: None,
                password: None,
                site_admin,
            })
            .await
            .expect("user created");
        let (_, token) = self
            .chat
            .create_token(user.id, "test", bridge)
            .await
            .expect("token created");
        TestUser { user, token }
    }

    /// Creates `community/room` (community created if needed) administered by `owner`.
    pub async fn room(&self, owner: &TestUser, uri: &str, kind: RoomKind) -> Id {
        let (group_uri, name) = uri.split_once('/').expect("community/room");
        let actor = Actor::user(owner.user.clone());
        let group = match self
            .chat
            .views()
            .community_by_uri(group_uri)
            .await
            .expect("lookup")
        {
            Some(g) => g,
            None => self
                .chat
                .create_group(&actor, group_uri, None)
                .await
                .expect("group created"),
        };
        self.chat
            .create_room(
                &actor,
                NewRoom {
                    group_id: group.id,
                    name: name.into(),
                    topic: String::new(),
                    kind,
                },
            )
            .await
            .expect("room created")
            .id
    }

    /// GET with a token (or none); returns status and JSON body (Null when empty).
    pub async fn get(&self, token: Option<&str>, path: &str) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        into_json(req.send().await.expect("request sent")).await
    }

    /// Sends a JSON body with a method; returns status and JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        into_json(req.send().await.expect("request sent")).await
    }

    /// POST a JSON body.
    pub async fn post(&self, token: Option<&str>, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, token, path, body).await
    }

    /// PUT a JSON body.
    pub async fn put(&self, token: Option<&str>, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, token, path, body).await
    }

    /// DELETE without a body.
    pub async fn delete(&self, token: Option<&str>, path: &str) -> (u16, Value) {
        let mut req = self.http.delete(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        into_json(req.send().await.expect("request sent")).await
    }

    /// Sends raw bytes with a content type; returns status and JSON body.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        into_json(req.send().await.expect("request sent")).await
    }

    /// Joins `user` to the room at `community/room` through the API.
    pub async fn join(&self, user: &TestUser, uri: &str) -> Value {
        let (status, body) = self
            .post(
                Some(&user.token),
                "/v1/rooms",
                serde_json::json!({ "uri": uri }),
            )
            .await;
        assert_eq!(status, 200, "joining {uri}: {body}");
        body
    }

    /// Posts `text` as `user`, expecting success; returns the message.
    pub async fn say(&self, user: &TestUser, room: Id, text: &str) -> Value {
        let (status, body) = self
            .post(
                Some(&user.token),
                &format!("/v1/rooms/{room}/chatMessages"),
                serde_json::json!({ "text": text }),
            )
            .await;
        assert_eq!(status, 200, "posting {text:?}: {body}");
        body
    }

    /// Everything stored in a room's timeline (thread replies included), as `reader` sees it:
    /// compare before and after a rejected request to show it changed nothing.
    pub async fn snapshot(&self, reader: &TestUser, room: Id) -> Value {
        let (status, body) = self
            .get(
                Some(&reader.token),
                &format!("/v1/rooms/{room}/chatMessages?includeThreads=true&limit=100"),
            )
            .await;
        assert_eq!(status, 200, "reading the timeline: {body}");
        body
    }

    /// The `ws://` URL of the WebSocket feed with a token in the query.
    pub fn ws_url(&self, token: Option<&str>) -> String {
        match token {
            Some(t) => format!("ws://{}/v1/ws?access_token={t}", self.addr),
            None => format!("ws://{}/v1/ws", self.addr),
        }
    }
}

/// The ids of a list of messages, in order.
pub fn ids(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .expect("a list of messages")
        .iter()
        .map(|m| m["id"].as_str().expect("message id").to_string())
        .collect()
}

/// A message's id.
pub fn id_of(message: &Value) -> String {
    message["id"].as_str().expect("an id").to_string()
}

/// Status and JSON body of a response.
pub async fn into_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body read");
    let json = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, json)
}
