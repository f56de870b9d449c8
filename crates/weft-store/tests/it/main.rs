//! The store's conformance suite: every test runs against SQLite and against PostgreSQL, so the
//! one set of queries is known to mean the same on both.
//!
//! PostgreSQL comes from `WEFT_TEST_POSTGRES_URL` (default: the local server with trust auth);
//! each test gets a fresh database. An unreachable PostgreSQL fails the tests: they never skip.

mod cases;

use weft_store::Store;
pub use weft_store::testing::{Guard, postgres, sqlite};

/// PostgreSQL only: after a bulk load the planner has no statistics until the store refreshes
/// them (with autovacuum off it never would), and plans a big room's first reads as if it
/// held a handful of messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statistics_are_refreshed() {
    use sqlx::Row;
    let (store, guard) = postgres().await;
    let Guard::Database { admin_url, name } = &guard else {
        panic!("a PostgreSQL store has a database guard");
    };
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("{base}/{name}"))
        .await
        .expect("connect to the test database");
    let analysed = async |conn: &mut sqlx::AnyConnection| -> bool {
        // -1 until the table is first analysed (PostgreSQL 14 and later).
        let row =
            sqlx::query("SELECT reltuples::float8 AS n FROM pg_class WHERE relname = 'messages'")
                .fetch_one(conn)
                .await
                .expect("read pg_class");
        row.try_get::<f64, _>("n").expect("reltuples") >= 0.0
    };
    assert!(
        !analysed(&mut conn).await,
        "a new database has no statistics yet"
    );
    store
        .refresh_statistics()
        .await
        .expect("refresh statistics");
    assert!(analysed(&mut conn).await, "the messages table was analysed");
    drop(conn);
    guard.finish(store).await;
}

/// Declares each case once per database.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, guard) = crate::sqlite().await;
                    crate::cases::$case(&store).await;
                    guard.finish(store).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, guard) = crate::postgres().await;
                    crate::cases::$case(&store).await;
                    guard.finish(store).await;
                }
            )*
        }
    };
}

conformance!(
    usernames_are_unique_ignoring_case,
    a_failed_job_rolls_back_its_change_and_its_event,
    concurrent_writes_commit_with_ordered_events,
    pages_of_the_timeline,
    threads_stay_out_of_the_main_feed,
    read_by_counts_follow_read_marks,
    reactions_are_counted_once_per_person,
    search_finds_words,
    deleting_a_thread_head_leaves_a_placeholder,
    messages_are_grouped_by_day_for_archives,
    unread_items_and_mentions,
    one_to_one_rooms_are_unique_per_pair,
    virtual_users_are_upserted,
    external_refs_are_unique,
    rooms_are_found_by_flattened_uri,
    virtual_bans_round_trip,
    fenced_writes_need_the_current_lease,
    users_are_found_by_part_of_their_name,
    readers_are_the_members_read_by_counts,
    cached_standing_follows_bans_roles_and_room_changes,
    failed_jobs_in_a_batch_leave_their_neighbours,
    batched_writes_store_every_row,
    messages_and_their_log_entries_are_written_together,
    replayable_jobs_that_fail_leave_their_neighbours,
    followers_can_skip_an_origin_unread,
);

/// PostgreSQL only: instances sharing one database learn of each other's commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commits_wake_other_instances() {
    let (first, guard) = postgres().await;
    let url = match &guard {
        Guard::Database { admin_url, name } => {
            format!(
                "{}/{name}",
                admin_url
                    .rsplit_once('/')
                    .map(|(b, _)| b)
                    .unwrap_or(admin_url)
            )
        }
        Guard::Dir(_) => unreachable!("postgres() returns a database"),
    };
    let second = Store::open(&url).await.expect("second instance opens");
    let mut watching = second.committed();
    let seq = cases::append_one_event(&first).await;
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while *watching.borrow_and_update() < seq {
            watching.changed().await.expect("watch open");
        }
    })
    .await
    .expect("the second instance heard of the first one's commit");
    weft_store::close(second).await;
    guard.finish(first).await;
}

/// The URL of a PostgreSQL test database, for a second instance on it.
fn database_url(guard: &Guard) -> String {
    match guard {
        Guard::Database { admin_url, name } => format!(
            "{}/{name}",
            admin_url
                .rsplit_once('/')
                .map(|(b, _)| b)
                .unwrap_or(admin_url)
        ),
        Guard::Dir(_) => unreachable!("postgres() returns a database"),
    }
}

