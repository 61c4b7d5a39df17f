//! `tally-relay import FILE.jsonl [--dry-run]`: another chat's staff, conversations, messages
//! and per-message reads, into the log as the events Tally itself would have appended, in one
//! transaction. The format is `docs/integration.md`'s contract; read rows become watermarks by
//! the rule in `tally_shared::read_by`.
//!
//! - **All or nothing.** Every line is parsed and checked (references included) before anything
//!   is written; every bad line is reported with its number, and then nothing is.
//! - **Idempotent.** What each outside id became is recorded (`imported`), so a second run finds
//!   it and appends nothing; a later export with more messages appends only those.
//! - **Alone.** A relay serving the data directory holds its lock, and the import refuses to
//!   run beside it (a relay's engine would not know what the import wrote).
//! - **Fast.** Events go through `Engine::apply` (the replay path) and the relay's own
//!   `storage::append`; a checkpoint at the end saves the next start from replaying them.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use tally_shared::engine::Lookup;
use tally_shared::mentions;
use tally_shared::protocol::{Event, LoggedEvent, encode};
use tally_shared::read_by::{ReadBy, watermark};
use tally_shared::{
    Attachment, AttachmentId, Conversation, ConversationId, ConversationKind, Engine, Message, MessageId,
    Millis, Offset, Seq, Staff, StaffId, limits,
};

use crate::storage::{self, Durability, SqlLookup};

/// The page cache of the import's connection, in KiB.
const IMPORT_CACHE_KIB: i64 = 1024 * 1024;

/// Most bad lines printed (the count says how many there were).
const REPORTED: usize = 50;

/// What a line says it is.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Staff,
    Conversation,
    Message,
    Read,
}

/// One line of an import file, every field of every kind (decoded in one pass, with no
/// buffering; [`RawLine::check_fields`] then holds each kind to its own fields).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    kind: Kind,
    id: Option<String>,
    name: Option<String>,
    active: Option<bool>,
    #[serde(rename = "type")]
    conversation_type: Option<ConversationKind>,
    title: Option<String>,
    participants: Option<Vec<StaffId>>,
    created_at: Option<String>,
    conversation: Option<String>,
    sender: Option<StaffId>,
    body: Option<String>,
    reply_to: Option<String>,
    /// A reply in a thread: the outside id of its root.
    thread: Option<String>,
    deleted: Option<bool>,
    staff: Option<StaffId>,
    message: Option<String>,
    attachments: Option<Vec<RawAttachment>>,
}

/// A file a message carries: where it is under the files directory, and its name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttachment {
    file: String,
    name: Option<String>,
}

impl RawLine {
    /// Refuses a field another kind of line has (`{"kind":"staff","sender":…}` is a mistake).
    fn check_fields(&self) -> Result<(), String> {
        let present = [
            ("id", self.id.is_some()),
            ("name", self.name.is_some()),
            ("active", self.active.is_some()),
            ("type", self.conversation_type.is_some()),
            ("title", self.title.is_some()),
            ("participants", self.participants.is_some()),
            ("created_at", self.created_at.is_some()),
            ("conversation", self.conversation.is_some()),
            ("sender", self.sender.is_some()),
            ("body", self.body.is_some()),
            ("reply_to", self.reply_to.is_some()),
            ("thread", self.thread.is_some()),
            ("deleted", self.deleted.is_some()),
            ("staff", self.staff.is_some()),
            ("message", self.message.is_some()),
            ("attachments", self.attachments.is_some()),
        ];
        let (kind, allowed): (&str, &[&str]) = match self.kind {
            Kind::Staff => ("staff", &["id", "name", "active"]),
            Kind::Conversation => (
                "conversation",
                &["id", "type", "title", "participants", "created_at"],
            ),
            Kind::Message => (
                "message",
                &[
                    "id",
                    "conversation",
                    "sender",
                    "body",
                    "created_at",
                    "reply_to",
                    "thread",
                    "deleted",
                    "attachments",
                ],
            ),
            Kind::Read => ("read", &["conversation", "staff", "message"]),
        };
        match present.iter().find(|(f, here)| *here && !allowed.contains(f)) {
            Some((f, _)) => Err(format!("a {kind} line has no field `{f}`")),
            None => Ok(()),
        }
    }
}

/// A required field, or why the line is bad.
fn required<T>(v: Option<T>, field: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("missing field `{field}`"))
}

/// What earlier imports made of each outside id.
#[derive(Default)]
struct Imported {
    conversations: FxHashMap<String, u64>,
    messages: FxHashMap<String, u64>,
}

/// What an import did (or, with `--dry-run`, would do).
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Staff added or changed.
    pub staff: usize,
    /// Conversations created.
    pub conversations: usize,
    /// Messages appended (deleted ones included, as tombstones).
    pub messages: usize,
    /// Outside ids already imported by an earlier run, skipped.
    pub already_imported: usize,
    /// Direct conversations of the file whose pair already had one in Tally (written in live
    /// use before the import): their messages joined it.
    pub joined_directs: usize,
    /// Files attached to the messages appended.
    pub attachments: usize,
    /// Watermarks set from read rows.
    pub watermarks: usize,
    /// (person, conversation) pairs whose reads had a gap.
    pub gaps: usize,
    /// Messages the old system had read that count as unread here because of a gap.
    pub unread_because_of_gaps: u64,
    /// Events appended.
    pub events: u64,
    /// The log's offset after the import.
    pub offset: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Lines that do not parse or do not fit: `(line number, why)`, the first [`REPORTED`].
    #[error("{count} bad lines; nothing was imported")]
    Lines {
        /// The first few.
        lines: Vec<(usize, String)>,
        /// How many there were.
        count: usize,
    },
    /// Anything else (the file, the database, a relay running).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

struct Bad {
    lines: Vec<(usize, String)>,
    count: usize,
    /// Most lines kept (the count goes on).
    limit: usize,
}

impl Default for Bad {
    fn default() -> Self {
        Bad {
            lines: Vec::new(),
            count: 0,
            limit: REPORTED,
        }
    }
}

