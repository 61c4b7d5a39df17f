//! The group commit: a batch of commands taken at once, its writes validated by the engine and
//! appended in one transaction, committed once, and only then fanned out and acknowledged.
//! Storage that fails takes the whole batch back.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use tally_shared::engine::{Applied, Outcome, Rejection};
use tally_shared::protocol::{ErrorFrame, ServerFrame, encode};
use tally_shared::{ErrorCode, Offset, StaffId};

use super::health::{StoreFailed, unavailable};
use super::replica::{apply_committed, redacted_by};
use super::store::rollback;
use super::{Command, Core, Reply, ServiceDone, ServiceWrite, unread_updates};
use crate::hub::{ConnHandle, Frame};
use crate::order::Down;
use crate::storage::SqlLookup;
use tally_shared::engine::Lookup;

/// Who a write in a batch answers.
enum Source {
    /// A connection, with the request id of its frame.
    Conn(Option<tally_shared::RequestId>, ConnHandle),
    /// A service API call.
    Service(Reply<Result<ServiceDone, Rejection>>),
}

/// One write of a batch: who it answers, what the engine said, its events' frames.
type Written = (Source, Result<Outcome, Rejection>, Vec<Frame>);

/// A batch's writes as they go through the phases.
struct Batch {
    started: Instant,
    /// Whether it may append (a ping or a divergence report never does, so a batch of them
    /// does not lock a cluster's log).
    writing: bool,
    /// Why its writes are refused without running: storage is paused, or the log's lock
    /// could not be had.
    down: Option<Down>,
    /// Whether this node holds a cluster's log lock (`Order::begin` succeeded).
    locked: bool,
    /// What others appended, applied under the lock before this batch's writes.
    caught: Vec<(Applied, Frame)>,
    writes: Vec<Written>,
    /// Webhook outcomes recorded in this batch's transaction, answered once it commits.
    settled: Vec<Reply<()>>,
    /// A storage failure in this batch: everything it wrote is rolled back, and its writes
    /// are refused.
    failed: Option<StoreFailed>,
    /// Whether the engine took events, which taking the batch back must undo.
    engine_moved: bool,
}

impl Batch {
    fn appended(&self) -> usize {
        self.writes.iter().map(|w| w.2.len()).sum()
    }

    /// Whether its writes run and go through the log (so a failure after the log's commit
    /// may leave them committed in a cluster's log).
    fn through_the_log(&self) -> bool {
        self.writing && self.down.is_none()
    }

    /// What the engine applied for this batch's own writes.
    fn created(&self) -> impl Iterator<Item = &Applied> {
        self.writes
            .iter()
            .filter_map(|w| w.1.as_ref().ok())
            .flat_map(|o| &o.applied)
    }

    /// Why a write of this batch is refused without running, if it is.
    fn refusal(&self) -> Option<Down> {
        match (&self.down, &self.failed) {
            (Some(d), _) => Some(Down(d.0.clone())),
            (None, Some(_)) => Some(Down("storage failed".into())),
            (None, None) => None,
        }
    }
}

/// How a batch's commit went wrong.
enum NotCommitted {
    /// This node's storage failed: the batch is taken back (`committed_elsewhere`: a
    /// cluster's log may have it).
    Storage {
        failure: StoreFailed,
        committed_elsewhere: bool,
    },
    /// The cluster's log commit failed: stored or not, nobody knows.
    Unknown(Down),
}

