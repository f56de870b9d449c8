//! Messages, threads, reactions, mentions, search and files.

use sqlx::Row;
use sqlx::any::AnyRow;
use weft_core::{
    Attachment, Author, Id, IssueRef, Message, MessageMention, MessageView, ReactionCount,
    StoredFile,
};

use crate::rows;
use crate::{Dialect, Result, Store, StoreError, WriteTx};

/// Everything needed to store a new message.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Message id.
    pub id: Id,
    /// Room.
    pub room_id: Id,
    /// Author.
    pub author: Author,
    /// Markdown source.
    pub text: String,
    /// Rendered HTML.
    pub html: String,
    /// `/me` message.
    pub status: bool,
    /// Thread parent.
    pub parent_id: Option<Id>,
    /// When it was sent.
    pub sent: i64,
    /// Mentions (users to notify have `user_id` set).
    pub mentions: Vec<MessageMention>,
    /// Issue references.
    pub issues: Vec<IssueRef>,
    /// Links.
    pub urls: Vec<String>,
    /// Attached files.
    pub attachments: Vec<Attachment>,
    /// A caller's unique key for this message (a bridged event id): posting the same key
    /// twice stores the message once.
    pub external_ref: Option<String>,
}

/// A message's new text after an edit, with what rendering it produced.
#[derive(Debug, Clone)]
pub struct EditedText {
    /// Markdown source.
    pub text: String,
    /// Rendered HTML.
    pub html: String,
    /// Mentions.
    pub mentions: Vec<MessageMention>,
    /// Issue references.
    pub issues: Vec<IssueRef>,
    /// Links.
    pub urls: Vec<String>,
}

/// Where a page of messages is anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAnchor {
    /// The newest messages.
    Latest,
    /// Messages before this sequence number.
    Before(i64),
    /// Messages after this sequence number.
    After(i64),
    /// Messages around (and including) this sequence number.
    Around(i64),
}

/// A request for a page of a room's messages.
#[derive(Debug, Clone, Copy)]
pub struct MessagePage {
    /// Room.
    pub room_id: Id,
    /// Anchor.
    pub anchor: PageAnchor,
    /// At most this many (the caller bounds it).
    pub limit: i64,
    /// Include thread replies in the feed.
    pub include_threads: bool,
}

macro_rules! message_select {
    () => {
        message_select!("")
    };
    ($extra:literal) => {
        concat!("SELECT ", $extra, "m.seq, m.id, m.room_id, m.author_kind, m.author_id, m.text, m.html, m.status, m.parent_id, \
         m.thread_count, m.sent, m.edited_at, m.deleted, m.mentions, m.issues, m.urls, m.attachments, m.version, m.undelivered, \
         u.username AS u_username, u.display_name AS u_display_name, u.avatar_url AS u_avatar_url, \
         u.site_admin AS u_site_admin, u.created_at AS u_created_at, \
         v.kind AS v_kind, v.external_id AS v_external_id, v.display_name AS v_display_name, v.avatar_url AS v_avatar_url \
         FROM messages m \
         LEFT JOIN users u ON m.author_kind = 'user' AND u.id = m.author_id \
         LEFT JOIN virtual_users v ON m.author_kind = 'virtual' AND v.id = m.author_id ")
    };
}

