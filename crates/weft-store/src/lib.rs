//! Weft's storage: one set of queries over SQLite (embedded default, WAL mode) and PostgreSQL
//! (scale-out), through sqlx's `Any` driver so that both run the same SQL.
//!
//! Writes go through [`Store::write`]: a single writer task per process groups concurrent
//! writes into one database transaction (each in its own savepoint), which is what makes
//! thousands of durable posts per second possible on SQLite. Every write appends its events to
//! the ordered event log inside that same transaction ([`WriteTx::append`]), so a change and its
//! event are never separated by a crash.

mod access;
mod communities;
mod events;
pub mod extension;
mod lease;
mod messages;
mod moderation;
mod rooms;
mod rows;
#[cfg(feature = "testing")]
pub mod testing;
mod users;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};
use tokio::sync::watch;

pub use access::ACCESS_CACHE_TTL;
pub use lease::{Fence, LEASE_CHECK_INTERVAL, Lease};
pub use messages::{EditedText, MessagePage, NewMessage, PageAnchor};
pub use moderation::Ban;
pub use rooms::RoomWithMembership;
pub use users::Upserted;
pub use writer::{BoxFuture, WriteTx};

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value (username, URI, ...) is already taken.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A stored value could not be read back (a bug or a hand-edited database).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Schema migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The writer task is gone (the store is shutting down).
    #[error("the store is shutting down")]
    Closed,
    /// The write transaction failed and was rolled back.
    #[error("{0}")]
    Rejected(String),
    /// A write job refused to go on (its own check inside the transaction failed); carries
    /// the job's error back to its caller.
    #[error("{0}")]
    Aborted(Box<dyn std::error::Error + Send + Sync>),
    /// A fenced write was refused: its lease was taken by someone else since (see
    /// [`Store::take_lease`]). The holder must stop and take the lease again.
    #[error("the lease {name} (epoch {epoch}) was lost")]
    LeaseLost {
        /// The lease's name.
        name: String,
        /// The epoch the writer held it at.
        epoch: i64,
    },
}

impl StoreError {
    /// Maps a unique-constraint violation to [`StoreError::Conflict`].
    pub(crate) fn conflict_on(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
            _ => StoreError::Db(e),
        }
    }
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database, shared by every part of one weft process.
#[derive(Clone)]
pub struct Store {
    read: AnyPool,
    dialect: Dialect,
    writer: writer::WriterHandle,
    committed: watch::Receiver<i64>,
    access: std::sync::Arc<access::AccessCache>,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`: `sqlite:PATH` or
    /// `postgres://…`.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            return Err(StoreError::Db(sqlx::Error::Configuration(
                format!("unsupported database URL (use sqlite:PATH or postgres://…): {url}").into(),
            )));
        };
        let url = match dialect {
            Dialect::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let mut options = AnyConnectOptions::from_str(&url)?;
        // Every statement is logged only when asked for (`WEFT_LOG=sqlx::query=debug`, to see
        // what a request costs): the logger takes time on every statement.
        if !tracing::enabled!(target: "sqlx::query", tracing::Level::DEBUG) {
            options = options.disable_statement_logging();
        }
        let (readers, writers) = match dialect {
            Dialect::Sqlite => (8, 1),
            Dialect::Postgres => (16, 2),
        };
        let write_pool = pool_options(dialect, writers)
            .connect_with(options.clone())
            .await?;
        migrate(dialect, &write_pool).await?;
        let read = pool_options(dialect, readers)
            .min_connections(1)
            .connect_with(options)
            .await?;
        let last = events::last_seq(&read).await?;
        let (committed_tx, committed) = watch::channel(last);
        let access = std::sync::Arc::new(access::AccessCache::default());
        let writer = writer::spawn(write_pool, dialect, committed_tx, access.clone());
        match dialect {
            Dialect::Postgres => listen_for_commits(&url, writer.clone()).await?,
            Dialect::Sqlite => spawn_checkpointer(read.clone(), committed.clone()),
        }
        Ok(Store {
            read,
            dialect,
            writer,
            committed,
            access,
        })
    }

    /// The database behind this store.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Runs `job` in a write transaction, grouped with other concurrent writes, and returns its
    /// result once the transaction is durably committed. If `job` fails, its changes (and only
    /// its changes) are rolled back.
    pub async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut WriteTx) -> BoxFuture<'t, Result<T>> + Send + 'static,
    {
        self.writer.run(job).await
    }

    /// [`Store::write`] for a job that can run again from the start: `job` may be called more
    /// than once, each time in a transaction where its earlier writes were rolled back, and
    /// its last run is the one that counts. Such jobs share a savepoint with their neighbours
    /// in the batch instead of each taking its own, which saves a database round trip per
    /// job; the price, when one of them fails, is running the others again.
    pub async fn write_replayable<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t mut WriteTx) -> BoxFuture<'t, Result<T>> + Send + 'static,
    {
        self.writer.run_replayable(job).await
    }

    /// How many writes ([`Store::write`], [`Store::write_replayable`]) this process has asked
    /// for since the store opened: what batching saves shows here (a bridge's transaction is
    /// one write, whatever it holds).
    pub fn writes_requested(&self) -> u64 {
        self.writer.queued()
    }

    /// Follows the sequence number of the last committed event log entry, to wake tailers.
    pub fn committed(&self) -> watch::Receiver<i64> {
        self.committed.clone()
    }

    /// Tells this process's tailers that another process committed events up to `seq`
    /// (PostgreSQL scale-out: learnt through `LISTEN`).
    pub fn note_remote_commit(&self, seq: i64) {
        self.writer.note_remote_commit(seq);
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.read
    }
}

