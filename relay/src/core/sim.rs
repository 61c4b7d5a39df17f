//! Deterministic simulation of the relay's core: the real [`Core`] on a real SQLite file,
//! driven one batch at a time by simulated staff, a simulated clock and a storage that fails
//! on purpose, all from one seed. Every run with the same seed and number of steps takes the
//! same path, so a failure prints the command that replays it exactly.
//!
//! Faults: a full disk (one write, or for a while), a write that fails half-done, a commit
//! refused, an `fsync` that fails (the commit on disk or not), crashes mid-batch, just before
//! and just after a commit, and between batches (nothing after the crash is seen by anyone),
//! slow commits, disconnects and resumes, retries of sends by client id, checkpoints and
//! restarts from them.
//!
//! The checker, after every batch:
//! - every acknowledged send is in the log exactly once, as the message its ack named;
//! - a send refused with "nothing was stored", and never possibly stored otherwise, is not in
//!   the log;
//! - the core's counts equal the naive oracle over the stored log (so a batch taken back left
//!   nothing behind), and so do the counts of every client that is connected and caught up;
//! - after a restart, the engine loaded from the latest checkpoint plus the log equals the
//!   oracle's replay of the whole log.
//!
//! At the end the faults stop, everyone reconnects and retries what was never acknowledged,
//! and every send must then be acknowledged exactly once.
//!
//! `SIM_SEEDS=1-200 SIM_STEPS=3000 cargo test --release -p tally-relay --lib core::sim` (or
//! `make simulate SEEDS=… STEPS=…`) runs long ones.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, ffi};
use tally_shared::oracle::Oracle;
use tally_shared::protocol::ServerFrame;
use tally_shared::{
    ChatStore, ClientMsgId, ConversationId, Engine, LoggedEvent, MessageId, Offset, Request, RequestId,
    Routed, Seq, Staff, StaffId,
};
use tokio::sync::mpsc;

use super::store::{LogStore, Sqlite};
use super::{Clock, Command, Core, Greeting, ReplayLimit, Retention};
use crate::hub::{Closer, ConnHandle, Outbound, QUEUE_BYTES, Queued};
use crate::metrics::Metrics;
use crate::order::Local;
use crate::storage;

/// A message a client has loaded: its id, sender, conversation and seq.
type Loaded = (MessageId, StaffId, ConversationId, Seq);

/// The simulated staff.
const STAFF: [&str; 5] = ["ann", "bob", "cy", "dee", "eve"];

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// True `per_mille` times in a thousand.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> Option<T> {
        (!from.is_empty()).then(|| from[self.below(from.len() as u64) as usize])
    }
}

/// A storage fault, armed for the next batch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// The `n`-th append finds the disk full.
    AppendFull(u32),
    /// The `n`-th append writes part of its rows, then fails.
    AppendTorn(u32),
    /// The commit finds the disk full (nothing committed).
    CommitFull,
    /// The commit's `fsync` fails: what is on disk is unknown (here: committed or not).
    FsyncFails { committed: bool },
    /// The process dies during the `n`-th append.
    CrashOnAppend(u32),
    /// The process dies just before the commit reaches the disk.
    CrashBeforeCommit,
    /// The process dies just after the commit reached the disk, before anyone is answered.
    CrashAfterCommit,
    /// The commit takes this long.
    Slow(u64),
}

/// What the simulated storage is told to do, and what it did.
#[derive(Default)]
struct Faults {
    armed: Option<Fault>,
    /// The disk stays full until then (simulated milliseconds).
    full_until: u64,
    appends: u32,
    /// The process died: the simulation restarts it.
    crashed: bool,
    /// Faults that fired, for the report.
    fired: BTreeMap<&'static str, u64>,
}

impl Faults {
    fn fire(&mut self, what: &'static str) {
        *self.fired.entry(what).or_default() += 1;
    }
}

fn sqlite_error(code: std::os::raw::c_int, what: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(format!("simulated: {what}")))
}

