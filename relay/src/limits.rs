//! Abuse limits: token buckets per staff member (writes, read marks, snapshots, history pages,
//! uploads), an upload quota, per address (connection attempts), and a cap on each staff
//! member's open connections. All configurable.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tally_shared::{Budget, Request};

/// The limits, as the command line sets them.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Writes (sends, edits, deletes, creates, mutes) per second per staff member.
    #[arg(long, env = "TALLY_WRITES_PER_SEC", default_value_t = 10.0)]
    pub writes_per_sec: f64,
    /// Writes a staff member may make in a burst.
    #[arg(long, env = "TALLY_WRITE_BURST", default_value_t = 40.0)]
    pub write_burst: f64,
    /// Read marks and pings per second per staff member.
    #[arg(long, env = "TALLY_READS_PER_SEC", default_value_t = 20.0)]
    pub reads_per_sec: f64,
    /// Read marks a staff member may make in a burst.
    #[arg(long, env = "TALLY_READ_BURST", default_value_t = 100.0)]
    pub read_burst: f64,
    /// WebSocket connection attempts per second per client address.
    #[arg(long, env = "TALLY_CONNECTS_PER_SEC", default_value_t = 2.0)]
    pub connects_per_sec: f64,
    /// Connection attempts an address may make in a burst.
    #[arg(long, env = "TALLY_CONNECT_BURST", default_value_t = 30.0)]
    pub connect_burst: f64,
    /// Open connections per staff member (tabs and devices together).
    #[arg(long, env = "TALLY_CONNECTIONS_PER_STAFF", default_value_t = 16)]
    pub connections_per_staff: usize,
    /// `request_snapshot`s per second per staff member (a snapshot is the costliest frame).
    #[arg(long, env = "TALLY_SNAPSHOTS_PER_SEC", default_value_t = 0.2)]
    pub snapshots_per_sec: f64,
    /// Snapshots a staff member may ask for in a burst.
    #[arg(long, env = "TALLY_SNAPSHOT_BURST", default_value_t = 5.0)]
    pub snapshot_burst: f64,
    /// History pages per second per staff member.
    #[arg(long, env = "TALLY_HISTORY_PER_SEC", default_value_t = 5.0)]
    pub history_per_sec: f64,
    /// History pages a staff member may fetch in a burst.
    #[arg(long, env = "TALLY_HISTORY_BURST", default_value_t = 40.0)]
    pub history_burst: f64,
    /// Uploads per second per staff member.
    #[arg(long, env = "TALLY_UPLOADS_PER_SEC", default_value_t = 0.5)]
    pub uploads_per_sec: f64,
    /// Uploads a staff member may make in a burst.
    #[arg(long, env = "TALLY_UPLOAD_BURST", default_value_t = 10.0)]
    pub upload_burst: f64,
    /// Bytes of distinct files a staff member may upload in any 24 hours.
    #[arg(long, env = "TALLY_UPLOAD_BYTES_PER_DAY", default_value_t = UPLOAD_BYTES_PER_DAY)]
    pub upload_bytes_per_day: u64,
    /// Service API calls per second, per service key (a backend writes for many staff).
    #[arg(long, env = "TALLY_SERVICE_PER_SEC", default_value_t = 200.0)]
    pub service_per_sec: f64,
    /// Burst of service API calls per key.
    #[arg(long, env = "TALLY_SERVICE_BURST", default_value_t = 1000.0)]
    pub service_burst: f64,
    /// `typing` frames per second per staff member (a widget sends one every 3 s while typing).
    #[arg(long, env = "TALLY_TYPING_PER_SEC", default_value_t = 1.0)]
    pub typing_per_sec: f64,
    /// Burst of `typing` frames.
    #[arg(long, env = "TALLY_TYPING_BURST", default_value_t = 5.0)]
    pub typing_burst: f64,
    /// Reactions (put on or taken off) per second per staff member.
    #[arg(long, env = "TALLY_REACTIONS_PER_SEC", default_value_t = 5.0)]
    pub reactions_per_sec: f64,
    /// Burst of reactions (a few clicks in a row on a picker).
    #[arg(long, env = "TALLY_REACTION_BURST", default_value_t = 20.0)]
    pub reaction_burst: f64,
    /// Searches per second per staff member (each one reads the full-text index).
    #[arg(long, env = "TALLY_SEARCHES_PER_SEC", default_value_t = 1.0)]
    pub searches_per_sec: f64,
    /// Burst of searches (a person typing a query searches a few times in a row).
    #[arg(long, env = "TALLY_SEARCH_BURST", default_value_t = 10.0)]
    pub search_burst: f64,
}

