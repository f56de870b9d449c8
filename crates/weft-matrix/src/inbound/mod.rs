//! Matrix → weft: applying AS transactions exactly once.
//!
//! A transaction is taken event by event. [`plan`] decides what each becomes: a plain new
//! message joins the pending batch (checked and rendered on its own task while the rest is
//! planned), and so do reactions, edits and redactions of what is already stored (prepared
//! as they come); anything else is applied on its own by [`apply`], after the pending batch
//! is written, as is an event that relates to one still pending. The batch goes to the store
//! in one write ([`weft_chat::Chat::write_batch`]) with the transaction's record when it is the
//! last write, so a crash at any point leaves either nothing or everything up to a point that
//! a retry (deduplicated by event id) completes.

mod apply;
mod plan;

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use weft_chat::{Change, ChatError, PreparedPost};
use weft_core::Id;

use crate::refusals::Verdict;
use crate::tables::{Carried, MatrixWrites};
use crate::translate;
use crate::{Bridge, BridgeError};

/// The changes of one AS transaction, checked and prepared, waiting to be written together (at
/// the end with the transaction id) in one store transaction: one commit per transaction
/// rather than two per event.
#[derive(Default)]
struct PendingPosts {
    items: Vec<Pending>,
    /// The pending events' ids, to see when a later event relates to one not yet written.
    event_ids: HashSet<String>,
    /// Matrix room → weft room, looked up once per transaction.
    rooms: HashMap<String, Option<Id>>,
}

/// One pending change, in transaction order.
enum Pending {
    Post(PendingPost),
    Change(Box<PendingChange>),
}

/// A reaction, edit or deletion on its way to the store.
struct PendingChange {
    event_id: String,
    matrix_room: String,
    change: Change,
    /// What the event carries, recorded in the same write (reactions and edits).
    carried: Option<Carried>,
}

/// A plain message on its way to the store.
struct PendingPost {
    event_id: String,
    matrix_room: String,
    room_id: Id,
    sender: String,
    /// Checking and rendering it, on any of the runtime's threads: the messages of a
    /// transaction are prepared side by side while the rest is planned.
    prepared: tokio::task::JoinHandle<Result<PreparedPost, BridgeError>>,
}

/// What to do with one incoming event.
enum Plan {
    /// A plain new message: add it to the pending batch.
    Post(PendingPost),
    /// A reaction, edit or redaction of something stored: add it to the pending batch.
    Change(Box<PendingChange>),
    /// Nothing to bridge (our own echo, an unbridged room, an event already applied).
    Skip,
    /// Relates to a message still pending: write the pending posts, then plan again.
    AfterPending,
    /// Anything else (files, member events, edits weft refuses, moderators' redactions):
    /// apply it on its own, after the pending batch.
    Apply,
}

