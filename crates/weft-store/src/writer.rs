//! The single writer: group commit of concurrent writes, each in its own savepoint.

use std::future::Future;
use std::pin::Pin;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Executor};
use tokio::sync::{mpsc, oneshot, watch};

use std::sync::Arc;

use crate::access::AccessCache;
use crate::{Dialect, Result, StoreError};

/// A boxed future borrowing the write transaction.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Most writes grouped into one transaction.
const MAX_BATCH: usize = 256;

/// The transaction-level advisory lock every PostgreSQL write transaction takes first (the
/// number in `run_batch`'s `BEGIN`). Taking a lease takes it too, so that no write checked
/// against a lease's old epoch commits after the epoch moved.
pub(crate) const COMMIT_ORDER_LOCK: i64 = 7411;

/// A queued write, type-erased so that writes of every result type share one queue.
trait QueuedJob: Send {
    /// Whether the job may run again after its writes were rolled back (see
    /// [`crate::Store::write_replayable`]).
    fn replayable(&self) -> bool;
    /// Runs against the transaction, keeping its outcome; says whether it succeeded.
    fn run<'t>(&'t mut self, tx: &'t mut WriteTx) -> BoxFuture<'t, bool>;
    /// Answers the caller with the job's outcome, or the commit's failure.
    fn finish(self: Box<Self>, commit: Result<()>);
    /// Answers the caller without running (the transaction could not be started).
    fn fail(self: Box<Self>, error: StoreError);
}

type Job = Box<dyn QueuedJob>;

