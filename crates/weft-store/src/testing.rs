//! Fresh stores for tests, on SQLite and on PostgreSQL, for this crate's conformance suite and
//! for extensions' suites (feature `testing`).
//!
//! PostgreSQL comes from `WEFT_TEST_POSTGRES_URL` (default: the local server with trust auth);
//! each store gets a fresh database. An unreachable PostgreSQL fails the test: tests never skip.

use crate::Store;

/// A fresh SQLite store in a temporary folder (kept alive by the returned guard).
pub async fn sqlite() -> (Store, Guard) {
    let (url, guard) = empty_sqlite();
    (Store::open(&url).await.expect("sqlite store opens"), guard)
}

/// A fresh PostgreSQL store in a database of its own.
pub async fn postgres() -> (Store, Guard) {
    let (url, guard) = empty_postgres().await;
    (
        Store::open(&url).await.expect("postgres store opens"),
        guard,
    )
}

/// The URL of a SQLite database not created yet, in a temporary folder: for tests of what
/// opening does to a database (upgrades from older schemas).
pub fn empty_sqlite() -> (String, Guard) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("weft.db").display());
    (url, Guard::Dir(dir))
}

/// The URL of a new, empty PostgreSQL database.
pub async fn empty_postgres() -> (String, Guard) {
    use sqlx::Executor;
    let admin_url = std::env::var("WEFT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    sqlx::any::install_default_drivers();
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {admin_url} is needed for the conformance suite (the test command starts one): {e}")
    });
    let name = format!("weft_test_{}", weft_core::Id::generate());
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create test database");
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(&admin_url);
    let url = format!("{base}/{name}");
    (url, Guard::Database { admin_url, name })
}

/// Cleans up after a test.
pub enum Guard {
    /// The SQLite folder, removed when dropped.
    Dir(#[allow(dead_code)] tempfile::TempDir),
    /// A PostgreSQL database, dropped by [`Guard::finish`].
    Database {
        /// Where to connect to drop it.
        admin_url: String,
        /// Its name.
        name: String,
    },
}

impl Guard {
    /// Drops a PostgreSQL test database once the store is closed.
    pub async fn finish(self, store: Store) {
        crate::close(store).await;
        if let Guard::Database { admin_url, name } = self {
            use sqlx::Executor;
            if let Ok(mut admin) =
                <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url).await
            {
                let _ = admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await;
            }
        }
    }
}
