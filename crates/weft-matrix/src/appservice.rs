//! The Application Service API weft serves to the homeserver: transactions, user and alias
//! queries, and ping. Every request must carry `Authorization: Bearer <hs_token>`.
//!
//! Spec: <https://spec.matrix.org/latest/application-service-api/>.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::Bridge;

/// The largest request body the AS endpoints read. A homeserver sends up to 100 events of up
/// to 64 KiB each plus up to 100 ephemeral events per transaction (over 12 MiB at the very
/// worst); a transaction refused for its size is refused on every retry, and since the
/// homeserver retries its oldest transaction before any other, all inbound traffic would
/// stop. So: the worst case with room to spare.
pub const MAX_TRANSACTION_BYTES: usize = 32 * 1024 * 1024;

/// The AS routes, authenticated with the homeserver's token.
pub fn router(bridge: Bridge) -> Router {
    Router::new()
        .route("/_matrix/app/v1/transactions/{txn_id}", put(transaction))
        .route("/_matrix/app/v1/users/{user_id}", get(query_user))
        .route("/_matrix/app/v1/rooms/{alias}", get(query_alias))
        .route("/_matrix/app/v1/ping", post(ping))
        .route("/_matrix/app/{*rest}", axum::routing::any(unrecognized))
        .layer(middleware::from_fn_with_state(bridge.clone(), authenticate))
        .layer(DefaultBodyLimit::max(MAX_TRANSACTION_BYTES))
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

/// A transaction body: a JSON object, or the Matrix error code and message saying why not.
fn transaction_body(bytes: &[u8]) -> Result<Value, (&'static str, String)> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(body) if body.is_object() => Ok(body),
        Ok(_) => Err(("M_BAD_JSON", "a transaction is a JSON object".into())),
        Err(e) => Err(("M_NOT_JSON", format!("the body is not JSON: {e}"))),
    }
}

async fn transaction(
    State(bridge): State<Bridge>,
    Path(txn_id): Path<String>,
    bytes: Bytes,
) -> Response {
    let body = match transaction_body(&bytes) {
        Ok(body) => body,
        Err((errcode, why)) => return matrix_error(StatusCode::BAD_REQUEST, errcode, &why),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bodies_get_matrix_error_codes() {
        let code = |bytes: &[u8]| transaction_body(bytes).err().map(|(code, _)| code);
        assert_eq!(code(b"{\"events\": ["), Some("M_NOT_JSON"));
        assert_eq!(code(b"[1, 2]"), Some("M_BAD_JSON"));
        assert_eq!(code(b"{\"events\": []}"), None);
    }
}
