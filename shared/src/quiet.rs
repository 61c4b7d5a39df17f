//! Quiet hours and snooze: when a person does not want to be disturbed. A do-not-disturb
//! schedule (days and hours in their own time zone) and a snooze (until a moment), stored on
//! the relay as that person's preference so every tab and device obeys them. While quiet, no
//! desktop notification and no sound (unless a mention may break through), `unread_reminder`
//! webhooks wait, and the others see "do not disturb". Counts and badges never change for it.
//!
//! The rule is here; what time it is in a time zone is the caller's (the relay reads the time
//! zone database, the browser asks `Intl`).

use serde::{Deserialize, Serialize};

use crate::ids::Millis;

/// The longest snooze (a week): longer is a schedule, or turning notifications off.
pub const SNOOZE_MAX_MS: u64 = 7 * 24 * 3600 * 1000;
/// The longest time zone name (IANA names are at most about 30 characters).
pub const ZONE_MAX_CHARS: usize = 64;
const DAY_MINUTES: u16 = 24 * 60;

/// A person's quiet settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quiet {
    /// A do-not-disturb schedule, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Snoozed until this moment (milliseconds since the epoch), if at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snooze_until: Option<Millis>,
    /// A mention of me notifies even while quiet.
    #[serde(default)]
    pub mentions_break_through: bool,
}

/// Quiet every chosen day from `from` to `to`, local time in `zone`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The days a quiet period starts on: bit 0 is Monday … bit 6 Sunday.
    pub days: u8,
    /// Its start, in minutes after local midnight (0–1439).
    pub from: u16,
    /// Its end, in minutes after local midnight (0–1439). At or before `from`, it ends the
    /// next day (22:00–07:00); equal to `from`, it lasts 24 hours.
    pub to: u16,
    /// The IANA time zone the hours are in (`Europe/Berlin`).
    pub zone: String,
}

/// A local time: the weekday (0 Monday … 6 Sunday) and the minute of the day (0–1439).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    /// 0 Monday … 6 Sunday.
    pub weekday: u8,
    /// 0–1439.
    pub minute: u16,
}

impl Schedule {
    /// Whether the schedule is quiet at local time `t`.
    pub fn covers(&self, t: LocalTime) -> bool {
        let on = |day: u8| self.days & (1 << (day % 7)) != 0;
        let yesterday = (t.weekday + 6) % 7;
        if self.to > self.from {
            on(t.weekday) && (self.from..self.to).contains(&t.minute)
        } else {
            // Through midnight (or a whole day): from `from` today, or until `to` from a
            // period that started yesterday.
            (on(t.weekday) && t.minute >= self.from) || (on(yesterday) && t.minute < self.to)
        }
    }
}

impl Quiet {
    /// Why these settings cannot be stored, if they cannot; `now` bounds the snooze.
    pub fn check(&self, now: Millis) -> Result<(), String> {
        if let Some(s) = &self.schedule {
            if s.days == 0 || s.days > 0x7f {
                return Err("schedule.days: a bit per weekday (1 Monday … 64 Sunday), at least one".into());
            }
            if s.from >= DAY_MINUTES || s.to >= DAY_MINUTES {
                return Err("schedule.from and schedule.to: minutes after midnight, 0 to 1439".into());
            }
            let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+');
            if s.zone.is_empty() || s.zone.chars().count() > ZONE_MAX_CHARS || !s.zone.chars().all(ok) {
                return Err("schedule.zone: an IANA time zone name such as Europe/Berlin".into());
            }
        }
        if let Some(until) = self.snooze_until
            && until.0 > now.0.saturating_add(SNOOZE_MAX_MS)
        {
            return Err("snooze_until: at most 7 days ahead".into());
        }
        Ok(())
    }

    /// Whether quiet at `now`, whose local time in the schedule's zone is `local` (`None`
    /// when the zone is unknown: then only the snooze counts).
    pub fn is_quiet(&self, now: Millis, local: Option<LocalTime>) -> bool {
        self.snoozed(now)
            || self
                .schedule
                .as_ref()
                .zip(local)
                .is_some_and(|(s, t)| s.covers(t))
    }

