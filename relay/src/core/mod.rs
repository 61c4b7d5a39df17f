//! The core: one thread that owns the engine, the SQLite connection, the hub and the retained
//! log. It takes commands in batches: every write of a batch is validated by the engine and
//! appended inside one transaction, committed once (group commit), and only then acknowledged
//! and fanned out. Reads (snapshots, history, attachment checks) are answered between batches,
//! so each sees a state that every connection has been sent consistently.
//!
//! Its parts own their state and follow the batch:
//! - [`batch`]: the group commit as named phases (rings, lock, execute and append, commit,
//!   publish, fan out, answer), and taking a failed batch back;
//! - [`health`]: what a storage failure does (pause writes, or stop);
//! - [`replica`]: the cluster's side (rings, catch-up, rebuild from checkpoints);
//! - [`resume`]: the newest events as sent, for clients back from a short disconnect;
//! - [`presence`] and [`sessions`]: typing and presence, and what a connection is sent when
//!   it says hello;
//! - [`reminders`]: `unread_reminder` webhooks;
//! - [`reads`]: snapshots, history pages, search scopes and attachment checks.

mod batch;
mod health;
mod presence;
pub mod quiet;
mod reads;
mod reminders;
mod replica;
mod resume;
mod sessions;
#[cfg(test)]
mod sim;
mod store;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use tally_shared::engine::{Applied, Rejection, ServiceRequest};
use tally_shared::protocol::{ConversationState, ErrorFrame, ServerFrame, encode};
use tally_shared::staff_keys::StaffKey;
use tally_shared::{
    Attachment, AttachmentId, ConversationId, Engine, ErrorCode, Message, Millis, Offset, Seq, StaffId,
};
use tokio::sync::{mpsc, oneshot};

use crate::files::Files;
use crate::hub::{ConnHandle, Frame, Hub};
use crate::metrics::Metrics;
use crate::order::Order;
use crate::reads::ReadPool;
use crate::storage::{self, SqlLookup};
use tally_shared::protocol::close;

pub use health::Stopped;
use health::{StorageHealth, StoreFailed};
use presence::PresenceState;
use quiet::QuietState;
use reads::Pending;
use reminders::Reminders;
use replica::{apply_committed, redacted_by};
pub use resume::{ReplayLimit, Retention};
use resume::{ResumeLog, Update};

/// Most commands taken into one batch (the default; `--max-batch` changes it).
pub const MAX_BATCH: usize = 256;

/// The conversations' read positions are announced in this many shares, one share every
/// [`SEEN_EVERY`], so each conversation at most once a second. Ten shares (100 ms apart) left
/// the steady load's p99 at 6–7 ms, fifty at 5–5.7 ms; with no `seen` frames at all it is 5.
pub const SEEN_PHASES: u64 = 50;
/// How often the next share of read positions is announced.
pub const SEEN_EVERY: std::time::Duration = std::time::Duration::from_millis(1000 / SEEN_PHASES);

/// Where a reply goes.
pub type Reply<T> = oneshot::Sender<T>;

/// What a `hello` asked for, besides who it is (see `Request::Hello`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Greeting {
    /// The last offset the client applied: a replay from there if it can be had.
    pub resume_from: Option<Offset>,
    /// The totals in a `counts` frame ahead of a snapshot.
    pub counts_first: bool,
}

