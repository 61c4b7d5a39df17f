//! The resume log: the newest events as they were sent, kept in memory so that a client back
//! from a short disconnect gets exactly the frames it missed rather than a snapshot.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

use tally_shared::Offset;
use tally_shared::protocol::{ServerFrame, UnreadUpdate, encode};
use tally_shared::staff_keys::StaffKey;

use crate::hub::Frame;
use crate::metrics::Metrics;

/// An `unread_updated` kept for replays: the frame that was sent (its recipient had a
/// connection here), or the checkpoint itself, encoded only if a replay needs it. Most
/// recipients of an event have no connection on a given node (they are offline, or connected
/// to another node of a cluster): encoding theirs at once was most of a node's work for the
/// events the others commit.
#[derive(Debug, Clone)]
pub(crate) enum Update {
    /// Sent as this frame.
    Sent(Frame),
    /// Not sent: encoded when replayed.
    Later(UnreadUpdate),
}

impl Update {
    /// Its frame.
    fn frame(&self) -> Frame {
        match self {
            Update::Sent(f) => f.clone(),
            Update::Later(u) => encode(&ServerFrame::UnreadUpdated(*u)).into(),
        }
    }

    /// What it holds in memory, roughly.
    fn bytes(&self) -> usize {
        match self {
            Update::Sent(f) => f.len() + 32,
            Update::Later(_) => std::mem::size_of::<UnreadUpdate>(),
        }
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

/// One event as it was fanned out: its frame, who got it, and the `unread_updated` frames it
/// caused.
struct Retained {
    offset: Offset,
    frame: Frame,
    recipients: Vec<StaffKey>,
    updates: Vec<(StaffKey, Update)>,
}

impl Retained {
    /// What it holds in memory, roughly: its frames, its recipients (and their entries in
    /// the index by staff member), its bookkeeping.
    fn bytes(&self) -> usize {
        let updates: usize = self.updates.iter().map(|(_, u)| u.bytes() + 8).sum();
        self.frame.len() + self.recipients.len() * 12 + updates + 96
    }
}

impl Retained {
    /// Everyone it concerns, each once: whether they got the event, and whether they got an
    /// `unread_updated` with it.
    fn concerned(&self) -> impl Iterator<Item = StaffKey> + '_ {
        let mut seen = rustc_hash::FxHashSet::default();
        self.recipients
            .iter()
            .chain(self.updates.iter().map(|(k, _)| k))
            .copied()
            .filter(move |k| seen.insert(*k))
    }
}

/// The newest events, bounded by a [`Retention`]; replays bounded by a [`ReplayLimit`].
///
/// Each staff member's events are indexed, so that a replay costs what that person missed, not
/// a walk through the whole retained log (100,000 events by default) with a look through each
/// event's recipients: in a reconnect storm that walk was done once per tab.
pub(super) struct ResumeLog {
    retained: VecDeque<Retained>,
    /// The number of the front of `retained` (each event pushed gets the next one).
    first: u64,
    /// For each staff member, the numbers of the retained events that concern them, in order.
    by_staff: rustc_hash::FxHashMap<StaffKey, VecDeque<u64>>,
    bytes: usize,
    retain: Retention,
    max_replay: ReplayLimit,
}

impl ResumeLog {
    pub(super) fn new(retain: Retention, max_replay: ReplayLimit) -> Self {
        ResumeLog {
            retained: VecDeque::new(),
            first: 0,
            by_staff: rustc_hash::FxHashMap::default(),
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
        self.first += self.retained.len() as u64;
        self.retained.clear();
        self.by_staff.clear();
        self.bytes = 0;
    }

    /// Keeps the event at `offset` as fanned out, dropping the oldest past the retention.
    pub(super) fn push(
        &mut self,
        offset: Offset,
        frame: Frame,
        recipients: Vec<StaffKey>,
        updates: Vec<(StaffKey, Update)>,
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
        let number = self.first + self.retained.len() as u64;
        for k in r.concerned() {
            self.by_staff.entry(k).or_default().push_back(number);
        }
        self.retained.push_back(r);
        while self.retained.len() > self.retain.events || self.bytes > self.retain.bytes {
            let Some(old) = self.retained.pop_front() else {
                break;
            };
            for k in old.concerned() {
                if let Some(numbers) = self.by_staff.get_mut(&k) {
                    numbers.pop_front();
                    if numbers.is_empty() {
                        self.by_staff.remove(&k);
                    }
                }
            }
            self.first += 1;
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
        let mine = self.by_staff.get(&key).into_iter().flatten();
        let retained = mine.map(|n| &self.retained[(n - self.first) as usize]);
        for r in retained.filter(|r| r.offset >= from) {
            let event = (r.offset > from && r.recipients.contains(&key)).then(|| r.frame.clone());
            let updates = r
                .updates
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, u)| u.frame());
            for f in event.into_iter().chain(updates) {
                bytes += f.len();
                frames.push(f);
            }
            if frames.len() > self.max_replay.frames || bytes > self.max_replay.bytes {
                return None;
            }
        }
        Some(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a replay was before the index: every retained event looked at.
    fn scanned(log: &ResumeLog, key: StaffKey, from: Offset) -> Vec<Frame> {
        let mut frames = Vec::new();
        for r in log.retained.iter().filter(|r| r.offset >= from) {
            let event = (r.offset > from && r.recipients.contains(&key)).then(|| r.frame.clone());
            let updates = r
                .updates
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, u)| u.frame());
            frames.extend(event.into_iter().chain(updates));
        }
        frames
    }

    #[test]
    fn an_indexed_replay_is_the_scan_of_the_whole_retained_log() {
        let metrics = Metrics::default();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let unlimited = ReplayLimit {
            frames: usize::MAX,
            bytes: usize::MAX,
        };
        let mut log = ResumeLog::new(
            Retention {
                events: 40,
                bytes: usize::MAX,
            },
            unlimited,
        );
        let mut keys = tally_shared::staff_keys::StaffKeys::default();
        let all: Vec<StaffKey> = (0..12)
            .map(|i| keys.intern(&tally_shared::StaffId::new(format!("s{i}")).unwrap()))
            .collect();
        let key = |n: u64| all[(n % 12) as usize];
        for offset in 1..=300u64 {
            let recipients: Vec<StaffKey> = (0..next() % 6).map(|_| key(next())).collect();
            let mut recipients = recipients;
            recipients.sort();
            recipients.dedup();
            let updates = (0..next() % 4)
                .map(|i| {
                    let update = if next() % 2 == 0 {
                        Update::Sent(Frame::from(format!("u{offset}-{i}")))
                    } else {
                        Update::Later(UnreadUpdate {
                            offset: Offset(offset),
                            conversation: tally_shared::ConversationId(i),
                            thread: None,
                            unread: 0,
                            mentions: 0,
                            total: Default::default(),
                            digest: None,
                        })
                    };
                    (key(next()), update)
                })
                .collect();
            log.push(
                Offset(offset),
                Frame::from(format!("e{offset}")),
                recipients,
                updates,
                &metrics,
            );
            if offset % 97 == 0 {
                log.clear();
            }
            for who in 0..12 {
                let from = Offset(offset.saturating_sub(next() % 45));
                let replayed = log.replay(key(who), from, Offset(offset));
                let first = log.retained.front().map(|r| r.offset);
                match replayed {
                    Some(frames) => assert_eq!(frames, scanned(&log, key(who), from), "{offset} {who}"),
                    None => assert!(
                        first.is_none_or(|f| f.0 > from.0 + 1),
                        "{offset} {who} from {from}"
                    ),
                }
            }
        }
    }
}
