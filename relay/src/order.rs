//! Where the order of events is decided, and what every node of a relay shares: the one
//! narrow trait between the core and its source of truth.
//!
//! - [`Local`]: one node. Its SQLite database is the truth; nobody else appends, so a group
//!   commit has nothing to lock or catch up on.
//! - [`crate::postgres::Postgres`]: a node of a cluster. PostgreSQL holds the log; a group
//!   commit locks its head, reads what other nodes appended since this node's offset, and
//!   appends after them. The node's SQLite database becomes its replica of that log (snapshots,
//!   history and search read it at a pinned offset, without a network round trip), kept in the
//!   same transaction as the engine, and rebuilt from PostgreSQL whenever it is behind.
//!
//! Either way the core's shape does not change: begin, catch up, validate with the engine,
//! append, commit, acknowledge.

use rusqlite::Connection;
use tally_shared::{Attachment, AttachmentId, Offset, Staff, StaffId};

use crate::storage;

/// The source of truth cannot be reached: nothing was stored, or (after a failed commit) the
/// outcome is unknown, so a client retries with the same `client_id`.
#[derive(Debug, thiserror::Error)]
#[error("the database is unavailable: {0}")]
pub struct Down(pub String);

/// The events others appended (as stored frames), in offset order.
pub type Frames = Vec<String>;

/// The records of an upload another node of a cluster shared: what it is, and who uploaded it
/// when (under what name). Its bytes are fetched apart, off the core (`postgres::Sharer`).
#[derive(Debug, Clone)]
pub struct SharedUpload {
    /// The file (its `name` is the first uploader's).
    pub attachment: Attachment,
    /// Each uploader, the name they gave it, and when (milliseconds since the epoch).
    pub uploads: Vec<(StaffId, String, u64)>,
}

pub use crate::storage::Preferences;

/// The source of truth behind one node.
pub trait Order: Send {
    /// A name for logs and `/health` (`sqlite`, `postgres`).
    fn kind(&self) -> &'static str;

    /// Starts a group commit after `after` (this node's offset): takes the log's head under a
    /// lock held until [`Order::commit`] or [`Order::abort`], and returns what others appended
    /// after `after`, which the caller applies before its own writes.
    fn begin(&mut self, after: Offset) -> Result<Frames, Down>;

    /// Appends `appended` (offsets following the head `begin` saw, with their frames), rewrites
    /// the earlier frames in `redacted` (what deletions took out of the log), and commits. An
    /// error leaves the outcome unknown: the caller rebuilds from what is stored.
    fn commit(&mut self, appended: &[(Offset, &str)], redacted: &[(Offset, String)]) -> Result<(), Down>;

    /// Gives the lock back without appending.
    fn abort(&mut self);

    /// Up to `limit` committed events after `after`, without locking (what a node reads when a
    /// doorbell rings, a client resumes from an offset it has not reached, or all is quiet).
    fn committed_after(&mut self, after: Offset, limit: usize) -> Result<Frames, Down>;

    /// Everyone on the staff table, and whether they are active.
    fn staff(&mut self, local: &Connection) -> anyhow::Result<Vec<(Staff, bool)>>;

    /// Whether staff or preferences may have been changed by someone else (another process
    /// on the same database, another node) since the last time this was asked: the 1 s tick
    /// reloads them only then. True when unsure.
    fn others_may_have_written(&mut self, local: &Connection) -> anyhow::Result<bool>;

    /// Reading what others wrote failed after `others_may_have_written` said so: the next
    /// call must say so again.
    fn reread_next_time(&mut self);

    /// Adds or renames a staff member (active).
    fn upsert_staff(&mut self, local: &Connection, staff: &Staff) -> anyhow::Result<()>;

    /// Mirrors staff from the host app in one transaction: sets each (true when it changed),
    /// and with `deactivate_missing` deactivates the active ones not listed. Returns how many
    /// changed and how many missing ones were deactivated.
    fn mirror_staff(
        &mut self,
        local: &mut Connection,
        staff: &[(Staff, bool)],
        deactivate_missing: bool,
    ) -> anyhow::Result<(Vec<bool>, usize)>;

    /// Everyone's preferences that differ from the defaults (one read per tick).
    fn preferences(&mut self, local: &Connection) -> anyhow::Result<Preferences>;

    /// Records whether `staff` hides their read state.
    fn set_read_state_hidden(
        &mut self,
        local: &Connection,
        staff: &StaffId,
        hidden: bool,
    ) -> anyhow::Result<()>;

    /// Records `staff`'s quiet hours and snooze.
    fn set_quiet(
        &mut self,
        local: &Connection,
        staff: &StaffId,
        quiet: &tally_shared::quiet::Quiet,
    ) -> anyhow::Result<()>;

