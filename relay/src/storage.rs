//! Durable storage in one SQLite file (WAL): the event log, the current state of each message
//! (for history and snapshots), staff, and attachment records. Only the writer thread writes.
//!
//! Deleting a message redacts it everywhere it was stored: its text and files in its own row
//! and in the log's events that carried them (creation and edits), and the excerpt of every
//! reply that quoted it. Its mentions stay, because replaying the log must count as before.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use tally_shared::engine::{Lookup, LookupFailed};
use tally_shared::protocol::{Event, LoggedEvent};
use tally_shared::quiet::Quiet;
use tally_shared::{
    Attachment, AttachmentId, ConversationId, Message, MessageId, Offset, Seq, Staff, StaffId,
};

use crate::packed::{MESSAGE_COLUMNS, message_json, pack_message};

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// `synchronous=FULL`: an acknowledged write survives power loss (the default).
    Full,
    /// `synchronous=NORMAL`: survives a crash of the relay, not of the machine. Faster.
    Normal,
}

const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE staff (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1
     );
     CREATE TABLE events (
        offset INTEGER PRIMARY KEY,
        conversation INTEGER NOT NULL,
        frame TEXT NOT NULL
     );
     CREATE TABLE messages (
        conversation INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        id INTEGER NOT NULL UNIQUE,
        payload TEXT NOT NULL,
        PRIMARY KEY (conversation, seq)
     ) WITHOUT ROWID;
     CREATE TABLE attachments (
        id TEXT PRIMARY KEY,
        content_type TEXT NOT NULL,
        size INTEGER NOT NULL
     );
     CREATE TABLE uploads (
        attachment TEXT NOT NULL REFERENCES attachments(id),
        staff TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (attachment, staff)
     ) WITHOUT ROWID;
     CREATE TABLE message_attachments (
        attachment TEXT NOT NULL,
        conversation INTEGER NOT NULL,
        PRIMARY KEY (attachment, conversation)
     ) WITHOUT ROWID;",
    // 2: uploads know when (quota, grace), files are referenced per message (a delete stops
    // serving them), and replies and message events are found by message (redaction).
    "ALTER TABLE uploads ADD COLUMN uploaded_at INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX uploads_by_staff ON uploads (staff, uploaded_at);
     CREATE TABLE message_files (
        attachment TEXT NOT NULL,
        message INTEGER NOT NULL,
        conversation INTEGER NOT NULL,
        PRIMARY KEY (attachment, message)
     ) WITHOUT ROWID;
     CREATE INDEX message_files_by_message ON message_files (message);
     INSERT OR IGNORE INTO message_files (attachment, message, conversation)
        SELECT json_extract(f.value, '$.id'), m.id, m.conversation
        FROM messages m, json_each(m.payload, '$.attachments') f;
     DROP TABLE message_attachments;
     ALTER TABLE messages ADD COLUMN reply_to INTEGER;
     UPDATE messages SET reply_to = json_extract(payload, '$.reply_to.message');
     CREATE INDEX messages_by_reply_to ON messages (reply_to) WHERE reply_to IS NOT NULL;
     ALTER TABLE events ADD COLUMN message INTEGER;
     UPDATE events SET message = CASE json_extract(frame, '$.type')
        WHEN 'message_created' THEN json_extract(frame, '$.message.id')
        WHEN 'message_edited' THEN json_extract(frame, '$.message') END;
     CREATE INDEX events_by_message ON events (message) WHERE message IS NOT NULL;",
    // 3: the log's identity, which checkpoints carry in their names: a checkpoint is only ever
    // loaded into the log it was taken from (a backup keeps its identity; it is its history).
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
     INSERT INTO meta (key, value) VALUES ('log_id', lower(hex(randomblob(8))));",
    // 4: the host app's side. Service keys (hashed), webhooks and their outbox (rows written
    // in the transaction of the events that cause them), the reminders sent (once per quiet
    // spell, across restarts), and what an import made of each outside id (re-importing finds
    // it: the importer loads them all, so they need no index; appended in id order, they cost
    // an import little).
    "CREATE TABLE service_keys (
        name TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
     );
     CREATE TABLE webhooks (
        id INTEGER PRIMARY KEY,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        events TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        removed_at INTEGER
     );
     CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        webhook INTEGER NOT NULL REFERENCES webhooks(id),
        event TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at INTEGER NOT NULL,
        last_error TEXT,
        failed_at INTEGER
     );
     CREATE INDEX outbox_due ON outbox (due_at) WHERE failed_at IS NULL;
     CREATE TABLE reminded (
        staff TEXT PRIMARY KEY,
        at INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE imported (
        kind TEXT NOT NULL,
        external TEXT NOT NULL,
        internal INTEGER NOT NULL
     );",
    // 5: staff members' own preferences (not the work app's, so the staff mirror leaves them),
    // and the full-text index of live messages' text (`search`): contentless (the text is in
    // `messages`), rowid = message id, accents folded, and only which messages hold a word
    // (`detail = none`: no positions, as searches are words, not phrases, newest first, not
    // ranked; it costs an import 30% less than positions), and a `scope` token naming the
    // conversation, so a search's scope is part of the index's query; filled from what is
    // there.
    "CREATE TABLE preferences (
        staff TEXT PRIMARY KEY,
        hide_read_state INTEGER NOT NULL DEFAULT 0
     ) WITHOUT ROWID;
     CREATE VIRTUAL TABLE message_text USING fts5(
        body, scope, content = '', contentless_delete = 1,
        tokenize = 'unicode61 remove_diacritics 2', detail = none
     );
     INSERT INTO message_text (rowid, body, scope)
        SELECT id, json_extract(payload, '$.body'), 'tallyin' || conversation FROM messages
        WHERE coalesce(json_extract(payload, '$.body'), '') != '';",
    // 6: webhook deliveries know the message they report (a deletion redacts the text of those
    // still pending), and carry an idempotency key unique for ever (the row id restarts once
    // the outbox has drained, so `{log}-{id}` repeated); rows already queued keep theirs.
    "ALTER TABLE outbox ADD COLUMN message INTEGER;
     ALTER TABLE outbox ADD COLUMN delivery TEXT;
     UPDATE outbox SET message = json_extract(body, '$.message.id') WHERE event = 'message_created';
     UPDATE outbox SET delivery = (SELECT value FROM meta WHERE key = 'log_id') || '-' || id;
     CREATE INDEX outbox_by_message ON outbox (message) WHERE message IS NOT NULL;",
    // 7: threads. A reply's root, so that a thread's page is read by an index.
    "ALTER TABLE messages ADD COLUMN thread INTEGER;
     UPDATE messages SET thread = json_extract(payload, '$.thread')
        WHERE json_extract(payload, '$.thread') IS NOT NULL;
     CREATE INDEX messages_by_thread ON messages (conversation, thread, seq) WHERE thread IS NOT NULL;",
    // 8: quiet hours and snooze, a preference of each person's own (JSON, `tally_shared::quiet`).
    "ALTER TABLE preferences ADD COLUMN quiet TEXT;",
    // 9: prefix indexes for the starts of words of 3 to 8 letters, so that a search for `pre*`
    // streams one list of messages newest first instead of merging the list of every word it
    // begins (linear in the messages that match: 23 ms per prefix at a million, 230 ms at ten
    // million; with the index under a millisecond). About 3.4 times the index's size (14.5 to
    // 50 bytes a message on the load generator's text). The index is rebuilt from the messages:
    // about 13 s per million, once, then merged into one segment (2 s per million; a word
    // search over a fresh single segment is about three times faster than over the many that
    // writes leave, which FTS5's own automerge keeps few).
    "DROP TABLE message_text;
     CREATE VIRTUAL TABLE message_text USING fts5(
        body, scope, content = '', contentless_delete = 1,
        tokenize = 'unicode61 remove_diacritics 2', detail = none, prefix = '3 4 5 6 7 8'
     );
     INSERT INTO message_text (rowid, body, scope)
        SELECT id, json_extract(payload, '$.body'), 'tallyin' || conversation FROM messages
        WHERE coalesce(json_extract(payload, '$.body'), '') != '';
     INSERT INTO message_text (message_text) VALUES ('optimize');",
    // 10: code ([`pack_stored`]).
    "",
    // 11: a message whose creation is stored as its row (frame '') knows that creation's offset
    // (`created`, NULL once the creation is written out), so the index of events by message
    // leaves those creations out: most messages never change, and the index held one entry
    // for each (13–14 of about 200 bytes a message, against 4–5 for the column). And the frames
    // that stay JSON ([`stays_json`]: someone joining) are indexed by conversation, which
    // [`joined_at`] scanned the whole log for: an entry for each join, nothing for messages.
    "ALTER TABLE messages ADD COLUMN created INTEGER;
     UPDATE messages SET created = (
        SELECT offset FROM events WHERE events.message = messages.id AND events.frame = ''
     );
     DROP INDEX events_by_message;
     CREATE INDEX events_by_message ON events (message) WHERE message IS NOT NULL AND frame <> '';
     CREATE INDEX events_in_json ON events (conversation) WHERE typeof(frame) = 'text' AND frame <> '';",
];

