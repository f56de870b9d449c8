//! Turning `Any` rows into domain records. Integers are BIGINT and booleans 0/1 in both
//! databases, so these decoders serve SQLite and PostgreSQL alike.

use sqlx::Row;
use sqlx::any::AnyRow;
use weft_core::{Author, Id, Profile, RoomKind, User, VirtualUser};

use crate::{Dialect, Result, StoreError};

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

/// `($1, $2, …), ($k, …), …`: the placeholders of a multi-row `VALUES` list of `rows` rows
/// of `columns` columns, numbered from `$1`. On SQLite see [`values_list`].
pub(crate) fn values_placeholders(rows: usize, columns: usize) -> String {
    values_placeholders_from(rows, columns, 1)
}

/// [`values_placeholders`], numbered from `$first` (for a second list in the same statement).
pub(crate) fn values_placeholders_from(rows: usize, columns: usize, first: usize) -> String {
    let mut next = first;
    values_with(rows, columns, |out| {
        out.push('$');
        out.push_str(&next.to_string());
        next += 1;
    })
}

/// The placeholders of a multi-row `VALUES` list for `dialect`, for a statement whose only
/// parameters are these values, bound in order.
///
/// SQLite gets anonymous `?`: it looks a numbered parameter's name up by a linear scan, and
/// the driver asks for every parameter's name when it binds, so binding `$n` placeholders
/// costs the square of their number, while binding `?` costs nothing extra.
pub(crate) fn values_list(dialect: Dialect, rows: usize, columns: usize) -> String {
    match dialect {
        Dialect::Postgres => values_placeholders(rows, columns),
        Dialect::Sqlite => values_with(rows, columns, |out| out.push('?')),
    }
}

fn values_with(rows: usize, columns: usize, mut placeholder: impl FnMut(&mut String)) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..columns {
            if c > 0 {
                out.push_str(", ");
            }
            placeholder(&mut out);
        }
        out.push(')');
    }
    out
}

/// `$1, $2, …, $n` (`?, ?, …` on SQLite, as in [`values_list`]): the placeholders of an `IN`
/// list in a statement whose only parameters are the list's, bound in order.
/// A `LIKE` pattern matching what starts with `prefix` in lower case; the pattern's own
/// wildcards and escape are dropped from the prefix, so a search cannot widen itself.
pub(crate) fn prefix_pattern(prefix: &str) -> String {
    format!("{}%", prefix.to_lowercase().replace(['%', '_', '\\'], ""))
}

pub(crate) fn list_placeholders(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Postgres => (1..=n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", "),
        Dialect::Sqlite => vec!["?"; n].join(", "),
    }
}

/// Rows per multi-row statement. Well under both databases' limits on bound values (SQLite's
/// is 32,766, PostgreSQL's 65,535): up to this many posts and their log entries fit one
/// statement on PostgreSQL.
pub(crate) fn rows_per_statement(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Postgres => 64,
        Dialect::Sqlite => 128,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_every_value() {
        assert_eq!(values_placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(list_placeholders(Dialect::Postgres, 3), "$1, $2, $3");
        assert_eq!(list_placeholders(Dialect::Sqlite, 3), "?, ?, ?");
        assert_eq!(values_list(Dialect::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(values_list(Dialect::Postgres, 1, 2), "($1, $2)");
        assert_eq!(values_placeholders_from(1, 2, 7), "($7, $8)");
    }
}
