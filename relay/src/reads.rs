//! Heavy reads off the core thread: building snapshots and serving history pages.
//!
//! A snapshot of a busy staff member is megabytes of messages read from SQLite and encoded;
//! done on the core thread it would hold up everyone's writes. Instead the core does only what
//! must be consistent with its state, between two batches, in microseconds:
//!
//! 1. it takes an idle read-only connection and opens a read transaction on it, which pins
//!    SQLite's view of the database at exactly the core's offset (every batch is committed
//!    before the core reads anything, and only the core writes);
//! 2. it takes the counts, watermarks and heads from the engine at that same offset (a snapshot
//!    without its messages), or checks a history request;
//! 3. it hands both to a worker thread, and for a snapshot queues a placeholder in the
//!    connection's queue, so frames fanned out later stay behind it.
//!
//! The worker reads the messages through that transaction, encodes, fills the placeholder (or
//! answers the HTTP request), ends the transaction and gives the connection back. The pool
//! has as many connections as workers; requests beyond that wait in the core, in order, and
//! are answered at the state when a connection comes back (never older than when asked).

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc as std_mpsc};

use rusqlite::Connection;
use tally_shared::protocol::{ServerFrame, Snapshot, encode};
use tally_shared::{ConversationId, ErrorCode, Message, Seq, limits};
use tokio::sync::oneshot;

use crate::hub::{Built, ConnHandle, Frame};
use crate::metrics::Metrics;
use crate::storage;

/// What the core asks a worker to do, with the state it took at its offset.
#[derive(Debug)]
pub enum Job {
    /// Fill a snapshot's messages, encode it, and deliver it to the placeholder.
    Snapshot {
        /// Counts, watermarks and heads, without messages.
        snapshot: Box<Snapshot>,
        /// The placeholder in the connection's queue.
        deliver: oneshot::Sender<Built>,
        /// The connection: it holds the frame once built (see `ConnHandle::admit_snapshot`).
        conn: ConnHandle,
        /// Where a slow consumer is counted.
        metrics: Arc<Metrics>,
    },
    /// Read a checked range of history.
    History {
        /// Where.
        conversation: ConversationId,
        /// The first seq.
        from: Seq,
        /// The last seq.
        to: Seq,
        /// Only this thread's messages (then `from` and `to` do not apply).
        thread: Option<crate::storage::ThreadPage>,
        /// The HTTP request waiting.
        reply: oneshot::Sender<Result<Vec<Message>, ErrorCode>>,
    },
}

/// How a worker hands a connection back; false once nobody takes it (the pool stops).
pub type GiveBack = Arc<dyn Fn(Connection) -> bool + Send + Sync>;

/// A job and the connection whose read transaction it runs in.
struct Work {
    job: Job,
    conn: Connection,
}

/// The core's side: the idle connections, and the way to the workers.
pub struct ReadPool {
    idle: Vec<Connection>,
    work: std_mpsc::Sender<Work>,
}

impl std::fmt::Debug for ReadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadPool")
            .field("idle", &self.idle.len())
            .finish()
    }
}

impl ReadPool {
    /// `workers` threads, each job on one of `workers` read-only connections to `data`'s
    /// database; a worker hands its connection back with `give_back` (to the core, which
    /// passes it to [`give`](Self::give)), which says false once nobody takes it.
    pub fn start(data: &Path, workers: usize, give_back: GiveBack) -> anyhow::Result<ReadPool> {
        let (work, queue) = std_mpsc::channel::<Work>();
        let queue = Arc::new(Mutex::new(queue));
        let mut idle = Vec::new();
        for i in 0..workers.max(1) {
            idle.push(storage::open_reader(data)?);
            let queue = queue.clone();
            let give_back = give_back.clone();
            std::thread::Builder::new()
                .name(format!("tally-read-{i}"))
                .spawn(move || worker(&queue, &*give_back))?;
        }
        Ok(ReadPool { idle, work })
    }

    /// An idle connection with a read transaction open at the database's current state (the
    /// core's, when it calls between batches); `None` when every one is busy.
    pub fn take(&mut self) -> Option<Connection> {
        let conn = self.idle.pop()?;
        // A WAL read transaction takes its view at its first read: read now.
        let pinned = conn
            .execute_batch("BEGIN")
            .and_then(|()| conn.query_row("SELECT COUNT(*) FROM staff", [], |r| r.get::<_, i64>(0)));
        if let Err(e) = pinned {
            // Not pinned at this state: not handed out (the caller waits, as when all are busy).
            tracing::warn!(error = %e, "a read connection could not start a transaction");
            end(&conn);
            self.idle.push(conn);
            return None;
        }
        Some(conn)
    }

    /// Hands a job to a worker, on a connection from [`take`](Self::take).
    pub fn run(&mut self, conn: Connection, job: Job) {
        if self.work.send(Work { job, conn }).is_err() {
            tracing::error!("read workers are gone");
        }
    }

    /// A connection back: from a worker, or unused after [`take`](Self::take).
    pub fn give(&mut self, conn: Connection) {
        end(&conn);
        self.idle.push(conn);
    }
}

/// Ends a read connection's transaction, if one is open (a read transaction: its end changes
/// nothing, and if COMMIT fails, ROLLBACK ends it all the same).
fn end(conn: &Connection) {
    if conn.is_autocommit() {
        return;
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        tracing::warn!(error = %e, "a read transaction did not end; rolling it back");
        let _ = conn.execute_batch("ROLLBACK");
    }
}

/// A worker: runs jobs until the pool is dropped.
fn worker(queue: &Mutex<std_mpsc::Receiver<Work>>, give_back: &(dyn Fn(Connection) -> bool + Send + Sync)) {
    loop {
        let next = queue.lock().map(|q| q.recv());
        let Ok(Ok(Work { job, conn })) = next else {
            return;
        };
        run(job, &conn);
        end(&conn);
        if !give_back(conn) {
            return;
        }
    }
}

fn run(job: Job, conn: &Connection) {
    match job {
        Job::Snapshot {
            mut snapshot,
            deliver,
            conn: to,
            metrics,
        } => {
            if to.closer.code().is_some() {
                return;
            }
            let budget = tally_shared::engine::SnapshotBudget::default();
            let mut unread = None;
            tally_shared::engine::fill_messages(&mut snapshot, budget, &mut |c, from, to, take| {
                if let Err(e) = storage::messages_newest_first(conn, c, from, to, take) {
                    unread = Some(e);
                }
            });
            if let Some(e) = unread {
                // No snapshot with holes: the client reconnects and asks again.
                tracing::warn!(error = %e, "a snapshot's messages could not be read");
                to.closer.close(tally_shared::protocol::close::GOING_AWAY);
                return;
            }
            let frame: Frame = encode(&ServerFrame::Snapshot(snapshot)).into();
            // Held until written: a client that asks for snapshots and does not read them is
            // closed, not fed.
            if let Some(built) = to.admit_snapshot(frame, &metrics)
                && let Err(unsent) = deliver.send(built)
            {
                to.queued.release_built(&unsent);
            }
        }
        Job::History {
            conversation,
            from,
            to,
            thread,
            reply,
        } => {
            let page = storage::history_page(conn, conversation, (from, to), thread, limits::PAGE_MAX_BYTES)
                .map_err(|e| {
                    tracing::warn!(error = %e, "a history page could not be read");
                    tally_shared::ErrorCode::Unavailable
                });
            let _ = reply.send(page);
        }
    }
}
