//! Reading messages: one, a page of a room's timeline (before, after or around a message,
//! or matching a search), a thread; each decorated with its reactions and read count.

use weft_core::{Id, MessageView};
use weft_store::{MessagePage, PageAnchor};

use crate::{Actor, Chat, ChatError, Result};

/// What to read from a room's timeline.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    /// At most this many (1–100; default 50).
    pub limit: Option<i64>,
    /// Older than this message.
    pub before_id: Option<Id>,
    /// Newer than this message.
    pub after_id: Option<Id>,
    /// Around this message.
    pub around_id: Option<Id>,
    /// Full-text search.
    pub q: Option<String>,
    /// Include thread replies in the feed.
    pub include_threads: bool,
}

impl Chat {
    /// One message, with reactions and read count.
    pub async fn message(&self, actor: &Actor, room_id: Id, message_id: Id) -> Result<MessageView> {
        self.room(actor, room_id).await?;
        let view = self
            .store()
            .message(message_id)
            .await?
            .ok_or(ChatError::NotFound("message"))?;
        if view.message.room_id != room_id {
            return Err(ChatError::NotFound("message"));
        }
        let mut views = vec![view];
        self.decorate(actor, room_id, &mut views).await?;
        views.pop().ok_or(ChatError::NotFound("message"))
    }

    /// Fills reactions (with the actor's own marked) and read counts into loaded messages.
    async fn decorate(&self, actor: &Actor, room_id: Id, views: &mut [MessageView]) -> Result<()> {
        let (Some(min), Some(max)) = (
            views.iter().map(|v| v.message.seq).min(),
            views.iter().map(|v| v.message.seq).max(),
        ) else {
            return Ok(());
        };
        let me = actor.user.as_ref().map(|u| u.id);
        for (message_id, count) in self.store().reactions(room_id, min, max, me).await? {
            if let Some(v) = views.iter_mut().find(|v| v.message.id == message_id) {
                v.message.reactions.push(count);
            }
        }
        let seqs: Vec<i64> = views.iter().map(|v| v.message.seq).collect();
        for (v, n) in views
            .iter_mut()
            .zip(self.store().read_by(room_id, &seqs).await?)
        {
            v.message.read_by = n;
        }
        Ok(())
    }

    /// A page of a room's messages (oldest first), or search results (newest first).
    pub async fn messages(
        &self,
        actor: &Actor,
        room_id: Id,
        query: MessageQuery,
    ) -> Result<Vec<MessageView>> {
        self.room(actor, room_id).await?;
        let limit = query.limit.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(ChatError::Invalid("limit must be between 1 and 100".into()));
        }
        let anchor_seq = |id: Id| async move {
            let view = self
                .store()
                .message(id)
                .await?
                .ok_or(ChatError::NotFound("message"))?;
            if view.message.room_id != room_id {
                return Err(ChatError::NotFound("message"));
            }
            Ok::<i64, ChatError>(view.message.seq)
        };
        let mut views = if let Some(q) = query.q.as_deref().filter(|q| !q.trim().is_empty()) {
            let before = match query.before_id {
                Some(id) => anchor_seq(id).await?,
                None => i64::MAX,
            };
            self.store().search(room_id, q, before, limit).await?
        } else {
            let anchor = match (query.before_id, query.after_id, query.around_id) {
                (Some(id), _, _) => PageAnchor::Before(anchor_seq(id).await?),
                (None, Some(id), _) => PageAnchor::After(anchor_seq(id).await?),
                (None, None, Some(id)) => PageAnchor::Around(anchor_seq(id).await?),
                (None, None, None) => PageAnchor::Latest,
            };
            self.store()
                .messages(MessagePage {
                    room_id,
                    anchor,
                    limit,
                    include_threads: query.include_threads,
                })
                .await?
        };
        self.decorate(actor, room_id, &mut views).await?;
        Ok(views)
    }

    /// The replies in a thread, oldest first.
    pub async fn thread(
        &self,
        actor: &Actor,
        room_id: Id,
        parent_id: Id,
        limit: i64,
    ) -> Result<Vec<MessageView>> {
        let parent = self.message(actor, room_id, parent_id).await?;
        let mut replies = self
            .store()
            .thread(parent.message.id, 0, limit.clamp(1, 1000))
            .await?;
        self.decorate(actor, room_id, &mut replies).await?;
        Ok(replies)
    }
}
