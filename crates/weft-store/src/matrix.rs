//! The Matrix bridge's own tables: which Matrix room is which weft room, which puppets exist
//! and have joined where, which Matrix event is which weft message or reaction, which
//! transactions were applied, and how far the outbound sender has read the event log.

use sqlx::Row;
use weft_core::{Id, Room};

use crate::{Fence, Result, Store, WriteTx, rows};

/// A bridged room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixRoom {
    /// The weft room.
    pub room_id: Id,
    /// Its Matrix room id.
    pub matrix_room_id: String,
    /// Its canonical alias.
    pub alias: String,
    /// Whether the Matrix room is open to weft's messages: false from the point of the log
    /// where the weft room stopped being public (or was deleted).
    pub open: bool,
}

/// Something the bridge could not carry, for operators to see (`weft matrix failures`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixFailure {
    /// The weft log entry that could not be sent (0 for an inbound Matrix event).
    pub event_seq: i64,
    /// The weft room concerned, if known.
    pub room_id: Option<Id>,
    /// What went wrong; inbound ones start with `inbound <event id>:`.
    pub error: String,
    /// When.
    pub at: weft_core::Millis,
}

/// Which way a mapped event travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by weft to Matrix.
    Outbound,
    /// Received from Matrix.
    Inbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "out",
            Direction::Inbound => "in",
        }
    }
}

