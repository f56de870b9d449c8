//! Weft's chat service: every operation a person, a bot or a bridge performs, with its
//! permission check, validation, rendering, and the event it logs in the same transaction.
//!
//! The HTTP API, the web app, the CLI and the Matrix bridge all call this one service, so the
//! rules live in one place. It knows nothing about Matrix: a bridge is a caller whose token has
//! the bridge capability and whose changes carry its [`Origin`].

mod error;
mod files;
mod live;
pub(crate) mod messages;
mod moderation;
mod people;
mod post_queue;
mod rooms;
mod users;
mod views;
mod virtual_members;

use std::sync::Arc;

use object_store::ObjectStore;
use weft_core::{Origin, Token, User};
use weft_store::Store;

pub use error::{ChatError, Result};
pub use files::{Download, Upload, file_url};
pub use live::Live;
pub use messages::{
    Change, MessageQuery, MessageRef, NewPost, PendingMessage, PostAs, PreparedDeletion,
    PreparedEdit, PreparedPost, PreparedReaction, UnreadItems,
};
pub use people::PEOPLE_PAGE_MAX;
pub use rooms::{NewRoom, RoomPatch, RoomSummary};
pub use users::{NewUser, TOKEN_CACHE_TTL};
pub use views::Views;
pub use virtual_members::VIRTUAL_MEMBERS_PER_WRITE;

/// Limits and policies, from the configuration file.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// How long after sending a message its author may still edit it.
    pub edit_window_ms: i64,
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: usize,
    /// Unread counts stop counting here (shown as "99+"-style caps by clients).
    pub unread_cap: i64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            edit_window_ms: 10 * 60 * 1000,
            max_upload_bytes: 20 * 1024 * 1024,
            unread_cap: 100,
        }
    }
}

/// Who is acting: the signed-in user (if any), the token they used, and where the change
/// comes from.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The user, or `None` for a visitor who is not signed in.
    pub user: Option<User>,
    /// The token used, if any (its bridge capability allows posting as virtual users).
    pub token: Option<Token>,
    /// Where changes made by this actor come from.
    pub origin: Origin,
    /// The operator at the command line: may administer everything, without being a user.
    pub system: bool,
}

impl Actor {
    /// A visitor who is not signed in.
    pub fn anonymous() -> Self {
        Actor {
            user: None,
            token: None,
            origin: Origin::local(),
            system: false,
        }
    }

    /// The operator at the command line (`weft group create`, `weft room create`).
    pub fn system() -> Self {
        Actor {
            user: None,
            token: None,
            origin: Origin::local(),
            system: true,
        }
    }

    /// A signed-in user acting through weft itself.
    pub fn user(user: User) -> Self {
        Actor {
            user: Some(user),
            token: None,
            origin: Origin::local(),
            system: false,
        }
    }

    /// The signed-in user, or [`ChatError::Unauthorized`].
    pub fn require_user(&self) -> Result<&User> {
        self.user.as_ref().ok_or(ChatError::Unauthorized)
    }

    /// Whether this actor may post as virtual users.
    pub fn is_bridge(&self) -> bool {
        self.token.as_ref().is_some_and(|t| t.bridge)
    }
}

/// The chat service. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    views: Views,
    files: Arc<dyn ObjectStore>,
    config: ChatConfig,
    live: Live,
    tokens: users::TokenCache,
    posts: post_queue::PostQueue,
}

impl Chat {
    /// Builds the service over an opened store and a file store, and starts following the
    /// event log for live subscribers.
    pub fn new(store: Store, files: Arc<dyn ObjectStore>, config: ChatConfig) -> Chat {
        let live = Live::start(store.clone());
        let posts = post_queue::PostQueue::start(store.clone());
        Chat {
            inner: Arc::new(Inner {
                posts,
                views: Views::new(store.clone()),
                store,
                files,
                config,
                live,
                tokens: users::TokenCache::default(),
            }),
        }
    }

    /// The store underneath: the chat's own, for its operations.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Read-only views of the stored data, for pages, feeds and bridges.
    pub fn views(&self) -> &Views {
        &self.inner.views
    }

    /// Refreshes the database's planner statistics (after a bulk load).
    pub async fn refresh_statistics(&self) -> Result<()> {
        Ok(self.store().refresh_statistics().await?)
    }

    /// Finishes queued writes and closes the store, for an orderly shutdown.
    pub async fn close(&self) {
        weft_store::close(self.inner.store.clone()).await;
    }

    /// The live event feed.
    pub fn live(&self) -> &Live {
        &self.inner.live
    }

    /// The configuration in force.
    pub fn config(&self) -> &ChatConfig {
        &self.inner.config
    }
}
