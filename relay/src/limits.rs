//! Abuse limits: token buckets per staff member (writes, read marks), per address (connection
//! attempts), and a cap on each staff member's open connections. All configurable.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tally_shared::Request;

/// The limits, as the command line sets them.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Writes (sends, edits, deletes, creates, mutes, snapshots) per second per staff member.
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            writes_per_sec: 10.0,
            write_burst: 40.0,
            reads_per_sec: 20.0,
            read_burst: 100.0,
            connects_per_sec: 2.0,
            connect_burst: 30.0,
            connections_per_staff: 16,
        }
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
        }
    }
}

/// What a request costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A read mark or ping.
    Read,
    /// Anything that writes (or costs like a write, such as a snapshot).
    Write,
}

/// Classifies a request.
pub fn kind_of(request: &Request) -> Kind {
    match request {
        Request::MarkRead { .. }
        | Request::MarkConversationRead { .. }
        | Request::MarkAllRead
        | Request::MarkUnread { .. }
        | Request::Ping => Kind::Read,
        _ => Kind::Write,
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

#[cfg(test)]
mod tests {
    use super::*;

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
