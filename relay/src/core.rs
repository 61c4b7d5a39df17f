//! The core: one thread that owns the engine, the SQLite connection, the hub and the retained
//! log. It takes commands in batches: every write of a batch is validated by the engine and
//! appended inside one transaction, committed once (group commit), and only then acknowledged
//! and fanned out. Reads (snapshots, history, attachment checks) are answered between batches,
//! so each sees a state that every connection has been sent consistently.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use tally_shared::engine::{Applied, Lookup, Outcome, Rejection, ServiceRequest};
use tally_shared::protocol::{ConversationState, ErrorFrame, Presence, ProtocolRange, ServerFrame, encode};
use tally_shared::staff_keys::StaffKey;
use tally_shared::{
    Attachment, AttachmentId, ConversationId, Engine, ErrorCode, Message, Millis, Offset, Seq, StaffId,
    limits,
};
use tokio::sync::{mpsc, oneshot};

use crate::files::Files;
use crate::hub::{ConnHandle, Frame, Hub};
use crate::metrics::Metrics;
use crate::order::{Down, Order};
use crate::reads::{Job, ReadPool};
use crate::storage::{self, Failure, SqlLookup};
use tally_shared::protocol::close;

/// Most commands taken into one batch (the default; `--max-batch` changes it).
pub const MAX_BATCH: usize = 256;

/// Where a reply goes.
pub type Reply<T> = oneshot::Sender<T>;

/// What sessions and HTTP handlers ask of the core.
#[derive(Debug)]
pub enum Command {
    /// A connection said hello: register it and send it a snapshot or a replay.
    Hello {
        staff: StaffId,
        resume_from: Option<Offset>,
        conn: ConnHandle,
        reply: Reply<Result<(), ErrorFrame>>,
    },
    /// A connection asked for a fresh snapshot (after a divergence); acknowledged after it.
    Snapshot {
        staff: StaffId,
        req: Option<tally_shared::RequestId>,
        conn: ConnHandle,
    },
    /// A write for the log from a connection.
    Execute {
        staff: StaffId,
        req: Option<tally_shared::RequestId>,
        write: tally_shared::LogWrite,
        conn: ConnHandle,
    },
    /// A ping or a divergence report: acknowledged at the current offset, in batch order.
    Offset {
        req: Option<tally_shared::RequestId>,
        conn: ConnHandle,
    },
    /// A connection closed.
    Disconnected { staff: StaffId, conn_id: u64 },
    /// A page of history.
    History(HistoryRequest),
    /// A full-text search's scope (see `search`): the searcher's conversations now.
    Search(SearchRequest),
    /// May this staff member fetch this attachment? Its content type and size if so.
    Attachment {
        staff: StaffId,
        id: AttachmentId,
        reply: Reply<Result<(String, u64), ErrorCode>>,
    },
    /// May this staff member upload this many bytes now (rate aside)?
    UploadAllowance {
        staff: StaffId,
        size: u64,
        reply: Reply<Result<(), ErrorCode>>,
    },
    /// Move an upload's bytes (written and synced to `file`) into place and record it.
    Upload {
        staff: StaffId,
        attachment: Attachment,
        file: std::path::PathBuf,
        reply: Reply<Result<(), ErrorCode>>,
    },
    /// Delete the files nothing references once their grace period is over.
    CollectAttachments,
    /// The staff directory, for the demo sign-in picker.
    Directory { reply: Reply<Vec<tally_shared::Staff>> },
    /// Whether a staff member exists and is active.
    IsActive { staff: StaffId, reply: Reply<bool> },
    /// The current offset.
    Health { reply: Reply<Offset> },
    /// Re-read the staff table (the CLI may have changed it).
    ReloadStaff,
    /// A read worker is done with its connection.
    ReaderDone { conn: Connection },
    /// Flush, close every connection with going-away, and stop.
    Shutdown { done: Reply<()> },
    /// Another node of the cluster committed (or all was quiet for a while): read what this
    /// node has not applied yet.
    CatchUp,
    /// Events another node of the cluster committed, as its ring carried them (its head, and
    /// the events up to it, encoded, in order): applied if they follow this node's offset,
    /// read from PostgreSQL otherwise.
    Committed(u64, Vec<String>),
    /// Typing or presence from another node of the cluster.
    Gossip(crate::doorbell::Gossip),
    /// The name of the live service key this is, if it is one.
    ServiceKey {
        key: String,
        reply: Reply<Option<String>>,
    },
    /// A write by the work app's backend (service API): in the batch, like a connection's.
    Service {
        write: ServiceWrite,
        reply: Reply<Result<ServiceDone, Rejection>>,
    },
    /// Mirror the work app's staff table: add, rename, (re)activate each entry; deactivate the
    /// others when asked. Deactivated staff's sessions close.
    MirrorStaff {
        staff: Vec<(tally_shared::Staff, bool)>,
        deactivate_missing: bool,
        reply: Reply<anyhow::Result<MirrorReport>>,
    },
    /// A connection says its staff member is typing: relayed to the conversation's other
    /// participants, never stored.
    Typing {
        staff: StaffId,
        conversation: ConversationId,
        req: Option<tally_shared::RequestId>,
        conn: ConnHandle,
    },
    /// A connection's tab became visible or hidden.
    Visibility {
        staff: StaffId,
        visible: bool,
        req: Option<tally_shared::RequestId>,
        conn: ConnHandle,
    },
    /// A staff member changed their preferences.
    Preferences {
        staff: StaffId,
        hide_read_state: bool,
        req: Option<tally_shared::RequestId>,
        conn: ConnHandle,
    },
    /// A webhook delivery's outcome, recorded in the outbox in the next batch.
    WebhookSettled(crate::webhooks::Settled),
    /// A conversation, as it is now.
    Conversation {
        id: ConversationId,
        reply: Reply<Option<tally_shared::Conversation>>,
    },
    /// One staff member's counts: their total and each of their conversations (none: no such
    /// staff member).
    Unread {
        staff: StaffId,
        reply: Reply<Option<(tally_shared::Totals, Vec<ConversationState>)>>,
    },
}

/// A service write: as a staff member (a message the backend posts for them, the direct
/// conversation it opens for them), or as the service itself.
#[derive(Debug)]
pub enum ServiceWrite {
    /// A staff member's request, exactly as if their own connection had sent it.
    AsStaff(StaffId, tally_shared::LogWrite),
    /// The service's own (notices, groups, membership).
    Service(ServiceRequest),
}

/// What a service write did: its acknowledgement, and the message it created (or found, for
/// a retry), as stored.
#[derive(Debug)]
pub struct ServiceDone {
    /// As a connection would have been acknowledged.
    pub ack: tally_shared::protocol::Ack,
    /// The message, when the write made one.
    pub message: Option<Message>,
    /// Whether it appended anything (not: a retry, or a change that was already so).
    pub created: bool,
}

/// What mirroring the staff table changed.
#[derive(Debug, Default, serde::Serialize)]
pub struct MirrorReport {
    /// New staff.
    pub added: usize,
    /// Existing staff renamed, reactivated or deactivated.
    pub changed: usize,
    /// Staff not in the list, deactivated (`deactivate_missing`).
    pub deactivated_missing: usize,
}

struct Retained {
    offset: Offset,
    frame: Frame,
    recipients: Vec<StaffKey>,
    updates: Vec<(StaffKey, Frame)>,
}

impl Retained {
    /// What it holds in memory, roughly: its frames, its recipients, its bookkeeping.
    fn bytes(&self) -> usize {
        let updates: usize = self.updates.iter().map(|(_, f)| f.len() + 24).sum();
        self.frame.len() + self.recipients.len() * 4 + updates + 96
    }
}

/// How much of the log the core keeps in memory for resuming clients: the newest events, at
/// most this many and this many bytes (a client that fell further behind gets a snapshot).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Most events.
    pub events: usize,
    /// Most bytes.
    pub bytes: usize,
}

/// The longest replay a reconnecting client gets; past it, it gets a fresh snapshot instead
/// (smaller, and bounded by its own budgets). Half a connection's queue, so that the frames
/// written while it is replayed fit too.
#[derive(Debug, Clone, Copy)]
pub struct ReplayLimit {
    /// Most frames.
    pub frames: usize,
    /// Most bytes.
    pub bytes: usize,
}

/// Who a write in a batch answers.
enum Source {
    /// A connection, with the request id of its frame.
    Conn(Option<tally_shared::RequestId>, ConnHandle),
    /// A service API call.
    Service(Reply<Result<ServiceDone, Rejection>>),
}

/// A snapshot or history page waiting for a read connection.
enum Pending {
    Snapshot {
        staff: StaffId,
        conn: ConnHandle,
        deliver: oneshot::Sender<crate::hub::Built>,
    },
    History(HistoryRequest),
}

/// A search by a staff member: in one of their conversations, or in all of them.
#[derive(Debug)]
pub struct SearchRequest {
    /// Who asks.
    pub staff: StaffId,
    /// The words (checked by `search::terms`).
    pub terms: Vec<crate::search::Term>,
    /// Only this conversation (which they must be in).
    pub conversation: Option<ConversationId>,
    /// Only messages older than this one.
    pub before: Option<tally_shared::MessageId>,
    /// At most this many.
    pub limit: u64,
    /// Where the scoped query goes (the HTTP handler runs it in the `Searcher`).
    pub reply: Reply<Result<crate::search::SearchQuery, ErrorCode>>,
}

/// A page of history: up to `limit` messages of a conversation before `before` (or up to its
/// head), for a staff member who must be in it.
#[derive(Debug)]
pub struct HistoryRequest {
    /// Who asks.
    pub staff: StaffId,
    /// Where.
    pub conversation: ConversationId,
    /// Messages before this seq (none: up to the head).
    pub before: Option<Seq>,
    /// At most this many (clamped to the page limit).
    pub limit: u64,
    /// Where the page goes.
    pub reply: Reply<Result<Vec<Message>, ErrorCode>>,
}