impl Bad {
    fn add(&mut self, line: usize, why: impl Into<String>) {
        self.count += 1;
        if self.lines.len() < self.limit {
            self.lines.push((line, why.into()));
        }
    }
}

/// A message to append, and where it came from.
struct NewMessage {
    line: usize,
    /// Its place among its conversation's messages in the file (what reads point at).
    index: u32,
    id: String,
    sender: StaffId,
    body: String,
    at: Millis,
    reply_to: Option<String>,
    /// The outside id of the root of the thread it replies in.
    thread: Option<String>,
    deleted: bool,
    /// Its files: (where to read it, its name).
    attachments: Vec<(std::path::PathBuf, String)>,
}

/// A conversation of the file: one to create, or one an earlier run created.
struct Conv {
    line: usize,
    external: String,
    existing: Option<ConversationId>,
    /// `existing` is the pair's direct conversation, made in Tally, not by an import.
    joins: bool,
    kind: ConversationKind,
    title: Option<String>,
    participants: Vec<StaffId>,
    at: Millis,
    messages: Vec<NewMessage>,
    /// Who read which message (by its index in `messages` as the file listed them).
    reads: Vec<(StaffId, u32)>,
}

/// Imports `file` into the database under `data`, the files its messages attach read from
/// under `files` (by default, the directory `file` is in). With `dry_run`, checks and counts,
/// and writes nothing.
pub fn import(data: &Path, file: &Path, files: Option<&Path>, dry_run: bool) -> Result<Report, ImportError> {
    let started = Instant::now();
    let _lock = if dry_run { None } else { Some(storage::lock(data)?) };
    let conn = storage::open(data, Durability::Full)?;
    let log = storage::log_id(&conn)?;
    let known_staff: HashMap<StaffId, (String, bool)> = storage::load_staff(&conn)
        .map_err(anyhow::Error::from)?
        .into_iter()
        .map(|(s, active)| (s.id, (s.name, active)))
        .collect();
    let imported = load_imported(&conn)?;
    let mut bad = Bad::default();
    let files = match files {
        Some(dir) => dir.to_path_buf(),
        None => file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    let (staff, mut convs) = parse(file, &files, &known_staff, &imported, &mut bad)?;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "parsed");
    let mut engine = load_engine(data, &conn)?;
    check_directs(&mut convs, &engine, &mut bad);
    if bad.count > 0 {
        return Err(ImportError::Lines {
            lines: bad.lines,
            count: bad.count,
        });
    }
    let mut report = Report {
        staff: staff
            .iter()
            .filter(|(s, active)| known_staff.get(&s.id) != Some(&(s.name.clone(), *active)))
            .count(),
        ..Report::default()
    };
    // Two threads: this one decides the events (engine, encoding), the store thread writes
    // them into one transaction on its own connection, which must be the only one when it
    // starts (see `store`): this one reads through a read-only connection opened after.
    drop(conn);
    let (jobs, inbox) = std::sync::mpsc::sync_channel::<Job>(64);
    let (ready, started_store) = std::sync::mpsc::channel::<()>();
    let store_data = data.to_path_buf();
    let store = std::thread::Builder::new()
        .name("tally-import-store".into())
        .spawn(move || store(&store_data, dry_run, &inbox, &ready))
        .map_err(anyhow::Error::from)?;
    if started_store.recv().is_err() {
        // It stopped before it was ready: its error says why.
        store
            .join()
            .map_err(|_| anyhow::anyhow!("the store thread panicked"))??;
        return Err(anyhow::anyhow!("the store thread stopped").into());
    }
    let conn = storage::open_reader(data)?;
    let before = engine.offset();
    for (s, active) in &staff {
        engine.upsert_staff(s.clone(), *active);
    }
    if !dry_run {
        let _ = jobs.send(Job::Staff(staff));
    }
    let mut writer = Writer {
        conn: &conn,
        jobs: &jobs,
        batch: Vec::with_capacity(BATCH),
        engine: &mut engine,
        imported: &imported,
        quotes: FxHashMap::default(),
        made: Vec::new(),
    };
    convs.sort_by_key(|c| (c.at, c.line));
    let mut written = Ok(());
    for c in &mut convs {
        written = writer.conversation(c, &mut report);
        if written.is_err() {
            break;
        }
    }
    writer.flush();
    drop(jobs);
    drop(conn);
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "appended");
    // The store thread's verdict first: if it failed, the channel closed under us.
    store
        .join()
        .map_err(|_| anyhow::anyhow!("the store thread panicked"))??;
    written?;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "committed");
    report.events = engine.offset().0 - before.0;
    report.offset = engine.offset().0;
    if !dry_run && report.events > 0 {
        // The next start loads this rather than replaying what was just imported.
        crate::checkpoints::write(data, &log, &engine)?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// What earlier imports made of each outside id: `(kind, external) → internal`.
fn load_imported(conn: &Connection) -> anyhow::Result<Imported> {
    let mut stmt = conn.prepare("SELECT kind, external, internal FROM imported")?;
    let mut rows = stmt.query([])?;
    let mut imported = Imported::default();
    while let Some(r) = rows.next()? {
        let (kind, external, internal): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let map = match kind.as_str() {
            "conversation" => &mut imported.conversations,
            _ => &mut imported.messages,
        };
        map.insert(external, internal as u64);
    }
    Ok(imported)
}

/// The engine at the log's end: the newest checkpoint and the events after it.
fn load_engine(data: &Path, conn: &Connection) -> anyhow::Result<Engine> {
    let head = Offset(storage::last_offset(conn)?);
    let log = storage::log_id(conn)?;
    let metrics = crate::metrics::Metrics::default();
    let mut engine = crate::checkpoints::load_latest(data, &log, head, &metrics).unwrap_or_default();
    for (s, active) in storage::load_staff(conn)? {
        engine.upsert_staff(s, active);
    }
    storage::for_each_event_after(conn, engine.offset(), |e| {
        engine.apply(e);
    })?;
    Ok(engine)
}

/// A file, read: its staff (with whether active) and its conversations with their messages
/// and reads.
type Parsed = (Vec<(Staff, bool)>, Vec<Conv>);

/// Everything [`parse`] keeps while it reads.
struct Parser<'a> {
    imported: &'a Imported,
    /// Where attached files are read from (`None`: not looked at, as by [`check`]).
    files: Option<&'a Path>,
    staff: Vec<(Staff, bool)>,
    staff_ids: FxHashSet<StaffId>,
    listed_staff: FxHashSet<StaffId>,
    convs: Vec<Conv>,
    conv_index: FxHashMap<String, usize>,
    /// Every message of the file: its conversation and its index there.
    messages: FxHashMap<String, (usize, u32)>,
    /// The messages that are replies in a thread (no thread goes under one).
    replies: FxHashSet<String>,
    /// Reads, checked once every message is known: (line, conversation, staff, message).
    reads: Vec<(usize, String, StaffId, String)>,
}

