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

/// Tells a job's caller how its transaction ended.
type Completion = Box<dyn FnOnce(Result<()>) + Send>;

/// A queued write, type-erased so that writes of every result type share one queue.
trait QueuedJob: Send {
    /// Runs against the transaction; says whether it succeeded and how to answer the caller.
    fn run<'t>(self: Box<Self>, tx: &'t mut WriteTx) -> BoxFuture<'t, (bool, Completion)>;
    /// Answers the caller without running (the transaction could not be started).
    fn fail(self: Box<Self>, error: StoreError);
}

type Job = Box<dyn QueuedJob>;

struct TypedJob<T, F> {
    job: F,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> QueuedJob for TypedJob<T, F>
where
    T: Send + 'static,
    F: for<'t> FnOnce(&'t mut WriteTx) -> BoxFuture<'t, Result<T>> + Send + 'static,
{
    fn run<'t>(self: Box<Self>, tx: &'t mut WriteTx) -> BoxFuture<'t, (bool, Completion)> {
        let TypedJob { job, reply } = *self;
        Box::pin(async move {
            let outcome = job(tx).await;
            let ok = outcome.is_ok();
            let completion: Completion = Box::new(move |commit: Result<()>| {
                let result = match (outcome, commit) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                };
                // The caller may have gone away (request cancelled); the write stands.
                let _ = reply.send(result);
            });
            (ok, completion)
        })
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
}

impl WriterHandle {
    pub(crate) async fn run<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut WriteTx) -> BoxFuture<'t, Result<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let boxed: Job = Box::new(TypedJob { job, reply });
        self.jobs
            .send(Request::Job(boxed))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
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
            let completions = run_batch(&pool, dialect, &mut batch, &committed, &access).await;
            for (completion, outcome) in completions {
                completion(outcome);
            }
        }
        if let Some(done) = closing {
            requests.close();
            pool.close().await;
            let _ = done.send(());
            return;
        }
    }
}

/// Runs one batch in one transaction; returns each job's completion with the outcome to report.
///
/// Every statement costs a round trip to the database (on SQLite, a hand-over to its worker
/// thread), so the bookkeeping statements between jobs travel together: the end of one job's
/// savepoint and the start of the next are one call, and the last job's end goes with the
/// commit.
async fn run_batch(
    pool: &AnyPool,
    dialect: Dialect,
    batch: &mut Vec<Job>,
    committed: &watch::Sender<i64>,
    access: &AccessCache,
) -> Vec<(Completion, Result<()>)> {
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
    let begin = match dialect {
        // IMMEDIATE takes the write lock up front, so a CLI process writing at the same time
        // waits (busy_timeout) instead of failing half-way.
        Dialect::Sqlite => "BEGIN IMMEDIATE; SAVEPOINT job",
        // The advisory lock serialises writers across instances so that event log sequence
        // numbers become visible in commit order: a tailer reading `seq > last` never skips a
        // late commit.
        Dialect::Postgres => "BEGIN; SELECT pg_advisory_xact_lock(7411); SAVEPOINT job",
    };
    if let Err(e) = tx.conn.execute(begin).await {
        let _ = tx.conn.execute("ROLLBACK").await;
        return fail_all(batch, e);
    }
    let mut done: Vec<Completion> = Vec::with_capacity(batch.len());
    let mut jobs = batch.drain(..).peekable();
    let mut last_step = "";
    while let Some(job) = jobs.next() {
        let seq_before = tx.last_event_seq;
        let (ok, completion) = job.run(&mut tx).await;
        done.push(completion);
        if !ok {
            tx.last_event_seq = seq_before;
        }
        let more = jobs.peek().is_some();
        let step = match (ok, more) {
            (true, true) => "RELEASE SAVEPOINT job; SAVEPOINT job",
            (true, false) => "RELEASE SAVEPOINT job",
            (false, true) => "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job; SAVEPOINT job",
            (false, false) => "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job",
        };
        if !more {
            last_step = step;
            break;
        }
        if let Err(e) = tx.conn.execute(step).await {
            let _ = tx.conn.execute("ROLLBACK").await;
            return abort(done, jobs, &e);
        }
    }
    let finish = match (dialect, tx.last_event_seq) {
        // Delivered to listeners at commit: other instances wake their tailers (scale-out).
        (Dialect::Postgres, Some(seq)) => {
            format!("{last_step}; SELECT pg_notify('weft_events', '{seq}'); COMMIT")
        }
        _ => format!("{last_step}; COMMIT"),
    };
    // The sequence number is an integer we produced, so formatting it into SQL is safe.
    let outcome = sqlx::raw_sql(sqlx::AssertSqlSafe(finish))
        .execute(&mut *tx.conn)
        .await;
    // Whatever happened, cached permissions may no longer hold; forget them before anyone
    // hears that the write is done.
    if tx.access_changed {
        access.invalidate();
    }
    match outcome {
        Ok(_) => {
            if let Some(seq) = tx.last_event_seq {
                committed.send_if_modified(|current| {
                    let newer = seq > *current;
                    if newer {
                        *current = seq;
                    }
                    newer
                });
            }
            done.into_iter().map(|c| (c, Ok(()))).collect()
        }
        Err(e) => {
            tracing::error!(error = %e, "commit failed; the batch's writes were rolled back");
            let _ = tx.conn.execute("ROLLBACK").await;
            done.into_iter()
                .map(|c| (c, Err(rejected("commit failed", &e))))
                .collect()
        }
    }
}

fn rejected(what: &str, e: &sqlx::Error) -> StoreError {
    StoreError::Rejected(format!("{what}: {e}"))
}

/// Ends a batch whose transaction broke: jobs that ran hear that it was rolled back, jobs that
/// had not run yet hear the same without running.
fn abort(
    done: Vec<Completion>,
    rest: impl Iterator<Item = Job>,
    e: &sqlx::Error,
) -> Vec<(Completion, Result<()>)> {
    tracing::error!(error = %e, "write transaction failed; the batch was rolled back");
    for job in rest {
        job.fail(rejected("transaction failed", e));
    }
    done.into_iter()
        .map(|c| (c, Err(rejected("transaction failed", e))))
        .collect()
}

/// Reports a failure to start the transaction to every job in the batch.
fn fail_all(batch: &mut Vec<Job>, e: sqlx::Error) -> Vec<(Completion, Result<()>)> {
    tracing::error!(error = %e, "could not start a write transaction");
    for job in batch.drain(..) {
        job.fail(rejected("database unavailable", &e));
    }
    Vec::new()
}
