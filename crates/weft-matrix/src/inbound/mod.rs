//! Matrix → weft: applying AS transactions exactly once.
//!
//! A transaction is taken event by event. [`plan`] decides what each becomes: a plain new
//! message joins the pending batch (checked and rendered on its own task while the rest is
//! planned), and so do replies, reactions, edits and redactions, whether what they relate to
//! is stored or still pending in the batch ([`weft_chat::MessageRef`]); anything else (files,
//! moderators' acts) is applied on its own by [`apply`], after the pending batch is written.
//! The batch goes to the store in one write ([`weft_chat::Chat::write_batch`]) with the
//! transaction's record when it is the last write, so a crash at any point leaves either
//! nothing or everything up to a point that a retry (deduplicated by event id) completes.

mod apply;
mod plan;

use std::collections::HashMap;

use serde_json::Value;
use weft_chat::{Change, ChatError, MessageRef, PreparedPost};
use weft_core::{Id, MessageView};

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
    /// Where each pending event is in `items`, to see when a later event relates to one not
    /// yet written.
    by_event: HashMap<String, usize>,
    /// Matrix room → weft room, looked up once per transaction.
    rooms: HashMap<String, Option<Id>>,
    /// The bridged rooms among the transaction's, read in one go before it is planned (a
    /// room missing here is not bridged); `None` when they are looked up one by one.
    bridged: Option<HashMap<String, Id>>,
    /// What the transaction's events, and the events they name, carried in weft when it
    /// started, read in one go: an event missing here carried nothing. `None` once part of
    /// the transaction is written (then each is read from the store).
    known: Option<HashMap<String, Carried>>,
    /// The stored messages `known` names, read with it, so that what relates to them is
    /// checked without reading each again; emptied with `known`.
    read: HashMap<Id, MessageView>,
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
    prepared: Preparation,
}

/// A pending message's preparation: running, or awaited because a later event of the
/// transaction relates to it.
enum Preparation {
    Running(tokio::task::JoinHandle<Result<PreparedPost, BridgeError>>),
    Done(Box<Result<PreparedPost, BridgeError>>),
}

impl Preparation {
    /// Waits for the message to be prepared.
    async fn finish(&mut self) -> &Result<PreparedPost, BridgeError> {
        if let Preparation::Running(handle) = self {
            let outcome = match handle.await {
                Ok(outcome) => outcome,
                Err(e) => Err(BridgeError::Config(format!(
                    "preparing the message failed: {e}"
                ))),
            };
            *self = Preparation::Done(Box::new(outcome));
        }
        match self {
            Preparation::Done(outcome) => outcome,
            Preparation::Running(_) => unreachable!("the preparation was awaited above"),
        }
    }

    /// The prepared message, or why it could not be.
    async fn into_outcome(mut self) -> Result<PreparedPost, BridgeError> {
        self.finish().await;
        match self {
            Preparation::Done(outcome) => *outcome,
            Preparation::Running(_) => unreachable!("the preparation was awaited above"),
        }
    }
}

impl PendingPosts {
    /// Whether the event is pending in this batch.
    fn holds(&self, event_id: &str) -> bool {
        self.by_event.contains_key(event_id)
    }

    /// The pending message `event_id` carries, as later changes of the batch name it; `None`
    /// when it is not a pending message, or one that could not be prepared.
    async fn message(&mut self, event_id: &str) -> Option<MessageRef> {
        let index = *self.by_event.get(event_id)?;
        match self.items.get_mut(index)? {
            Pending::Post(post) => post
                .prepared
                .finish()
                .await
                .as_ref()
                .ok()
                .map(PreparedPost::pending),
            Pending::Change(_) => None,
        }
    }

    fn push(&mut self, event_id: String, item: Pending) {
        self.by_event.insert(event_id, self.items.len());
        self.items.push(item);
    }
}

/// What to do with one incoming event.
enum Plan {
    /// A plain new message: add it to the pending batch.
    Post(PendingPost),
    /// A reaction, edit or redaction of something stored: add it to the pending batch.
    Change(Box<PendingChange>),
    /// Nothing to bridge (our own echo, an unbridged room, an event already applied).
    Skip,
    /// Relates to an event still pending that changes cannot name (a reaction or edit, a
    /// message weft refused): write the pending batch, then plan again.
    AfterPending,
    /// Anything else (files, member events, edits weft refuses, moderators' redactions):
    /// apply it on its own, after the pending batch.
    Apply,
}

