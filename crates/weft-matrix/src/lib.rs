//! Weft's Matrix bridge: weft runs as an Application Service of a homeserver (Synapse is the
//! reference). Public weft rooms become real Matrix rooms (`#community_room:server`), weft
//! users become real Matrix users (puppets `@username-id:server`), and Matrix users appear in
//! weft as virtual users.
//!
//! The bridge talks to the chat core only through [`weft_chat::Chat`] (inbound, as a bridge
//! actor whose changes carry the `matrix` origin) and the ordered event log (outbound), and
//! keeps its own mapping tables. Delivery is exactly once both ways:
//! - inbound, an AS transaction is answered 200 only after its events are applied; every
//!   Matrix event id is a unique key on the message it becomes, so a retried transaction (or
//!   one replayed to another instance) changes nothing;
//! - outbound, the sender reads the event log from a stored cursor and sends each event with
//!   the transaction id `weft-<log seq>` from the sending user's device, so a resend after a
//!   crash is deduplicated by the homeserver, even across its restarts; the cursor moves only
//!   after the homeserver answered, and only while the sender holds its fenced lease.
//!
//! Spec: <https://spec.matrix.org/latest/application-service-api/>.

pub mod appservice;
pub mod avatars;
pub mod config;
mod devices;
pub mod homeserver;
pub mod ids;
mod inbound;
mod members;
mod moderation;
mod names;
mod outbound;
mod privacy;
mod provision;
mod receipts;
mod refusals;
mod room_details;
mod spaces;
pub mod tables;
pub mod translate;
mod typing;
mod weft_avatars;

use std::sync::Arc;

use weft_chat::{Actor, Chat, NewUser};
use weft_core::{Origin, Token};
use weft_store::Store;

use crate::tables::MatrixWrites;

pub use config::{BridgeConfig, MatrixSettings, Membership, RoomChanges, generate_registration};
pub use homeserver::{Homeserver, HsError};
pub use ids::Identities;
pub use tables::{Carried, MatrixFailure, MatrixRoom, MatrixTables, MemberSync};

/// The network name virtual users from Matrix carry.
pub const VIRTUAL_KIND: &str = "matrix";

/// Weft's own account through which the bridge acts on the chat core.
const BRIDGE_USERNAME: &str = "matrix-bridge";

