//! The bridge's own tables in weft's database, their migrations and their queries: which
//! Matrix room is which weft room, which puppets exist and where they joined, which Matrix
//! event carries which weft thing ([`Carried`]), which transactions were applied, how far the
//! outbound sender has read the log, and what the bridge could not carry.
//!
//! The store knows nothing of these; the bridge keeps them through the store's extension kit
//! ([`weft_store::extension`]), in the same write transactions as the chat's changes. Chat
//! data (messages, rooms, users) the bridge reads through the chat, never here.

use ruma::OwnedEventId;
use sqlx::Row;
use weft_core::{Id, Millis};
use weft_store::extension::{Migrator, id_column};
use weft_store::{Dialect, Fence, Result, Store, StoreError, WriteTx};

/// The bridge's migrations; see the store's `migrations/README.md` for the version ranges.
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

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

fn matrix_room(r: &sqlx::any::AnyRow) -> Result<MatrixRoom> {
    Ok(MatrixRoom {
        room_id: id_column(r, "room_id")?,
        matrix_room_id: r.try_get("matrix_room_id")?,
        alias: r.try_get("alias")?,
        open: r.try_get::<i64, _>("is_open")? != 0,
    })
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
    pub at: Millis,
}

/// Which way a mapped event travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
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

/// The weft thing a Matrix event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carried {
    /// A message: sent by weft, or received from Matrix (then its external key is the event
    /// id, and no mapping row is written for it).
    Message(Id),
    /// A Matrix edit (`m.replace`) applied to a weft message.
    Edit(Id),
    /// A reaction to a message. `by` is the weft user whose reaction weft sent; reactions
    /// received from Matrix are known by message and key alone.
    Reaction {
        /// The message reacted to.
        message: Id,
        /// The reaction's key (an emoji, or any text a Matrix client sent).
        key: String,
        /// The weft user who reacted, for reactions weft sent.
        by: Option<Id>,
    },
}

impl Carried {
    /// The `(kind, weft_ref)` columns it is stored as.
    fn columns(&self) -> (&'static str, String) {
        match self {
            Carried::Message(id) => ("message", id.to_hex()),
            Carried::Edit(id) => ("edit", id.to_hex()),
            Carried::Reaction {
                message,
                key,
                by: Some(by),
            } => ("reaction", format!("{message} {key} {by}")),
            Carried::Reaction {
                message,
                key,
                by: None,
            } => ("reaction", format!("{message} {key}")),
        }
    }

    /// Reads the stored columns back. An outbound reaction's reference ends with its
    /// reactor; an inbound one's key may hold spaces, so the direction says which it is.
    fn from_columns(kind: &str, weft_ref: &str, direction: &str) -> Result<Carried> {
        let id = |text: &str| {
            text.parse::<Id>()
                .map_err(|_| StoreError::Corrupt(format!("bad weft_ref {weft_ref:?}")))
        };
        match kind {
            "message" => Ok(Carried::Message(id(weft_ref)?)),
            "edit" => Ok(Carried::Edit(id(weft_ref)?)),
            "reaction" => {
                let (message, rest) = weft_ref.split_once(' ').unwrap_or((weft_ref, ""));
                let message = id(message)?;
                if direction == Direction::Outbound.as_str()
                    && let Some((key, by)) = rest.rsplit_once(' ')
                {
                    return Ok(Carried::Reaction {
                        message,
                        key: key.to_string(),
                        by: Some(id(by)?),
                    });
                }
                Ok(Carried::Reaction {
                    message,
                    key: rest.to_string(),
                    by: None,
                })
            }
            other => Err(StoreError::Corrupt(format!("unknown mapping kind {other}"))),
        }
    }

    /// The weft message this is, or changed: a message or an edit of one.
    pub fn message(&self) -> Option<Id> {
        match self {
            Carried::Message(id) | Carried::Edit(id) => Some(*id),
            Carried::Reaction { .. } => None,
        }
    }

    /// The weft message this is, changed or reacted to.
    pub fn subject(&self) -> Option<Id> {
        match self {
            Carried::Message(id) | Carried::Edit(id) => Some(*id),
            Carried::Reaction { message, .. } => Some(*message),
        }
    }
}