/// The migrations that are code, by the version they make (run after the SQL of that version,
/// which is empty for them).
fn code_migration(version: usize) -> Option<fn(&Connection) -> anyhow::Result<()>> {
    match version {
        10 => Some(pack_stored),
        _ => None,
    }
}

/// The number of migrations: [`MIGRATIONS`] and then the code ones.
const VERSIONS: usize = 11;
const _: () = assert!(MIGRATIONS.len() <= VERSIONS);

/// 10: messages stored once, and packed (see [`crate::packed`]). A message's creation in the
/// log is its row in `messages` (the frame is stored empty and rebuilt from the row, byte for
/// byte) until the message first changes, when the creation's frame is written out; the
/// messages' JSON and the log's other frames are packed, but for those SQL reads
/// ([`stays_json`]). Rewrites the whole log once: about 16 s per million messages
/// (`docs/benchmarks.md`). The file keeps its size until compacted (`backup`).
fn pack_stored(tx: &Connection) -> anyhow::Result<()> {
    const CHUNK: i64 = 20_000;
    let mut after = 0i64;
    loop {
        let rows: Vec<(i64, String, Option<String>)> = tx
            .prepare_cached(
                "SELECT e.offset, e.frame, m.payload FROM events e LEFT JOIN messages m ON m.id = e.message
                 WHERE e.offset > ?1 ORDER BY e.offset LIMIT ?2",
            )?
            .query_map([after, CHUNK], |r| {
                Ok((r.get(0)?, crate::packed::column(r, 1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        for (offset, frame, payload) in rows {
            let as_message =
                payload.is_some_and(|p| message_payload(Offset(offset as u64), &frame) == Some(p.as_str()));
            let stored = if as_message {
                rusqlite::types::Value::Text(String::new())
            } else if stays_json(&serde_json::from_str::<LoggedEvent>(&frame)?.event) {
                continue;
            } else {
                rusqlite::types::Value::Blob(crate::packed::pack(&frame))
            };
            tx.prepare_cached("UPDATE events SET frame = ?2 WHERE offset = ?1")?
                .execute(params![offset, stored])?;
        }
    }
    let mut after = i64::MIN;
    loop {
        let rows: Vec<(i64, i64, i64, String)> = tx
            .prepare_cached(
                "SELECT id, conversation, seq, payload FROM messages
                 WHERE id > ?1 AND typeof(payload) = 'text' ORDER BY id LIMIT ?2",
            )?
            .query_map([after, CHUNK], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        for (id, conversation, seq, payload) in rows {
            tx.prepare_cached("UPDATE messages SET payload = ?2 WHERE id = ?1")?
                .execute(params![id, pack_message(&payload, id, conversation, seq)])?;
        }
    }
    Ok(())
}

/// The schema version this build writes (the number of migrations).
pub fn schema_version() -> usize {
    VERSIONS
}

/// The identity of the log in this database (16 hex digits, made when the schema was).
pub fn log_id(conn: &Connection) -> anyhow::Result<String> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = 'log_id'", [], |r| r.get(0))?)
}

/// Binds this database to a cluster's log (`cluster`, PostgreSQL's `log_id`) as its replica:
/// an empty database joins; one that replicates another cluster, or that holds a log of its
/// own (a single node's), is refused, since its offsets mean something else.
pub fn join_cluster(conn: &Connection, cluster: &str) -> anyhow::Result<()> {
    let bound: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'cluster_log'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match bound {
        Some(b) if b == cluster => Ok(()),
        Some(b) => anyhow::bail!(
            "this data directory replicates cluster log {b}, not {cluster}: give the node an empty one"
        ),
        None => {
            anyhow::ensure!(
                last_offset(conn)? == 0,
                "this data directory holds a single node's log: a cluster node starts from an empty one \
                 (the cluster's PostgreSQL fills it)"
            );
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('cluster_log', ?1)",
                [cluster],
            )?;
            Ok(())
        }
    }
}

/// The database file under a data directory.
pub fn database(data: &Path) -> std::path::PathBuf {
    data.join("tally.sqlite3")
}

/// Writes a consistent copy of the database under `data` to `to` while the relay may be writing
/// (`VACUUM INTO` reads one snapshot of the WAL database); the offset it holds.
pub fn backup(data: &Path, to: &Path) -> anyhow::Result<u64> {
    anyhow::ensure!(!to.exists(), "{} exists already", to.display());
    let conn = Connection::open_with_flags(database(data), rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let target = to
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("the path is not UTF-8"))?;
    conn.execute("VACUUM INTO ?1", [target])?;
    last_offset(&Connection::open(to)?)
}

/// Restores a backup into `data`: refuses a data directory that has a database unless `force`;
/// checks the copy's integrity and migrates it. The offset it holds.
pub fn restore(from: &Path, data: &Path, force: bool) -> anyhow::Result<u64> {
    let target = database(data);
    anyhow::ensure!(
        force || !target.exists(),
        "{} has a database already (--force replaces it)",
        data.display()
    );
    let check = Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let verdict: String = check.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    anyhow::ensure!(verdict == "ok", "{} is damaged: {verdict}", from.display());
    drop(check);
    std::fs::create_dir_all(data)?;
    for stale in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(data.join(format!("tally.sqlite3{stale}")));
    }
    let partial = data.join("tally.sqlite3.restoring");
    std::fs::copy(from, &partial)?;
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, &target)?;
    let conn = open(data, Durability::Full)?;
    last_offset(&conn)
}

/// The offset of the last stored event (0 for an empty log).
pub fn last_offset(conn: &Connection) -> anyhow::Result<u64> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(offset), 0) FROM events", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

/// Takes the data directory's lock (`DATA/lock`): a serving relay holds it for as long as it
/// runs, and an import takes it, so the two never write the same log at once. Released when
/// the file is dropped, or the process ends however it ends.
pub fn lock(data: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(data)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data.join("lock"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "{} is in use by a running relay (or an import): stop it first",
            data.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// The writer's page cache, in KiB.
const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// Opens (creating and migrating) the database under `data`.
pub fn open(data: &Path, durability: Durability) -> anyhow::Result<Connection> {
    std::fs::create_dir_all(data)?;
    let conn = Connection::open(database(data))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The B-tree pages a commit touches stay cached (history spreads them over gigabytes).
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    migrate(&conn)?;
    Ok(conn)
}

/// Runs WAL checkpoints (copying committed pages from the WAL into the database) on a thread
/// of its own, every `every`, so that the writer's own automatic checkpoint (inside the commit
/// that crosses 1,000 pages) finds almost everything copied and synced already: on a database
/// of gigabytes its scattered writes and fsync were the writer's worst latencies. `PASSIVE`
/// never waits for readers or the writer; it cannot finish while commits keep coming, so the
/// writer's checkpoint stays on to finish the job and let the WAL start over (with only
/// passive checkpoints the WAL grew without bound). The thread stops when `stop` is dropped.
pub fn checkpoint_wal(
    data: &Path,
    every: std::time::Duration,
) -> anyhow::Result<std::sync::mpsc::Sender<()>> {
    let conn = Connection::open(database(data))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("tally-wal".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0));
                if let Err(e) = done {
                    tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                }
            }
        })?;
    Ok(stop)
}