fn message_view(row: &AnyRow) -> Result<MessageView> {
    let author = rows::author(row, "author_kind", "author_id")?;
    let message = Message {
        id: rows::id(row, "id")?,
        seq: row.try_get("seq")?,
        room_id: rows::id(row, "room_id")?,
        author,
        text: row.try_get("text")?,
        html: row.try_get("html")?,
        status: rows::flag(row, "status")?,
        parent_id: rows::opt_id(row, "parent_id")?,
        thread_count: row.try_get("thread_count")?,
        sent: row.try_get("sent")?,
        edited_at: row.try_get("edited_at")?,
        deleted: rows::flag(row, "deleted")?,
        mentions: rows::json(row, "mentions")?,
        issues: rows::json(row, "issues")?,
        urls: rows::json(row, "urls")?,
        attachments: rows::json(row, "attachments")?,
        version: row.try_get("version")?,
        reactions: Vec::new(),
        read_by: 0,
        undelivered: row
            .try_get::<Option<String>, _>("undelivered")?
            .and_then(|json| serde_json::from_str(&json).ok()),
    };
    Ok(MessageView {
        message,
        author: rows::joined_profile(row, author)?,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The columns a new message is inserted with, in the order [`bind_messages`] binds them.
const MESSAGE_COLUMNS: &str = "(id, room_id, author_kind, author_id, text, html, status, parent_id, sent, mentions, issues, urls, attachments, external_ref)";

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds the values of new messages, [`MESSAGE_COLUMNS`] for each.
fn bind_messages<'q>(mut query: AnyQuery<'q>, messages: &[NewMessage]) -> Result<AnyQuery<'q>> {
    for m in messages {
        query = query
            .bind(m.id.to_hex())
            .bind(m.room_id.to_hex())
            .bind(rows::author_kind(&m.author))
            .bind(m.author.id().to_hex())
            .bind(m.text.clone())
            .bind(m.html.clone())
            .bind(i64::from(m.status))
            .bind(m.parent_id.map(|p| p.to_hex()))
            .bind(m.sent)
            .bind(to_json(&m.mentions)?)
            .bind(to_json(&m.issues)?)
            .bind(to_json(&m.urls)?)
            .bind(to_json(&m.attachments)?)
            .bind(m.external_ref.clone());
    }
    Ok(query)
}

impl Store {
    /// A message by id, with its author.
    pub async fn message(&self, id: Id) -> Result<Option<MessageView>> {
        let row = sqlx::query(concat!(message_select!(), "WHERE m.id = $1"))
            .bind(id.to_hex())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(message_view).transpose()
    }

    /// Many messages by id, with their authors, in one query per chunk of ids; ids that are
    /// not (or no longer) stored are left out.
    pub async fn messages_by_ids(
        &self,
        ids: &[Id],
    ) -> Result<std::collections::HashMap<Id, MessageView>> {
        let mut found = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(rows::rows_per_statement(self.dialect) * 4) {
            let sql = format!(
                "{} WHERE m.id IN ({})",
                message_select!(),
                rows::list_placeholders(self.dialect, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.to_hex());
            }
            for row in query.fetch_all(self.pool()).await? {
                let view = message_view(&row)?;
                found.insert(view.message.id, view);
            }
        }
        Ok(found)
    }

    /// The message stored under a caller's unique key, if any.
    pub async fn message_by_external_ref(&self, external_ref: &str) -> Result<Option<MessageView>> {
        let row = sqlx::query(concat!(message_select!(), "WHERE m.external_ref = $1"))
            .bind(external_ref)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(message_view).transpose()
    }

    /// The room of a message and the unique key it was stored under (a bridge's event id, a
    /// bot's retry key), if it has one.
    pub async fn external_ref_of(&self, message_id: Id) -> Result<Option<(Id, String)>> {
        let row = sqlx::query(
            "SELECT room_id, external_ref FROM messages WHERE id = $1 AND external_ref IS NOT NULL",
        )
        .bind(message_id.to_hex())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Ok((rows::id(&r, "room_id")?, r.try_get("external_ref")?)))
            .transpose()
    }

    /// The id of the message stored under a caller's unique key, if any.
    pub async fn message_id_for_external_ref(&self, external_ref: &str) -> Result<Option<Id>> {
        let row = sqlx::query("SELECT id FROM messages WHERE external_ref = $1")
            .bind(external_ref)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| rows::id(&r, "id")).transpose()
    }

    /// The ids of the messages stored under these keys, by key; keys no message has are left
    /// out. One query per few hundred keys.
    pub async fn message_ids_for_external_refs(
        &self,
        keys: &[&str],
    ) -> Result<std::collections::HashMap<String, Id>> {
        let mut found = std::collections::HashMap::new();
        for chunk in keys.chunks(rows::rows_per_statement(self.dialect) * 4) {
            let sql = format!(
                "SELECT id, external_ref FROM messages WHERE external_ref IN ({})",
                rows::list_placeholders(self.dialect, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for key in chunk {
                query = query.bind(key.to_string());
            }
            for row in query.fetch_all(self.pool()).await? {
                found.insert(row.try_get("external_ref")?, rows::id(&row, "id")?);
            }
        }
        Ok(found)
    }

    /// A page of a room's timeline, oldest first.
    pub async fn messages(&self, page: MessagePage) -> Result<Vec<MessageView>> {
        let room = page.room_id.to_hex();
        let limit = page.limit.max(1);
        let fetch = |sql: &'static str, seq: i64, limit: i64| {
            sqlx::query(sql)
                .bind(room.clone())
                .bind(seq)
                .bind(limit)
                .fetch_all(self.pool())
        };
        let (older, newer) = if page.include_threads {
            (
                concat!(
                    message_select!(),
                    "WHERE m.room_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3"
                ),
                concat!(
                    message_select!(),
                    "WHERE m.room_id = $1 AND m.seq > $2 ORDER BY m.seq ASC LIMIT $3"
                ),
            )
        } else {
            (
                concat!(
                    message_select!(),
                    "WHERE m.room_id = $1 AND m.parent_id IS NULL AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3"
                ),
                concat!(
                    message_select!(),
                    "WHERE m.room_id = $1 AND m.parent_id IS NULL AND m.seq > $2 ORDER BY m.seq ASC LIMIT $3"
                ),
            )
        };
        let mut out = match page.anchor {
            PageAnchor::Latest => reversed(fetch(older, i64::MAX, limit).await?)?,
            PageAnchor::Before(seq) => reversed(fetch(older, seq, limit).await?)?,
            PageAnchor::After(seq) => forward(fetch(newer, seq, limit).await?)?,
            PageAnchor::Around(seq) => {
                let before = limit / 2;
                let mut list = reversed(fetch(older, seq, before.max(1)).await?)?;
                list.extend(forward(fetch(newer, seq - 1, limit - before).await?)?);
                list
            }
        };
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX).max(1));
        Ok(out)
    }

    /// The replies in a thread, oldest first.
    pub async fn thread(
        &self,
        parent_id: Id,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<MessageView>> {
        let rows = sqlx::query(concat!(
            message_select!(),
            "WHERE m.parent_id = $1 AND m.seq > $2 ORDER BY m.seq ASC LIMIT $3"
        ))
        .bind(parent_id.to_hex())
        .bind(after_seq)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        forward(rows)
    }

    /// Full-text search within a room, newest first.
    pub async fn search(
        &self,
        room_id: Id,
        q: &str,
        before_seq: i64,
        limit: i64,
    ) -> Result<Vec<MessageView>> {
        let rows = match self.dialect() {
            Dialect::Sqlite => {
                let Some(query) = fts5_query(q) else { return Ok(Vec::new()) };
                sqlx::query(concat!(
                    message_select!(),
                    "WHERE m.seq IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH $2) \
                     AND m.room_id = $1 AND m.seq < $3 AND m.deleted = 0 ORDER BY m.seq DESC LIMIT $4"
                ))
                .bind(room_id.to_hex())
                .bind(query)
                .bind(before_seq)
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
            Dialect::Postgres => {
                sqlx::query(concat!(
                    message_select!(),
                    "WHERE m.room_id = $1 AND to_tsvector('simple', m.text) @@ plainto_tsquery('simple', $2) \
                     AND m.seq < $3 AND m.deleted = 0 ORDER BY m.seq DESC LIMIT $4"
                ))
                .bind(room_id.to_hex())
                .bind(q)
                .bind(before_seq)
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
        };
        rows.iter().map(message_view).collect()
    }

    /// Reaction counts for every message of a room whose sequence number lies in
    /// `[min_seq, max_seq]`, as `(message id, counts)`; `me` marks the asker's own.
    pub async fn reactions(
        &self,
        room_id: Id,
        min_seq: i64,
        max_seq: i64,
        me: Option<Id>,
    ) -> Result<Vec<(Id, ReactionCount)>> {
        let rows = sqlx::query(
            "SELECT x.message_id, x.emoji, COUNT(*) AS n, \
             SUM(CASE WHEN x.reactor_id = $4 THEN 1 ELSE 0 END) AS mine, MIN(x.created_at) AS first \
             FROM reactions x JOIN messages m ON m.id = x.message_id \
             WHERE m.room_id = $1 AND m.seq >= $2 AND m.seq <= $3 \
             GROUP BY x.message_id, x.emoji ORDER BY first",
        )
        .bind(room_id.to_hex())
        .bind(min_seq)
        .bind(max_seq)
        .bind(me.map(|m| m.to_hex()).unwrap_or_default())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    rows::id(r, "message_id")?,
                    ReactionCount {
                        emoji: r.try_get("emoji")?,
                        count: r.try_get("n")?,
                        me: r.try_get::<i64, _>("mine")? > 0,
                    },
                ))
            })
            .collect()
    }

    /// Who reacted to a message with an emoji.
    pub async fn reactors(&self, message_id: Id, emoji: &str) -> Result<Vec<Author>> {
        let rows = sqlx::query(
            "SELECT reactor_kind, reactor_id FROM reactions WHERE message_id = $1 AND emoji = $2 ORDER BY created_at",
        )
        .bind(message_id.to_hex())
        .bind(emoji)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| rows::author(r, "reactor_kind", "reactor_id"))
            .collect()
    }

    /// A stored file's record.
    pub async fn file(&self, id: Id) -> Result<Option<StoredFile>> {
        let row = sqlx::query(
            "SELECT id, room_id, uploader_kind, uploader_id, name, content_type, size, created_at FROM files WHERE id = $1",
        )
        .bind(id.to_hex())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(StoredFile {
                id: rows::id(&r, "id")?,
                room_id: rows::id(&r, "room_id")?,
                uploader: rows::author(&r, "uploader_kind", "uploader_id")?,
                name: r.try_get("name")?,
                content_type: r.try_get("content_type")?,
                size: r.try_get("size")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Refreshes the query planner's statistics after a bulk load. PostgreSQL plans a query's
    /// first runs on each connection with the values given; with no statistics (autovacuum
    /// off, or not yet run) it guesses a room holds a handful of messages and reads all of a
    /// big room's to sort them, seconds instead of a millisecond. SQLite's planner relies on
    /// its indexes alone, so nothing is done there.
    pub async fn refresh_statistics(&self) -> Result<()> {
        if self.dialect() == Dialect::Postgres {
            sqlx::raw_sql("ANALYZE").execute(self.pool()).await?;
        }
        Ok(())
    }

    /// Number of messages in a room (for benchmarks and admin views).
    pub async fn count_messages(&self, room_id: Id) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM messages WHERE room_id = $1")
            .bind(room_id.to_hex())
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Main-feed messages per UTC day sent in `[from, to)` (milliseconds since the epoch), as
    /// `(day, count)` with `day` counted in days since 1970-01-01, oldest first. Deleted
    /// messages are not counted. For archive calendars.
    pub async fn message_days(&self, room_id: Id, from: i64, to: i64) -> Result<Vec<(i64, i64)>> {
        let rows = sqlx::query(
            "SELECT sent / 86400000 AS day, COUNT(*) AS n FROM messages \
             WHERE room_id = $1 AND sent >= $2 AND sent < $3 AND parent_id IS NULL AND deleted = 0 \
             GROUP BY sent / 86400000 ORDER BY day",
        )
        .bind(room_id.to_hex())
        .bind(from.max(0))
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>("day")?, r.try_get::<i64, _>("n")?)))
            .collect()
    }

    /// Main-feed messages sent in `[from, to)` (milliseconds) with a sequence number above
    /// `after_seq`, oldest first, at most `limit`; deleted ones left out. For archive pages.
    pub async fn messages_sent_between(
        &self,
        room_id: Id,
        from: i64,
        to: i64,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<MessageView>> {
        let rows = sqlx::query(concat!(
            message_select!(),
            "WHERE m.room_id = $1 AND m.parent_id IS NULL AND m.deleted = 0 \
             AND m.sent >= $2 AND m.sent < $3 AND m.seq > $4 ORDER BY m.seq ASC LIMIT $5"
        ))
        .bind(room_id.to_hex())
        .bind(from)
        .bind(to)
        .bind(after_seq)
        .bind(limit.max(1))
        .fetch_all(self.pool())
        .await?;
        forward(rows)
    }
}