/// The bridge's tables. Cheap to clone.
#[derive(Clone)]
pub struct MatrixTables {
    store: Store,
}

impl MatrixTables {
    /// Brings the bridge's tables up to date in `store`'s database.
    pub async fn open(store: Store) -> Result<MatrixTables> {
        let migrator = match store.dialect() {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        };
        store.migrate_extension(migrator).await?;
        Ok(MatrixTables { store })
    }

    /// Runs `job` in a write transaction with the chat's writes (see [`Store::write`]).
    pub(crate) async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut WriteTx) -> weft_store::BoxFuture<'t, Result<T>> + Send + 'static,
    {
        self.store.write(job).await
    }

    /// Takes the fenced lease `name` (see [`Store::take_lease`]).
    pub(crate) async fn take_lease(&self, name: &str) -> Result<weft_store::Lease> {
        self.store.take_lease(name).await
    }

    /// The `mxc://` a weft avatar URL was uploaded as, if it was.
    pub async fn uploaded_avatar(&self, source: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT mxc FROM matrix_uploaded_avatars WHERE source = $1")
            .bind(source)
            .fetch_optional(self.store.reader())
            .await?;
        row.map(|r| Ok(r.try_get("mxc")?)).transpose()
    }

    /// Records what a weft avatar URL was uploaded as; the first record stands.
    pub async fn insert_uploaded_avatar(&self, source: &str, mxc: &str) -> Result<()> {
        let (source, mxc) = (source.to_string(), mxc.to_string());
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO matrix_uploaded_avatars (source, mxc, uploaded_at) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(source)
                .bind(mxc)
                .bind(weft_core::now_millis())
                .execute(tx.conn())
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// The weft avatar URL a puppet's avatar was last set from (`""` for none); `None` when
    /// there is no such puppet.
    pub async fn puppet_avatar_source(&self, mxid: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT avatar_source FROM matrix_puppets WHERE mxid = $1")
            .bind(mxid)
            .fetch_optional(self.store.reader())
            .await?;
        row.map(|r| {
            Ok(r.try_get::<Option<String>, _>("avatar_source")?
                .unwrap_or_default())
        })
        .transpose()
    }

    /// The weft avatar URL a bridged room's Matrix avatar was last set from (`""` for none);
    /// `None` when weft never set it.
    pub async fn room_avatar_source(&self, room_id: Id) -> Result<Option<String>> {
        let row = sqlx::query("SELECT avatar_source FROM matrix_rooms WHERE room_id = $1")
            .bind(room_id.to_hex())
            .fetch_optional(self.store.reader())
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<String>, _>("avatar_source"))
            .transpose()?
            .flatten())
    }

    /// Records the weft avatar URL a bridged room's Matrix avatar was set from.
    pub async fn set_room_avatar_source(&self, room_id: Id, source: &str) -> Result<()> {
        let source = source.to_string();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("UPDATE matrix_rooms SET avatar_source = $2 WHERE room_id = $1")
                    .bind(room_id.to_hex())
                    .bind(source)
                    .execute(tx.conn())
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// The Matrix Space of a community, if it has one: its room id and alias.
    pub async fn space(&self, community_id: Id) -> Result<Option<(String, String)>> {
        let row =
            sqlx::query("SELECT matrix_room_id, alias FROM matrix_spaces WHERE community_id = $1")
                .bind(community_id.to_hex())
                .fetch_optional(self.store.reader())
                .await?;
        row.map(|r| Ok((r.try_get("matrix_room_id")?, r.try_get("alias")?)))
            .transpose()
    }

    /// Records a community's Space; the one recorded first stands (instances may race).
    pub async fn insert_space(
        &self,
        community_id: Id,
        matrix_room_id: &str,
        alias: &str,
    ) -> Result<()> {
        let (room, alias) = (matrix_room_id.to_string(), alias.to_string());
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO matrix_spaces (community_id, matrix_room_id, alias) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(community_id.to_hex())
                .bind(room)
                .bind(alias)
                .execute(tx.conn())
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Where the Spaces and what they list disagree with the bridged rooms: open bridged
    /// rooms of a community that its Space does not list yet (`(weft room, Matrix room)`),
    /// and closed ones it still lists (`(Matrix room, Space)`).
    pub async fn space_changes_due(&self) -> Result<(Vec<(Id, String)>, Vec<(String, String)>)> {
        let to_list = sqlx::query(
            "SELECT r.room_id, r.matrix_room_id FROM matrix_rooms r \
             LEFT JOIN matrix_space_children c ON c.matrix_room_id = r.matrix_room_id \
             WHERE r.is_open = 1 AND c.matrix_room_id IS NULL",
        )
        .fetch_all(self.store.reader())
        .await?
        .iter()
        .map(|r| Ok((id_column(r, "room_id")?, r.try_get("matrix_room_id")?)))
        .collect::<Result<Vec<_>>>()?;
        let to_unlist = sqlx::query(
            "SELECT c.matrix_room_id, c.space_room_id FROM matrix_space_children c \
             JOIN matrix_rooms r ON r.matrix_room_id = c.matrix_room_id WHERE r.is_open = 0",
        )
        .fetch_all(self.store.reader())
        .await?
        .iter()
        .map(|r| Ok((r.try_get("matrix_room_id")?, r.try_get("space_room_id")?)))
        .collect::<Result<Vec<_>>>()?;
        Ok((to_list, to_unlist))
    }

    /// Records that a Space lists a room (`Some(space)`) or no longer does (`None`).
    pub async fn set_space_child(&self, matrix_room_id: &str, space: Option<&str>) -> Result<()> {
        let (room, space) = (matrix_room_id.to_string(), space.map(str::to_string));
        self.write(move |tx| {
            Box::pin(async move {
                match space {
                    Some(space) => sqlx::query(
                        "INSERT INTO matrix_space_children (matrix_room_id, space_room_id) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(room)
                    .bind(space),
                    None => sqlx::query("DELETE FROM matrix_space_children WHERE matrix_room_id = $1")
                        .bind(room),
                }
                .execute(tx.conn())
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// A Matrix user's avatar fetched before: its content type and bytes.
    pub async fn avatar(&self, mxc: &str) -> Result<Option<(String, Vec<u8>)>> {
        let row = sqlx::query("SELECT content_type, bytes FROM matrix_avatars WHERE mxc = $1")
            .bind(mxc)
            .fetch_optional(self.store.reader())
            .await?;
        row.map(|r| Ok((r.try_get("content_type")?, r.try_get("bytes")?)))
            .transpose()
    }

    /// Keeps a fetched avatar; one fetched already stays as it is.
    pub async fn insert_avatar(&self, mxc: &str, content_type: &str, bytes: Vec<u8>) -> Result<()> {
        let (mxc, content_type) = (mxc.to_string(), content_type.to_string());
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO matrix_avatars (mxc, content_type, bytes, fetched_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(mxc)
                .bind(content_type)
                .bind(bytes)
                .bind(weft_core::now_millis())
                .execute(tx.conn())
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Records a room as bridged; false (changing nothing) if it already was.
    pub async fn insert_room(&self, mapped: MatrixRoom) -> Result<bool> {
        self.write(move |tx| Box::pin(async move { tx.insert_matrix_room(&mapped).await }))
            .await
    }

    /// The Matrix room of a weft room, if it is bridged.
    pub async fn room(&self, room_id: Id) -> Result<Option<MatrixRoom>> {
        let row = sqlx::query(
            "SELECT room_id, matrix_room_id, alias, is_open FROM matrix_rooms WHERE room_id = $1",
        )
        .bind(room_id.to_hex())
        .fetch_optional(self.store.reader())
        .await?;
        row.map(|r| matrix_room(&r)).transpose()
    }

    /// Every bridged room.
    pub async fn rooms(&self) -> Result<Vec<MatrixRoom>> {
        sqlx::query("SELECT room_id, matrix_room_id, alias, is_open FROM matrix_rooms")
            .fetch_all(self.store.reader())
            .await?
            .iter()
            .map(matrix_room)
            .collect()
    }

    /// The weft room bridged to a Matrix room.
    pub async fn room_for_matrix(&self, matrix_room_id: &str) -> Result<Option<Id>> {
        let row = sqlx::query("SELECT room_id FROM matrix_rooms WHERE matrix_room_id = $1")
            .bind(matrix_room_id)
            .fetch_optional(self.store.reader())
            .await?;
        row.map(|r| id_column(&r, "room_id")).transpose()
    }

    /// [`MatrixTables::room_for_matrix`] for many Matrix rooms in one query per chunk; rooms
    /// not bridged are left out.
    pub async fn rooms_for_matrix(
        &self,
        matrix_room_ids: &[&str],
    ) -> Result<std::collections::HashMap<String, Id>> {
        let mut found = std::collections::HashMap::new();
        for chunk in matrix_room_ids.chunks(weft_store::extension::values_per_list(&self.store)) {
            let sql = format!(
                "SELECT matrix_room_id, room_id FROM matrix_rooms WHERE matrix_room_id IN ({})",
                weft_store::extension::list_placeholders(&self.store, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.to_string());
            }
            for r in query.fetch_all(self.store.reader()).await? {
                found.insert(r.try_get("matrix_room_id")?, id_column(&r, "room_id")?);
            }
        }
        Ok(found)
    }

    /// Whether the puppet was registered on the homeserver, and under which display name.
    pub async fn puppet(&self, mxid: &str) -> Result<Option<Option<String>>> {
        let row = sqlx::query("SELECT display_name FROM matrix_puppets WHERE mxid = $1")
            .bind(mxid)
            .fetch_optional(self.store.reader())
            .await?;
        row.map(|r| Ok(r.try_get::<Option<String>, _>("display_name")?))
            .transpose()
    }

    /// The device the bridge sends as for one of its Matrix users (a puppet or the bot), if
    /// one was created.
    pub async fn device(&self, mxid: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT device_id FROM matrix_puppets WHERE mxid = $1")
            .bind(mxid)
            .fetch_optional(self.store.reader())
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<String>, _>("device_id"))
            .transpose()?
            .flatten())
    }

    /// Whether the puppet is known to have joined the Matrix room.
    pub async fn is_member(&self, matrix_room_id: &str, mxid: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM matrix_members WHERE matrix_room_id = $1 AND mxid = $2",
        )
        .bind(matrix_room_id)
        .bind(mxid)
        .fetch_optional(self.store.reader())
        .await?;
        Ok(row.is_some())
    }

    /// The Matrix event that carries `carried`, and its room.
    pub async fn event_for(&self, carried: &Carried) -> Result<Option<(OwnedEventId, String)>> {
        Ok(match self.event_row_for(carried).await? {
            Some((event_id, room)) => Some((
                OwnedEventId::try_from(event_id.as_str()).map_err(|_| {
                    StoreError::Corrupt(format!("bad Matrix event id {event_id:?}"))
                })?,
                room,
            )),
            None => None,
        })
    }

    async fn event_row_for(&self, carried: &Carried) -> Result<Option<(String, String)>> {
        let (kind, weft_ref) = carried.columns();
        let row = sqlx::query(
            "SELECT matrix_event_id, matrix_room_id FROM matrix_events WHERE weft_ref = $1 AND kind = $2 LIMIT 1",
        )
        .bind(weft_ref)
        .bind(kind)
        .fetch_optional(self.store.reader())
        .await?;
        if let Some(r) = row {
            return Ok(Some((
                r.try_get("matrix_event_id")?,
                r.try_get("matrix_room_id")?,
            )));
        }
        // A message that came from Matrix carries its event id as its external key, and has
        // no mapping row.
        let Carried::Message(message_id) = carried else {
            return Ok(None);
        };
        let Some((room_id, event_id)) = self.store.external_ref_of(*message_id).await? else {
            return Ok(None);
        };
        if !event_id.starts_with('$') {
            return Ok(None);
        }
        Ok(self
            .room(room_id)
            .await?
            .map(|mapped| (event_id, mapped.matrix_room_id)))
    }

    /// What weft thing a Matrix event carries.
    pub async fn carried_by(&self, matrix_event_id: &str) -> Result<Option<Carried>> {
        let row = sqlx::query(
            "SELECT kind, weft_ref, direction FROM matrix_events WHERE matrix_event_id = $1",
        )
        .bind(matrix_event_id)
        .fetch_optional(self.store.reader())
        .await?;
        if let Some(r) = row {
            let (kind, weft_ref, direction): (String, String, String) = (
                r.try_get("kind")?,
                r.try_get("weft_ref")?,
                r.try_get("direction")?,
            );
            return Carried::from_columns(&kind, &weft_ref, &direction).map(Some);
        }
        Ok(self
            .store
            .message_id_for_external_ref(matrix_event_id)
            .await?
            .map(Carried::Message))
    }

    /// [`MatrixTables::carried_by`] for many events at once, in a query or two per few
    /// hundred: what each event that carries something carries; the rest are left out.
    pub async fn carried_by_many(
        &self,
        matrix_event_ids: &[&str],
    ) -> Result<std::collections::HashMap<String, Carried>> {
        let mut found = std::collections::HashMap::new();
        for chunk in matrix_event_ids.chunks(weft_store::extension::values_per_list(&self.store)) {
            let sql = format!(
                "SELECT matrix_event_id, kind, weft_ref, direction FROM matrix_events WHERE matrix_event_id IN ({})",
                weft_store::extension::list_placeholders(&self.store, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.to_string());
            }
            for r in query.fetch_all(self.store.reader()).await? {
                let (event_id, kind, weft_ref, direction): (String, String, String, String) = (
                    r.try_get("matrix_event_id")?,
                    r.try_get("kind")?,
                    r.try_get("weft_ref")?,
                    r.try_get("direction")?,
                );
                found.insert(
                    event_id,
                    Carried::from_columns(&kind, &weft_ref, &direction)?,
                );
            }
        }
        let rest: Vec<&str> = matrix_event_ids
            .iter()
            .copied()
            .filter(|id| !found.contains_key(*id))
            .collect();
        for (event_id, id) in self.store.message_ids_for_external_refs(&rest).await? {
            found.insert(event_id, Carried::Message(id));
        }
        Ok(found)
    }

    /// The Matrix users a bridged message has notified already (see
    /// [`MatrixWrites::insert_mentioned`]).
    pub async fn mentioned(&self, message_id: Id) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT mxid FROM matrix_mentioned WHERE message_id = $1")
            .bind(message_id.to_hex())
            .fetch_all(self.store.reader())
            .await?;
        rows.iter().map(|r| Ok(r.try_get("mxid")?)).collect()
    }

    /// Whether an AS transaction was already applied.
    pub async fn transaction_seen(&self, txn_key: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM matrix_transactions WHERE txn_id = $1")
            .bind(txn_key)
            .fetch_optional(self.store.reader())
            .await?;
        Ok(row.is_some())
    }

    /// The most recent failures the bridge recorded, newest first.
    pub async fn failures(&self, limit: i64) -> Result<Vec<MatrixFailure>> {
        let rows = sqlx::query(
            "SELECT event_seq, room_id, error, at FROM matrix_failures ORDER BY at DESC, event_seq DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.store.reader())
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
    pub async fn failure_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM matrix_failures")
            .fetch_one(self.store.reader())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// How far the outbound sender has read the event log (`None` before its first run).
    pub async fn cursor(&self) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT last_seq FROM matrix_cursor WHERE id = 1")
            .fetch_optional(self.store.reader())
            .await?;
        row.map(|r| Ok(r.try_get::<i64, _>("last_seq")?))
            .transpose()
    }
}

/// The bridge's writes, inside a write transaction (so that they commit with the chat's
/// changes they go with). Crate-private: called on the concrete [`WriteTx`], whose futures
/// the compiler sees are `Send`.
pub(crate) trait MatrixWrites {
    /// Records a bridged room; false if the weft room (or the Matrix room) was already mapped.
    async fn insert_matrix_room(&mut self, room: &MatrixRoom) -> Result<bool>;
    /// Opens or closes the Matrix side of a bridged room (see [`MatrixRoom::open`]).
    async fn set_matrix_room_open(&mut self, room_id: Id, open: bool) -> Result<()>;
    /// Records a registered puppet and the display name it was given.
    async fn upsert_matrix_puppet(&mut self, mxid: &str, display_name: Option<&str>) -> Result<()>;
    /// Records the device created for one of the bridge's Matrix users (a puppet, or the bot,
    /// which then gets a row without a display name).
    async fn set_matrix_device(&mut self, mxid: &str, device_id: &str) -> Result<()>;
    /// Records the weft avatar URL a puppet's avatar was set from (`""`: none).
    async fn set_puppet_avatar_source(&mut self, mxid: &str, source: &str) -> Result<()>;
    /// Records that a puppet joined a Matrix room.
    async fn insert_matrix_member(&mut self, matrix_room_id: &str, mxid: &str) -> Result<()>;
    /// Forgets that a puppet is in a Matrix room (it left, or was kicked).
    async fn delete_matrix_member(&mut self, matrix_room_id: &str, mxid: &str) -> Result<()>;
    /// Records which weft thing a received Matrix event carries; false if it was known.
    async fn insert_inbound_event(
        &mut self,
        matrix_event_id: &str,
        matrix_room_id: &str,
        carried: &Carried,
    ) -> Result<bool>;
    /// [`MatrixWrites::insert_inbound_event`] for many events (`(event id, room id, what it
    /// carried)`), a few hundred per statement; events already known are left as they are.
    async fn insert_inbound_events(&mut self, events: &[(String, String, Carried)]) -> Result<()>;
    /// Records what the outbound sender sent; false if the event was known. Fenced: fails
    /// with [`StoreError::LeaseLost`], writing nothing, unless `fence` still holds its lease
    /// (checked in the same statement).
    async fn insert_outbound_event(
        &mut self,
        fence: &Fence,
        matrix_event_id: &str,
        matrix_room_id: &str,
        carried: &Carried,
    ) -> Result<bool>;
    /// Records that a message's Matrix event (or an edit of it) mentioned `mxids`, who were
    /// notified. Written by the fenced sender, inside its fenced writes.
    async fn insert_mentioned(&mut self, message_id: Id, mxids: &[String]) -> Result<()>;
    /// Records an applied AS transaction; false if it was already recorded.
    async fn insert_matrix_transaction(&mut self, txn_key: &str) -> Result<bool>;
    /// Moves the outbound sender's position in the event log. Fenced as
    /// [`MatrixWrites::insert_outbound_event`].
    async fn set_matrix_cursor(&mut self, seq: i64, fence: &Fence) -> Result<()>;
    /// Records an event the bridge could not deliver, for operators to see, once per `key`
    /// (a Matrix event id inbound, `log:<seq>` outbound): a replayed transaction or a resend
    /// after a crash records nothing more.
    async fn insert_matrix_failure(
        &mut self,
        event_seq: i64,
        room_id: Option<Id>,
        key: &str,
        error: &str,
    ) -> Result<()>;
}

impl MatrixWrites for WriteTx {
    async fn insert_matrix_room(&mut self, room: &MatrixRoom) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO matrix_rooms (room_id, matrix_room_id, alias, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(room.room_id.to_hex())
        .bind(&room.matrix_room_id)
        .bind(&room.alias)
        .bind(weft_core::now_millis())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_matrix_room_open(&mut self, room_id: Id, open: bool) -> Result<()> {
        sqlx::query("UPDATE matrix_rooms SET is_open = $2 WHERE room_id = $1")
            .bind(room_id.to_hex())
            .bind(i64::from(open))
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn upsert_matrix_puppet(&mut self, mxid: &str, display_name: Option<&str>) -> Result<()> {
        sqlx::query(
            "INSERT INTO matrix_puppets (mxid, display_name, registered_at) VALUES ($1, $2, $3) \
             ON CONFLICT (mxid) DO UPDATE SET display_name = excluded.display_name",
        )
        .bind(mxid)
        .bind(display_name.map(str::to_string))
        .bind(weft_core::now_millis())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn set_matrix_device(&mut self, mxid: &str, device_id: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO matrix_puppets (mxid, display_name, registered_at, device_id) VALUES ($1, NULL, $2, $3) \
             ON CONFLICT (mxid) DO UPDATE SET device_id = excluded.device_id",
        )
        .bind(mxid)
        .bind(weft_core::now_millis())
        .bind(device_id)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn set_puppet_avatar_source(&mut self, mxid: &str, source: &str) -> Result<()> {
        sqlx::query("UPDATE matrix_puppets SET avatar_source = $2 WHERE mxid = $1")
            .bind(mxid)
            .bind(source)
            .execute(&mut *self.conn())
            .await?;
        Ok(())
    }

    async fn insert_matrix_member(&mut self, matrix_room_id: &str, mxid: &str) -> Result<()> {
        sqlx::query("INSERT INTO matrix_members (matrix_room_id, mxid) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(matrix_room_id)
            .bind(mxid)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn delete_matrix_member(&mut self, matrix_room_id: &str, mxid: &str) -> Result<()> {
        sqlx::query("DELETE FROM matrix_members WHERE matrix_room_id = $1 AND mxid = $2")
            .bind(matrix_room_id)
            .bind(mxid)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn insert_inbound_event(
        &mut self,
        matrix_event_id: &str,
        matrix_room_id: &str,
        carried: &Carried,
    ) -> Result<bool> {
        let (kind, weft_ref) = carried.columns();
        let done = sqlx::query(
            "INSERT INTO matrix_events (matrix_event_id, matrix_room_id, kind, weft_ref, direction) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(matrix_event_id)
        .bind(matrix_room_id)
        .bind(kind)
        .bind(weft_ref)
        .bind(Direction::Inbound.as_str())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_inbound_events(&mut self, events: &[(String, String, Carried)]) -> Result<()> {
        for chunk in events.chunks(self.rows_per_statement()) {
            let sql = format!(
                "INSERT INTO matrix_events (matrix_event_id, matrix_room_id, kind, weft_ref, direction) VALUES {} \
                 ON CONFLICT DO NOTHING",
                self.values_list(chunk.len(), 5)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (event_id, room_id, carried) in chunk {
                let (kind, weft_ref) = carried.columns();
                query = query
                    .bind(event_id.clone())
                    .bind(room_id.clone())
                    .bind(kind)
                    .bind(weft_ref)
                    .bind(Direction::Inbound.as_str());
            }
            query.execute(self.conn()).await?;
        }
        Ok(())
    }

    async fn insert_outbound_event(
        &mut self,
        fence: &Fence,
        matrix_event_id: &str,
        matrix_room_id: &str,
        carried: &Carried,
    ) -> Result<bool> {
        let (kind, weft_ref) = carried.columns();
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
        .execute(self.conn())
        .await?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        // Nothing written: the mapping was there already, or the lease moved.
        self.check_lease(fence).await?;
        Ok(false)
    }

    async fn insert_mentioned(&mut self, message_id: Id, mxids: &[String]) -> Result<()> {
        for mxid in mxids {
            sqlx::query(
                "INSERT INTO matrix_mentioned (message_id, mxid) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(message_id.to_hex())
            .bind(mxid)
            .execute(self.conn())
            .await?;
        }
        Ok(())
    }

    async fn insert_matrix_transaction(&mut self, txn_key: &str) -> Result<bool> {
        let done = sqlx::query("INSERT INTO matrix_transactions (txn_id, received_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(txn_key)
            .bind(weft_core::now_millis())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_matrix_cursor(&mut self, seq: i64, fence: &Fence) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO matrix_cursor (id, last_seq) SELECT 1, $1 WHERE (SELECT epoch FROM leases WHERE name = $2) = $3 \
             ON CONFLICT (id) DO UPDATE SET last_seq = excluded.last_seq",
        )
        .bind(seq)
        .bind(fence.name())
        .bind(fence.epoch())
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(fence.lost());
        }
        Ok(())
    }

    async fn insert_matrix_failure(
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
        .execute(self.conn())
        .await?;
        Ok(())
    }
}

mod membership;
pub use membership::MemberSync;

#[cfg(test)]
mod tests;