/// A read-only connection to the database under `data` (already migrated by [`open`]): WAL
/// readers see committed state and never block the writer.
pub fn open_reader(data: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(
        database(data),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> anyhow::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for v in version + 1..=VERSIONS {
        let tx = conn.unchecked_transaction()?;
        if let Some(sql) = MIGRATIONS.get(v - 1) {
            tx.execute_batch(sql)?;
        }
        if let Some(code) = code_migration(v) {
            code(&tx)?;
        }
        tx.pragma_update(None, "user_version", v)?;
        tx.commit()?;
    }
    Ok(())
}

/// Every staff member, with whether they are active.
pub fn load_staff(conn: &Connection) -> rusqlite::Result<Vec<(Staff, bool)>> {
    let mut stmt = conn.prepare("SELECT id, name, active FROM staff ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        let id: String = r.get(0)?;
        Ok((id, r.get::<_, String>(1)?, r.get::<_, bool>(2)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, name, active) = row?;
        if let Ok(id) = StaffId::new(id) {
            out.push((Staff { id, name }, active));
        }
    }
    Ok(out)
}

/// Everyone's preferences that differ from the defaults, as stored (read once a tick;
/// both orders, the local one and PostgreSQL, return it).
#[derive(Debug, Default)]
pub struct Preferences {
    /// Who hides their read state.
    pub read_state_hidden: Vec<StaffId>,
    /// Quiet hours and snoozes, of those who set any.
    pub quiet: Vec<(StaffId, tally_shared::quiet::Quiet)>,
}

impl Preferences {
    /// Adds one stored row (a malformed id or setting is skipped: it cannot have been written
    /// by a relay).
    pub fn add(&mut self, staff: &str, read_state_hidden: bool, quiet: Option<&str>) {
        let Ok(id) = StaffId::new(staff) else { return };
        if let Some(q) = quiet.and_then(|json| serde_json::from_str(json).ok()) {
            self.quiet.push((id.clone(), q));
        }
        if read_state_hidden {
            self.read_state_hidden.push(id);
        }
    }
}

/// Everyone's preferences that differ from the defaults: who hides their read state (see
/// `Request::SetPreferences`), and quiet hours and snoozes. One query, for the 1 s tick.
pub fn load_preferences(conn: &Connection) -> rusqlite::Result<Preferences> {
    let mut stmt = conn.prepare(
        "SELECT staff, hide_read_state, quiet FROM preferences WHERE hide_read_state = 1 OR quiet IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, bool>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    let mut out = Preferences::default();
    for row in rows {
        let (id, hidden, quiet) = row?;
        out.add(&id, hidden, quiet.as_deref());
    }
    Ok(out)
}

/// Records whether a staff member hides their read state.
pub fn set_read_state_hidden(conn: &Connection, staff: &StaffId, hidden: bool) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO preferences (staff, hide_read_state) VALUES (?1, ?2)
         ON CONFLICT (staff) DO UPDATE SET hide_read_state = excluded.hide_read_state",
        rusqlite::params![staff.as_str(), hidden],
    )?;
    Ok(())
}

/// Records a staff member's quiet hours and snooze (none set: forgotten).
pub fn set_quiet(conn: &Connection, staff: &StaffId, quiet: &Quiet) -> rusqlite::Result<()> {
    let json = (*quiet != Quiet::default()).then(|| serde_json::to_string(quiet).expect("plain data"));
    conn.execute(
        "INSERT INTO preferences (staff, quiet) VALUES (?1, ?2)
         ON CONFLICT (staff) DO UPDATE SET quiet = excluded.quiet",
        rusqlite::params![staff.as_str(), json],
    )?;
    Ok(())
}

/// Adds a staff member, or renames and reactivates them.
pub fn upsert_staff(conn: &Connection, staff: &Staff) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO staff (id, name, active) VALUES (?1, ?2, 1)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, active = 1",
        params![staff.id.as_str(), staff.name],
    )?;
    Ok(())
}

/// Adds, renames, reactivates or deactivates a staff member (what the service API's staff
/// mirror does for each entry); whether anything changed.
pub fn set_staff(conn: &Connection, staff: &Staff, active: bool) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "INSERT INTO staff (id, name, active) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, active = excluded.active
         WHERE name IS NOT excluded.name OR active IS NOT excluded.active",
        params![staff.id.as_str(), staff.name, active],
    )? == 1)
}

/// Deactivates a staff member; false if there is none with that id.
pub fn deactivate_staff(conn: &Connection, id: &StaffId) -> rusqlite::Result<bool> {
    Ok(conn.execute("UPDATE staff SET active = 0 WHERE id = ?1", [id.as_str()])? == 1)
}

/// Calls `f` with every stored event, in offset order.
pub fn for_each_event(conn: &Connection, f: impl FnMut(LoggedEvent)) -> anyhow::Result<()> {
    for_each_event_after(conn, Offset(0), f)
}

