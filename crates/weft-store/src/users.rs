//! Users, virtual users and access tokens.

use sqlx::Row;
use weft_core::{Id, Token, User, VirtualUser};

use crate::rows;
use crate::{Result, Store, StoreError, WriteTx};

impl Store {
    /// A user by id.
    pub async fn user(&self, id: Id) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT id, username, display_name, avatar_url, site_admin, created_at FROM users WHERE id = $1",
        )
        .bind(id.to_hex())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(rows::user).transpose()
    }

    /// Users by id, in no particular order; missing ones are left out.
    pub async fn users_by_ids(&self, ids: &[Id]) -> Result<Vec<User>> {
        let mut users = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(rows::rows_per_statement(self.dialect()) * 4) {
            let sql = format!(
                "SELECT id, username, display_name, avatar_url, site_admin, created_at FROM users WHERE id IN ({})",
                rows::list_placeholders(self.dialect(), chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.to_hex());
            }
            for row in query.fetch_all(self.pool()).await? {
                users.push(rows::user(&row)?);
            }
        }
        Ok(users)
    }

    /// A user by username, ignoring case.
    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT id, username, display_name, avatar_url, site_admin, created_at FROM users WHERE username_lower = $1",
        )
        .bind(username.to_lowercase())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(rows::user).transpose()
    }

    /// A user with their password hash, for signing in.
    pub async fn user_with_password(
        &self,
        username: &str,
    ) -> Result<Option<(User, Option<String>)>> {
        let row = sqlx::query(
            "SELECT id, username, display_name, avatar_url, site_admin, created_at, password_hash \
             FROM users WHERE username_lower = $1",
        )
        .bind(username.to_lowercase())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Ok((rows::user(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    /// The token whose secret hashes to `secret_hash`, with its owner.
    pub async fn token_by_hash(&self, secret_hash: &str) -> Result<Option<(Token, User)>> {
        let row = sqlx::query(
            "SELECT t.id AS t_id, t.name AS t_name, t.bridge AS t_bridge, t.created_at AS t_created_at, \
             u.id, u.username, u.display_name, u.avatar_url, u.site_admin, u.created_at \
             FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.secret_hash = $1",
        )
        .bind(secret_hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let user = rows::user(&row)?;
        let token = Token {
            id: rows::id(&row, "t_id")?,
            user_id: user.id,
            name: row.try_get("t_name")?,
            bridge: rows::flag(&row, "t_bridge")?,
            created_at: row.try_get("t_created_at")?,
        };
        Ok(Some((token, user)))
    }

    /// A user's tokens, newest first.
    pub async fn tokens_of(&self, user_id: Id) -> Result<Vec<Token>> {
        let rows = sqlx::query(
            "SELECT id, user_id, name, bridge, created_at FROM tokens WHERE user_id = $1 ORDER BY created_at DESC",
        )
        .bind(user_id.to_hex())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Token {
                    id: rows::id(r, "id")?,
                    user_id: rows::id(r, "user_id")?,
                    name: r.try_get("name")?,
                    bridge: rows::flag(r, "bridge")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// A virtual user by network and external id (a Matrix ID), if weft has met them.
    pub async fn virtual_user_by_external_id(
        &self,
        kind: &str,
        external_id: &str,
    ) -> Result<Option<VirtualUser>> {
        let row = sqlx::query(
            "SELECT id, kind, external_id, display_name, avatar_url FROM virtual_users WHERE kind = $1 AND external_id = $2",
        )
        .bind(kind)
        .bind(external_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(rows::virtual_user).transpose()
    }

    /// A virtual user by id.
    pub async fn virtual_user(&self, id: Id) -> Result<Option<VirtualUser>> {
        let row = sqlx::query(
            "SELECT id, kind, external_id, display_name, avatar_url FROM virtual_users WHERE id = $1",
        )
        .bind(id.to_hex())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(rows::virtual_user).transpose()
    }

    /// Users whose username or display name starts with `prefix` (for mention typeahead).
    pub async fn search_users(&self, prefix: &str, limit: i64) -> Result<Vec<User>> {
        let pattern = rows::prefix_pattern(prefix);
        let rows = sqlx::query(
            "SELECT id, username, display_name, avatar_url, site_admin, created_at FROM users \
             WHERE username_lower LIKE $1 OR LOWER(display_name) LIKE $1 ORDER BY username_lower LIMIT $2",
        )
        .bind(pattern)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::user).collect()
    }

    /// A page of users whose username or display name contains `q`, ignoring case: those
    /// whose username or display name starts with it first, then by username (user search).
    pub async fn find_users(&self, q: &str, limit: i64, skip: i64) -> Result<Vec<User>> {
        // `%`, `_` and `\` in the term match themselves (usernames may contain `_`).
        let term: String = q
            .trim()
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let rows = sqlx::query(
            "SELECT id, username, display_name, avatar_url, site_admin, created_at FROM users \
             WHERE username_lower LIKE $1 ESCAPE '\\' OR LOWER(display_name) LIKE $1 ESCAPE '\\' \
             ORDER BY CASE WHEN username_lower LIKE $2 ESCAPE '\\' \
             OR LOWER(display_name) LIKE $2 ESCAPE '\\' THEN 0 ELSE 1 END, \
             username_lower LIMIT $3 OFFSET $4",
        )
        .bind(format!("%{term}%"))
        .bind(format!("{term}%"))
        .bind(limit)
        .bind(skip)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::user).collect()
    }
}

impl WriteTx {
    /// Adds a user; [`StoreError::Conflict`] if the username is taken.
    pub async fn insert_user(&mut self, user: &User, password_hash: Option<&str>) -> Result<()> {
        sqlx::query(
            "INSERT INTO users (id, username, username_lower, display_name, avatar_url, site_admin, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(user.id.to_hex())
        .bind(&user.username)
        .bind(user.username.to_lowercase())
        .bind(&user.display_name)
        .bind(user.avatar_url.clone())
        .bind(i64::from(user.site_admin))
        .bind(password_hash.map(str::to_string))
        .bind(user.created_at)
        .execute(&mut *self.conn)
        .await
        .map_err(StoreError::conflict_on("username"))?;
        Ok(())
    }

    /// Changes a user's display name and avatar.
    pub async fn update_user_profile(&mut self, user: &User) -> Result<()> {
        sqlx::query("UPDATE users SET display_name = $2, avatar_url = $3 WHERE id = $1")
            .bind(user.id.to_hex())
            .bind(&user.display_name)
            .bind(user.avatar_url.clone())
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Sets a user's password hash.
    pub async fn set_password_hash(&mut self, user_id: Id, hash: &str) -> Result<()> {
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user_id.to_hex())
            .bind(hash)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Stores a token record with the hash of its secret.
    pub async fn insert_token(&mut self, token: &Token, secret_hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (id, user_id, name, secret_hash, bridge, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token.id.to_hex())
        .bind(token.user_id.to_hex())
        .bind(&token.name)
        .bind(secret_hash)
        .bind(i64::from(token.bridge))
        .bind(token.created_at)
        .execute(&mut *self.conn)
        .await
        .map_err(StoreError::conflict_on("token"))?;
        Ok(())
    }

    /// Revokes one of a user's tokens; false if they have no such token.
    pub async fn delete_token(&mut self, user_id: Id, token_id: Id) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tokens WHERE id = $1 AND user_id = $2")
            .bind(token_id.to_hex())
            .bind(user_id.to_hex())
            .execute(&mut *self.conn)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The stored virtual users of one network among these external ids, by external id.
    pub async fn virtual_users(
        &mut self,
        kind: &str,
        external_ids: &[&str],
    ) -> Result<std::collections::HashMap<String, VirtualUser>> {
        let mut found = std::collections::HashMap::new();
        for chunk in external_ids.chunks(rows::rows_per_statement(self.dialect) * 4) {
            // The kind and the list as one list of placeholders, bound in this order.
            let placeholders = rows::list_placeholders(self.dialect, chunk.len() + 1);
            let (kind_placeholder, ids) = placeholders
                .split_once(", ")
                .unwrap_or((placeholders.as_str(), ""));
            let sql = format!(
                "SELECT id, kind, external_id, display_name, avatar_url FROM virtual_users WHERE kind = {kind_placeholder} AND external_id IN ({ids})",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(kind.to_string());
            for id in chunk {
                query = query.bind(id.to_string());
            }
            for row in query.fetch_all(&mut *self.conn).await? {
                let vu = rows::virtual_user(&row)?;
                found.insert(vu.external_id.clone(), vu);
            }
        }
        Ok(found)
    }

    /// Stores new virtual users, a few hundred per statement: the caller found them missing
    /// in this transaction ([`WriteTx::virtual_users`]) and names each once.
    pub async fn insert_virtual_users(&mut self, users: &[VirtualUser]) -> Result<()> {
        for chunk in users.chunks(rows::rows_per_statement(self.dialect)) {
            let sql = format!(
                "INSERT INTO virtual_users (id, kind, external_id, display_name, avatar_url) VALUES {}",
                rows::values_list(self.dialect, chunk.len(), 5)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for vu in chunk {
                query = query
                    .bind(vu.id.to_hex())
                    .bind(vu.kind.clone())
                    .bind(vu.external_id.clone())
                    .bind(vu.display_name.clone())
                    .bind(vu.avatar_url.clone());
            }
            query
                .execute(&mut *self.conn)
                .await
                .map_err(StoreError::conflict_on("virtual user"))?;
        }
        Ok(())
    }

    /// Creates or refreshes the virtual user for `(kind, external_id)` and returns it with
    /// what changed. Without a display name, a known name is kept (and a new virtual user is
    /// named after its external id); without an avatar, a known one is kept, and an empty
    /// avatar URL removes it.
    pub async fn upsert_virtual_user(
        &mut self,
        kind: &str,
        external_id: &str,
        display_name: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<(VirtualUser, Upserted)> {
        let existing = sqlx::query(
            "SELECT id, kind, external_id, display_name, avatar_url FROM virtual_users WHERE kind = $1 AND external_id = $2",
        )
        .bind(kind)
        .bind(external_id)
        .fetch_optional(&mut *self.conn)
        .await?;
        if let Some(row) = existing {
            let mut current = rows::virtual_user(&row)?;
            let name = display_name.unwrap_or(&current.display_name).to_string();
            let avatar = match avatar_url {
                Some("") => None,
                Some(url) => Some(url.to_string()),
                None => current.avatar_url.clone(),
            };
            if current.display_name == name && current.avatar_url == avatar {
                return Ok((current, Upserted::Unchanged));
            }
            sqlx::query(
                "UPDATE virtual_users SET display_name = $2, avatar_url = $3 WHERE id = $1",
            )
            .bind(current.id.to_hex())
            .bind(&name)
            .bind(avatar.clone())
            .execute(&mut *self.conn)
            .await?;
            current.display_name = name;
            current.avatar_url = avatar;
            return Ok((current, Upserted::Updated));
        }
        let created = VirtualUser {
            id: Id::generate(),
            kind: kind.to_string(),
            external_id: external_id.to_string(),
            display_name: display_name.unwrap_or(external_id).to_string(),
            avatar_url: avatar_url.filter(|url| !url.is_empty()).map(str::to_string),
        };
        sqlx::query(
            "INSERT INTO virtual_users (id, kind, external_id, display_name, avatar_url) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(created.id.to_hex())
        .bind(kind)
        .bind(external_id)
        .bind(&created.display_name)
        .bind(created.avatar_url.clone())
        .execute(&mut *self.conn)
        .await?;
        Ok((created, Upserted::Created))
    }
}

/// What [`WriteTx::upsert_virtual_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// The virtual user was stored already, as claimed.
    Unchanged,
    /// A new virtual user.
    Created,
    /// A known virtual user with a new name or avatar.
    Updated,
}
