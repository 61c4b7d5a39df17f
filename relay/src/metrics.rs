//! Counters and histograms, rendered in the Prometheus text format at `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tally_shared::ErrorCode;

const BATCH_BUCKETS: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, 128];
const LATENCY_BUCKETS_US: [u64; 10] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
];

/// A histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: [u64; N],
    counts: [AtomicU64; N],
    count: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: [u64; N]) -> Self {
        Histogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: u64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str, scale: f64) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", *b as f64 / scale);
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum.load(Relaxed) as f64 / scale);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Every metric the relay exports.
#[derive(Debug)]
pub struct Metrics {
    /// Open WebSocket connections.
    pub connections: AtomicU64,
    /// Client frames received.
    pub frames_in: AtomicU64,
    /// Server frames queued to connections.
    pub frames_out: AtomicU64,
    /// Events appended to the log.
    pub events_appended: AtomicU64,
    /// Events other nodes of a cluster appended, applied here.
    pub events_caught_up: AtomicU64,
    /// Storage failures (a full disk, a failed write): each refused its batch's writes.
    pub storage_failures: AtomicU64,
    /// Rings heard from other cluster nodes that asked this node to catch up.
    pub doorbell_rings: AtomicU64,
    /// Of the events caught up, those that came with a ring (not read from PostgreSQL).
    pub events_heard: AtomicU64,
    /// Messages on NATS whose seal did not open (not from a node of this cluster).
    pub nats_refused: AtomicU64,
    /// Connections closed because they could not keep up.
    pub slow_consumers: AtomicU64,
    /// Open TCP sockets (HTTP and WebSocket), until each is really closed.
    pub sockets: AtomicU64,
    /// Unauthenticated sockets closed to make room under the socket cap.
    pub sockets_evicted: AtomicU64,
    /// Sockets refused because the cap was reached by authenticated ones.
    pub sockets_refused: AtomicU64,
    /// Sockets reset because their peer did not take a close or a write in time.
    pub sockets_killed: AtomicU64,
    /// Unreferenced attachments deleted after their grace period.
    pub attachments_collected: AtomicU64,
    /// Divergences widgets reported (a count of theirs disagreed with the relay's): should stay 0.
    pub client_divergences: AtomicU64,
    /// Checkpoints written.
    pub checkpoints_written: AtomicU64,
    /// Checkpoint files found unusable at start (set aside; the log was replayed instead).
    pub checkpoints_rejected: AtomicU64,
    /// The offset of the last checkpoint written.
    pub checkpoint_offset: AtomicU64,
    /// Its size in bytes.
    pub checkpoint_bytes: AtomicU64,
    /// How long writing it took, in milliseconds.
    pub checkpoint_write_ms: AtomicU64,
    /// Heap bytes of the engine's message indexes (at start).
    pub engine_index_bytes: AtomicU64,
    /// The offset of the checkpoint the relay started from (0: none).
    pub start_checkpoint: AtomicU64,
    /// Events replayed at start (after that checkpoint).
    pub start_replayed: AtomicU64,
    /// Events in the retained resume log, and their bytes.
    pub retained_events: AtomicU64,
    /// Bytes of the retained resume log.
    pub retained_bytes: AtomicU64,
    /// Refused frames, by error code (indexed like `ErrorCode::ALL`).
    pub rejected: [AtomicU64; ErrorCode::ALL.len()],
    /// Writes per commit.
    pub commit_batch: Histogram<8>,
    /// Commit latency in microseconds.
    pub commit_latency_us: Histogram<10>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connections: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            events_appended: AtomicU64::new(0),
            events_caught_up: AtomicU64::new(0),
            storage_failures: AtomicU64::new(0),
            doorbell_rings: AtomicU64::new(0),
            events_heard: AtomicU64::new(0),
            nats_refused: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            sockets: AtomicU64::new(0),
            sockets_evicted: AtomicU64::new(0),
            sockets_refused: AtomicU64::new(0),
            sockets_killed: AtomicU64::new(0),
            attachments_collected: AtomicU64::new(0),
            client_divergences: AtomicU64::new(0),
            checkpoints_written: AtomicU64::new(0),
            checkpoints_rejected: AtomicU64::new(0),
            checkpoint_offset: AtomicU64::new(0),
            checkpoint_bytes: AtomicU64::new(0),
            checkpoint_write_ms: AtomicU64::new(0),
            engine_index_bytes: AtomicU64::new(0),
            start_checkpoint: AtomicU64::new(0),
            start_replayed: AtomicU64::new(0),
            retained_events: AtomicU64::new(0),
            retained_bytes: AtomicU64::new(0),
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            commit_batch: Histogram::new(BATCH_BUCKETS),
            commit_latency_us: Histogram::new(LATENCY_BUCKETS_US),
        }
    }
}

impl Metrics {
    /// Counts a refused frame.
    pub fn reject(&self, code: ErrorCode) {
        let i = ErrorCode::ALL.iter().position(|c| *c == code).unwrap_or(0);
        self.rejected[i].fetch_add(1, Relaxed);
    }

