//! Fenced leases: a named singleton job (the Matrix bridge's outbound sender today, one lease
//! per room lane later) runs on one instance at a time, and its writes prove that it still
//! holds the lease.
//!
//! A lease has an **epoch**, bumped each time someone takes it. The holder writes through a
//! [`Fence`] (the lease's name and the epoch it took), and each fenced statement compares the
//! stored epoch in the statement itself ([`WriteTx::check_lease`] for writes that cannot), so
//! a holder that lost the lease cannot move anything, not even in the moment before it
//! notices. To notice quickly, a background task re-reads the epoch every
//! [`LEASE_CHECK_INTERVAL`] and raises [`Lease::lost`] when it moved or could not be read.
//!
//! On PostgreSQL the lease is a session advisory lock on a connection of its own: it passes to
//! another instance when that connection drops (the holder died, PostgreSQL restarted, an idle
//! timeout, `pg_terminate_backend`), and the holder learns of it at its next check, since the
//! check runs on that very connection. SQLite serves one process: the lease is taken at once,
//! but it has an epoch all the same, so the holder runs the same code on both.

use std::time::Duration;

use sqlx::{AnyConnection, AnyPool, Connection, Row};
use tokio::sync::{oneshot, watch};

use crate::{Dialect, Result, Store, StoreError, WriteTx, writer};

/// How often a held lease is checked: its connection pinged and its epoch read again.
pub const LEASE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How often an instance waiting for a lease that another one holds tries again.
const LEASE_RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// What a holder's writes carry to prove that it still holds its lease: the lease's name and
/// the epoch it was taken at. Cheap to clone into write jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    name: String,
    epoch: i64,
}

impl Fence {
    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The epoch the lease was taken at.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// The error a fenced write answers when this fence no longer holds its lease.
    pub fn lost(&self) -> StoreError {
        StoreError::LeaseLost {
            name: self.name.clone(),
            epoch: self.epoch,
        }
    }
}

/// A held lease (see [`Store::take_lease`]). Dropping it gives the lease up.
pub struct Lease {
    fence: Fence,
    backend_pid: Option<i64>,
    lost: watch::Receiver<bool>,
    /// Dropped with the lease: tells the watching task to give the lease up.
    _release: oneshot::Sender<()>,
}

impl Lease {
    /// The fence this lease's writes carry.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// The epoch this lease was taken at (higher than any earlier holder's).
    pub fn epoch(&self) -> i64 {
        self.fence.epoch
    }