impl Core {
    /// One batch, phase by phase: rings, lock, execute and append, commit, publish, fan out,
    /// answer; then the batch's reads. Returns the reply of a shutdown it carried.
    pub(super) fn handle_batch(&mut self, batch: Vec<Command>) -> Option<Reply<()>> {
        let batch = self.hear_rings(batch);
        let (work, reads): (Vec<Command>, Vec<Command>) = batch.into_iter().partition(|c| {
            matches!(
                c,
                Command::Execute { .. }
                    | Command::Service { .. }
                    | Command::Offset { .. }
                    | Command::WebhookSettled(_)
            )
        });
        if work.is_empty() {
            return self.after_writes(reads);
        }
        let writing = work
            .iter()
            .any(|c| matches!(c, Command::Execute { .. } | Command::Service { .. }));
        if writing {
            self.prepare_writes(&work);
        }
        let mut b = Batch {
            started: Instant::now(),
            writing,
            down: if writing {
                self.health.writes_refused(self.clock.now())
            } else {
                None
            },
            locked: false,
            caught: Vec::new(),
            writes: Vec::new(),
            settled: Vec::new(),
            failed: None,
            engine_moved: false,
        };
        if let Err(e) = self.store.begin(&self.conn) {
            let f = StoreFailed::sqlite(&e);
            let why = f.down();
            self.storage_failed(f);
            return self.refuse_batch(work, reads, &why);
        }
        self.lock(&mut b);
        for cmd in work {
            self.execute(&mut b, cmd);
        }
        let committed = self.commit(&mut b);
        if committed.is_err() {
            rollback(&self.conn);
        }
        let seen_now = match committed {
            Ok(seen_now) => seen_now,
            Err(NotCommitted::Storage {
                failure,
                committed_elsewhere,
            }) => {
                let engine_moved = b.engine_moved;
                return self.take_back(
                    failure,
                    engine_moved,
                    committed_elsewhere,
                    b.writes,
                    b.settled,
                    reads,
                );
            }
            Err(NotCommitted::Unknown(e)) => {
                // Forget this batch, rebuild from what is stored, and let the clients retry
                // (their client ids make a stored write answer with its first acknowledgement
                // once this node has caught up with it).
                tracing::warn!(error = %e, "commit failed: rebuilding from the log");
                self.rebuild();
                self.refuse_unavailable(b.writes, e);
                return self.after_writes(reads);
            }
        };
        self.fan_out_batch(&mut b);
        // A newcomer's read positions now; moved ones with their share (`flush_seen`).
        self.send_addressed(seen_now);
        self.answer(b.writes);
        self.after_writes(reads)
    }

    /// Phase "rings": other nodes' commits that came with their rings go first (all of the
    /// batch's at once, so that two rings heard out of order still follow each other), so
    /// this batch's writes are validated after them and need not read them from PostgreSQL.
    fn hear_rings(&mut self, batch: Vec<Command>) -> Vec<Command> {
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
        batch
    }

    /// Before the lock: what others appended, as far as rings tell (the rest is read under
    /// the lock, in `begin`), and the uploads the batch's sends reference.
    fn prepare_writes(&mut self, work: &[Command]) {
        if self
            .bell
            .as_ref()
            .is_some_and(|b| b.heard_past(self.engine.offset()))
        {
            self.catch_up();
        }
        self.fetch_uploads_of(work);
    }

    /// Phase "lock": under the log's lock, what others appended since, applied before this
    /// batch (nothing to do on a single node, or when the batch does not write).
    fn lock(&mut self, b: &mut Batch) {
        if !b.through_the_log() {
            return;
        }
        match self.order.begin(self.engine.offset()) {
            Ok(frames) => {
                b.locked = true;
                for text in frames {
                    match apply_committed(&mut self.engine, &mut *self.store, &self.conn, text) {
                        Ok(c) => b.caught.push(c),
                        Err(f) => {
                            b.failed = Some(f);
                            break;
                        }
                    }
                }
                b.engine_moved = !b.caught.is_empty();
            }
            Err(e) => b.down = Some(e),
        }
    }