    /// Whether a snooze holds at `now`.
    pub fn snoozed(&self, now: Millis) -> bool {
        self.snooze_until.is_some_and(|u| now < u)
    }

    /// Whether anything is set (a schedule or a snooze that has not ended at `now`).
    pub fn is_set(&self, now: Millis) -> bool {
        self.schedule.is_some() || self.snoozed(now)
    }

    /// Whether a notification for a message may show now: never while quiet, but a mention
    /// of me may break through if I said so.
    pub fn lets_through(&self, quiet: bool, mentions_me: bool) -> bool {
        !quiet || (mentions_me && self.mentions_break_through)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(weekday: u8, h: u16, m: u16) -> LocalTime {
        LocalTime {
            weekday,
            minute: h * 60 + m,
        }
    }

    fn nights(days: u8) -> Schedule {
        Schedule {
            days,
            from: 22 * 60,
            to: 7 * 60,
            zone: "Europe/Berlin".into(),
        }
    }

    #[test]
    fn a_night_schedule_runs_through_midnight_into_the_next_day() {
        // Monday to Friday nights.
        let s = nights(0b001_1111);
        assert!(s.covers(at(0, 22, 0)), "Monday 22:00");
        assert!(s.covers(at(1, 6, 59)), "Tuesday 06:59, from Monday night");
        assert!(!s.covers(at(1, 7, 0)), "Tuesday 07:00 ends it");
        assert!(!s.covers(at(0, 21, 59)));
        assert!(s.covers(at(5, 3, 0)), "Saturday 03:00, from Friday night");
        assert!(!s.covers(at(5, 22, 30)), "Saturday night is not chosen");
        assert!(!s.covers(at(0, 3, 0)), "Monday 03:00 would be Sunday night's");
    }

    #[test]
    fn a_day_schedule_and_a_whole_day() {
        let lunch = Schedule {
            days: 0b111_1111,
            from: 12 * 60,
            to: 13 * 60,
            zone: "UTC".into(),
        };
        assert!(lunch.covers(at(6, 12, 0)));
        assert!(!lunch.covers(at(6, 13, 0)));
        let sundays = Schedule {
            days: 1 << 6,
            from: 0,
            to: 0,
            zone: "UTC".into(),
        };
        assert!(sundays.covers(at(6, 0, 0)) && sundays.covers(at(6, 23, 59)));
        assert!(!sundays.covers(at(0, 0, 0)) && !sundays.covers(at(5, 23, 59)));
    }

    #[test]
    fn a_snooze_holds_until_its_moment_and_mentions_break_through_only_if_chosen() {
        let mut q = Quiet {
            snooze_until: Some(Millis(1_000)),
            ..Quiet::default()
        };
        assert!(q.is_quiet(Millis(999), None));
        assert!(!q.is_quiet(Millis(1_000), None));
        assert!(!q.lets_through(true, true));
        q.mentions_break_through = true;
        assert!(q.lets_through(true, true) && !q.lets_through(true, false));
        assert!(q.lets_through(false, false));
    }

    #[test]
    fn settings_out_of_bounds_are_refused() {
        let now = Millis(1_000);
        let mut q = Quiet {
            schedule: Some(nights(0)),
            ..Quiet::default()
        };
        assert!(q.check(now).is_err(), "no day");
        q.schedule = Some(nights(0x80));
        assert!(q.check(now).is_err());
        q.schedule = Some(Schedule {
            to: 1440,
            ..nights(1)
        });
        assert!(q.check(now).is_err());
        q.schedule = Some(Schedule {
            zone: "Europe/Berlin; drop".into(),
            ..nights(1)
        });
        assert!(q.check(now).is_err());
        q.schedule = Some(nights(0x7f));
        assert!(q.check(now).is_ok());
        q.snooze_until = Some(Millis(now.0 + SNOOZE_MAX_MS));
        assert!(q.check(now).is_ok(), "a week exactly");
        q.snooze_until = Some(Millis(now.0 + SNOOZE_MAX_MS + 1));
        assert!(q.check(now).is_err());
    }
}