/// The relay's SQLite store, with faults injected where the simulation says.
struct SimStore {
    inner: Sqlite,
    faults: Arc<Mutex<Faults>>,
    clock: Arc<AtomicU64>,
}

impl LogStore for SimStore {
    fn begin(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        self.faults.lock().expect("faults").appends = 0;
        self.inner.begin(conn)
    }

    fn append(&mut self, conn: &Connection, event: &LoggedEvent, text: &str) -> anyhow::Result<()> {
        let mut f = self.faults.lock().expect("faults");
        f.appends += 1;
        let n = f.appends;
        if self.clock.load(Relaxed) < f.full_until {
            f.fire("disk full for a while");
            return Err(sqlite_error(ffi::SQLITE_FULL, "disk full").into());
        }
        match f.armed {
            Some(Fault::AppendFull(k)) if k == n => {
                f.fire("append: disk full");
                Err(sqlite_error(ffi::SQLITE_FULL, "disk full").into())
            }
            Some(Fault::AppendTorn(k)) if k == n => {
                f.fire("append: torn");
                drop(f);
                self.inner.append(conn, event, text)?;
                Err(sqlite_error(ffi::SQLITE_IOERR_WRITE, "write failed after part of it").into())
            }
            Some(Fault::CrashOnAppend(k)) if k == n => {
                f.fire("crash: mid-batch");
                f.crashed = true;
                Err(sqlite_error(ffi::SQLITE_IOERR_FSYNC, "the process died").into())
            }
            _ => {
                drop(f);
                self.inner.append(conn, event, text)
            }
        }
    }

    fn commit(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let mut f = self.faults.lock().expect("faults");
        match f.armed.take() {
            Some(Fault::CommitFull) => {
                f.fire("commit: disk full");
                Err(sqlite_error(ffi::SQLITE_FULL, "disk full"))
            }
            Some(Fault::FsyncFails { committed }) => {
                f.fire(if committed {
                    "fsync failed (committed)"
                } else {
                    "fsync failed (not committed)"
                });
                if committed {
                    self.inner.commit(conn)?;
                }
                Err(sqlite_error(ffi::SQLITE_IOERR_FSYNC, "fsync failed"))
            }
            Some(Fault::CrashBeforeCommit) => {
                f.fire("crash: before commit");
                f.crashed = true;
                Err(sqlite_error(ffi::SQLITE_IOERR_FSYNC, "the process died"))
            }
            Some(Fault::CrashAfterCommit) => {
                f.fire("crash: after commit");
                self.inner.commit(conn)?;
                f.crashed = true;
                Err(sqlite_error(ffi::SQLITE_IOERR_FSYNC, "the process died"))
            }
            Some(Fault::Slow(ms)) => {
                f.fire("slow commit");
                self.clock.fetch_add(ms, Relaxed);
                self.inner.commit(conn)
            }
            _ => self.inner.commit(conn),
        }
    }
}

/// What became of a send (a message with a client id).
#[derive(Debug, Clone, PartialEq)]
enum Fate {
    /// Sent; no answer yet.
    InFlight,
    /// Its answer was lost (a disconnect or a crash), or it was refused without a promise
    /// that nothing was stored: it may be in the log.
    Unknown,
    /// Refused with "nothing was stored".
    Refused,
    /// Acknowledged, as this message.
    Acked(MessageId),
}

struct Send {
    client: usize,
    request: Request,
    client_id: ClientMsgId,
    fate: Fate,
    /// An attempt's answer was lost, or said "not stored for sure": it may be stored even if
    /// a later attempt is refused.
    maybe_stored: bool,
}

struct Conn {
    handle: ConnHandle,
    rx: mpsc::Receiver<Outbound>,
    hello: Option<tokio::sync::oneshot::Receiver<Result<(), tally_shared::protocol::ErrorFrame>>>,
    /// Request ids in flight on this connection: the send they carry, if any.
    in_flight: BTreeMap<u64, Option<usize>>,
    /// The `counts` frame received, until the snapshot that must come right after it.
    counts: Option<ServerFrame>,
}