/// What sessions and HTTP handlers ask of the core.
#[derive(Debug)]
pub enum Command {
    /// A connection said hello: register it and send it a snapshot or a replay.
    Hello {
        staff: StaffId,
        greeting: Greeting,
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
    /// A message's earlier versions that this staff member saw (see `versions`).
    Versions {
        staff: StaffId,
        message: tally_shared::MessageId,
        reply: Reply<Result<Vec<storage::Version>, ErrorCode>>,
    },
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
    /// [`SEEN_EVERY`] passed: announce the read positions that moved in the next share of
    /// the conversations (see `flush_seen`).
    FlushSeen,
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
    /// A staff member changed their quiet hours or snooze.
    Quiet {
        staff: StaffId,
        quiet: tally_shared::quiet::Quiet,
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
    /// Only this thread (its root's seq): the root and its replies.
    pub thread: Option<Seq>,
    /// At most this many (clamped to the page limit).
    pub limit: u64,
    /// Where the page goes.
    pub reply: Reply<Result<Vec<Message>, ErrorCode>>,
}

impl HistoryRequest {
    /// The thread page it asks for, if it asks for one.
    pub fn thread_page(&self) -> Option<storage::ThreadPage> {
        self.thread.map(|root| storage::ThreadPage {
            root,
            before: self.before,
            limit: self.limit.clamp(1, tally_shared::limits::HISTORY_PAGE_MAX),
        })
    }
}

/// The core's state; runs on its own thread.
pub struct Core {
    conn: Connection,
    engine: Engine,
    hub: Hub,
    /// Where a batch's events are appended and committed (SQLite; faulty in the simulation).
    store: Box<dyn store::LogStore>,
    /// The newest events as sent, for resuming clients.
    resume: ResumeLog,
    /// Where the time comes from (the system's; the simulation's own in tests).
    clock: Clock,
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
    /// Presence: what was announced, what may have changed, what other nodes said.
    presence: PresenceState,
    quiet: QuietState,
    /// Read positions that moved and are not announced yet, by share (see `flush_seen`).
    seen_moved: Vec<Vec<(ConversationId, StaffId)>>,
    /// Which share of the conversations the next `FlushSeen` announces (0..SEEN_PHASES).
    seen_phase: u64,
    /// Where the order of events is decided (this node's SQLite, or a cluster's PostgreSQL).
    order: Box<dyn Order>,
    /// Tells the other nodes of a cluster about this node's commits.
    bell: Option<crate::doorbell::Bell>,
    /// The data directory and log whose checkpoints a rebuild starts from.
    checkpoints: Option<(std::path::PathBuf, String)>,
    /// Whether storage may be written (paused after a failure, or stopping).
    health: StorageHealth,
}

/// Where the core reads the time: the system's clock, or one the simulation sets.
#[derive(Debug, Clone, Default)]
enum Clock {
    #[default]
    System,
    /// Milliseconds since the epoch, as set by hand.
    #[cfg_attr(not(test), allow(dead_code))]
    Manual(Arc<AtomicU64>),
}

impl Clock {
    pub(super) fn now(&self) -> Millis {
        match self {
            Clock::System => Millis(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            ),
            Clock::Manual(ms) => Millis(ms.load(Relaxed)),
        }
    }
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
            store: Box::new(store::Sqlite),
            resume: ResumeLog::new(retain, max_replay),
            clock: Clock::System,
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
            presence: PresenceState::default(),
            quiet: QuietState::default(),
            seen_moved: vec![Vec::new(); SEEN_PHASES as usize],
            seen_phase: 0,
            order,
            bell: None,
            checkpoints: None,
            health: StorageHealth::default(),
        };
        core.reload_staff()?;
        let started = Instant::now();
        let from = core.engine.offset();
        let head = storage::last_offset(&core.conn)?;
        // Only the newest events can be retained: do not encode frames for the others.
        let keep_after = head.saturating_sub(core.resume.events() as u64);
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
            | tally_shared::Routed::Preferences { .. }
            | tally_shared::Routed::Quiet(_) => {
                anyhow::bail!("a seed request is a write for the log")
            }
        };
        self.catch_up();
        let tx = self.conn.transaction()?;
        let caught: Vec<(Applied, Frame)> = self
            .order
            .begin(self.engine.offset())?
            .into_iter()
            .map(|text| apply_committed(&mut self.engine, &mut *self.store, &tx, text))
            .collect::<Result<_, StoreFailed>>()?;
        let outcome = match self
            .engine
            .execute(staff, write.request(), self.clock.now(), &SqlLookup(&tx))
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