impl Store {
    /// The Matrix room of a weft room, if it is bridged.
    pub async fn matrix_room(&self, room_id: Id) -> Result<Option<MatrixRoom>> {
        let row = sqlx::query(
            "SELECT room_id, matrix_room_id, alias, is_open FROM matrix_rooms WHERE room_id = $1",
        )
        .bind(room_id.to_hex())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(MatrixRoom {
                room_id: rows::id(&r, "room_id")?,
                matrix_room_id: r.try_get("matrix_room_id")?,
                alias: r.try_get("alias")?,
                open: r.try_get::<i64, _>("is_open")? != 0,
            })
        })
        .transpose()
    }

    /// The weft room bridged to a Matrix room.
    pub async fn room_for_matrix(&self, matrix_room_id: &str) -> Result<Option<Id>> {
        let row = sqlx::query("SELECT room_id FROM matrix_rooms WHERE matrix_room_id = $1")
            .bind(matrix_room_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| rows::id(&r, "room_id")).transpose()
    }

    /// The room whose `community/room` URI, with `/` as `_`, is `localpart` (alias look-up).
    /// Several rooms could spell the same alias; the oldest wins.
    pub async fn room_by_alias_localpart(&self, localpart: &str) -> Result<Option<Room>> {
        let row = sqlx::query(
            "SELECT id FROM rooms WHERE uri_lower IS NOT NULL AND REPLACE(uri_lower, '/', '_') = $1 ORDER BY created_at LIMIT 1",
        )
        .bind(localpart.to_lowercase())
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(r) => self.room(rows::id(&r, "id")?).await,
            None => Ok(None),
        }
    }

    /// Whether the puppet was registered on the homeserver, and under which display name.
    pub async fn matrix_puppet(&self, mxid: &str) -> Result<Option<Option<String>>> {
        let row = sqlx::query("SELECT display_name FROM matrix_puppets WHERE mxid = $1")
            .bind(mxid)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| Ok(r.try_get::<Option<String>, _>("display_name")?))
            .transpose()
    }

    /// The device the bridge sends as for one of its Matrix users (a puppet or the bot), if
    /// one was created.
    pub async fn matrix_device(&self, mxid: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT device_id FROM matrix_puppets WHERE mxid = $1")
            .bind(mxid)
            .fetch_optional(self.pool())
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<String>, _>("device_id"))
            .transpose()?
            .flatten())
    }

    /// Whether the puppet is known to have joined the Matrix room.
    pub async fn matrix_member(&self, matrix_room_id: &str, mxid: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM matrix_members WHERE matrix_room_id = $1 AND mxid = $2",
        )
        .bind(matrix_room_id)
        .bind(mxid)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// The Matrix event that carries a weft message (`kind` `message`) or reaction.
    pub async fn matrix_event_for(
        &self,
        weft_ref: &str,
        kind: &str,
    ) -> Result<Option<(String, String)>> {
        // A message that came from Matrix carries its event id as its external key (there is
        // no mapping row for it): see `WriteTx::insert_matrix_events`.
        let row = sqlx::query(
            "SELECT matrix_event_id, matrix_room_id FROM matrix_events WHERE weft_ref = $1 AND kind = $2 \
             UNION ALL \
             SELECT m.external_ref, r.matrix_room_id FROM messages m JOIN matrix_rooms r ON r.room_id = m.room_id \
             WHERE m.id = $1 AND $2 = 'message' AND m.external_ref LIKE '$%' \
             LIMIT 1",
        )
        .bind(weft_ref)
        .bind(kind)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Ok((r.try_get("matrix_event_id")?, r.try_get("matrix_room_id")?)))
            .transpose()
    }

    /// What weft thing a Matrix event carries: `(kind, weft_ref)`.
    pub async fn weft_ref_for(&self, matrix_event_id: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT kind, weft_ref FROM matrix_events WHERE matrix_event_id = $1 \
             UNION ALL SELECT 'message', id FROM messages WHERE external_ref = $1 \
             LIMIT 1",
        )
        .bind(matrix_event_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Ok((r.try_get("kind")?, r.try_get("weft_ref")?)))
            .transpose()
    }

    /// Whether an AS transaction was already applied.
    pub async fn matrix_transaction_seen(&self, txn_id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM matrix_transactions WHERE txn_id = $1")
            .bind(txn_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }

    /// The most recent failures the bridge recorded, newest first.
    pub async fn matrix_failures(&self, limit: i64) -> Result<Vec<MatrixFailure>> {
        let rows = sqlx::query(
            "SELECT event_seq, room_id, error, at FROM matrix_failures ORDER BY at DESC, event_seq DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let room: Option<String> = r.try_get("room_id")?;
                Ok(MatrixFailure {
                    event_seq: r.try_get("event_seq")?,
                    room_id: room.and_then(|h| h.parse().ok()),
                    error: r.try_get("error")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    /// How many failures the bridge has recorded.
    pub async fn matrix_failure_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM matrix_failures")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// How far the outbound sender has read the event log (`None` before its first run).
    pub async fn matrix_cursor(&self) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT last_seq FROM matrix_cursor WHERE id = 1")
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| Ok(r.try_get::<i64, _>("last_seq")?))
            .transpose()
    }
}

impl WriteTx {
    /// Records a bridged room; false if the weft room (or the Matrix room) was already mapped.
    pub async fn insert_matrix_room(&mut self, room: &MatrixRoom) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO matrix_rooms (room_id, matrix_room_id, alias, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(room.room_id.to_hex())
        .bind(&room.matrix_room_id)
        .bind(&room.alias)
        .bind(weft_core::now_millis())
        .execute(&mut *self.conn)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Opens or closes the Matrix side of a bridged room (see [`MatrixRoom::open`]).
    pub async fn set_matrix_room_open(&mut self, room_id: Id, open: bool) -> Result<()> {
        sqlx::query("UPDATE matrix_rooms SET is_open = $2 WHERE room_id = $1")
            .bind(room_id.to_hex())
            .bind(i64::from(open))
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Records a registered puppet and the display name it was given.
    pub async fn upsert_matrix_puppet(
        &mut self,
        mxid: &str,
        display_name: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO matrix_puppets (mxid, display_name, registered_at) VALUES ($1, $2, $3) \
             ON CONFLICT (mxid) DO UPDATE SET display_name = excluded.display_name",
        )
        .bind(mxid)
        .bind(display_name.map(str::to_string))
        .bind(weft_core::now_millis())
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    /// Records the device created for one of the bridge's Matrix users (a puppet, or the bot,
    /// which then gets a row without a display name).
    pub async fn set_matrix_device(&mut self, mxid: &str, device_id: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO matrix_puppets (mxid, display_name, registered_at, device_id) VALUES ($1, NULL, $2, $3) \
             ON CONFLICT (mxid) DO UPDATE SET device_id = excluded.device_id",
        )
        .bind(mxid)
        .bind(weft_core::now_millis())
        .bind(device_id)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    /// Records that a puppet joined a Matrix room.
    pub async fn insert_matrix_member(&mut self, matrix_room_id: &str, mxid: &str) -> Result<()> {
        sqlx::query("INSERT INTO matrix_members (matrix_room_id, mxid) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(matrix_room_id)
            .bind(mxid)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Forgets that a puppet is in a Matrix room (it left, or was kicked).
    pub async fn delete_matrix_member(&mut self, matrix_room_id: &str, mxid: &str) -> Result<()> {
        sqlx::query("DELETE FROM matrix_members WHERE matrix_room_id = $1 AND mxid = $2")
            .bind(matrix_room_id)
            .bind(mxid)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Records which weft thing a Matrix event carries; false if the event was known.
    pub async fn insert_matrix_event(
        &mut self,
        matrix_event_id: &str,
        matrix_room_id: &str,
        kind: &str,
        weft_ref: &str,
        direction: Direction,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO matrix_events (matrix_event_id, matrix_room_id, kind, weft_ref, direction) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(matrix_event_id)
        .bind(matrix_room_id)
        .bind(kind)
        .bind(weft_ref)
        .bind(direction.as_str())
        .execute(&mut *self.conn)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records what the outbound sender sent: which weft thing a Matrix event carries; false
    /// if the event was known. Fenced: fails with [`crate::StoreError::LeaseLost`], writing
    /// nothing, unless `fence` still holds its lease (checked in the same statement).
    pub async fn insert_outbound_matrix_event(
        &mut self,
        fence: &Fence,
        matrix_event_id: &str,
        matrix_room_id: &str,
        kind: &str,
        weft_ref: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO matrix_events (matrix_event_id, matrix_room_id, kind, weft_ref, direction) \
             SELECT $1, $2, $3, $4, $5 WHERE (SELECT epoch FROM leases WHERE name = $6) = $7 \
             ON CONFLICT DO NOTHING",
        )
        .bind(matrix_event_id)
        .bind(matrix_room_id)
        .bind(kind)
        .bind(weft_ref)
        .bind(Direction::Outbound.as_str())
        .bind(fence.name())
        .bind(fence.epoch())
        .execute(&mut *self.conn)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        // Nothing written: the mapping was there already, or the lease moved.
        self.check_lease(fence).await?;
        Ok(false)
    }

    /// Records many event mappings of one kind and direction, one statement per
    /// [`rows::rows_per_statement`]; mappings already recorded are left alone.
    pub async fn insert_matrix_events(
        &mut self,
        kind: &str,
        direction: Direction,
        mappings: &[(&str, &str, String)],
    ) -> Result<()> {
        for chunk in mappings.chunks(rows::rows_per_statement(self.dialect)) {
            let sql = format!(
                "INSERT INTO matrix_events (matrix_event_id, matrix_room_id, kind, weft_ref, direction) VALUES {} \
                 ON CONFLICT DO NOTHING",
                rows::values_list(self.dialect, chunk.len(), 5)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (event_id, room_id, weft_ref) in chunk {
                query = query
                    .bind(event_id.to_string())
                    .bind(room_id.to_string())
                    .bind(kind.to_string())
                    .bind(weft_ref.clone())
                    .bind(direction.as_str());
            }
            query.execute(&mut *self.conn).await?;
        }
        Ok(())
    }

    /// Records an applied AS transaction; false if it was already recorded.
    pub async fn insert_matrix_transaction(&mut self, txn_id: &str) -> Result<bool> {
        let done = sqlx::query("INSERT INTO matrix_transactions (txn_id, received_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(txn_id)
            .bind(weft_core::now_millis())
            .execute(&mut *self.conn)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Moves the outbound sender's position in the event log. Fenced: fails with
    /// [`crate::StoreError::LeaseLost`], moving nothing, unless `fence` still holds its lease
    /// (checked in the same statement).
    pub async fn set_matrix_cursor(&mut self, seq: i64, fence: &Fence) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO matrix_cursor (id, last_seq) SELECT 1, $1 WHERE (SELECT epoch FROM leases WHERE name = $2) = $3 \
             ON CONFLICT (id) DO UPDATE SET last_seq = excluded.last_seq",
        )
        .bind(seq)
        .bind(fence.name())
        .bind(fence.epoch())
        .execute(&mut *self.conn)
        .await?;
        if done.rows_affected() == 0 {
            return Err(fence.lost());
        }
        Ok(())
    }

    /// Records an event the bridge could not deliver, for operators to see, once per `key`
    /// (a Matrix event id inbound, `log:<seq>` outbound): a replayed transaction or a resend
    /// after a crash records nothing more.
    pub async fn insert_matrix_failure(
        &mut self,
        event_seq: i64,
        room_id: Option<Id>,
        key: &str,
        error: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO matrix_failures (event_seq, room_id, error, at, failure_key) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(event_seq)
        .bind(room_id.map(|r| r.to_hex()))
        .bind(error)
        .bind(weft_core::now_millis())
        .bind(key)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }
}
