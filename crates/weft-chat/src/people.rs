//! Finding people: user search, and who has read a message.

use weft_core::{Id, Profile, User};

use crate::{Actor, Chat, ChatError, Result};

/// The most users one page of a people listing holds.
pub const PEOPLE_PAGE_MAX: i64 = 100;

impl Chat {
    /// Users whose username or display name contains `q` (ignoring case), those starting with
    /// it first. Signed-in callers only; `limit` is capped at [`PEOPLE_PAGE_MAX`].
    pub async fn find_users(
        &self,
        actor: &Actor,
        q: &str,
        limit: i64,
        skip: i64,
    ) -> Result<Vec<User>> {
        actor.require_user()?;
        if q.trim().is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .store()
            .find_users(q, limit.clamp(1, PEOPLE_PAGE_MAX), skip.max(0))
            .await?)
    }

    /// The people who have read a message (their read mark is at or after it): members,
    /// and people of other networks whose read receipts a bridge recorded
    /// ([`Chat::mark_read_as`]); exactly those its `readBy` count counts. Whoever may read
    /// the room may ask.
    pub async fn readers(
        &self,
        actor: &Actor,
        room_id: Id,
        message_id: Id,
        limit: i64,
        skip: i64,
    ) -> Result<Vec<Profile>> {
        self.room(actor, room_id).await?;
        let view = self
            .store()
            .message(message_id)
            .await?
            .filter(|v| v.message.room_id == room_id)
            .ok_or(ChatError::NotFound("message"))?;
        Ok(self
            .store()
            .readers(
                room_id,
                view.message.seq,
                limit.clamp(1, PEOPLE_PAGE_MAX),
                skip.max(0),
            )
            .await?)
    }
}