impl Bridge {
    /// Applies a transaction's events exactly once; an error leaves it to be retried.
    ///
    /// Runs of plain messages are written in one store transaction, and the transaction id
    /// is recorded in the last write, so a crash at any point leaves either nothing or
    /// everything up to a point that a retry (deduplicated by event id) completes.
    pub(crate) async fn apply_transaction(
        &self,
        txn_id: &str,
        body: &Value,
    ) -> Result<(), BridgeError> {
        // A resent transaction is recognised before any work is done on it. Only a
        // transaction that wrote something is recorded (below); one that wrote nothing
        // writes nothing again when it comes back.
        let key = translate::transaction_key(txn_id, body);
        let txn_id = key.as_str();
        if self.tables().transaction_seen(txn_id).await? {
            return Ok(());
        }
        let mut wrote = false;
        self.apply_ephemeral(body).await;
        let mut pending = PendingPosts::default();
        for event in translate::transaction_events(body) {
            let mut plan = self.plan(event, &mut pending).await;
            if matches!(plan, Ok(Plan::AfterPending)) {
                wrote = true;
                self.write_pending(&mut pending, None).await?;
                plan = self.plan(event, &mut pending).await;
            }
            let outcome = match plan {
                Ok(Plan::Post(post)) => {
                    pending.event_ids.insert(post.event_id.clone());
                    pending.items.push(Pending::Post(post));
                    Ok(())
                }
                Ok(Plan::Change(change)) => {
                    pending.event_ids.insert(change.event_id.clone());
                    pending.items.push(Pending::Change(change));
                    Ok(())
                }
                Ok(Plan::Skip) => Ok(()),
                Ok(Plan::Apply | Plan::AfterPending) => {
                    wrote = true;
                    self.write_pending(&mut pending, None).await?;
                    self.apply_event(event).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                let event_id = event["event_id"].as_str().unwrap_or_default();
                if self.verdict(event_id, &e) == Verdict::Retry {
                    // Not answered 200: the homeserver sends the transaction again.
                    return Err(e);
                }
                wrote = true;
                self.record_failure(event, &e).await?;
            }
        }
        if pending.items.is_empty() && !wrote {
            // Nothing was written (only echoes of weft's own events, events of unbridged
            // rooms, ephemeral events): a replay would write nothing either, so recording the
            // transaction would only cost a commit, and the homeserver pushes one such
            // transaction back for every message weft sends.
            return Ok(());
        }
        self.write_pending(&mut pending, Some(txn_id)).await
    }

    /// Writes the pending posts in one store transaction, with the AS transaction id when it
    /// is the last write of the transaction, and the refusals among them.
    async fn write_pending(
        &self,
        pending: &mut PendingPosts,
        txn_id: Option<&str>,
    ) -> Result<(), BridgeError> {
        if pending.items.is_empty() && txn_id.is_none() {
            return Ok(());
        }
        let items = std::mem::take(&mut pending.items);
        pending.event_ids.clear();
        let mut ready = Vec::with_capacity(items.len());
        let mut refused = Vec::new();
        let mut carried = Vec::new();
        for item in items {
            let post = match item {
                Pending::Post(post) => post,
                Pending::Change(change) => {
                    let change = *change;
                    if let Some(c) = change.carried {
                        carried.push((change.event_id, change.matrix_room, c));
                    }
                    ready.push(change.change);
                    continue;
                }
            };
            let outcome = match post.prepared.await {
                Ok(outcome) => outcome,
                Err(e) => Err(BridgeError::Config(format!(
                    "preparing the message failed: {e}"
                ))),
            };
            match outcome {
                Ok(prepared) => ready.push(Change::Post(prepared)),
                // Storage trouble: fail the transaction so that the homeserver retries it.
                Err(e @ (BridgeError::Store(_) | BridgeError::Chat(ChatError::Store(_)))) => {
                    return Err(e);
                }
                Err(e) => refused.push((
                    post.event_id,
                    post.room_id,
                    post.matrix_room,
                    post.sender,
                    e,
                )),
            }
        }
        let count = ready.len();
        let txn = txn_id.map(str::to_string);
        let failures: Vec<(String, Id, String)> = refused
            .iter()
            .map(|(event_id, room_id, _, _, e)| {
                (
                    event_id.clone(),
                    *room_id,
                    format!("inbound {event_id}: {e}"),
                )
            })
            .collect();
        // Messages need no mapping rows: each carries its event id as its unique external
        // key, which is what lookups by event id find (`MatrixTables::carried_by`), and what
        // makes a replay a no-op. Reactions and edits are recorded in the same write.
        let written = self
            .chat()
            .write_batch(ready, move |tx| {
                Box::pin(async move {
                    // The transaction's last write records it first: a replay writes nothing.
                    if let Some(txn) = &txn
                        && !tx.insert_matrix_transaction(txn).await?
                    {
                        return Ok(false);
                    }
                    for (event_id, room_id, note) in &failures {
                        tx.insert_matrix_failure(0, Some(*room_id), event_id, note)
                            .await?;
                    }
                    for (event_id, matrix_room, what) in &carried {
                        tx.insert_inbound_event(event_id, matrix_room, what).await?;
                    }
                    Ok(true)
                })
            })
            .await?;
        if !written {
            return Ok(());
        }
        for (event_id, _, matrix_room, sender, error) in refused {
            let failures_total = self.count_failure();
            tracing::warn!(%event_id, room_id = %matrix_room, %sender, %error, failures_total, "a Matrix event could not be bridged");
            self.tell_sender(&matrix_room, &event_id, &sender, &error);
        }
        if count > 0 {
            tracing::debug!(count, "applied Matrix messages");
        }
        Ok(())
    }
}
