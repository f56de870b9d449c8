//! Privacy follows the room, not its history. A bridged weft room that stops being public, or
//! is deleted, sends nothing more to Matrix from that point of the event log, and its Matrix
//! room is closed: taken out of the directory, its alias removed, joins by invitation only,
//! new history visible to members only, and a notice from the bridge bot says why. A room
//! made public again is opened the same way in reverse.
//!
//! The sender follows the log late (after a crash, behind a slow homeserver), so it must act
//! on what was true at each point of the log, not on what is true now: it opens and closes
//! the Matrix side when it reaches [`weft_core::Event::RoomPrivacyChanged`], and records that
//! in the room's mapping ([`weft_store::MatrixRoom::open`]). A change is sent only while the
//! mapping is open *and* the room is public now, the stricter of the two. Every step is
//! idempotent, so a crash part-way through repeats them all on the next delivery.
//!
//! Spec: [join rules](https://spec.matrix.org/latest/client-server-api/#mroomjoin_rules),
//! [history visibility](https://spec.matrix.org/latest/client-server-api/#room-history-visibility),
//! [room directory](https://spec.matrix.org/latest/client-server-api/#listing-rooms).

use crate::tables::{MatrixRoom, MatrixWrites};
use crate::translate;
use weft_core::{LoggedEvent, RoomKind};

use crate::{Bridge, BridgeError};

/// Why a Matrix room is being closed, for the bot's notice.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Closing {
    /// The weft room stopped being public.
    MadePrivate,
    /// The weft room was deleted.
    Deleted,
}

impl Closing {
    fn notice(self) -> &'static str {
        match self {
            Closing::MadePrivate => {
                "This room is now private on weft: nothing more is bridged from it, and it has left the room directory."
            }
            Closing::Deleted => {
                "This room was deleted on weft: nothing more is bridged from it, and it has left the room directory."
            }
        }
    }
}

impl Bridge {
    /// Whether a change of the room may be sent to its Matrix room now: the mapping is open
    /// at this point of the log and the weft room is public now.
    pub(crate) async fn may_send_to(&self, mapped: &MatrixRoom) -> Result<bool, BridgeError> {
        if !mapped.open {
            return Ok(false);
        }
        let room = self.chat().views().room(mapped.room_id).await?;
        Ok(room.is_some_and(|r| r.kind == RoomKind::Public))
    }

    /// Closes the Matrix side of a room (idempotent), then records it closed.
    pub(crate) async fn close_matrix_room(
        &self,
        event: &LoggedEvent,
        mapped: &MatrixRoom,
        why: Closing,
    ) -> Result<(), BridgeError> {
        let room = mapped.matrix_room_id.as_str();
        let hs = self.hs();
        self.set_states(room, &translate::closed_room_state())
            .await?;
        hs.unpublish(room).await?;
        hs.delete_alias(&mapped.alias).await?;
        self.bot_notice(event, room, why.notice()).await?;
        self.set_open(mapped, false).await?;
        self.reconcile_spaces_soon();
        tracing::info!(room_id = %mapped.room_id, matrix_room_id = %room, ?why, "closed the Matrix side of a room");
        Ok(())
    }

    /// Opens the Matrix side of a room that is public again (idempotent), then records it
    /// open.
    pub(crate) async fn reopen_matrix_room(
        &self,
        event: &LoggedEvent,
        mapped: &MatrixRoom,
    ) -> Result<(), BridgeError> {
        let room = mapped.matrix_room_id.as_str();
        let hs = self.hs();
        hs.create_alias(&mapped.alias, room).await?;
        self.set_states(room, &translate::open_room_state(&mapped.alias))
            .await?;
        if let Err(e) = hs.publish(room).await {
            tracing::warn!(matrix_room_id = %room, error = %e, "could not list the room in the directory");
        }
        self.bot_notice(
            event,
            room,
            "This room is public on weft again: it is bridged again.",
        )
        .await?;
        self.set_open(mapped, true).await?;
        self.reconcile_spaces_soon();
        tracing::info!(room_id = %mapped.room_id, matrix_room_id = %room, "opened the Matrix side of a room again");
        Ok(())
    }

    /// Sets state events of a room as the bridge bot, in order.
    async fn set_states(
        &self,
        room: &str,
        states: &[(&str, serde_json::Value)],
    ) -> Result<(), BridgeError> {
        let bot = self.ids().bot();
        for (event_type, content) in states {
            self.hs()
                .set_state(room, event_type, "", content, &bot)
                .await?;
        }
        Ok(())
    }

    /// Records a room's mapping open or closed, and remembers it.
    async fn set_open(&self, mapped: &MatrixRoom, open: bool) -> Result<(), BridgeError> {
        let room_id = mapped.room_id;
        self.tables()
            .write(move |tx| Box::pin(async move { tx.set_matrix_room_open(room_id, open).await }))
            .await?;
        self.remember_mapped_room(MatrixRoom {
            open,
            ..mapped.clone()
        });
        Ok(())
    }

    /// A notice from the bridge bot for a logged change; its transaction id comes from the
    /// change, so a resend after a crash is the same event.
    async fn bot_notice(
        &self,
        event: &LoggedEvent,
        matrix_room: &str,
        text: &str,
    ) -> Result<(), BridgeError> {
        let content = translate::notice_content(text);
        self.send(
            matrix_room,
            "m.room.message",
            &format!("weft-{}-notice", event.seq),
            &content,
            &self.ids().bot(),
        )
        .await?;
        Ok(())
    }
}
