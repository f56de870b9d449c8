//! Weft → Matrix: the sender follows the event log from its stored cursor and sends each
//! change with the transaction id `weft-<seq>` from the sending user's device, so a resend
//! after a crash is deduplicated by the homeserver. Transient failures (homeserver down, 429,
//! 5xx) are retried with back-off, in order; permanent ones are logged and recorded, and the
//! sender moves on. It runs only while it holds a fenced lease (see [`weft_store::Lease`]).

use std::time::{Duration, Instant};

use weft_core::{Author, Event, LoggedEvent, MessageView, Profile, RoomKind};
use weft_store::{Fence, Lease, StoreError};

use crate::privacy::Closing;
use crate::tables::{Carried, MatrixTables, MatrixWrites};
use crate::translate::{self, Pill};
use crate::{Bridge, BridgeError, VIRTUAL_KIND};

/// Log entries read per step.
const BATCH: i64 = 200;

/// How often, at most, the cursor is saved while events keep coming and none is sent, and
/// how long the sender waits idle before saving it.
const CURSOR_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// The lease of the one sender across all instances sharing the database.
const LEASE: &str = "matrix-outbound";

/// The sender found that it no longer holds its lease.
#[derive(Debug)]
struct LeaseLost;

pub(crate) async fn run(bridge: Bridge) {
    let tables = bridge.tables().clone();
    // One sender across all instances sharing the database: two would race on the cursor and
    // upload every file twice. The lease is fenced: a sender that lost it (its database
    // session dropped, its process paused) stops at once, and the writes it still tries are
    // refused, so it can neither send on nor move the cursor; then it waits for the lease
    // again and, with a new epoch, starts over from the durable cursor.
    loop {
        let lease = loop {
            match tables.take_lease(LEASE).await {
                Ok(lease) => break lease,
                Err(e) => {
                    tracing::error!(error = %e, "cannot take the Matrix sender lease; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        tracing::info!(epoch = lease.epoch(), "sending to Matrix");
        let mut lost = lease.lost();
        // Dropping `follow` drops whatever it had in flight (a request, a retry's wait).
        tokio::select! {
            biased;
            _ = lost.wait_for(|lost| *lost) => {}
            _ = follow(&bridge, &lease) => {}
        }
        tracing::warn!(
            epoch = lease.epoch(),
            "lost the Matrix sender lease: stopped sending, waiting to take it again"
        );
    }
}

/// Follows the event log and sends, until the lease is found lost.
async fn follow(bridge: &Bridge, lease: &Lease) -> Result<std::convert::Infallible, LeaseLost> {
    let views = bridge.chat().views();
    let tables = bridge.tables();
    let fence = lease.fence();
    // While another instance held the lease, it may have opened or closed rooms.
    bridge.forget_mapped_rooms();
    let mut committed = views.committed();
    // First start: begin at the present; history is not replayed into Matrix.
    let mut cursor = loop {
        match tables.cursor().await {
            Ok(Some(seq)) => break seq,
            Ok(None) => match views.last_event_seq().await {
                Ok(seq) => break seq,
                Err(e) => tracing::error!(error = %e, "cannot read the event log"),
            },
            Err(e) => tracing::error!(error = %e, "cannot read the Matrix cursor"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut saved = cursor;
    let mut last_save = Instant::now();
    loop {
        // What came from Matrix is never sent back: those entries are skipped unread.
        let (events, scanned_to) =
            match views.events_after_except(cursor, BATCH, VIRTUAL_KIND).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the event log");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
        let Some(scanned_to) = scanned_to else {
            // Idle. Once nothing has come for a while, save how far we got; not at once,
            // or every transaction the homeserver pushes would cost a second commit.
            tokio::select! {
                _ = committed.changed() => {}
                _ = tokio::time::sleep(CURSOR_SAVE_INTERVAL) => {
                    if cursor > saved {
                        saved = save_cursor(tables, fence, cursor).await?.unwrap_or(saved);
                        last_save = Instant::now();
                    }
                }
            }
            continue;
        };
        for event in events {
            deliver_with_retries(bridge, lease, &event).await?;
            cursor = event.seq;
        }
        cursor = cursor.max(scanned_to);
        // Messages and reactions saved the cursor with their mapping as they went. The rest
        // (mostly changes that came from Matrix, which need nothing sent) is saved when the
        // sender has been idle for a second or once a second under load, not after every
        // batch: that write would be one more commit for every transaction the homeserver
        // pushes. A crash resends at most that second's events, under the same transaction
        // ids from the same devices, which the homeserver deduplicates.
        if last_save.elapsed() >= CURSOR_SAVE_INTERVAL {
            saved = save_cursor(tables, fence, cursor).await?.unwrap_or(saved);
            last_save = Instant::now();
        }
    }
}

/// Saves the sender's cursor; answers the saved position, or `None` (logged) if the write
/// failed for a reason other than a lost lease.
async fn save_cursor(
    tables: &MatrixTables,
    fence: &Fence,
    seq: i64,
) -> Result<Option<i64>, LeaseLost> {
    let fence = fence.clone();
    match tables
        .write(move |tx| Box::pin(async move { tx.set_matrix_cursor(seq, &fence).await }))
        .await
    {
        Ok(()) => Ok(Some(seq)),
        Err(StoreError::LeaseLost { .. }) => Err(LeaseLost),
        Err(e) => {
            tracing::error!(error = %e, seq, "cannot save the Matrix cursor");
            Ok(None)
        }
    }
}

async fn deliver_with_retries(
    bridge: &Bridge,
    lease: &Lease,
    event: &LoggedEvent,
) -> Result<(), LeaseLost> {
    let mut delay = Duration::from_millis(200);
    loop {
        // Each attempt may send: first the cheap check that the lease still holds (the fenced
        // writes that follow a send are the sure one).
        if lease.is_lost() {
            return Err(LeaseLost);
        }
        match deliver(bridge, lease.fence(), event).await {
            Ok(()) => {
                tracing::debug!(
                    seq = event.seq,
                    since_logged_ms = weft_core::now_millis() - event.at,
                    "delivered to Matrix"
                );
                return Ok(());
            }
            Err(BridgeError::Store(StoreError::LeaseLost { .. })) => {
                tracing::warn!(
                    seq = event.seq,
                    "the Matrix sender lease moved while sending"
                );
                return Err(LeaseLost);
            }
            Err(BridgeError::Homeserver(e)) if e.is_transient() => {
                let wait = e.retry_after_ms.map(Duration::from_millis).unwrap_or(delay);
                tracing::warn!(seq = event.seq, error = %e, wait_ms = wait.as_millis() as u64, "homeserver unavailable; retrying");
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(BridgeError::Store(e)) => {
                tracing::error!(seq = event.seq, error = %e, "storage failed while bridging; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                let room = event.event.room_id();
                let failures_total = bridge.count_failure();
                tracing::error!(seq = event.seq, room_id = ?room, error = %e, failures_total, "could not bridge an event to Matrix; recorded as a permanent failure");
                let (seq, note) = (event.seq, e.to_string());
                if let Err(e) = bridge
                    .tables()
                    .write(move |tx| {
                        Box::pin(async move {
                            tx.insert_matrix_failure(seq, room, &format!("log:{seq}"), &note)
                                .await
                        })
                    })
                    .await
                {
                    tracing::error!(seq = event.seq, error = %e, "could not record a Matrix failure");
                }
                // A message that never reached Matrix says so where its author sees it.
                if let Event::MessageCreated {
                    room_id,
                    message_id,
                } = &event.event
                {
                    let reason = "it could not be delivered to Matrix";
                    if let Err(e) = bridge
                        .chat()
                        .mark_undelivered(
                            bridge.actor(),
                            *room_id,
                            *message_id,
                            VIRTUAL_KIND,
                            reason,
                        )
                        .await
                    {
                        tracing::error!(seq = event.seq, %message_id, error = %e, "could not mark a message undelivered");
                    }
                }
                return Ok(());
            }
        }
    }
}

/// Records what a logged change became on Matrix and moves the cursor past it, in one
/// write: the next event waits for one commit, not two. Fenced: refused if the lease moved.
async fn record_sent(
    bridge: &Bridge,
    fence: &Fence,
    event: &LoggedEvent,
    matrix_event_id: &str,
    matrix_room: &str,
    carried: Carried,
    mentioned: Vec<String>,
) -> Result<(), BridgeError> {
    let (seq, e, r, fence) = (
        event.seq,
        matrix_event_id.to_string(),
        matrix_room.to_string(),
        fence.clone(),
    );
    bridge
        .tables()
        .write(move |tx| {
            Box::pin(async move {
                tx.insert_outbound_event(&fence, &e, &r, &carried).await?;
                if let Some(message_id) = carried.message() {
                    tx.insert_mentioned(message_id, &mentioned).await?;
                }
                tx.set_matrix_cursor(seq, &fence).await
            })
        })
        .await?;
    Ok(())
}

fn txn(event: &LoggedEvent) -> String {
    format!("weft-{}", event.seq)
}

/// Sends one logged change to Matrix, if it concerns a bridged room.
async fn deliver(bridge: &Bridge, fence: &Fence, event: &LoggedEvent) -> Result<(), BridgeError> {
    if event.origin.0 == VIRTUAL_KIND {
        return Ok(()); // Came from Matrix: never echo it back.
    }
    let store = bridge.chat().views();
    if let Event::UserUpdated { user_id } = &event.event {
        // A rename reaches Matrix only for users who already have a puppet.
        let Some(user) = store.user(*user_id).await? else {
            return Ok(());
        };
        if bridge
            .tables()
            .puppet(&bridge.ids().puppet(&user))
            .await?
            .is_some()
        {
            bridge.ensure_puppet(&user).await?;
            bridge.sync_puppet_avatar_soon(&user);
        }
        return Ok(());
    }
    if let Event::ReadAdvanced {
        room_id,
        user_id,
        up_to_seq,
    } = event.event
    {
        // Best effort, batched, off this ordered path (see `receipts`).
        bridge.receipts().note(user_id, room_id, up_to_seq);
        return Ok(());
    }
    let Some(room_id) = event.event.room_id() else {
        return Ok(());
    };
    let Some(mapped) = bridge.mapped_room(room_id).await? else {
        return Ok(());
    };
    // Privacy first: see `privacy.rs` for why the sender acts on the log's order.
    match &event.event {
        Event::RoomPrivacyChanged { public: false, .. } if mapped.open => {
            return bridge
                .close_matrix_room(event, &mapped, Closing::MadePrivate)
                .await;
        }
        Event::RoomDeleted { .. } if mapped.open => {
            return bridge
                .close_matrix_room(event, &mapped, Closing::Deleted)
                .await;
        }
        Event::RoomPrivacyChanged { public: true, .. } if !mapped.open => {
            let public_now = store
                .room(room_id)
                .await?
                .is_some_and(|r| r.kind == RoomKind::Public);
            // Public here but private again now: a later change in the log says so.
            if public_now {
                return bridge.reopen_matrix_room(event, &mapped).await;
            }
            return Ok(());
        }
        _ => {}
    }
    if !bridge.may_send_to(&mapped).await? {
        return Ok(());
    }
    let matrix_room = mapped.matrix_room_id.as_str();
    match &event.event {
        Event::MessageCreated { message_id, .. } => {
            // Independent reads side by side: each is a wait on the database, and this is
            // the path every message takes to Matrix.
            let (view, room) = tokio::try_join!(store.message(*message_id), store.room(room_id))?;
            let Some(view) = view else {
                return Ok(());
            };
            let Some(sender) = sender_of(bridge, &view, matrix_room).await? else {
                return Ok(());
            };
            let pills = pills(bridge, &view).await?;
            let thread_root = match view.message.parent_id {
                Some(parent) => bridge
                    .tables()
                    .event_for(&Carried::Message(parent))
                    .await?
                    .map(|(e, _)| e),
                None => None,
            };
            let uri = room
                .as_ref()
                .and_then(|r| r.uri.clone())
                .unwrap_or_default();
            let permalink = format!("{}/{uri}?at={}", bridge.public_url(), view.message.id);
            if !view.message.attachments.is_empty() {
                return send_files(
                    bridge,
                    Sending { event, fence },
                    &view,
                    matrix_room,
                    &sender,
                    thread_root.as_deref(),
                    &permalink,
                )
                .await;
            }
            let content = translate::message_content(
                &view.message,
                &pills,
                thread_root.as_deref(),
                &permalink,
            );
            tracing::debug!(
                seq = event.seq,
                since_logged_ms = weft_core::now_millis() - event.at,
                "sending to Matrix"
            );
            let event_id = bridge
                .send_as_member(
                    matrix_room,
                    "m.room.message",
                    &txn(event),
                    &content,
                    &sender,
                )
                .await?;
            record_sent(
                bridge,
                fence,
                event,
                &event_id,
                matrix_room,
                Carried::Message(view.message.id),
                pills.into_iter().map(|p| p.mxid).collect(),
            )
            .await
        }
        Event::MessageEdited { message_id, .. } => {
            let Some(view) = store.message(*message_id).await? else {
                return Ok(());
            };
            let Some((original, _)) = bridge
                .tables()
                .event_for(&Carried::Message(*message_id))
                .await?
            else {
                return Ok(());
            };
            let Some(sender) = sender_of(bridge, &view, matrix_room).await? else {
                return Ok(());
            };
            let pills = pills(bridge, &view).await?;
            let notified = bridge.tables().mentioned(*message_id).await?;
            let content = translate::edit_content(&view.message, &pills, &original, &notified);
            bridge
                .send_as_member(
                    matrix_room,
                    "m.room.message",
                    &txn(event),
                    &content,
                    &sender,
                )
                .await?;
            let newly: Vec<String> = translate::newly_mentioned(&pills, &notified)
                .into_iter()
                .map(str::to_string)
                .collect();
            if !newly.is_empty() {
                let (message_id, fence) = (*message_id, fence.clone());
                bridge
                    .tables()
                    .write(move |tx| {
                        Box::pin(async move {
                            tx.check_lease(&fence).await?;
                            tx.insert_mentioned(message_id, &newly).await
                        })
                    })
                    .await?;
            }
            Ok(())
        }
        Event::MessageDeleted {
            message_id,
            moderator,
            reason,
            external_ref,
            ..
        } => {
            // A message from Matrix is known by its event id, its external key: the row that
            // held it is gone.
            let target = match external_ref.as_deref().filter(|r| r.starts_with('$')) {
                Some(event_id) => event_id.to_string(),
                None => match bridge
                    .tables()
                    .event_for(&Carried::Message(*message_id))
                    .await?
                {
                    Some((event_id, _)) => event_id.to_string(),
                    None => return Ok(()),
                },
            };
            // The bot redacts anything; a moderator's delete says so, with its reason.
            let why = match moderator {
                Some(id) => {
                    let by = store.user(*id).await?.map(|u| u.username);
                    Some(match (by, reason) {
                        (Some(by), Some(r)) => format!("Removed on weft by {by}: {r}"),
                        (Some(by), None) => format!("Removed on weft by {by}"),
                        (None, Some(r)) => format!("Removed on weft: {r}"),
                        (None, None) => "Removed on weft by a moderator".to_string(),
                    })
                }
                None => reason.clone(),
            };
            bridge
                .redact(
                    matrix_room,
                    &target,
                    &txn(event),
                    &bridge.ids().bot(),
                    why.as_deref(),
                )
                .await?;
            Ok(())
        }
        Event::ReactionAdded {
            message_id,
            reactor: Author::User(user_id),
            emoji,
            ..
        } => {
            let Some((target, _)) = bridge
                .tables()
                .event_for(&Carried::Message(*message_id))
                .await?
            else {
                return Ok(());
            };
            let Some(user) = store.user(*user_id).await? else {
                return Ok(());
            };
            let sender = bridge.ensure_puppet(&user).await?;
            bridge.ensure_joined(matrix_room, &sender).await?;
            let content = translate::reaction_content(&target, emoji);
            let event_id = bridge
                .send_as_member(matrix_room, "m.reaction", &txn(event), &content, &sender)
                .await?;
            record_sent(
                bridge,
                fence,
                event,
                &event_id,
                matrix_room,
                Carried::Reaction {
                    message: *message_id,
                    key: emoji.clone(),
                    by: Some(*user_id),
                },
                Vec::new(),
            )
            .await
        }
        Event::ReactionRemoved {
            message_id,
            reactor: Author::User(user_id),
            emoji,
            ..
        } => {
            let sent = Carried::Reaction {
                message: *message_id,
                key: emoji.clone(),
                by: Some(*user_id),
            };
            let Some((target, _)) = bridge.tables().event_for(&sent).await? else {
                return Ok(());
            };
            let Some(user) = store.user(*user_id).await? else {
                return Ok(());
            };
            let sender = bridge.ids().puppet(&user);
            bridge
                .redact(matrix_room, target.as_str(), &txn(event), &sender, None)
                .await?;
            Ok(())
        }
        Event::RoomUpdated { .. } => {
            let Some(room) = store.room(room_id).await? else {
                return Ok(());
            };
            bridge.sync_room_details(&room, matrix_room).await?;
            // Role changes log RoomUpdated too.
            bridge.sync_power_levels(&mapped).await
        }
        Event::MemberJoined { user_id, .. } => {
            bridge.member_joined_on_matrix(&mapped, *user_id).await
        }
        Event::MemberLeft {
            user_id,
            moderator: None,
            ..
        } => bridge.member_left_on_matrix(&mapped, *user_id).await,
        _ => bridge
            .moderate_on_matrix(event, matrix_room)
            .await
            .map(|_| ()),
    }
}

/// A log entry on its way to Matrix, with the fence that the writes recording it carry.
#[derive(Clone, Copy)]
struct Sending<'a> {
    event: &'a LoggedEvent,
    fence: &'a Fence,
}

/// Sends a message's files as `m.image`/`m.file`/… events, uploaded to the media repository
/// as the author; the first event stands for the message.
async fn send_files(
    bridge: &Bridge,
    Sending { event, fence }: Sending<'_>,
    view: &MessageView,
    matrix_room: &str,
    sender: &str,
    thread_root: Option<&ruma::EventId>,
    permalink: &str,
) -> Result<(), BridgeError> {
    let caption = translate::caption_of(&view.message.text);
    for (index, attachment) in view.message.attachments.iter().enumerate() {
        let file = bridge
            .chat()
            .download(bridge.actor(), attachment.file_id)
            .await?;
        let mxc = bridge
            .hs()
            .upload(
                file.bytes.to_vec(),
                &attachment.content_type,
                &attachment.name,
                sender,
            )
            .await?;
        let content =
            translate::file_content(attachment, &mxc, caption.as_deref(), thread_root, permalink);
        let txn_id = format!("{}-{index}", txn(event));
        let event_id = bridge
            .send_as_member(matrix_room, "m.room.message", &txn_id, &content, sender)
            .await?;
        if index == 0 {
            let (e, r, w, fence) = (
                event_id.clone(),
                matrix_room.to_string(),
                view.message.id,
                fence.clone(),
            );
            bridge
                .tables()
                .write(move |tx| {
                    Box::pin(async move {
                        tx.insert_outbound_event(&fence, &e, &r, &Carried::Message(w))
                            .await
                    })
                })
                .await?;
        }
    }
    Ok(())
}

/// The puppet that sends a message, registered and joined; `None` for authors weft does not
/// bridge (virtual users from other networks).
async fn sender_of(
    bridge: &Bridge,
    view: &MessageView,
    matrix_room: &str,
) -> Result<Option<String>, BridgeError> {
    let Some(Profile::User(user)) = &view.author else {
        return Ok(None);
    };
    // Usually the puppet exists, is named right and is in the room: two reads, side by side.
    let mxid = bridge.ids().puppet(user);
    let tables = bridge.tables();
    let (known, joined) =
        tokio::try_join!(tables.puppet(&mxid), tables.is_member(matrix_room, &mxid))?;
    if joined && known.as_ref().and_then(|n| n.as_deref()) == Some(user.display_name.as_str()) {
        return Ok(Some(mxid));
    }
    let sender = bridge.ensure_puppet(user).await?;
    bridge.ensure_joined(matrix_room, &sender).await?;
    Ok(Some(sender))
}

/// The people a message mentions, as Matrix users: weft users by their puppets, Matrix
/// users (`@alice:matrix.org`) as themselves.
async fn pills(bridge: &Bridge, view: &MessageView) -> Result<Vec<Pill>, BridgeError> {
    let mut out = Vec::new();
    for mention in &view.message.mentions {
        let mxid = match mention.user_id {
            Some(user_id) => bridge
                .chat()
                .views()
                .user(user_id)
                .await?
                .map(|user| bridge.ids().puppet(&user)),
            None => translate::mentioned_matrix_user(&mention.screen_name),
        };
        if let Some(mxid) = mxid {
            out.push(Pill {
                screen_name: mention.screen_name.clone(),
                mxid,
            });
        }
    }
    Ok(out)
}