/// Reads and checks every line.
fn parse(
    file: &Path,
    files: &Path,
    known_staff: &HashMap<StaffId, (String, bool)>,
    imported: &Imported,
    bad: &mut Bad,
) -> anyhow::Result<Parsed> {
    let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
    // One thread reads lines in blocks, two decode them (blocks alternate between them), and
    // this one checks them, in order.
    let (to_first, first_in) = std::sync::mpsc::sync_channel::<Vec<(usize, String)>>(8);
    let (to_second, second_in) = std::sync::mpsc::sync_channel::<Vec<(usize, String)>>(8);
    let reader = std::thread::Builder::new()
        .name("tally-import-read".into())
        .spawn(move || read_blocks(reader, [to_first, to_second]))?;
    let mut decoded = Vec::new();
    for (i, lines) in [first_in, second_in].into_iter().enumerate() {
        let (blocks, out) = std::sync::mpsc::sync_channel::<Vec<(usize, Result<RawLine, String>)>>(8);
        std::thread::Builder::new()
            .name(format!("tally-import-decode-{i}"))
            .spawn(move || {
                for block in lines {
                    let block = block
                        .into_iter()
                        .map(|(n, text)| {
                            (
                                n,
                                serde_json::from_str::<RawLine>(&text).map_err(|e| e.to_string()),
                            )
                        })
                        .collect();
                    if blocks.send(block).is_err() {
                        return;
                    }
                }
            })?;
        decoded.push(out);
    }
    let mut p = Parser::new(imported, known_staff, Some(files));
    // Blocks alternate between the decoders: take them back in the same turn.
    for turn in 0.. {
        let Ok(block) = decoded[turn % 2].recv() else {
            break;
        };
        for (n, line) in block {
            if let Err(why) = line.and_then(|line| p.line(n, line)) {
                bad.add(n, why);
            }
        }
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reading thread panicked"))??;
    Ok(p.finish(bad))
}

/// Checks the lines of an import file alone (no database: the staff it knows are the ones it
/// lists), one thread: what the fuzzer and the property test drive. The bad lines, each with
/// why; every line is either accepted or there.
pub fn check(text: &str) -> Vec<(usize, String)> {
    let imported = Imported::default();
    let mut p = Parser::new(&imported, &HashMap::new(), None);
    let mut bad = Bad {
        limit: usize::MAX,
        ..Bad::default()
    };
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        let parsed = serde_json::from_str::<RawLine>(line).map_err(|e| e.to_string());
        if let Err(why) = parsed.and_then(|line| p.line(n, line)) {
            bad.add(n, why);
        }
    }
    p.finish(&mut bad);
    bad.lines
}

/// Lines per block from the decoding thread.
const DECODED_BLOCK: usize = 4096;

/// Reads the file's lines (blank ones skipped), numbered from 1, in blocks sent to each of
/// `to` in turn (the last block may be empty, so that every turn ends).
fn read_blocks(
    mut reader: impl BufRead,
    to: [std::sync::mpsc::SyncSender<Vec<(usize, String)>>; 2],
) -> anyhow::Result<()> {
    let mut n = 0;
    let mut turn = 0;
    let mut block = Vec::with_capacity(DECODED_BLOCK);
    loop {
        let mut text = String::new();
        if reader.read_line(&mut text)? == 0 {
            break;
        }
        n += 1;
        if text.trim().is_empty() {
            continue;
        }
        block.push((n, text));
        if block.len() == DECODED_BLOCK {
            let full = std::mem::replace(&mut block, Vec::with_capacity(DECODED_BLOCK));
            if to[turn % 2].send(full).is_err() {
                return Ok(());
            }
            turn += 1;
        }
    }
    let _ = to[turn % 2].send(block);
    Ok(())
}

impl<'a> Parser<'a> {
    fn new(
        imported: &'a Imported,
        known_staff: &HashMap<StaffId, (String, bool)>,
        files: Option<&'a Path>,
    ) -> Self {
        Parser {
            imported,
            files,
            staff: Vec::new(),
            staff_ids: known_staff.keys().cloned().collect(),
            listed_staff: FxHashSet::default(),
            convs: Vec::new(),
            conv_index: FxHashMap::default(),
            messages: FxHashMap::default(),
            replies: FxHashSet::default(),
            reads: Vec::new(),
        }
    }

    /// Checks the reads (which may come before or after their message's line) and hands over
    /// what was parsed.
    fn finish(mut self, bad: &mut Bad) -> Parsed {
        for (n, conversation, staff, message) in std::mem::take(&mut self.reads) {
            let Some(&c) = self.conv_index.get(&conversation) else {
                bad.add(n, format!("no conversation {conversation}"));
                continue;
            };
            if !self.convs[c].participants.contains(&staff) {
                bad.add(n, format!("{staff} is not in conversation {conversation}"));
                continue;
            }
            match self.messages.get(&message) {
                Some(&(mc, index)) if mc == c => self.convs[c].reads.push((staff, index)),
                _ => bad.add(n, format!("no message {message} in conversation {conversation}")),
            }
        }
        (self.staff, self.convs)
    }

