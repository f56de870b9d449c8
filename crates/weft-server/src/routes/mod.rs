//! Route tables. Each module is one Gitter resource.

pub mod bayeux;
pub mod files;
mod groups;
mod messages;
mod rooms;
pub mod stream;
mod users;
mod ws;

use axum::Router;

use crate::AppState;

/// The REST API, mounted under both `/v1` and `/api/v1`.
pub fn api() -> Router<AppState> {
    Router::new()
        .merge(users::router())
        .merge(rooms::router())
        .merge(groups::router())
        .merge(messages::router())
        .merge(ws::router())
}