    /// Phase "execute and append": one command, validated by the engine, its events
    /// appended in the batch's transaction.
    fn execute(&mut self, b: &mut Batch, cmd: Command) {
        let stamp = self.clock.now();
        let refused = b.refusal();
        let (from, result) = match (cmd, refused) {
            (Command::Execute { staff, req, conn, .. }, Some(why)) => {
                (Source::Conn(req, conn), Err(unavailable(&staff, &why)))
            }
            (Command::Service { reply, .. }, Some(why)) => {
                (Source::Service(reply), Err(unavailable(&StaffId::system(), &why)))
            }
            (
                Command::Execute {
                    staff,
                    req,
                    write,
                    conn,
                },
                None,
            ) => {
                let result = self
                    .engine
                    .execute(&staff, write.request(), stamp, &SqlLookup(&self.conn));
                (Source::Conn(req, conn), result)
            }
            (Command::Service { write, reply }, None) => {
                let lookup = SqlLookup(&self.conn);
                let result = match &write {
                    ServiceWrite::AsStaff(staff, write) => {
                        self.engine.execute(staff, write.request(), stamp, &lookup)
                    }
                    ServiceWrite::Service(request) => self.engine.execute_service(request, stamp, &lookup),
                };
                (Source::Service(reply), result)
            }
            // Acknowledged in batch order, at the offset reached so far.
            (Command::Offset { req, conn }, _) => {
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
            (Command::WebhookSettled(s), _) => {
                if b.failed.is_none()
                    && let Err(e) = crate::webhooks::settle(&self.conn, s.id, &s.result)
                {
                    b.failed = Some(StoreFailed::sqlite(&e));
                }
                b.settled.push(s.reply);
                return;
            }
            (other, _) => unreachable!("not a write: {other:?}"),
        };
        let mut frames = Vec::new();
        if let Ok(outcome) = &result {
            b.engine_moved |= !outcome.applied.is_empty();
            for a in &outcome.applied {
                let text = encode(&a.event);
                if b.failed.is_none()
                    && let Err(e) = self.store.append(&self.conn, &a.event, &text)
                {
                    // The engine has moved on: the whole batch is taken back.
                    b.failed = Some(StoreFailed::any(&e));
                }
                frames.push(Frame::from(text));
            }
        }
        b.writes.push((from, result, frames));
    }

    /// Phase "commit": the cluster's log first (with the frames deletions rewrote), the
    /// webhook outbox, then this node's transaction, then "publish". Returns the read
    /// positions newcomers are sent. On an error the caller rolls the transaction back.
    fn commit(&mut self, b: &mut Batch) -> Result<tally_shared::engine::Addressed, NotCommitted> {
        let redacted = if b.failed.is_none() && b.through_the_log() {
            redacted_by(&self.conn, b.created()).unwrap_or_else(|f| {
                b.failed = Some(f);
                Vec::new()
            })
        } else {
            Vec::new()
        };
        if let Some(failure) = b.failed.take() {
            if b.locked {
                self.order.abort();
            }
            return Err(NotCommitted::Storage {
                failure,
                committed_elsewhere: false,
            });
        }
        if b.through_the_log() {
            let mine: Vec<(Offset, &str)> = b
                .writes
                .iter()
                .filter_map(|w| w.1.as_ref().ok().map(|o| (o, &w.2)))
                .flat_map(|(o, frames)| o.applied.iter().zip(frames))
                .map(|(a, f)| (a.event.offset, &**f))
                .collect();
            if let Err(e) = self.order.commit(&mine, &redacted) {
                return Err(NotCommitted::Unknown(e));
            }
        }
        // From here a failure may leave the events in a cluster's log: the batch is taken
        // back by a rebuild there.
        let committed_elsewhere = b.through_the_log() && self.bell.is_some();
        let created: Vec<&Applied> = b.created().collect();
        // Webhooks: the node that wrote an event queues its deliveries (not every replica).
        let queued = crate::webhooks::enqueue_created(&self.hooks, &self.conn, &created).map_err(|e| {
            NotCommitted::Storage {
                failure: StoreFailed::sqlite(&e),
                committed_elsewhere,
            }
        })?;
        let (seen_now, moved) = self.engine.seen_changes(
            b.caught
                .iter()
                .map(|(a, _)| a)
                .chain(created)
                .map(|a| &a.event.event),
        );
        if b.appended() == 0 && b.settled.is_empty() && b.caught.is_empty() {
            rollback(&self.conn);
            self.file_seen_moves(moved);
            return Ok(seen_now);
        }
        if let Err(e) = self.store.commit(&self.conn) {
            return Err(NotCommitted::Storage {
                failure: StoreFailed::sqlite(&e),
                committed_elsewhere,
            });
        }
        self.file_seen_moves(moved);
        self.publish(b, queued);
        Ok(seen_now)
    }

    /// Phase "publish": the batch is stored; the other nodes are rung, the delivery task
    /// woken, settled deliveries answered, and the metrics count it.
    fn publish(&mut self, b: &mut Batch, queued: usize) {
        let appended = b.appended();
        if appended > 0 {
            self.health.written();
        }
        if let Some(bell) = &self.bell {
            if appended > 0 {
                let rung = b.writes.iter().flat_map(|w| w.2.iter().cloned()).collect();
                bell.committed(self.engine.offset(), rung);
            } else if !b.caught.is_empty() {
                bell.reached(self.engine.offset());
            }
        }
        self.metrics
            .events_caught_up
            .fetch_add(b.caught.len() as u64, Relaxed);
        if queued > 0
            && let Some(wake) = &self.wake
        {
            wake.notify_one();
        }
        for reply in b.settled.drain(..) {
            let _ = reply.send(());
        }
        if appended > 0 {
            self.metrics.commit_batch.observe(b.writes.len() as u64);
            self.metrics
                .commit_latency_us
                .observe(b.started.elapsed().as_micros() as u64);
            self.metrics.events_appended.fetch_add(appended as u64, Relaxed);
        }
    }

    /// Phase "fan out": what was caught up on, then the batch's own events, in log order.
    fn fan_out_batch(&mut self, b: &mut Batch) {
        for (applied, frame) in std::mem::take(&mut b.caught) {
            self.fan_out(&applied, frame);
        }
        for (_, result, frames) in &mut b.writes {
            if let Ok(outcome) = &result {
                for (applied, frame) in outcome.applied.iter().zip(std::mem::take(frames)) {
                    self.fan_out(applied, frame);
                }
            }
        }
    }

    /// Phase "answer": each write's acknowledgement or refusal, in batch order.
    fn answer(&mut self, writes: Vec<Written>) {
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
    }

    /// Answers a batch that could not open its transaction: writes refused, the rest served.
    fn refuse_batch(&mut self, work: Vec<Command>, reads: Vec<Command>, why: &Down) -> Option<Reply<()>> {
        for cmd in work {
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
                other => unreachable!("not a write: {other:?}"),
            }
        }
        self.after_writes(reads)
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
        writes: Vec<Written>,
        settled: Vec<Reply<()>>,
        reads: Vec<Command>,
    ) -> Option<Reply<()>> {
        let why = f.down();
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
    fn refuse_unavailable(&mut self, writes: Vec<Written>, e: Down) {
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

    /// Sends an event to its recipients and the counts it changed to theirs, and keeps it
    /// for resuming clients.
    pub(super) fn fan_out(&mut self, applied: &Applied, frame: Frame) {
        let at = self.clock.now();
        self.reminders.counts_changed(&applied.changes, at);
        let mut out = 0;
        for key in &applied.recipients {
            out += self.hub.send(*key, &frame, &self.metrics);
        }
        self.introduce(&applied.event.event);
        let updates = unread_updates(applied, |key| self.hub.count(key) > 0);
        for (key, update) in &updates {
            if let super::Update::Sent(frame) = update {
                out += self.hub.send(*key, frame, &self.metrics);
            }
        }
        self.metrics.frames_out.fetch_add(out, Relaxed);
        let recipients = applied.recipients.clone();
        self.resume
            .push(applied.event.offset, frame, recipients, updates, &self.metrics);
    }
}