/// The checksum of migration 2 as it was before the Matrix bridge kept its own schema, when it
/// also created the bridge's tables (SHA-384, as sqlx computes it).
const MIGRATION_2_BEFORE_THE_SPLIT: &str = "8fffcc5805fdec544629a7bf0e139f3412b4c96a62f27fd7847ded9c94ce4456e8cc6d53704a309a1c85da08474ae952";

/// Brings the chat's schema up to date. Extensions (the Matrix bridge) run their own
/// migrations in the same migrations table ([`Store::migrate_extension`]), so versions this
/// migrator does not know are expected there.
async fn migrate(dialect: Dialect, pool: &AnyPool) -> Result<()> {
    let mut migrator = match dialect {
        Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    migrator.set_ignore_missing(true);
    adopt_split_migration_2(&migrator, pool).await?;
    migrator.run(pool).await?;
    Ok(())
}

/// A database migrated before the split recorded migration 2 with its old text, which also
/// created the bridge's tables (the bridge's migration 0000 now creates them if missing): it
/// is recorded as today's migration 2, so that the migrator does not refuse the database.
async fn adopt_split_migration_2(migrator: &sqlx::migrate::Migrator, pool: &AnyPool) -> Result<()> {
    use sqlx::Row;
    let Some(today) = migrator.iter().find(|m| m.version == 2) else {
        return Ok(());
    };
    let recorded = match sqlx::query("SELECT checksum FROM _sqlx_migrations WHERE version = 2")
        .fetch_optional(pool)
        .await
    {
        Ok(row) => row,
        // A new database has no migrations table yet.
        Err(_) => return Ok(()),
    };
    let Some(row) = recorded else {
        return Ok(());
    };
    let checksum: Vec<u8> = row.try_get("checksum")?;
    let hex: String = checksum.iter().map(|b| format!("{b:02x}")).collect();
    if hex == MIGRATION_2_BEFORE_THE_SPLIT {
        sqlx::query(
            "UPDATE _sqlx_migrations SET checksum = $1, description = $2 WHERE version = 2",
        )
        .bind(today.checksum.to_vec())
        .bind(today.description.to_string())
        .execute(pool)
        .await?;
        tracing::info!("recorded migration 2 under its text since the bridge keeps its own schema");
    }
    Ok(())
}

/// Follows commits made by other weft instances on the same PostgreSQL database, so that
/// this instance's live subscribers see their events too. Reconnects if the connection drops.
async fn listen_for_commits(url: &str, writer: writer::WriterHandle) -> Result<()> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen("weft_events").await?;
    tokio::spawn(async move {
        loop {
            // `recv` reconnects by itself after a dropped connection.
            match listener.recv().await {
                Ok(note) => {
                    if let Ok(seq) = note.payload().parse::<i64>() {
                        writer.note_remote_commit(seq);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the PostgreSQL commit listener; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(())
}

/// How often the WAL is copied back into the database file, at most.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// Copies committed pages from SQLite's write-ahead log back into the database file, beside
/// the writer rather than in it: left to SQLite, the commit that crosses the log's size limit
/// does the copying itself, and the write waiting on it (a post, a Matrix transaction) with
/// it. A passive checkpoint never blocks the writer or readers. Stops when the store closes.
fn spawn_checkpointer(read: AnyPool, mut committed: watch::Receiver<i64>) {
    tokio::spawn(async move {
        let mut checkpointed = *committed.borrow_and_update();
        loop {
            tokio::time::sleep(CHECKPOINT_INTERVAL).await;
            if read.is_closed() {
                return;
            }
            let last = *committed.borrow_and_update();
            if last == checkpointed {
                if committed.changed().await.is_err() {
                    return;
                }
                continue;
            }
            match sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&read)
                .await
            {
                Ok(_) => checkpointed = last,
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry"),
            }
        }
    });
}

fn pool_options(dialect: Dialect, max: u32) -> AnyPoolOptions {
    let options = AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30));
    match dialect {
        // A SQLite connection lives in this process and cannot go stale: pinging it before
        // every use (sqlx's default) doubled the hand-overs to its thread for every read and
        // every commit.
        Dialect::Sqlite => options
            .test_before_acquire(false)
            .after_connect(|conn, _meta| Box::pin(sqlite_pragmas(conn))),
        Dialect::Postgres => options,
    }
}

async fn sqlite_pragmas(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    // WAL lets readers run beside the writer; FULL makes every commit durable across power
    // loss (group commit keeps that affordable). Temporary storage in memory keeps the
    // per-job savepoints' sub-journals off the disk. No automatic checkpoints: a background
    // task does them (`spawn_checkpointer`), and SQLite does one when the last connection
    // closes.
    conn.execute(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=0;",
    )
    .await?;
    Ok(())
}

/// Waits for the store's to finish queued writes, for orderly shutdown.
pub async fn close(store: Store) {
    store.writer.close().await;
    store.read.close().await;
}
