//! Checkpoints on disk, and the thread that writes them.
//!
//! A checkpoint is the engine's whole state at an offset ([`tally_shared::checkpoint`] says
//! what is in one and how it is checked). They live in `DATA/checkpoints/` as
//! `checkpoint-<log id>-<offset>.bin` (the log id is the database's own: a checkpoint of
//! another database is never loaded), written to a temporary file, synced, renamed into place and the
//! directory synced: a crash leaves the previous checkpoint or the new one, never half of one.
//! The newest two are kept.
//!
//! At start the newest checkpoint that opens and is not ahead of the log is loaded, and only the
//! events after it are replayed. A checkpoint that is damaged, of another format, or ahead of
//! the log (the database was restored from an older backup) is set aside as `*.rejected` with
//! the reason logged; with none left, the whole log is replayed. The relay never starts on
//! state it cannot vouch for.
//!
//! Checkpoints are written off the hot path by a follower: a thread with its own copy of the
//! engine that reads committed events from its own SQLite connection (WAL readers never block
//! the writer) and applies them, then saves a checkpoint every so many events or seconds. The
//! core thread never waits for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tally_shared::checkpoint::CheckpointError;
use tally_shared::{Engine, Offset};

use crate::metrics::Metrics;
use crate::storage;

/// Save a checkpoint once this many events were appended since the last (default).
pub const EVERY_EVENTS: u64 = 100_000;
/// Or once this long passed with any event since the last (default).
pub const EVERY: Duration = Duration::from_secs(300);

/// When checkpoints are written.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// After this many events.
    pub every_events: u64,
    /// Or after this long, if anything was appended.
    pub every: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            every_events: EVERY_EVENTS,
            every: EVERY,
        }
    }
}

/// A checkpoint is written and synced this many bytes at a time…
const WRITE_SLICE: usize = 4 << 20;
/// …with this pause between slices, for the writer's own syncs.
const SLICE_PAUSE: Duration = Duration::from_millis(5);

/// Where checkpoints live.
pub fn dir(data: &Path) -> PathBuf {
    data.join("checkpoints")
}

fn file_name(log: &str, offset: Offset) -> String {
    format!("checkpoint-{log}-{:020}.bin", offset.0)
}

/// The checkpoints of log `log` in `data`, newest first.
pub fn list(data: &Path, log: &str) -> Vec<(Offset, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir(data)) else {
        return Vec::new();
    };
    let prefix = format!("checkpoint-{log}-");
    let mut found: Vec<(Offset, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let offset = name
                .strip_prefix(prefix.as_str())?
                .strip_suffix(".bin")?
                .parse()
                .ok()?;
            Some((Offset(offset), e.path()))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found
}

