//! Read receipts, both ways.
//!
//! Weft → Matrix: when a weft user reads a bridged room, their puppet's `m.read` receipt
//! moves to the newest bridged message they have read, so Element shows them among the
//! readers.
//!
//! Matrix → weft ([`Bridge::apply_receipts`]): the `m.read` receipts the homeserver pushes
//! with a transaction's ephemeral events move the read marks of the Matrix users' virtual
//! users, so a message's `readBy` counts them and its readers list them. Applied after the
//! transaction's events are written (a receipt often names a message of the same
//! transaction), in one write per transaction; best effort like typing, and only for Matrix
//! users weft has met.
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

impl Bridge {
    /// Records the public read receipts of a transaction's ephemeral events as read marks
    /// of Matrix users in weft; see the module documentation. Never fails the transaction: a
    /// receipt that cannot be recorded is logged and dropped, as the homeserver would not
    /// send it again anyway.
    pub(crate) async fn apply_receipts(&self, body: &serde_json::Value) {
        let Some(ephemeral) = body["ephemeral"].as_array() else {
            return;
        };
        let mut read: Vec<(&str, String, String)> = Vec::new();
        for event in ephemeral.iter().filter(|e| e["type"] == "m.receipt") {
            let Some(matrix_room) = event["room_id"].as_str() else {
                continue;
            };
            for (mxid, event_id) in crate::translate::read_receipts(event) {
                if !self.ids().is_ours(&mxid) {
                    read.push((matrix_room, mxid, event_id));
                }
            }
        }
        if read.is_empty() {
            return;
        }
        if let Err(e) = self.record_receipts(&read).await {
            tracing::debug!(error = %e, receipts = read.len(), "read receipts not recorded in weft");
        }
    }

    /// [`Bridge::apply_receipts`] for `(Matrix room, reader, event read)`: the events' weft
    /// messages and the rooms are looked up together, and only public bridged rooms count.
    async fn record_receipts(&self, read: &[(&str, String, String)]) -> Result<(), BridgeError> {
        let mut rooms: Vec<&str> = read.iter().map(|(room, _, _)| *room).collect();
        rooms.sort_unstable();
        rooms.dedup();
        let bridged = self.tables().rooms_for_matrix(&rooms).await?;
        let mut open = HashMap::new();
        for (matrix_room, room_id) in bridged {
            let public = self
                .chat()
                .views()
                .room(room_id)
                .await?
                .is_some_and(|r| r.kind == weft_core::RoomKind::Public);
            if public {
                open.insert(matrix_room, room_id);
            }
        }
        let events: Vec<&str> = read.iter().map(|(_, _, e)| e.as_str()).collect();
        let carried = self.tables().carried_by_many(&events).await?;
        let receipts: Vec<(Id, weft_chat::PostAs, Id)> = read
            .iter()
            .filter_map(|(matrix_room, mxid, event_id)| {
                let room_id = *open.get(*matrix_room)?;
                // A receipt on an edit or a reaction has read the message it changed.
                let message = carried.get(event_id)?.subject()?;
                let who = weft_chat::PostAs {
                    kind: crate::VIRTUAL_KIND.into(),
                    external_id: mxid.clone(),
                    display_name: String::new(),
                    avatar_url: None,
                };
                Some((room_id, who, message))
            })
            .collect();
        if receipts.is_empty() {
            return Ok(());
        }
        let moved = self.chat().mark_read_as(self.actor(), receipts).await?;
        tracing::debug!(moved, "read receipts from Matrix recorded");
        Ok(())
    }
}