/// The default upload quota: 256 MiB per staff member per 24 hours.
pub const UPLOAD_BYTES_PER_DAY: u64 = 256 * 1024 * 1024;

impl Default for Limits {
    /// The command line's defaults (written once, in the `#[arg]`s above; the `TALLY_*`
    /// environment variables apply here too, as they do to `serve`).
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            limits: Limits,
        }
        <Defaults as clap::Parser>::parse_from(["tally-relay"]).limits
    }
}

impl Limits {
    /// Limits so high they never bite (load tests).
    pub fn unlimited() -> Self {
        Limits {
            writes_per_sec: 1e9,
            write_burst: 1e9,
            reads_per_sec: 1e9,
            read_burst: 1e9,
            connects_per_sec: 1e9,
            connect_burst: 1e9,
            connections_per_staff: usize::MAX,
            snapshots_per_sec: 1e9,
            snapshot_burst: 1e9,
            history_per_sec: 1e9,
            history_burst: 1e9,
            uploads_per_sec: 1e9,
            upload_burst: 1e9,
            upload_bytes_per_day: u64::MAX,
            service_per_sec: 1e9,
            service_burst: 1e9,
            typing_per_sec: 1e9,
            typing_burst: 1e9,
            searches_per_sec: 1e9,
            search_burst: 1e9,
            reactions_per_sec: 1e9,
            reaction_burst: 1e9,
        }
    }

    /// The (rate per second, burst) of a kind of request.
    pub fn budget(&self, kind: Kind) -> (f64, f64) {
        match kind {
            Kind::Read => (self.reads_per_sec, self.read_burst),
            Kind::Write => (self.writes_per_sec, self.write_burst),
            Kind::Snapshot => (self.snapshots_per_sec, self.snapshot_burst),
            Kind::History => (self.history_per_sec, self.history_burst),
            Kind::Upload => (self.uploads_per_sec, self.upload_burst),
            Kind::Service => (self.service_per_sec, self.service_burst),
            Kind::Typing => (self.typing_per_sec, self.typing_burst),
            Kind::Search => (self.searches_per_sec, self.search_burst),
            Kind::React => (self.reactions_per_sec, self.reaction_burst),
        }
    }
}

/// What a request costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A read mark or ping.
    Read,
    /// Anything that writes.
    Write,
    /// A `request_snapshot`.
    Snapshot,
    /// A page of history over HTTP.
    History,
    /// An upload over HTTP.
    Upload,
    /// A service API call (keyed by the service key's name).
    Service,
    /// A `typing` frame.
    Typing,
    /// A search over HTTP.
    Search,
    /// A reaction put on or taken off.
    React,
}

/// What a WebSocket request costs: its budget, as `Request::budget` classifies it.
pub fn kind_of(request: &Request) -> Kind {
    match request.budget() {
        Budget::Write => Kind::Write,
        Budget::Read => Kind::Read,
        Budget::Snapshot => Kind::Snapshot,
        Budget::Typing => Kind::Typing,
        Budget::React => Kind::React,
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key.
#[derive(Debug)]
pub struct Buckets<K> {
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K> Default for Buckets<K> {
    fn default() -> Self {
        Buckets {
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    /// Takes one token for `key`, or says how long until one is there.
    pub fn take(&self, key: &K, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Forget keys that have refilled: they are indistinguishable from new ones.
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = map.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    /// Whether `key` has a token now (none is taken), or how long until it has.
    pub fn peek(&self, key: &K, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = map.get(key) else { return Ok(()) };
        let tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - tokens) / rate))
        }
    }

    /// Gives a token back (an attempt that turned out legitimate), up to the burst.
    pub fn refund(&self, key: &K, burst: f64) {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get_mut(key) {
            b.tokens = (b.tokens + 1.0).min(burst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_command_lines() {
        let d = Limits::default();
        assert_eq!((d.writes_per_sec, d.connections_per_staff), (10.0, 16));
        assert_eq!(d.upload_bytes_per_day, UPLOAD_BYTES_PER_DAY);
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let b = Buckets::<u8>::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.take(&1, 2.0, 3.0, t0).is_ok());
        }
        let wait = b.take(&1, 2.0, 3.0, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(500) && wait > Duration::from_millis(400));
        assert!(b.take(&1, 2.0, 3.0, t0 + Duration::from_millis(500)).is_ok());
        assert!(b.take(&2, 2.0, 3.0, t0).is_ok(), "keys are independent");
    }
}
