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

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use rusqlite::{Connection, params};
use serde::Deserialize;
use tally_shared::engine::Lookup;
use tally_shared::model::mentions_in;
use tally_shared::protocol::{Event, LoggedEvent, encode};
use tally_shared::read_by::{ReadBy, watermark};
use tally_shared::{
    Conversation, ConversationId, ConversationKind, Engine, Message, MessageId, Millis, Offset, Seq, Staff,
    StaffId, limits,
};

use crate::storage::{self, Durability, SqlLookup};

/// Most bad lines printed (the count says how many there were).
const REPORTED: usize = 50;

/// One line of an import file.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Staff {
        id: StaffId,
        name: String,
        #[serde(default = "yes")]
        active: bool,
    },
    Conversation {
        id: String,
        #[serde(rename = "type")]
        kind: ConversationKind,
        title: Option<String>,
        participants: Vec<StaffId>,
        created_at: String,
    },
    Message {
        id: String,
        conversation: String,
        sender: StaffId,
        #[serde(default)]
        body: String,
        created_at: String,
        reply_to: Option<String>,
        #[serde(default)]
        deleted: bool,
    },
    Read {
        conversation: String,
        staff: StaffId,
        message: String,
    },
}

fn yes() -> bool {
    true
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

#[derive(Default)]
struct Bad {
    lines: Vec<(usize, String)>,
    count: usize,
}

impl Bad {
    fn add(&mut self, line: usize, why: impl Into<String>) {
        self.count += 1;
        if self.lines.len() < REPORTED {
            self.lines.push((line, why.into()));
        }
    }
}

/// A message to append, and where it came from.
struct NewMessage {
    line: usize,
    id: String,
    sender: StaffId,
    body: String,
    at: Millis,
    reply_to: Option<String>,
    deleted: bool,
}

/// A conversation of the file: one to create, or one an earlier run created.
struct Conv {
    line: usize,
    external: String,
    existing: Option<ConversationId>,
    kind: ConversationKind,
    title: Option<String>,
    participants: Vec<StaffId>,
    at: Millis,
    messages: Vec<NewMessage>,
}

/// Imports `file` into the database under `data` (with `dry_run`, checks and counts, and
/// writes nothing).
pub fn import(data: &Path, file: &Path, dry_run: bool) -> Result<Report, ImportError> {
    let started = Instant::now();
    let _lock = if dry_run { None } else { Some(storage::lock(data)?) };
    let mut conn = storage::open(data, Durability::Full)?;
    let known_staff: HashMap<StaffId, bool> = storage::load_staff(&conn)
        .map_err(anyhow::Error::from)?
        .into_iter()
        .map(|(s, active)| (s.id, active))
        .collect();
    let imported = load_imported(&conn)?;
    let mut bad = Bad::default();
    let (staff, mut convs, reads) = parse(file, &known_staff, &imported, &mut bad)?;
    let mut engine = load_engine(data, &conn)?;
    check_directs(&convs, &engine, &mut bad);
    if bad.count > 0 {
        return Err(ImportError::Lines {
            lines: bad.lines,
            count: bad.count,
        });
    }
    let mut report = Report::default();
    let tx = conn.transaction().map_err(anyhow::Error::from)?;
    let before = engine.offset();
    for (s, active) in &staff {
        if storage::set_staff(&tx, s, *active).map_err(anyhow::Error::from)? {
            report.staff += 1;
        }
        engine.upsert_staff(s.clone(), *active);
    }
    let mut writer = Writer {
        tx: &tx,
        engine: &mut engine,
        imported: &imported,
        ids: HashMap::new(),
    };
    convs.sort_by_key(|c| (c.at, c.line));
    for c in &mut convs {
        writer.conversation(c, &mut report, &reads)?;
    }
    report.events = engine.offset().0 - before.0;
    report.offset = engine.offset().0;
    if dry_run {
        drop(tx);
    } else {
        tx.commit().map_err(anyhow::Error::from)?;
        // The next start loads this rather than replaying what was just imported.
        let log = storage::log_id(&conn)?;
        if report.events > 0 {
            crate::checkpoints::write(data, &log, &engine)?;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// What earlier imports made of each outside id: `(kind, external) → internal`.
fn load_imported(conn: &Connection) -> anyhow::Result<HashMap<(String, String), u64>> {
    let mut stmt = conn.prepare("SELECT kind, external, internal FROM imported")?;
    let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get::<_, i64>(2)? as u64)))?;
    Ok(rows.collect::<Result<_, _>>()?)
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

type Reads = HashMap<String, HashSet<(StaffId, String)>>;

/// A file, read: its staff (with whether active), its conversations with their messages, and
/// its reads.
type Parsed = (Vec<(Staff, bool)>, Vec<Conv>, Reads);

/// Reads and checks every line: the staff, the conversations with their messages, and the
/// reads (`conversation → {(staff, message)}`).
fn parse(
    file: &Path,
    known_staff: &HashMap<StaffId, bool>,
    imported: &HashMap<(String, String), u64>,
    bad: &mut Bad,
) -> anyhow::Result<Parsed> {
    let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
    let mut staff: Vec<(Staff, bool)> = Vec::new();
    let mut staff_ids: HashSet<StaffId> = known_staff.keys().cloned().collect();
    let mut listed_staff: HashSet<StaffId> = HashSet::new();
    let mut convs: Vec<Conv> = Vec::new();
    let mut conv_index: HashMap<String, usize> = HashMap::new();
    // Every message of the file: its conversation and sender (for replies and reads).
    let mut messages: HashMap<String, (usize, StaffId)> = HashMap::new();
    let mut reads: Vec<(usize, String, StaffId, String)> = Vec::new();
    for (i, text) in reader.lines().enumerate() {
        let n = i + 1;
        let text = text?;
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = match serde_json::from_str(&text) {
            Ok(l) => l,
            Err(e) => {
                bad.add(n, e.to_string());
                continue;
            }
        };
        match line {
            Line::Staff { id, name, active } => {
                let name = name.trim();
                if id.is_system() {
                    bad.add(n, format!("`{}` is reserved", StaffId::SYSTEM));
                } else if name.is_empty() || name.len() > limits::STAFF_NAME_MAX_BYTES {
                    bad.add(
                        n,
                        format!("a name is 1 to {} bytes", limits::STAFF_NAME_MAX_BYTES),
                    );
                } else if !listed_staff.insert(id.clone()) {
                    bad.add(n, format!("staff {id} is listed twice"));
                } else {
                    staff_ids.insert(id.clone());
                    let member = Staff {
                        id,
                        name: name.to_string(),
                    };
                    staff.push((member, active));
                }
            }
            Line::Conversation {
                id,
                kind,
                title,
                participants,
                created_at,
            } => {
                let at = match parse_time(&created_at) {
                    Ok(at) => at,
                    Err(why) => {
                        bad.add(n, why);
                        continue;
                    }
                };
                if let Err(why) = check_conversation(kind, title.as_deref(), &participants, &staff_ids) {
                    bad.add(n, why);
                    continue;
                }
                if conv_index.contains_key(&id) {
                    bad.add(n, format!("conversation {id} is listed twice"));
                    continue;
                }
                let existing = imported
                    .get(&("conversation".to_string(), id.clone()))
                    .map(|c| ConversationId(*c));
                conv_index.insert(id.clone(), convs.len());
                let title =
                    (kind == ConversationKind::Group).then(|| title.unwrap_or_default().trim().to_string());
                convs.push(Conv {
                    line: n,
                    external: id,
                    existing,
                    kind,
                    title,
                    participants,
                    at,
                    messages: Vec::new(),
                });
            }
            Line::Message {
                id,
                conversation,
                sender,
                body,
                created_at,
                reply_to,
                deleted,
            } => {
                let at = match parse_time(&created_at) {
                    Ok(at) => at,
                    Err(why) => {
                        bad.add(n, why);
                        continue;
                    }
                };
                let Some(&c) = conv_index.get(&conversation) else {
                    bad.add(n, format!("no conversation {conversation} before this line"));
                    continue;
                };
                if !staff_ids.contains(&sender) {
                    bad.add(n, format!("no staff member {sender}"));
                    continue;
                }
                if body.len() > limits::BODY_MAX_BYTES {
                    bad.add(
                        n,
                        format!("a message is at most {} bytes", limits::BODY_MAX_BYTES),
                    );
                    continue;
                }
                if body.trim().is_empty() && !deleted {
                    bad.add(n, "a message that is not deleted needs a body");
                    continue;
                }
                if messages.contains_key(&id) {
                    bad.add(n, format!("message {id} is listed twice"));
                    continue;
                }
                if let Some(r) = &reply_to
                    && messages.get(r).is_none_or(|(rc, _)| *rc != c)
                {
                    bad.add(
                        n,
                        format!("reply_to {r}: no earlier message of this conversation"),
                    );
                    continue;
                }
                messages.insert(id.clone(), (c, sender.clone()));
                convs[c].messages.push(NewMessage {
                    line: n,
                    id,
                    sender,
                    body,
                    at,
                    reply_to,
                    deleted,
                });
            }
            Line::Read {
                conversation,
                staff,
                message,
            } => reads.push((n, conversation, staff, message)),
        }
    }
    // Reads may come anywhere after their message's line or before it: checked at the end.
    let mut by_conv: Reads = HashMap::new();
    for (n, conversation, staff, message) in reads {
        let Some(&c) = conv_index.get(&conversation) else {
            bad.add(n, format!("no conversation {conversation}"));
            continue;
        };
        if !convs[c].participants.contains(&staff) {
            bad.add(n, format!("{staff} is not in conversation {conversation}"));
            continue;
        }
        if messages.get(&message).is_none_or(|(mc, _)| *mc != c) {
            bad.add(n, format!("no message {message} in conversation {conversation}"));
            continue;
        }
        by_conv.entry(conversation).or_default().insert((staff, message));
    }
    Ok((staff, convs, by_conv))
}

fn check_conversation(
    kind: ConversationKind,
    title: Option<&str>,
    participants: &[StaffId],
    staff: &HashSet<StaffId>,
) -> Result<(), String> {
    let distinct: HashSet<&StaffId> = participants.iter().collect();
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

/// A pair has one direct conversation: one the file makes must not exist already (unless an
/// earlier run of this import made it), nor be made twice.
fn check_directs(convs: &[Conv], engine: &Engine, bad: &mut Bad) {
    let mut pairs: HashSet<(StaffId, StaffId)> = HashSet::new();
    for c in convs
        .iter()
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
        } else if engine.direct_between(a, b).is_some() {
            bad.add(
                c.line,
                format!("{a} and {b} already have a direct conversation in Tally"),
            );
        }
    }
}

/// Appends events inside the import's transaction, through the engine.
struct Writer<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    engine: &'a mut Engine,
    /// What earlier runs made of each outside id.
    imported: &'a HashMap<(String, String), u64>,
    /// Each message's outside id, for replies made in this run.
    ids: HashMap<String, MessageId>,
}

