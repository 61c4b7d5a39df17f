//! The cluster's side of the core: events other nodes committed, heard in their rings or read
//! from PostgreSQL, applied to this node's replica in order; and a rebuild from this node's
//! checkpoints when a commit's outcome is unknown.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use tally_shared::engine::Applied;
use tally_shared::{AttachmentId, Engine, Offset, StaffId};

use rusqlite::Connection;

use super::health::StoreFailed;
use super::store::{LogStore, rollback};
use super::{Command, Core, ServiceWrite};
use crate::hub::Frame;
use crate::storage;
use tally_shared::protocol::close;

impl Core {
    /// Fetches an upload another node of a cluster shared, unless this node has it (for
    /// `uploader`, when given). Nothing to do on a single node.
    pub(super) fn fetch_upload(&mut self, id: &AttachmentId, uploader: Option<&StaffId>) {
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
    pub(super) fn fetch_uploads_of(&mut self, batch: &[Command]) {
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
    pub(super) fn catch_up(&mut self) {
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
    pub(super) fn heard_committed(&mut self, rings: Vec<(u64, Vec<String>)>) {
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
    pub(super) fn apply_others(&mut self, events: Vec<(tally_shared::LoggedEvent, String)>) {
        if let Err(e) = self.store.begin(&self.conn) {
            return self.storage_failed(StoreFailed::sqlite(&e));
        }
        let mut caught = Vec::with_capacity(events.len());
        let mut failed = None;
        for (event, text) in events {
            match apply_event(&mut self.engine, &mut *self.store, &self.conn, event, text) {
                Ok(c) => caught.push(c),
                Err(f) => {
                    failed = Some(f);
                    break;
                }
            }
        }
        let failed = match failed {
            Some(f) => Some(f),
            None => self
                .store
                .commit(&self.conn)
                .err()
                .map(|e| StoreFailed::sqlite(&e)),
        };
        if failed.is_some() {
            rollback(&self.conn);
        }
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
        self.file_seen_moves(moved);
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
    pub(super) fn rebuild(&mut self) {
        std::mem::take(&mut self.hub).close_all(close::GOING_AWAY);
        self.resume.clear();
        self.presence.forget_keys();
        self.quiet.forget_keys();
        self.reminders.forget_keys();
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
    pub(super) fn reload_engine(&mut self) -> Result<bool, StoreFailed> {
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
}

/// Applies one event another node committed (as stored) to the engine and this node's
/// replica, inside `tx`; the caller fans it out after the commit.
pub(super) fn apply_committed(
    engine: &mut Engine,
    store: &mut dyn LogStore,
    conn: &Connection,
    text: String,
) -> Result<(Applied, Frame), StoreFailed> {
    let event = parse_committed(&text)?;
    apply_event(engine, store, conn, event, text)
}

/// An event of the shared log (which this relay wrote: one that does not parse is fatal).
pub(super) fn parse_committed(text: &str) -> Result<tally_shared::LoggedEvent, StoreFailed> {
    serde_json::from_str(text)
        .map_err(|e| StoreFailed::fatal(format!("an event in the shared log does not parse: {e}")))
}

/// Applies and stores `event` (encoded as `text`), which must follow the engine's offset.
fn apply_event(
    engine: &mut Engine,
    store: &mut dyn LogStore,
    conn: &Connection,
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
    store
        .append(conn, &event, &text)
        .map_err(|e| StoreFailed::any(&e))?;
    Ok((engine.apply(event), Frame::from(text)))
}

/// The earlier frames the deletions among `applied` rewrote in `tx` (see
/// `storage::redacted_frames`).
pub(super) fn redacted_by<'a>(
    tx: &Connection,
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