/// The core's state; runs on its own thread.
pub struct Core {
    conn: Connection,
    engine: Engine,
    hub: Hub,
    retained: VecDeque<Retained>,
    retained_bytes: usize,
    retain: Retention,
    /// The longest replay: past it a snapshot is sent instead.
    max_replay: ReplayLimit,
    /// Most open connections per staff member.
    connection_cap: usize,
    /// Most commands per group commit.
    max_batch: usize,
    /// Where attachments live, how long unreferenced ones are kept, and the upload quota.
    files: Files,
    metrics: Arc<Metrics>,
    /// Where snapshots and history pages are built, off this thread (none: on it).
    reads: Option<ReadPool>,
    /// Those waiting for a read connection, in order.
    pending: VecDeque<Pending>,
    /// The live webhooks (reloaded every second).
    hooks: Vec<crate::webhooks::Hook>,
    /// Wakes the delivery task after a commit that queued deliveries.
    wake: Option<Arc<tokio::sync::Notify>>,
    /// Who is due an `unread_reminder`.
    reminders: Reminders,
    /// Presence: what was last announced of each person, and whose may have changed since
    /// (announced at the next tick, so a page reload does not flash offline).
    announced: rustc_hash::FxHashMap<StaffKey, tally_shared::protocol::Presence>,
    presence_dirty: rustc_hash::FxHashSet<StaffKey>,
    /// Read positions that moved since the last tick (see `flush_seen`).
    seen_moved: Vec<(ConversationId, StaffId)>,
    /// Where the order of events is decided (this node's SQLite, or a cluster's PostgreSQL).
    order: Box<dyn Order>,
    /// Tells the other nodes of a cluster about this node's commits.
    bell: Option<crate::doorbell::Bell>,
    /// The data directory and log whose checkpoints a rebuild starts from.
    checkpoints: Option<(std::path::PathBuf, String)>,
    /// Presence on the other nodes of a cluster: per node, when it was last heard from and
    /// who is connected to it (see `doorbell::Gossip::Presence`).
    remote_presence: rustc_hash::FxHashMap<u64, (Instant, rustc_hash::FxHashMap<StaffId, Presence>)>,
    /// The presence of people connected here as last told to the other nodes.
    published: rustc_hash::FxHashMap<StaffKey, Presence>,
    /// Seconds ticked (the 1 s `ReloadStaff`), for repeating presence to the other nodes.
    ticks: u64,
    /// Writes are refused until then, after storage failed (the disk full): see
    /// [`Core::storage_failed`].
    paused: Option<Paused>,
    /// Storage failed so that what is on disk is unknown: the core stops after this batch and
    /// [`Core::run`] says why.
    stopping: Option<String>,
}

/// Writes refused for a while after a storage failure, and why.
#[derive(Debug, Clone)]
struct Paused {
    until: Instant,
    wait: Duration,
    why: String,
}

/// The first pause after a storage failure; each failure after it doubles it, up to
/// [`PAUSE_MAX`].
const PAUSE_FIRST: Duration = Duration::from_secs(1);
const PAUSE_MAX: Duration = Duration::from_secs(30);

/// A storage failure, and what it means (`storage::Failure`).
#[derive(Debug, thiserror::Error)]
#[error("{why}")]
pub struct StoreFailed {
    failure: Failure,
    why: String,
}

impl StoreFailed {
    fn sqlite(e: &rusqlite::Error) -> Self {
        StoreFailed {
            failure: Failure::of(e),
            why: e.to_string(),
        }
    }

    fn any(e: &anyhow::Error) -> Self {
        StoreFailed {
            failure: Failure::of_any(e),
            why: format!("{e:#}"),
        }
    }

    fn fatal(why: String) -> Self {
        StoreFailed {
            failure: Failure::Fatal,
            why,
        }
    }
}

/// Why the core stopped on its own: storage failed so that what is on disk is unknown.
#[derive(Debug, thiserror::Error)]
#[error("storage failed: {0}")]
pub struct Stopped(pub String);

/// What `unread_reminder` needs: since when each person has had unread messages, since when
/// they have had no connection open, and who was reminded in their current quiet spell (kept
/// in `reminded` too, so a restart does not remind them again).
#[derive(Default)]
struct Reminders {
    after_ms: u64,
    started: Millis,
    unread_since: rustc_hash::FxHashMap<StaffKey, Millis>,
    quiet_since: rustc_hash::FxHashMap<StaffKey, Millis>,
    reminded: rustc_hash::FxHashSet<StaffId>,
}

