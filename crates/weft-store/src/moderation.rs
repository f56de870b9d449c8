//! Bans of people from other networks (virtual users), the ban list with who banned whom and
//! why, and the marks bridges leave on messages they could not carry.

use std::collections::{HashMap, HashSet};

use sqlx::Row;
use weft_core::{Id, Millis, Profile, Undelivered};

use crate::{Result, Store, WriteTx, rows};

/// One entry of a room's ban list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// Who is banned: a weft user or a virtual user.
    pub who: Profile,
    /// The moderator who banned them, if known (none for bans made by a bridge).
    pub banned_by: Option<Id>,
    /// When.
    pub banned_at: Millis,
    /// Why, as the moderator said.
    pub reason: Option<String>,
}

impl Store {
    /// Every virtual user banned from a room: external ids by kind.
    pub(crate) async fn load_virtual_bans(
        &self,
        room_id: Id,
    ) -> Result<HashMap<String, HashSet<String>>> {
        let rows = sqlx::query(
            "SELECT v.kind, v.external_id FROM virtual_bans b JOIN virtual_users v ON v.id = b.virtual_user_id \
             WHERE b.room_id = $1",
        )
        .bind(room_id.to_hex())
        .fetch_all(self.pool())
        .await?;
        let mut bans: HashMap<String, HashSet<String>> = HashMap::new();
        for r in &rows {
            bans.entry(r.try_get("kind")?)
                .or_default()
                .insert(r.try_get("external_id")?);
        }
        Ok(bans)
    }

    /// A room's bans, weft users and virtual users alike, newest first.
    pub async fn bans(&self, room_id: Id) -> Result<Vec<Ban>> {
        let users = sqlx::query(
            "SELECT u.id, u.username, u.display_name, u.avatar_url, u.site_admin, u.created_at, \
             b.banned_at, b.banned_by, b.reason FROM bans b JOIN users u ON u.id = b.user_id \
             WHERE b.room_id = $1",
        )
        .bind(room_id.to_hex())
        .fetch_all(self.pool())
        .await?;
        let virtuals = sqlx::query(
            "SELECT v.id, v.kind, v.external_id, v.display_name, v.avatar_url, \
             b.banned_at, b.banned_by, b.reason FROM virtual_bans b \
             JOIN virtual_users v ON v.id = b.virtual_user_id WHERE b.room_id = $1",
        )
        .bind(room_id.to_hex())
        .fetch_all(self.pool())
        .await?;
        let mut bans = Vec::with_capacity(users.len() + virtuals.len());
        for row in &users {
            bans.push(ban(row, Profile::User(rows::user(row)?))?);
        }
        for row in &virtuals {
            bans.push(ban(row, Profile::Virtual(rows::virtual_user(row)?))?);
        }
        bans.sort_by_key(|b| std::cmp::Reverse(b.banned_at));
        Ok(bans)
    }
}

fn ban(row: &sqlx::any::AnyRow, who: Profile) -> Result<Ban> {
    Ok(Ban {
        who,
        banned_by: rows::opt_id(row, "banned_by")?,
        banned_at: row.try_get("banned_at")?,
        reason: row.try_get("reason")?,
    })
}

impl WriteTx {
    /// Bans a virtual user from a room; false if they were banned already.
    pub async fn insert_virtual_ban(
        &mut self,
        room_id: Id,
        virtual_id: Id,
        by: Option<Id>,
        reason: Option<&str>,
    ) -> Result<bool> {
        self.access_changed = true;
        let done = sqlx::query(
            "INSERT INTO virtual_bans (room_id, virtual_user_id, banned_at, banned_by, reason) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id, virtual_user_id) DO NOTHING",
        )
        .bind(room_id.to_hex())
        .bind(virtual_id.to_hex())
        .bind(weft_core::now_millis())
        .bind(by.map(|b| b.to_hex()))
        .bind(reason.map(str::to_string))
        .execute(&mut *self.conn)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Lifts a virtual user's ban; false if there was none.
    pub async fn delete_virtual_ban(&mut self, room_id: Id, virtual_id: Id) -> Result<bool> {
        self.access_changed = true;
        let done =
            sqlx::query("DELETE FROM virtual_bans WHERE room_id = $1 AND virtual_user_id = $2")
                .bind(room_id.to_hex())
                .bind(virtual_id.to_hex())
                .execute(&mut *self.conn)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Which of these virtual users (`(kind, external_id)`) are banned from which rooms,
    /// inside the write: a ban committed after a post was prepared still stops it.
    pub async fn virtual_bans_among(
        &mut self,
        claims: &[(Id, &str, &str)],
    ) -> Result<Vec<(Id, String, String)>> {
        let mut banned = Vec::new();
        for chunk in claims.chunks(rows::rows_per_statement(self.dialect).min(100)) {
            let mut sql = String::from(
                "SELECT b.room_id, v.kind, v.external_id FROM virtual_bans b \
                 JOIN virtual_users v ON v.id = b.virtual_user_id WHERE ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(" OR ");
                }
                let (r, k, e) = match self.dialect {
                    crate::Dialect::Sqlite => ("?".to_string(), "?".to_string(), "?".to_string()),
                    crate::Dialect::Postgres => (
                        format!("${}", 3 * i + 1),
                        format!("${}", 3 * i + 2),
                        format!("${}", 3 * i + 3),
                    ),
                };
                sql.push_str(&format!(
                    "(b.room_id = {r} AND v.kind = {k} AND v.external_id = {e})"
                ));
            }
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (room_id, kind, external_id) in chunk {
                query = query
                    .bind(room_id.to_hex())
                    .bind(kind.to_string())
                    .bind(external_id.to_string());
            }
            for row in query.fetch_all(&mut *self.conn).await? {
                banned.push((
                    rows::id(&row, "room_id")?,
                    row.try_get("kind")?,
                    row.try_get("external_id")?,
                ));
            }
        }
        Ok(banned)
    }

    /// Marks a message as one a bridge could not carry; false if there is no such message.
    pub async fn set_undelivered(&mut self, message_id: Id, mark: &Undelivered) -> Result<bool> {
        let json = serde_json::to_string(mark)
            .map_err(|e| crate::StoreError::Corrupt(format!("undelivered mark: {e}")))?;
        let done = sqlx::query(
            "UPDATE messages SET undelivered = $2, version = version + 1 WHERE id = $1",
        )
        .bind(message_id.to_hex())
        .bind(json)
        .execute(&mut *self.conn)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
