//! Weft's HTTP face: the Gitter-compatible REST API (`/v1` and `/api/v1`), the streaming API
//! (`/stream/v1`), the WebSocket feed (`/v1/ws`), file downloads and the web app. Handlers are
//! thin: they extract, call the chat service, and map its records to Gitter's JSON or to HTML.

mod error;
mod extract;
mod frames;
mod ratelimit;
mod routes;
mod web;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use weft_chat::Chat;

pub use error::{ApiError, ApiResult};
pub use frames::{Frame, FrameStream, Frames, Operation, Resource};
pub use ratelimit::{ClientKey, FAILURES_PER_MINUTE, MAX_TRACKED_CALLERS, RateLimiter};

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Requests a token (or, without one, an address) may make per minute; 0 turns limiting off.
    pub rate_limit_per_minute: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client the limiter counts against.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How often streams send a heartbeat; also how long a Faye `/meta/connect` is held.
    pub heartbeat: Duration,
    /// The Matrix homeserver's name when the bridge is configured, so that pages can link
    /// rooms on `matrix.to`.
    pub matrix_server_name: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            rate_limit_per_minute: 1200,
            trusted_proxies: Vec::new(),
            heartbeat: Duration::from_secs(30),
            matrix_server_name: None,
        }
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The chat service.
    pub chat: Chat,
    /// Events rendered once for every live subscriber.
    pub frames: Frames,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// Per-caller request budget.
    pub limiter: RateLimiter,
}

impl AppState {
    /// Builds the state and starts rendering live frames.
    pub fn new(chat: Chat, config: ServerConfig) -> AppState {
        let frames = Frames::start(chat.clone());
        let limiter = RateLimiter::new(config.rate_limit_per_minute);
        AppState {
            chat,
            frames,
            config: Arc::new(config),
            limiter,
        }
    }
}

/// The whole HTTP application; tests build exactly this.
pub fn app(state: AppState) -> Router {
    let max_body = state.chat.config().max_upload_bytes + 64 * 1024;
    let api = routes::api();
    Router::new()
        .nest("/v1", api.clone())
        .nest("/api/v1", api)
        .merge(routes::stream::router())
        .merge(routes::files::router())
        .merge(routes::bayeux::router(&state))
        .merge(web::router())
        .route("/healthz", get(|| async { "ok" }))
        .fallback(web::fallback)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this endpoint does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ratelimit::middleware,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