    // Over 80 lines: a flat list of every metric, which is easiest to check read as one.
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, kind: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        };
        counter(
            &mut out,
            "tally_connections",
            "Open WebSocket connections.",
            "gauge",
            &self.connections,
        );
        counter(
            &mut out,
            "tally_frames_in_total",
            "Client frames received.",
            "counter",
            &self.frames_in,
        );
        counter(
            &mut out,
            "tally_frames_out_total",
            "Server frames queued.",
            "counter",
            &self.frames_out,
        );
        counter(
            &mut out,
            "tally_events_appended_total",
            "Events appended to the log.",
            "counter",
            &self.events_appended,
        );
        counter(
            &mut out,
            "tally_events_caught_up_total",
            "Events other cluster nodes appended, applied here.",
            "counter",
            &self.events_caught_up,
        );
        counter(
            &mut out,
            "tally_storage_failures_total",
            "Storage failures (a full disk, a failed write), each refusing its batch's writes.",
            "counter",
            &self.storage_failures,
        );
        counter(
            &mut out,
            "tally_doorbell_rings_total",
            "Rings heard from other cluster nodes with a head past this node's.",
            "counter",
            &self.doorbell_rings,
        );
        counter(
            &mut out,
            "tally_events_heard_total",
            "Events caught up from the rings that carried them, without reading PostgreSQL.",
            "counter",
            &self.events_heard,
        );
        counter(
            &mut out,
            "tally_nats_refused_total",
            "NATS messages dropped because their seal did not open.",
            "counter",
            &self.nats_refused,
        );
        counter(
            &mut out,
            "tally_slow_consumer_disconnects_total",
            "Connections closed for not keeping up.",
            "counter",
            &self.slow_consumers,
        );
        for (name, help, kind, v) in [
            (
                "tally_sockets",
                "Open TCP sockets, HTTP and WebSocket.",
                "gauge",
                &self.sockets,
            ),
            (
                "tally_sockets_evicted_total",
                "Unauthenticated sockets closed to make room under the cap.",
                "counter",
                &self.sockets_evicted,
            ),
            (
                "tally_sockets_refused_total",
                "Sockets refused: the cap was reached by authenticated ones.",
                "counter",
                &self.sockets_refused,
            ),
            (
                "tally_sockets_killed_total",
                "Sockets reset after a write or close deadline passed.",
                "counter",
                &self.sockets_killed,
            ),
            (
                "tally_client_divergences_total",
                "Divergences widgets reported between their counts and the relay's (should stay 0).",
                "counter",
                &self.client_divergences,
            ),
            (
                "tally_attachments_collected_total",
                "Unreferenced attachments deleted after their grace period.",
                "counter",
                &self.attachments_collected,
            ),
            (
                "tally_checkpoints_written_total",
                "Checkpoints of the engine's state written.",
                "counter",
                &self.checkpoints_written,
            ),
            (
                "tally_checkpoints_rejected_total",
                "Checkpoint files found unusable at start and set aside.",
                "counter",
                &self.checkpoints_rejected,
            ),
            (
                "tally_checkpoint_offset",
                "The offset of the last checkpoint written.",
                "gauge",
                &self.checkpoint_offset,
            ),
            (
                "tally_checkpoint_bytes",
                "The size of the last checkpoint written.",
                "gauge",
                &self.checkpoint_bytes,
            ),
            (
                "tally_checkpoint_write_milliseconds",
                "How long writing the last checkpoint took.",
                "gauge",
                &self.checkpoint_write_ms,
            ),
            (
                "tally_engine_index_bytes",
                "Heap bytes of the engine's per-message indexes, measured at start.",
                "gauge",
                &self.engine_index_bytes,
            ),
            (
                "tally_start_checkpoint_offset",
                "The offset of the checkpoint this process started from (0: none, the whole log was replayed).",
                "gauge",
                &self.start_checkpoint,
            ),
            (
                "tally_start_replayed_events",
                "Events this process replayed at start, after its checkpoint.",
                "gauge",
                &self.start_replayed,
            ),
            (
                "tally_retained_events",
                "Events kept in memory for resuming clients.",
                "gauge",
                &self.retained_events,
            ),
            (
                "tally_retained_bytes",
                "Bytes of the events kept in memory for resuming clients.",
                "gauge",
                &self.retained_bytes,
            ),
        ] {
            counter(&mut out, name, help, kind, v);
        }
        let _ = writeln!(
            out,
            "# HELP tally_rejected_frames_total Refused frames by error code."
        );
        let _ = writeln!(out, "# TYPE tally_rejected_frames_total counter");
        for (code, v) in ErrorCode::ALL.iter().zip(&self.rejected) {
            let _ = writeln!(
                out,
                "tally_rejected_frames_total{{code=\"{}\"}} {}",
                code.as_str(),
                v.load(Relaxed)
            );
        }
        self.commit_batch
            .render(&mut out, "tally_commit_batch_size", "Writes per commit.", 1.0);
        self.commit_latency_us
            .render(&mut out, "tally_commit_seconds", "Commit latency.", 1e6);
        out
    }
}
