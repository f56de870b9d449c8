//! Matrix → weft: applying AS transactions, and the on-demand creation of Matrix rooms and
//! puppets that the homeserver's queries ask for.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use weft_chat::{ChatError, NewPost, PostAs, PreparedPost};
use weft_core::{Id, Room, RoomKind, User};

use crate::refusals::Verdict;
use crate::tables::{Carried, MatrixRoom, MatrixWrites};
use crate::translate::{self, IncomingText};
use crate::{Bridge, BridgeError, Identities};

/// Plain messages of one AS transaction, checked and rendered, waiting to be written together
/// (at the end with the transaction id) in one store transaction: one commit per transaction
/// rather than two per event.
#[derive(Default)]
struct PendingPosts {
    posts: Vec<PendingPost>,
    /// The posts' event ids, to see when a later event relates to one not yet written.
    event_ids: HashSet<String>,
    /// Matrix room → weft room, looked up once per transaction.
    rooms: HashMap<String, Option<Id>>,
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
    /// A plain new message: add it to the pending posts.
    Post(PendingPost),
    /// Nothing to bridge (our own echo, an unbridged room, an event already applied).
    Skip,
    /// Relates to a message still pending: write the pending posts, then plan again.
    AfterPending,
    /// Anything else (edits, files, reactions, redactions, profile changes): apply it on its
    /// own, after the pending posts.
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
                    pending.posts.push(post);
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
        if pending.posts.is_empty() && !wrote {
            // Nothing was written (only echoes of weft's own events, events of unbridged
            // rooms, ephemeral events): a replay would write nothing either, so recording the
            // transaction would only cost a commit, and the homeserver pushes one such
            // transaction back for every message weft sends.
            return Ok(());
        }
        self.write_pending(&mut pending, Some(txn_id)).await
    }

    /// Logs and records an event that could not be bridged. Storage trouble is not such an
    /// event: it fails the transaction, so that the homeserver retries it.
    async fn record_failure(&self, event: &Value, error: &BridgeError) -> Result<(), BridgeError> {
        let event_id = event["event_id"].as_str().unwrap_or_default();
        let matrix_room = event["room_id"].as_str().unwrap_or_default();
        let sender = event["sender"].as_str().unwrap_or_default();
        let failures_total = self.count_failure();
        tracing::warn!(%event_id, room_id = %matrix_room, %sender, %error, failures_total, "a Matrix event could not be bridged");
        self.tell_sender(matrix_room, event_id, sender, error);
        let tables = self.tables();
        let weft_room = tables.room_for_matrix(matrix_room).await?;
        let note = format!("inbound {event_id}: {error}");
        let key = event_id.to_string();
        tables
            .write(move |tx| {
                Box::pin(async move { tx.insert_matrix_failure(0, weft_room, &key, &note).await })
            })
            .await?;
        Ok(())
    }

    /// The weft room of a bridged Matrix room (`None` if it is not bridged), refused when it
    /// is not public any more: from then on nothing from Matrix reaches it.
    async fn open_room(&self, matrix_room: &str) -> Result<Option<Id>, BridgeError> {
        let Some(room_id) = self.tables().room_for_matrix(matrix_room).await? else {
            return Ok(None);
        };
        match self.chat().views().room(room_id).await? {
            Some(room) if room.kind == RoomKind::Public => Ok(Some(room_id)),
            Some(_) => Err(BridgeError::Refused(
                "this room is private on weft now, so nothing from Matrix reaches it".into(),
            )),
            None => Err(BridgeError::Refused("this room was deleted on weft".into())),
        }
    }

    /// Decides how to apply an event; prepares plain messages for the pending batch.
    async fn plan(&self, event: &Value, pending: &mut PendingPosts) -> Result<Plan, BridgeError> {
        if event["type"] != "m.room.message" {
            return Ok(Plan::Apply);
        }
        let sender = event["sender"].as_str().unwrap_or_default();
        let matrix_room = event["room_id"].as_str().unwrap_or_default();
        let event_id = event["event_id"].as_str().unwrap_or_default();
        if sender.is_empty() || event_id.is_empty() || self.ids().is_ours(sender) {
            return Ok(Plan::Skip);
        }
        let room_id = match pending.rooms.get(matrix_room) {
            Some(known) => *known,
            None => {
                let found = self.open_room(matrix_room).await?;
                pending.rooms.insert(matrix_room.to_string(), found);
                found
            }
        };
        let Some(room_id) = room_id else {
            return Ok(Plan::Skip);
        };
        let content = &event["content"];
        let Some(incoming) = self.incoming_text(content).await? else {
            return Ok(Plan::Apply);
        };
        if incoming.replaces.is_some() {
            return Ok(Plan::Apply);
        }
        let target = incoming
            .thread_root
            .as_deref()
            .or(incoming.in_reply_to.as_deref());
        if target.is_some_and(|t| pending.event_ids.contains(t)) {
            return Ok(Plan::AfterPending);
        }
        let who = self.post_as(sender);
        let bridge = self.clone();
        let id = event_id.to_string();
        let prepared =
            tokio::spawn(async move { bridge.prepare_message(room_id, &id, who, incoming).await });
        Ok(Plan::Post(PendingPost {
            event_id: event_id.to_string(),
            matrix_room: matrix_room.to_string(),
            room_id,
            sender: sender.to_string(),
            prepared,
        }))
    }

    /// Writes the pending posts in one store transaction, with the AS transaction id when it
    /// is the last write of the transaction, and the refusals among them.
    async fn write_pending(
        &self,
        pending: &mut PendingPosts,
        txn_id: Option<&str>,
    ) -> Result<(), BridgeError> {
        if pending.posts.is_empty() && txn_id.is_none() {
            return Ok(());
        }
        let posts = std::mem::take(&mut pending.posts);
        pending.event_ids.clear();
        let mut ready = Vec::with_capacity(posts.len());
        let mut refused = Vec::new();
        for post in posts {
            let outcome = match post.prepared.await {
                Ok(outcome) => outcome,
                Err(e) => Err(BridgeError::Config(format!(
                    "preparing the message failed: {e}"
                ))),
            };
            match outcome {
                Ok(prepared) => ready.push(prepared),
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
        // No mapping rows: each message carries its event id as its unique external key,
        // which is what lookups by event id find (`MatrixTables::carried_by`), and what makes
        // a replay a no-op.
        let written = self
            .chat()
            .post_batch(ready, move |tx| {
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
                    Ok(true)
                })
            })
            .await?;
        if written.is_none() {
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

    async fn apply_event(&self, event: &Value) -> Result<(), BridgeError> {
        let sender = event["sender"].as_str().unwrap_or_default();
        let matrix_room = event["room_id"].as_str().unwrap_or_default();
        let event_id = event["event_id"].as_str().unwrap_or_default();
        if sender.is_empty() || event_id.is_empty() || self.ids().is_ours(sender) {
            return Ok(());
        }
        let event_type = event["type"].as_str().unwrap_or_default();
        let room_id = match self.open_room(matrix_room).await {
            Ok(Some(id)) => id,
            Ok(None) => return Ok(()),
            // What people say is refused, and they are told; state changes and redactions
            // in a room that is closed change nothing in weft.
            Err(e) if matches!(event_type, "m.room.message" | "m.reaction") => return Err(e),
            Err(_) => return Ok(()),
        };
        let content = &event["content"];
        match event_type {
            "m.room.member" => {
                // One about someone else is a moderator's act (or an invite); it carries the
                // target's profile, never the sender's.
                if event["state_key"].as_str() != Some(sender) {
                    return self.moderate_from_matrix(room_id, event).await;
                }
                if content["membership"] != "join" {
                    return Ok(());
                }
                match content["displayname"].as_str() {
                    Some(name) if !name.trim().is_empty() => {
                        self.rename_virtual_user(sender, name).await
                    }
                    _ => Ok(()),
                }
            }
            "m.room.message" => {
                self.apply_message(room_id, matrix_room, event_id, sender, content)
                    .await
            }
            "m.reaction" => {
                let relates = &content["m.relates_to"];
                let (Some(target), Some(key)) =
                    (relates["event_id"].as_str(), relates["key"].as_str())
                else {
                    return Ok(());
                };
                let Some(message_id) = self.weft_message(target).await? else {
                    return Err(BridgeError::Refused(
                        "it reacts to a message weft does not have".into(),
                    ));
                };
                let who = self.post_as(sender);
                self.chat()
                    .react(self.actor(), room_id, message_id, key, true, Some(who))
                    .await?;
                let reaction = Carried::Reaction {
                    message: message_id,
                    key: key.to_string(),
                    by: None,
                };
                self.record_inbound(event_id, matrix_room, reaction).await
            }
            "m.room.redaction" => {
                let redacts = event["redacts"]
                    .as_str()
                    .or(content["redacts"].as_str())
                    .unwrap_or_default();
                let Some(carried) = self.tables().carried_by(redacts).await? else {
                    return Ok(());
                };
                let who = self.post_as(sender);
                match carried {
                    Carried::Message(id) => {
                        match self
                            .chat()
                            .delete(self.actor(), room_id, id, Some(who), None)
                            .await
                        {
                            Ok(()) | Err(ChatError::NotFound(_)) => Ok(()),
                            // Someone else's message: a Matrix moderator's redaction, which
                            // counts only if the room's power levels allow it.
                            Err(ChatError::Forbidden(_)) => {
                                if !self.may_redact_others(matrix_room, sender).await? {
                                    return Err(BridgeError::Refused(
                                        "only the room's moderators may remove other people's messages".into(),
                                    ));
                                }
                                let reason = content["reason"].as_str().map(str::to_string);
                                match self
                                    .chat()
                                    .delete(self.actor(), room_id, id, None, reason)
                                    .await
                                {
                                    Ok(()) | Err(ChatError::NotFound(_)) => Ok(()),
                                    Err(e) => Err(e.into()),
                                }
                            }
                            Err(e) => Err(e.into()),
                        }
                    }
                    Carried::Reaction { message, key, .. } => {
                        self.chat()
                            .react(self.actor(), room_id, message, &key, false, Some(who))
                            .await?;
                        Ok(())
                    }
                    // Redacting an edit leaves the edited text: Matrix clients show the
                    // previous version again, weft keeps no history of versions.
                    Carried::Edit(_) => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    async fn apply_message(
        &self,
        room_id: Id,
        matrix_room: &str,
        event_id: &str,
        sender: &str,
        content: &Value,
    ) -> Result<(), BridgeError> {
        if self.tables().carried_by(event_id).await?.is_some() {
            return Ok(());
        }
        let Some(incoming) = self.incoming_text(content).await? else {
            if let Some(file) = translate::incoming_file(content) {
                return self
                    .apply_file(room_id, event_id, sender, content, file)
                    .await;
            }
            return Err(BridgeError::Refused(format!(
                "{} messages are not bridged to weft",
                content["msgtype"].as_str().unwrap_or("unknown")
            )));
        };
        if let Some(original) = &incoming.replaces {
            let who = self.post_as(sender);
            return self
                .apply_edit(
                    room_id,
                    matrix_room,
                    event_id,
                    original,
                    incoming.clone(),
                    who,
                )
                .await;
        }
        let post = self
            .prepare_message(room_id, event_id, self.post_as(sender), incoming)
            .await?;
        self.chat()
            .post_batch(vec![post], |_| Box::pin(async { Ok(true) }))
            .await?;
        Ok(())
    }

    /// Reads a message's text, turning pills of weft users' puppets into their usernames;
    /// `None` for content that is not text (files, unknown types).
    async fn incoming_text(&self, content: &Value) -> Result<Option<IncomingText>, BridgeError> {
        let html = content["formatted_body"]
            .as_str()
            .or(content["m.new_content"]["formatted_body"].as_str())
            .unwrap_or_default();
        let mut usernames = HashMap::new();
        for target in translate::pill_targets(html) {
            if let Some(id) = self.ids().puppet_user_id(&target)
                && let Some(user) = self.chat().views().user(id).await?
            {
                usernames.insert(target, user.username);
            }
        }
        Ok(translate::incoming_text(content, |mxid| {
            usernames.get(mxid).cloned()
        }))
    }

    /// Checks and renders a new message from Matrix as its sender's virtual user, in the
    /// thread of the message it replies to.
    async fn prepare_message(
        &self,
        room_id: Id,
        event_id: &str,
        who: PostAs,
        incoming: IncomingText,
    ) -> Result<PreparedPost, BridgeError> {
        let parent = match incoming
            .thread_root
            .as_deref()
            .or(incoming.in_reply_to.as_deref())
        {
            Some(target) => self.weft_message(target).await?,
            None => None,
        };
        let post = NewPost {
            text: incoming.text,
            status: incoming.status,
            parent_id: parent,
            as_virtual: Some(who),
            external_ref: Some(event_id.to_string()),
            ..NewPost::default()
        };
        Ok(self
            .chat()
            .prepare_post(self.actor(), room_id, post)
            .await?)
    }

    /// A file from Matrix: downloaded through authenticated media, stored in weft, posted as
    /// the virtual user under the event id.
    async fn apply_file(
        &self,
        room_id: Id,
        event_id: &str,
        sender: &str,
        content: &Value,
        file: translate::IncomingFile,
    ) -> Result<(), BridgeError> {
        let limit = self.chat().config().max_upload_bytes as u64;
        if file.size.is_some_and(|s| s > limit) {
            return Err(ChatError::TooLarge(format!(
                "{} is larger than weft's limit of {limit} bytes",
                file.name
            ))
            .into());
        }
        let bytes = match self.hs().download(&file.url, limit).await {
            Ok(bytes) => bytes,
            Err(e) if e.errcode == "W_TOO_LARGE" => {
                return Err(ChatError::TooLarge(format!(
                    "{} is larger than weft's limit of {limit} bytes",
                    file.name
                ))
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        let relates = &content["m.relates_to"];
        let target = relates["event_id"]
            .as_str()
            .filter(|_| relates["rel_type"] == "m.thread");
        let target = target.or(relates["m.in_reply_to"]["event_id"].as_str());
        let parent = match target {
            Some(t) => self.weft_message(t).await?,
            None => None,
        };
        let post = NewPost {
            text: file.caption.unwrap_or_default(),
            parent_id: parent,
            as_virtual: Some(self.post_as(sender)),
            external_ref: Some(event_id.to_string()),
            ..NewPost::default()
        };
        let upload = weft_chat::Upload {
            name: file.name,
            content_type: file.content_type,
            bytes: bytes.into(),
        };
        // Its external key is the event id: that is its mapping.
        self.chat()
            .upload_with(self.actor(), room_id, upload, post)
            .await?;
        Ok(())
    }

    async fn apply_edit(
        &self,
        room_id: Id,
        matrix_room: &str,
        event_id: &str,
        original: &str,
        incoming: IncomingText,
        who: PostAs,
    ) -> Result<(), BridgeError> {
        let Some(message_id) = self.weft_message(original).await? else {
            return Err(BridgeError::Refused(
                "it edits a message weft does not have".into(),
            ));
        };
        match self
            .chat()
            .edit(
                self.actor(),
                room_id,
                message_id,
                &incoming.text,
                Some(who.clone()),
            )
            .await
        {
            Ok(_) => {
                self.record_inbound(event_id, matrix_room, Carried::Edit(message_id))
                    .await
            }
            // Too late to edit in weft: say so in a new message, as Gitter did.
            Err(ChatError::Forbidden(_)) => {
                let post = NewPost {
                    text: format!("*(edited)* {}", incoming.text),
                    status: incoming.status,
                    as_virtual: Some(who),
                    external_ref: Some(event_id.to_string()),
                    ..NewPost::default()
                };
                // Its external key is the event id: that is its mapping.
                self.chat().post(self.actor(), room_id, post).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The weft message a Matrix event carries (a message, or the message an edit changed).
    async fn weft_message(&self, matrix_event_id: &str) -> Result<Option<Id>, BridgeError> {
        Ok(self
            .tables()
            .carried_by(matrix_event_id)
            .await?
            .and_then(|carried| carried.message()))
    }

    /// The homeserver asks about a user in our namespace: register the puppet if it stands
    /// for a weft user.
    pub(crate) async fn provision_puppet_for(&self, mxid: &str) -> Result<bool, BridgeError> {
        let Some(id) = self.ids().puppet_user_id(mxid) else {
            return Ok(false);
        };
        let Some(user) = self.chat().views().user(id).await? else {
            return Ok(false);
        };
        if self.ids().puppet(&user) != mxid {
            return Ok(false);
        }
        self.ensure_puppet(&user).await?;
        Ok(true)
    }

    /// The homeserver asks about an alias: create the Matrix room of a public weft room.
    pub(crate) async fn room_for_alias(&self, alias: &str) -> Result<bool, BridgeError> {
        let Some(localpart) = self.ids().alias_to_localpart(alias) else {
            return Ok(false);
        };
        let Some(room) = self
            .chat()
            .views()
            .room_by_flattened_uri(&localpart, '_')
            .await?
        else {
            return Ok(false);
        };
        if room.kind != RoomKind::Public {
            return Ok(false);
        }
        self.ensure_matrix_room(&room).await?;
        Ok(true)
    }

    /// The Matrix room of a public weft room, created (once, even when instances race) if
    /// needed.
    pub(crate) async fn ensure_matrix_room(&self, room: &Room) -> Result<MatrixRoom, BridgeError> {
        let tables = self.tables();
        if let Some(existing) = tables.room(room.id).await? {
            return Ok(existing);
        }
        let uri = room
            .uri
            .clone()
            .ok_or_else(|| BridgeError::Config("only community rooms are bridged".into()))?;
        let localpart = Identities::alias_localpart(&uri);
        let alias = self.ids().alias(&uri);
        let permalink = format!("{}/{uri}", self.public_url());
        let info = json!({
            "bridgebot": self.ids().bot(),
            "protocol": { "id": "weft", "displayname": "weft" },
            "channel": { "id": uri, "displayname": room.name, "external_url": permalink },
        });
        let state_key = format!("weft://{uri}");
        let staff: serde_json::Map<String, Value> = self
            .staff_levels(room.id)
            .await?
            .into_iter()
            .map(|(mxid, level)| (mxid, json!(level)))
            .collect();
        let body = json!({
            "room_alias_name": localpart,
            "name": uri,
            "topic": room.topic,
            "preset": "public_chat",
            "visibility": "public",
            "initial_state": [
                { "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "world_readable" } },
                { "type": "m.bridge", "state_key": state_key, "content": info },
                { "type": "uk.half-shot.bridge", "state_key": state_key, "content": info },
            ],
            // Room version 12: the creator (the bot) is not listed; it administers by creation.
            // Weft's moderators and admins hold power from the start (see moderation.rs).
            "power_level_content_override": {
                "users_default": 0, "events_default": 0, "invite": 0, "users": staff,
            },
        });
        let matrix_room_id = match self.hs().create_room(body).await {
            Ok(id) => {
                // `visibility` in createRoom is subject to the homeserver's publication
                // rules; ask explicitly so the room shows in the directory.
                if let Err(e) = self.hs().publish(&id).await {
                    tracing::warn!(matrix_room_id = %id, error = %e, "could not list the room in the directory");
                }
                id
            }
            // Another instance created it first: use theirs.
            Err(e) if e.errcode == "M_ROOM_IN_USE" => self.hs().resolve_alias(&alias).await?,
            Err(e) => return Err(e.into()),
        };
        let mapped = MatrixRoom {
            room_id: room.id,
            matrix_room_id,
            alias,
            open: true,
        };
        tables.insert_room(mapped.clone()).await?;
        tracing::info!(room_id = %room.id, matrix_room_id = %mapped.matrix_room_id, alias = %mapped.alias, "bridged a room to Matrix");
        Ok(tables.room(room.id).await?.unwrap_or(mapped))
    }

    /// Registers a weft user's puppet and keeps its display name current.
    pub(crate) async fn ensure_puppet(&self, user: &User) -> Result<String, BridgeError> {
        let mxid = self.ids().puppet(user);
        let known = self.tables().puppet(&mxid).await?;
        if known.as_ref().and_then(|n| n.as_deref()) == Some(user.display_name.as_str()) {
            return Ok(mxid);
        }
        if known.is_none() {
            self.hs()
                .register_puppet(&self.ids().puppet_localpart(user))
                .await?;
            // Its device, for transaction ids the homeserver remembers (see `devices`).
            self.create_device(&mxid).await?;
        }
        self.hs()
            .set_display_name(&mxid, &user.display_name)
            .await?;
        let (m, name) = (mxid.clone(), user.display_name.clone());
        self.tables()
            .write(move |tx| {
                Box::pin(async move { tx.upsert_matrix_puppet(&m, Some(&name)).await })
            })
            .await?;
        Ok(mxid)
    }

    /// Makes sure a puppet is in a Matrix room.
    pub(crate) async fn ensure_joined(
        &self,
        matrix_room_id: &str,
        mxid: &str,
    ) -> Result<(), BridgeError> {
        if self.tables().is_member(matrix_room_id, mxid).await? {
            return Ok(());
        }
        self.hs().join(matrix_room_id, mxid).await?;
        let (r, m) = (matrix_room_id.to_string(), mxid.to_string());
        self.tables()
            .write(move |tx| Box::pin(async move { tx.insert_matrix_member(&r, &m).await }))
            .await?;
        Ok(())
    }

    /// Sends an event as a puppet that should be in the room. A puppet that is not (it left,
    /// or was kicked) makes the homeserver answer 403: it joins again and the event is sent
    /// once more; if it cannot join (banned), the 403 stands and is permanent.
    pub(crate) async fn send_as_member(
        &self,
        matrix_room_id: &str,
        event_type: &str,
        txn_id: &str,
        content: &Value,
        mxid: &str,
    ) -> Result<String, BridgeError> {
        match self
            .send(matrix_room_id, event_type, txn_id, content, mxid)
            .await
        {
            Err(BridgeError::Homeserver(e))
                if e.status == Some(403) && mxid != self.ids().bot() =>
            {
                tracing::info!(matrix_room_id, %mxid, error = %e, "a puppet was refused; joining the room again");
                let (r, m) = (matrix_room_id.to_string(), mxid.to_string());
                self.tables()
                    .write(move |tx| Box::pin(async move { tx.delete_matrix_member(&r, &m).await }))
                    .await?;
                self.ensure_joined(matrix_room_id, mxid).await?;
                self.send(matrix_room_id, event_type, txn_id, content, mxid)
                    .await
            }
            sent => sent,
        }
    }

    /// Weft's address as the homeserver knows it (from the registration), for permalinks.
    pub(crate) fn public_url(&self) -> String {
        self.config()
            .registration
            .url
            .clone()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string()
    }
}
