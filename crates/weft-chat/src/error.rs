//! The service's errors, each of which the HTTP layer maps to one status.

use weft_core::validate::Invalid;
use weft_store::StoreError;

/// Why an operation did not happen. Nothing is changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Not signed in, or a bad token or password.
    #[error("authentication required")]
    Unauthorized,
    /// Signed in but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing (or the caller may not know it exists).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Input that breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// Already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// Too large.
    #[error("{0}")]
    TooLarge(String),
    /// Storage failed.
    #[error("storage failure: {0}")]
    Store(StoreError),
    /// Something else failed (file storage, hashing).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => ChatError::Conflict(what.to_string()),
            other => ChatError::Store(other),
        }
    }
}

impl From<Invalid> for ChatError {
    fn from(e: Invalid) -> Self {
        ChatError::Invalid(e.0)
    }
}

/// Result with [`ChatError`].
pub type Result<T, E = ChatError> = std::result::Result<T, E>;

/// Carries a service error out of a store write job, rolling the job back.
pub(crate) fn rejected(e: ChatError) -> StoreError {
    StoreError::Aborted(Box::new(e))
}

/// Turns a store error from a write job back into the service error it carried.
pub(crate) fn from_write(e: StoreError) -> ChatError {
    match e {
        StoreError::Aborted(inner) => match inner.downcast::<ChatError>() {
            Ok(chat) => *chat,
            Err(other) => ChatError::Internal(other.to_string()),
        },
        other => ChatError::from(other),
    }
}