/// PostgreSQL only: a lease is held by one instance at a time and passes on when given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_leases_are_exclusive() {
    let (first, guard) = postgres().await;
    let second = Store::open(&database_url(&guard))
        .await
        .expect("second instance opens");
    let lease = first
        .take_lease("outbound")
        .await
        .expect("first takes the lease");
    let waiting = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        second.take_lease("outbound"),
    )
    .await;
    assert!(
        waiting.is_err(),
        "the second instance must wait while the first holds the lease"
    );
    let epoch = lease.epoch();
    drop(lease);
    let taken = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        second.take_lease("outbound"),
    )
    .await;
    match taken {
        Ok(Ok(lease)) => assert_eq!(lease.epoch(), epoch + 1, "a new holder, a new epoch"),
        other => panic!(
            "the lease passes on once given up: {:?}",
            other.map(|r| r.err())
        ),
    }
    weft_store::close(second).await;
    guard.finish(first).await;
}

/// PostgreSQL only: when the session holding a lease dies under its holder (here
/// `pg_terminate_backend`; in life a PostgreSQL restart, an idle timeout, a pooler), another
/// instance takes the lease, and the first one can no longer write under it, and learns that
/// it lost the lease, while the new holder writes as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_lease_lost_with_its_session_fences_its_holder() {
    use sqlx::Executor;
    let (first, guard) = postgres().await;
    let second = Store::open(&database_url(&guard))
        .await
        .expect("second instance opens");
    let lease = first
        .take_lease("outbound")
        .await
        .expect("first takes the lease");
    let old = lease.fence().clone();
    let mut lost = lease.lost();
    cases::fenced_write(&first, &old)
        .await
        .expect("the holder writes");

    let backend = lease
        .backend_pid()
        .expect("a PostgreSQL lease has a backend");
    let Guard::Database { admin_url, .. } = &guard else {
        unreachable!("postgres() returns a database")
    };
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(admin_url)
        .await
        .expect("admin connection");
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "SELECT pg_terminate_backend({backend})"
        )))
        .await
        .expect("terminate the lease's session");

    let taken = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        second.take_lease("outbound"),
    )
    .await
    .expect("the second instance takes the lease once the first one's session is gone")
    .expect("lease");
    assert!(taken.epoch() > old.epoch());

    // The first instance's writer connection is fine; the fence refuses.
    let before = first.last_event_seq().await.expect("seq");
    let refused = cases::fenced_write(&first, &old).await;
    assert!(
        matches!(refused, Err(weft_store::StoreError::LeaseLost { .. })),
        "the first instance's write is fenced off: {refused:?}"
    );
    assert_eq!(first.last_event_seq().await.expect("seq"), before);
    tokio::time::timeout(std::time::Duration::from_secs(5), lost.wait_for(|l| *l))
        .await
        .expect("the first instance notices within a few checks")
        .expect("the watcher reports");
    assert!(lease.is_lost());

    let new = taken.fence().clone();
    let seq = cases::fenced_write(&second, &new)
        .await
        .expect("the new holder writes");
    assert!(seq > before);
    assert!(!taken.is_lost());
    drop(admin);
    weft_store::close(second).await;
    guard.finish(first).await;
}

/// SQLite serves one process: the lease is always at hand, yet each taking has a new epoch,
/// and a lease taken again behind its holder's back is reported lost to that holder.
#[tokio::test]
async fn sqlite_leases_are_immediate_and_fenced() {
    let (store, guard) = sqlite().await;
    let first = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        store.take_lease("outbound"),
    )
    .await
    .expect("at once")
    .expect("lease");
    let mut lost = first.lost();
    let second = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        store.take_lease("outbound"),
    )
    .await
    .expect("at once, even while held")
    .expect("lease");
    assert_eq!(second.epoch(), first.epoch() + 1);
    tokio::time::timeout(std::time::Duration::from_secs(5), lost.wait_for(|l| *l))
        .await
        .expect("the earlier holder learns that it lost the lease")
        .expect("the watcher reports");
    assert!(!second.is_lost());
    guard.finish(store).await;
}
