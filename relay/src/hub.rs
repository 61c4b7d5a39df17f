//! Who receives what: each staff member's open connections, each with a queue bounded in frames
//! and in bytes. A connection whose queue is full is closed as a slow consumer (it resumes from
//! its offset), so one stalled client never grows memory or slows anyone else. A connection
//! stays registered, and counts against its staff member's cap, until its socket is closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

pub use tokio_tungstenite::tungstenite::Utf8Bytes as Frame;

use rustc_hash::FxHashMap;
use tally_shared::staff_keys::StaffKey;
use tokio::sync::{Notify, mpsc};

use crate::metrics::Metrics;
use tally_shared::protocol::close;

/// Frames queued per connection before it counts as a slow consumer.
pub const QUEUE_FRAMES: usize = 1024;
/// Bytes queued per connection before it counts as a slow consumer (a single larger frame is
/// still queued when the queue is empty; a snapshot is held beside the queue, see
/// [`ConnHandle::admit_snapshot`]).
pub const QUEUE_BYTES: usize = 1024 * 1024;

/// What a connection's writer sends.
#[derive(Debug)]
pub enum Outbound {
    /// A JSON text frame. A [`Frame`] is reference-counted bytes: an event is encoded once and
    /// the same buffer is queued to, and written to the socket of, every recipient.
    Text(Frame),
    /// A frame still being built elsewhere (a snapshot): the writer waits for it, and frames
    /// queued after it stay behind it.
    Later(tokio::sync::oneshot::Receiver<Built>),
}

/// A frame built for a placeholder, with where its bytes were counted.
#[derive(Debug)]
pub struct Built {
    /// The frame.
    pub frame: Frame,
    /// Held beside the queue (the connection's one snapshot), not in its byte budget.
    pub aside: bool,
}

/// Tells a connection's tasks to close the socket with a code.
#[derive(Debug, Default)]
pub struct Closer {
    code: AtomicU16,
    notify: Notify,
}

impl Closer {
    /// Asks the connection to close with `code` (the first code asked for wins).
    pub fn close(&self, code: u16) {
        if self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.notify.notify_waiters();
            self.notify.notify_one();
        }
    }

    /// The code asked for, if any.
    pub fn code(&self) -> Option<u16> {
        match self.code.load(Ordering::Acquire) {
            0 => None,
            c => Some(c),
        }
    }

    /// Waits until a close is asked for.
    pub async fn closed(&self) -> u16 {
        loop {
            let notified = self.notify.notified();
            if let Some(code) = self.code() {
                return code;
            }
            notified.await;
        }
    }
}

/// The bytes a connection has queued and not yet handed to its socket.
#[derive(Debug)]
pub struct Queued {
    bytes: AtomicUsize,
    max: usize,
    /// The bytes of the one snapshot held beside the queue (0: none).
    snapshot: AtomicUsize,
}

impl Queued {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Self {
        Queued {
            bytes: AtomicUsize::new(0),
            max,
            snapshot: AtomicUsize::new(0),
        }
    }

    /// Reserves room for `len` bytes, or says the queue is full. An empty queue takes any
    /// frame, so a frame larger than the budget is still deliverable to a client that reads.
    fn reserve(&self, len: usize) -> bool {
        let before = self.bytes.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > self.max {
            self.bytes.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Gives back the room of a frame that was written (or dropped).
    pub fn release(&self, len: usize) {
        self.bytes.fetch_sub(len, Ordering::AcqRel);
    }

    /// Gives back the room of a built frame, wherever it was counted.
    pub fn release_built(&self, built: &Built) {
        if built.aside {
            self.snapshot.store(0, Ordering::Release);
        } else {
            self.release(built.frame.len());
        }
    }

    /// Bytes queued, and the snapshot held beside them.
    pub fn held(&self) -> (usize, usize) {
        (
            self.bytes.load(Ordering::Acquire),
            self.snapshot.load(Ordering::Acquire),
        )
    }
}

/// One connection, as the hub knows it.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    /// Unique per process.
    pub id: u64,
    /// Its queue.
    pub tx: mpsc::Sender<Outbound>,
    /// The bytes in its queue.
    pub queued: Arc<Queued>,
    /// Its close signal.
    pub closer: Arc<Closer>,
}

impl ConnHandle {
    /// Queues a frame; a queue full in frames or bytes closes the connection as a slow
    /// consumer. False if the frame was not queued.
    pub fn send(&self, frame: &Frame, metrics: &Metrics) -> bool {
        if self.closer.code().is_some() {
            return false;
        }
        if !self.queued.reserve(frame.len()) {
            self.slow(metrics);
            return false;
        }
        match self.tx.try_send(Outbound::Text(frame.clone())) {
            Ok(()) => true,
            Err(e) => {
                self.queued.release(frame.len());
                if let mpsc::error::TrySendError::Full(_) = e {
                    self.slow(metrics);
                }
                false
            }
        }
    }