    /// Turns true, once and for good, when the lease is found lost: its connection failed or
    /// someone else took it. A holder stops as soon as it sees this.
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Whether the lease is known to be lost (the cheap check before each side effect; the
    /// fenced statements are the sure one).
    pub fn is_lost(&self) -> bool {
        // A watcher that is gone can vouch for nothing.
        *self.lost.borrow() || self.lost.has_changed().is_err()
    }

    /// On PostgreSQL, the process id of the server backend whose session holds the lease (as
    /// in `pg_stat_activity`), for operators; `None` on SQLite.
    pub fn backend_pid(&self) -> Option<i64> {
        self.backend_pid
    }
}

impl Store {
    /// Takes the named lease, waiting while another instance holds it, and bumps its epoch.
    /// Returns once the lease is held; a background task then watches it (see [`Lease::lost`])
    /// until it is dropped.
    pub async fn take_lease(&self, name: &str) -> Result<Lease> {
        let (release, released) = oneshot::channel();
        let (lost_tx, lost) = watch::channel(false);
        let (fence, backend_pid, watched) = match self.dialect() {
            Dialect::Sqlite => {
                let holder = format!("pid {}", std::process::id());
                let (n, h) = (name.to_string(), holder);
                let epoch = self
                    .write(move |tx| {
                        Box::pin(async move { bump_epoch(&mut tx.conn, &n, &h).await })
                    })
                    .await?;
                let fence = Fence {
                    name: name.to_string(),
                    epoch,
                };
                (fence, None, Watched::Pool(self.pool().clone()))
            }
            Dialect::Postgres => {
                let mut conn = self.pool().acquire().await?.detach();
                wait_for_advisory_lock(&mut conn, lease_key(name)).await?;
                let row = sqlx::query("SELECT CAST(pg_backend_pid() AS BIGINT) AS pid")
                    .fetch_one(&mut conn)
                    .await?;
                let pid: i64 = row.try_get("pid")?;
                let holder = format!("pid {}, backend {pid}", std::process::id());
                // The bump waits for the write transactions in progress (they hold the
                // commit-order lock) and every later one sees it: once it commits, no write
                // checked against the old epoch can still commit.
                let mut tx = conn.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(writer::COMMIT_ORDER_LOCK)
                    .execute(&mut *tx)
                    .await?;
                let epoch = bump_epoch(&mut tx, name, &holder).await?;
                tx.commit().await?;
                let fence = Fence {
                    name: name.to_string(),
                    epoch,
                };
                (fence, Some(pid), Watched::Connection(conn))
            }
        };
        tracing::info!(lease = name, epoch = fence.epoch, "took a lease");
        tokio::spawn(watch_lease(watched, fence.clone(), lost_tx, released));
        Ok(Lease {
            fence,
            backend_pid,
            lost,
            _release: release,
        })
    }
}

impl WriteTx {
    /// Fails with [`StoreError::LeaseLost`] unless `fence` still holds its lease. For writes
    /// that cannot carry the check in their own statement; within a write transaction the
    /// answer holds until the commit (taking a lease waits for write transactions).
    pub async fn check_lease(&mut self, fence: &Fence) -> Result<()> {
        let row = sqlx::query("SELECT epoch FROM leases WHERE name = $1")
            .bind(&fence.name)
            .fetch_optional(&mut *self.conn)
            .await?;
        match row.map(|r| r.try_get::<i64, _>("epoch")).transpose()? {
            Some(epoch) if epoch == fence.epoch => Ok(()),
            _ => Err(fence.lost()),
        }
    }
}

/// Polls for a session advisory lock until it is ours.
async fn wait_for_advisory_lock(conn: &mut AnyConnection, key: i64) -> Result<()> {
    loop {
        let row = sqlx::query(
            "SELECT CAST(CASE WHEN pg_try_advisory_lock($1) THEN 1 ELSE 0 END AS BIGINT) AS held",
        )
        .bind(key)
        .fetch_one(&mut *conn)
        .await?;
        if row.try_get::<i64, _>("held")? == 1 {
            return Ok(());
        }
        tokio::time::sleep(LEASE_RETRY_INTERVAL).await;
    }
}

/// Records a new holder and answers its epoch, one more than the last holder's.
async fn bump_epoch(conn: &mut AnyConnection, name: &str, holder: &str) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO leases (name, epoch, holder, taken_at) VALUES ($1, 1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET epoch = leases.epoch + 1, holder = excluded.holder, taken_at = excluded.taken_at \
         RETURNING epoch",
    )
    .bind(name)
    .bind(holder)
    .bind(weft_core::now_millis())
    .fetch_one(conn)
    .await?;
    Ok(row.try_get("epoch")?)
}

/// Where a lease is watched from.
enum Watched {
    /// PostgreSQL: the connection whose session holds the advisory lock, so that each check
    /// also proves the session alive.
    Connection(AnyConnection),
    /// SQLite: any connection will do.
    Pool(AnyPool),
}

impl Watched {
    async fn epoch(&mut self, name: &str) -> Result<Option<i64>> {
        let query = sqlx::query("SELECT epoch FROM leases WHERE name = $1").bind(name);
        let row = match self {
            Watched::Connection(conn) => query.fetch_optional(conn).await?,
            Watched::Pool(pool) => query.fetch_optional(&*pool).await?,
        };
        Ok(row.map(|r| r.try_get::<i64, _>("epoch")).transpose()?)
    }

    /// Gives the lease up: closing the session releases the advisory lock.
    async fn give_up(self) {
        if let Watched::Connection(conn) = self {
            // A connection that already broke cannot close cleanly; it is gone either way.
            let _ = conn.close().await;
        }
    }
}

/// Checks the lease every [`LEASE_CHECK_INTERVAL`] until it is lost (then raises `lost`) or
/// released (its [`Lease`] dropped).
async fn watch_lease(
    mut watched: Watched,
    fence: Fence,
    lost: watch::Sender<bool>,
    mut released: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut released => {
                watched.give_up().await;
                tracing::info!(lease = %fence.name, epoch = fence.epoch, "gave up a lease");
                return;
            }
            _ = tokio::time::sleep(LEASE_CHECK_INTERVAL) => {}
        }
        let why = match watched.epoch(&fence.name).await {
            Ok(Some(epoch)) if epoch == fence.epoch => continue,
            Ok(Some(epoch)) => format!("another holder took it (epoch {epoch})"),
            Ok(None) => "its row is gone".to_string(),
            Err(e) => format!("it could not be checked: {e}"),
        };
        tracing::warn!(lease = %fence.name, epoch = fence.epoch, %why, "lost a lease");
        let _ = lost.send(true);
        watched.give_up().await;
        return;
    }
}

/// A stable 63-bit key for a lease name.
fn lease_key(name: &str) -> i64 {
    // FNV-1a: stable across builds and processes, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash >> 1) as i64
}
