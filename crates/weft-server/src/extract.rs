//! Request extractors: the caller behind a token (or the web app's session cookie), ids in
//! paths, and bodies that may be JSON or form-encoded (Gitter accepted both), each failing with
//! a clear [`ApiError`].

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use weft_chat::Actor;
use weft_core::Id;

use crate::AppState;
use crate::error::ApiError;

/// The bearer token in a request: `Authorization: Bearer …`, or `?access_token=…` as Gitter
/// also accepted.
pub fn bearer_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let mut words = value.split_whitespace();
        if let (Some(scheme), Some(token)) = (words.next(), words.next())
            && (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        {
            return Some(token.to_string());
        }
    }
    parts.uri.query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("access_token=").map(|t| t.to_string()))
    })
}

/// The cookie that carries a web session's token.
pub const SESSION_COOKIE: &str = "weft_session";

/// The header (with value `weft`) the web app sends with every request that changes
/// something. A page on another site cannot send it without the browser asking weft first
/// (which weft refuses), so a cookie alone never authorises a change.
pub const CSRF_HEADER: &str = "x-requested-with";

/// The web session token in a request's cookies, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE && !value.is_empty()).then(|| value.to_string())
        })
}

/// Whether a request comes from a page of this very site: its `Origin` names the host it was
/// sent to, or (without `Origin`) the browser says it is same-origin.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    match headers.get(ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => {
            let authority = origin
                .split_once("://")
                .map(|(_, rest)| rest)
                .unwrap_or_default();
            host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
        }
        None => headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|s| s == "same-origin"),
    }
}

/// Whether a request may be authenticated by the session cookie: reads always, WebSocket
/// handshakes from this site's pages, changes only with the web app's header.
fn cookie_allowed(parts: &Parts) -> bool {
    let upgrade = parts.headers.contains_key(axum::http::header::UPGRADE);
    if upgrade {
        return same_origin(&parts.headers);
    }
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    parts
        .headers
        .get(CSRF_HEADER)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"weft"))
}

/// A signed-in caller; 401 without a valid token.
pub struct Caller(pub Actor);

/// A caller who may also be an anonymous visitor (peeking into public rooms); a token that is
/// present but wrong is still a 401.
pub struct MaybeCaller(pub Actor);

async fn actor_from(parts: &Parts, state: &AppState) -> Result<Option<Actor>, ApiError> {
    if let Some(actor) = parts.extensions.get::<Actor>() {
        return Ok(Some(actor.clone()));
    }
    if let Some(token) = bearer_token(parts) {
        return Ok(Some(state.chat.authenticate_token(&token).await.map_err(
            |_| ApiError::new(StatusCode::UNAUTHORIZED, "invalid or revoked access token"),
        )?));
    }
    let Some(secret) = session_cookie(&parts.headers) else {
        return Ok(None);
    };
    if !cookie_allowed(parts) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "requests signed in by the session cookie must come from weft's own pages",
        ));
    }
    // A session that was revoked or expired leaves a visitor, not an error: they can still
    // read public rooms, and signing in again replaces the cookie.
    Ok(state.chat.authenticate_token(&secret).await.ok())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match actor_from(parts, state).await? {
            Some(actor) => Ok(Caller(actor)),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "an access token is required",
            )),
        }
    }
}

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(MaybeCaller(
            actor_from(parts, state)
                .await?
                .unwrap_or_else(Actor::anonymous),
        ))
    }
}

/// Parses a path segment as an id, 400 otherwise.
pub fn parse_id(text: &str, what: &str) -> Result<Id, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid {what}: {text}")))
}

/// A request body as JSON or `application/x-www-form-urlencoded`.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_form = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        if std::str::from_utf8(&bytes).is_err() {
            return Err(ApiError::bad_request("request body is not valid UTF-8"));
        }
        if is_form {
            serde_urlencoded_from(&bytes)
        } else {
            let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
                Bytes::from_static(b"{}")
            } else {
                bytes
            };
            serde_json::from_slice(&bytes)
                .map(Body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
        }
    }
}

/// Form fields arrive as strings; going through a JSON object lets "true" and "false" reach
/// booleans the way JSON bodies would.
fn serde_urlencoded_from<T: DeserializeOwned>(bytes: &[u8]) -> Result<Body<T>, ApiError> {
    let mut object = serde_json::Map::new();
    for pair in bytes.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        let (key, value) = (form_decode(key)?, form_decode(value)?);
        let json = match value.as_str() {
            "true" => serde_json::Value::Bool(true),
            "false" => serde_json::Value::Bool(false),
            _ => serde_json::Value::String(value),
        };
        object.insert(key, json);
    }
    serde_json::from_value(serde_json::Value::Object(object))
        .map(Body)
        .map_err(|e| ApiError::bad_request(format!("invalid form body: {e}")))
}

/// Decodes one form component (`+` is a space, `%XX` a byte), refusing bytes that do not make
/// UTF-8 rather than replacing them, so that text is stored as sent or not at all.
fn form_decode(raw: &[u8]) -> Result<String, ApiError> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::bad_request("form body is not valid UTF-8 once decoded"))
}

/// Query parameters; a query that does not fit is a 400 with a JSON error.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::new(e.status(), e.body_text()))
    }
}

/// Path segments; a segment that does not decode is a 400 with a JSON error.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::new(e.status(), e.body_text()))
    }
}

fn body_rejection(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large")
    } else {
        ApiError::new(e.status(), format!("could not read the request body: {e}"))
    }
}