    /// The records of an upload another node shared (none on a single node, or if nobody
    /// has it).
    fn fetch_upload(&mut self, id: &AttachmentId) -> Result<Option<SharedUpload>, Down>;

    /// Forgets shared uploads this node collected (nothing references them any more).
    fn forget_uploads(&mut self, ids: &[AttachmentId]) -> Result<(), Down>;

    /// The name of the live service key `presented` is, if it is one (asked at every call, so
    /// a revocation holds at once).
    fn find_service_key(&mut self, local: &Connection, presented: &str) -> anyhow::Result<Option<String>>;

    /// Brings this node's copy of the webhooks up to date (the delivery task reads it).
    fn sync_webhooks(&mut self, local: &Connection) -> anyhow::Result<()>;

    /// Whether this node sends `unread_reminder`s: one node of a cluster does (whichever holds
    /// the lock for it), so a quiet spell is reminded once, not once per node.
    fn leads_reminders(&mut self) -> bool;
}

/// One node on its own SQLite database (the default).
#[derive(Debug, Default)]
pub struct Local {
    /// SQLite's `data_version` when last asked: it moves when another connection (the CLI
    /// adding staff) commits, not for this connection's own commits.
    data_version: Option<i64>,
}

impl Order for Local {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn begin(&mut self, _after: Offset) -> Result<Frames, Down> {
        Ok(Vec::new())
    }

    fn commit(&mut self, _appended: &[(Offset, &str)], _redacted: &[(Offset, String)]) -> Result<(), Down> {
        // The caller's SQLite transaction is the commit.
        Ok(())
    }

    fn abort(&mut self) {}

    fn committed_after(&mut self, _after: Offset, _limit: usize) -> Result<Frames, Down> {
        Ok(Vec::new())
    }

    fn staff(&mut self, local: &Connection) -> anyhow::Result<Vec<(Staff, bool)>> {
        Ok(storage::load_staff(local)?)
    }

    fn others_may_have_written(&mut self, local: &Connection) -> anyhow::Result<bool> {
        let now: i64 = local.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        Ok(self.data_version.replace(now) != Some(now))
    }

    fn reread_next_time(&mut self) {
        self.data_version = None;
    }

    fn upsert_staff(&mut self, local: &Connection, staff: &Staff) -> anyhow::Result<()> {
        Ok(storage::upsert_staff(local, staff)?)
    }

    fn mirror_staff(
        &mut self,
        local: &mut Connection,
        staff: &[(Staff, bool)],
        deactivate_missing: bool,
    ) -> anyhow::Result<(Vec<bool>, usize)> {
        let tx = local.transaction()?;
        let mut changed = Vec::with_capacity(staff.len());
        for (s, active) in staff {
            changed.push(storage::set_staff(&tx, s, *active)?);
        }
        let mut deactivated = 0;
        if deactivate_missing {
            let listed: rustc_hash::FxHashSet<&StaffId> = staff.iter().map(|(s, _)| &s.id).collect();
            for (s, active) in storage::load_staff(&tx)? {
                if active && !listed.contains(&s.id) && storage::deactivate_staff(&tx, &s.id)? {
                    deactivated += 1;
                }
            }
        }
        tx.commit()?;
        Ok((changed, deactivated))
    }

    fn preferences(&mut self, local: &Connection) -> anyhow::Result<Preferences> {
        Ok(storage::load_preferences(local)?)
    }

    fn set_read_state_hidden(
        &mut self,
        local: &Connection,
        staff: &StaffId,
        hidden: bool,
    ) -> anyhow::Result<()> {
        Ok(storage::set_read_state_hidden(local, staff, hidden)?)
    }

    fn set_quiet(
        &mut self,
        local: &Connection,
        staff: &StaffId,
        quiet: &tally_shared::quiet::Quiet,
    ) -> anyhow::Result<()> {
        Ok(storage::set_quiet(local, staff, quiet)?)
    }

    fn fetch_upload(&mut self, _id: &AttachmentId) -> Result<Option<SharedUpload>, Down> {
        Ok(None)
    }

    fn forget_uploads(&mut self, _ids: &[AttachmentId]) -> Result<(), Down> {
        Ok(())
    }

    fn find_service_key(&mut self, local: &Connection, presented: &str) -> anyhow::Result<Option<String>> {
        Ok(crate::service_keys::find(local, presented)?)
    }

    fn sync_webhooks(&mut self, _local: &Connection) -> anyhow::Result<()> {
        Ok(())
    }

    fn leads_reminders(&mut self) -> bool {
        true
    }
}
