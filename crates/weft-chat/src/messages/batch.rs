//! Writing prepared changes together ([`Chat::write_batch`]): what a bridge applies for one
//! transaction of another network, in one store transaction and a handful of statements.
//!
//! The order inside the write: virtual users' new names first, so that a newcomer's first
//! message already carries the name their member event gave; then every new message, in a
//! few multi-row statements; then reactions, edits and deletions, in the order given.
//! Nothing a new message needs comes from a reaction, edit or deletion, so writing the
//! messages first changes one outcome only: a reply that came after its parent's deletion
//! finds the parent still there, which then stays as a placeholder (as it would had the reply
//! come first) instead of the reply hanging from a message that is gone.
//!
//! The messages the changes touch are read in one query, after the new messages are written
//! (so a change of a message of the same batch finds it), their virtual users in one more,
//! and their log entries go in one statement at the end, in order. Each change then costs
//! the one or two statements that change rows, not the five or six of writing it alone.

use std::collections::HashMap;

use weft_core::{Attachment, Event, Id, Message, Origin, VirtualUser};
use weft_store::WriteTx;

use super::posting::{
    Change, PostAs, PreparedPost, claim_matches, create_missing_virtual_users, known_virtual_users,
};
use crate::error::from_write;
use crate::{Chat, Result};

/// What the reactions, edits and deletions of a batch read and write as they go.
pub(super) struct Touched {
    /// The messages they are about, as the batch's earlier changes left them (with the
    /// external key each was posted under); a message deleted for good is taken out.
    pub(super) messages: HashMap<Id, (Message, Option<String>)>,
    /// The virtual users they name, known or created so far.
    virtual_users: HashMap<(String, String), VirtualUser>,
    /// Their log entries, appended together once every change is written.
    pub(super) events: Vec<(Origin, Event)>,
}

impl Touched {
    /// The virtual user a change is made by: the stored one when it already carries what
    /// the bridge claims, else created or refreshed now.
    pub(super) async fn virtual_user(
        &mut self,
        tx: &mut WriteTx,
        claim: &PostAs,
        origin: &Origin,
    ) -> weft_store::Result<VirtualUser> {
        let key = (claim.kind.clone(), claim.external_id.clone());
        if let Some(known) = self.virtual_users.get(&key)
            && claim_matches(claim, known)
        {
            return Ok(known.clone());
        }
        let vu = super::posting::virtual_author(tx, claim, origin).await?;
        self.virtual_users.insert(key, vu.clone());
        Ok(vu)
    }
}

impl Chat {
    /// Writes prepared changes in one store transaction with their events (in the order
    /// described in this module's documentation), together with `extra`: the caller's own
    /// rows, written first in the same transaction (a bridge's record of the transaction it
    /// applied, of what it refused, of which of its events carried which change). When
    /// `extra` answers false nothing is written at all (the bridge found the batch applied
    /// already) and the answer is false.
    ///
    /// A post whose external key is stored already, a reaction, edit or deletion whose
    /// message went away since it was prepared: these write nothing and do not fail the
    /// batch.
    pub async fn write_batch<F>(&self, changes: Vec<Change>, extra: F) -> Result<bool>
    where
        F: for<'t> FnOnce(&'t mut WriteTx) -> weft_store::BoxFuture<'t, weft_store::Result<bool>>
            + Send
            + 'static,
    {
        let removed = attachments_removed(&changes);
        let written = self
            .store()
            .write(move |tx| {
                Box::pin(async move {
                    if !extra(tx).await? {
                        return Ok(false);
                    }
                    write_changes(tx, changes).await?;
                    Ok(true)
                })
            })
            .await
            .map_err(from_write)?;
        if written {
            self.remove_files(&removed).await;
        }
        Ok(written)
    }

    /// Writes one reaction, edit or deletion on its own; answers whether its message was
    /// there to change (a deletion already applied counts as there).
    pub(super) async fn write_change(&self, change: Change) -> Result<bool> {
        let removed = attachments_removed(std::slice::from_ref(&change));
        let applied = self
            .store()
            .write(move |tx| {
                Box::pin(async move {
                    let applied = write_changes(tx, vec![change]).await?;
                    Ok(applied.first().copied().unwrap_or(false))
                })
            })
            .await
            .map_err(from_write)?;
        if applied {
            self.remove_files(&removed).await;
        }
        Ok(applied)
    }
}

/// The files that the batch's deletions take away, removed once it is committed.
fn attachments_removed(changes: &[Change]) -> Vec<Attachment> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Deletion(d) => Some(d.attachments.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Writes a batch inside the caller's transaction; answers, for each change that is neither
/// a post nor a profile, in order, whether its message was there to change.
async fn write_changes(tx: &mut WriteTx, changes: Vec<Change>) -> weft_store::Result<Vec<bool>> {
    let mut profiles: Vec<(PostAs, Origin)> = Vec::new();
    let mut posts: Vec<PreparedPost> = Vec::new();
    let mut rest = Vec::new();
    for change in changes {
        match change {
            Change::Profile(who, origin) => profiles.push((who, origin)),
            Change::Post(post) => posts.push(post),
            other => rest.push(other),
        }
    }
    let mut touched = Touched {
        messages: HashMap::new(),
        virtual_users: HashMap::new(),
        events: Vec::new(),
    };
    if !profiles.is_empty() {
        let claims: Vec<(&str, &str)> = profiles
            .iter()
            .map(|(who, _)| (who.kind.as_str(), who.external_id.as_str()))
            .collect();
        touched.virtual_users = known_virtual_users(tx, &claims).await?;
        create_missing_virtual_users(
            tx,
            profiles.iter().map(|(who, _)| who),
            &mut touched.virtual_users,
        )
        .await?;
        for (who, origin) in &profiles {
            touched.virtual_user(tx, who, origin).await?;
        }
    }
    if !posts.is_empty() {
        Chat::write_posts(tx, posts).await?;
    }
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Id> = rest.iter().filter_map(target_of).collect();
    touched.messages = tx.messages_to_change(&ids).await?;
    let claims: Vec<(&str, &str)> = rest
        .iter()
        .filter_map(|c| match c {
            Change::Reaction(r) => r.as_virtual(),
            _ => None,
        })
        .map(|v| (v.kind.as_str(), v.external_id.as_str()))
        .collect();
    if !claims.is_empty() {
        // Posts of this batch may have created some of them: read after the posts.
        touched.virtual_users = known_virtual_users(tx, &claims).await?;
        let reactors = rest.iter().filter_map(|c| match c {
            Change::Reaction(r) => r.as_virtual(),
            _ => None,
        });
        create_missing_virtual_users(tx, reactors, &mut touched.virtual_users).await?;
    }
    let mut applied = Vec::with_capacity(rest.len());
    for change in rest {
        let done = match change {
            Change::Reaction(r) => super::reactions::write_reaction(tx, r, &mut touched).await?,
            Change::Edit(e) => super::editing::write_edit(tx, e, &mut touched).await?,
            Change::Deletion(d) => super::editing::write_deletion(tx, d, &mut touched).await?,
            Change::Post(_) | Change::Profile(..) => continue,
        };
        applied.push(done);
    }
    if !touched.events.is_empty() {
        tx.append_logged(&touched.events).await?;
    }
    Ok(applied)
}

/// The message a reaction, edit or deletion changes.
fn target_of(change: &Change) -> Option<Id> {
    match change {
        Change::Reaction(r) => Some(r.message_id()),
        Change::Edit(e) => Some(e.message_id()),
        Change::Deletion(d) => Some(d.message_id()),
        Change::Post(_) | Change::Profile(..) => None,
    }
}