impl Writer<'_> {
    fn append(&mut self, event: Event) -> anyhow::Result<()> {
        let logged = LoggedEvent {
            offset: self.engine.offset().next(),
            event,
        };
        storage::append(self.tx, &logged, &encode(&logged))?;
        self.engine.apply(logged);
        Ok(())
    }

    fn remember(&self, kind: &str, external: &str, internal: u64) -> anyhow::Result<()> {
        self.tx
            .prepare_cached("INSERT INTO imported (kind, external, internal) VALUES (?1, ?2, ?3)")?
            .execute(params![kind, external, internal as i64])?;
        Ok(())
    }

    /// One conversation: created (unless an earlier run did), its new messages in time order,
    /// then each participant's watermark from the reads.
    fn conversation(&mut self, c: &mut Conv, report: &mut Report, reads: &Reads) -> anyhow::Result<()> {
        let id = match c.existing {
            Some(id) => {
                report.already_imported += 1;
                id
            }
            None => {
                let (id, _) = self.engine.next_ids();
                let conversation = Conversation {
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
                self.remember("conversation", &c.external, id.0)?;
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
        // Every message of the file in this conversation, in seq order: (outside id, seq,
        // sender, deleted).
        let mut order: Vec<(String, Seq, StaffId, bool)> = Vec::with_capacity(c.messages.len());
        for m in std::mem::take(&mut c.messages) {
            let key = ("message".to_string(), m.id.clone());
            if let Some(&internal) = self.imported.get(&key) {
                report.already_imported += 1;
                let stored = SqlLookup(self.tx).message(MessageId(internal));
                if let Some(stored) = stored {
                    order.push((m.id, stored.seq, m.sender, m.deleted));
                }
                continue;
            }
            let seq = self.message(id, &participants, &m)?;
            report.messages += 1;
            order.push((m.id, seq, m.sender, m.deleted));
        }
        order.sort_by_key(|o| o.1);
        let read = reads.get(&c.external);
        for (p, before) in participants.iter().zip(before) {
            let w = watermark(order.iter().map(|(mid, seq, sender, deleted)| ReadBy {
                seq: *seq,
                counts: sender != p && !deleted,
                read: read.is_some_and(|r| r.contains(&(p.clone(), mid.clone()))),
            }));
            if w.read_after > 0 {
                report.gaps += 1;
                report.unread_because_of_gaps += u64::from(w.read_after);
            }
            // Never behind where the person already was before this run.
            let target = w.last_read.max(before);
            let now = self.engine.projection().last_read(p, id).unwrap_or_default();
            let event = if target > now {
                Event::MessagesRead {
                    conversation: id,
                    staff: p.clone(),
                    last_read: target,
                }
            } else if target < now {
                Event::MarkedUnread {
                    conversation: id,
                    staff: p.clone(),
                    last_read: target,
                }
            } else {
                continue;
            };
            self.append(event)?;
            report.watermarks += 1;
        }
        Ok(())
    }

    /// Appends one message (and, for a deleted one, its deletion: no text is stored); its seq.
    fn message(
        &mut self,
        conversation: ConversationId,
        participants: &[StaffId],
        m: &NewMessage,
    ) -> anyhow::Result<Seq> {
        let (_, id) = self.engine.next_ids();
        let seq = self
            .engine
            .projection()
            .head(conversation)
            .unwrap_or_default()
            .next();
        let reply_to = match &m.reply_to {
            Some(r) => {
                let earlier = || {
                    self.imported
                        .get(&("message".to_string(), r.clone()))
                        .map(|i| MessageId(*i))
                };
                let quoted = self.ids.get(r).copied().or_else(earlier);
                quoted.and_then(|q| SqlLookup(self.tx).message(q)).map(|q| {
                    Box::new(tally_shared::model::ReplyRef {
                        message: q.id,
                        seq: q.seq,
                        sender: q.sender.clone(),
                        excerpt: q.body.chars().take(limits::REPLY_EXCERPT_CHARS).collect(),
                        deleted: q.deleted,
                    })
                })
            }
            None => None,
        };
        let body = if m.deleted { String::new() } else { m.body.clone() };
        let mentions = if m.deleted {
            Vec::new()
        } else {
            mentions_in(&body, participants, &m.sender)
        };
        let message = Message {
            id,
            conversation,
            seq,
            sender: m.sender.clone(),
            body,
            mentions,
            attachments: Vec::new(),
            reply_to,
            forwarded_from: None,
            notice: None,
            client_id: None,
            created_at: m.at,
            edited_at: None,
            deleted: false,
        };
        self.append(Event::MessageCreated { message })?;
        if m.deleted {
            self.append(Event::MessageDeleted {
                conversation,
                message: id,
                seq,
                sender: m.sender.clone(),
                mentions: Vec::new(),
            })?;
        }
        self.remember("message", &m.id, id.0)?;
        self.ids.insert(m.id.clone(), id);
        Ok(seq)
    }
}

/// An RFC 3339 time (`2025-01-01T09:00:00Z`, `…T09:00:00.250+02:00`) as milliseconds since
/// the epoch.
pub fn parse_time(s: &str) -> Result<Millis, String> {
    let bad = || format!("`{s}` is not an RFC 3339 time like 2025-01-01T09:00:00Z");
    let b = s.as_bytes();
    if b.len() < 20
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
    if report.gaps > 0 {
        println!(
            "{} people had gaps in their reads: {} messages they had read count as unread (see docs/semantics.md, \"Imported reads\")",
            report.gaps, report.unread_because_of_gaps
        );
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time;

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
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
