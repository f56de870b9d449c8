//! Communities (Gitter's groups) and their administrators.

use sqlx::Row;
use sqlx::any::AnyRow;
use weft_core::{Group, Id};

use crate::rows;
use crate::{Result, Store, StoreError, WriteTx};

fn group(row: &AnyRow) -> Result<Group> {
    Ok(Group {
        id: rows::id(row, "id")?,
        uri: row.try_get("uri")?,
        name: row.try_get("name")?,
        avatar_url: row.try_get("avatar_url")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// A community by id.
    pub async fn community(&self, id: Id) -> Result<Option<Group>> {
        let row = sqlx::query(
            "SELECT id, uri, name, avatar_url, created_at FROM communities WHERE id = $1",
        )
        .bind(id.to_hex())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(group).transpose()
    }

    /// A community by URI, ignoring case.
    pub async fn community_by_uri(&self, uri: &str) -> Result<Option<Group>> {
        let row = sqlx::query(
            "SELECT id, uri, name, avatar_url, created_at FROM communities WHERE uri_lower = $1",
        )
        .bind(uri.to_lowercase())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(group).transpose()
    }

    /// Every community, by URI.
    pub async fn communities(&self) -> Result<Vec<Group>> {
        let rows = sqlx::query(
            "SELECT id, uri, name, avatar_url, created_at FROM communities ORDER BY uri_lower",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(group).collect()
    }

    /// Communities in which the user is a member of at least one room, or an admin.
    pub async fn communities_of(&self, user_id: Id) -> Result<Vec<Group>> {
        let rows = sqlx::query(
            "SELECT id, uri, name, avatar_url, created_at FROM communities c WHERE \
             EXISTS (SELECT 1 FROM community_admins a WHERE a.community_id = c.id AND a.user_id = $1) OR \
             EXISTS (SELECT 1 FROM rooms r JOIN memberships m ON m.room_id = r.id \
                     WHERE r.community_id = c.id AND m.user_id = $1) ORDER BY uri_lower",
        )
        .bind(user_id.to_hex())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(group).collect()
    }

    /// Whether the user administers the community.
    pub async fn is_community_admin(&self, community_id: Id, user_id: Id) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM community_admins WHERE community_id = $1 AND user_id = $2",
        )
        .bind(community_id.to_hex())
        .bind(user_id.to_hex())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }
}

impl WriteTx {
    /// Adds a community with its first administrator; [`StoreError::Conflict`] if the URI is taken.
    pub async fn insert_community(&mut self, group: &Group, admin: Option<Id>) -> Result<()> {
        sqlx::query("INSERT INTO communities (id, uri, uri_lower, name, avatar_url, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(group.id.to_hex())
            .bind(&group.uri)
            .bind(group.uri.to_lowercase())
            .bind(&group.name)
            .bind(group.avatar_url.clone())
            .bind(group.created_at)
            .execute(&mut *self.conn)
            .await
            .map_err(StoreError::conflict_on("community"))?;
        if let Some(admin) = admin {
            sqlx::query("INSERT INTO community_admins (community_id, user_id) VALUES ($1, $2)")
                .bind(group.id.to_hex())
                .bind(admin.to_hex())
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(())
    }
}
