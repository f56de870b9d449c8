//! The transports: HTTP long-polling (a POSTed batch of messages, as JSON or as the form
//! field `message`) and WebSocket, and who a request acts as.

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::extract::bearer_token;
use crate::{ApiError, AppState};

use super::{Auth, BODY_MAX, Client, Engine};

/// The messages of a request: a JSON array or one object, as a body or in a `message`
/// form field.
pub(super) fn parse_messages(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<Value>, ApiError> {
    let json_text =
        if content_type.is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded")) {
            // Invalid UTF-8 in the form is replaced, and then fails as JSON below.
            form_urlencoded::parse(body)
                .find(|(key, _)| key == "message")
                .map(|(_, value)| value.into_owned())
                .ok_or_else(|| ApiError::bad_request("missing message field"))?
        } else {
            std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("request body is not valid UTF-8"))?
                .to_string()
        };
    match serde_json::from_str::<Value>(&json_text) {
        Ok(Value::Array(list)) if list.iter().all(Value::is_object) => Ok(list),
        Ok(object @ Value::Object(_)) => Ok(vec![object]),
        _ => Err(ApiError::bad_request(
            "expected a Bayeux message or an array of them",
        )),
    }
}

/// The actor behind a bearer token on the request itself (header or `?access_token=`), if any.
pub(super) async fn request_actor(
    state: &AppState,
    parts: &axum::http::request::Parts,
) -> Result<Option<Auth>, ApiError> {
    match bearer_token(parts) {
        Some(token) => state
            .chat
            .authenticate_token(&token)
            .await
            .map(|actor| Some((actor, token)))
            .map_err(|_| {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid or revoked access token")
            }),
        None => Ok(None),
    }
}

/// HTTP long-polling: a POSTed batch, answered with a JSON array.
pub(super) async fn poll(
    State(state): State<AppState>,
    Extension(engine): Extension<Engine>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let actor = match request_actor(&state, &parts).await {
        Ok(actor) => actor,
        Err(e) => return e.into_response(),
    };
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match axum::body::to_bytes(body, BODY_MAX).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large")
                .into_response();
        }
    };
    let messages = match parse_messages(content_type.as_deref(), &body) {
        Ok(messages) => messages,
        Err(e) => return e.into_response(),
    };
    let mut held = None;
    let mut replies = engine
        .handle_batch(messages, actor.as_ref(), &mut held)
        .await;
    if let Some((client, reply, hold)) = held {
        replies.extend(engine.hold_connect(client, reply, hold).await);
    }
    let mut response = Value::Array(replies).to_string().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    response
}

/// WebSocket: batches in text frames, answers and data as JSON arrays.
pub(super) async fn upgrade(
    State(state): State<AppState>,
    Extension(engine): Extension<Engine>,
    request: Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    let actor = match request_actor(&state, &parts).await {
        Ok(actor) => actor,
        Err(e) => return e.into_response(),
    };
    match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(ws) => ws.on_upgrade(move |socket| socket_session(engine, actor, socket)),
        Err(e) => ApiError::new(e.status(), e.body_text()).into_response(),
    }
}

pub(super) async fn send(socket: &mut WebSocket, messages: Vec<Value>) -> bool {
    if messages.is_empty() {
        return true;
    }
    socket
        .send(WsMessage::Text(Value::Array(messages).to_string().into()))
        .await
        .is_ok()
}

pub(super) async fn socket_session(engine: Engine, actor: Option<Auth>, mut socket: WebSocket) {
    // The client whose connects this socket carries, and the connect being held.
    let mut bound: Option<Arc<Client>> = None;
    let mut held: Option<(Value, tokio::time::Instant, u64)> = None;
    loop {
        let wake = async {
            match &bound {
                Some(client) => client.wake.notified().await,
                None => std::future::pending().await,
            }
        };
        let deadline = held.as_ref().map(|(_, at, _)| *at);
        let until = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(WsMessage::Text(text))) => text,
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let messages = match parse_messages(None, text.as_bytes()) {
                    Ok(messages) => messages,
                    Err(e) => {
                        let error = json!([{ "successful": false, "error": format!("400::{}", e.message) }]);
                        if socket.send(WsMessage::Text(error.to_string().into())).await.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let mut connect = None;
                let mut replies = engine.handle_batch(messages, actor.as_ref(), &mut connect).await;
                if let Some((client, reply, hold)) = connect {
                    // A newer connect on this socket answers the one held before it.
                    if let Some((old, _, _)) = held.take() {
                        replies.push(old);
                    }
                    let generation = client.state().connects;
                    held = Some((reply, tokio::time::Instant::now() + hold, generation));
                    bound = Some(client);
                }
                if !send(&mut socket, replies).await {
                    return;
                }
            }
            _ = wake => {}
            _ = until => {}
        }
        // Deliver whatever is queued at once; answer the held connect with it or at its end.
        let Some(client) = bound.clone() else {
            continue;
        };
        let mut out = Vec::new();
        let closed = {
            let mut s = client.state();
            out.extend(s.queue.drain(..));
            s.last_seen = Instant::now();
            s.closed
        };
        if closed {
            if let Some((mut reply, _, _)) = held.take() {
                reply["successful"] = json!(false);
                reply["error"] = json!(format!("401:{}:Unknown client", client.id));
                reply["advice"] = json!({ "reconnect": "handshake", "interval": 0 });
                out.push(reply);
            }
            bound = None;
        } else if let Some((_, at, generation)) = &held {
            let due = !out.is_empty()
                || client.state().connects != *generation
                || tokio::time::Instant::now() >= *at;
            if due && let Some((reply, _, _)) = held.take() {
                out.push(reply);
            }
        }
        if !send(&mut socket, out).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded; charset=UTF-8");

    #[test]
    fn a_batch_comes_as_json_or_as_a_form_field() {
        let batch =
            r#"[{"channel":"/meta/connect","clientId":"c1"},{"channel":"/meta/subscribe"}]"#;
        let parsed = parse_messages(Some("application/json"), batch.as_bytes()).expect("json");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0]["clientId"], "c1");
        let one = parse_messages(None, br#"{"channel":"/meta/handshake"}"#).expect("one");
        assert_eq!(one[0]["channel"], "/meta/handshake");
        // As the Faye client posts when it cannot send JSON: percent-encoded, `+` for spaces.
        let form = "clientId=x&message=%5B%7B%22channel%22%3A%22%2Fmeta%2Fconnect%22%2C%22ext%22%3A%7B%22t%22%3A%22a+b%20%C3%A9%22%7D%7D%5D";
        let parsed = parse_messages(FORM, form.as_bytes()).expect("form");
        assert_eq!(parsed[0]["channel"], "/meta/connect");
        assert_eq!(parsed[0]["ext"]["t"], "a b é");
    }

    #[test]
    fn a_bad_batch_is_a_bad_request() {
        for (content_type, body) in [
            (FORM, &b"clientId=x"[..]),
            (FORM, &b"message=%5B1%2C2%5D"[..]),
            (None, &b"[{}, 3]"[..]),
            (None, &b"not json"[..]),
            (None, &[0xff, 0xfe][..]),
            (FORM, &b"message=%FF%FE"[..]),
        ] {
            let refused = parse_messages(content_type, body);
            assert!(
                matches!(&refused, Err(e) if e.status == StatusCode::BAD_REQUEST),
                "{:?}: {refused:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