/// Calls `f` with every stored event after `after`, in offset order.
pub fn for_each_event_after(
    conn: &Connection,
    after: Offset,
    mut f: impl FnMut(LoggedEvent),
) -> anyhow::Result<()> {
    for_each_frame(conn, after, Offset(u64::MAX), |_, frame| {
        f(serde_json::from_str(frame)?);
        Ok(true)
    })
}

/// Up to `limit` stored events after `after`, in offset order.
pub fn events_after(conn: &Connection, after: Offset, limit: usize) -> anyhow::Result<Vec<LoggedEvent>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    for_each_frame(conn, after, Offset(u64::MAX), |_, frame| {
        out.push(serde_json::from_str(frame)?);
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// The log's frames and their messages' rows, for [`stored_frame`].
const FRAMES: &str = "SELECT e.offset, e.frame, m.id, m.conversation, m.seq, m.payload FROM events e
    LEFT JOIN messages m ON e.frame = '' AND m.id = e.message";

/// Calls `f` with the stored frames (JSON, as sent) after `after` and up to `upto`, in offset
/// order, while it returns true.
pub fn for_each_frame(
    conn: &Connection,
    after: Offset,
    upto: Offset,
    mut f: impl FnMut(Offset, &str) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let mut stmt = conn.prepare_cached(&format!(
        "{FRAMES} WHERE e.offset > ?1 AND e.offset <= ?2 ORDER BY e.offset"
    ))?;
    let mut rows = stmt.query([after.0 as i64, upto.0.min(i64::MAX as u64) as i64])?;
    while let Some(row) = rows.next()? {
        let (offset, frame) = stored_frame(row)?;
        if !f(offset, &frame)? {
            break;
        }
    }
    Ok(())
}

/// The stored frames of a message's events (its creation and edits), in offset order: its
/// creation by the row's `created` while it is stored as the row, the others by the index.
pub fn message_frames(conn: &Connection, message: MessageId) -> rusqlite::Result<Vec<(Offset, String)>> {
    conn.prepare_cached(&format!(
        "{FRAMES} WHERE e.offset = (SELECT created FROM messages WHERE id = ?1)
            OR (e.message = ?1 AND e.frame <> '')
         ORDER BY e.offset"
    ))?
    .query_map([message.0 as i64], stored_frame)?
    .collect()
}

/// One row of [`FRAMES`]: its offset and its frame (rebuilt from its message's row for a
/// creation stored as its message).
fn stored_frame(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Offset, String)> {
    let offset = Offset(row.get::<_, i64>(0)? as u64);
    let frame = crate::packed::column(row, 1)?;
    if !frame.is_empty() {
        return Ok((offset, frame));
    }
    let payload = message_json(row, 2)?;
    Ok((offset, created_frame(offset, &payload)))
}

/// Whether an event's stored frame stays JSON text rather than packed: those that SQL reads
/// ([`joined_at`]).
fn stays_json(event: &Event) -> bool {
    matches!(event, Event::ParticipantAdded { .. })
}

/// The start of the `message_created` frame at `offset`; the message's JSON and `}` follow.
fn created_prefix(offset: Offset) -> String {
    format!(
        "{{\"offset\":{},\"type\":\"message_created\",\"message\":",
        offset.0
    )
}

/// The `message_created` frame at `offset` of the message whose JSON is `payload`.
fn created_frame(offset: Offset, payload: &str) -> String {
    let mut frame = created_prefix(offset);
    frame.push_str(payload);
    frame.push('}');
    frame
}

/// The message inside the `message_created` frame at `offset`, as its own JSON, when the frame
/// is exactly [`created_frame`] of it: then the log stores it once, as the message's row
/// (`None` for any other shape, which is stored as it is).
fn message_payload(offset: Offset, frame: &str) -> Option<&str> {
    let payload = frame
        .strip_prefix(created_prefix(offset).as_str())?
        .strip_suffix('}')?;
    payload.starts_with('{').then_some(payload)
}

/// Appends one event (`frame` is its JSON as sent) and keeps the messages it changes.
pub fn append(tx: &Connection, event: &LoggedEvent, frame: &str) -> anyhow::Result<()> {
    let conversation = event.event.conversation();
    let message = match &event.event {
        Event::MessageCreated { message } => Some(message.id),
        Event::MessageEdited { message, .. } => Some(*message),
        _ => None,
    };
    use rusqlite::types::{ToSqlOutput, Value, ValueRef};
    // A creation: the message's JSON, and whether the frame is exactly its `created_frame`, so
    // that the log stores it as the message's row (its frame empty).
    let created = match &event.event {
        Event::MessageCreated { message } => Some(match message_payload(event.offset, frame) {
            Some(payload) => (payload.to_string(), true),
            None => (serde_json::to_string(message)?, false),
        }),
        _ => None,
    };
    let as_row = matches!(created, Some((_, true)));
    let stored = if as_row {
        ToSqlOutput::Borrowed(ValueRef::Text(b""))
    } else if stays_json(&event.event) {
        ToSqlOutput::Borrowed(ValueRef::Text(frame.as_bytes()))
    } else {
        ToSqlOutput::Owned(Value::Blob(crate::packed::pack(frame)))
    };
    tx.prepare_cached("INSERT INTO events (offset, conversation, frame, message) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![
            event.offset.0 as i64,
            conversation.0 as i64,
            stored,
            message.map(|m| m.0 as i64)
        ])?;
    match &event.event {
        Event::MessageCreated { message } => {
            let payload = created.map(|(p, _)| p).unwrap_or_default();
            tx.prepare_cached(
                "INSERT INTO messages (conversation, seq, id, payload, reply_to, thread, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                conversation.0 as i64,
                message.seq.0 as i64,
                message.id.0 as i64,
                pack_message(
                    &payload,
                    message.id.0 as i64,
                    conversation.0 as i64,
                    message.seq.0 as i64
                ),
                message.reply_to.as_ref().map(|r| r.message.0 as i64),
                message.thread.map(|t| t.0 as i64),
                as_row.then_some(event.offset.0 as i64),
            ])?;
            crate::search::index_new(tx, message.id, conversation, &message.body)?;
            for a in &message.attachments {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO message_files (attachment, message, conversation) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![a.id.as_str(), message.id.0 as i64, conversation.0 as i64])?;
            }
        }
        Event::MessageEdited {
            message, seq, body, ..
        } => {
            update_message(tx, conversation, *seq, |m| event.event.change_message(m))?;
            crate::search::index(tx, *message, conversation, Some(body))?;
        }
        Event::ReactionChanged { seq, .. } => {
            update_message(tx, conversation, *seq, |m| event.event.change_message(m))?;
        }
        Event::MessageDeleted { seq, message, .. } => {
            update_message(tx, conversation, *seq, |m| event.event.change_message(m))?;
            crate::search::index(tx, *message, conversation, None)?;
            redact(tx, *message)?;
        }
        _ => {}
    }
    Ok(())
}

