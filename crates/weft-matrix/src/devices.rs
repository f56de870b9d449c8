//! Devices for the bridge's Matrix users, so that the homeserver keeps their transaction ids.
//!
//! The sender's transaction ids (`weft-<log seq>`) make a resend after a crash harmless only
//! while the homeserver remembers them. Synapse remembers those of an application service's
//! users *without a device* only in memory (30 to 60 minutes, forgotten when it restarts), but
//! keeps those of requests made with a device in its database (for a day). So every puppet,
//! and the bot, gets a device ([`DEVICE_ID`]), and every event and redaction is sent as that
//! device (device masquerading: `?user_id=…&device_id=…`).
//!
//! With `io.element.msc4190: true` in the registration (as `weft matrix registration` writes
//! it) the device is created by the application service itself, without an access token
//! (MSC4190). An older registration without the flag gets a warning at start, and devices
//! are created by appservice login instead, which homeservers without MSC4190 accept too but
//! which leaves an unused access token per user.
//!
//! Spec: <https://spec.matrix.org/latest/client-server-api/#transaction-identifiers>,
//! <https://github.com/matrix-org/matrix-spec-proposals/pull/4190>, device masquerading in
//! <https://github.com/matrix-org/matrix-spec-proposals/pull/3202>.

use crate::tables::MatrixWrites;
use serde_json::Value;

use crate::{Bridge, BridgeError};

/// The device every one of the bridge's Matrix users sends as (device ids are per user).
pub const DEVICE_ID: &str = "WEFT";

/// The homeserver's answer for a device it does not know (deleted, or its database reset).
const UNKNOWN_DEVICE: &str = "M_UNKNOWN_DEVICE";

impl Bridge {
    /// The device `mxid` sends as: remembered, recorded, or else created now.
    pub(crate) async fn device_for(&self, mxid: &str) -> Result<String, BridgeError> {
        if let Some(device) = self.devices().get(mxid).cloned() {
            return Ok(device);
        }
        match self.tables().device(mxid).await? {
            Some(device) => {
                self.devices().insert(mxid.to_string(), device.clone());
                Ok(device)
            }
            // Puppets registered before devices, and the bot on its first send.
            None => self.create_device(mxid).await,
        }
    }

    /// Creates `mxid`'s device on the homeserver and records it. Doing it again is harmless:
    /// both ways keep an existing device.
    pub(crate) async fn create_device(&self, mxid: &str) -> Result<String, BridgeError> {
        if self.config().device_management {
            self.hs().put_device(mxid, DEVICE_ID).await?;
        } else {
            self.hs().login_device(mxid, DEVICE_ID).await?;
        }
        let m = mxid.to_string();
        self.tables()
            .write(move |tx| Box::pin(async move { tx.set_matrix_device(&m, DEVICE_ID).await }))
            .await?;
        tracing::info!(mxid, device_id = DEVICE_ID, "created a device to send as");
        self.devices()
            .insert(mxid.to_string(), DEVICE_ID.to_string());
        Ok(DEVICE_ID.to_string())
    }

    /// Sends an event as `mxid` from its device (see [`crate::Homeserver::send`]); returns the
    /// event id.
    pub(crate) async fn send(
        &self,
        room_id: &str,
        event_type: &str,
        txn_id: &str,
        content: &Value,
        mxid: &str,
    ) -> Result<String, BridgeError> {
        let device = self.device_for(mxid).await?;
        let sent = self
            .hs()
            .send(room_id, event_type, txn_id, content, mxid, &device)
            .await;
        match sent {
            Err(e) if e.errcode == UNKNOWN_DEVICE => {
                let device = self.forgotten_device(room_id, mxid).await?;
                Ok(self
                    .hs()
                    .send(room_id, event_type, txn_id, content, mxid, &device)
                    .await?)
            }
            other => Ok(other?),
        }
    }

    /// Redacts an event as `mxid` from its device (see [`crate::Homeserver::redact`]).
    pub(crate) async fn redact(
        &self,
        room_id: &str,
        event_id: &str,
        txn_id: &str,
        mxid: &str,
        reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        let device = self.device_for(mxid).await?;
        let redacted = self
            .hs()
            .redact(room_id, event_id, txn_id, mxid, &device, reason)
            .await;
        match redacted {
            Err(e) if e.errcode == UNKNOWN_DEVICE => {
                let device = self.forgotten_device(room_id, mxid).await?;
                Ok(self
                    .hs()
                    .redact(room_id, event_id, txn_id, mxid, &device, reason)
                    .await?)
            }
            other => Ok(other?),
        }
    }

    /// The homeserver no longer knows `mxid`'s device (deleted by an admin, or its database
    /// was reset): create it again. What it remembered of the old one is gone anyway.
    async fn forgotten_device(&self, room_id: &str, mxid: &str) -> Result<String, BridgeError> {
        tracing::warn!(
            matrix_room_id = room_id,
            mxid,
            "the homeserver does not know the device; creating it again"
        );
        self.devices().remove(mxid);
        self.create_device(mxid).await
    }
}
