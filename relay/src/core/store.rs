//! The seam between the batch and storage: where a batch's transaction begins, where each
//! event is appended, and where it commits. The relay runs [`Sqlite`]; the simulation runs a
//! store that fails, tears and crashes these same calls on purpose.

use rusqlite::Connection;
use tally_shared::LoggedEvent;

use crate::storage;

/// What a batch does to storage, in order: `begin`, any number of `append`s, then `commit`
/// (or a rollback, see [`rollback`]).
pub(crate) trait LogStore: Send {
    /// Opens the batch's transaction.
    fn begin(&mut self, conn: &Connection) -> rusqlite::Result<()>;
    /// Appends one event (encoded as `text`) in the open transaction.
    fn append(&mut self, conn: &Connection, event: &LoggedEvent, text: &str) -> anyhow::Result<()>;
    /// Commits the open transaction, durably as the durability setting says. An error means
    /// it is rolled back, or that what is on disk is unknown (`storage::Failure::Fatal`).
    fn commit(&mut self, conn: &Connection) -> rusqlite::Result<()>;
}

/// The relay's store: this node's SQLite file.
pub(crate) struct Sqlite;

impl LogStore for Sqlite {
    fn begin(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        conn.execute_batch("BEGIN DEFERRED")
    }

    fn append(&mut self, conn: &Connection, event: &LoggedEvent, text: &str) -> anyhow::Result<()> {
        storage::append(conn, event, text)
    }

    fn commit(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        conn.execute_batch("COMMIT")
    }
}

/// Rolls back the open transaction, if there is one (after a failed commit SQLite may have
/// rolled it back already).
pub(crate) fn rollback(conn: &Connection) {
    if !conn.is_autocommit()
        && let Err(e) = conn.execute_batch("ROLLBACK")
    {
        tracing::warn!(error = %e, "a transaction could not be rolled back");
    }
}