struct Client {
    staff: StaffId,
    store: ChatStore,
    conn: Option<Conn>,
}

/// One simulation.
struct Sim {
    seed: u64,
    rng: Rng,
    dir: tempfile::TempDir,
    clock: Arc<AtomicU64>,
    faults: Arc<Mutex<Faults>>,
    core: Option<Core>,
    /// Commands for the next batch.
    queued: Vec<Command>,
    clients: Vec<Client>,
    sends: Vec<Send>,
    next_id: u64,
    /// The stored log as read back, through the naive oracle.
    oracle: Oracle,
    seen: Offset,
    /// Each stored send by (sender, client id): the messages it made (must be one).
    stored: BTreeMap<(StaffId, ClientMsgId), Vec<MessageId>>,
    reader: Connection,
    steps: u64,
    restarts: u64,
    acks: u64,
    refusals: u64,
    /// How clients came back: replays of what they missed, and snapshots.
    resumed: u64,
    snapshots: u64,
    /// Client stores checked against the oracle.
    client_checks: u64,
}

fn staff(i: usize) -> StaffId {
    StaffId::new(STAFF[i]).expect("a staff id")
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let core = Self::start(dir.path(), &clock, &faults);
        let reader = storage::open_reader(dir.path()).expect("a reader");
        let mut sim = Sim {
            seed,
            rng: Rng(seed),
            dir,
            clock,
            faults,
            core: Some(core),
            queued: Vec::new(),
            clients: (0..STAFF.len())
                .map(|i| Client {
                    staff: staff(i),
                    store: ChatStore::new(),
                    conn: None,
                })
                .collect(),
            sends: Vec::new(),
            next_id: 0,
            oracle: Oracle::new(),
            seen: Offset(0),
            stored: BTreeMap::new(),
            reader,
            steps: 0,
            restarts: 0,
            acks: 0,
            refusals: 0,
            resumed: 0,
            snapshots: 0,
            client_checks: 0,
        };
        let core = sim.core.as_mut().expect("started");
        for (i, name) in STAFF.iter().enumerate() {
            let s = Staff {
                id: staff(i),
                name: name.to_uppercase(),
            };
            core.add_staff(s).expect("staff added");
        }
        sim
    }

    /// Starts the core as the relay does: the latest checkpoint, then the log after it.
    fn start(data: &std::path::Path, clock: &Arc<AtomicU64>, faults: &Arc<Mutex<Faults>>) -> Core {
        let conn = storage::open(data, storage::Durability::Full).expect("storage opens");
        let head = Offset(storage::last_offset(&conn).expect("a head"));
        let log = storage::log_id(&conn).expect("a log id");
        let metrics = Arc::new(Metrics::default());
        let engine = crate::checkpoints::load_latest(data, &log, head, &metrics).unwrap_or_default();
        let retain = Retention {
            events: 200,
            bytes: 1 << 20,
        };
        let replay = ReplayLimit {
            frames: 500,
            bytes: 1 << 19,
        };
        let mut core = Core::load(conn, Box::new(Local::default()), engine, retain, replay, metrics)
            .expect("the core loads");
        core.set_checkpoints(data.to_path_buf(), log);
        core.clock = Clock::Manual(clock.clone());
        core.store = Box::new(SimStore {
            inner: Sqlite,
            faults: faults.clone(),
            clock: clock.clone(),
        });
        core
    }

    fn core(&mut self) -> &mut Core {
        self.core.as_mut().expect("the core runs")
    }

    fn request_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A client says hello (resuming from what its store applied, if it has a snapshot).
    fn connect(&mut self, i: usize) {
        let id = self.request_id();
        let (tx, rx) = mpsc::channel(1 << 20);
        let handle = ConnHandle {
            id,
            tx,
            queued: Arc::new(Queued::new(QUEUE_BYTES)),
            closer: Arc::new(Closer::default()),
        };
        let store = &self.clients[i].store;
        let resume_from = store.is_ready().then(|| store.applied());
        let (reply, hello) = tokio::sync::oneshot::channel();
        // Half the hellos ask for the totals ahead of a snapshot.
        let greeting = Greeting {
            resume_from,
            counts_first: id.is_multiple_of(2),
        };
        self.queued.push(Command::Hello {
            staff: self.clients[i].staff.clone(),
            greeting,
            conn: handle.clone(),
            reply,
        });
        self.clients[i].conn = Some(Conn {
            handle,
            rx,
            hello: Some(hello),
            in_flight: BTreeMap::new(),
            counts: None,
        });
    }

    /// A client's socket closes: what it had in flight is answered to no one.
    fn disconnect(&mut self, i: usize) {
        let Some(conn) = self.clients[i].conn.take() else {
            return;
        };
        self.lose(conn.in_flight.values().flatten().copied().collect());
        self.queued.push(Command::Disconnected {
            staff: self.clients[i].staff.clone(),
            conn_id: conn.handle.id,
        });
    }

    fn lose(&mut self, sends: Vec<usize>) {
        for s in sends {
            if self.sends[s].fate == Fate::InFlight {
                self.sends[s].fate = Fate::Unknown;
            }
            self.sends[s].maybe_stored = true;
        }
    }

    /// Whether client `i` may send: connected, hello answered, snapshot or replay applied.
    fn ready(&self, i: usize) -> bool {
        self.clients[i]
            .conn
            .as_ref()
            .is_some_and(|c| c.hello.is_none() && self.clients[i].store.is_ready())
    }

    fn write(&mut self, i: usize, request: Request, send: Option<usize>) {
        let Routed::Log(write) = request.into_route() else {
            unreachable!("the simulation only writes for the log")
        };
        let req = self.request_id();
        let conn = self.clients[i].conn.as_mut().expect("connected");
        conn.in_flight.insert(req, send);
        let handle = conn.handle.clone();
        if let Some(s) = send {
            self.sends[s].fate = Fate::InFlight;
        }
        self.queued.push(Command::Execute {
            staff: self.clients[i].staff.clone(),
            req: Some(RequestId(req)),
            write,
            conn: handle,
        });
    }

    /// The conversations client `i` sees, and the messages it has loaded (id, sender).
    fn view(&self, i: usize) -> (Vec<ConversationId>, Vec<Loaded>) {
        let store = &self.clients[i].store;
        let conversations: Vec<ConversationId> = store.conversation_list().iter().map(|c| c.id).collect();
        let messages = conversations
            .iter()
            .filter_map(|c| store.conversation(*c))
            .flat_map(|v| {
                v.messages
                    .iter()
                    .filter(|m| !m.deleted)
                    .map(|m| (m.id, m.sender.clone(), m.conversation, m.seq))
            })
            .collect();
        (conversations, messages)
    }

    // Over 80 lines: one arm per kind of thing a person does.
    fn act(&mut self, i: usize) {
        let (conversations, messages) = self.view(i);
        let me = self.clients[i].staff.clone();
        let roll = self.rng.below(100);
        let request = match roll {
            0..=39 if !conversations.is_empty() => {
                let conversation = self.rng.pick(&conversations).expect("some");
                self.next_id += 1;
                let client_id = ClientMsgId::new(format!("s{}-{}", self.seed, self.next_id)).expect("an id");
                let request = Request::SendMessage {
                    mention_ranges: Vec::new(),
                    client_id: client_id.clone(),
                    conversation,
                    body: format!("message {}", self.next_id),
                    attachments: vec![],
                    reply_to: None,
                };
                self.sends.push(Send {
                    client: i,
                    request: request.clone(),
                    client_id,
                    fate: Fate::InFlight,
                    maybe_stored: false,
                });
                let s = self.sends.len() - 1;
                return self.write(i, request, Some(s));
            }
            0..=49 => {
                let mut participants: Vec<StaffId> = (0..STAFF.len())
                    .filter(|_| self.rng.chance(500))
                    .map(staff)
                    .collect();
                if !participants.contains(&me) {
                    participants.push(me.clone());
                }
                self.next_id += 1;
                Request::CreateGroup {
                    client_id: ClientMsgId::new(format!("g{}-{}", self.seed, self.next_id)).expect("an id"),
                    title: format!("group {}", self.next_id),
                    participants,
                }
            }
            50..=53 => Request::CreateDirect {
                staff: staff(self.rng.below(STAFF.len() as u64) as usize),
            },
            54..=69 if !messages.is_empty() => {
                let (_, _, conversation, seq) = self.rng.pick_ref(&messages);
                Request::MarkRead {
                    conversation,
                    up_to: seq,
                }
            }
            70..=76 if !conversations.is_empty() => Request::MarkConversationRead {
                conversation: self.rng.pick(&conversations).expect("some"),
            },
            77..=79 => Request::MarkAllRead,
            80..=85 if !messages.is_empty() => {
                let (_, _, conversation, seq) = self.rng.pick_ref(&messages);
                Request::MarkUnread {
                    conversation,
                    from: seq,
                }
            }
            86..=91 if !messages.is_empty() => {
                let mine: Vec<_> = messages.iter().filter(|m| m.1 == me).collect();
                let Some(m) = mine.get(self.rng.below(mine.len() as u64) as usize) else {
                    return;
                };
                Request::DeleteMessage { message: m.0 }
            }
            92..=95 if !messages.is_empty() => {
                let mine: Vec<_> = messages.iter().filter(|m| m.1 == me).collect();
                let Some(m) = mine.get(self.rng.below(mine.len() as u64) as usize) else {
                    return;
                };
                Request::EditMessage {
                    mention_ranges: Vec::new(),
                    message: m.0,
                    body: format!("edited {}", self.next_id),
                }
            }
            _ if !conversations.is_empty() => Request::SetMuted {
                conversation: self.rng.pick(&conversations).expect("some"),
                muted: self.rng.chance(300),
            },
            _ => return,
        };
        self.write(i, request, None);
    }

    /// Retries a send that was never acknowledged, with its client id, from its own client.
    fn retry(&mut self) {
        let open: Vec<usize> = (0..self.sends.len())
            .filter(|s| matches!(self.sends[*s].fate, Fate::Unknown | Fate::Refused))
            .filter(|s| self.ready(self.sends[*s].client))
            .collect();
        if let Some(s) = self.rng.pick(&open) {
            let (client, request) = (self.sends[s].client, self.sends[s].request.clone());
            self.write(client, request, Some(s));
        }
    }

    fn arm(&mut self) {
        let n = 1 + self.rng.below(3) as u32;
        let fault = match self.rng.below(9) {
            0 => Fault::AppendFull(n),
            1 => Fault::AppendTorn(n),
            2 => Fault::CommitFull,
            3 => Fault::FsyncFails {
                committed: self.rng.chance(500),
            },
            4 => Fault::CrashOnAppend(n),
            5 => Fault::CrashBeforeCommit,
            6 => Fault::CrashAfterCommit,
            7 => Fault::Slow(1 + self.rng.below(3_000)),
            _ => {
                let now = self.clock.load(Relaxed);
                let mut f = self.faults.lock().expect("faults");
                f.full_until = now + 500 + self.rng.below(5_000);
                return;
            }
        };
        self.faults.lock().expect("faults").armed = Some(fault);
    }

    /// Runs the queued commands as one batch, then lets every client read what it was sent.
    fn flush(&mut self) {
        let batch = std::mem::take(&mut self.queued);
        if batch.is_empty() {
            return;
        }
        let core = self.core();
        let _ = core.handle_batch(batch);
        let stopped = core.health.take_stop();
        if self.faults.lock().expect("faults").crashed {
            // Nothing the core did after the crash is seen by anyone.
            return self.restart();
        }
        self.deliver();
        if let Some(why) = stopped {
            // A fatal storage failure: the relay exits, and is started again.
            assert!(why.contains("simulated"), "the core stopped on its own: {why}");
            self.restart();
        }
    }

    /// Every connected client reads its queue and applies it.
    fn deliver(&mut self) {
        for i in 0..self.clients.len() {
            let Some(mut conn) = self.clients[i].conn.take() else {
                continue;
            };
            if let Some(hello) = conn.hello.as_mut() {
                match hello.try_recv() {
                    Ok(Ok(())) => conn.hello = None,
                    Ok(Err(e)) => panic!("{} was refused at hello: {e:?}", self.clients[i].staff),
                    Err(_) => {}
                }
            }
            let mut answered = Vec::new();
            while let Ok(out) = conn.rx.try_recv() {
                let frame = match out {
                    Outbound::Text(frame) => {
                        conn.handle.queued.release(frame.len());
                        frame
                    }
                    Outbound::Later(mut later) => {
                        let built = later.try_recv().expect("a snapshot built on the core thread");
                        conn.handle.queued.release_built(&built);
                        built.frame
                    }
                };
                let parsed: ServerFrame = serde_json::from_str(frame.as_str()).expect("a frame parses");
                if let Some(ServerFrame::Counts { offset, total }) = conn.counts.take() {
                    // Built on the core thread with the snapshot: the same state, nothing between.
                    let ServerFrame::Snapshot(s) = &parsed else {
                        panic!("a `counts` frame not followed by its snapshot: {parsed:?}");
                    };
                    assert_eq!(
                        (s.offset, s.total),
                        (offset, total),
                        "the early totals are the snapshot's"
                    );
                }
                match &parsed {
                    ServerFrame::Ack(ack) => {
                        if let Some(req) = ack.req
                            && let Some(send) = conn.in_flight.remove(&req.0)
                        {
                            answered.push((send, Ok(ack.message)));
                        }
                    }
                    ServerFrame::Resumed { .. } => self.resumed += 1,
                    ServerFrame::Snapshot(_) => self.snapshots += 1,
                    ServerFrame::Counts { .. } => conn.counts = Some(parsed.clone()),
                    ServerFrame::Error(e) => {
                        if let Some(req) = e.req
                            && let Some(send) = conn.in_flight.remove(&req.0)
                        {
                            answered.push((send, Err(e.message.clone())));
                        }
                    }
                    _ => {}
                }
                self.clients[i].store.apply(parsed);
            }
            assert!(
                conn.handle.closer.code().is_none(),
                "{} was closed",
                self.clients[i].staff
            );
            self.clients[i].conn = Some(conn);
            for (send, answer) in answered {
                self.answered(send, answer);
            }
        }
    }

    fn answered(&mut self, send: Option<usize>, answer: Result<Option<MessageId>, String>) {
        match answer {
            Ok(_) => self.acks += 1,
            Err(_) => self.refusals += 1,
        }
        let Some(s) = send else { return };
        let send = &mut self.sends[s];
        send.fate = match answer {
            Ok(Some(id)) => Fate::Acked(id),
            Ok(None) => panic!("a send was acknowledged without its message"),
            Err(why) if why.contains("nothing was stored") => Fate::Refused,
            Err(why) if why.contains("not stored for sure") => {
                send.maybe_stored = true;
                Fate::Unknown
            }
            Err(why) => panic!("a send was refused for another reason: {why}"),
        };
    }

    /// The process dies (or stopped): every connection is gone, and the relay starts again
    /// from its latest checkpoint and the log.
    fn restart(&mut self) {
        self.restarts += 1;
        for i in 0..self.clients.len() {
            if let Some(conn) = self.clients[i].conn.take() {
                self.lose(conn.in_flight.values().flatten().copied().collect());
            }
        }
        self.queued.clear();
        drop(self.core.take());
        {
            let mut f = self.faults.lock().expect("faults");
            f.crashed = false;
            f.armed = None;
        }
        let core = Self::start(self.dir.path(), &self.clock, &self.faults);
        self.core = Some(core);
        self.read_log();
        // The checkpoint and the log after it make the engine the whole log makes.
        self.check_engine("after a restart from a checkpoint");
    }

    fn checkpoint(&mut self) {
        let log = storage::log_id(&self.reader).expect("a log id");
        let engine: Engine = self.core().engine_copy();
        crate::checkpoints::write(self.dir.path(), &log, &engine).expect("a checkpoint");
    }

    /// Reads what was stored since last time through the oracle, and notes every send.
    fn read_log(&mut self) {
        loop {
            let events = storage::events_after(&self.reader, self.seen, 1_000).expect("the log reads");
            if events.is_empty() {
                return;
            }
            for e in events {
                assert_eq!(e.offset, self.seen.next(), "the log has a gap");
                self.seen = e.offset;
                if let tally_shared::Event::MessageCreated { message } = &e.event
                    && let Some(client_id) = &message.client_id
                {
                    let stored = self
                        .stored
                        .entry((message.sender.clone(), client_id.clone()))
                        .or_default();
                    stored.push(message.id);
                    assert_eq!(
                        stored.len(),
                        1,
                        "{client_id} of {} is stored twice",
                        message.sender
                    );
                }
                self.oracle.observe_logged(&e.event);
            }
        }
    }

    fn check_engine(&self, when: &str) {
        let core = self.core.as_ref().expect("the core runs");
        assert_eq!(
            core.engine.offset(),
            self.seen,
            "{when}: the engine is not at the log's head"
        );
        let projection = core.engine.projection();
        for i in 0..STAFF.len() {
            let s = staff(i);
            assert_eq!(
                projection.digest(&s),
                self.oracle.digest(&s),
                "{when}: the core's counts of {s} differ from the oracle over the log"
            );
        }
    }

    fn check(&mut self) {
        self.read_log();
        self.check_engine("after a batch");
        for send in &self.sends {
            let stored = self
                .stored
                .get(&(self.clients[send.client].staff.clone(), send.client_id.clone()));
            match &send.fate {
                Fate::Acked(id) => assert_eq!(
                    stored.map(|s| s.as_slice()),
                    Some(&[*id][..]),
                    "{} was acknowledged as {id} but the log has {stored:?}",
                    send.client_id
                ),
                Fate::Refused if !send.maybe_stored => assert!(
                    stored.is_none(),
                    "{} was refused with nothing stored, but it is in the log",
                    send.client_id
                ),
                _ => {}
            }
        }
        // Every frame is read after each batch: a client that is connected, was answered at
        // hello and has its snapshot (or replay) has been sent everything the log says.
        for (i, c) in self.clients.iter().enumerate() {
            let caught_up = c.conn.as_ref().is_some_and(|conn| conn.hello.is_none()) && c.store.is_ready();
            if !caught_up {
                continue;
            }
            let s = staff(i);
            self.client_checks += 1;
            assert_eq!(c.store.divergences(), 0, "{s}'s store diverged");
            assert_eq!(
                c.store.total(),
                self.oracle.total(&s),
                "{s}'s total in the browser"
            );
            assert_eq!(
                c.store.digest(),
                self.oracle.digest(&s),
                "{s}'s counts in the browser"
            );
        }
    }

    fn step(&mut self) {
        self.steps += 1;
        self.clock.fetch_add(self.rng.below(300), Relaxed);
        let i = self.rng.below(STAFF.len() as u64) as usize;
        match self.rng.below(1000) {
            0..=29 => self.arm(),
            30..=33 => {
                // Killed between batches.
                self.restart();
                return;
            }
            34..=49 => self.checkpoint(),
            50..=89 => self.disconnect(i),
            90..=149 if self.clients[i].conn.is_none() => self.connect(i),
            150..=219 => self.retry(),
            _ if self.ready(i) => self.act(i),
            _ if self.clients[i].conn.is_none() => self.connect(i),
            _ => {}
        }
        if self.queued.len() >= 8 || self.rng.chance(400) {
            self.flush();
            self.check();
        }
    }

    /// No more faults: everyone connects, every send never acknowledged is retried until it
    /// is, and then every count must agree.
    fn heal(&mut self) {
        self.faults.lock().expect("faults").full_until = 0;
        self.faults.lock().expect("faults").armed = None;
        // Past any pause a failure started.
        self.clock.fetch_add(60_000, Relaxed);
        for round in 0..20 {
            for i in 0..self.clients.len() {
                if self.clients[i].conn.is_none() {
                    self.connect(i);
                }
            }
            self.flush();
            self.flush();
            let open: Vec<usize> = (0..self.sends.len())
                .filter(|s| !matches!(self.sends[*s].fate, Fate::Acked(_)))
                .collect();
            if open.is_empty() && self.queued.is_empty() {
                break;
            }
            assert!(
                round < 19,
                "sends still not acknowledged after healing: {}",
                open.len()
            );
            for s in open {
                let (client, request) = (self.sends[s].client, self.sends[s].request.clone());
                if self.ready(client) {
                    self.write(client, request, Some(s));
                }
            }
            self.flush();
            self.check();
        }
        // A ping, so that every client has everything.
        for i in 0..self.clients.len() {
            let req = self.request_id();
            let conn = self.clients[i].conn.as_ref().expect("connected");
            self.queued.push(Command::Offset {
                req: Some(RequestId(req)),
                conn: conn.handle.clone(),
            });
        }
        self.flush();
        self.check();
        for (i, c) in self.clients.iter().enumerate() {
            assert!(c.store.is_ready(), "{} has no snapshot after healing", staff(i));
            assert!(c.store.applied() <= self.seen, "{} is ahead of the log", staff(i));
        }
    }
}