/// Removes a deleted message's text and files from the log's events that carried them, stops
/// serving its files, and redacts the excerpt of every reply that quoted it.
fn redact(tx: &Connection, deleted: MessageId) -> anyhow::Result<()> {
    tx.prepare_cached("DELETE FROM message_files WHERE message = ?1")?
        .execute([deleted.0 as i64])?;
    rewrite_events(tx, deleted, |event| match event {
        Event::MessageCreated { message } => {
            message.body.clear();
            message.attachments.clear();
        }
        Event::MessageEdited { body, .. } => body.clear(),
        _ => {}
    })?;
    let replies: Vec<(i64, i64, i64)> = tx
        .prepare_cached("SELECT conversation, seq, id FROM messages WHERE reply_to = ?1")?
        .query_map([deleted.0 as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (conversation, seq, id) in replies {
        let quote = |m: &mut Message| {
            m.redact_quote_of(deleted);
        };
        update_message(tx, ConversationId(conversation as u64), Seq(seq as u64), quote)?;
        rewrite_events(tx, MessageId(id as u64), |event| {
            if let Event::MessageCreated { message } = event {
                quote(message);
            }
        })?;
    }
    // Webhook deliveries still waiting (or retrying) carry the message as stored now.
    redact_pending(tx, deleted)?;
    Ok(())
}

/// Rewrites the webhook deliveries still waiting that carry `deleted` (its own, and those of
/// replies quoting it) to carry the messages as they are stored now, redacted (inside the
/// deletion's transaction).
fn redact_pending(conn: &Connection, deleted: MessageId) -> rusqlite::Result<usize> {
    let pending: Vec<(i64, String)> = conn
        .prepare_cached(
            "SELECT o.id, m.id, m.conversation, m.seq, m.payload FROM outbox o JOIN messages m ON o.message = m.id
             WHERE o.event = 'message_created' AND (m.id = ?1 OR m.reply_to = ?1)",
        )?
        .query_map([deleted.0 as i64], |r| Ok((r.get(0)?, message_json(r, 1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, message) in &pending {
        conn.prepare_cached("UPDATE outbox SET body = json_set(body, '$.message', json(?2)) WHERE id = ?1")?
            .execute(params![id, message])?;
    }
    Ok(pending.len())
}

/// The stored frames a deletion of `deleted` rewrote (in `tx`, after `append`): the deleted
/// messages' events and those of replies quoting them, for a cluster's PostgreSQL to rewrite
/// alike (deleted text must leave every copy of the log).
pub fn redacted_frames(tx: &Connection, deleted: &[MessageId]) -> anyhow::Result<Vec<(Offset, String)>> {
    let mut out = Vec::new();
    for id in deleted {
        let mut ids = vec![id.0 as i64];
        ids.extend(
            tx.prepare_cached("SELECT id FROM messages WHERE reply_to = ?1")?
                .query_map([id.0 as i64], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?,
        );
        for m in ids {
            out.extend(message_frames(tx, MessageId(m as u64))?);
        }
    }
    Ok(out)
}

/// Rewrites the stored frames of a message's events (its creation and edits).
fn rewrite_events(tx: &Connection, message: MessageId, change: impl Fn(&mut Event)) -> anyhow::Result<()> {
    for (offset, frame) in message_frames(tx, message)? {
        let mut event: LoggedEvent = serde_json::from_str(&frame)?;
        change(&mut event.event);
        let frame = crate::packed::pack(&tally_shared::protocol::encode(&event));
        tx.prepare_cached("UPDATE events SET frame = ?2 WHERE offset = ?1")?
            .execute(params![offset.0 as i64, frame])?;
    }
    Ok(())
}

/// Changes a stored message. Its creation, stored as its row until now, is written out first:
/// the log keeps what was sent.
fn update_message(
    tx: &Connection,
    conversation: ConversationId,
    seq: Seq,
    change: impl FnOnce(&mut Message),
) -> anyhow::Result<()> {
    let key = params![conversation.0 as i64, seq.0 as i64];
    let (id, payload, created): (i64, String, Option<i64>) = tx
        .prepare_cached(&format!(
            "SELECT id, {MESSAGE_COLUMNS}, created FROM messages WHERE conversation = ?1 AND seq = ?2"
        ))?
        .query_row(key, |r| Ok((r.get(0)?, message_json(r, 1)?, r.get(5)?)))?;
    if let Some(offset) = created {
        let frame = created_frame(Offset(offset as u64), &payload);
        tx.prepare_cached("UPDATE events SET frame = ?2 WHERE offset = ?1")?
            .execute(params![offset, crate::packed::pack(&frame)])?;
    }
    let mut m: Message = serde_json::from_str(&payload)?;
    change(&mut m);
    tx.prepare_cached(
        "UPDATE messages SET payload = ?3, created = NULL WHERE conversation = ?1 AND seq = ?2",
    )?
    .execute(params![
        conversation.0 as i64,
        seq.0 as i64,
        pack_message(
            &serde_json::to_string(&m)?,
            id,
            conversation.0 as i64,
            seq.0 as i64
        )
    ])?;
    Ok(())
}

/// One version of a message's text: what it said from `at`, until the next version (the log's
/// offset of the event that wrote it decides who saw it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Version {
    /// The text.
    pub body: String,
    /// Where it mentioned people.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mention_ranges: Vec<tally_shared::mentions::MentionRange>,
    /// When it was written (sent, or edited to this).
    pub at: tally_shared::Millis,
    /// The event that wrote it.
    #[serde(skip)]
    pub offset: Offset,
}

/// A message's stored versions, oldest first (its send, then each edit), with its
/// conversation and whether it was deleted; `None` when there is no such message.
pub fn message_versions(
    conn: &Connection,
    message: MessageId,
) -> rusqlite::Result<Option<(ConversationId, bool, Vec<Version>)>> {
    let mut found: Option<(ConversationId, bool)> = None;
    let mut versions = Vec::new();
    for (_, frame) in message_frames(conn, message)? {
        let Ok(e) = serde_json::from_str::<LoggedEvent>(&frame) else {
            continue;
        };
        match e.event {
            Event::MessageCreated { message: m } => {
                found = Some((m.conversation, m.deleted));
                versions.push(Version {
                    body: m.body,
                    mention_ranges: m.mention_ranges,
                    at: m.created_at,
                    offset: e.offset,
                });
            }
            Event::MessageEdited {
                body,
                mention_ranges,
                edited_at,
                ..
            } => versions.push(Version {
                body,
                mention_ranges,
                at: edited_at,
                offset: e.offset,
            }),
            _ => {}
        }
    }
    let Some((conversation, _)) = found else {
        return Ok(None);
    };
    let deleted = SqlLookup(conn)
        .message(message)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.0.into()))?
        .is_none_or(|m| m.deleted);
    Ok(Some((conversation, deleted, versions)))
}

/// The offset at which `staff` last joined a conversation (none: they were in it from its
/// start).
pub fn joined_at(
    conn: &Connection,
    conversation: ConversationId,
    staff: &StaffId,
) -> rusqlite::Result<Option<Offset>> {
    let at: Option<i64> = conn.query_row(
        // Only some frames are JSON text ([`stays_json`]); the others are packed, or empty.
        // `events_in_json` holds those, by conversation (the CASE keeps json_extract off the
        // others whatever order SQLite tries the terms in).
        "SELECT max(offset) FROM events WHERE conversation = ?1
           AND typeof(frame) = 'text' AND frame <> ''
           AND CASE WHEN typeof(frame) = 'text' AND frame <> ''
                    THEN json_extract(frame, '$.type') = 'participant_added'
                         AND json_extract(frame, '$.staff') = ?2 END",
        params![conversation.0 as i64, staff.as_str()],
        |r| r.get(0),
    )?;
    Ok(at.map(|o| Offset(o as u64)))
}

/// Messages `from..=to` of a conversation, in order.
pub fn message_range(
    conn: &Connection,
    conversation: ConversationId,
    from: Seq,
    to: Seq,
) -> rusqlite::Result<Vec<Message>> {
    let mut stmt = conn.prepare_cached(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq"
        ),
    )?;
    let rows = stmt.query_map(params![conversation.0 as i64, from.0 as i64, to.0 as i64], |r| {
        message_json(r, 0)
    })?;
    let mut out = Vec::new();
    for row in rows {
        // A row that does not decode is a broken store: callers rely on contiguous messages.
        let m = serde_json::from_str(&row?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?;
        out.push(m);
    }
    Ok(out)
}

/// Calls `take(message, bytes)` for the stored messages `from..=to` of a conversation, newest
/// first, until it returns false (`bytes`: its JSON's length, what it adds to a frame).
pub fn messages_newest_first(
    conn: &Connection,
    conversation: ConversationId,
    from: Seq,
    to: Seq,
    take: &mut dyn FnMut(Message, usize) -> bool,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq DESC"
        ),
    )?;
    let mut rows = stmt.query(params![conversation.0 as i64, from.0 as i64, to.0 as i64])?;
    while let Some(row) = rows.next()? {
        let payload = message_json(row, 0)?;
        let m = serde_json::from_str(&payload).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?;
        if !take(m, payload.len()) {
            break;
        }
    }
    Ok(())
}

/// A page of messages `from..=to`, in order, cut from the oldest end to at most `max_bytes` of
/// JSON (at least the newest one): the next page starts before its first message.
pub fn message_page(
    conn: &Connection,
    conversation: ConversationId,
    from: Seq,
    to: Seq,
    max_bytes: usize,
) -> rusqlite::Result<Vec<Message>> {
    let mut page = Vec::new();
    let mut bytes = 0;
    messages_newest_first(conn, conversation, from, to, &mut |m, len| {
        if !page.is_empty() && bytes + len > max_bytes {
            return false;
        }
        bytes += len;
        page.push(m);
        true
    })?;
    page.reverse();
    Ok(page)
}

/// Which thread a page of history is of: its root, the page's end (exclusive; none: the
/// newest) and how many messages at most.
#[derive(Debug, Clone, Copy)]
pub struct ThreadPage {
    /// The root's seq.
    pub root: Seq,
    /// Messages before this seq.
    pub before: Option<Seq>,
    /// At most this many.
    pub limit: u64,
}

/// A page of history: messages `from..=to` of a conversation, or one thread's page.
pub fn history_page(
    conn: &Connection,
    conversation: ConversationId,
    (from, to): (Seq, Seq),
    thread: Option<ThreadPage>,
    max_bytes: usize,
) -> rusqlite::Result<Vec<Message>> {
    match thread {
        None => message_page(conn, conversation, from, to, max_bytes),
        Some(t) => thread_page(conn, conversation, t.root, t.before, t.limit, max_bytes),
    }
}

/// A page of a thread: its root and replies before `before` (all when `None`), the newest
/// `limit` of them, in order, cut from the oldest end to at most `max_bytes` of JSON (at least
/// the newest one). The root comes first once the page reaches back to it.
pub fn thread_page(
    conn: &Connection,
    conversation: ConversationId,
    root: Seq,
    before: Option<Seq>,
    limit: u64,
    max_bytes: usize,
) -> rusqlite::Result<Vec<Message>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM (
                SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation = ?1 AND thread = ?2 AND seq < ?3
                UNION ALL
                SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation = ?1 AND seq = ?2 AND seq < ?3
             ) ORDER BY seq DESC LIMIT ?4"
    ))?;
    let before = before.map_or(i64::MAX, |b| b.0 as i64);
    let mut rows = stmt.query(params![
        conversation.0 as i64,
        root.0 as i64,
        before,
        limit as i64
    ])?;
    let (mut page, mut bytes) = (Vec::new(), 0);
    while let Some(row) = rows.next()? {
        let payload = message_json(row, 0)?;
        if !page.is_empty() && bytes + payload.len() > max_bytes {
            break;
        }
        bytes += payload.len();
        let m: Message = serde_json::from_str(&payload).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?;
        page.push(m);
    }
    page.reverse();
    Ok(page)
}

