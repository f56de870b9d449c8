//! Turning `Any` rows into domain records. Integers are BIGINT and booleans 0/1 in both
//! databases, so these decoders serve SQLite and PostgreSQL alike.

use sqlx::Row;
use sqlx::any::AnyRow;
use weft_core::{Author, Id, Profile, RoomKind, User, VirtualUser};

use crate::{Result, StoreError};

pub(crate) fn id(row: &AnyRow, col: &str) -> Result<Id> {
    let text: String = row.try_get(col)?;
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{col} is not an id: {text}")))
}

pub(crate) fn opt_id(row: &AnyRow, col: &str) -> Result<Option<Id>> {
    let text: Option<String> = row.try_get(col)?;
    text.map(|t| {
        t.parse()
            .map_err(|_| StoreError::Corrupt(format!("{col} is not an id: {t}")))
    })
    .transpose()
}

pub(crate) fn flag(row: &AnyRow, col: &str) -> Result<bool> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn author(row: &AnyRow, kind_col: &str, id_col: &str) -> Result<Author> {
    let kind: String = row.try_get(kind_col)?;
    let id = id(row, id_col)?;
    match kind.as_str() {
        "user" => Ok(Author::User(id)),
        "virtual" => Ok(Author::Virtual(id)),
        other => Err(StoreError::Corrupt(format!("unknown author kind {other}"))),
    }
}

pub(crate) fn author_kind(author: &Author) -> &'static str {
    match author {
        Author::User(_) => "user",
        Author::Virtual(_) => "virtual",
    }
}

pub(crate) fn room_kind(row: &AnyRow, col: &str) -> Result<RoomKind> {
    let text: String = row.try_get(col)?;
    RoomKind::parse(&text).ok_or_else(|| StoreError::Corrupt(format!("unknown room kind {text}")))
}

pub(crate) fn user(row: &AnyRow) -> Result<User> {
    Ok(User {
        id: id(row, "id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        avatar_url: row.try_get("avatar_url")?,
        site_admin: flag(row, "site_admin")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(crate) fn virtual_user(row: &AnyRow) -> Result<VirtualUser> {
    Ok(VirtualUser {
        id: id(row, "id")?,
        kind: row.try_get("kind")?,
        external_id: row.try_get("external_id")?,
        display_name: row.try_get("display_name")?,
        avatar_url: row.try_get("avatar_url")?,
    })
}

/// Reads the author profile joined into a message row (`u_*` and `v_*` columns).
pub(crate) fn joined_profile(row: &AnyRow, author: Author) -> Result<Option<Profile>> {
    match author {
        Author::User(id) => {
            let Some(username) = row.try_get::<Option<String>, _>("u_username")? else {
                return Ok(None);
            };
            Ok(Some(Profile::User(User {
                id,
                username,
                display_name: row.try_get("u_display_name")?,
                avatar_url: row.try_get("u_avatar_url")?,
                site_admin: flag(row, "u_site_admin")?,
                created_at: row.try_get("u_created_at")?,
            })))
        }
        Author::Virtual(id) => {
            let Some(kind) = row.try_get::<Option<String>, _>("v_kind")? else {
                return Ok(None);
            };
            Ok(Some(Profile::Virtual(VirtualUser {
                id,
                kind,
                external_id: row.try_get("v_external_id")?,
                display_name: row.try_get("v_display_name")?,
                avatar_url: row.try_get("v_avatar_url")?,
            })))
        }
    }
}