/// Why a checkpoint file was not used.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// It could not be read.
    #[error("unreadable: {0}")]
    Io(#[from] std::io::Error),
    /// Its bytes are not a valid checkpoint.
    #[error("{0}")]
    Invalid(#[from] CheckpointError),
    /// It holds events the log does not have.
    #[error("it is at offset {checkpoint}, past the log's last event {log}")]
    AheadOfLog {
        /// Its offset.
        checkpoint: Offset,
        /// The log's last offset.
        log: Offset,
    },
}

/// Reads one checkpoint file into an engine.
pub fn read(path: &Path, log_head: Offset) -> Result<Engine, Unusable> {
    let bytes = std::fs::read(path)?;
    let engine = Engine::from_checkpoint(&bytes)?;
    if engine.offset() > log_head {
        return Err(Unusable::AheadOfLog {
            checkpoint: engine.offset(),
            log: log_head,
        });
    }
    Ok(engine)
}

/// The newest usable checkpoint's engine, setting aside (and logging) every unusable one
/// newer than it; `None` when there is none (the caller replays the whole log).
pub fn load_latest(data: &Path, log: &str, log_head: Offset, metrics: &Metrics) -> Option<Engine> {
    remove_partial(data);
    for (offset, path) in list(data, log) {
        let started = Instant::now();
        match read(&path, log_head) {
            Ok(engine) => {
                tracing::info!(
                    offset = offset.0,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "checkpoint loaded"
                );
                return Some(engine);
            }
            Err(why) => {
                metrics.checkpoints_rejected.fetch_add(1, Relaxed);
                tracing::warn!(file = %path.display(), error = %why, "checkpoint unusable, set aside");
                if let Err(e) = std::fs::rename(&path, path.with_extension("rejected")) {
                    // Still skipped now; tried (and refused) again at the next start.
                    tracing::warn!(file = %path.display(), error = %e, "could not set the checkpoint aside");
                }
            }
        }
    }
    tracing::info!("no usable checkpoint: replaying the whole log");
    None
}

/// Deletes what a crash during a write left behind.
fn remove_partial(data: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir(data)) {
        for e in entries.filter_map(Result::ok) {
            if e.path().extension().is_some_and(|x| x == "partial") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Deletes every checkpoint (a restored database starts from its own log).
pub fn remove_all(data: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir(data)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes a checkpoint of `engine` atomically and keeps the newest two; its path and size.
pub fn write(data: &Path, log: &str, engine: &Engine) -> anyhow::Result<(PathBuf, usize)> {
    let dir = dir(data);
    std::fs::create_dir_all(&dir)?;
    let bytes = engine.checkpoint();
    let path = dir.join(file_name(log, engine.offset()));
    let partial = path.with_extension("partial");
    if let Err(e) = write_partial(&partial, &bytes) {
        // Say, the disk is full: leave nothing behind to fill it further.
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    std::fs::rename(&partial, &path)?;
    std::fs::File::open(&dir)?.sync_all()?;
    for (_, old) in list(data, log).into_iter().skip(2) {
        let _ = std::fs::remove_file(old);
    }
    Ok((path, bytes.len()))
}

fn write_partial(partial: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    {
        // In slices, each on disk before the next: one flush of the whole file would queue the
        // writer's commit fsyncs behind tens of megabytes (it showed as p99 spikes of hundreds
        // of milliseconds on a 10M-message history).
        let mut f = std::fs::File::create(partial)?;
        for slice in bytes.chunks(WRITE_SLICE) {
            f.write_all(slice)?;
            f.sync_data()?;
            std::thread::sleep(SLICE_PAUSE);
        }
        f.sync_all()?;
    }
    Ok(())
}

/// Asks the follower to stop: it catches up, writes a last checkpoint, and answers.
pub type Stop = mpsc::Sender<mpsc::Sender<()>>;

/// Starts the follower thread on its own copy of the engine (at `saved`, the offset of the
/// checkpoint it was loaded from, or 0).
pub fn follow(
    data: PathBuf,
    log: String,
    engine: Engine,
    saved: Offset,
    policy: Policy,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Stop> {
    let conn = storage::open_reader(&data)?;
    let (stop, stopped) = mpsc::channel();
    std::thread::Builder::new()
        .name("tally-checkpoint".into())
        .spawn(move || {
            let mut f = Follower {
                data,
                log,
                engine,
                saved,
                last: Instant::now(),
                conn,
                policy,
                metrics,
            };
            f.run(&stopped);
        })?;
    Ok(stop)
}

struct Follower {
    data: PathBuf,
    log: String,
    engine: Engine,
    saved: Offset,
    last: Instant,
    conn: Connection,
    policy: Policy,
    metrics: Arc<Metrics>,
}

impl Follower {
    fn run(&mut self, stop: &mpsc::Receiver<mpsc::Sender<()>>) {
        let poll = self.policy.every.min(Duration::from_secs(1));
        loop {
            let done = match stop.recv_timeout(poll) {
                Ok(done) => Some(done),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            if let Err(e) = self.catch_up() {
                // The log cannot be followed (a hole, a frame that does not decode): write no
                // checkpoint from here on; the core and `check` will say more.
                tracing::error!(error = %e, "checkpoints stopped");
                if let Some(done) = done {
                    let _ = done.send(());
                }
                return;
            }
            let behind = self.engine.offset().0 - self.saved.0;
            let due = behind >= self.policy.every_events
                || (behind > 0 && (self.last.elapsed() >= self.policy.every || done.is_some()));
            if due {
                self.save();
            }
            if let Some(done) = done {
                let _ = done.send(());
                return;
            }
        }
    }

    fn catch_up(&mut self) -> anyhow::Result<()> {
        let mut next = self.engine.offset().next();
        let mut hole = None;
        storage::for_each_event_after(&self.conn, self.engine.offset(), |e| {
            if hole.is_some() {
                return;
            }
            if e.offset != next {
                hole = Some((next, e.offset));
                return;
            }
            next = e.offset.next();
            self.engine.apply(e);
        })?;
        if let Some((expected, got)) = hole {
            anyhow::bail!("the log jumps from offset {expected} to {got}");
        }
        Ok(())
    }

    fn save(&mut self) {
        let started = Instant::now();
        match write(&self.data, &self.log, &self.engine) {
            Ok((path, size)) => {
                let ms = started.elapsed().as_millis() as u64;
                self.saved = self.engine.offset();
                self.last = Instant::now();
                self.metrics.checkpoints_written.fetch_add(1, Relaxed);
                self.metrics.checkpoint_offset.store(self.saved.0, Relaxed);
                self.metrics.checkpoint_bytes.store(size as u64, Relaxed);
                self.metrics.checkpoint_write_ms.store(ms, Relaxed);
                tracing::info!(file = %path.display(), bytes = size, elapsed_ms = ms, "checkpoint written");
            }
            Err(e) => {
                // Nothing is lost: the log has everything; the next start replays more of it.
                tracing::warn!(error = %e, "writing a checkpoint failed; will retry");
                self.last = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_logs_checkpoints_are_listed_newest_first() {
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir(data.path())).unwrap();
        for name in [
            file_name("aaaa", Offset(5)),
            file_name("aaaa", Offset(12)),
            file_name("bbbb", Offset(99)),
            "checkpoint-aaaa-00000000000000000007.partial".into(),
            "notes.txt".into(),
        ] {
            std::fs::write(dir(data.path()).join(name), b"x").unwrap();
        }
        let found: Vec<Offset> = list(data.path(), "aaaa").into_iter().map(|(o, _)| o).collect();
        assert_eq!(found, vec![Offset(12), Offset(5)]);
        assert_eq!(list(data.path(), "cccc"), Vec::new());
    }
}