/// Records an upload (the bytes are already stored under their content address) at `now`
/// (milliseconds since the epoch).
pub fn record_upload(
    conn: &Connection,
    uploader: &StaffId,
    a: &Attachment,
    now: u64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO attachments (id, content_type, size) VALUES (?1, ?2, ?3)",
        params![a.id.as_str(), a.content_type, a.size as i64],
    )?;
    conn.execute(
        "INSERT INTO uploads (attachment, staff, name, uploaded_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (attachment, staff) DO UPDATE SET name = excluded.name, uploaded_at = excluded.uploaded_at",
        params![a.id.as_str(), uploader.as_str(), a.name, now as i64],
    )?;
    Ok(())
}

/// The bytes a staff member uploaded since `since` (each distinct file once).
pub fn uploaded_bytes_since(conn: &Connection, uploader: &StaffId, since: u64) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT COALESCE(SUM(a.size), 0) FROM uploads u JOIN attachments a ON a.id = u.attachment
         WHERE u.staff = ?1 AND u.uploaded_at >= ?2",
    )?
    .query_row(params![uploader.as_str(), since as i64], |r| r.get::<_, i64>(0))
    .map(|n| n as u64)
}

/// Where a stored attachment is used, and what it is.
#[derive(Debug, Clone)]
pub struct AttachmentUse {
    /// Sniffed media type.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Conversations whose live (not deleted) messages reference it.
    pub conversations: Vec<ConversationId>,
    /// Staff who uploaded it since the cut-off asked for.
    pub uploaders: Vec<StaffId>,
}