fn reversed(rows: Vec<AnyRow>) -> Result<Vec<MessageView>> {
    rows.iter().rev().map(message_view).collect()
}

fn forward(rows: Vec<AnyRow>) -> Result<Vec<MessageView>> {
    rows.iter().map(message_view).collect()
}

/// Turns free text into an FTS5 query of quoted terms (all must match), so that user input
/// can never be a syntax error; `None` when there is nothing to search for.
fn fts5_query(q: &str) -> Option<String> {
    let terms: Vec<String> = q
        .split_whitespace()
        .map(|t| t.replace('"', ""))
        .filter(|t| !t.is_empty())
        .map(|t| format!("\"{t}\""))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

impl WriteTx {
    /// A message by id inside the transaction (to decide on edits and deletes atomically).
    pub async fn message(&mut self, id: Id) -> Result<Option<MessageView>> {
        let row = sqlx::query(concat!(message_select!(), "WHERE m.id = $1"))
            .bind(id.to_hex())
            .fetch_optional(&mut *self.conn)
            .await?;
        row.as_ref().map(message_view).transpose()
    }

    /// The messages that changes of a batch touch (reactions, edits, deletions), each with the
    /// external key it was posted under, read in one query per chunk of ids from inside the
    /// transaction (so that messages written earlier in it count); ids not stored are left
    /// out.
    pub async fn messages_to_change(
        &mut self,
        ids: &[Id],
    ) -> Result<std::collections::HashMap<Id, (Message, Option<String>)>> {
        let mut found = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(rows::rows_per_statement(self.dialect) * 4) {
            let sql = format!(
                "{} WHERE m.id IN ({})",
                message_select!("m.external_ref AS external_ref, "),
                rows::list_placeholders(self.dialect, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.to_hex());
            }
            for row in query.fetch_all(&mut *self.conn).await? {
                let external_ref: Option<String> = row.try_get("external_ref")?;
                let view = message_view(&row)?;
                found.insert(view.message.id, (view.message, external_ref));
            }
        }
        Ok(found)
    }

    /// The id of the message stored under a caller's unique key, if any, seen from inside the
    /// transaction (so that a key written earlier in the same transaction counts).
    pub async fn message_id_by_external_ref(&mut self, external_ref: &str) -> Result<Option<Id>> {
        let row = sqlx::query("SELECT id FROM messages WHERE external_ref = $1")
            .bind(external_ref)
            .fetch_optional(&mut *self.conn)
            .await?;
        row.map(|r| rows::id(&r, "id")).transpose()
    }

    /// Stores a new message (and its mention rows); returns its sequence number.
    pub async fn insert_message(&mut self, m: &NewMessage) -> Result<i64> {
        self.insert_messages(std::slice::from_ref(m))
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt(format!("message {} was not stored", m.id)))
    }

    /// Stores many new messages (and their mention rows and thread counts) with one statement
    /// per [`rows::rows_per_statement`] messages; returns their sequence numbers in order.
    pub async fn insert_messages(&mut self, messages: &[NewMessage]) -> Result<Vec<i64>> {
        let mut seqs = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(rows::rows_per_statement(self.dialect)) {
            let sql = format!(
                "INSERT INTO messages {MESSAGE_COLUMNS} VALUES {} RETURNING id, seq",
                rows::values_list(self.dialect, chunk.len(), 14)
            );
            let query = bind_messages(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk)?;
            let returned = query
                .fetch_all(&mut *self.conn)
                .await
                .map_err(StoreError::conflict_on("message"))?;
            seqs.extend(self.after_insert(chunk, &returned).await?);
        }
        Ok(seqs)
    }

    /// Stores new messages together with their log entries (`events`, in order); returns the
    /// messages' sequence numbers. On PostgreSQL a few messages and their entries go in one
    /// statement (a data-modifying `WITH`): every statement is a round trip to the server,
    /// and the single writer makes them one after another.
    pub async fn insert_messages_logged(
        &mut self,
        messages: &[NewMessage],
        events: &[(weft_core::Origin, weft_core::Event)],
    ) -> Result<Vec<i64>> {
        let per_statement = rows::rows_per_statement(self.dialect);
        let fits_one_call = !messages.is_empty()
            && !events.is_empty()
            && messages.len() <= per_statement
            && events.len() <= per_statement;
        if !fits_one_call {
            let seqs = self.insert_messages(messages).await?;
            self.append_logged(events).await?;
            return Ok(seqs);
        }
        let sql = match self.dialect {
            Dialect::Postgres => {
                let message_values = rows::values_placeholders(messages.len(), 14);
                let event_values =
                    rows::values_placeholders_from(events.len(), 5, messages.len() * 14 + 1);
                format!(
                    "WITH m AS (INSERT INTO messages {MESSAGE_COLUMNS} VALUES {message_values} RETURNING id, seq), \
                     e AS (INSERT INTO events (room_id, kind, payload, origin, at) VALUES {event_values} RETURNING seq) \
                     SELECT m.id AS id, m.seq AS seq, CAST(NULL AS BIGINT) AS event_seq FROM m \
                     UNION ALL SELECT CAST(NULL AS TEXT), CAST(NULL AS BIGINT), e.seq FROM e"
                )
            }
            // SQLite has no data-modifying `WITH`, but its driver runs the statements of one
            // call one after the other, binding values in order across them: still one
            // hand-over to the database thread instead of two.
            Dialect::Sqlite => format!(
                "INSERT INTO messages {MESSAGE_COLUMNS} VALUES {} RETURNING id, seq; \
                 INSERT INTO events (room_id, kind, payload, origin, at) VALUES {} RETURNING seq AS event_seq",
                rows::values_list(Dialect::Sqlite, messages.len(), 14),
                rows::values_list(Dialect::Sqlite, events.len(), 5),
            ),
        };
        let query = bind_messages(sqlx::query(sqlx::AssertSqlSafe(sql)), messages)?;
        let query = crate::events::bind_events(query, events)?;
        let returned = query
            .fetch_all(&mut *self.conn)
            .await
            .map_err(StoreError::conflict_on("message"))?;
        let (event_rows, message_rows): (Vec<_>, Vec<_>) = returned
            .into_iter()
            .partition(|row| matches!(row.try_get::<Option<i64>, _>("event_seq"), Ok(Some(_))));
        for row in &event_rows {
            let seq: i64 = row.try_get("event_seq")?;
            self.last_event_seq = Some(self.last_event_seq.map_or(seq, |s| s.max(seq)));
        }
        self.after_insert(messages, &message_rows).await
    }

    /// Matches inserted rows (`id`, `seq`) back to their messages, in the messages' order, and
    /// writes what goes with each: mention rows and the thread count of its parent.
    async fn after_insert(
        &mut self,
        chunk: &[NewMessage],
        returned: &[AnyRow],
    ) -> Result<Vec<i64>> {
        // RETURNING promises no order: match the rows up by id.
        let mut by_id = std::collections::HashMap::with_capacity(returned.len());
        for row in returned {
            by_id.insert(rows::id(row, "id")?, row.try_get::<i64, _>("seq")?);
        }
        let mut seqs = Vec::with_capacity(chunk.len());
        let mut mentions = Vec::new();
        // Parents in the order first replied to, with how many replies each got here.
        let mut replies: Vec<(Id, i64)> = Vec::new();
        for m in chunk {
            let seq = *by_id
                .get(&m.id)
                .ok_or_else(|| StoreError::Corrupt(format!("message {} was not stored", m.id)))?;
            mentions.extend(
                m.mentions
                    .iter()
                    .filter_map(|mention| mention.user_id)
                    .map(|user_id| (user_id, m.room_id, seq)),
            );
            if let Some(parent) = m.parent_id {
                match replies.iter_mut().find(|(p, _)| *p == parent) {
                    Some((_, n)) => *n += 1,
                    None => replies.push((parent, 1)),
                }
            }
            seqs.push(seq);
        }
        self.insert_mention_rows(&mentions).await?;
        self.add_thread_counts(&replies).await?;
        Ok(seqs)
    }

    /// Stores mention rows (`(user, room, message seq)`), a few hundred per statement.
    async fn insert_mention_rows(&mut self, mentions: &[(Id, Id, i64)]) -> Result<()> {
        for chunk in mentions.chunks(rows::rows_per_statement(self.dialect)) {
            let sql = format!(
                "INSERT INTO mentions (user_id, room_id, message_seq) VALUES {} ON CONFLICT DO NOTHING",
                rows::values_list(self.dialect, chunk.len(), 3)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (user_id, room_id, seq) in chunk {
                query = query
                    .bind(user_id.to_hex())
                    .bind(room_id.to_hex())
                    .bind(*seq);
            }
            query.execute(&mut *self.conn).await?;
        }
        Ok(())
    }

    /// Which of these external keys are already used by stored messages (including ones
    /// written earlier in this transaction).
    pub async fn taken_external_refs(
        &mut self,
        keys: &[&str],
    ) -> Result<std::collections::HashSet<String>> {
        let mut taken = std::collections::HashSet::new();
        for chunk in keys.chunks(rows::rows_per_statement(self.dialect) * 4) {
            let sql = format!(
                "SELECT external_ref FROM messages WHERE external_ref IN ({})",
                rows::list_placeholders(self.dialect, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for key in chunk {
                query = query.bind(key.to_string());
            }
            for row in query.fetch_all(&mut *self.conn).await? {
                taken.insert(row.try_get::<String, _>("external_ref")?);
            }
        }
        Ok(taken)
    }

    async fn insert_mentions(
        &mut self,
        room_id: Id,
        seq: i64,
        mentions: &[MessageMention],
    ) -> Result<()> {
        let rows: Vec<(Id, Id, i64)> = mentions
            .iter()
            .filter_map(|m| m.user_id)
            .map(|user_id| (user_id, room_id, seq))
            .collect();
        self.insert_mention_rows(&rows).await
    }

    /// Replaces a message's text after an edit.
    pub async fn update_message_text(
        &mut self,
        message: &Message,
        new: &EditedText,
        edited_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE messages SET text = $2, html = $3, mentions = $4, issues = $5, urls = $6, edited_at = $7, \
             version = version + 1 WHERE id = $1",
        )
        .bind(message.id.to_hex())
        .bind(&new.text)
        .bind(&new.html)
        .bind(to_json(&new.mentions)?)
        .bind(to_json(&new.issues)?)
        .bind(to_json(&new.urls)?)
        .bind(edited_at)
        .execute(&mut *self.conn)
        .await?;
        self.delete_mentions(message).await?;
        self.insert_mentions(message.room_id, message.seq, &new.mentions)
            .await
    }

    /// Deletes a message's mention rows, if it has any: only mentions of weft users have
    /// rows, and most messages mention nobody, so most need no statement.
    async fn delete_mentions(&mut self, message: &Message) -> Result<()> {
        if message.mentions.iter().all(|m| m.user_id.is_none()) {
            return Ok(());
        }
        sqlx::query("DELETE FROM mentions WHERE message_seq = $1")
            .bind(message.seq)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// The external key a message was posted under (a bridge's event id), if any.
    pub async fn external_ref_of(&mut self, message_id: Id) -> Result<Option<String>> {
        let row = sqlx::query("SELECT external_ref FROM messages WHERE id = $1")
            .bind(message_id.to_hex())
            .fetch_optional(&mut *self.conn)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("external_ref")?,
            None => None,
        })
    }

    /// Deletes a message. One whose thread has replies stays as an empty placeholder so the
    /// thread keeps its head; returns whether it became a placeholder.
    pub async fn delete_message(&mut self, message: &Message) -> Result<bool> {
        let id = message.id.to_hex();
        sqlx::query("DELETE FROM reactions WHERE message_id = $1")
            .bind(&id)
            .execute(&mut *self.conn)
            .await?;
        self.delete_mentions(message).await?;
        let placeholder = message.thread_count > 0;
        if placeholder {
            sqlx::query(
                "UPDATE messages SET text = '', html = '', mentions = '[]', issues = '[]', urls = '[]', attachments = '[]', \
                 deleted = 1, version = version + 1 WHERE id = $1",
            )
            .bind(&id)
            .execute(&mut *self.conn)
            .await?;
        } else {
            sqlx::query("DELETE FROM messages WHERE id = $1")
                .bind(&id)
                .execute(&mut *self.conn)
                .await?;
            if let Some(parent) = message.parent_id {
                self.add_thread_count(parent, -1).await?;
            }
        }
        Ok(placeholder)
    }

    /// Adds replies to threads (`(parent, how many)`, each parent once), in one statement per
    /// few hundred parents.
    async fn add_thread_counts(&mut self, replies: &[(Id, i64)]) -> Result<()> {
        for chunk in replies.chunks(rows::rows_per_statement(self.dialect)) {
            if let [(parent, n)] = chunk {
                self.add_thread_count(*parent, *n).await?;
                continue;
            }
            // `CASE id WHEN a THEN 2 WHEN b THEN 1 END` with the ids again in the `IN` list,
            // placeholders in the order they are bound.
            let mut next = 0;
            let mut placeholder = || {
                next += 1;
                match self.dialect {
                    Dialect::Postgres => format!("${next}"),
                    Dialect::Sqlite => "?".to_string(),
                }
            };
            let mut cases = String::new();
            for _ in chunk {
                cases.push_str(&format!(" WHEN {} THEN {}", placeholder(), placeholder()));
            }
            let ids: Vec<String> = chunk.iter().map(|_| placeholder()).collect();
            let sql = format!(
                "UPDATE messages SET thread_count = thread_count + CASE id{cases} END, version = version + 1 \
                 WHERE id IN ({})",
                ids.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (parent, n) in chunk {
                query = query.bind(parent.to_hex()).bind(*n);
            }
            for (parent, _) in chunk {
                query = query.bind(parent.to_hex());
            }
            query.execute(&mut *self.conn).await?;
        }
        Ok(())
    }

    async fn add_thread_count(&mut self, parent: Id, delta: i64) -> Result<()> {
        sqlx::query("UPDATE messages SET thread_count = thread_count + $2, version = version + 1 WHERE id = $1")
            .bind(parent.to_hex())
            .bind(delta)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Adds a reaction; false if that person already reacted with that emoji.
    pub async fn add_reaction(
        &mut self,
        message_id: Id,
        reactor: Author,
        emoji: &str,
        at: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO reactions (message_id, reactor_kind, reactor_id, emoji, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (message_id, reactor_id, emoji) DO NOTHING",
        )
        .bind(message_id.to_hex())
        .bind(rows::author_kind(&reactor))
        .bind(reactor.id().to_hex())
        .bind(emoji)
        .bind(at)
        .execute(&mut *self.conn)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes a reaction; false if there was none.
    pub async fn remove_reaction(
        &mut self,
        message_id: Id,
        reactor: Author,
        emoji: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM reactions WHERE message_id = $1 AND reactor_id = $2 AND emoji = $3",
        )
        .bind(message_id.to_hex())
        .bind(reactor.id().to_hex())
        .bind(emoji)
        .execute(&mut *self.conn)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records an uploaded file.
    pub async fn insert_file(&mut self, file: &StoredFile) -> Result<()> {
        sqlx::query(
            "INSERT INTO files (id, room_id, uploader_kind, uploader_id, name, content_type, size, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(file.id.to_hex())
        .bind(file.room_id.to_hex())
        .bind(rows::author_kind(&file.uploader))
        .bind(file.uploader.id().to_hex())
        .bind(&file.name)
        .bind(&file.content_type)
        .bind(file.size)
        .bind(file.created_at)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }
}