impl Rng {
    fn pick_ref<T: Clone>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize].clone()
    }
}

/// Runs one seed for `steps` steps; panics with the command that replays it on a violation.
fn run(seed: u64, steps: u64) -> String {
    let outcome = std::panic::catch_unwind(|| {
        let mut sim = Sim::new(seed);
        for _ in 0..steps {
            sim.step();
        }
        sim.flush();
        sim.check();
        sim.heal();
        let fired = sim.faults.lock().expect("faults").fired.clone();
        format!(
            "seed {seed}: {} steps, {} events, {} sends, {} acks, {} refusals, {} restarts, {} resumes, \
             {} snapshots, {} client checks, faults {fired:?}",
            sim.steps,
            sim.seen.0,
            sim.sends.len(),
            sim.acks,
            sim.refusals,
            sim.restarts,
            sim.resumed,
            sim.snapshots,
            sim.client_checks
        )
    });
    match outcome {
        Ok(report) => report,
        Err(e) => {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "the simulation failed at seed {seed}: {why}\nreplay it with: \
                 SIM_SEEDS={seed} SIM_STEPS={steps} cargo test -p tally-relay --lib core::sim -- --nocapture"
            )
        }
    }
}

/// `SIM_SEEDS`: one seed, or a range `a-b`; `SIM_STEPS`: steps per seed.
fn seeds() -> (std::ops::RangeInclusive<u64>, u64) {
    let steps = std::env::var("SIM_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let seeds = match std::env::var("SIM_SEEDS") {
        Ok(s) => match s.split_once('-') {
            Some((a, b)) => a.parse().expect("a seed")..=b.parse().expect("a seed"),
            None => {
                let one = s.parse().expect("a seed");
                one..=one
            }
        },
        Err(_) => 1..=12,
    };
    (seeds, steps)
}

#[test]
fn the_core_survives_every_fault_the_simulation_injects() {
    let (seeds, steps) = seeds();
    for seed in seeds {
        let report = run(seed, steps);
        println!("{report}");
    }
}

#[test]
fn a_seed_replays_exactly() {
    assert_eq!(run(7, 200), run(7, 200));
}