/// Where a stored attachment is used, if it is stored; uploads before `uploaded_since` do not
/// count (after the grace period only a live message gives access).
pub fn attachment_use(
    conn: &Connection,
    id: &AttachmentId,
    uploaded_since: u64,
) -> rusqlite::Result<Option<AttachmentUse>> {
    let Some((content_type, size)) = conn
        .prepare_cached("SELECT content_type, size FROM attachments WHERE id = ?1")?
        .query_row([id.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let conversations = conn
        .prepare_cached("SELECT DISTINCT conversation FROM message_files WHERE attachment = ?1")?
        .query_map([id.as_str()], |r| Ok(ConversationId(r.get::<_, i64>(0)? as u64)))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut uploaders = Vec::new();
    let mut stmt =
        conn.prepare_cached("SELECT staff FROM uploads WHERE attachment = ?1 AND uploaded_at >= ?2")?;
    for staff in stmt.query_map(params![id.as_str(), uploaded_since as i64], |r| {
        r.get::<_, String>(0)
    })? {
        if let Ok(staff) = StaffId::new(staff?) {
            uploaders.push(staff);
        }
    }
    Ok(Some(AttachmentUse {
        content_type,
        size,
        conversations,
        uploaders,
    }))
}

/// Forgets every attachment that no live message references and nobody uploaded since
/// `uploaded_before`; returns their ids, whose files the caller deletes.
pub fn collect_attachments(conn: &Connection, uploaded_before: u64) -> rusqlite::Result<Vec<AttachmentId>> {
    let tx = conn.unchecked_transaction()?;
    let ids: Vec<String> = tx
        .prepare(
            "SELECT a.id FROM attachments a
             WHERE NOT EXISTS (SELECT 1 FROM message_files f WHERE f.attachment = a.id)
               AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.attachment = a.id AND u.uploaded_at >= ?1)",
        )?
        .query_map([uploaded_before as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        tx.execute("DELETE FROM uploads WHERE attachment = ?1", [id])?;
        tx.execute("DELETE FROM attachments WHERE id = ?1", [id])?;
    }
    tx.commit()?;
    Ok(ids
        .into_iter()
        .filter_map(|id| AttachmentId::new(id).ok())
        .collect())
}

/// Notes that `staff` was sent an `unread_reminder` at `at` (so a restart does not send it
/// again in the same quiet spell).
pub fn note_reminded(conn: &Connection, staff: &StaffId, at: tally_shared::Millis) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO reminded (staff, at) VALUES (?1, ?2)",
        params![staff.as_str(), at.0 as i64],
    )
    .map(|_| ())
}

/// Who was reminded in their current quiet spell.
pub fn reminded(conn: &Connection) -> rusqlite::Result<Vec<StaffId>> {
    let mut stmt = conn.prepare("SELECT staff FROM reminded")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut staff = Vec::new();
    for id in rows {
        if let Ok(id) = StaffId::new(id?) {
            staff.push(id);
        }
    }
    Ok(staff)
}

/// Forgets that `staff` was reminded: their quiet spell is over.
pub fn forget_reminded(conn: &Connection, staff: &StaffId) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM reminded WHERE staff = ?1", [staff.as_str()])
        .map(|_| ())
}

/// What the engine asks storage for, answered inside the writer's open transaction so that
/// writes earlier in the same batch are visible. A read that fails is a
/// [`tally_shared::engine::LookupFailed`]: the write that asked is refused as `unavailable`
/// (answering "no such message" instead would refuse a valid write, or store a retry twice).
pub struct SqlLookup<'a>(pub &'a Connection);

impl Lookup for SqlLookup<'_> {
    fn message(&self, id: MessageId) -> Result<Option<Message>, LookupFailed> {
        let failed = |e: &dyn std::fmt::Display| LookupFailed(e.to_string());
        let payload: Option<String> = self
            .0
            .prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"))
            .and_then(|mut s| s.query_row([id.0 as i64], |r| message_json(r, 0)).optional())
            .map_err(|e| failed(&e))?;
        payload
            .map(|p| serde_json::from_str(&p).map_err(|e| failed(&e)))
            .transpose()
    }

    fn message_at(&self, conversation: ConversationId, seq: Seq) -> Result<Option<Message>, LookupFailed> {
        let failed = |e: &dyn std::fmt::Display| LookupFailed(e.to_string());
        let payload: Option<String> = self
            .0
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation = ?1 AND seq = ?2"
            ))
            .and_then(|mut s| {
                s.query_row([conversation.0 as i64, seq.0 as i64], |r| message_json(r, 0))
                    .optional()
            })
            .map_err(|e| failed(&e))?;
        payload
            .map(|p| serde_json::from_str(&p).map_err(|e| failed(&e)))
            .transpose()
    }

    fn attachment(&self, id: &AttachmentId, uploader: &StaffId) -> Result<Option<Attachment>, LookupFailed> {
        self.0
            .prepare_cached(
                "SELECT u.name, a.content_type, a.size FROM uploads u JOIN attachments a ON a.id = u.attachment
                 WHERE u.attachment = ?1 AND u.staff = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![id.as_str(), uploader.as_str()], |r| {
                    Ok(Attachment {
                        id: id.clone(),
                        name: r.get(0)?,
                        content_type: r.get(1)?,
                        size: r.get::<_, i64>(2)? as u64,
                    })
                })
                .optional()
            })
            .map_err(|e| LookupFailed(e.to_string()))
    }
}

/// What a storage failure means for the relay (`docs/operations.md`, "When storage fails").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The disk is full: SQLite rolled the transaction back, and what is committed is intact.
    /// Writes are refused (`unavailable`) until a write succeeds again; reads go on.
    Full,
    /// A write or read failed without harming what is committed (an I/O error SQLite rolled
    /// back, a busy or read-only database): handled as [`Failure::Full`].
    Transient,
    /// What is on disk is unknown (a sync to disk failed, whose data the kernel may have
    /// dropped; the database is corrupt; a stored event does not parse): the relay stops, and a
    /// restart recovers from what the log holds. A failed sync is never retried as if it had
    /// succeeded.
    Fatal,
}

impl Failure {
    /// What a SQLite error means.
    pub fn of(e: &rusqlite::Error) -> Failure {
        use rusqlite::ffi;
        match e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                ffi::ErrorCode::DiskFull => Failure::Full,
                ffi::ErrorCode::DatabaseCorrupt | ffi::ErrorCode::NotADatabase => Failure::Fatal,
                ffi::ErrorCode::SystemIoFailure
                    if matches!(
                        f.extended_code,
                        ffi::SQLITE_IOERR_FSYNC | ffi::SQLITE_IOERR_DIR_FSYNC
                    ) =>
                {
                    Failure::Fatal
                }
                _ => Failure::Transient,
            },
            // A stored value that does not decode: the database holds what this relay did not
            // write.
            rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
                Failure::Fatal
            }
            _ => Failure::Transient,
        }
    }

    /// What any storage error means: a SQLite one by its code, an I/O one by its kind
    /// (`ENOSPC` is full), anything else (a stored event that does not parse) fatal.
    pub fn of_any(e: &anyhow::Error) -> Failure {
        if let Some(e) = e.downcast_ref::<rusqlite::Error>() {
            return Failure::of(e);
        }
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            return match e.kind() {
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Failure::Full,
                _ => Failure::Transient,
            };
        }
        Failure::Fatal
    }
}

#[cfg(test)]
mod tests {
    use tally_shared::protocol::encode;
    use tally_shared::{ConversationId, Message, MessageId, Millis, Seq, StaffId};

    use super::*;