    fn line(&mut self, n: usize, line: RawLine) -> Result<(), String> {
        line.check_fields()?;
        match line.kind {
            Kind::Staff => {
                let id = StaffId::new(required(line.id, "id")?).map_err(|e| format!("id: {e}"))?;
                let raw = required(line.name, "name")?;
                let name = raw.trim();
                if id.is_system() {
                    return Err(format!("`{}` is reserved", StaffId::SYSTEM));
                }
                if name.is_empty() || name.len() > limits::STAFF_NAME_MAX_BYTES {
                    return Err(format!("a name is 1 to {} bytes", limits::STAFF_NAME_MAX_BYTES));
                }
                if !self.listed_staff.insert(id.clone()) {
                    return Err(format!("staff {id} is listed twice"));
                }
                self.staff_ids.insert(id.clone());
                let member = Staff {
                    id,
                    name: name.to_string(),
                };
                self.staff.push((member, line.active.unwrap_or(true)));
            }
            Kind::Conversation => {
                let id = required(line.id, "id")?;
                let kind = required(line.conversation_type, "type")?;
                let participants = required(line.participants, "participants")?;
                let at = parse_time(&required(line.created_at, "created_at")?)?;
                check_conversation(kind, line.title.as_deref(), &participants, &self.staff_ids)?;
                if self.conv_index.contains_key(&id) {
                    return Err(format!("conversation {id} is listed twice"));
                }
                let existing = self.imported.conversations.get(&id).map(|c| ConversationId(*c));
                self.conv_index.insert(id.clone(), self.convs.len());
                let title = (kind == ConversationKind::Group)
                    .then(|| line.title.unwrap_or_default().trim().to_string());
                self.convs.push(Conv {
                    line: n,
                    external: id,
                    existing,
                    joins: false,
                    kind,
                    title,
                    participants,
                    at,
                    messages: Vec::new(),
                    reads: Vec::new(),
                });
            }
            Kind::Message => {
                let id = required(line.id, "id")?;
                let conversation = required(line.conversation, "conversation")?;
                let sender = required(line.sender, "sender")?;
                let at = parse_time(&required(line.created_at, "created_at")?)?;
                let body = line.body.unwrap_or_default();
                let deleted = line.deleted.unwrap_or(false);
                let Some(&c) = self.conv_index.get(&conversation) else {
                    return Err(format!("no conversation {conversation} before this line"));
                };
                if !self.staff_ids.contains(&sender) {
                    return Err(format!("no staff member {sender}"));
                }
                // As the live relay refuses a send into a conversation one is not in.
                if !self.convs[c].participants.contains(&sender) {
                    return Err(format!(
                        "{sender} is not a participant of conversation {conversation} (list everyone who wrote in it)"
                    ));
                }
                if body.len() > limits::BODY_MAX_BYTES {
                    return Err(format!("a message is at most {} bytes", limits::BODY_MAX_BYTES));
                }
                let attachments = match line.attachments {
                    Some(list) if !deleted => self.attachments(list)?,
                    // A deleted message is a tombstone: neither its text nor its files are kept.
                    _ => Vec::new(),
                };
                if body.trim().is_empty() && !deleted && attachments.is_empty() {
                    return Err("a message needs a body or attachments (or \"deleted\": true)".into());
                }
                if self.messages.contains_key(&id) {
                    return Err(format!("message {id} is listed twice"));
                }
                if let Some(r) = &line.reply_to
                    && self.messages.get(r).is_none_or(|(rc, _)| *rc != c)
                {
                    return Err(format!("reply_to {r}: no earlier message of this conversation"));
                }
                if let Some(root) = &line.thread {
                    if line.reply_to.is_some() {
                        return Err("a reply in a thread quotes nothing: give `thread` or `reply_to`".into());
                    }
                    let Some(&(rc, ri)) = self.messages.get(root).filter(|(rc, _)| *rc == c) else {
                        return Err(format!("thread {root}: no earlier message of this conversation"));
                    };
                    if self.replies.contains(root) {
                        return Err(format!("thread {root}: a reply; threads do not nest"));
                    }
                    if self.convs[rc].messages[ri as usize].at > at {
                        return Err(format!("thread {root}: a reply is not older than its root"));
                    }
                    self.replies.insert(id.clone());
                }
                let index = self.convs[c].messages.len() as u32;
                self.messages.insert(id.clone(), (c, index));
                self.convs[c].messages.push(NewMessage {
                    line: n,
                    index,
                    id,
                    sender,
                    body,
                    at,
                    reply_to: line.reply_to,
                    thread: line.thread,
                    deleted,
                    attachments,
                });
            }
            Kind::Read => {
                let conversation = required(line.conversation, "conversation")?;
                let staff = required(line.staff, "staff")?;
                let message = required(line.message, "message")?;
                self.reads.push((n, conversation, staff, message));
            }
        }
        Ok(())
    }
}

impl Parser<'_> {
    /// A message's files, checked as an upload would be: how many, where (a relative path
    /// inside the files directory), and how big.
    fn attachments(&self, list: Vec<RawAttachment>) -> Result<Vec<(std::path::PathBuf, String)>, String> {
        if list.len() > limits::ATTACHMENTS_PER_MESSAGE_MAX {
            let max = limits::ATTACHMENTS_PER_MESSAGE_MAX;
            return Err(format!("a message has at most {max} attachments"));
        }
        let mut out = Vec::with_capacity(list.len());
        for a in list {
            let relative = Path::new(&a.file);
            let inside = !a.file.is_empty()
                && relative
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !inside {
                return Err(format!(
                    "attachment {:?}: a file is a relative path inside the files directory",
                    a.file
                ));
            }
            let name = a
                .name
                .or_else(|| relative.file_name().map(|n| n.to_string_lossy().into_owned()));
            let name = crate::attachments::clean_name(name);
            let Some(dir) = self.files else {
                out.push((relative.to_path_buf(), name));
                continue;
            };
            let path = dir.join(relative);
            let size = match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => m.len(),
                Ok(_) => return Err(format!("attachment {}: not a file", path.display())),
                Err(e) => return Err(format!("attachment {}: {e}", path.display())),
            };
            if size == 0 || size > limits::ATTACHMENT_MAX_BYTES {
                let max = limits::ATTACHMENT_MAX_BYTES;
                return Err(format!(
                    "attachment {}: {size} bytes (a file is 1 to {max} bytes)",
                    path.display()
                ));
            }
            out.push((path, name));
        }
        Ok(out)
    }
}

