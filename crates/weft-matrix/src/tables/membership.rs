//! How bridged rooms' members cross: each room's own setting, and the progress of its
//! membership syncs (see `members`).

use sqlx::Row;
use weft_core::{Id, Millis};
use weft_store::Result;
use weft_store::extension::id_column;

use super::MatrixTables;
use crate::config::Membership;

/// Where a room's membership sync stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSync {
    /// The weft room.
    pub room_id: Id,
    /// The last weft member whose puppet is in (members are walked in id order); `None`
    /// before the first.
    pub after_user_id: Option<Id>,
    /// Weft members walked so far (joined now, or in already).
    pub walked: i64,
    /// Puppets joined so far.
    pub joined: i64,
    /// Weft members when the sync started.
    pub total: i64,
    /// When it started.
    pub started_at: Millis,
    /// When it finished; `None` while it runs or waits to (or was cut off, and is taken up
    /// again).
    pub finished_at: Option<Millis>,
    /// When someone last asked for it (`weft matrix sync-members`).
    pub requested_at: Option<Millis>,
    /// When whoever runs it last said how far it got.
    pub updated_at: Option<Millis>,
}

impl MemberSync {
    /// Whether a runner has taken it up since it was last asked for.
    pub fn taken_up(&self) -> bool {
        match (self.updated_at, self.requested_at) {
            (Some(updated), Some(requested)) => updated >= requested,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

impl MatrixTables {
    /// A room's own membership setting, if it has one.
    pub async fn membership_mode(&self, room_id: Id) -> Result<Option<Membership>> {
        let row = sqlx::query("SELECT mode FROM matrix_membership_modes WHERE room_id = $1")
            .bind(room_id.to_hex())
            .fetch_optional(self.store.reader())
            .await?;
        match row {
            Some(r) => Ok(Membership::parse(&r.try_get::<String, _>("mode")?)),
            None => Ok(None),
        }
    }

    /// Gives a room its own membership setting, or (`None`) makes it follow the default.
    pub async fn set_membership_mode(&self, room_id: Id, mode: Option<Membership>) -> Result<()> {
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM matrix_membership_modes WHERE room_id = $1")
                    .bind(room_id.to_hex())
                    .execute(tx.conn())
                    .await?;
                if let Some(mode) = mode {
                    sqlx::query(
                        "INSERT INTO matrix_membership_modes (room_id, mode) VALUES ($1, $2)",
                    )
                    .bind(room_id.to_hex())
                    .bind(mode.as_str())
                    .execute(tx.conn())
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Where a room's membership sync stands, if one ever started.
    pub async fn member_sync(&self, room_id: Id) -> Result<Option<MemberSync>> {
        let row = sqlx::query(
            "SELECT room_id, after_user_id, walked, joined, total, started_at, finished_at, requested_at, updated_at \
             FROM matrix_member_syncs WHERE room_id = $1",
        )
        .bind(room_id.to_hex())
        .fetch_optional(self.store.reader())
        .await?;
        row.map(|r| member_sync(&r)).transpose()
    }

    /// The rooms whose membership sync was cut off before it finished.
    pub async fn unfinished_member_syncs(&self) -> Result<Vec<Id>> {
        sqlx::query("SELECT room_id FROM matrix_member_syncs WHERE finished_at IS NULL")
            .fetch_all(self.store.reader())
            .await?
            .iter()
            .map(|r| id_column(r, "room_id"))
            .collect()
    }

    /// Asks for a room's membership sync: a new one (of `total` members) unless one waits or
    /// runs already, which is asked for again. Answers where it stands.
    pub async fn request_member_sync(&self, room_id: Id, total: i64) -> Result<MemberSync> {
        let now = weft_core::now_millis();
        let sync = match self.member_sync(room_id).await? {
            Some(open) if open.finished_at.is_none() => MemberSync {
                requested_at: Some(now),
                ..open
            },
            _ => MemberSync {
                room_id,
                after_user_id: None,
                walked: 0,
                joined: 0,
                total,
                started_at: now,
                finished_at: None,
                requested_at: Some(now),
                updated_at: None,
            },
        };
        self.save_member_sync(sync.clone()).await?;
        Ok(sync)
    }

    /// Records where a room's membership sync stands.
    pub async fn save_member_sync(&self, sync: MemberSync) -> Result<()> {
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO matrix_member_syncs (room_id, after_user_id, walked, joined, total, started_at, finished_at, requested_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (room_id) DO UPDATE SET \
                     after_user_id = excluded.after_user_id, walked = excluded.walked, joined = excluded.joined, total = excluded.total, \
                     started_at = excluded.started_at, finished_at = excluded.finished_at, \
                     requested_at = excluded.requested_at, updated_at = excluded.updated_at",
                )
                .bind(sync.room_id.to_hex())
                .bind(sync.after_user_id.map(|id| id.to_hex()))
                .bind(sync.walked)
                .bind(sync.joined)
                .bind(sync.total)
                .bind(sync.started_at)
                .bind(sync.finished_at)
                .bind(sync.requested_at)
                .bind(sync.updated_at)
                .execute(tx.conn())
                .await?;
                Ok(())
            })
        })
        .await
    }
}

fn member_sync(row: &sqlx::any::AnyRow) -> Result<MemberSync> {
    let after: Option<String> = row.try_get("after_user_id")?;
    Ok(MemberSync {
        room_id: id_column(row, "room_id")?,
        after_user_id: after
            .map(|hex| {
                hex.parse::<Id>()
                    .map_err(|e| weft_store::StoreError::Corrupt(format!("member sync: {e}")))
            })
            .transpose()?,
        walked: row.try_get("walked")?,
        joined: row.try_get("joined")?,
        total: row.try_get("total")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        requested_at: row.try_get("requested_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
