//! The event log: appended inside every write transaction, read by tailers in order.

use sqlx::{AnyPool, Row};
use weft_core::{Event, LoggedEvent, Origin};

use crate::{Result, Store, StoreError, WriteTx};

pub(crate) async fn last_seq(pool: &AnyPool) -> Result<i64> {
    let row = sqlx::query("SELECT MAX(seq) AS seq FROM events")
        .fetch_one(pool)
        .await?;
    Ok(row.try_get::<Option<i64>, _>("seq")?.unwrap_or(0))
}

impl Store {
    /// Log entries after `after_seq`, oldest first, at most `limit`.
    pub async fn events_after(&self, after_seq: i64, limit: i64) -> Result<Vec<LoggedEvent>> {
        let rows = sqlx::query(
            "SELECT seq, payload, origin, at FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let payload: String = r.try_get("payload")?;
                let event: Event = serde_json::from_str(&payload)
                    .map_err(|e| StoreError::Corrupt(format!("event payload: {e}")))?;
                Ok(LoggedEvent {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    origin: Origin(r.try_get("origin")?),
                    event,
                })
            })
            .collect()
    }

    /// [`Store::events_after`] without the entries from `origin`, whose payloads are not even
    /// read; also answers the sequence number of the last entry looked at (`None` if there
    /// was none), so that a follower that ignores that origin (the Matrix sender ignores what
    /// came from Matrix) still moves past them.
    pub async fn events_after_except(
        &self,
        after_seq: i64,
        limit: i64,
        origin: &str,
    ) -> Result<(Vec<LoggedEvent>, Option<i64>)> {
        let rows = sqlx::query(
            "SELECT seq, CASE WHEN origin = $3 THEN NULL ELSE payload END AS payload, origin, at \
             FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(limit)
        .bind(origin)
        .fetch_all(self.pool())
        .await?;
        let mut last = None;
        let mut events = Vec::new();
        for r in &rows {
            let seq: i64 = r.try_get("seq")?;
            last = Some(seq);
            let Some(payload) = r.try_get::<Option<String>, _>("payload")? else {
                continue;
            };
            let event: Event = serde_json::from_str(&payload)
                .map_err(|e| StoreError::Corrupt(format!("event payload: {e}")))?;
            events.push(LoggedEvent {
                seq,
                at: r.try_get("at")?,
                origin: Origin(r.try_get("origin")?),
                event,
            });
        }
        Ok((events, last))
    }

    /// The sequence number of the newest log entry (0 when empty).
    pub async fn last_event_seq(&self) -> Result<i64> {
        last_seq(self.pool()).await
    }
}

impl WriteTx {
    /// Appends an event to the log in this transaction; returns its sequence number.
    /// Ephemeral events ([`Event::Typing`]) must not be logged.
    pub async fn append(&mut self, origin: &Origin, event: &Event) -> Result<i64> {
        let payload =
            serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let row = sqlx::query(
            "INSERT INTO events (room_id, kind, payload, origin, at) VALUES ($1, $2, $3, $4, $5) RETURNING seq",
        )
        .bind(event.room_id().map(|r| r.to_hex()))
        .bind(event.kind())
        .bind(payload)
        .bind(&origin.0)
        .bind(weft_core::now_millis())
        .fetch_one(&mut *self.conn)
        .await?;
        let seq: i64 = row.try_get("seq")?;
        self.last_event_seq = Some(seq);
        Ok(seq)
    }

    /// Appends many events to the log in this transaction, in order, with one statement per
    /// [`crate::rows::rows_per_statement`] events.
    pub async fn append_all(&mut self, origin: &Origin, events: &[Event]) -> Result<()> {
        let logged: Vec<(Origin, Event)> =
            events.iter().map(|e| (origin.clone(), e.clone())).collect();
        self.append_logged(&logged).await
    }

    /// [`WriteTx::append_all`] for events that each carry their own origin.
    pub async fn append_logged(&mut self, events: &[(Origin, Event)]) -> Result<()> {
        for chunk in events.chunks(crate::rows::rows_per_statement(self.dialect)) {
            let sql = format!(
                "INSERT INTO events (room_id, kind, payload, origin, at) VALUES {} RETURNING seq",
                crate::rows::values_list(self.dialect, chunk.len(), 5)
            );
            let query = bind_events(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk)?;
            let rows = query.fetch_all(&mut *self.conn).await?;
            for row in rows {
                let seq: i64 = row.try_get("seq")?;
                self.last_event_seq = Some(self.last_event_seq.map_or(seq, |s| s.max(seq)));
            }
        }
        Ok(())
    }
}

/// Binds log entries: room, kind, payload, origin and time for each.
pub(crate) fn bind_events<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    events: &[(Origin, Event)],
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>> {
    let at = weft_core::now_millis();
    for (origin, event) in events {
        let payload =
            serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        query = query
            .bind(event.room_id().map(|r| r.to_hex()))
            .bind(event.kind())
            .bind(payload)
            .bind(origin.0.clone())
            .bind(at);
    }
    Ok(query)
}
