//! Service keys: what the work app's backend presents to the service API (never a staff
//! token). Made by `tally-relay service-key create NAME`, shown once, stored as their SHA-256
//! (a key is 256 random bits, so a plain hash is as good as a slow one), revoked by name. The
//! relay looks each presented key up in the database, so a revocation takes effect at once.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

/// What every key starts with (so a leaked one is recognisable, say by a secret scanner).
pub const PREFIX: &str = "tally_sk_";

/// A key's name: 1 to 64 of `a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    anyhow::ensure!(ok, "a key's name is 1 to 64 of a-z, 0-9, '.', '_', '-'");
    Ok(())
}

pub(crate) fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Makes a key named `name` (which must be new, or revoked: the new key replaces it); the key,
/// which is stored nowhere.
pub fn create(conn: &Connection, name: &str) -> anyhow::Result<String> {
    check_name(name)?;
    let key = format!("{PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
    let changed = conn.execute(
        "INSERT INTO service_keys (name, hash, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at,
            revoked_at = NULL
         WHERE revoked_at IS NOT NULL",
        params![name, hash(&key), now_ms()],
    )?;
    anyhow::ensure!(
        changed == 1,
        "a key named {name} exists (revoke it first to replace it)"
    );
    Ok(key)
}

/// Revokes a key; false if there is no live key by that name.
pub fn revoke(conn: &Connection, name: &str) -> anyhow::Result<bool> {
    let changed = conn.execute(
        "UPDATE service_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        params![name, now_ms()],
    )?;
    Ok(changed == 1)
}

/// Every key: its name, when it was made, and when it was revoked (milliseconds).
pub fn list(conn: &Connection) -> anyhow::Result<Vec<(String, i64, Option<i64>)>> {
    let mut stmt = conn.prepare("SELECT name, created_at, revoked_at FROM service_keys ORDER BY name")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The name of the live key `presented` is, if it is one.
pub fn find(conn: &Connection, presented: &str) -> rusqlite::Result<Option<String>> {
    if !presented.starts_with(PREFIX) {
        return Ok(None);
    }
    conn.prepare_cached("SELECT name FROM service_keys WHERE hash = ?1 AND revoked_at IS NULL")?
        .query_row([hash(presented)], |r| r.get(0))
        .optional()
}

/// Failed attempts allowed per address: a burst, then this many per second. Past it, a key
/// that was never seen valid is refused (429) without being looked up, so forging keys costs
/// the relay nothing; a key seen valid is still looked up, so an attacker sharing the work
/// app's address cannot lock its real key out.
pub const FAILURES_PER_SEC: f64 = 1.0;
/// The burst of failed attempts per address.
pub const FAILURE_BURST: f64 = 20.0;
/// Keys remembered as seen valid (their hashes); more are forgotten, oldest first.
const KNOWN_MAX: usize = 1024;

/// Failed attempts per address, and the keys seen valid since the relay started.
#[derive(Debug, Default)]
pub struct Attempts {
    failures: crate::limits::Buckets<std::net::IpAddr>,
    known: std::sync::Mutex<std::collections::VecDeque<String>>,
}

impl Attempts {
    /// Whether `presented` should be looked up from `ip`: a key seen valid always is; another
    /// only while the address has failures left. `Err`: how long until it has.
    pub fn may_try(&self, ip: std::net::IpAddr, presented: &str) -> Result<(), std::time::Duration> {
        if self.is_known(presented) {
            return Ok(());
        }
        self.failures
            .peek(&ip, FAILURES_PER_SEC, FAILURE_BURST, std::time::Instant::now())
    }

    /// Notes a failed attempt from `ip`.
    pub fn failed(&self, ip: std::net::IpAddr) {
        let _ = self
            .failures
            .take(&ip, FAILURES_PER_SEC, FAILURE_BURST, std::time::Instant::now());
    }

    /// Notes a key that was found live.
    pub fn succeeded(&self, presented: &str) {
        let h = hash(presented);
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if !known.contains(&h) {
            if known.len() >= KNOWN_MAX {
                known.pop_front();
            }
            known.push_back(h);
        }
    }

    fn is_known(&self, presented: &str) -> bool {
        let h = hash(presented);
        self.known.lock().unwrap_or_else(|p| p.into_inner()).contains(&h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_from_an_address_are_throttled_but_a_key_seen_valid_is_not() {
        let attempts = Attempts::default();
        let (attacker, other) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let real = format!("{PREFIX}{}", "a".repeat(64));
        attempts.succeeded(&real);
        for _ in 0..FAILURE_BURST as usize {
            assert!(attempts.may_try(attacker, "tally_sk_forged").is_ok());
            attempts.failed(attacker);
        }
        assert!(attempts.may_try(attacker, "tally_sk_forged").is_err());
        assert!(
            attempts.may_try(attacker, &real).is_ok(),
            "the real key from the same address"
        );
        assert!(
            attempts.may_try(other, "tally_sk_forged").is_ok(),
            "another address"
        );
    }

    #[test]
    fn a_key_is_found_until_it_is_revoked_and_a_name_is_reused_only_after() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::storage::open(dir.path(), crate::storage::Durability::Normal).unwrap();
        let key = create(&conn, "billing").unwrap();
        assert!(key.starts_with(PREFIX) && key.len() == PREFIX.len() + 64);
        assert_eq!(find(&conn, &key).unwrap().as_deref(), Some("billing"));
        assert_eq!(find(&conn, "tally_sk_nope").unwrap(), None);
        assert!(create(&conn, "billing").is_err(), "a live key is not replaced");
        let stored: String = conn
            .query_row("SELECT hash FROM service_keys", [], |r| r.get(0))
            .unwrap();
        assert!(!stored.contains(&key[PREFIX.len()..]), "stored hashed");
        assert!(revoke(&conn, "billing").unwrap());
        assert!(!revoke(&conn, "billing").unwrap());
        assert_eq!(find(&conn, &key).unwrap(), None);
        let again = create(&conn, "billing").unwrap();
        assert_eq!(find(&conn, &again).unwrap().as_deref(), Some("billing"));
        assert!(create(&conn, "Bad Name").is_err());
    }
}
