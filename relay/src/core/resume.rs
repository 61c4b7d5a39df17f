//! The resume log: the newest events as they were sent, kept in memory so that a client back
//! from a short disconnect gets exactly the frames it missed rather than a snapshot.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

use tally_shared::Offset;
use tally_shared::staff_keys::StaffKey;

use crate::hub::Frame;
use crate::metrics::Metrics;

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

/// One event as it was fanned out: its frame, who got it, and the `unread_updated` frames it
/// caused.
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

/// The newest events, bounded by a [`Retention`]; replays bounded by a [`ReplayLimit`].
pub(super) struct ResumeLog {
    retained: VecDeque<Retained>,
    bytes: usize,
    retain: Retention,
    max_replay: ReplayLimit,
}

impl ResumeLog {
    pub(super) fn new(retain: Retention, max_replay: ReplayLimit) -> Self {
        ResumeLog {
            retained: VecDeque::new(),
            bytes: 0,
            retain,
            max_replay,
        }
    }

    /// How many of the newest events it may keep.
    pub(super) fn events(&self) -> usize {
        self.retain.events
    }

    /// Forgets everything (after a rebuild, which numbers staff anew).
    pub(super) fn clear(&mut self) {
        self.retained.clear();
        self.bytes = 0;
    }

    /// Keeps the event at `offset` as fanned out, dropping the oldest past the retention.
    pub(super) fn push(
        &mut self,
        offset: Offset,
        frame: Frame,
        recipients: Vec<StaffKey>,
        updates: Vec<(StaffKey, Frame)>,
        metrics: &Metrics,
    ) {
        if self.retain.events == 0 {
            return;
        }
        let r = Retained {
            offset,
            frame,
            recipients,
            updates,
        };
        self.bytes += r.bytes();
        self.retained.push_back(r);
        while self.retained.len() > self.retain.events || self.bytes > self.retain.bytes {
            let Some(old) = self.retained.pop_front() else {
                break;
            };
            self.bytes -= old.bytes();
        }
        metrics.retained_events.store(self.retained.len() as u64, Relaxed);
        metrics.retained_bytes.store(self.bytes as u64, Relaxed);
    }

    /// The frames a staff member missed after `from` (the log being at `current`), if the
    /// retained log still has them all and they are few enough.
    pub(super) fn replay(&self, key: StaffKey, from: Offset, current: Offset) -> Option<Vec<Frame>> {
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
}
