//! Quiet hours and snooze (`tally_shared::quiet`) on the relay: stored as each person's own
//! preference, told to every tab of theirs, shown to the others as "do not disturb" with their
//! presence, and holding `unread_reminder` webhooks until the quiet period ends. The relay
//! reads the local time in a person's time zone from the time zone database (bundled).

use std::sync::atomic::Ordering::Relaxed;

use tally_shared::protocol::{ErrorFrame, ServerFrame, encode};
use tally_shared::quiet::{LocalTime, Quiet};
use tally_shared::staff_keys::StaffKey;
use tally_shared::{ErrorCode, Millis, StaffId};

use super::Core;
use crate::hub::{ConnHandle, Frame};

/// The local time in `zone` at `now`; `None` for a zone the database does not know.
pub fn local_time(zone: &str, now: Millis) -> Option<LocalTime> {
    let tz = jiff::tz::TimeZone::get(zone).ok()?;
    let at = jiff::Timestamp::from_millisecond(i64::try_from(now.0).ok()?).ok()?;
    let local = tz.to_datetime(at);
    Some(LocalTime {
        weekday: local.weekday().to_monday_zero_offset() as u8,
        minute: local.hour() as u16 * 60 + local.minute() as u16,
    })
}

/// Everyone's quiet settings, and who was last announced as "do not disturb".
#[derive(Default)]
pub(super) struct QuietState {
    settings: rustc_hash::FxHashMap<StaffId, Quiet>,
    announced: rustc_hash::FxHashSet<StaffKey>,
}

impl QuietState {
    /// Someone's settings (none: the default).
    pub(super) fn of(&self, staff: &StaffId) -> Quiet {
        self.settings.get(staff).cloned().unwrap_or_default()
    }

    /// Whether someone is quiet at `now`.
    pub(super) fn is_quiet(&self, staff: &StaffId, now: Millis) -> bool {
        self.settings.get(staff).is_some_and(|q| {
            let local = q.schedule.as_ref().and_then(|s| local_time(&s.zone, now));
            q.is_quiet(now, local)
        })
    }

    /// Whether someone was last announced as "do not disturb".
    pub(super) fn announced(&self, key: StaffKey) -> bool {
        self.announced.contains(&key)
    }

    /// Notes what was announced of someone.
    pub(super) fn set_announced(&mut self, key: StaffKey, dnd: bool) {
        if dnd {
            self.announced.insert(key);
        } else {
            self.announced.remove(&key);
        }
    }

    /// Forgets what is filed by staff key (a rebuild numbers staff anew).
    pub(super) fn forget_keys(&mut self) {
        self.announced.clear();
    }

    /// Replaces everyone's settings with what storage holds; returns whose changed.
    fn replace(&mut self, all: Vec<(StaffId, Quiet)>) -> Vec<StaffId> {
        let mut next: rustc_hash::FxHashMap<StaffId, Quiet> = all.into_iter().collect();
        next.retain(|_, q| *q != Quiet::default());
        let mut changed: Vec<StaffId> = next
            .iter()
            .filter(|(id, q)| self.settings.get(*id) != Some(*q))
            .map(|(id, _)| id.clone())
            .collect();
        changed.extend(self.settings.keys().filter(|id| !next.contains_key(*id)).cloned());
        self.settings = next;
        changed
    }
}

impl Core {
    /// A `quiet` frame with someone's settings.
    pub(super) fn quiet_frame(&self, staff: &StaffId) -> Frame {
        encode(&ServerFrame::Quiet {
            quiet: self.quiet.of(staff),
        })
        .into()
    }

    /// `set_quiet`: checked, stored, acknowledged, then told to every tab of this person and,
    /// as "do not disturb", to the people they share a conversation with (at the next tick).
    pub(super) fn set_quiet(
        &mut self,
        staff: &StaffId,
        quiet: Quiet,
        req: Option<tally_shared::RequestId>,
        conn: &ConnHandle,
    ) {
        let now = self.clock.now();
        let refused = quiet.check(now).err().or_else(|| {
            let zone = &quiet.schedule.as_ref()?.zone;
            local_time(zone, now)
                .is_none()
                .then(|| format!("schedule.zone: unknown time zone {zone:?}"))
        });
        if let Some(why) = refused {
            self.metrics.reject(ErrorCode::InvalidInput);
            let e = ErrorFrame::new(req, ErrorCode::InvalidInput, why);
            self.send(conn, encode(&ServerFrame::Error(e)).into());
            return;
        }
        if let Err(e) = self.order.set_quiet(&self.conn, staff, &quiet) {
            tracing::warn!(error = %e, "quiet hours not stored");
            let e = ErrorFrame::new(
                req,
                ErrorCode::Unavailable,
                "quiet hours cannot be stored now; retry",
            );
            self.send(conn, encode(&ServerFrame::Error(e)).into());
            return;
        }
        if quiet == Quiet::default() {
            self.quiet.settings.remove(staff);
        } else {
            self.quiet.settings.insert(staff.clone(), quiet);
        }
        let ack = tally_shared::protocol::Ack {
            req,
            offset: self.engine.offset(),
            ..Default::default()
        };
        self.send(conn, encode(&ServerFrame::Ack(ack)).into());
        self.tell_quiet(staff);
    }

    /// Tells every tab of `staff` their settings, and has their presence looked at again.
    fn tell_quiet(&mut self, staff: &StaffId) {
        let Some(key) = self.engine.key(staff) else {
            return;
        };
        let frame = self.quiet_frame(staff);
        let sent = self.hub.send(key, &frame, &self.metrics);
        self.metrics.frames_out.fetch_add(sent, Relaxed);
        self.presence.touch(key);
    }

    /// Takes everyone's settings as stored (at start, and each tick: another node may have
    /// stored some), and tells those whose settings changed.
    pub(super) fn reload_quiet(&mut self, all: Vec<(StaffId, tally_shared::quiet::Quiet)>) {
        for staff in self.quiet.replace(all) {
            self.tell_quiet(&staff);
        }
    }

    /// The 1 s tick's part: anyone whose quiet period began or ended (or whose settings went
    /// away) has their presence announced again.
    pub(super) fn tick_quiet(&mut self) {
        let now = self.clock.now();
        let mut touch: Vec<StaffKey> = Vec::new();
        for staff in self.quiet.settings.keys() {
            if let Some(key) = self.engine.key(staff)
                && self.quiet.is_quiet(staff, now) != self.quiet.announced(key)
            {
                touch.push(key);
            }
        }
        // Those announced quiet whose settings went away.
        for &key in &self.quiet.announced {
            let staff = self.engine.projection().staff_id(key);
            if !self.quiet.settings.contains_key(staff) {
                touch.push(key);
            }
        }
        for key in touch {
            self.presence.touch(key);
        }
    }
}
