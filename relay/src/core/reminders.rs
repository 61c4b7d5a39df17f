//! `unread_reminder` webhooks: who has had unread messages for a while with no connection
//! open, reminded once per quiet spell (remembered in storage, so a restart does not remind
//! them again).

use std::sync::Arc;

use tally_shared::protocol::Presence;
use tally_shared::protocol::UnreadUpdate;
use tally_shared::staff_keys::StaffKey;
use tally_shared::{Engine, Millis, StaffId};

use super::Core;
use crate::storage;

/// What `unread_reminder` needs: since when each person has had unread messages, since when
/// they have had no connection open, and who was reminded in their current quiet spell (kept
/// in `reminded` too, so a restart does not remind them again).
#[derive(Default)]
pub(super) struct Reminders {
    after_ms: u64,
    started: Millis,
    unread_since: rustc_hash::FxHashMap<StaffKey, Millis>,
    quiet_since: rustc_hash::FxHashMap<StaffKey, Millis>,
    reminded: rustc_hash::FxHashSet<StaffId>,
}

impl Reminders {
    /// Counts changed at `at`: who has unread messages since when.
    pub(super) fn counts_changed(&mut self, changes: &[(StaffKey, UnreadUpdate)], at: Millis) {
        for (key, update) in changes {
            if update.total.unread > 0 {
                self.unread_since.entry(*key).or_insert(at);
            } else {
                self.unread_since.remove(key);
            }
        }
    }

    /// A quiet spell starts at `at`: no connection open (anywhere in the cluster).
    pub(super) fn quiet(&mut self, key: StaffKey, at: Millis) {
        self.quiet_since.insert(key, at);
    }

    /// Someone connected: their quiet spell is over (true when they had been reminded in it).
    pub(super) fn connected(&mut self, staff: &StaffId) -> bool {
        self.reminded.remove(staff)
    }

    /// Forgets what is filed by staff key (a rebuild numbers staff anew).
    pub(super) fn forget_keys(&mut self) {
        self.unread_since.clear();
        self.quiet_since.clear();
    }

    /// Who is due a reminder at `at`, and since when they waited: unread for long enough,
    /// offline for as long, active, and not reminded in this quiet spell.
    fn due(&self, at: Millis, offline: impl Fn(StaffKey) -> bool, engine: &Engine) -> Vec<(StaffId, Millis)> {
        let mut due = Vec::new();
        for (&key, &since) in &self.unread_since {
            let quiet = self.quiet_since.get(&key).copied().unwrap_or(self.started);
            let waited = since.max(quiet);
            if !offline(key) || at.0.saturating_sub(waited.0) < self.after_ms {
                continue;
            }
            let staff = engine.projection().staff_id(key);
            if !self.reminded.contains(staff) && engine.is_active(staff) {
                due.push((staff.clone(), waited));
            }
        }
        due
    }
}

impl Core {
    /// Turns webhooks on: loads them and who was reminded, wakes `wake` when deliveries are
    /// queued, and reminds people after `reminder_after` of unread quiet (counting from now for
    /// those who have unread messages already).
    pub fn set_webhooks(
        &mut self,
        wake: Arc<tokio::sync::Notify>,
        reminder_after: std::time::Duration,
    ) -> anyhow::Result<()> {
        self.order.sync_webhooks(&self.conn)?;
        self.hooks = crate::webhooks::load(&self.conn)?;
        self.wake = Some(wake);
        let started = self.clock.now();
        let mut reminders = Reminders {
            after_ms: reminder_after.as_millis() as u64,
            started,
            ..Reminders::default()
        };
        reminders.reminded.extend(storage::reminded(&self.conn)?);
        for id in self.engine.keyed_staff() {
            if self.engine.projection().total(&id).unread > 0
                && let Some(key) = self.engine.key(&id)
            {
                reminders.unread_since.insert(key, started);
            }
        }
        self.reminders = reminders;
        Ok(())
    }

    /// Queues an `unread_reminder` for each person whose unread messages have waited long
    /// enough with no connection open, once per quiet spell.
    pub(super) fn remind(&mut self) {
        if self.wake.is_none()
            || !self.hooks.iter().any(|h| h.events.contains("unread_reminder"))
            || !self.order.leads_reminders()
        {
            return;
        }
        let at = self.clock.now();
        let mut due = self
            .reminders
            .due(at, |key| self.presence_of(key) == Presence::Offline, &self.engine);
        // Quiet hours and snoozes hold reminders until they end.
        due.retain(|(staff, _)| !self.quiet.is_quiet(staff, at));
        if due.is_empty() {
            return;
        }
        // Queued in one transaction; if storage fails, nobody is marked reminded, and the next
        // tick tries again.
        let (engine, hooks) = (&self.engine, &self.hooks);
        let queued = self.conn.transaction().and_then(|tx| {
            queue_reminders(engine, hooks, &tx, &due, at)?;
            tx.commit()
        });
        if let Err(e) = queued {
            tracing::warn!(error = %e, "unread reminders not queued; trying again at the next tick");
            return;
        }
        for (staff, _) in due {
            tracing::info!(staff = %staff, "unread reminder queued");
            self.reminders.reminded.insert(staff);
        }
        if let Some(wake) = &self.wake {
            wake.notify_one();
        }
    }
}

/// Queues the `unread_reminder`s of `due` in `tx`, and notes who was reminded.
fn queue_reminders(
    engine: &Engine,
    hooks: &[crate::webhooks::Hook],
    tx: &rusqlite::Transaction<'_>,
    due: &[(StaffId, Millis)],
    at: Millis,
) -> rusqlite::Result<()> {
    for (staff, since) in due {
        let conversations: Vec<_> = engine
            .conversation_states(staff)
            .into_iter()
            .filter(|c| c.counts.unread > 0 && !c.muted)
            .map(|c| {
                serde_json::json!({
                    "id": c.conversation.id,
                    "title": c.conversation.title,
                    "unread": c.counts.unread,
                    "mentions": c.counts.mentions,
                })
            })
            .collect();
        // Followed threads with unread replies, outside muted conversations (the total adds
        // them too).
        let threads: Vec<_> = engine
            .projection()
            .threads_of(staff)
            .into_iter()
            .filter(|(c, .., counts)| counts.unread > 0 && !engine.projection().is_muted(staff, *c))
            .map(|(c, root, .., counts)| {
                serde_json::json!({
                    "conversation": c,
                    "root": root,
                    "unread": counts.unread,
                    "mentions": counts.mentions,
                })
            })
            .collect();
        let data = serde_json::json!({
            "staff": staff,
            "total": engine.projection().total(staff),
            "unread_since": since,
            "conversations": conversations,
            "threads": threads,
        });
        crate::webhooks::enqueue(tx, hooks, "unread_reminder", &data, None)?;
        storage::note_reminded(tx, staff, at)?;
    }
    Ok(())
}