/// A job that runs once: its closure is taken when it runs.
struct OnceJob<T, F> {
    job: Option<F>,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

/// A job that can run again after a rollback (the closure is called once per run).
struct ReplayableJob<T, F> {
    job: F,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

/// What a job's caller hears: its own failure, else the commit's, else its value.
fn answer<T>(reply: oneshot::Sender<Result<T>>, outcome: Option<Result<T>>, commit: Result<()>) {
    let result = match (outcome, commit) {
        (Some(Ok(value)), Ok(())) => Ok(value),
        (Some(Err(e)), _) | (Some(Ok(_)), Err(e)) => Err(e),
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Err(StoreError::Rejected("the write did not run".into())),
    };
    // The caller may have gone away (request cancelled); the write stands.
    let _ = reply.send(result);
}

impl<T, F> QueuedJob for OnceJob<T, F>
where
    T: Send + 'static,
    F: for<'t> FnOnce(&'t mut WriteTx) -> BoxFuture<'t, Result<T>> + Send + 'static,
{
    fn replayable(&self) -> bool {
        false
    }

    fn run<'t>(&'t mut self, tx: &'t mut WriteTx) -> BoxFuture<'t, bool> {
        Box::pin(async move {
            let outcome = match self.job.take() {
                Some(job) => job(tx).await,
                None => Err(StoreError::Rejected("a write ran twice".into())),
            };
            let ok = outcome.is_ok();
            self.outcome = Some(outcome);
            ok
        })
    }

    fn finish(self: Box<Self>, commit: Result<()>) {
        answer(self.reply, self.outcome, commit);
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

impl<T, F> QueuedJob for ReplayableJob<T, F>
where
    T: Send + 'static,
    F: for<'t> Fn(&'t mut WriteTx) -> BoxFuture<'t, Result<T>> + Send + 'static,
{
    fn replayable(&self) -> bool {
        true
    }

    fn run<'t>(&'t mut self, tx: &'t mut WriteTx) -> BoxFuture<'t, bool> {
        Box::pin(async move {
            let outcome = (self.job)(tx).await;
            let ok = outcome.is_ok();
            self.outcome = Some(outcome);
            ok
        })
    }

    fn finish(self: Box<Self>, commit: Result<()>) {
        answer(self.reply, self.outcome, commit);
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

/// An open write transaction, handed to one write job at a time.
pub struct WriteTx {
    pub(crate) conn: PoolConnection<Any>,
    pub(crate) dialect: Dialect,
    /// Sequence number of the last event this transaction appended.
    pub(crate) last_event_seq: Option<i64>,
    /// Whether a room, membership or ban changed (cached permissions must be forgotten).
    pub(crate) access_changed: bool,
}

impl WriteTx {
    /// The database behind this transaction.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
}

/// What the writer task receives.
enum Request {
    /// A write to run.
    Job(Job),
    /// Finish what came before, then stop and say so.
    Close(oneshot::Sender<()>),
}

#[derive(Clone)]
pub(crate) struct WriterHandle {
    jobs: mpsc::Sender<Request>,
    committed: watch::Sender<i64>,
    /// Write jobs queued since the store opened.
    queued: Arc<std::sync::atomic::AtomicU64>,
}

impl WriterHandle {
    pub(crate) async fn run<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut WriteTx) -> BoxFuture<'t, Result<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T>>();
        self.queue(Box::new(OnceJob {
            job: Some(job),
            outcome: None,
            reply,
        }))
        .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) async fn run_replayable<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t mut WriteTx) -> BoxFuture<'t, Result<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T>>();
        self.queue(Box::new(ReplayableJob {
            job,
            outcome: None,
            reply,
        }))
        .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Write jobs queued since the store opened.
    pub(crate) fn queued(&self) -> u64 {
        self.queued.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn queue(&self, job: Job) -> Result<()> {
        self.queued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.jobs
            .send(Request::Job(job))
            .await
            .map_err(|_| StoreError::Closed)
    }

    pub(crate) fn note_remote_commit(&self, seq: i64) {
        self.committed.send_if_modified(|current| {
            if seq > *current {
                *current = seq;
                true
            } else {
                false
            }
        });
    }

    /// Lets queued writes finish, then stops the writer; later writes fail with
    /// [`StoreError::Closed`].
    pub(crate) async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.jobs.send(Request::Close(done)).await.is_ok() {
            let _ = finished.await;
        }
    }
}

pub(crate) fn spawn(
    pool: AnyPool,
    dialect: Dialect,
    committed: watch::Sender<i64>,
    access: Arc<AccessCache>,
) -> WriterHandle {
    let (jobs_tx, jobs_rx) = mpsc::channel::<Request>(4096);
    let handle = WriterHandle {
        jobs: jobs_tx,
        committed: committed.clone(),
        queued: Arc::default(),
    };
    tokio::spawn(writer_loop(pool, dialect, jobs_rx, committed, access));
    handle
}

async fn writer_loop(
    pool: AnyPool,
    dialect: Dialect,
    mut requests: mpsc::Receiver<Request>,
    committed: watch::Sender<i64>,
    access: Arc<AccessCache>,
) {
    let mut received: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while requests.recv_many(&mut received, MAX_BATCH).await > 0 {
        let mut closing = None;
        for request in received.drain(..) {
            match request {
                Request::Job(job) if closing.is_none() => batch.push(job),
                // Jobs queued after a close are dropped: their callers hear `Closed`.
                Request::Job(_) => {}
                Request::Close(done) => closing = closing.or(Some(done)),
            }
        }
        if !batch.is_empty() {
            run_batch(&pool, dialect, &mut batch, &committed, &access).await;
        }
        if let Some(done) = closing {
            requests.close();
            pool.close().await;
            let _ = done.send(());
            return;
        }
    }
}

/// Runs one batch in one transaction and answers every job.
///
/// Every statement costs a round trip to the database (on SQLite, a hand-over to its worker
/// thread), so the bookkeeping statements (savepoints, the commit) are held back and sent
/// together just before the next job or with the commit.
///
/// A job of its own ([`crate::Store::write`]) runs inside a savepoint, so that its failure
/// undoes its writes and nobody else's. Consecutive replayable jobs
/// ([`crate::Store::write_replayable`]) share one savepoint: when one fails, the whole run is
/// rolled back and run again without it. A failure is rare (the checks happen before the
/// write), so a run of posts costs one statement each instead of two.
async fn run_batch(
    pool: &AnyPool,
    dialect: Dialect,
    batch: &mut Vec<Job>,
    committed: &watch::Sender<i64>,
    access: &AccessCache,
) {
    let conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return fail_all(batch, e),
    };
    let mut tx = WriteTx {
        conn,
        dialect,
        last_event_seq: None,
        access_changed: false,
    };
    let mut bookkeeping = Bookkeeping::new(match dialect {
        // IMMEDIATE takes the write lock up front, so a CLI process writing at the same time
        // waits (busy_timeout) instead of failing half-way.
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        // The advisory lock serialises writers across instances so that event log sequence
        // numbers become visible in commit order: a tailer reading `seq > last` never skips a
        // late commit.
        Dialect::Postgres => BEGIN_POSTGRES,
    });
    // Jobs that ran (each keeps its outcome); answered once the commit is known.
    let mut ran: Vec<Job> = Vec::with_capacity(batch.len());
    let mut queue: std::collections::VecDeque<Job> = batch.drain(..).collect();
    while let Some(job) = queue.pop_front() {
        let outcome = if job.replayable() {
            let mut run = vec![job];
            while queue.front().is_some_and(|next| next.replayable()) {
                run.extend(queue.pop_front());
            }
            run_replayable(&mut tx, &mut bookkeeping, run, &mut ran).await
        } else {
            run_alone(&mut tx, &mut bookkeeping, job, &mut ran).await
        };
        if let Err(e) = outcome {
            let _ = tx.conn.execute("ROLLBACK").await;
            return abort(ran, queue, &e);
        }
    }
    let finish = match (dialect, tx.last_event_seq) {
        // Delivered to listeners at commit: other instances wake their tailers (scale-out).
        (Dialect::Postgres, Some(seq)) => {
            format!("SELECT pg_notify('weft_events', '{seq}'); COMMIT")
        }
        _ => "COMMIT".to_string(),
    };
    bookkeeping.add(&finish);
    let outcome = bookkeeping.send(&mut tx).await;
    // Whatever happened, cached permissions may no longer hold; forget them before anyone
    // hears that the write is done.
    if tx.access_changed {
        access.invalidate();
    }
    match outcome {
        Ok(()) => {
            if let Some(seq) = tx.last_event_seq {
                committed.send_if_modified(|current| {
                    let newer = seq > *current;
                    if newer {
                        *current = seq;
                    }
                    newer
                });
            }
            for job in ran {
                job.finish(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "commit failed; the batch's writes were rolled back");
            let _ = tx.conn.execute("ROLLBACK").await;
            for job in ran {
                job.finish(Err(rejected("commit failed", &e)));
            }
        }
    }
}

/// How a PostgreSQL write transaction starts: see [`COMMIT_ORDER_LOCK`].
const BEGIN_POSTGRES: &str = "BEGIN; SELECT pg_advisory_xact_lock(7411)";

/// Bookkeeping statements waiting to go with the next call.
struct Bookkeeping(String);

impl Bookkeeping {
    fn new(first: &str) -> Bookkeeping {
        Bookkeeping(first.to_string())
    }