fn now() -> Millis {
    Millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

impl Core {
    /// Takes an engine (from a checkpoint, or empty), loads staff, and replays the stored
    /// events after the engine's offset (rebuilding every count they change).
    pub fn load(
        conn: Connection,
        order: Box<dyn Order>,
        engine: Engine,
        retain: Retention,
        max_replay: ReplayLimit,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Core> {
        let mut core = Core {
            conn,
            engine,
            hub: Hub::default(),
            retained: VecDeque::new(),
            retained_bytes: 0,
            retain,
            max_replay,
            connection_cap: usize::MAX,
            max_batch: MAX_BATCH,
            files: Files::new(
                std::path::PathBuf::from("."),
                crate::files::GRACE,
                crate::limits::UPLOAD_BYTES_PER_DAY,
            ),
            metrics,
            reads: None,
            pending: VecDeque::new(),
            hooks: Vec::new(),
            wake: None,
            reminders: Reminders::default(),
            announced: rustc_hash::FxHashMap::default(),
            presence_dirty: rustc_hash::FxHashSet::default(),
            seen_moved: Vec::new(),
            order,
            bell: None,
            checkpoints: None,
            remote_presence: rustc_hash::FxHashMap::default(),
            published: rustc_hash::FxHashMap::default(),
            ticks: 0,
            paused: None,
            stopping: None,
        };
        core.reload_staff()?;
        let started = Instant::now();
        let from = core.engine.offset();
        let head = storage::last_offset(&core.conn)?;
        // Only the newest events can be retained: do not encode frames for the others.
        let keep_after = head.saturating_sub(retain.events as u64);
        let mut replayed = 0u64;
        loop {
            let events = storage::events_after(&core.conn, core.engine.offset(), 10_000)?;
            if events.is_empty() {
                break;
            }
            for e in events {
                let at = core.engine.offset();
                anyhow::ensure!(
                    e.offset == at.next(),
                    "the log jumps from offset {at} to {}: run `tally-relay check`",
                    e.offset
                );
                let applied = core.engine.apply(e);
                replayed += 1;
                if applied.event.offset.0 > keep_after {
                    let frame: Frame = encode(&applied.event).into();
                    core.retain_event(&applied, frame);
                }
            }
        }
        let index_bytes = core.engine.compact();
        core.metrics.engine_index_bytes.store(index_bytes as u64, Relaxed);
        core.metrics.start_checkpoint.store(from.0, Relaxed);
        core.metrics.start_replayed.store(replayed, Relaxed);
        tracing::info!(
            from = from.0,
            replayed,
            offset = core.engine.offset().0,
            index_bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "log replayed"
        );
        Ok(core)
    }

    /// Makes this node part of a cluster: rings `bell` after each commit, and rebuilds from
    /// the checkpoints in `data` of the log `log` after a commit whose outcome is unknown.
    pub fn set_cluster(&mut self, bell: crate::doorbell::Bell, data: std::path::PathBuf, log: String) {
        self.bell = Some(bell);
        self.checkpoints = Some((data, log));
    }

    /// Where a reload after a failed write starts from: the checkpoints in `data` of the log
    /// `log` (without them, the whole log is replayed).
    pub fn set_checkpoints(&mut self, data: std::path::PathBuf, log: String) {
        self.checkpoints = Some((data, log));
    }

    /// Catches up with what the source of truth has beyond this node (at start).
    pub fn catch_up_now(&mut self) {
        self.catch_up();
    }

    /// Sets the most commands one group commit takes (1 means a commit per write).
    pub fn set_max_batch(&mut self, max: usize) {
        self.max_batch = max.max(1);
    }

    /// Sets where files live, their grace period and the upload quota.
    pub fn set_files(&mut self, files: Files) {
        self.files = files;
    }

    /// Builds snapshots and history pages on these workers rather than on the core thread.
    pub fn set_reads(&mut self, reads: ReadPool) {
        self.reads = Some(reads);
    }

    /// Turns webhooks on: loads them and who was reminded, wakes `wake` when deliveries are
    /// queued, and reminds people after `reminder_after` of unread quiet (counting from now for
    /// those who have unread messages already).
    pub fn set_webhooks(
        &mut self,
        wake: Arc<tokio::sync::Notify>,
        reminder_after: std::time::Duration,
    ) -> anyhow::Result<()> {
        self.order.sync_webhooks(&self.conn)?;
        self.hooks = crate::webhooks::load(&self.conn)?;
        self.wake = Some(wake);
        let started = now();
        let mut reminders = Reminders {
            after_ms: reminder_after.as_millis() as u64,
            started,
            ..Reminders::default()
        };
        let mut stmt = self.conn.prepare("SELECT staff FROM reminded")?;
        for staff in stmt.query_map([], |r| r.get::<_, String>(0))? {
            if let Ok(id) = StaffId::new(staff?) {
                reminders.reminded.insert(id);
            }
        }
        drop(stmt);
        for id in self.engine.keyed_staff() {
            if self.engine.projection().total(&id).unread > 0
                && let Some(key) = self.engine.key(&id)
            {
                reminders.unread_since.insert(key, started);
            }
        }
        self.reminders = reminders;
        Ok(())
    }

    /// Queues an `unread_reminder` for each person whose unread messages have waited long
    /// enough with no connection open, once per quiet spell.
    fn remind(&mut self) {
        if self.wake.is_none()
            || !self.hooks.iter().any(|h| h.events.contains("unread_reminder"))
            || !self.order.leads_reminders()
        {
            return;
        }
        let at = now();
        let r = &self.reminders;
        let mut due = Vec::new();
        for (&key, &since) in &r.unread_since {
            let quiet = r.quiet_since.get(&key).copied().unwrap_or(r.started);
            let waited = since.max(quiet);
            if self.presence_of(key) != Presence::Offline || at.0.saturating_sub(waited.0) < r.after_ms {
                continue;
            }
            let staff = self.engine.projection().staff_id(key);
            if !r.reminded.contains(staff) && self.engine.is_active(staff) {
                due.push((staff.clone(), waited));
            }
        }
        if due.is_empty() {
            return;
        }
        // Queued in one transaction; if storage fails, nobody is marked reminded, and the next
        // tick tries again.
        let (engine, hooks) = (&self.engine, &self.hooks);
        let queued = self.conn.transaction().and_then(|tx| {
            queue_reminders(engine, hooks, &tx, &due, at)?;
            tx.commit()
        });
        if let Err(e) = queued {
            tracing::warn!(error = %e, "unread reminders not queued; trying again at the next tick");
            return;
        }
        for (staff, _) in due {
            tracing::info!(staff = %staff, "unread reminder queued");
            self.reminders.reminded.insert(staff);
        }
        if let Some(wake) = &self.wake {
            wake.notify_one();
        }
    }

    /// Sets the most connections one staff member may have open.
    pub fn set_connection_cap(&mut self, cap: usize) {
        self.connection_cap = cap;
    }

    /// The engine (for seeding the demo before serving).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Executes a request as a staff member outside any connection (the demo seed).
    /// In a cluster it takes the log's lock like a group commit (nodes seeding together
    /// write the demo once: its requests carry client ids).
    pub fn execute_local(&mut self, staff: &StaffId, request: tally_shared::Request) -> anyhow::Result<()> {
        let write = match request.into_route() {
            tally_shared::Routed::Log(write) => write,
            tally_shared::Routed::Hello
            | tally_shared::Routed::Offset
            | tally_shared::Routed::Snapshot
            | tally_shared::Routed::Visibility(_)
            | tally_shared::Routed::Typing(_)
            | tally_shared::Routed::Preferences { .. } => {
                anyhow::bail!("a seed request is a write for the log")
            }
        };
        self.catch_up();
        let tx = self.conn.transaction()?;
        let caught: Vec<(Applied, Frame)> = self
            .order
            .begin(self.engine.offset())?
            .into_iter()
            .map(|text| apply_committed(&mut self.engine, &tx, text))
            .collect::<Result<_, StoreFailed>>()?;
        let outcome = match self
            .engine
            .execute(staff, write.request(), now(), &SqlLookup(&tx))
        {
            Ok(o) => o,
            Err(r) => {
                // Keep what was caught up on (the engine has it), then refuse.
                self.order.commit(&[], &[])?;
                tx.commit()?;
                anyhow::bail!("seed request refused: {r}");
            }
        };
        let texts: Vec<String> = outcome.applied.iter().map(|a| encode(&a.event)).collect();
        for (a, text) in outcome.applied.iter().zip(&texts) {
            storage::append(&tx, &a.event, text)?;
        }
        let mine: Vec<(Offset, &str)> = outcome
            .applied
            .iter()
            .zip(&texts)
            .map(|(a, t)| (a.event.offset, t.as_str()))
            .collect();
        self.order
            .commit(&mine, &redacted_by(&tx, outcome.applied.iter())?)?;
        tx.commit()?;
        for (a, frame) in caught {
            self.retain_event(&a, frame);
        }
        for a in outcome.applied {
            let frame: Frame = encode(&a.event).into();
            self.retain_event(&a, frame);
        }
        Ok(())
    }

    /// Adds a staff member to storage and the engine.
    pub fn add_staff(&mut self, staff: tally_shared::Staff) -> anyhow::Result<()> {
        self.order.upsert_staff(&self.conn, &staff)?;
        self.engine.upsert_staff(staff, true);
        Ok(())
    }

    fn reload_staff(&mut self) -> anyhow::Result<()> {
        for (staff, active) in self.order.staff(&self.conn)? {
            let id = staff.id.clone();
            let was_active = self.engine.is_active(&id);
            self.engine.upsert_staff(staff, active);
            if was_active
                && !active
                && let Some(key) = self.engine.key(&id)
            {
                tracing::info!(staff = %id, "deactivated: closing sessions");
                self.hub.close_staff(key, close::DEACTIVATED);
            }
        }
        // Another node may have changed someone's preference: tell whom it concerns.
        let hidden: rustc_hash::FxHashSet<StaffId> =
            self.order.read_state_hidden(&self.conn)?.into_iter().collect();
        let mut changed = Vec::new();
        for id in self.engine.keyed_staff() {
            let hide = hidden.contains(&id);
            if self.engine.hides_read_state(&id) != hide && self.engine.set_read_state_hidden(&id, hide) {
                changed.push(id);
            }
        }
        for id in changed {
            let frames = self.engine.preference_frames(&id);
            self.send_addressed(frames);
        }
        Ok(())
    }

    /// Runs until shutdown.
    ///
    /// Returns when asked to stop, or with [`Stopped`] when storage failed so that what is on
    /// disk is unknown (every socket is closed with going-away first; the caller stops the
    /// relay, and a restart recovers from the log).
    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) -> Result<(), Stopped> {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let done = self.handle_batch(batch);
            if let Some(why) = self.stopping.take() {
                rx.close();
                self.hub.close_all(close::GOING_AWAY);
                return Err(Stopped(why));
            }
            if let Some(done) = done {
                // Take what is still queued, then stop.
                rx.close();
                let mut rest = Vec::new();
                while let Ok(c) = rx.try_recv() {
                    rest.push(c);
                }
                let _ = self.handle_batch(rest);
                self.hub.close_all(close::GOING_AWAY);
                let _ = done.send(());
                return match self.stopping.take() {
                    Some(why) => Err(Stopped(why)),
                    None => Ok(()),
                };
            }
        }
        Ok(())
    }

    /// Storage failed. A fatal failure stops the core after this batch; any other refuses
    /// writes (as `unavailable`) for a while, 1 s then doubling up to 30 s, after which the
    /// next write tries storage again: a full disk is survived, and writing resumes by itself
    /// once there is room.
    fn storage_failed(&mut self, f: StoreFailed) {
        self.metrics.storage_failures.fetch_add(1, Relaxed);
        if f.failure == Failure::Fatal {
            tracing::error!(error = %f.why, "storage failed: stopping (a restart recovers from the log)");
            if self.stopping.is_none() {
                self.stopping = Some(f.why);
            }
            return;
        }
        let wait = self
            .paused
            .as_ref()
            .map_or(PAUSE_FIRST, |p| (p.wait * 2).min(PAUSE_MAX));
        let why = match f.failure {
            Failure::Full => format!("the disk is full ({})", f.why),
            _ => f.why,
        };
        tracing::error!(error = %why, pause_ms = wait.as_millis() as u64, "storage failed: writes are refused for now");
        self.paused = Some(Paused {
            until: Instant::now() + wait,
            wait,
            why,
        });
    }

    /// Why writes are refused now, if they are (see [`Core::storage_failed`]).
    fn writes_refused(&self) -> Option<Down> {
        self.paused
            .as_ref()
            .filter(|p| Instant::now() < p.until)
            .map(|p| Down(format!("writes are paused: {}", p.why)))
    }

    /// Answers a batch that could not open its transaction: writes refused, the rest served.
    fn refuse_batch(&mut self, batch: Vec<Command>, why: &Down) -> Option<Reply<()>> {
        let mut reads = Vec::new();
        for cmd in batch {
            match cmd {
                Command::Execute { staff, req, conn, .. } => {
                    let r = unavailable(&staff, why);
                    self.metrics.reject(r.code);
                    let e = ErrorFrame::new(req, r.code, r.message);
                    self.send(&conn, encode(&ServerFrame::Error(e)).into());
                }
                Command::Service { reply, .. } => {
                    let r = unavailable(&StaffId::system(), why);
                    self.metrics.reject(r.code);
                    let _ = reply.send(Err(r));
                }
                // Not recorded: the delivery comes due again and is sent again (at least once).
                Command::WebhookSettled(s) => {
                    let _ = s.reply.send(());
                }
                Command::Offset { req, conn } => {
                    let ack = tally_shared::protocol::Ack {
                        req,
                        offset: self.engine.offset(),
                        ..Default::default()
                    };
                    self.send(&conn, encode(&ServerFrame::Ack(ack)).into());
                }
                other => reads.push(other),
            }
        }
        self.after_writes(reads)
    }

    fn handle_batch(&mut self, batch: Vec<Command>) -> Option<Reply<()>> {
        let started = Instant::now();
        // Other nodes' commits that came with their rings go first (all of the batch's at once,
        // so that two rings heard out of order still follow each other): this batch's writes
        // are validated after them, and need not read them from PostgreSQL.
        let mut rung = Vec::new();
        let batch: Vec<Command> = batch
            .into_iter()
            .filter_map(|c| match c {
                Command::Committed(head, frames) => {
                    rung.push((head, frames));
                    None
                }
                other => Some(other),
            })
            .collect();
        if !rung.is_empty() {
            self.heard_committed(rung);
        }
        let mut writes = Vec::new();
        let mut reads = Vec::new();
        let mut settled = Vec::new();
        // Whether the batch may append (a ping or a divergence report never does, so it does
        // not lock a cluster's log).
        let writing = batch
            .iter()
            .any(|c| matches!(c, Command::Execute { .. } | Command::Service { .. }));
        if writing {
            // What others appended, as far as rings tell, is read before the head is locked
            // (the rest under the lock, in `begin`).
            if self
                .bell
                .as_ref()
                .is_some_and(|b| b.heard_past(self.engine.offset()))
            {
                self.catch_up();
            }
            self.fetch_uploads_of(&batch);
        }
        // Writes are refused without running while storage is paused after a failure.
        let mut down = if writing { self.writes_refused() } else { None };
        let (tx, failed_to_begin) = match self.conn.transaction() {
            Ok(tx) => (Some(tx), None),
            Err(e) => (None, Some(StoreFailed::sqlite(&e))),
        };
        if let Some(f) = failed_to_begin {
            drop(tx);
            let why = Down(f.why.clone());
            self.storage_failed(f);
            return self.refuse_batch(batch, &why);
        }
        let tx = tx.expect("a transaction began");
        // Under the log's lock: what others appended since, then this batch after it.
        let mut caught = Vec::new();
        // A storage failure in this batch: everything it wrote is rolled back, and its writes
        // are refused (see the end).
        let mut failed: Option<StoreFailed> = None;
        let mut began = false;
        if writing && down.is_none() {
            match self.order.begin(self.engine.offset()) {
                Ok(frames) => {
                    began = true;
                    for text in frames {
                        match apply_committed(&mut self.engine, &tx, text) {
                            Ok(c) => caught.push(c),
                            Err(f) => {
                                failed = Some(f);
                                break;
                            }
                        }
                    }
                }
                Err(e) => down = Some(e),
            }
        }
        // Whether the engine took events that the rollback of a failed batch takes back.
        let mut engine_moved = !caught.is_empty();
        let stamp = now();
        for cmd in batch {
            let (from, result) = match cmd {
                Command::Execute { staff, req, conn, .. } if down.is_some() || failed.is_some() => {
                    let why = down
                        .as_ref()
                        .map_or_else(|| Down("storage failed".into()), |d| Down(d.0.clone()));
                    (Source::Conn(req, conn), Err(unavailable(&staff, &why)))
                }
                Command::Service { reply, .. } if down.is_some() || failed.is_some() => {
                    let why = down
                        .as_ref()
                        .map_or_else(|| Down("storage failed".into()), |d| Down(d.0.clone()));
                    (Source::Service(reply), Err(unavailable(&StaffId::system(), &why)))
                }
                Command::Execute {
                    staff,
                    req,
                    write,
                    conn,
                } => {
                    let result = self
                        .engine
                        .execute(&staff, write.request(), stamp, &SqlLookup(&tx));
                    (Source::Conn(req, conn), result)
                }
                // Acknowledged in batch order, at the offset reached so far.
                Command::Offset { req, conn } => {
                    let ack = tally_shared::protocol::Ack {
                        offset: self.engine.offset(),
                        ..Default::default()
                    };
                    let outcome = Outcome {
                        applied: Vec::new(),
                        ack,
                    };
                    (Source::Conn(req, conn), Ok(outcome))
                }
                Command::WebhookSettled(s) => {
                    if failed.is_none()
                        && let Err(e) = crate::webhooks::settle(&tx, s.id, &s.result)
                    {
                        failed = Some(StoreFailed::sqlite(&e));
                    }
                    settled.push(s.reply);
                    continue;
                }
                Command::Service { write, reply } => {
                    let lookup = SqlLookup(&tx);
                    let result = match &write {
                        ServiceWrite::AsStaff(staff, write) => {
                            self.engine.execute(staff, write.request(), stamp, &lookup)
                        }
                        ServiceWrite::Service(request) => {
                            self.engine.execute_service(request, stamp, &lookup)
                        }
                    };
                    (Source::Service(reply), result)
                }
                other => {
                    reads.push(other);
                    continue;
                }
            };
            let mut frames = Vec::new();
            if let Ok(outcome) = &result {
                engine_moved |= !outcome.applied.is_empty();
                for a in &outcome.applied {
                    let text = encode(&a.event);
                    if failed.is_none()
                        && let Err(e) = storage::append(&tx, &a.event, &text)
                    {
                        // The engine has moved on: the whole batch is taken back (below).
                        failed = Some(StoreFailed::any(&e));
                    }
                    frames.push(Frame::from(text));
                }
            }
            writes.push((from, result, frames));
        }
        let appended: usize = writes.iter().map(|w| w.2.len()).sum();
        let redacted = if failed.is_none() && writing && down.is_none() {
            redacted_by(
                &tx,
                writes
                    .iter()
                    .filter_map(|w| w.1.as_ref().ok())
                    .flat_map(|o| &o.applied),
            )
            .unwrap_or_else(|f| {
                failed = Some(f);
                Vec::new()
            })
        } else {
            Vec::new()
        };
        if let Some(f) = failed.take() {
            drop(tx);
            if began {
                self.order.abort();
            }
            return self.take_back(f, engine_moved, false, writes, settled, reads);
        }
        if writing && down.is_none() {
            let mine: Vec<(Offset, &str)> = writes
                .iter()
                .filter_map(|w| w.1.as_ref().ok().map(|o| (o, &w.2)))
                .flat_map(|(o, frames)| o.applied.iter().zip(frames))
                .map(|(a, f)| (a.event.offset, &**f))
                .collect();
            if let Err(e) = self.order.commit(&mine, &redacted) {
                // Stored or not, nobody knows: forget this batch, rebuild from what is stored,
                // and let the clients retry (their client ids make a stored write answer
                // with its first acknowledgement once this node has caught up with it).
                drop(tx);
                tracing::warn!(error = %e, "commit failed: rebuilding from the log");
                self.rebuild();
                self.refuse_unavailable(writes, e);
                return self.after_writes(reads);
            }
        }
        let created: Vec<&Applied> = writes
            .iter()
            .filter_map(|w| w.1.as_ref().ok())
            .flat_map(|o| &o.applied)
            .collect();
        // Webhooks: the node that wrote an event queues its deliveries (not every replica).
        let queued = match enqueue_deliveries(&self.hooks, &tx, &created) {
            Ok(n) => n,
            Err(e) => {
                drop(tx);
                let f = StoreFailed::sqlite(&e);
                let committed_elsewhere = writing && down.is_none() && self.bell.is_some();
                return self.take_back(f, engine_moved, committed_elsewhere, writes, settled, reads);
            }
        };
        let (seen_now, moved) = self.engine.seen_changes(
            caught
                .iter()
                .map(|(a, _)| a)
                .chain(created)
                .map(|a| &a.event.event),
        );
        self.seen_moved.extend(moved);
        if appended > 0 || !settled.is_empty() || !caught.is_empty() {
            if let Err(e) = tx.commit() {
                let f = StoreFailed::sqlite(&e);
                let committed_elsewhere = writing && down.is_none() && self.bell.is_some();
                return self.take_back(f, engine_moved, committed_elsewhere, writes, settled, reads);
            }
            if appended > 0 {
                self.paused = None;
            }
            if let Some(bell) = &self.bell {
                if appended > 0 {
                    let rung = writes.iter().flat_map(|w| w.2.iter().cloned()).collect();
                    bell.committed(self.engine.offset(), rung);
                } else if !caught.is_empty() {
                    bell.reached(self.engine.offset());
                }
            }
            self.metrics
                .events_caught_up
                .fetch_add(caught.len() as u64, Relaxed);
            if queued > 0
                && let Some(wake) = &self.wake
            {
                wake.notify_one();
            }
            for reply in settled {
                let _ = reply.send(());
            }
        } else {
            drop(tx);
        }
        if appended > 0 {
            self.metrics.commit_batch.observe(writes.len() as u64);
            self.metrics
                .commit_latency_us
                .observe(started.elapsed().as_micros() as u64);
            self.metrics.events_appended.fetch_add(appended as u64, Relaxed);
        }
        for (applied, frame) in caught {
            self.fan_out(&applied, frame);
        }
        for (_, result, frames) in &mut writes {
            if let Ok(outcome) = &result {
                for (applied, frame) in outcome.applied.iter().zip(std::mem::take(frames)) {
                    self.fan_out(applied, frame);
                }
            }
        }
        // A newcomer's read positions now; moved ones at the next tick (`flush_seen`).
        self.send_addressed(seen_now);
        for (from, result, _) in writes {
            if let Err(rejection) = &result {
                self.metrics.reject(rejection.code);
            }
            match (from, result) {
                (Source::Conn(req, conn), Ok(outcome)) => {
                    let ack = ServerFrame::Ack(tally_shared::protocol::Ack { req, ..outcome.ack });
                    self.send(&conn, encode(&ack).into());
                }
                (Source::Conn(req, conn), Err(rejection)) => {
                    let e = ErrorFrame::new(req, rejection.code, rejection.message);
                    self.send(&conn, encode(&ServerFrame::Error(e)).into());
                }
                (Source::Service(reply), result) => {
                    let done = result.map(|outcome| ServiceDone {
                        created: !outcome.applied.is_empty(),
                        message: outcome
                            .ack
                            .message
                            .and_then(|id| SqlLookup(&self.conn).message(id).ok().flatten()),
                        ack: outcome.ack,
                    });
                    let _ = reply.send(done);
                }
            }
        }
        self.after_writes(reads)
    }

    /// Serves a batch's reads (and notes a shutdown, which the caller performs).
    fn after_writes(&mut self, reads: Vec<Command>) -> Option<Reply<()>> {
        let mut shutdown = None;
        for cmd in reads {
            match cmd {
                Command::Shutdown { done } => shutdown = Some(done),
                other => self.read(other),
            }
        }
        shutdown
    }

    /// Takes back a batch whose storage failed (its transaction rolled back already): the
    /// engine is reloaded from what is stored when it had moved (quietly on a single node,
    /// where nobody saw the batch; by a rebuild, which closes every connection, when a
    /// cluster's PostgreSQL may have committed it), and every write is refused as
    /// `unavailable`, to be retried with its client id. Nothing of it was fanned out.
    fn take_back(
        &mut self,
        f: StoreFailed,
        engine_moved: bool,
        committed_elsewhere: bool,
        writes: Vec<(Source, Result<Outcome, Rejection>, Vec<Frame>)>,
        settled: Vec<Reply<()>>,
        reads: Vec<Command>,
    ) -> Option<Reply<()>> {
        let why = Down(f.why.clone());
        self.storage_failed(f);
        if committed_elsewhere {
            self.rebuild();
        } else if engine_moved {
            match self.reload_engine() {
                Ok(true) => {}
                // Keys moved (never expected): what is filed by key goes, as in a rebuild.
                Ok(false) => self.rebuild(),
                Err(f) => self.storage_failed(f),
            }
        }
        self.refuse_unavailable(writes, why);
        // Not recorded: those deliveries come due again (at least once).
        for reply in settled {
            let _ = reply.send(());
        }
        self.after_writes(reads)
    }

    /// Answers a batch whose commit failed: every write is refused as `unavailable`.
    fn refuse_unavailable(&mut self, writes: Vec<(Source, Result<Outcome, Rejection>, Vec<Frame>)>, e: Down) {
        for (from, _, _) in writes {
            let rejection = Rejection {
                code: ErrorCode::Unavailable,
                message: format!("not stored for sure ({e}); retry with the same client_id"),
            };
            self.metrics.reject(rejection.code);
            match from {
                Source::Conn(req, conn) => {
                    let e = ErrorFrame::new(req, rejection.code, rejection.message);
                    self.send(&conn, encode(&ServerFrame::Error(e)).into());
                }
                Source::Service(reply) => {
                    let _ = reply.send(Err(rejection));
                }
            }
        }
    }

    /// Fetches an upload another node of a cluster shared, unless this node has it (for
    /// `uploader`, when given). Nothing to do on a single node.
    fn fetch_upload(&mut self, id: &AttachmentId, uploader: Option<&StaffId>) {
        if self.bell.is_none() || self.files.has(&self.conn, id, uploader) {
            return;
        }
        match self.order.fetch_upload(id) {
            Ok(Some(shared)) => {
                if let Err(e) = self.files.adopt(&self.conn, &shared) {
                    tracing::warn!(error = %e, attachment = %id, "a shared upload could not be kept here");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, attachment = %id, "a shared upload could not be fetched"),
        }
    }

    /// Fetches the uploads a batch's sends reference (in a cluster, they may have been
    /// uploaded through another node).
    fn fetch_uploads_of(&mut self, batch: &[Command]) {
        if self.bell.is_none() {
            return;
        }
        let mut wanted = Vec::new();
        for cmd in batch {
            let (staff, write) = match cmd {
                Command::Execute { staff, write, .. }
                | Command::Service {
                    write: ServiceWrite::AsStaff(staff, write),
                    ..
                } => (staff, write),
                _ => continue,
            };
            if let tally_shared::Request::SendMessage { attachments, .. } = write.request().get() {
                wanted.extend(attachments.iter().map(|a| (a.clone(), staff.clone())));
            }
        }
        for (id, staff) in wanted {
            self.fetch_upload(&id, Some(&staff));
        }
    }

    /// Reads and applies what other nodes committed after this node's offset, then fans it
    /// out (nothing to do on a single node). A database that cannot be reached leaves the
    /// node serving what it has.
    fn catch_up(&mut self) {
        if let Some(bell) = &self.bell {
            bell.taken();
        }
        loop {
            let frames = match self.order.committed_after(self.engine.offset(), 1_000) {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot catch up now");
                    return;
                }
            };
            if frames.is_empty() {
                return;
            }
            let more = frames.len() == 1_000;
            let parsed = frames
                .into_iter()
                .map(|text| parse_committed(&text).map(|e| (e, text)))
                .collect::<Result<Vec<_>, _>>();
            match parsed {
                Ok(events) => self.apply_others(events),
                Err(f) => return self.storage_failed(f),
            }
            if !more {
                return;
            }
        }
    }

    /// Applies the events rings carried, in offset order, as far as they follow this node's
    /// offset without a gap (older ones it has: they are skipped), then reads from PostgreSQL
    /// whatever the rings said exists beyond them (a gap, a ring lost or cut short). Events
    /// from NATS reach here only once their seal has opened, so they are what a node of this
    /// cluster committed; one that does not parse is left to PostgreSQL all the same.
    ///
    /// A ring's events are consecutive up to its head (one group commit's), so those this node
    /// has are skipped unparsed: a writing node has most of them already, read in the same
    /// round trip that gave it the log's lock, before the ring arrived.
    fn heard_committed(&mut self, rings: Vec<(u64, Vec<String>)>) {
        let at = self.engine.offset().0;
        let mut parsed = Vec::new();
        for (head, frames) in rings {
            let Some(first) = head.saturating_add(1).checked_sub(frames.len() as u64) else {
                continue;
            };
            for (i, text) in frames.into_iter().enumerate() {
                if first + i as u64 <= at {
                    continue;
                }
                match serde_json::from_str::<tally_shared::LoggedEvent>(&text) {
                    Ok(event) => parsed.push((event, text)),
                    Err(e) => tracing::warn!(error = %e, "a ring carried an event that does not parse"),
                }
            }
        }
        parsed.sort_by_key(|(e, _)| e.offset);
        let mut next = self.engine.offset().next();
        let mut events = Vec::new();
        for (event, text) in parsed {
            if event.offset < next {
                continue;
            }
            if event.offset > next {
                break;
            }
            next = next.next();
            events.push((event, text));
        }
        if !events.is_empty() {
            self.metrics.events_heard.fetch_add(events.len() as u64, Relaxed);
            self.apply_others(events);
        }
        if self
            .bell
            .as_ref()
            .is_some_and(|b| b.heard_past(self.engine.offset()))
        {
            self.catch_up();
        }
    }

    /// Applies, stores and fans out events other nodes committed, which follow this node's
    /// offset, in one transaction of the replica.
    /// If this node's storage fails, the engine takes them back (nobody saw them) and they
    /// are caught up on again later.
    fn apply_others(&mut self, events: Vec<(tally_shared::LoggedEvent, String)>) {
        let (tx, failed_to_begin) = match self.conn.transaction() {
            Ok(tx) => (Some(tx), None),
            Err(e) => (None, Some(StoreFailed::sqlite(&e))),
        };
        if let Some(f) = failed_to_begin {
            drop(tx);
            return self.storage_failed(f);
        }
        let tx = tx.expect("a transaction began");
        let mut caught = Vec::with_capacity(events.len());
        let mut failed = None;
        for (event, text) in events {
            match apply_event(&mut self.engine, &tx, event, text) {
                Ok(c) => caught.push(c),
                Err(f) => {
                    failed = Some(f);
                    break;
                }
            }
        }
        let failed = match failed {
            Some(f) => {
                drop(tx);
                Some(f)
            }
            None => tx.commit().err().map(|e| StoreFailed::sqlite(&e)),
        };
        if let Some(f) = failed {
            self.storage_failed(f);
            if !caught.is_empty() {
                match self.reload_engine() {
                    Ok(true) => {}
                    Ok(false) => self.rebuild(),
                    Err(f) => self.storage_failed(f),
                }
            }
            return;
        }
        let (seen_now, moved) = self
            .engine
            .seen_changes(caught.iter().map(|(a, _)| &a.event.event));
        self.seen_moved.extend(moved);
        self.metrics
            .events_caught_up
            .fetch_add(caught.len() as u64, Relaxed);
        for (applied, frame) in caught {
            self.fan_out(&applied, frame);
        }
        self.send_addressed(seen_now);
        if let Some(bell) = &self.bell {
            bell.reached(self.engine.offset());
        }
    }

    /// Rebuilds the engine from this node's replica (its latest checkpoint, then the events
    /// after it) when a commit's outcome is unknown; what the shared log has beyond it is
    /// caught up on next. Like a restart, without the process: a rebuilt engine may number
    /// staff differently, so every connection is closed (clients resume, by snapshot, here or
    /// elsewhere) and whatever was kept by staff number is dropped with them.
    fn rebuild(&mut self) {
        std::mem::take(&mut self.hub).close_all(close::GOING_AWAY);
        self.retained.clear();
        self.retained_bytes = 0;
        self.announced.clear();
        self.presence_dirty.clear();
        self.published.clear();
        self.reminders.unread_since.clear();
        self.reminders.quiet_since.clear();
        if let Err(f) = self.reload_engine() {
            self.storage_failed(f);
            return;
        }
        if let Some(bell) = &self.bell {
            bell.reached(self.engine.offset());
        }
    }

    /// Reloads the engine from what this node stores: its latest checkpoint, then the events
    /// after it. Who may sign in, and who hides their read state, carry over (the database
    /// that lists them may be the one that just failed; the next reload corrects any change).
    /// Staff are registered in the old engine's key order first, so that they keep their keys
    /// (which connections and retained frames are filed under); true when they all did.
    fn reload_engine(&mut self) -> Result<bool, StoreFailed> {
        let started = Instant::now();
        let head = Offset(storage::last_offset(&self.conn).map_err(|e| StoreFailed::any(&e))?);
        let keyed = self.engine.keyed_staff();
        let staff = self.engine.directory();
        let hidden: Vec<StaffId> = self
            .engine
            .keyed_staff()
            .into_iter()
            .filter(|id| self.engine.hides_read_state(id))
            .collect();
        let mut engine = self
            .checkpoints
            .as_ref()
            .and_then(|(data, log)| crate::checkpoints::load_latest(data, log, head, &self.metrics))
            .unwrap_or_default();
        for id in &keyed {
            engine.register(id);
        }
        for s in staff {
            engine.upsert_staff(s, true);
        }
        for id in hidden {
            engine.set_read_state_hidden(&id, true);
        }
        loop {
            let events = storage::events_after(&self.conn, engine.offset(), 10_000)
                .map_err(|e| StoreFailed::any(&e))?;
            if events.is_empty() {
                break;
            }
            for e in events {
                engine.apply(e);
            }
        }
        engine.compact();
        let same_keys = engine.keyed_staff().get(..keyed.len()) == Some(&keyed[..]);
        self.engine = engine;
        if let Err(e) = self.reload_staff() {
            tracing::warn!(error = %e, "staff not reloaded (kept from before the reload)");
        }
        tracing::info!(
            offset = self.engine.offset().0,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "engine reloaded from storage"
        );
        Ok(same_keys)
    }

    fn send(&self, conn: &ConnHandle, frame: Frame) {
        if conn.send(&frame, &self.metrics) {
            self.metrics.frames_out.fetch_add(1, Relaxed);
        }
    }

    fn fan_out(&mut self, applied: &Applied, frame: Frame) {
        for (key, update) in &applied.changes {
            if update.total.unread > 0 {
                self.reminders.unread_since.entry(*key).or_insert_with(now);
            } else {
                self.reminders.unread_since.remove(key);
            }
        }
        for key in &applied.recipients {
            self.hub.send(*key, &frame, &self.metrics);
        }
        self.introduce(&applied.event.event);
        let updates = unread_frames(applied);
        for (key, text) in &updates {
            self.hub.send(*key, text, &self.metrics);
        }
        let out = (applied.recipients.len() + updates.len()) as u64;
        self.metrics.frames_out.fetch_add(out, Relaxed);
        self.retain(applied, frame, updates);
    }

    fn retain_event(&mut self, applied: &Applied, frame: Frame) {
        let updates = unread_frames(applied);
        self.retain(applied, frame, updates);
    }

    fn retain(&mut self, applied: &Applied, frame: Frame, updates: Vec<(StaffKey, Frame)>) {
        if self.retain.events == 0 {
            return;
        }
        let r = Retained {
            offset: applied.event.offset,
            frame,
            recipients: applied.recipients.clone(),
            updates,
        };
        self.retained_bytes += r.bytes();
        self.retained.push_back(r);
        while self.retained.len() > self.retain.events || self.retained_bytes > self.retain.bytes {
            let Some(old) = self.retained.pop_front() else {
                break;
            };
            self.retained_bytes -= old.bytes();
        }
        self.metrics
            .retained_events
            .store(self.retained.len() as u64, Relaxed);
        self.metrics
            .retained_bytes
            .store(self.retained_bytes as u64, Relaxed);
    }

    /// The engine (for the checkpoint follower, which starts from a copy of it).
    pub fn engine_copy(&self) -> Engine {
        self.engine.clone()
    }

    /// The frames a staff member missed after `from`, if the retained log still has them all
    /// and they are few enough.
    fn replay(&self, key: StaffKey, from: Offset) -> Option<Vec<Frame>> {
        let current = self.engine.offset();
        if from > current {
            return None;
        }
        // The replay starts with the `unread_updated` of the event at `from` itself (while the
        // retained log still has it): a client that applied that event may have lost its
        // checkpoint in the same disconnect.
        let Some(first) = self.retained.front().map(|r| r.offset) else {
            return (from == current).then(Vec::new);
        };
        if first.0 > from.0 + 1 {
            return None;
        }
        let mut frames: Vec<Frame> = Vec::new();
        let mut bytes = 0;
        for r in self.retained.iter().filter(|r| r.offset >= from) {
            let event = (r.offset > from && r.recipients.contains(&key)).then_some(&r.frame);
            let updates = r.updates.iter().filter(|(k, _)| *k == key).map(|(_, f)| f);
            for f in event.into_iter().chain(updates) {
                bytes += f.len();
                frames.push(f.clone());
            }
            if frames.len() > self.max_replay.frames || bytes > self.max_replay.bytes {
                return None;
            }
        }
        Some(frames)
    }

    /// Queues a snapshot for a connection: built by a read worker at the state when a read
    /// connection is free, or here when there are no workers. Frames queued after it wait.
    fn queue_snapshot(&mut self, staff: &StaffId, conn: &ConnHandle) {
        if self.reads.is_none() {
            let mut snapshot = self.snapshot_without_messages(staff);
            let budget = tally_shared::engine::SnapshotBudget::default();
            let mut unread = None;
            tally_shared::engine::fill_messages(&mut snapshot, budget, &mut |c, from, to, take| {
                if let Err(e) = storage::messages_newest_first(&self.conn, c, from, to, take) {
                    unread = Some(e);
                }
            });
            if let Some(e) = unread {
                // No snapshot with holes: the client reconnects and asks again.
                tracing::warn!(error = %e, "a snapshot's messages could not be read");
                conn.closer.close(close::GOING_AWAY);
                return;
            }
            let frame: Frame = encode(&ServerFrame::Snapshot(snapshot)).into();
            if let Some(built) = conn.admit_snapshot(frame, &self.metrics) {
                let (deliver, later) = oneshot::channel();
                let _ = deliver.send(built);
                if conn.send_later(later, &self.metrics) {
                    self.metrics.frames_out.fetch_add(1, Relaxed);
                }
            }
            return;
        }
        let (deliver, later) = oneshot::channel();
        if conn.send_later(later, &self.metrics) {
            self.pending.push_back(Pending::Snapshot {
                staff: staff.clone(),
                conn: conn.clone(),
                deliver,
            });
            self.pump();
        }
    }

    fn snapshot_without_messages(&self, staff: &StaffId) -> Box<tally_shared::protocol::Snapshot> {
        let mut snapshot = self.engine.snapshot_without_messages(staff);
        snapshot.protocols = Some(ProtocolRange::SERVED);
        Box::new(snapshot)
    }

    /// Starts what waits for a read connection, while one is free: each read transaction opens
    /// here, between batches, so it sees exactly the engine's state.
    fn pump(&mut self) {
        while !self.pending.is_empty() {
            let Some(reads) = self.reads.as_mut() else { return };
            let Some(read) = reads.take() else { return };
            let job = match self.pending.pop_front().expect("not empty") {
                Pending::Snapshot { staff, conn, deliver } => {
                    // A closing connection (say, a slow consumer) would only drop it.
                    (conn.closer.code().is_none()).then(|| Job::Snapshot {
                        snapshot: self.snapshot_without_messages(&staff),
                        deliver,
                        conn,
                        metrics: self.metrics.clone(),
                    })
                }
                Pending::History(h) => match self.history_range(&h) {
                    Ok(Some((from, to))) => Some(Job::History {
                        conversation: h.conversation,
                        from,
                        to,
                        reply: h.reply,
                    }),
                    other => {
                        let _ = h.reply.send(other.map(|_| Vec::new()));
                        None
                    }
                },
            };
            let reads = self.reads.as_mut().expect("checked above");
            match job {
                Some(job) => reads.run(read, job),
                None => reads.give(read),
            }
        }
    }

    fn read(&mut self, cmd: Command) {
        match cmd {
            Command::Hello {
                staff,
                resume_from,
                conn,
                reply,
            } => {
                let _ = reply.send(self.hello(&staff, resume_from, conn));
            }
            Command::Snapshot { staff, req, conn } => self.snapshot(&staff, req, &conn),
            Command::CatchUp => self.catch_up(),
            Command::Gossip(g) => self.gossip(g),
            Command::Committed(..)
            | Command::Execute { .. }
            | Command::Offset { .. }
            | Command::Service { .. }
            | Command::WebhookSettled(_)
            | Command::Shutdown { .. } => {
                unreachable!("handled in the batch")
            }
            Command::ServiceKey { key, reply } => {
                let found = match self.order.find_service_key(&self.conn, &key) {
                    Ok(found) => found,
                    Err(e) => {
                        // Unreachable (a cluster's PostgreSQL): refused as if unknown.
                        tracing::warn!(error = %e, "service key not checked");
                        None
                    }
                };
                let _ = reply.send(found);
            }
            Command::MirrorStaff {
                staff,
                deactivate_missing,
                reply,
            } => {
                let _ = reply.send(self.mirror_staff(&staff, deactivate_missing));
            }
            Command::Typing {
                staff,
                conversation,
                req,
                conn,
            } => self.typing(&staff, conversation, req, &conn),
            Command::Visibility {
                staff,
                visible,
                req,
                conn,
            } => {
                self.hub.set_visible(conn.id, visible);
                if let Some(key) = self.engine.key(&staff) {
                    self.presence_dirty.insert(key);
                }
                let ack = tally_shared::protocol::Ack {
                    req,
                    offset: self.engine.offset(),
                    ..Default::default()
                };
                self.send(&conn, encode(&ServerFrame::Ack(ack)).into());
            }
            Command::Preferences {
                staff,
                hide_read_state,
                req,
                conn,
            } => self.preferences(&staff, hide_read_state, req, &conn),
            Command::Conversation { id, reply } => {
                let _ = reply.send(self.engine.conversation(id).cloned());
            }
            Command::Unread { staff, reply } => {
                let known = self.engine.key(&staff).is_some() && !staff.is_system();
                let view = known.then(|| {
                    let total = self.engine.projection().total(&staff);
                    (total, self.engine.conversation_states(&staff))
                });
                let _ = reply.send(view);
            }
            Command::Disconnected { staff, conn_id } => {
                if let Some(key) = self.engine.key(&staff) {
                    self.hub.unregister(key, conn_id);
                    self.presence_dirty.insert(key);
                    if self.hub.count(key) == 0 {
                        // A quiet spell starts.
                        self.reminders.quiet_since.insert(key, now());
                    }
                }
            }
            Command::Search(r) => {
                let scoped = self.search_scope(&r);
                let _ = r.reply.send(scoped);
            }
            Command::History(h) => {
                if self.reads.is_some() {
                    self.pending.push_back(Pending::History(h));
                    self.pump();
                } else {
                    let page = self.history(&h);
                    let _ = h.reply.send(page);
                }
            }
            Command::ReaderDone { conn } => {
                if let Some(reads) = self.reads.as_mut() {
                    reads.give(conn);
                }
                self.pump();
            }
            Command::Attachment { staff, id, reply } => {
                let mut access = self.attachment_access(&staff, &id);
                if access.is_err() && self.bell.is_some() {
                    // The message that shares it may have been committed through another node
                    // a moment ago, its ring still on the way: a node behind the cluster reads
                    // what it missed before it refuses (read-your-writes across nodes).
                    self.catch_up();
                    access = self.attachment_access(&staff, &id);
                }
                let _ = reply.send(access);
            }
            Command::UploadAllowance { staff, size, reply } => {
                let _ = reply.send(self.files.allowance(&self.conn, &staff, size, now()));
            }
            Command::Upload {
                staff,
                attachment,
                file,
                reply,
            } => {
                // (In a cluster the HTTP handler has shared it already, off this thread.)
                let _ = reply.send(self.files.place(&self.conn, &staff, &attachment, &file, now()));
            }
            Command::CollectAttachments => {
                let collected = self.files.collect(&self.conn, now());
                if let Err(e) = self.order.forget_uploads(&collected) {
                    tracing::warn!(error = %e, "collected uploads stay shared until the next collection");
                }
                self.metrics
                    .attachments_collected
                    .fetch_add(collected.len() as u64, Relaxed);
                match crate::webhooks::purge(&self.conn, crate::webhooks::KEEP_FAILED_MS) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deliveries = n, "given-up webhook deliveries deleted"),
                    Err(e) => tracing::warn!(error = %e, "purging the webhook outbox failed"),
                }
            }
            Command::Directory { reply } => {
                let _ = reply.send(self.engine.directory());
            }
            Command::IsActive { staff, reply } => {
                let _ = reply.send(self.engine.is_active(&staff));
            }
            Command::Health { reply } => {
                let _ = reply.send(self.engine.offset());
            }
            Command::ReloadStaff => {
                if let Err(e) = self.reload_staff() {
                    tracing::warn!(error = %e, "reloading staff failed");
                }
                self.tick_presence();
                self.announce_presence();
                self.flush_seen();
                if self.wake.is_some() {
                    if let Err(e) = self.order.sync_webhooks(&self.conn) {
                        tracing::warn!(error = %e, "webhooks not synced");
                    }
                    match crate::webhooks::load(&self.conn) {
                        Ok(hooks) => self.hooks = hooks,
                        Err(e) => tracing::warn!(error = %e, "reloading webhooks failed"),
                    }
                    self.remind();
                }
            }
        }
    }

    /// Writes the work app's staff table over ours in one transaction, then applies it as the
    /// CLI's changes are (deactivated staff's sessions close).
    fn mirror_staff(
        &mut self,
        staff: &[(tally_shared::Staff, bool)],
        deactivate_missing: bool,
    ) -> anyhow::Result<MirrorReport> {
        let mut report = MirrorReport::default();
        let (changed, deactivated) = self
            .order
            .mirror_staff(&mut self.conn, staff, deactivate_missing)?;
        for ((s, _), changed) in staff.iter().zip(changed) {
            if changed {
                if self.engine.key(&s.id).is_some() {
                    report.changed += 1;
                } else {
                    report.added += 1;
                }
            }
        }
        report.deactivated_missing = deactivated;
        self.reload_staff()?;
        Ok(report)
    }

    /// Relays a `typing` frame to the conversation's other participants (not to the typist's
    /// own other tabs), then acknowledges it; refused like a write to a conversation one is not
    /// in. Nothing is stored, retained or replayed.
    fn typing(
        &mut self,
        staff: &StaffId,
        conversation: ConversationId,
        req: Option<tally_shared::RequestId>,
        conn: &ConnHandle,
    ) {
        if !self.engine.is_participant(staff, conversation) {
            let (code, message) = match self.engine.conversation(conversation) {
                Some(_) => (
                    ErrorCode::NotParticipant,
                    format!("you are not in conversation {conversation}"),
                ),
                None => (ErrorCode::NotFound, format!("no conversation {conversation}")),
            };
            self.metrics.reject(code);
            let e = ErrorFrame::new(req, code, message);
            self.send(conn, encode(&ServerFrame::Error(e)).into());
            return;
        }
        self.relay_typing(staff, conversation);
        if let Some(bell) = &self.bell {
            bell.gossip(crate::doorbell::Gossip::Typing {
                staff: staff.clone(),
                conversation,
            });
        }
        let ack = tally_shared::protocol::Ack {
            req,
            offset: self.engine.offset(),
            ..Default::default()
        };
        self.send(conn, encode(&ServerFrame::Ack(ack)).into());
    }

    /// Sends `typing` to the conversation's participants connected here, but the typist.
    fn relay_typing(&self, staff: &StaffId, conversation: ConversationId) {
        let frame: Frame = encode(&ServerFrame::Typing {
            conversation,
            staff: staff.clone(),
        })
        .into();
        let others = self
            .engine
            .conversation(conversation)
            .map(|c| {
                c.participants
                    .iter()
                    .filter(|p| *p != staff)
                    .filter_map(|p| self.engine.key(p))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for key in others {
            self.hub.send(key, &frame, &self.metrics);
        }
    }

    /// Typing or presence another node told about.
    fn gossip(&mut self, g: crate::doorbell::Gossip) {
        use crate::doorbell::Gossip;
        match g {
            Gossip::Typing { staff, conversation } => {
                if self.engine.is_participant(&staff, conversation) {
                    self.relay_typing(&staff, conversation);
                }
            }
            Gossip::Presence { node, full, staff } => {
                let (heard, there) = self
                    .remote_presence
                    .entry(node)
                    .or_insert_with(|| (Instant::now(), rustc_hash::FxHashMap::default()));
                *heard = Instant::now();
                let mut touched: Vec<StaffId> = Vec::new();
                if full {
                    touched.extend(there.drain().map(|(id, _)| id));
                }
                for (id, presence) in staff {
                    if presence == Presence::Offline {
                        there.remove(&id);
                    } else {
                        there.insert(id.clone(), presence);
                    }
                    touched.push(id);
                }
                for id in touched {
                    if let Some(key) = self.engine.key(&id) {
                        self.presence_dirty.insert(key);
                    }
                }
            }
        }
    }

    /// The cluster's side of the 1 s tick: forget nodes not heard from, and repeat who is
    /// connected here every `PRESENCE_EVERY`.
    fn tick_presence(&mut self) {
        let Some(bell) = &self.bell else { return };
        self.ticks += 1;
        let gone: Vec<u64> = self
            .remote_presence
            .iter()
            .filter(|(_, (heard, _))| heard.elapsed() > crate::doorbell::PRESENCE_EXPIRES)
            .map(|(node, _)| *node)
            .collect();
        for node in gone {
            if let Some((_, there)) = self.remote_presence.remove(&node) {
                tracing::info!(
                    node,
                    people = there.len(),
                    "a node went quiet: its presence expires"
                );
                for id in there.into_keys() {
                    if let Some(key) = self.engine.key(&id) {
                        self.presence_dirty.insert(key);
                    }
                }
            }
        }
        if self
            .ticks
            .is_multiple_of(crate::doorbell::PRESENCE_EVERY.as_secs().max(1))
        {
            let staff = self
                .hub
                .staff()
                .map(|key| {
                    (
                        self.engine.projection().staff_id(key).clone(),
                        self.hub.presence(key),
                    )
                })
                .collect();
            bell.gossip(crate::doorbell::Gossip::Presence {
                node: bell.node,
                full: true,
                staff,
            });
        }
    }

    /// Someone's presence over the whole cluster: the most present of here and elsewhere.
    fn presence_of(&self, key: StaffKey) -> Presence {
        fn rank(p: Presence) -> u8 {
            match p {
                Presence::Online => 2,
                Presence::Away => 1,
                Presence::Offline => 0,
            }
        }
        let here = self.hub.presence(key);
        if self.remote_presence.is_empty() {
            return here;
        }
        let id = self.engine.projection().staff_id(key);
        self.remote_presence
            .values()
            .filter_map(|(_, there)| there.get(id).copied())
            .chain([here])
            .max_by_key(|p| rank(*p))
            .unwrap_or(here)
    }

    /// Registers a connection that said hello, after a replay or a snapshot.
    fn hello(
        &mut self,
        staff: &StaffId,
        resume_from: Option<Offset>,
        conn: ConnHandle,
    ) -> Result<(), ErrorFrame> {
        let Some(key) = self.engine.key(staff).filter(|_| self.engine.is_active(staff)) else {
            let message = "unknown or deactivated staff member";
            return Err(ErrorFrame::new(None, ErrorCode::Unauthorized, message));
        };
        if self.hub.count(key) >= self.connection_cap {
            self.metrics.reject(ErrorCode::RateLimited);
            let cap = self.connection_cap;
            let message = format!("at most {cap} connections per staff member");
            return Err(ErrorFrame::new(None, ErrorCode::RateLimited, message));
        }
        if self.reminders.reminded.remove(staff) {
            // Their quiet spell is over: the next one may remind them again.
            if let Err(e) = storage::forget_reminded(&self.conn, staff) {
                // At worst, after a restart in this spell, no reminder until the next one.
                tracing::warn!(error = %e, "a reminder's end was not recorded");
            }
        }
        if resume_from.is_some_and(|from| from > self.engine.offset()) {
            // Resuming from an offset another node served: this node catches up to it first.
            self.catch_up();
        }
        match resume_from.and_then(|from| self.replay(key, from)) {
            Some(frames) => {
                for f in frames {
                    self.send(&conn, f);
                }
                let resumed = ServerFrame::Resumed {
                    offset: self.engine.offset(),
                    protocols: Some(ProtocolRange::SERVED),
                };
                self.send(&conn, encode(&resumed).into());
            }
            None => self.queue_snapshot(staff, &conn),
        }
        self.session_state(staff, &conn);
        self.hub.register(key, conn);
        self.presence_dirty.insert(key);
        Ok(())
    }

    /// What follows a snapshot or a replay (the store forgets it at those frames): the
    /// presence of everyone this person shares a conversation with who is not offline, their
    /// preferences, and how far the others have read.
    fn session_state(&self, staff: &StaffId, conn: &ConnHandle) {
        for peer in self.engine.peers(staff) {
            let Some(peer_key) = self.engine.key(&peer) else {
                continue;
            };
            let presence = self.announced.get(&peer_key).copied().unwrap_or_default();
            if presence != tally_shared::protocol::Presence::Offline {
                let frame = ServerFrame::Presence {
                    staff: peer,
                    presence,
                };
                self.send(conn, encode(&frame).into());
            }
        }
        let hide_read_state = self.engine.hides_read_state(staff);
        let preferences = ServerFrame::Preferences { hide_read_state };
        self.send(conn, encode(&preferences).into());
        for frame in self.engine.all_read_positions(staff) {
            self.send(conn, encode(&frame).into());
        }
    }

    /// Records a preference, then tells this person's tabs and, for the read state, the people
    /// they share conversations with.
    fn preferences(
        &mut self,
        staff: &StaffId,
        hide_read_state: bool,
        req: Option<tally_shared::RequestId>,
        conn: &ConnHandle,
    ) {
        if let Err(e) = self
            .order
            .set_read_state_hidden(&self.conn, staff, hide_read_state)
        {
            tracing::warn!(error = %e, "preference not stored");
            let e = ErrorFrame::new(
                req,
                ErrorCode::Unavailable,
                "preferences cannot be stored now; retry",
            );
            self.send(conn, encode(&ServerFrame::Error(e)).into());
            return;
        }
        let changed = self.engine.set_read_state_hidden(staff, hide_read_state);
        let ack = tally_shared::protocol::Ack {
            req,
            offset: self.engine.offset(),
            ..Default::default()
        };
        self.send(conn, encode(&ServerFrame::Ack(ack)).into());
        if changed {
            let frames = self.engine.preference_frames(staff);
            self.send_addressed(frames);
        }
    }

    /// Sends the read positions that moved since the last tick: one `seen` frame per
    /// conversation, however many reads it had. A person marking read and unread as fast as
    /// their budget allows, in a group of a thousand, costs a thousand frames a second, not
    /// twenty thousand.
    fn flush_seen(&mut self) {
        if self.seen_moved.is_empty() {
            return;
        }
        let moved = std::mem::take(&mut self.seen_moved);
        self.send_addressed(self.engine.seen_frames(&moved));
    }

    /// Sends frames to groups of staff (each encoded once).
    fn send_addressed(&self, frames: tally_shared::engine::Addressed) {
        let mut sent = 0;
        for (keys, frame) in frames {
            let frame: Frame = encode(&frame).into();
            for key in keys {
                sent += self.hub.send(key, &frame, &self.metrics);
            }
        }
        self.metrics.frames_out.fetch_add(sent, Relaxed);
    }

    /// People who just came to share a conversation learn each other's presence (what was
    /// announced before only went to their peers of that time).
    fn introduce(&self, event: &tally_shared::Event) {
        use tally_shared::Event;
        let (everyone, newcomer) = match event {
            Event::ConversationCreated { conversation, .. } => (&conversation.participants, None),
            Event::ParticipantAdded {
                conversation, staff, ..
            } => (&conversation.participants, Some(staff)),
            _ => return,
        };
        let mut sent = 0;
        for p in everyone {
            let Some(p_key) = self.engine.key(p) else { continue };
            let Some(&presence) = self.announced.get(&p_key) else {
                continue;
            };
            let frame: Frame = encode(&ServerFrame::Presence {
                staff: p.clone(),
                presence,
            })
            .into();
            // Everyone to everyone for a new conversation; for a newcomer, everyone to them
            // and them to everyone.
            let to: Vec<&StaffId> = match newcomer {
                None => everyone.iter().filter(|q| *q != p).collect(),
                Some(n) if n == p => everyone.iter().filter(|q| *q != p).collect(),
                Some(n) => vec![n],
            };
            for q in to {
                if let Some(q_key) = self.engine.key(q) {
                    sent += self.hub.send(q_key, &frame, &self.metrics);
                }
            }
        }
        self.metrics.frames_out.fetch_add(sent, Relaxed);
    }

    /// Announces the presence of everyone whose may have changed since the last tick, to the
    /// people they share a conversation with (and who are connected): at most once a second
    /// per person, and nothing when it came back to what was announced.
    fn announce_presence(&mut self) {
        use tally_shared::protocol::Presence;
        let mut changed_here = Vec::new();
        let stamp = now();
        for key in std::mem::take(&mut self.presence_dirty) {
            if self.bell.is_some() {
                let here = self.hub.presence(key);
                if self.published.get(&key).copied().unwrap_or_default() != here {
                    if here == Presence::Offline {
                        self.published.remove(&key);
                    } else {
                        self.published.insert(key, here);
                    }
                    changed_here.push((self.engine.projection().staff_id(key).clone(), here));
                }
            }
            let now = self.presence_of(key);
            let before = self.announced.get(&key).copied().unwrap_or_default();
            if now == before {
                continue;
            }
            if now == Presence::Offline {
                // A quiet spell starts (also when their last tab closed on another node).
                self.reminders.quiet_since.insert(key, stamp);
                self.announced.remove(&key);
            } else {
                self.announced.insert(key, now);
            }
            let staff = self.engine.projection().staff_id(key).clone();
            let frame: Frame = encode(&ServerFrame::Presence {
                staff: staff.clone(),
                presence: now,
            })
            .into();
            let mut sent = 0;
            for peer in self.engine.peers(&staff) {
                if let Some(peer_key) = self.engine.key(&peer) {
                    sent += self.hub.send(peer_key, &frame, &self.metrics);
                }
            }
            self.metrics.frames_out.fetch_add(sent, Relaxed);
        }
        if !changed_here.is_empty()
            && let Some(bell) = &self.bell
        {
            bell.gossip(crate::doorbell::Gossip::Presence {
                node: bell.node,
                full: false,
                staff: changed_here,
            });
        }
    }

    /// A fresh snapshot, then the acknowledgement of the request that asked for it.
    fn snapshot(&mut self, staff: &StaffId, req: Option<tally_shared::RequestId>, conn: &ConnHandle) {
        if conn.closer.code().is_some() {
            // Closing (say, as a slow consumer): a snapshot would only be dropped.
            return;
        }
        self.queue_snapshot(staff, conn);
        self.session_state(staff, conn);
        let ack = tally_shared::protocol::Ack {
            req,
            offset: self.engine.offset(),
            ..Default::default()
        };
        self.send(conn, encode(&ServerFrame::Ack(ack)).into());
    }

    /// A page of history: up to `limit` messages before `before` (or up to the head).
    fn history(&self, h: &HistoryRequest) -> Result<Vec<Message>, ErrorCode> {
        let conversation = h.conversation;
        let Some((from, to)) = self.history_range(h)? else {
            return Ok(Vec::new());
        };
        storage::message_page(&self.conn, conversation, from, to, limits::PAGE_MAX_BYTES).map_err(|e| {
            tracing::warn!(error = %e, "a history page could not be read");
            ErrorCode::Unavailable
        })
    }

    /// A search's query with its scope: the one conversation asked for, if the searcher is in
    /// it, or every conversation they are in now.
    fn search_scope(&self, r: &SearchRequest) -> Result<crate::search::SearchQuery, ErrorCode> {
        let conversations = match r.conversation {
            Some(c) if self.engine.is_participant(&r.staff, c) => vec![c],
            Some(c) if self.engine.conversation(c).is_some() => return Err(ErrorCode::NotParticipant),
            Some(_) => return Err(ErrorCode::NotFound),
            None => self
                .engine
                .projection()
                .conversations_of(&r.staff)
                .into_iter()
                .map(|(c, ..)| c)
                .collect(),
        };
        Ok(crate::search::SearchQuery {
            terms: r.terms.clone(),
            conversations,
            before: r.before,
            limit: r.limit.clamp(1, crate::search::MAX_RESULTS),
        })
    }

    /// The seqs of a page of history, if the staff member may read it (`None`: no messages).
    fn history_range(&self, h: &HistoryRequest) -> Result<Option<(Seq, Seq)>, ErrorCode> {
        let (staff, conversation, before, limit) = (&h.staff, h.conversation, h.before, h.limit);
        if !self.engine.is_participant(staff, conversation) {
            return Err(match self.engine.conversation(conversation) {
                Some(_) => ErrorCode::NotParticipant,
                None => ErrorCode::NotFound,
            });
        }
        let head = self.engine.projection().head(conversation).unwrap_or_default();
        let to = before.map_or(head, |b| Seq(b.0.saturating_sub(1)).min(head));
        let limit = limit.clamp(1, limits::HISTORY_PAGE_MAX);
        let from = Seq(to.0.saturating_sub(limit - 1).max(1));
        Ok((to.0 > 0).then_some((from, to)))
    }

    /// Whether a staff member may fetch an attachment: its uploader within the grace period,
    /// or a participant of a conversation whose live message references it.
    fn attachment_access(&mut self, staff: &StaffId, id: &AttachmentId) -> Result<(String, u64), ErrorCode> {
        self.fetch_upload(id, None);
        let since = self.files.grace_starts(now());
        let used = storage::attachment_use(&self.conn, id, since).map_err(|e| {
            tracing::warn!(error = %e, "an attachment's use could not be read");
            ErrorCode::Unavailable
        })?;
        let Some(used) = used else {
            return Err(ErrorCode::NotFound);
        };
        let allowed = used.uploaders.contains(staff)
            || used
                .conversations
                .iter()
                .any(|c| self.engine.is_participant(staff, *c));
        if !allowed {
            return Err(ErrorCode::NotParticipant);
        }
        Ok((used.content_type, used.size))
    }
}

/// Queues the `unread_reminder`s of `due` in `tx`, and notes who was reminded.
fn queue_reminders(
    engine: &Engine,
    hooks: &[crate::webhooks::Hook],
    tx: &rusqlite::Transaction<'_>,
    due: &[(StaffId, Millis)],
    at: Millis,
) -> rusqlite::Result<()> {
    for (staff, since) in due {
        let conversations: Vec<_> = engine
            .conversation_states(staff)
            .into_iter()
            .filter(|c| c.counts.unread > 0 && !c.muted)
            .map(|c| {
                serde_json::json!({
                    "id": c.conversation.id,
                    "title": c.conversation.title,
                    "unread": c.counts.unread,
                    "mentions": c.counts.mentions,
                })
            })
            .collect();
        let data = serde_json::json!({
            "staff": staff,
            "total": engine.projection().total(staff),
            "unread_since": since,
            "conversations": conversations,
        });
        crate::webhooks::enqueue(tx, hooks, "unread_reminder", &data, None)?;
        storage::note_reminded(tx, staff, at)?;
    }
    Ok(())
}

/// Queues a `message_created` or `message_deleted` delivery for each message a batch created or
/// deleted (in its transaction), `message_created` ones marked with the message they carry;
/// how many.
fn enqueue_deliveries(
    hooks: &[crate::webhooks::Hook],
    tx: &rusqlite::Transaction<'_>,
    applied: &[&Applied],
) -> rusqlite::Result<usize> {
    if hooks.is_empty() {
        return Ok(0);
    }
    let mut queued = 0;
    for a in applied {
        let offset = a.event.offset;
        let (event, data, message) = match &a.event.event {
            tally_shared::Event::MessageCreated { message } => (
                "message_created",
                serde_json::json!({ "offset": offset, "message": message }),
                Some(message.id),
            ),
            tally_shared::Event::MessageDeleted {
                conversation,
                message,
                seq,
                sender,
                ..
            } => (
                "message_deleted",
                serde_json::json!({
                    "offset": offset,
                    "conversation": conversation,
                    "message": message,
                    "seq": seq,
                    "sender": sender,
                }),
                // It carries no text: nothing a later deletion would redact.
                None,
            ),
            _ => continue,
        };
        queued += crate::webhooks::enqueue(tx, hooks, event, &data, message)?;
    }
    Ok(queued)
}

/// Applies one event another node committed (as stored) to the engine and this node's
/// replica, inside `tx`; the caller fans it out after the commit.
fn apply_committed(
    engine: &mut Engine,
    tx: &rusqlite::Transaction<'_>,
    text: String,
) -> Result<(Applied, Frame), StoreFailed> {
    let event = parse_committed(&text)?;
    apply_event(engine, tx, event, text)
}

/// An event of the shared log (which this relay wrote: one that does not parse is fatal).
fn parse_committed(text: &str) -> Result<tally_shared::LoggedEvent, StoreFailed> {
    serde_json::from_str(text)
        .map_err(|e| StoreFailed::fatal(format!("an event in the shared log does not parse: {e}")))
}

/// Applies and stores `event` (encoded as `text`), which must follow the engine's offset.
fn apply_event(
    engine: &mut Engine,
    tx: &rusqlite::Transaction<'_>,
    event: tally_shared::LoggedEvent,
    text: String,
) -> Result<(Applied, Frame), StoreFailed> {
    let at = engine.offset();
    if event.offset != at.next() {
        return Err(StoreFailed::fatal(format!(
            "the shared log jumps from offset {at} to {}",
            event.offset
        )));
    }
    // Stored before it is applied: a failure leaves the engine as it was for this event.
    storage::append(tx, &event, &text).map_err(|e| StoreFailed::any(&e))?;
    Ok((engine.apply(event), Frame::from(text)))
}

/// The earlier frames the deletions among `applied` rewrote in `tx` (see
/// `storage::redacted_frames`).
fn redacted_by<'a>(
    tx: &rusqlite::Transaction<'_>,
    applied: impl Iterator<Item = &'a Applied>,
) -> Result<Vec<(Offset, String)>, StoreFailed> {
    let deleted: Vec<tally_shared::MessageId> = applied
        .filter_map(|a| match &a.event.event {
            tally_shared::protocol::Event::MessageDeleted { message, .. } => Some(*message),
            _ => None,
        })
        .collect();
    if deleted.is_empty() {
        return Ok(Vec::new());
    }
    storage::redacted_frames(tx, &deleted).map_err(|e| StoreFailed::any(&e))
}

/// A write refused because the source of truth cannot be reached, or storage is paused.
fn unavailable(staff: &StaffId, why: &Down) -> Rejection {
    tracing::debug!(%staff, %why, "write refused");
    Rejection {
        code: ErrorCode::Unavailable,
        message: format!("{why}: nothing was stored; retry with the same client_id"),
    }
}

fn unread_frames(applied: &Applied) -> Vec<(StaffKey, Frame)> {
    applied
        .changes
        .iter()
        .map(|(k, u)| (*k, Frame::from(encode(&ServerFrame::UnreadUpdated(*u)))))
        .collect()
}
