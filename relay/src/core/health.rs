//! What the core does when storage fails: a failure whose outcome is known (a full disk, a
//! write refused) pauses writes and retries them later; one that leaves what is on disk
//! unknown stops the core, and a restart recovers from the log.

use std::sync::atomic::Ordering::Relaxed;

use tally_shared::engine::Rejection;
use tally_shared::{ErrorCode, Millis, StaffId};

use super::Core;
use crate::metrics::Metrics;
use crate::order::Down;
use crate::storage::Failure;

/// The first pause after a storage failure; each failure after it doubles it, up to
/// [`PAUSE_MAX_MS`].
const PAUSE_FIRST_MS: u64 = 1_000;
const PAUSE_MAX_MS: u64 = 30_000;

/// A storage failure, and what it means (`storage::Failure`).
#[derive(Debug, thiserror::Error)]
#[error("{why}")]
pub(super) struct StoreFailed {
    failure: Failure,
    why: String,
}

impl StoreFailed {
    pub(super) fn sqlite(e: &rusqlite::Error) -> Self {
        StoreFailed {
            failure: Failure::of(e),
            why: e.to_string(),
        }
    }

    pub(super) fn any(e: &anyhow::Error) -> Self {
        StoreFailed {
            failure: Failure::of_any(e),
            why: format!("{e:#}"),
        }
    }

    pub(super) fn fatal(why: String) -> Self {
        StoreFailed {
            failure: Failure::Fatal,
            why,
        }
    }

    /// What it says, for a refusal.
    pub(super) fn down(&self) -> Down {
        Down(self.why.clone())
    }
}

/// Why the core stopped on its own: storage failed so that what is on disk is unknown.
#[derive(Debug, thiserror::Error)]
#[error("storage failed: {0}")]
pub struct Stopped(pub String);

/// Writes refused for a while after a storage failure, and why.
#[derive(Debug, Clone)]
struct Paused {
    until: Millis,
    wait_ms: u64,
    why: String,
}

/// Whether storage may be written now.
#[derive(Debug, Default)]
pub(super) struct StorageHealth {
    /// Writes are refused until then, after storage failed (the disk full).
    paused: Option<Paused>,
    /// Storage failed so that what is on disk is unknown: the core stops after this batch.
    stopping: Option<String>,
}

impl StorageHealth {
    /// Storage failed at `now`. A fatal failure stops the core after this batch; any other
    /// refuses writes (as `unavailable`) for a while, 1 s then doubling up to 30 s, after which
    /// the next write tries storage again: a full disk is survived, and writing resumes by
    /// itself once there is room.
    pub(super) fn failed(&mut self, f: StoreFailed, now: Millis, metrics: &Metrics) {
        metrics.storage_failures.fetch_add(1, Relaxed);
        if f.failure == Failure::Fatal {
            tracing::error!(error = %f.why, "storage failed: stopping (a restart recovers from the log)");
            if self.stopping.is_none() {
                self.stopping = Some(f.why);
            }
            return;
        }
        let wait_ms = self
            .paused
            .as_ref()
            .map_or(PAUSE_FIRST_MS, |p| (p.wait_ms * 2).min(PAUSE_MAX_MS));
        let why = match f.failure {
            Failure::Full => format!("the disk is full ({})", f.why),
            _ => f.why,
        };
        tracing::error!(error = %why, pause_ms = wait_ms, "storage failed: writes are refused for now");
        self.paused = Some(Paused {
            until: Millis(now.0 + wait_ms),
            wait_ms,
            why,
        });
    }

    /// Why writes are refused at `now`, if they are.
    pub(super) fn writes_refused(&self, now: Millis) -> Option<Down> {
        self.paused
            .as_ref()
            .filter(|p| now < p.until)
            .map(|p| Down(format!("writes are paused: {}", p.why)))
    }

    /// A write reached storage: the pauses start again from the first.
    pub(super) fn written(&mut self) {
        self.paused = None;
    }

    /// Why the core must stop, once (storage failed so that what is on disk is unknown).
    pub(super) fn take_stop(&mut self) -> Option<String> {
        self.stopping.take()
    }
}

impl Core {
    /// Storage failed: see [`StorageHealth::failed`].
    pub(super) fn storage_failed(&mut self, f: StoreFailed) {
        let now = self.clock.now();
        self.health.failed(f, now, &self.metrics);
    }
}

/// A write refused because the source of truth cannot be reached, or storage is paused.
pub(super) fn unavailable(staff: &StaffId, why: &Down) -> Rejection {
    tracing::debug!(%staff, %why, "write refused");
    Rejection {
        code: ErrorCode::Unavailable,
        message: format!("{why}: nothing was stored; retry with the same client_id"),
    }
}
