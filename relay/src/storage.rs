//! Durable storage in one SQLite file (WAL): the event log, the current state of each message
//! (for history and snapshots), staff, and attachment records. Only the writer thread writes.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tally_shared::engine::Lookup;
use tally_shared::protocol::{Event, LoggedEvent};
use tally_shared::{Attachment, AttachmentId, ConversationId, Message, MessageId, Seq, Staff, StaffId};

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
];

/// Opens (creating and migrating) the database under `data`.
pub fn open(data: &Path, durability: Durability) -> anyhow::Result<Connection> {
    std::fs::create_dir_all(data)?;
    let conn = Connection::open(data.join("tally.sqlite3"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    migrate(&conn)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> anyhow::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
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

/// Adds a staff member, or renames and reactivates them.
pub fn upsert_staff(conn: &Connection, staff: &Staff) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO staff (id, name, active) VALUES (?1, ?2, 1)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, active = 1",
        params![staff.id.as_str(), staff.name],
    )?;
    Ok(())
}

/// Deactivates a staff member; false if there is none with that id.
pub fn deactivate_staff(conn: &Connection, id: &StaffId) -> rusqlite::Result<bool> {
    Ok(conn.execute("UPDATE staff SET active = 0 WHERE id = ?1", [id.as_str()])? == 1)
}

/// Calls `f` with every stored event, in offset order.
pub fn for_each_event(conn: &Connection, mut f: impl FnMut(LoggedEvent)) -> anyhow::Result<()> {
    let mut stmt = conn.prepare("SELECT frame FROM events ORDER BY offset")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let text: String = row.get(0)?;
        f(serde_json::from_str(&text)?);
    }
    Ok(())
}

/// Appends one event (`frame` is its JSON as sent) and keeps the messages it changes.
pub fn append(tx: &Transaction<'_>, event: &LoggedEvent, frame: &str) -> anyhow::Result<()> {
    let conversation = event.event.conversation();
    tx.prepare_cached("INSERT INTO events (offset, conversation, frame) VALUES (?1, ?2, ?3)")?
        .execute(params![event.offset.0 as i64, conversation.0 as i64, frame])?;
    match &event.event {
        Event::MessageCreated { message } => {
            tx.prepare_cached(
                "INSERT INTO messages (conversation, seq, id, payload) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                conversation.0 as i64,
                message.seq.0 as i64,
                message.id.0 as i64,
                serde_json::to_string(message)?
            ])?;
            for a in &message.attachments {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO message_attachments (attachment, conversation) VALUES (?1, ?2)",
                )?
                .execute(params![a.id.as_str(), conversation.0 as i64])?;
            }
        }
        Event::MessageEdited {
            seq, body, edited_at, ..
        } => {
            update_message(tx, conversation, *seq, |m| m.edit(body, *edited_at))?;
        }
        Event::MessageDeleted { seq, .. } => update_message(tx, conversation, *seq, Message::tombstone)?,
        _ => {}
    }
    Ok(())
}

fn update_message(
    tx: &Transaction<'_>,
    conversation: ConversationId,
    seq: Seq,
    change: impl FnOnce(&mut Message),
) -> anyhow::Result<()> {
    let key = params![conversation.0 as i64, seq.0 as i64];
    let payload: String = tx
        .prepare_cached("SELECT payload FROM messages WHERE conversation = ?1 AND seq = ?2")?
        .query_row(key, |r| r.get(0))?;
    let mut m: Message = serde_json::from_str(&payload)?;
    change(&mut m);
    tx.prepare_cached("UPDATE messages SET payload = ?3 WHERE conversation = ?1 AND seq = ?2")?
        .execute(params![
            conversation.0 as i64,
            seq.0 as i64,
            serde_json::to_string(&m)?
        ])?;
    Ok(())
}

/// Messages `from..=to` of a conversation, in order.
pub fn message_range(
    conn: &Connection,
    conversation: ConversationId,
    from: Seq,
    to: Seq,
) -> rusqlite::Result<Vec<Message>> {
    let mut stmt = conn.prepare_cached(
        "SELECT payload FROM messages WHERE conversation = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![conversation.0 as i64, from.0 as i64, to.0 as i64], |r| {
        r.get::<_, String>(0)
    })?;
    let mut out = Vec::new();
    for row in rows {
        if let Ok(m) = serde_json::from_str(&row?) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Records an upload (the bytes are already stored under their content address).
pub fn record_upload(conn: &Connection, uploader: &StaffId, a: &Attachment) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO attachments (id, content_type, size) VALUES (?1, ?2, ?3)",
        params![a.id.as_str(), a.content_type, a.size as i64],
    )?;
    conn.execute(
        "INSERT INTO uploads (attachment, staff, name) VALUES (?1, ?2, ?3)
         ON CONFLICT (attachment, staff) DO UPDATE SET name = excluded.name",
        params![a.id.as_str(), uploader.as_str(), a.name],
    )?;
    Ok(())
}

/// Where a stored attachment is used, and what it is.
#[derive(Debug, Clone)]
pub struct AttachmentUse {
    /// Sniffed media type.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Conversations whose messages reference it.
    pub conversations: Vec<ConversationId>,
    /// Staff who uploaded it.
    pub uploaders: Vec<StaffId>,
}

/// Where a stored attachment is used, if it is stored.
pub fn attachment_use(conn: &Connection, id: &AttachmentId) -> rusqlite::Result<Option<AttachmentUse>> {
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
        .prepare_cached("SELECT conversation FROM message_attachments WHERE attachment = ?1")?
        .query_map([id.as_str()], |r| Ok(ConversationId(r.get::<_, i64>(0)? as u64)))?
        .collect::<Result<Vec<_>, _>>()?;
    let uploaders = conn
        .prepare_cached("SELECT staff FROM uploads WHERE attachment = ?1")?
        .query_map([id.as_str()], |r| r.get::<_, String>(0))?
        .filter_map(|s| s.ok().and_then(|s| StaffId::new(s).ok()))
        .collect();
    Ok(Some(AttachmentUse {
        content_type,
        size,
        conversations,
        uploaders,
    }))
}

/// What the engine asks storage for, answered inside the writer's open transaction so that
/// writes earlier in the same batch are visible.
pub struct SqlLookup<'a>(pub &'a Connection);

impl Lookup for SqlLookup<'_> {
    fn message(&self, id: MessageId) -> Option<Message> {
        let payload: String = self
            .0
            .prepare_cached("SELECT payload FROM messages WHERE id = ?1")
            .ok()?
            .query_row([id.0 as i64], |r| r.get(0))
            .optional()
            .ok()??;
        serde_json::from_str(&payload).ok()
    }

    fn attachment(&self, id: &AttachmentId, uploader: &StaffId) -> Option<Attachment> {
        self.0
            .prepare_cached(
                "SELECT u.name, a.content_type, a.size FROM uploads u JOIN attachments a ON a.id = u.attachment
                 WHERE u.attachment = ?1 AND u.staff = ?2",
            )
            .ok()?
            .query_row(params![id.as_str(), uploader.as_str()], |r| {
                Ok(Attachment {
                    id: id.clone(),
                    name: r.get(0)?,
                    content_type: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                })
            })
            .optional()
            .ok()?
    }
}
