//! What another crate needs to keep its own tables in weft's database, beside the chat's and
//! in the same write transactions: the read pool, the transaction's connection, column
//! readers, and a way to run its own migrations.
//!
//! The Matrix bridge is the user of this: its mapping tables, their migrations and their
//! queries live in `weft-matrix`, and the store knows nothing of Matrix. An extension reads
//! and writes only its own tables this way; the chat's tables it reaches through the chat.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool};
use weft_core::Id;

use crate::{Result, Store, WriteTx, rows};

pub use sqlx::migrate::Migrator;

impl Store {
    /// The pool for reads outside a write transaction.
    pub fn reader(&self) -> &AnyPool {
        self.pool()
    }

    /// Runs an extension's migrations (idempotent; safe to call at every start, from several
    /// instances at once). They share the migrations table with the store's own, so an
    /// extension numbers its migrations where the store's will never be (see the store's
    /// `migrations/README.md`).
    pub async fn migrate_extension(&self, migrator: &Migrator) -> Result<()> {
        let mut migrator = clone_migrator(migrator);
        migrator.set_ignore_missing(true);
        let mut conn = self.reader().acquire().await?;
        migrator.run(&mut *conn).await?;
        Ok(())
    }
}

/// A migrator is not `Clone`; its parts are.
fn clone_migrator(migrator: &Migrator) -> Migrator {
    let mut copy = Migrator::with_migrations(migrator.iter().cloned().collect());
    copy.set_locking(migrator.locking);
    copy
}

impl WriteTx {
    /// The transaction's connection, for an extension's own statements in the same write.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    /// `rows` rows of `columns` bind placeholders for a multi-row `VALUES` list in the
    /// transaction's dialect.
    pub fn values_list(&self, rows: usize, columns: usize) -> String {
        rows::values_list(self.dialect(), rows, columns)
    }

    /// How many rows go in one multi-row statement.
    pub fn rows_per_statement(&self) -> usize {
        rows::rows_per_statement(self.dialect())
    }
}

/// `n` bind placeholders for an `IN (…)` list in the store's dialect.
pub fn list_placeholders(store: &Store, n: usize) -> String {
    rows::list_placeholders(store.dialect(), n)
}

/// How many values fit in one `IN (…)` list.
pub fn values_per_list(store: &Store) -> usize {
    rows::rows_per_statement(store.dialect()) * 4
}

/// Reads a 24-hex id column.
pub fn id_column(row: &AnyRow, col: &str) -> Result<Id> {
    rows::id(row, col)
}