    /// Counts a snapshot built for a placeholder. A connection holds one snapshot beside its
    /// queue, whatever its size (a snapshot is bounded by its own budgets, and frames queued
    /// behind it while it was built must not make it "too slow" before it has read anything);
    /// a second one, asked for before the first was written, counts against the queue's bytes
    /// like any frame, and a queue over its budget closes the connection as a slow consumer.
    /// `None`: drop the frame.
    pub fn admit_snapshot(&self, frame: Frame, metrics: &Metrics) -> Option<Built> {
        if self.closer.code().is_some() {
            return None;
        }
        let len = frame.len().max(1);
        let aside = self
            .queued
            .snapshot
            .compare_exchange(0, len, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !aside && !self.queued.reserve(frame.len()) {
            self.slow(metrics);
            return None;
        }
        Some(Built { frame, aside })
    }

    /// Queues a placeholder for a frame built elsewhere; false (and the connection closed as a
    /// slow consumer when its queue is full) if it was not queued.
    pub fn send_later(&self, frame: tokio::sync::oneshot::Receiver<Built>, metrics: &Metrics) -> bool {
        if self.closer.code().is_some() {
            return false;
        }
        match self.tx.try_send(Outbound::Later(frame)) {
            Ok(()) => true,
            Err(e) => {
                if let mpsc::error::TrySendError::Full(_) = e {
                    self.slow(metrics);
                }
                false
            }
        }
    }

    fn slow(&self, metrics: &Metrics) {
        if self.closer.code().is_none() {
            metrics.slow_consumers.fetch_add(1, Ordering::Relaxed);
        }
        self.closer.close(close::SLOW_CONSUMER);
    }
}

/// Every open connection, by staff member, and which of them are visible tabs.
#[derive(Debug, Default)]
pub struct Hub {
    by_staff: FxHashMap<StaffKey, Vec<ConnHandle>>,
    /// Connections whose tab is hidden (a connection starts visible).
    hidden: rustc_hash::FxHashSet<u64>,
}

impl Hub {
    /// Adds a connection.
    pub fn register(&mut self, staff: StaffKey, conn: ConnHandle) {
        self.by_staff.entry(staff).or_default().push(conn);
    }

    /// Notes whether a connection's tab is visible.
    pub fn set_visible(&mut self, id: u64, visible: bool) {
        if visible {
            self.hidden.remove(&id);
        } else {
            self.hidden.insert(id);
        }
    }

    /// A staff member's presence: online with a visible tab, away with hidden ones only.
    pub fn presence(&self, staff: StaffKey) -> tally_shared::protocol::Presence {
        use tally_shared::protocol::Presence;
        match self.by_staff.get(&staff) {
            None => Presence::Offline,
            Some(conns) if conns.iter().any(|c| !self.hidden.contains(&c.id)) => Presence::Online,
            Some(_) => Presence::Away,
        }
    }

    /// Everyone with a connection open here.
    pub fn staff(&self) -> impl Iterator<Item = StaffKey> + '_ {
        self.by_staff.keys().copied()
    }

    /// Removes a connection.
    pub fn unregister(&mut self, staff: StaffKey, id: u64) {
        self.hidden.remove(&id);
        if let Some(conns) = self.by_staff.get_mut(&staff) {
            conns.retain(|c| c.id != id);
            if conns.is_empty() {
                self.by_staff.remove(&staff);
            }
        }
    }

    /// How many connections a staff member has open.
    pub fn count(&self, staff: StaffKey) -> usize {
        self.by_staff.get(&staff).map_or(0, Vec::len)
    }

    /// Queues a frame to every open connection of a staff member; the number queued to.
    /// Closing connections stay registered (and counted) until their socket is gone.
    pub fn send(&self, staff: StaffKey, frame: &Frame, metrics: &Metrics) -> u64 {
        self.by_staff.get(&staff).map_or(0, |conns| {
            conns.iter().filter(|c| c.send(frame, metrics)).count() as u64
        })
    }

    /// Closes every connection of a staff member.
    pub fn close_staff(&self, staff: StaffKey, code: u16) {
        for c in self.by_staff.get(&staff).into_iter().flatten() {
            c.closer.close(code);
        }
    }

    /// Closes every connection.
    pub fn close_all(&self, code: u16) {
        for c in self.by_staff.values().flatten() {
            c.closer.close(code);
        }
    }
}