    fn add(&mut self, statement: &str) {
        if !self.0.is_empty() {
            self.0.push_str("; ");
        }
        self.0.push_str(statement);
    }

    /// Sends what is waiting, in one call.
    async fn send(&mut self, tx: &mut WriteTx) -> std::result::Result<(), sqlx::Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        let sql = std::mem::take(&mut self.0);
        // Only fixed statements and integers we produced: safe to send as raw SQL.
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx.conn)
            .await
            .map(|_| ())
    }
}

/// Runs one job in its own savepoint; a failure undoes its writes only.
async fn run_alone(
    tx: &mut WriteTx,
    bookkeeping: &mut Bookkeeping,
    mut job: Job,
    ran: &mut Vec<Job>,
) -> std::result::Result<(), sqlx::Error> {
    bookkeeping.add("SAVEPOINT job");
    if let Err(e) = bookkeeping.send(tx).await {
        ran.push(job);
        return Err(e);
    }
    let seq_before = tx.last_event_seq;
    let ok = job.run(tx).await;
    if ok {
        bookkeeping.add("RELEASE SAVEPOINT job");
    } else {
        tx.last_event_seq = seq_before;
        bookkeeping.add("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job");
    }
    ran.push(job);
    Ok(())
}

/// Runs consecutive replayable jobs under one savepoint. When one fails, the run is rolled
/// back and run again without it (each failure removes a job, so this ends).
async fn run_replayable(
    tx: &mut WriteTx,
    bookkeeping: &mut Bookkeeping,
    mut run: Vec<Job>,
    ran: &mut Vec<Job>,
) -> std::result::Result<(), sqlx::Error> {
    bookkeeping.add("SAVEPOINT run");
    let seq_before = tx.last_event_seq;
    loop {
        if let Err(e) = bookkeeping.send(tx).await {
            ran.extend(run);
            return Err(e);
        }
        let mut failed = None;
        for (i, job) in run.iter_mut().enumerate() {
            if !job.run(tx).await {
                failed = Some(i);
                break;
            }
        }
        match failed {
            None => {
                bookkeeping.add("RELEASE SAVEPOINT run");
                ran.extend(run);
                return Ok(());
            }
            Some(i) => {
                // On PostgreSQL the failure also broke the transaction; this mends it.
                tx.last_event_seq = seq_before;
                bookkeeping.add("ROLLBACK TO SAVEPOINT run");
                ran.push(run.remove(i));
                if run.is_empty() {
                    bookkeeping.add("RELEASE SAVEPOINT run");
                    return Ok(());
                }
            }
        }
    }
}

fn rejected(what: &str, e: &sqlx::Error) -> StoreError {
    StoreError::Rejected(format!("{what}: {e}"))
}

/// Ends a batch whose transaction broke: jobs that ran hear that it was rolled back, jobs that
/// had not run yet hear the same without running.
fn abort(ran: Vec<Job>, rest: impl IntoIterator<Item = Job>, e: &sqlx::Error) {
    tracing::error!(error = %e, "write transaction failed; the batch was rolled back");
    for job in rest {
        job.fail(rejected("transaction failed", e));
    }
    for job in ran {
        job.finish(Err(rejected("transaction failed", e)));
    }
}

/// Reports a failure to start the transaction to every job in the batch.
fn fail_all(batch: &mut Vec<Job>, e: sqlx::Error) {
    tracing::error!(error = %e, "could not start a write transaction");
    for job in batch.drain(..) {
        job.fail(rejected("database unavailable", &e));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_commit_order_lock_is_the_one_write_transactions_take() {
        let key = format!("pg_advisory_xact_lock({})", super::COMMIT_ORDER_LOCK);
        assert!(super::BEGIN_POSTGRES.ends_with(&key));
    }
}