    pub(super) fn reload_staff(&mut self) -> anyhow::Result<()> {
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
        let preferences = self.order.preferences(&self.conn)?;
        let hidden: rustc_hash::FxHashSet<StaffId> = preferences.read_state_hidden.into_iter().collect();
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
        self.reload_quiet(preferences.quiet);
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
            if let Some(why) = self.health.take_stop() {
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
                return match self.health.take_stop() {
                    Some(why) => Err(Stopped(why)),
                    None => Ok(()),
                };
            }
        }
        Ok(())
    }

    /// Serves a batch's reads (and notes a shutdown, which the caller performs).
    pub(super) fn after_writes(&mut self, reads: Vec<Command>) -> Option<Reply<()>> {
        let mut shutdown = None;
        for cmd in reads {
            match cmd {
                Command::Shutdown { done } => shutdown = Some(done),
                other => self.read(other),
            }
        }
        shutdown
    }

    /// Keeps an event for resuming clients without sending it (replayed at start, or seeded).
    fn retain_event(&mut self, applied: &Applied, frame: Frame) {
        let updates = unread_updates(applied, |_| false);
        let recipients = applied.recipients.clone();
        self.resume
            .push(applied.event.offset, frame, recipients, updates, &self.metrics);
    }

    pub(super) fn send(&self, conn: &ConnHandle, frame: Frame) {
        if conn.send(&frame, &self.metrics) {
            self.metrics.frames_out.fetch_add(1, Relaxed);
        }
    }

    /// The engine (for the checkpoint follower, which starts from a copy of it).
    pub fn engine_copy(&self) -> Engine {
        self.engine.clone()
    }

    /// Serves one of a batch's other commands (everything but writes, pings and shutdown).
    pub(super) fn read(&mut self, cmd: Command) {
        match cmd {
            Command::Hello {
                staff,
                greeting,
                conn,
                reply,
            } => {
                let _ = reply.send(self.hello(&staff, greeting, conn));
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
            } => self.visibility(&staff, visible, req, &conn),
            Command::Preferences {
                staff,
                hide_read_state,
                req,
                conn,
            } => self.preferences(&staff, hide_read_state, req, &conn),
            Command::Quiet {
                staff,
                quiet,
                req,
                conn,
            } => self.set_quiet(&staff, quiet, req, &conn),
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
            Command::Disconnected { staff, conn_id } => self.disconnected(&staff, conn_id),
            Command::Search(r) => {
                let scoped = self.search_scope(&r);
                let _ = r.reply.send(scoped);
            }
            Command::History(h) => self.history_page(h),
            Command::Versions {
                staff,
                message,
                reply,
            } => {
                let _ = reply.send(self.versions(&staff, message));
            }
            Command::ReaderDone { conn } => {
                if let Some(reads) = self.reads.as_mut() {
                    reads.give(conn);
                }
                self.pump();
            }
            Command::Attachment { staff, id, reply } => {
                let _ = reply.send(self.attachment(&staff, &id));
            }
            Command::UploadAllowance { staff, size, reply } => {
                let _ = reply.send(self.files.allowance(&self.conn, &staff, size, self.clock.now()));
            }
            Command::Upload {
                staff,
                attachment,
                file,
                reply,
            } => {
                // (In a cluster the HTTP handler has shared it already, off this thread.)
                let placed = self
                    .files
                    .place(&self.conn, &staff, &attachment, &file, self.clock.now());
                let _ = reply.send(placed);
            }
            Command::CollectAttachments => self.collect(),
            Command::Directory { reply } => {
                let _ = reply.send(self.engine.directory());
            }
            Command::IsActive { staff, reply } => {
                let _ = reply.send(self.engine.is_active(&staff));
            }
            Command::Health { reply } => {
                let _ = reply.send(self.engine.offset());
            }
            Command::ReloadStaff => self.tick(),
            Command::FlushSeen => self.flush_seen(),
        }
    }

    /// The 1 s tick: staff and webhooks reloaded, presence and read positions announced,
    /// reminders queued.
    fn tick(&mut self) {
        // Reading every staff member each second grows with the company and sends wait
        // behind it (not measured apart yet): only when someone else wrote.
        match self.order.others_may_have_written(&self.conn) {
            Ok(false) => {}
            Ok(true) => {
                if let Err(e) = self.reload_staff() {
                    self.order.reread_next_time();
                    tracing::warn!(error = %e, "reloading staff failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "reloading staff failed"),
        }
        self.tick_presence();
        self.tick_quiet();
        self.announce_presence();
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

    /// Deletes the files nothing references any more, and the webhook deliveries given up on
    /// long enough ago.
    fn collect(&mut self) {
        let collected = self.files.collect(&self.conn, self.clock.now());
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

    /// Writes the work app's staff table over ours in one transaction, then applies it as the
    /// CLI's changes are (deactivated staff's sessions close).
    pub(super) fn mirror_staff(
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

    /// Sends the read positions that moved in this share of the conversations: one `seen`
    /// frame per conversation, however many reads it had. Each conversation has its share of
    /// every second (its id modulo [`SEEN_PHASES`]), so it is announced at most once a second:
    /// a person marking read and unread as fast as their budget allows, in a group of a
    /// thousand, costs a thousand frames a second, not twenty thousand. Spreading the
    /// conversations over the second keeps the frames from leaving in one burst that every
    /// send arriving behind it waits for (one burst a second took the steady load's p99 from
    /// 4.3 ms to 10–12 ms).
    pub(super) fn flush_seen(&mut self) {
        let phase = self.seen_phase;
        self.seen_phase = (phase + 1) % SEEN_PHASES;
        let moved = std::mem::take(&mut self.seen_moved[phase as usize]);
        if !moved.is_empty() {
            self.send_addressed(self.engine.seen_frames(&moved));
        }
    }

    /// Files read positions that moved, each under its conversation's share (`flush_seen`).
    pub(super) fn file_seen_moves(&mut self, moved: Vec<(ConversationId, StaffId)>) {
        for (conversation, staff) in moved {
            self.seen_moved[(conversation.0 % SEEN_PHASES) as usize].push((conversation, staff));
        }
    }

    /// Sends frames to groups of staff (each encoded once).
    pub(super) fn send_addressed(&self, frames: tally_shared::engine::Addressed) {
        let mut sent = 0;
        for (keys, frame) in frames {
            let frame: Frame = encode(&frame).into();
            for key in keys {
                sent += self.hub.send(key, &frame, &self.metrics);
            }
        }
        self.metrics.frames_out.fetch_add(sent, Relaxed);
    }
}

/// An applied event's `unread_updated` checkpoints, as kept for replays: encoded for those
/// `sent` says are sent them now, the rest left to be encoded if a replay needs them.
pub(super) fn unread_updates(applied: &Applied, sent: impl Fn(StaffKey) -> bool) -> Vec<(StaffKey, Update)> {
    applied
        .changes
        .iter()
        .map(|(k, u)| {
            let update = if sent(*k) {
                Update::Sent(encode(&ServerFrame::UnreadUpdated(*u)).into())
            } else {
                Update::Later(*u)
            };
            (*k, update)
        })
        .collect()
}