    #[test]
    fn storage_failures_mean_what_they_say() {
        use rusqlite::ffi;
        let sqlite = |code: i32| rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
        assert_eq!(Failure::of(&sqlite(ffi::SQLITE_FULL)), Failure::Full);
        // A failed sync is never retried as if it had succeeded.
        assert_eq!(Failure::of(&sqlite(ffi::SQLITE_IOERR_FSYNC)), Failure::Fatal);
        assert_eq!(Failure::of(&sqlite(ffi::SQLITE_IOERR_DIR_FSYNC)), Failure::Fatal);
        assert_eq!(Failure::of(&sqlite(ffi::SQLITE_CORRUPT)), Failure::Fatal);
        assert_eq!(Failure::of(&sqlite(ffi::SQLITE_NOTADB)), Failure::Fatal);
        assert_eq!(Failure::of(&sqlite(ffi::SQLITE_IOERR_WRITE)), Failure::Transient);
        assert_eq!(Failure::of(&sqlite(ffi::SQLITE_BUSY)), Failure::Transient);
        assert_eq!(Failure::of(&sqlite(ffi::SQLITE_READONLY)), Failure::Transient);
        let io = |kind| anyhow::Error::from(std::io::Error::from(kind));
        assert_eq!(
            Failure::of_any(&io(std::io::ErrorKind::StorageFull)),
            Failure::Full
        );
        assert_eq!(
            Failure::of_any(&io(std::io::ErrorKind::PermissionDenied)),
            Failure::Transient
        );
        assert_eq!(
            Failure::of_any(&anyhow::Error::from(sqlite(ffi::SQLITE_FULL))),
            Failure::Full
        );
        assert_eq!(
            Failure::of_any(&anyhow::anyhow!("an event does not parse")),
            Failure::Fatal
        );
    }

    /// Message 7, seq 3 of conversation 2, from alice.
    fn alices_message(body: &str) -> Message {
        Message {
            reactions: Vec::new(),
            mention_ranges: Vec::new(),
            thread: None,
            id: MessageId(7),
            conversation: ConversationId(2),
            seq: Seq(3),
            sender: StaffId::new("alice").unwrap(),
            body: body.into(),
            mentions: Vec::new(),
            attachments: Vec::new(),
            reply_to: None,
            forwarded_from: None,
            notice: None,
            client_id: None,
            created_at: Millis(1),
            edited_at: None,
            deleted: false,
        }
    }

    #[test]
    fn a_message_is_stored_once_and_its_creation_reads_as_sent_after_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path(), Durability::Normal).unwrap();
        let message = alices_message("the door code is 4711");
        let created = LoggedEvent {
            offset: Offset(1),
            event: Event::MessageCreated { message },
        };
        append(&conn, &created, &encode(&created)).unwrap();
        let stored = |offset: i64| -> (String, usize) {
            conn.query_row(
                "SELECT typeof(frame), length(frame) FROM events WHERE offset = ?1",
                [offset],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        // Once: the creation is its message's row, which knows its offset (not the index).
        assert_eq!(stored(1), ("text".into(), 0));
        let creation_at = || -> Option<i64> {
            conn.query_row("SELECT created FROM messages WHERE id = 7", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(creation_at(), Some(1));
        let indexed = || -> i64 {
            conn.query_row(
                "SELECT count(*) FROM events INDEXED BY events_by_message WHERE message = 7 AND frame <> ''",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(indexed(), 0);
        let row: String = conn
            .query_row("SELECT payload FROM messages WHERE id = 7", [], |r| {
                crate::packed::column(r, 0)
            })
            .unwrap();
        assert!(
            row.starts_with("\"sender\":\"alice\""),
            "its key is in columns: {row}"
        );
        assert_eq!(
            message_frames(&conn, MessageId(7)).unwrap(),
            [(Offset(1), encode(&created))]
        );
        let edited = LoggedEvent {
            offset: Offset(2),
            event: Event::MessageEdited {
                conversation: ConversationId(2),
                message: MessageId(7),
                seq: Seq(3),
                body: "the door code changed".into(),
                mention_ranges: Vec::new(),
                edited_at: Millis(2),
            },
        };
        append(&conn, &edited, &encode(&edited)).unwrap();
        // The row changed, so the creation was written out (packed), and reads as it was sent;
        // the index finds it now.
        assert_eq!(stored(1).0, "blob");
        assert_eq!((creation_at(), indexed()), (None, 2));
        assert_eq!(
            message_frames(&conn, MessageId(7)).unwrap(),
            [(Offset(1), encode(&created)), (Offset(2), encode(&edited))]
        );
        let now = SqlLookup(&conn).message(MessageId(7)).unwrap().unwrap();
        assert_eq!(now.body, "the door code changed");
        let mut replayed = Vec::new();
        for_each_event(&conn, |e| replayed.push(e)).unwrap();
        assert_eq!(replayed, [created, edited]);
        let versions = message_versions(&conn, MessageId(7)).unwrap().unwrap();
        assert_eq!(versions.2.len(), 2);
        assert!(!versions.1);
    }

    #[test]
    fn a_creation_of_another_shape_is_stored_whole_and_found_by_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path(), Durability::Normal).unwrap();
        let created = LoggedEvent {
            offset: Offset(1),
            event: Event::MessageCreated {
                message: alices_message("written by another serializer"),
            },
        };
        // The same event spaced otherwise (a log written elsewhere, or by an older release):
        // not its row's frame, so kept as it came.
        let message = serde_json::to_string(&alices_message("written by another serializer")).unwrap();
        let frame = format!(r#"{{"offset":1,"type":"message_created","message": {message}}}"#);
        assert_eq!(serde_json::from_str::<LoggedEvent>(&frame).unwrap(), created);
        append(&conn, &created, &frame).unwrap();
        let (kind, at, indexed): (String, Option<i64>, i64) = conn
            .query_row(
                "SELECT (SELECT typeof(frame) FROM events WHERE offset = 1),
                        (SELECT created FROM messages WHERE id = 7),
                        (SELECT count(*) FROM events INDEXED BY events_by_message
                         WHERE message = 7 AND frame <> '')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((kind.as_str(), at, indexed), ("blob", None, 1));
        assert_eq!(
            message_frames(&conn, MessageId(7)).unwrap(),
            [(Offset(1), frame.clone())]
        );
        let deleted = LoggedEvent {
            offset: Offset(2),
            event: Event::MessageDeleted {
                conversation: ConversationId(2),
                message: MessageId(7),
                seq: Seq(3),
                sender: StaffId::new("alice").unwrap(),
                mentions: Vec::new(),
                thread: None,
            },
        };
        append(&conn, &deleted, &encode(&deleted)).unwrap();
        // Redacted where it is, found by the index.
        let frames = message_frames(&conn, MessageId(7)).unwrap();
        assert_eq!(frames.len(), 1);
        assert!(!frames[0].1.contains("another serializer"), "{}", frames[0].1);
    }

    #[test]
    fn a_stored_payload_is_the_message_as_serialized_whatever_its_text() {
        for body in [
            "hi",
            r#"{"type":"message_created","message":{}}"#,
            "}}",
            "é \u{0} \" \\",
        ] {
            let message = alices_message(body);
            let logged = LoggedEvent {
                offset: Offset(9),
                event: Event::MessageCreated {
                    message: message.clone(),
                },
            };
            let frame = encode(&logged);
            let payload = serde_json::to_string(&message).unwrap();
            assert_eq!(message_payload(Offset(9), &frame), Some(payload.as_str()));
            assert_eq!(created_frame(Offset(9), &payload), frame);
            assert_eq!(message_payload(Offset(8), &frame), None);
        }
        assert_eq!(
            message_payload(Offset(1), r#"{"offset":1,"type":"messages_read"}"#),
            None
        );
    }
}