fn check_conversation(
    kind: ConversationKind,
    title: Option<&str>,
    participants: &[StaffId],
    staff: &FxHashSet<StaffId>,
) -> Result<(), String> {
    let distinct: FxHashSet<&StaffId> = participants.iter().collect();
    if distinct.len() != participants.len() {
        return Err("a participant is listed twice".into());
    }
    if let Some(p) = participants.iter().find(|p| !staff.contains(*p)) {
        return Err(format!(
            "no staff member {p} (list staff before their conversations)"
        ));
    }
    match kind {
        ConversationKind::Direct if participants.len() != 2 => {
            Err("a direct conversation has exactly two participants".into())
        }
        ConversationKind::Group => {
            let t = title.unwrap_or_default().trim();
            if t.is_empty() || t.len() > limits::TITLE_MAX_BYTES || t.chars().any(char::is_control) {
                return Err(format!(
                    "a group's title is 1 to {} bytes",
                    limits::TITLE_MAX_BYTES
                ));
            }
            if participants.is_empty() || participants.len() > limits::GROUP_PARTICIPANTS_MAX {
                let max = limits::GROUP_PARTICIPANTS_MAX;
                return Err(format!("a group has 1 to {max} participants"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A pair has one direct conversation: the file must not make it twice, and one the pair
/// already has in Tally (written in before the import) is the one the file's messages join.
fn check_directs(convs: &mut [Conv], engine: &Engine, bad: &mut Bad) {
    let mut pairs: FxHashSet<(StaffId, StaffId)> = FxHashSet::default();
    for c in convs
        .iter_mut()
        .filter(|c| c.kind == ConversationKind::Direct && c.existing.is_none())
    {
        let (a, b) = (&c.participants[0], &c.participants[1]);
        let pair = if a <= b {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        if !pairs.insert(pair) {
            bad.add(c.line, format!("a second direct conversation for {a} and {b}"));
        } else if let Some(id) = engine.direct_between(a, b) {
            c.existing = Some(id);
            c.joins = true;
        }
    }
}

/// Events per message to the store thread.
const BATCH: usize = 4096;

/// What the store thread is sent.
enum Job {
    /// Staff to add or update.
    Staff(Vec<(Staff, bool)>),
    /// Events with their encoded frames, to append.
    Events(Vec<(LoggedEvent, String)>),
    /// What this run made of each outside id: (kind, outside id, id).
    Ids(Vec<(&'static str, String, u64)>),
    /// A file to place under the data directory (unless it is there) and record as uploaded
    /// by the sender of the message that attaches it, when it was sent.
    File {
        attachment: Attachment,
        from: std::path::PathBuf,
        uploader: StaffId,
        at: Millis,
    },
}

/// The store thread: everything it is sent, in one transaction on its own connection,
/// committed when the channel closes (not when anything failed). A dry run stores nothing (and
/// takes no lock a running relay would wait for).
///
/// The transaction runs in SQLite's rollback-journal mode, not WAL: an import writes hundreds
/// of megabytes of new pages, which WAL would write twice (into the WAL, then into the
/// database); a rollback journal holds only the few pages that existed before. It is as
/// atomic, and a crash leaves a journal that the next open rolls back. That mode can only be
/// entered by the only connection (this one, sent `ready` once it is in it), and the database
/// is back in WAL mode when this returns.
fn store(
    data: &Path,
    dry_run: bool,
    inbox: &std::sync::mpsc::Receiver<Job>,
    ready: &std::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    if dry_run {
        let _ = ready.send(());
        while inbox.recv().is_ok() {}
        return Ok(());
    }
    let mut conn = storage::open(data, Durability::Full)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("delete"),
        "could not leave WAL mode for the import"
    );
    let _ = ready.send(());
    let stored = store_all(data, &mut conn, inbox);
    // Back to WAL whatever happened (a failed import rolled back: nothing to keep).
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    stored
}

fn store_all(
    data: &Path,
    conn: &mut Connection,
    inbox: &std::sync::mpsc::Receiver<Job>,
) -> anyhow::Result<()> {
    // One transaction for everything: its pages stay in memory until the commit.
    conn.pragma_update(None, "cache_size", -IMPORT_CACHE_KIB)?;
    let tx = conn.transaction()?;
    let (mut waited, mut appending, mut ids) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    loop {
        let t = Instant::now();
        let Ok(job) = inbox.recv() else { break };
        waited += t.elapsed();
        let t = Instant::now();
        match job {
            Job::Staff(staff) => {
                for (s, active) in &staff {
                    storage::set_staff(&tx, s, *active)?;
                }
            }
            Job::Events(events) => {
                for (logged, frame) in &events {
                    storage::append(&tx, logged, frame)?;
                }
                appending += t.elapsed();
            }
            Job::Ids(made) => {
                let mut stmt =
                    tx.prepare_cached("INSERT INTO imported (kind, external, internal) VALUES (?1, ?2, ?3)")?;
                for (kind, external, internal) in &made {
                    stmt.execute(params![kind, external, *internal as i64])?;
                }
                ids += t.elapsed();
            }
            Job::File {
                attachment,
                from,
                uploader,
                at,
            } => {
                place_file(data, &attachment, &from)?;
                storage::record_upload(&tx, &uploader, &attachment, at.0)?;
            }
        }
    }
    let t = Instant::now();
    tx.commit()?;
    tracing::debug!(
        waited_ms = waited.as_millis() as u64,
        appending_ms = appending.as_millis() as u64,
        ids_ms = ids.as_millis() as u64,
        commit_ms = t.elapsed().as_millis() as u64,
        "stored"
    );
    Ok(())
}

/// Copies a file to where its content address puts it (unless it is there), durably: a file
/// the committed import references exists. One left behind by a failed import references
/// nothing, and the relay's collection never sees it; the next import reuses it.
fn place_file(data: &Path, attachment: &Attachment, from: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let to = crate::files::path_of(data, &attachment.id);
    if to.exists() {
        return Ok(());
    }
    let dir = to.parent().context("an attachment path has a directory")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".import-{}", attachment.id.as_str()));
    std::fs::copy(from, &tmp).with_context(|| format!("copying {}", from.display()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &to)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// A file as the relay records an upload: its content address, sniffed type and size.
fn read_attachment(path: &Path, name: &str) -> anyhow::Result<Attachment> {
    use anyhow::Context;
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        !bytes.is_empty() && bytes.len() as u64 <= limits::ATTACHMENT_MAX_BYTES,
        "{} changed since it was checked",
        path.display()
    );
    Ok(Attachment {
        id: AttachmentId::new(hex::encode(Sha256::digest(&bytes))).expect("hex is a valid id"),
        name: name.to_string(),
        content_type: crate::attachments::sniff(&bytes).to_string(),
        size: bytes.len() as u64,
    })
}

/// Decides the events, through the engine, and hands them to the store thread.
struct Writer<'a> {
    /// Reads what earlier runs stored (committed before this one started).
    conn: &'a Connection,
    jobs: &'a std::sync::mpsc::SyncSender<Job>,
    batch: Vec<(LoggedEvent, String)>,
    engine: &'a mut Engine,
    /// What earlier runs made of each outside id.
    imported: &'a Imported,
    /// This conversation's messages made in this run, as a reply quotes them (by outside id).
    quotes: FxHashMap<String, tally_shared::model::ReplyRef>,
    /// What this run made of each outside id since the last flush: (kind, outside id, id).
    made: Vec<(&'static str, String, u64)>,
}

impl Writer<'_> {
    fn append(&mut self, event: Event) -> anyhow::Result<()> {
        let logged = LoggedEvent {
            offset: self.engine.offset().next(),
            event,
        };
        let frame = encode(&logged);
        let applied = self.engine.apply(logged);
        self.batch.push((applied.event, frame));
        if self.batch.len() >= BATCH {
            self.flush();
        }
        Ok(())
    }

    /// Sends what is batched (a closed channel means the store thread failed: its error is
    /// what the import reports).
    fn flush(&mut self) {
        if !self.batch.is_empty() {
            let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
            let _ = self.jobs.send(Job::Events(batch));
        }
        if !self.made.is_empty() {
            let _ = self.jobs.send(Job::Ids(std::mem::take(&mut self.made)));
        }
    }

    /// One conversation: created (unless an earlier run did), its new messages in time order,
    /// then each participant's watermark from the reads.
    fn conversation(&mut self, c: &mut Conv, report: &mut Report) -> anyhow::Result<()> {
        let id = match c.existing {
            Some(id) if c.joins => {
                // Recorded, so the next run finds it as its own.
                self.made.push(("conversation", c.external.clone(), id.0));
                report.joined_directs += 1;
                id
            }
            Some(id) => {
                report.already_imported += 1;
                id
            }
            None => {
                let (id, _) = self.engine.next_ids();
                let conversation = Conversation {
                    everyone_off: false,
                    id,
                    kind: c.kind,
                    title: c.title.clone(),
                    participants: c.participants.clone(),
                    created_by: match c.kind {
                        ConversationKind::Direct => c.participants[0].clone(),
                        ConversationKind::Group => StaffId::system(),
                    },
                    created_at: c.at,
                };
                self.append(Event::ConversationCreated {
                    conversation,
                    client_id: None,
                })?;
                self.made.push(("conversation", c.external.clone(), id.0));
                report.conversations += 1;
                id
            }
        };
        // Watermarks before this run's messages: a sender's own message moves theirs.
        let participants = self
            .engine
            .conversation(id)
            .map(|c| c.participants.clone())
            .unwrap_or_default();
        let before: Vec<Seq> = participants
            .iter()
            .map(|p| self.engine.projection().last_read(p, id).unwrap_or_default())
            .collect();
        c.messages.sort_by_key(|m| (m.at, m.line));
        self.quotes.clear();
        // Every message of the file in this conversation, in seq order: (index in the file's
        // order, seq, sender, deleted, the root's seq for a reply in a thread).
        let listed = c.messages.len();
        let mut order: Vec<(u32, Seq, StaffId, bool, Option<Seq>)> = Vec::with_capacity(listed);
        // Where an earlier run put this conversation's messages (one query, not one each).
        let stored: FxHashMap<u64, Seq> = match c.existing {
            Some(id) => seqs_of(self.conn, id)?,
            None => FxHashMap::default(),
        };
        for m in std::mem::take(&mut c.messages) {
            if let Some(internal) = self.imported.messages.get(&m.id) {
                report.already_imported += 1;
                if let Some(&seq) = stored.get(internal) {
                    let root = self.quoted(m.thread.as_ref()).map(|q| q.seq);
                    order.push((m.index, seq, m.sender, m.deleted, root));
                }
                continue;
            }
            let (seq, root) = self.message(id, &participants, &m)?;
            report.messages += 1;
            report.attachments += m.attachments.len();
            order.push((m.index, seq, m.sender, m.deleted, root));
        }
        order.sort_by_key(|o| o.1);
        c.reads.sort_unstable();
        let mut read = vec![false; listed];
        for (p, before) in participants.iter().zip(before) {
            read.iter_mut().for_each(|r| *r = false);
            let from = c.reads.partition_point(|(s, _)| s < p);
            for (_, index) in c.reads[from..].iter().take_while(|(s, _)| s == p) {
                read[*index as usize] = true;
            }
            // A reply never counts in its conversation.
            let w = watermark(order.iter().map(|(index, seq, sender, deleted, root)| ReadBy {
                seq: *seq,
                counts: sender != p && !deleted && root.is_none(),
                read: read[*index as usize],
            }));
            if w.read_after > 0 {
                report.gaps += 1;
                report.unread_because_of_gaps += u64::from(w.read_after);
            }
            // Never behind where the person already was before this run.
            let target = w.last_read.max(before);
            let now = self.engine.projection().last_read(p, id).unwrap_or_default();
            let event = if target > now {
                Some(Event::MessagesRead {
                    conversation: id,
                    staff: p.clone(),
                    last_read: target,
                })
            } else if target < now {
                Some(Event::MarkedUnread {
                    conversation: id,
                    staff: p.clone(),
                    last_read: target,
                })
            } else {
                None
            };
            if let Some(event) = event {
                self.append(event)?;
                report.watermarks += 1;
            }
            self.thread_watermarks(id, p, &order, &read, report)?;
        }
        Ok(())
    }

    /// A follower's watermark in each thread of the conversation, from their reads of its
    /// replies (the same rule as a conversation's), never behind where following put it.
    /// Reads make nobody follow (`docs/semantics.md`, "Threads").
    fn thread_watermarks(
        &mut self,
        id: ConversationId,
        p: &StaffId,
        order: &[(u32, Seq, StaffId, bool, Option<Seq>)],
        read: &[bool],
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let mut roots: Vec<Seq> = order.iter().filter_map(|o| o.4).collect();
        roots.sort_unstable();
        roots.dedup();
        for root in roots {
            let Some(now) = self.engine.projection().thread_last_read(p, id, root) else {
                continue;
            };
            let w = watermark(order.iter().filter(|o| o.4 == Some(root)).map(
                |(index, seq, sender, deleted, _)| ReadBy {
                    seq: *seq,
                    counts: sender != p && !deleted,
                    read: read[*index as usize],
                },
            ));
            if w.last_read > now {
                self.append(Event::ThreadRead {
                    conversation: id,
                    thread: root,
                    staff: p.clone(),
                    last_read: w.last_read,
                })?;
                report.watermarks += 1;
            }
        }
        Ok(())
    }

    /// A message this run or an earlier one made, as a reply quotes it (by outside id).
    fn quoted(&self, outside: Option<&String>) -> Option<tally_shared::model::ReplyRef> {
        let r = outside?;
        if let Some(quote) = self.quotes.get(r) {
            return Some(quote.clone());
        }
        // A message an earlier run imported (committed, so readable here).
        let earlier = self.imported.messages.get(r)?;
        let q = SqlLookup(self.conn).message(MessageId(*earlier)).ok()??;
        Some(quote_of(&q))
    }

    /// Appends one message (and, for a deleted one, its deletion: no text is stored); its seq,
    /// and its thread's root's for a reply. The first reply of a thread starts it: its root's
    /// author follows it from the root, as live.
    fn message(
        &mut self,
        conversation: ConversationId,
        participants: &[StaffId],
        m: &NewMessage,
    ) -> anyhow::Result<(Seq, Option<Seq>)> {
        let thread = self.quoted(m.thread.as_ref());
        if let Some(root) = &thread
            && self
                .engine
                .projection()
                .thread_head(conversation, root.seq)
                .is_none()
            && participants.contains(&root.sender)
        {
            self.append(Event::ThreadFollowed {
                conversation,
                thread: root.seq,
                staff: root.sender.clone(),
                following: true,
                last_read: root.seq,
            })?;
        }
        let thread = thread.map(|t| t.seq);
        let (_, id) = self.engine.next_ids();
        let seq = self
            .engine
            .projection()
            .head(conversation)
            .unwrap_or_default()
            .next();
        let reply_to = self.quoted(m.reply_to.as_ref()).map(Box::new);
        let body = if m.deleted { String::new() } else { m.body.clone() };
        // Mentions are found in the text, by the live rule for a text sent without ranges.
        let everyone = self
            .engine
            .conversation(conversation)
            .is_some_and(|c| c.everyone_mentions());
        let to = mentions::Audience {
            participants,
            sender: &m.sender,
            everyone,
        };
        let found = if m.deleted {
            mentions::Mentions::default()
        } else {
            mentions::found(&body, to)
        };
        let mut attachments = Vec::with_capacity(m.attachments.len());
        for (path, name) in &m.attachments {
            let a = read_attachment(path, name)?;
            let _ = self.jobs.send(Job::File {
                attachment: a.clone(),
                from: path.clone(),
                uploader: m.sender.clone(),
                at: m.at,
            });
            attachments.push(a);
        }
        let message = Message {
            reactions: Vec::new(),
            mention_ranges: found.ranges,
            thread,
            id,
            conversation,
            seq,
            sender: m.sender.clone(),
            body,
            mentions: found.staff,
            attachments,
            reply_to,
            forwarded_from: None,
            notice: None,
            client_id: None,
            created_at: m.at,
            edited_at: None,
            deleted: false,
        };
        // For the replies that may follow (the whole file is in memory already).
        self.quotes.insert(m.id.clone(), quote_of(&message));
        self.append(Event::MessageCreated { message })?;
        if m.deleted {
            self.append(Event::MessageDeleted {
                thread,
                conversation,
                message: id,
                seq,
                sender: m.sender.clone(),
                mentions: Vec::new(),
            })?;
        }
        self.made.push(("message", m.id.clone(), id.0));
        Ok((seq, thread))
    }
}

/// Each stored message of a conversation: id → seq.
fn seqs_of(conn: &Connection, conversation: ConversationId) -> anyhow::Result<FxHashMap<u64, Seq>> {
    let mut stmt = conn.prepare_cached("SELECT id, seq FROM messages WHERE conversation = ?1")?;
    let rows = stmt.query_map([conversation.0 as i64], |r| {
        Ok((r.get::<_, i64>(0)? as u64, Seq(r.get::<_, i64>(1)? as u64)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A message as a reply quotes it.
fn quote_of(m: &Message) -> tally_shared::model::ReplyRef {
    tally_shared::model::ReplyRef {
        message: m.id,
        seq: m.seq,
        sender: m.sender.clone(),
        excerpt: m.body.chars().take(limits::REPLY_EXCERPT_CHARS).collect(),
        deleted: m.deleted || m.body.is_empty() && m.attachments.is_empty(),
    }
}

/// An RFC 3339 time (`2025-01-01T09:00:00Z`, `…T09:00:00.250+02:00`) as milliseconds since
/// the epoch.
pub fn parse_time(s: &str) -> Result<Millis, String> {
    let bad = || format!("`{s}` is not an RFC 3339 time like 2025-01-01T09:00:00Z");
    let b = s.as_bytes();
    // RFC 3339 is ASCII: anything else is refused before any slicing (a slice inside a
    // character panicked the importer).
    if !s.is_ascii()
        || b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let part = s.get(r).ok_or_else(bad)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let ms: String = frac[..digits].chars().chain("000".chars()).take(3).collect();
        millis = ms.parse().map_err(|_| bad())?;
        rest = &frac[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let h: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let m: i64 = rest[4..6].parse().map_err(|_| bad())?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 60 + m)
        }
        _ => return Err(bad()),
    };
    let days_in_month = [
        31,
        28 + i64::from(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = ((days * 24 + hour) * 60 + minute - offset_minutes) * 60 + second.min(59);
    let ms = total * 1000 + millis;
    u64::try_from(ms).map(Millis).map_err(|_| bad())
}

/// Prints a report as the CLI shows it.
pub fn print(report: &Report, dry_run: bool) {
    let verb = if dry_run { "would import" } else { "imported" };
    println!(
        "{verb}: {} staff changed, {} conversations, {} messages, {} watermarks ({} events, offset {}) in {:.2} s",
        report.staff,
        report.conversations,
        report.messages,
        report.watermarks,
        report.events,
        report.offset,
        report.seconds
    );
    if report.already_imported > 0 {
        println!(
            "{} conversations and messages were imported before: skipped",
            report.already_imported
        );
    }
    if report.attachments > 0 {
        println!("{} files attached", report.attachments);
    }
    if report.joined_directs > 0 {
        println!(
            "{} direct conversations already existed in Tally: their imported messages follow what was written there",
            report.joined_directs
        );
    }
    if report.gaps > 0 {
        println!(
            "{} people had gaps in their reads: {} messages they had read count as unread (see docs/semantics.md, \"Imported reads\")",
            report.gaps, report.unread_because_of_gaps
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{check, parse_time};

    #[test]
    fn times_parse_as_rfc_3339_and_nothing_else() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap().0, 0);
        assert_eq!(parse_time("2025-01-01T09:00:00Z").unwrap().0, 1_735_722_000_000);
        assert_eq!(
            parse_time("2025-01-01T10:00:00.250+01:00").unwrap().0,
            1_735_722_000_250
        );
        assert_eq!(parse_time("2024-02-29T00:00:00Z").unwrap().0, 1_709_164_800_000);
        for bad in [
            "2025-01-01",
            "2025-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2025-01-01T09:00:00",
            "yesterday",
            "1969-12-31T23:59:59Z",
            // The probe's: a character cut in two by a fixed position panicked (exit 101).
            "2025-01-01T09:00:00+0é00",
            "2025-01-01T09:00:0é+00:00",
            "2025-01-01T09:00:00.5é0Z",
            "ééééééééééééééééééééé",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    /// A valid export: staff, a group and a direct conversation, messages, reads.
    const EXPORT: &str = r#"{"kind":"staff","id":"ann","name":"Ann"}
{"kind":"staff","id":"ben","name":"Ben"}
{"kind":"staff","id":"cal","name":"Cal"}
{"kind":"conversation","id":"g","type":"group","title":"Ward","participants":["ann","ben","cal"],"created_at":"2025-01-01T09:00:00Z"}
{"kind":"conversation","id":"d","type":"direct","participants":["ann","ben"],"created_at":"2025-01-01T09:00:00+01:00"}
{"kind":"message","id":"m1","conversation":"g","sender":"ann","body":"hello @ben","created_at":"2025-01-01T09:01:00Z"}
{"kind":"message","id":"m2","conversation":"g","sender":"ben","body":"hi","created_at":"2025-01-01T09:02:00.250Z","reply_to":"m1"}
{"kind":"message","id":"m3","conversation":"d","sender":"ben","body":"","deleted":true,"created_at":"2025-01-01T09:03:00Z"}
{"kind":"read","conversation":"g","staff":"cal","message":"m2"}"#;

    #[test]
    fn a_valid_export_checks_clean_and_a_sender_outside_the_conversation_is_refused() {
        assert_eq!(check(EXPORT), Vec::new());
        let outsider = format!(
            "{EXPORT}\n{}",
            r#"{"kind":"message","id":"m4","conversation":"d","sender":"cal","body":"x","created_at":"2025-01-01T09:04:00Z"}"#
        );
        let bad = check(&outsider);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].0, 10);
        assert!(bad[0].1.contains("not a participant"), "{bad:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any line of an export changed in any way: the checker never panics, and each line is
        /// accepted or reported, never silently dropped.
        #[test]
        fn any_mutated_line_is_accepted_or_reported_and_nothing_panics(
            line in 0usize..9,
            at in 0usize..200,
            with in "\\PC{0,6}|[\"{}:,\\[\\]]{1,3}|\u{e9}|\u{1F600}",
            cut in proptest::bool::ANY,
        ) {
            let mut lines: Vec<String> = EXPORT.lines().map(str::to_string).collect();
            let target = &mut lines[line];
            let mut at = at.min(target.len());
            while !target.is_char_boundary(at) {
                at -= 1;
            }
            if cut {
                target.truncate(at);
            }
            target.insert_str(at, &with);
            let text = lines.join("\n");
            let bad = check(&text);
            // Every reported line exists, once.
            let mut numbers: Vec<usize> = bad.iter().map(|(n, _)| *n).collect();
            numbers.dedup();
            proptest::prop_assert_eq!(numbers.len(), bad.len());
            proptest::prop_assert!(bad.iter().all(|(n, why)| *n >= 1 && *n <= 9 && !why.is_empty()));
        }
    }
}