/// Errors of the bridge.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The configuration or registration file is wrong.
    #[error("{0}")]
    Config(String),
    /// The homeserver refused or failed.
    #[error(transparent)]
    Homeserver(#[from] HsError),
    /// The chat core refused.
    #[error(transparent)]
    Chat(#[from] weft_chat::ChatError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] weft_store::StoreError),
    /// Weft refuses a Matrix event for a reason its sender is told.
    #[error("{0}")]
    Refused(String),
}

/// The running bridge, shared by the AS endpoints and the outbound sender.
#[derive(Clone)]
pub struct Bridge {
    inner: Arc<Inner>,
}

struct Inner {
    chat: Chat,
    tables: MatrixTables,
    config: BridgeConfig,
    ids: Identities,
    hs: Homeserver,
    actor: Actor,
    names: names::Names,
    receipts: receipts::Receipts,
    refusals: refusals::Refusals,
    /// Permanent failures recorded so far (`weft matrix failures` lists them).
    failures: std::sync::atomic::AtomicI64,
    /// Weft rooms known to be bridged. A mapping's rooms never change once made (racing
    /// instances agree on one row), so it is remembered; "not bridged" is not, since that can
    /// change. Whether it is open changes only by the outbound sender, which holds the lease
    /// and forgets this when it takes it.
    mapped_rooms: std::sync::Mutex<std::collections::HashMap<weft_core::Id, MatrixRoom>>,
    /// The device each of the bridge's Matrix users sends as, once known (see `devices`).
    devices: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Held while the Spaces are brought up to date (see `spaces`), one run at a time.
    spaces: tokio::sync::Mutex<()>,
    /// Held by the membership sync running (see `members`): one at a time.
    member_syncs: tokio::sync::Mutex<()>,
    /// The rooms whose membership sync this process runs or is about to.
    syncing: std::sync::Mutex<std::collections::HashSet<weft_core::Id>>,
}

impl Bridge {
    /// Prepares the bridge over the chat and its store: brings the bridge's tables up to date
    /// and makes sure weft has the bridge's own account.
    pub async fn new(
        chat: Chat,
        store: Store,
        config: BridgeConfig,
    ) -> Result<Bridge, BridgeError> {
        let tables = MatrixTables::open(store).await?;
        let user = match chat.views().user_by_username(BRIDGE_USERNAME).await? {
            Some(user) => user,
            None => match chat
                .create_user(NewUser {
                    username: BRIDGE_USERNAME.into(),
                    display_name: Some("Matrix bridge".into()),
                    password: None,
                    site_admin: false,
                })
                .await
            {
                Ok(user) => user,
                // Another instance created it first.
                Err(weft_chat::ChatError::Conflict(_)) => {
                    chat.user_by_username(BRIDGE_USERNAME).await?
                }
                Err(e) => return Err(e.into()),
            },
        };
        // An in-process capability, never stored: only the bridge holds it.
        let token = Token {
            id: weft_core::Id::generate(),
            user_id: user.id,
            name: "matrix bridge".into(),
            bridge: true,
            created_at: weft_core::now_millis(),
        };
        let actor = Actor {
            user: Some(user),
            token: Some(token),
            origin: Origin(VIRTUAL_KIND.into()),
            system: false,
        };
        let failures = tables.failure_count().await?;
        if failures > 0 {
            tracing::warn!(
                failures_total = failures,
                "the Matrix bridge has recorded permanent failures; `weft matrix failures` lists them"
            );
        }
        let ids = Identities::new(
            &config.settings.server_name,
            &config.registration.sender_localpart,
        );
        let hs = Homeserver::new(
            &config.settings.homeserver_url,
            &config.registration.as_token,
        );
        Ok(Bridge {
            inner: Arc::new(Inner {
                chat,
                tables,
                config,
                ids,
                hs,
                actor,
                names: Default::default(),
                receipts: Default::default(),
                refusals: Default::default(),
                failures: failures.into(),
                mapped_rooms: Default::default(),
                devices: Default::default(),
                spaces: Default::default(),
                member_syncs: Default::default(),
                syncing: Default::default(),
            }),
        })
    }

    /// The Matrix room a weft room is bridged to, if it is.
    pub(crate) async fn mapped_room(
        &self,
        room_id: weft_core::Id,
    ) -> Result<Option<MatrixRoom>, BridgeError> {
        let known = self.mapped_rooms().get(&room_id).cloned();
        if known.is_some() {
            return Ok(known);
        }
        let found = self.tables().room(room_id).await?;
        if let Some(mapped) = &found {
            self.mapped_rooms().insert(room_id, mapped.clone());
        }
        Ok(found)
    }

    /// Remembers a room's mapping as the sender just wrote it.
    pub(crate) fn remember_mapped_room(&self, mapped: MatrixRoom) {
        self.mapped_rooms().insert(mapped.room_id, mapped);
    }

    /// Forgets every remembered mapping. The sender does this when it takes its lease: while
    /// another instance held it, that one may have opened or closed rooms.
    pub(crate) fn forget_mapped_rooms(&self) {
        self.mapped_rooms().clear();
    }

    fn mapped_rooms(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<weft_core::Id, MatrixRoom>> {
        self.inner
            .mapped_rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn devices(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.inner
            .devices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts the outbound sender (weft → Matrix) in the background.
    pub fn start(&self) {
        if !self.config().device_management {
            tracing::warn!(
                registration = %self.config().settings.registration.display(),
                "the registration lacks `{}: true`: the bridge's users get their devices through \
                 appservice login, which leaves an unused access token for each; add the flag \
                 (both to weft's and the homeserver's copy) and restart the homeserver",
                config::MSC4190_KEY
            );
        }
        tokio::spawn(outbound::run(self.clone()));
        tokio::spawn(typing::run(self.clone()));
        tokio::spawn(receipts::run(self.clone()));
        self.reconcile_spaces_soon();
        tokio::spawn(self.clone().run_member_syncs());
        // A ping makes the homeserver retry queued transactions now instead of after its
        // back-off, which grows to minutes after a long outage.
        let bridge = self.clone();
        tokio::spawn(async move {
            let txn = format!("startup-{}", weft_core::Id::generate());
            if let Err(e) = bridge
                .hs()
                .ping(&bridge.config().registration.id, &txn)
                .await
            {
                tracing::warn!(error = %e, "the homeserver did not answer the startup ping");
            }
        });
    }

    /// The AS endpoints, to merge into weft's HTTP application.
    pub fn router(&self) -> axum::Router {
        appservice::router(self.clone())
    }

    /// What the bridge serves to anyone (Matrix users' avatars), to merge into weft's HTTP
    /// application beside [`Bridge::router`].
    pub fn public_router(&self) -> axum::Router {
        avatars::router(self.clone())
    }

    /// Records which weft thing a received Matrix event carries.
    pub(crate) async fn record_inbound(
        &self,
        event_id: &str,
        matrix_room: &str,
        carried: Carried,
    ) -> Result<(), BridgeError> {
        let (e, r) = (event_id.to_string(), matrix_room.to_string());
        self.tables()
            .write(move |tx| {
                Box::pin(async move { tx.insert_inbound_event(&e, &r, &carried).await })
            })
            .await?;
        Ok(())
    }

    /// Counts one more permanent failure; answers the total, for the log line that says so.
    pub(crate) fn count_failure(&self) -> i64 {
        self.inner
            .failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    pub(crate) fn chat(&self) -> &Chat {
        &self.inner.chat
    }

    /// The bridge's own tables.
    pub(crate) fn tables(&self) -> &MatrixTables {
        &self.inner.tables
    }

    pub(crate) fn ids(&self) -> &Identities {
        &self.inner.ids
    }

    pub(crate) fn hs(&self) -> &Homeserver {
        &self.inner.hs
    }

    pub(crate) fn receipts(&self) -> &receipts::Receipts {
        &self.inner.receipts
    }

    pub(crate) fn actor(&self) -> &Actor {
        &self.inner.actor
    }

    pub(crate) fn config(&self) -> &BridgeConfig {
        &self.inner.config
    }
}
