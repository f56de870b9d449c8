//! The Application Service API weft serves to the homeserver: transactions, user and alias
//! queries, and ping. Every request must carry `Authorization: Bearer <hs_token>`.
//!
//! Spec: <https://spec.matrix.org/latest/application-service-api/>.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::Bridge;

/// The AS routes, authenticated with the homeserver's token.
pub fn router(bridge: Bridge) -> Router {
    Router::new()
        .route("/_matrix/app/v1/transactions/{txn_id}", put(transaction))
        .route("/_matrix/app/v1/users/{user_id}", get(query_user))
        .route("/_matrix/app/v1/rooms/{alias}", get(query_alias))
        .route("/_matrix/app/v1/ping", post(ping))
        .route("/_matrix/app/{*rest}", axum::routing::any(unrecognized))
        .layer(middleware::from_fn_with_state(bridge.clone(), authenticate))
        .with_state(bridge)
}

/// A Matrix error response.
fn matrix_error(status: StatusCode, errcode: &str, error: &str) -> Response {
    (status, Json(json!({ "errcode": errcode, "error": error }))).into_response()
}

async fn authenticate(State(bridge): State<Bridge>, request: Request, next: Next) -> Response {
    let expected = bridge.config().registration.hs_token.as_bytes();
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::as_bytes);
    match given {
        None => matrix_error(
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
            "missing homeserver token",
        ),
        Some(token) if bool::from(token.ct_eq(expected)) => next.run(request).await,
        Some(_) => matrix_error(
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
            "wrong homeserver token",
        ),
    }
}

async fn unrecognized() -> Response {
    matrix_error(
        StatusCode::NOT_FOUND,
        "M_UNRECOGNIZED",
        "unrecognized request",
    )
}

async fn transaction(
    State(bridge): State<Bridge>,
    Path(txn_id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let started = std::time::Instant::now();
    tracing::debug!(txn_id, "applying a Matrix transaction");
    match bridge.apply_transaction(&txn_id, &body).await {
        Ok(()) => {
            tracing::debug!(
                txn_id,
                elapsed_us = started.elapsed().as_micros() as u64,
                "applied a Matrix transaction"
            );
            Json(json!({})).into_response()
        }
        Err(e) => {
            // Not answered 200: the homeserver sends the same transaction again later.
            tracing::error!(txn_id, error = %e, "could not apply a Matrix transaction; it will be retried");
            matrix_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "transaction not applied; retry",
            )
        }
    }
}

async fn query_user(State(bridge): State<Bridge>, Path(user_id): Path<String>) -> Response {
    match bridge.provision_puppet_for(&user_id).await {
        Ok(true) => Json(json!({})).into_response(),
        Ok(false) => matrix_error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "no such weft user"),
        Err(e) => {
            tracing::error!(%user_id, error = %e, "user query failed");
            matrix_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "user query failed",
            )
        }
    }
}

async fn query_alias(State(bridge): State<Bridge>, Path(alias): Path<String>) -> Response {
    match bridge.room_for_alias(&alias).await {
        Ok(true) => Json(json!({})).into_response(),
        Ok(false) => matrix_error(
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            "no such public weft room",
        ),
        Err(e) => {
            tracing::error!(%alias, error = %e, "alias query failed");
            matrix_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "alias query failed",
            )
        }
    }
}

async fn ping() -> Response {
    Json(json!({})).into_response()
}