impl Bridge {
    /// Applies a transaction's events exactly once; an error leaves it to be retried.
    ///
    /// The transaction's changes are written in one store transaction (more only when an
    /// event must be applied on its own, such as a file), and the transaction id is recorded
    /// in the last write, so a crash at any point leaves either nothing or everything up to a
    /// point that a retry (deduplicated by event id) completes.
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
        let events = translate::transaction_events(body);
        let mut pending = PendingPosts {
            bridged: Some(
                self.tables()
                    .rooms_for_matrix(&self.rooms_of(events))
                    .await?,
            ),
            ..PendingPosts::default()
        };
        if events.iter().any(|e| self.relates_to_others(e)) {
            let named = translate::events_named(events);
            let known = self.tables().carried_by_many(&named).await?;
            let messages: Vec<Id> = known.values().filter_map(Carried::subject).collect();
            pending.read = self.chat().views().messages_by_ids(&messages).await?;
            pending.known = Some(known);
        }
        for event in events {
            let mut plan = self.plan(event, &mut pending).await;
            if matches!(plan, Ok(Plan::AfterPending)) {
                wrote = true;
                self.write_pending(&mut pending, None).await?;
                plan = self.plan(event, &mut pending).await;
            }
            let outcome = match plan {
                Ok(Plan::Post(post)) => {
                    pending.push(post.event_id.clone(), Pending::Post(post));
                    Ok(())
                }
                Ok(Plan::Change(change)) => {
                    pending.push(change.event_id.clone(), Pending::Change(change));
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
            self.apply_receipts(body).await;
            return Ok(());
        }
        self.write_pending(&mut pending, Some(txn_id)).await?;
        // After the events: a receipt often names a message of the same transaction.
        self.apply_receipts(body).await;
        Ok(())
    }

    /// Whether an event of a transaction relates to another (a reply, an edit, a reaction, a
    /// redaction) and does not come from weft: then what the transaction's events name is
    /// looked up in one go, rather than event by event.
    fn relates_to_others(&self, event: &Value) -> bool {
        let related = match event["type"].as_str() {
            Some("m.reaction" | "m.room.redaction") => true,
            Some("m.room.message") => event["content"].get("m.relates_to").is_some(),
            _ => false,
        };
        related
            && !self
                .ids()
                .is_ours(event["sender"].as_str().unwrap_or_default())
    }

    /// A stored message as later events of the transaction name it: as read ahead with
    /// what they name, else by id (read when it is prepared).
    fn stored_message(&self, id: Id, pending: &PendingPosts) -> MessageRef {
        match pending.read.get(&id) {
            Some(view) => MessageRef::Read(Box::new(view.clone())),
            None => MessageRef::Stored(id),
        }
    }

    /// The Matrix rooms that events not from weft happened in, each once.
    fn rooms_of<'e>(&self, events: &'e [Value]) -> Vec<&'e str> {
        let mut rooms: Vec<&str> = Vec::new();
        for event in events {
            let sender = event["sender"].as_str().unwrap_or_default();
            if let Some(room) = event["room_id"].as_str()
                && !self.ids().is_ours(sender)
                && !rooms.contains(&room)
            {
                rooms.push(room);
            }
        }
        rooms
    }

    /// What an event carries in weft: from what the transaction looked up ahead while that
    /// holds, else from the store.
    async fn carried(
        &self,
        event_id: &str,
        pending: &PendingPosts,
    ) -> Result<Option<Carried>, BridgeError> {
        match &pending.known {
            Some(known) => Ok(known.get(event_id).cloned()),
            None => Ok(self.tables().carried_by(event_id).await?),
        }
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
        pending.by_event.clear();
        // What was looked up ahead is out of date once part of the transaction is written.
        pending.known = None;
        pending.read.clear();
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
            let PendingPost {
                event_id,
                matrix_room,
                room_id,
                sender,
                prepared,
            } = post;
            match prepared.into_outcome().await {
                Ok(prepared) => ready.push(Change::Post(prepared)),
                // Storage trouble: fail the transaction so that the homeserver retries it.
                Err(e @ (BridgeError::Store(_) | BridgeError::Chat(ChatError::Store(_)))) => {
                    return Err(e);
                }
                Err(e) => refused.push((event_id, room_id, matrix_room, sender, e)),
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
                    tx.insert_inbound_events(&carried).await?;
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
