//! Read receipts, weft → Matrix: when a weft user reads a bridged room, their puppet's
//! `m.read` receipt moves to the newest bridged message they have read, so Element shows them
//! among the readers.
//!
//! Receipts are fleeting, like typing: best effort, never retried, and never on the ordered
//! sender's path. The sender only notes each read ([`Receipts::note`]); a task sends the
//! latest per reader and room every [`FLUSH_EVERY`], so a reader who scrolls through a
//! hundred messages costs one request, not a hundred. Only puppets that are in the Matrix
//! room already get receipts: reading never makes anyone join.
//!
//! Spec: [receipts](https://spec.matrix.org/latest/client-server-api/#receipts).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use weft_core::Id;
use weft_store::{MessagePage, PageAnchor};

use crate::tables::Carried;
use crate::{Bridge, BridgeError};

/// How often the latest reads are sent.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How far back from a read mark a bridged message is looked for (messages that never
/// reached Matrix, such as ones posted while the room was private, are skipped).
const LOOK_BACK: i64 = 20;

/// Reads waiting to be sent: (reader, room) → read up to this message sequence number.
#[derive(Default)]
pub(crate) struct Receipts {
    waiting: Mutex<HashMap<(Id, Id), i64>>,
}

impl Receipts {
    /// Notes that `user_id` has read `room_id` up to `up_to_seq`; only the latest is kept.
    pub(crate) fn note(&self, user_id: Id, room_id: Id, up_to_seq: i64) {
        let mut waiting = self
            .waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let seq = waiting.entry((user_id, room_id)).or_insert(up_to_seq);
        *seq = (*seq).max(up_to_seq);
    }

    fn take(&self) -> HashMap<(Id, Id), i64> {
        std::mem::take(
            &mut *self
                .waiting
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

/// Sends the noted reads, every [`FLUSH_EVERY`], for as long as the bridge runs.
pub(crate) async fn run(bridge: Bridge) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for ((user_id, room_id), seq) in bridge.receipts().take() {
            if let Err(e) = send_receipt(&bridge, user_id, room_id, seq).await {
                tracing::debug!(%user_id, %room_id, error = %e, "a read receipt did not reach Matrix");
            }
        }
    }
}

/// Moves the reader's puppet's receipt to the newest bridged message at or before `seq`.
async fn send_receipt(
    bridge: &Bridge,
    user_id: Id,
    room_id: Id,
    seq: i64,
) -> Result<(), BridgeError> {
    let Some(mapped) = bridge.tables().room(room_id).await? else {
        return Ok(());
    };
    if !bridge.may_send_to(&mapped).await? {
        return Ok(());
    }
    let views = bridge.chat().views();
    let Some(user) = views.user(user_id).await? else {
        return Ok(());
    };
    let puppet = bridge.ids().puppet(&user);
    if !bridge
        .tables()
        .is_member(&mapped.matrix_room_id, &puppet)
        .await?
    {
        return Ok(());
    }
    let page = MessagePage {
        room_id,
        anchor: PageAnchor::Before(seq + 1),
        limit: LOOK_BACK,
        include_threads: true,
    };
    for view in views.messages(page).await?.iter().rev() {
        let carried = Carried::Message(view.message.id);
        if let Some((event_id, _)) = bridge.tables().event_for(&carried).await? {
            bridge
                .hs()
                .read_receipt(&mapped.matrix_room_id, event_id.as_str(), &puppet)
                .await?;
            return Ok(());
        }
    }
    Ok(())
}
