//! One error type for every handler: a status and a `{"error": "…"}` body, as Gitter sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use weft_chat::ChatError;

/// An API error: the status to answer with and a message for the client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, in words.
    pub message: String,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 for an unknown route or resource.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        let status = match &e {
            ChatError::Unauthorized => StatusCode::UNAUTHORIZED,
            ChatError::Forbidden(_) => StatusCode::FORBIDDEN,
            ChatError::NotFound(_) => StatusCode::NOT_FOUND,
            ChatError::Invalid(_) => StatusCode::BAD_REQUEST,
            ChatError::Conflict(_) => StatusCode::CONFLICT,
            ChatError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ChatError::Store(_) | ChatError::Internal(_) => {
                tracing::error!(error = %e, "request failed");
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error");
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// Result for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
