//! Typing notifications both ways. They are fleeting, so they take no part in the delivery
//! guarantees: never logged, never retried, dropped when the homeserver is away.
//!
//! Weft → Matrix: the puppet of a weft user who types is shown typing, through the
//! client-server API's typing endpoint
//! (<https://spec.matrix.org/latest/client-server-api/#put_matrixclientv3roomsroomidtypinguserid>).
//! Matrix → weft: the `m.typing` ephemeral events the homeserver pushes in AS transactions
//! (`receive_ephemeral` in the registration) show the Matrix users as typing in weft.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use weft_core::{Author, Event, LoggedEvent};

use crate::{Bridge, VIRTUAL_KIND};

/// How long Matrix shows a weft user typing unless told again (the web app repeats itself
/// every 3 s while someone types).
const TYPING_TIMEOUT_MS: u64 = 5_000;

/// Follows weft's live events and shows weft users typing on Matrix.
pub(crate) async fn run(bridge: Bridge) {
    let mut events = bridge.chat().live().subscribe();
    loop {
        match events.recv().await {
            Ok(event) => show_on_matrix(&bridge, &event).await,
            // Missed some: typing is stale by now anyway.
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        }
    }
}

async fn show_on_matrix(bridge: &Bridge, logged: &Arc<LoggedEvent>) {
    let Event::Typing {
        room_id,
        who: Author::User(user_id),
    } = logged.event
    else {
        return;
    };
    if logged.origin.0 == VIRTUAL_KIND {
        return;
    }
    let outcome = async {
        let store = bridge.chat().views();
        // Read afresh: this runs on every instance, not only the sender's, and must never
        // show typing in a room that is closed.
        let Some(mapped) = bridge.tables().room(room_id).await? else {
            return Ok(());
        };
        if !bridge.may_send_to(&mapped).await? {
            return Ok(());
        }
        let Some(user) = store.user(user_id).await? else {
            return Ok(());
        };
        let mxid = bridge.ensure_puppet(&user).await?;
        bridge.ensure_joined(&mapped.matrix_room_id, &mxid).await?;
        bridge
            .hs()
            .call(
                Method::PUT,
                &[
                    "_matrix",
                    "client",
                    "v3",
                    "rooms",
                    &mapped.matrix_room_id,
                    "typing",
                    &mxid,
                ],
                Some(&mxid),
                Some(json!({ "typing": true, "timeout": TYPING_TIMEOUT_MS })),
            )
            .await?;
        Ok::<(), crate::BridgeError>(())
    }
    .await;
    match outcome {
        Ok(()) => tracing::debug!(%room_id, %user_id, "typing shown on Matrix"),
        Err(e) => {
            tracing::debug!(%room_id, %user_id, error = %e, "could not show typing on Matrix")
        }
    }
}

impl Bridge {
    /// Shows the Matrix users that the transaction's `m.typing` events list as typing in weft.
    pub(crate) async fn apply_ephemeral(&self, body: &Value) {
        let Some(ephemeral) = body["ephemeral"].as_array() else {
            return;
        };
        for event in ephemeral.iter().filter(|e| e["type"] == "m.typing") {
            let matrix_room = event["room_id"].as_str().unwrap_or_default();
            let room_id = match self.tables().room_for_matrix(matrix_room).await {
                Ok(Some(room_id)) => room_id,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(%matrix_room, error = %e, "typing: room lookup failed");
                    continue;
                }
            };
            for mxid in crate::translate::typing_users(event) {
                let mxid = mxid.as_str();
                if self.ids().is_ours(mxid) {
                    continue;
                }
                let who = weft_chat::PostAs {
                    kind: VIRTUAL_KIND.into(),
                    external_id: mxid.to_string(),
                    display_name: String::new(),
                    avatar_url: None,
                };
                if let Err(e) = self.chat().typing_as(self.actor(), room_id, &who).await {
                    tracing::debug!(%matrix_room, %mxid, error = %e, "typing: not shown in weft");
                }
            }
        }
    }
}
