//! The web app: server-rendered pages (room directory, rooms, archives, sign-in, tokens) and
//! the script and style sheet that make a room live. The assets are compiled into the binary,
//! so `weft serve` needs no files at run time and pages load nothing from other sites.
//!
//! Pages are plain strings built with [`esc`] around everything that is not trusted HTML;
//! the only HTML inserted as it is comes from the message store, which sanitised it when the
//! message was rendered.

mod account;
mod archives;
pub(crate) mod avatar;
mod html;
mod room;

use std::sync::LazyLock;

use axum::Router;
use axum::extract::State;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use weft_chat::Actor;

use crate::extract::{SESSION_COOKIE, session_cookie};
use crate::{ApiError, AppState};

const APP_JS: &str = include_str!("../../../../web/app.js");
const APP_CSS: &str = include_str!("../../../../web/app.css");

/// A short fingerprint of the assets, so their URLs change whenever they do and browsers may
/// cache them for good.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in APP_JS.bytes().chain(APP_CSS.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", hash & 0xffff_ffff_ffff)
});

/// The web app's routes. Static prefixes (`/v1`, `/files`, …) win over `/{community}/{room}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(room::directory))
        .route("/login", get(account::login_page).post(account::login))
        .route("/logout", post(account::logout))
        .route(
            "/settings/tokens",
            get(account::tokens_page).post(account::create_token),
        )
        .route(
            "/settings/tokens/{token_id}/revoke",
            post(account::revoke_token),
        )
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/sitemap.xml", get(archives::sitemap))
        .route("/robots.txt", get(robots))
        .route("/avatars/{name}", get(avatar::avatar))
        .route("/-/dm/{room_id}", get(room::one_to_one_page))
        .route("/{community}/{room}", get(room::room_page))
        .route("/{community}/{room}/archives", get(archives::calendar))
        .route(
            "/{community}/{room}/archives/{year}/{month}/{day}",
            get(archives::day),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn robots() -> Response {
    (
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        "User-agent: *\nDisallow: /v1/\nDisallow: /api/\nDisallow: /files/\nDisallow: /settings/\nDisallow: /-/\nSitemap: /sitemap.xml\n",
    )
        .into_response()
}

/// The visitor behind a page request: the session cookie's user, or anonymous. A revoked
/// session is simply a visitor.
pub(crate) async fn viewer(state: &AppState, headers: &HeaderMap) -> Actor {
    match session_cookie(headers) {
        Some(secret) => state
            .chat
            .authenticate_token(&secret)
            .await
            .unwrap_or_else(|_| Actor::anonymous()),
        None => Actor::anonymous(),
    }
}

/// An HTML page with the headers every page carries: a strict content security policy (no
/// inline script, nothing from other sites but images in messages), no framing, no sniffing.
pub(crate) fn page(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data: blob: https: http:; connect-src 'self'; object-src 'none'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Not found: an HTML page for browsers, the API's JSON error for everyone else (so that
/// unknown API paths that happen to look like `community/room` still answer as the API does).
pub(crate) fn not_found(state_viewer: &Actor, headers: &HeaderMap) -> Response {
    let wants_html = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if !wants_html {
        return ApiError::new(StatusCode::NOT_FOUND, "no such endpoint").into_response();
    }
    let body = html::layout(
        &html::Head::new("Not found"),
        state_viewer,
        "<main class=\"narrow\"><h1>Not found</h1><p>There is nothing here, or it is private. \
         <a href=\"/\">Find a room</a>.</p></main>",
    );
    page(StatusCode::NOT_FOUND, body)
}

/// The fallback for every path no route matches.
pub(crate) async fn fallback(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let actor = viewer(&state, &headers).await;
    not_found(&actor, &headers)
}

/// A `Set-Cookie` value for the session (empty `secret`: remove it).
pub(crate) fn session_cookie_header(secret: &str, secure: bool) -> HeaderValue {
    let lifetime = if secret.is_empty() { 0 } else { 30 * 24 * 3600 };
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={lifetime}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("weft_session=; Path=/; Max-Age=0"))
}

/// Whether the request reached weft over HTTPS (directly or through a proxy that says so).
pub(crate) fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}
