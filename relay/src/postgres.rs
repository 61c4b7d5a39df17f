//! A cluster's source of truth: the event log, staff and preferences in PostgreSQL.
//!
//! The order is one row, `tally_head`, locked (`FOR UPDATE`) by a node's group commit until its
//! COMMIT: under it the node reads what others appended after its own offset, applies it,
//! validates its writes with the engine, and appends at the next offsets. So offsets are global
//! and gap-free, and any committed offset implies every earlier one is committed (a reader
//! without the lock never sees a hole). Sessions run with `synchronous_commit = on`: a write is
//! acknowledged only after PostgreSQL has it on disk.
//!
//! The client is blocking ([`crate::pg`], tokio-postgres on a runtime of its own, every round
//! trip with a deadline): the core is one synchronous thread that must not interleave
//! batches, so it waits for its round trips as it waits for SQLite's fsync. When the server
//! cannot be reached the connection is dropped and tried again at most every [`RETRY`], so a
//! down database costs the core a refused connect, not a stall.

use std::time::{Duration, Instant};

use crate::pg::{self, Client};
use rusqlite::Connection;
use tally_shared::{Attachment, AttachmentId, Offset, Staff, StaffId};

use crate::order::{Down, Frames, Order, Preferences, SharedUpload};

/// Least time between two attempts to reconnect.
pub const RETRY: Duration = Duration::from_millis(250);

/// How long a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Per session: commits wait for the disk; a node that stops (or is frozen) inside its
/// transaction gives the head back after 10 s; nothing waits on a lock or a query longer.
const SESSION: &str = "SET synchronous_commit = on;
    SET idle_in_transaction_session_timeout = '10s';
    SET lock_timeout = '10s';
    SET statement_timeout = '15s';";

/// The schema; made once, under an advisory lock, by whichever node starts first.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS tally_meta (key text PRIMARY KEY, value text NOT NULL);
    CREATE TABLE IF NOT EXISTS tally_head (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        head bigint NOT NULL
    );
    INSERT INTO tally_head (one, head) VALUES (true, 0) ON CONFLICT DO NOTHING;
    CREATE TABLE IF NOT EXISTS tally_events (off bigint PRIMARY KEY, frame text NOT NULL);
    CREATE TABLE IF NOT EXISTS tally_staff (
        id text PRIMARY KEY,
        name text NOT NULL,
        active boolean NOT NULL DEFAULT true
    );
    CREATE TABLE IF NOT EXISTS tally_preferences (
        staff text PRIMARY KEY,
        hide_read_state boolean NOT NULL DEFAULT false
    );
    ALTER TABLE tally_preferences ADD COLUMN IF NOT EXISTS quiet text;
    CREATE TABLE IF NOT EXISTS tally_files (
        id text PRIMARY KEY,
        content_type text NOT NULL,
        size bigint NOT NULL,
        bytes bytea NOT NULL
    );
    CREATE TABLE IF NOT EXISTS tally_uploads (
        attachment text NOT NULL REFERENCES tally_files (id) ON DELETE CASCADE,
        staff text NOT NULL,
        name text NOT NULL,
        uploaded_at bigint NOT NULL,
        PRIMARY KEY (attachment, staff)
    );
    CREATE TABLE IF NOT EXISTS tally_service_keys (
        name text PRIMARY KEY,
        hash text NOT NULL UNIQUE,
        created_at bigint NOT NULL,
        revoked_at bigint
    );
    CREATE TABLE IF NOT EXISTS tally_webhooks (
        id bigserial PRIMARY KEY,
        url text NOT NULL,
        secret text NOT NULL,
        events text NOT NULL,
        created_at bigint NOT NULL,
        removed_at bigint
    );
    CREATE TABLE IF NOT EXISTS tally_directory (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        version bigint NOT NULL
    );
    INSERT INTO tally_directory (one, version) VALUES (true, 0) ON CONFLICT DO NOTHING;
    CREATE OR REPLACE FUNCTION tally_directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN UPDATE tally_directory SET version = version + 1; RETURN NULL; END $$;
    DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger
                WHERE tgname = 'tally_staff_changed' AND tgrelid = 'tally_staff'::regclass) THEN
            CREATE TRIGGER tally_staff_changed AFTER INSERT OR UPDATE OR DELETE ON tally_staff
                FOR EACH STATEMENT EXECUTE FUNCTION tally_directory_changed();
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_trigger
                WHERE tgname = 'tally_preferences_changed' AND tgrelid = 'tally_preferences'::regclass) THEN
            CREATE TRIGGER tally_preferences_changed AFTER INSERT OR UPDATE OR DELETE
                ON tally_preferences FOR EACH STATEMENT EXECUTE FUNCTION tally_directory_changed();
        END IF;
    END $$;
    INSERT INTO tally_meta (key, value) VALUES ('schema', '1') ON CONFLICT DO NOTHING;";

/// The session lock whose holder sends `unread_reminder`s.
const REMINDER_LOCK: i64 = 74_617_280;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A node's connection to the cluster's PostgreSQL.
pub struct Postgres {
    config: pg::Config,
    client: Option<Client>,
    /// When the last connect failed (no new attempt before `RETRY`).
    failed_at: Option<Instant>,
    /// Inside a group commit (`begin` succeeded).
    in_transaction: bool,
    /// The head `begin` saw after catching up.
    head: Offset,
    /// A connection being made again, off the core's thread.
    connecting: Option<std::thread::JoinHandle<Result<Client, pg::Error>>>,
    /// This connection holds the reminder lock.
    leader: bool,
    /// `tally_directory`'s version when staff and preferences were last read (see
    /// `others_may_have_written`).
    directory: Option<i64>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("connected", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let (client, connecting) = (self.client.take(), self.connecting.take());
        if client.is_some() || connecting.is_some() {
            // The client owns a runtime, which must not be dropped on an async runtime's
            // thread (a start that fails after connecting drops it there).
            let _ = std::thread::spawn(move || {
                drop(client);
                if let Some(pending) = connecting {
                    let _ = pending.join();
                }
            })
            .join();
        }
    }
}

/// A session, set up.
fn open(config: &pg::Config) -> Result<Client, pg::Error> {
    let mut c = Client::connect(config)?;
    c.batch_execute(SESSION)?;
    Ok(c)
}

fn down(e: impl std::fmt::Display) -> Down {
    Down(e.to_string())
}

impl Postgres {
    /// Connects (this one must succeed: a node does not start without its database) and
    /// makes the schema if it is not there. Call it off any async runtime (the client runs
    /// its own).
    pub fn connect(url: &str) -> anyhow::Result<Postgres> {
        let mut config: pg::Config = url
            .parse()
            .map_err(|e| anyhow::anyhow!("--postgres is not a PostgreSQL URL: {e}"))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("tally-relay");
        // A server that stops answering (rather than refusing) is noticed in about 20 s.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(5));
        config.keepalives_interval(Duration::from_secs(5));
        config.keepalives_retries(3);
        // What the node sent and the network did not acknowledge in that time is given up
        // by the kernel; an answer that never comes is given up by the client (`pg`).
        config.tcp_user_timeout(pg::ROUND_TRIP);
        let first = open(&config).map_err(|e| anyhow::anyhow!("cannot reach PostgreSQL: {e}"))?;
        let mut pg = Postgres {
            directory: None,
            config,
            client: Some(first),
            connecting: None,
            failed_at: None,
            in_transaction: false,
            head: Offset(0),
            leader: false,
        };
        let client = pg.client()?;
        let mut tx = client.transaction()?;
        // Nodes starting together must not race on CREATE TABLE.
        tx.execute("SELECT pg_advisory_xact_lock(74617279)", &[])?;
        tx.batch_execute(SCHEMA)?;
        let id = format!("{:016x}", rand::random::<u64>());
        tx.execute(
            "INSERT INTO tally_meta (key, value) VALUES ('log_id', $1) ON CONFLICT DO NOTHING",
            &[&id],
        )?;
        tx.commit()?;
        Ok(pg)
    }

    /// The connection. One that was lost is made again on a thread of its own (at most every
    /// `RETRY`), so that the core never waits for a server that does not answer: until it is
    /// back, calls fail at once.
    fn client(&mut self) -> Result<&mut Client, Down> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            match self.connecting.take() {
                Some(pending) if pending.is_finished() => match pending.join() {
                    Ok(Ok(c)) => {
                        if self.failed_at.take().is_some() {
                            tracing::info!("PostgreSQL reachable again");
                        }
                        self.client = Some(c);
                    }
                    Ok(Err(e)) => {
                        if self.failed_at.is_none() {
                            tracing::warn!(error = %e, "PostgreSQL unreachable");
                        }
                        self.failed_at = Some(Instant::now());
                        return Err(down(e));
                    }
                    Err(_) => return Err(Down("connecting panicked".into())),
                },
                Some(pending) => {
                    self.connecting = Some(pending);
                    return Err(Down("reconnecting".into()));
                }
                None => {
                    if self.failed_at.is_some_and(|at| at.elapsed() < RETRY) {
                        return Err(Down("reconnecting".into()));
                    }
                    let config = self.config.clone();
                    self.connecting = Some(std::thread::spawn(move || open(&config)));
                    return Err(Down("reconnecting".into()));
                }
            }
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Makes a service key named `name` (new, or replacing a revoked one); the key.
    pub fn create_service_key(&mut self, name: &str) -> anyhow::Result<String> {
        crate::service_keys::check_name(name)?;
        let key = format!(
            "{}{}",
            crate::service_keys::PREFIX,
            hex::encode(rand::random::<[u8; 32]>())
        );
        let c = self.client()?;
        let changed = c.execute(
            "INSERT INTO tally_service_keys (name, hash, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at,
                revoked_at = NULL
             WHERE tally_service_keys.revoked_at IS NOT NULL",
            &[&name, &crate::service_keys::hash(&key), &now_ms()],
        )?;
        anyhow::ensure!(
            changed == 1,
            "a key named {name} exists (revoke it first to replace it)"
        );
        Ok(key)
    }

    /// Revokes a service key; false if there is no live key by that name.
    pub fn revoke_service_key(&mut self, name: &str) -> anyhow::Result<bool> {
        let c = self.client()?;
        Ok(c.execute(
            "UPDATE tally_service_keys SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
            &[&name, &now_ms()],
        )? == 1)
    }

    /// Every service key: name, made, revoked (milliseconds).
    pub fn service_keys(&mut self) -> anyhow::Result<Vec<(String, i64, Option<i64>)>> {
        let c = self.client()?;
        Ok(c.query(
            "SELECT name, created_at, revoked_at FROM tally_service_keys ORDER BY name",
            &[],
        )?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
    }

    /// Adds a webhook; its id and signing secret.
    pub fn add_webhook(&mut self, url: &str, events: &[String]) -> anyhow::Result<(i64, String)> {
        let secret = crate::webhooks::check(url, events)?;
        let c = self.client()?;
        let id: i64 = c
            .query_one(
                "INSERT INTO tally_webhooks (url, secret, events, created_at) VALUES ($1, $2, $3, $4)
                 RETURNING id",
                &[&url, &secret, &events.join(","), &now_ms()],
            )?
            .get(0);
        Ok((id, secret))
    }

    /// Removes a webhook (every node drops its pending deliveries within a second).
    pub fn remove_webhook(&mut self, id: i64) -> anyhow::Result<bool> {
        let c = self.client()?;
        Ok(c.execute(
            "UPDATE tally_webhooks SET removed_at = $2 WHERE id = $1 AND removed_at IS NULL",
            &[&id, &now_ms()],
        )? == 1)
    }

    /// The live webhooks, one line each (deliveries are queued on the node that wrote the
    /// event: each node's `/metrics` counts its own).
    pub fn webhooks(&mut self) -> anyhow::Result<Vec<String>> {
        let c = self.client()?;
        Ok(c.query(
            "SELECT id, url, events FROM tally_webhooks WHERE removed_at IS NULL ORDER BY id",
            &[],
        )?
        .into_iter()
        .map(|r| {
            format!(
                "{}\t{}\t{}",
                r.get::<_, i64>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2)
            )
        })
        .collect())
    }

    /// Shares an upload (its bytes in `file`) with the other nodes.
    pub fn share_upload(
        &mut self,
        uploader: &StaffId,
        a: &Attachment,
        file: &std::path::Path,
        now: u64,
    ) -> Result<(), Down> {
        let bytes = std::fs::read(file).map_err(down)?;
        let c = self.client()?;
        let result = (|| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO tally_files (id, content_type, size, bytes) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &[&a.id.as_str(), &a.content_type, &(a.size as i64), &bytes],
            )?;
            tx.execute(
                "INSERT INTO tally_uploads (attachment, staff, name, uploaded_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (attachment, staff) DO UPDATE SET name = excluded.name, uploaded_at = excluded.uploaded_at",
                &[&a.id.as_str(), &uploader.as_str(), &a.name, &(now as i64)],
            )?;
            tx.commit()
        })();
        result.map_err(|e| self.lost(e))
    }

    /// A shared upload's bytes, if it is shared.
    pub fn upload_bytes(&mut self, id: &AttachmentId) -> Result<Option<Vec<u8>>, Down> {
        let c = self.client()?;
        match c.query_opt("SELECT bytes FROM tally_files WHERE id = $1", &[&id.as_str()]) {
            Ok(row) => Ok(row.map(|r| r.get(0))),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Forgets a connection that failed (its transaction, if any, is gone with it).
    fn lost(&mut self, e: impl std::fmt::Display) -> Down {
        tracing::warn!(error = %e, "PostgreSQL call failed");
        self.client = None;
        self.in_transaction = false;
        self.leader = false;
        down(e)
    }

    /// This cluster's log identity.
    pub fn log_id(&mut self) -> anyhow::Result<String> {
        let c = self.client().map_err(|e| anyhow::anyhow!(e))?;
        Ok(
            c.query_one("SELECT value FROM tally_meta WHERE key = 'log_id'", &[])?
                .get(0),
        )
    }

    /// The committed head.
    pub fn head(&mut self) -> anyhow::Result<Offset> {
        let c = self.client().map_err(|e| anyhow::anyhow!(e))?;
        let head: i64 = c.query_one("SELECT head FROM tally_head", &[])?.get(0);
        Ok(Offset(head as u64))
    }

    /// The token signing secret every node shares (`TALLY_SECRET` wins; otherwise one made
    /// by the first node and kept in `tally_meta`).
    pub fn secret(&mut self) -> anyhow::Result<Vec<u8>> {
        if let Ok(s) = std::env::var("TALLY_SECRET") {
            anyhow::ensure!(s.len() >= 32, "TALLY_SECRET must be at least 32 bytes");
            return Ok(s.into_bytes());
        }
        let c = self.client().map_err(|e| anyhow::anyhow!(e))?;
        let made = hex::encode(rand::random::<[u8; 32]>());
        c.execute(
            "INSERT INTO tally_meta (key, value) VALUES ('secret', $1) ON CONFLICT DO NOTHING",
            &[&made],
        )?;
        let secret: String = c
            .query_one("SELECT value FROM tally_meta WHERE key = 'secret'", &[])?
            .get(0);
        Ok(secret.into_bytes())
    }

    /// Deactivates a staff member; false if there is none with that id.
    pub fn deactivate_staff(&mut self, id: &StaffId) -> anyhow::Result<bool> {
        let c = self.client().map_err(|e| anyhow::anyhow!(e))?;
        Ok(c.execute(
            "UPDATE tally_staff SET active = false WHERE id = $1",
            &[&id.as_str()],
        )? == 1)
    }

    fn frames(rows: Vec<pg::Row>, after: Offset) -> Result<Frames, Down> {
        let mut at = after;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let off: i64 = row.get(0);
            if off as u64 != at.0 + 1 {
                return Err(Down(format!("the log jumps from offset {at} to {off}")));
            }
            at = Offset(off as u64);
            out.push(row.get(1));
        }
        Ok(out)
    }
}

/// Events read per query when catching up.
const CATCH_UP_IN_COMMIT: i64 = 10_000;

impl Order for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn begin(&mut self, after: Offset) -> Result<Frames, Down> {
        let c = self.client()?;
        let result = (|| {
            // One round trip for both (the lock is held from here until COMMIT).
            let head: i64 = c
                .simple_query("BEGIN; SELECT head FROM tally_head FOR UPDATE")?
                .into_iter()
                .find_map(|m| match m {
                    pg::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
                    _ => None,
                })
                .unwrap_or(0);
            let mut rows = Vec::new();
            // The core catches up before it begins, so this is usually the last few events.
            while after.0 + (rows.len() as u64) < head as u64 {
                let from = after.0 as i64 + rows.len() as i64;
                let more = c.query(
                    "SELECT off, frame FROM tally_events WHERE off > $1 ORDER BY off LIMIT $2",
                    &[&from, &CATCH_UP_IN_COMMIT],
                )?;
                if more.is_empty() {
                    break;
                }
                rows.extend(more);
            }
            Ok::<_, pg::Error>((head, rows))
        })();
        match result {
            Ok((head, rows)) => {
                self.in_transaction = true;
                let frames = Self::frames(rows, after).and_then(|f| {
                    if after.0 + f.len() as u64 == head as u64 {
                        Ok(f)
                    } else {
                        Err(Down(format!(
                            "the log's head is {head} but its events stop before"
                        )))
                    }
                });
                match frames {
                    Ok(f) => {
                        self.head = Offset(head as u64);
                        Ok(f)
                    }
                    Err(e) => {
                        self.abort();
                        Err(e)
                    }
                }
            }
            Err(e) => Err(self.lost(e)),
        }
    }

    fn commit(&mut self, appended: &[(Offset, &str)], redacted: &[(Offset, String)]) -> Result<(), Down> {
        if !self.in_transaction {
            return Err(Down("no transaction".into()));
        }
        let head = self.head;
        let Some(c) = self.client.as_mut() else {
            return Err(Down("connection lost".into()));
        };
        let result = (|| {
            if let Some(&(last, _)) = appended.last() {
                let offsets: Vec<i64> = appended.iter().map(|(o, _)| o.0 as i64).collect();
                let frames: Vec<&str> = appended.iter().map(|(_, f)| *f).collect();
                debug_assert_eq!(offsets[0] as u64, head.0 + 1);
                // One round trip for the events and the head.
                c.execute(
                    "WITH appended AS (
                        INSERT INTO tally_events (off, frame) SELECT * FROM unnest($1::bigint[], $2::text[])
                     )
                     UPDATE tally_head SET head = $3",
                    &[&offsets, &frames, &(last.0 as i64)],
                )?;
            }
            for (offset, frame) in redacted {
                c.execute(
                    "UPDATE tally_events SET frame = $2 WHERE off = $1",
                    &[&(offset.0 as i64), frame],
                )?;
            }
            c.batch_execute("COMMIT")
        })();
        self.in_transaction = false;
        result.map_err(|e| self.lost(e))
    }

    fn abort(&mut self) {
        if self.in_transaction {
            self.in_transaction = false;
            if let Some(c) = self.client.as_mut()
                && let Err(e) = c.batch_execute("ROLLBACK")
            {
                let _ = self.lost(e);
            }
        }
    }

    fn committed_after(&mut self, after: Offset, limit: usize) -> Result<Frames, Down> {
        let c = self.client()?;
        match c.query(
            "SELECT off, frame FROM tally_events WHERE off > $1 ORDER BY off LIMIT $2",
            &[&(after.0 as i64), &(limit as i64)],
        ) {
            Ok(rows) => Self::frames(rows, after),
            Err(e) => Err(self.lost(e)),
        }
    }

    fn others_may_have_written(&mut self, _local: &Connection) -> anyhow::Result<bool> {
        // Any node (or the CLI) may have: statement triggers on the staff and preferences
        // tables move one version row, so the tick reads one row instead of every staff
        // member, as `data_version` does on a single node. This node's own writes move it
        // too (one reread after each, which is harmless).
        let c = self.client()?;
        let now: i64 = c.query_one("SELECT version FROM tally_directory", &[])?.get(0);
        Ok(self.directory.replace(now) != Some(now))
    }

    fn reread_next_time(&mut self) {
        self.directory = None;
    }

    fn staff(&mut self, _local: &Connection) -> anyhow::Result<Vec<(Staff, bool)>> {
        let c = self.client()?;
        let rows = c.query("SELECT id, name, active FROM tally_staff ORDER BY id", &[])?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let id = StaffId::new(r.get::<_, String>(0)).ok()?;
                Some((Staff { id, name: r.get(1) }, r.get(2)))
            })
            .collect())
    }

    fn upsert_staff(&mut self, _local: &Connection, staff: &Staff) -> anyhow::Result<()> {
        let c = self.client()?;
        c.execute(
            "INSERT INTO tally_staff (id, name, active) VALUES ($1, $2, true)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, active = true",
            &[&staff.id.as_str(), &staff.name],
        )?;
        Ok(())
    }

    fn mirror_staff(
        &mut self,
        _local: &mut Connection,
        staff: &[(Staff, bool)],
        deactivate_missing: bool,
    ) -> anyhow::Result<(Vec<bool>, usize)> {
        let c = self.client()?;
        let mut tx = c.transaction()?;
        let mut changed = Vec::with_capacity(staff.len());
        for (s, active) in staff {
            let n = tx.execute(
                "INSERT INTO tally_staff (id, name, active) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, active = excluded.active
                 WHERE (tally_staff.name, tally_staff.active) IS DISTINCT FROM (excluded.name, excluded.active)",
                &[&s.id.as_str(), &s.name, active],
            )?;
            changed.push(n == 1);
        }
        let mut deactivated = 0;
        if deactivate_missing {
            let listed: Vec<&str> = staff.iter().map(|(s, _)| s.id.as_str()).collect();
            deactivated = tx.execute(
                "UPDATE tally_staff SET active = false WHERE active AND NOT (id = ANY($1))",
                &[&listed],
            )? as usize;
        }
        tx.commit()?;
        Ok((changed, deactivated))
    }

    fn preferences(&mut self, _local: &Connection) -> anyhow::Result<Preferences> {
        let c = self.client()?;
        let rows = c.query(
            "SELECT staff, hide_read_state, quiet FROM tally_preferences WHERE hide_read_state OR quiet IS NOT NULL",
            &[],
        )?;
        let mut out = Preferences::default();
        for r in rows {
            out.add(r.get(0), r.get(1), r.get(2));
        }
        Ok(out)
    }

    fn set_read_state_hidden(
        &mut self,
        _local: &Connection,
        staff: &StaffId,
        hidden: bool,
    ) -> anyhow::Result<()> {
        let c = self.client()?;
        c.execute(
            "INSERT INTO tally_preferences (staff, hide_read_state) VALUES ($1, $2)
             ON CONFLICT (staff) DO UPDATE SET hide_read_state = excluded.hide_read_state",
            &[&staff.as_str(), &hidden],
        )?;
        Ok(())
    }

    fn set_quiet(
        &mut self,
        _local: &Connection,
        staff: &StaffId,
        quiet: &tally_shared::quiet::Quiet,
    ) -> anyhow::Result<()> {
        let json = (*quiet != tally_shared::quiet::Quiet::default())
            .then(|| serde_json::to_string(quiet).expect("plain data"));
        let c = self.client()?;
        c.execute(
            "INSERT INTO tally_preferences (staff, quiet) VALUES ($1, $2)
             ON CONFLICT (staff) DO UPDATE SET quiet = excluded.quiet",
            &[&staff.as_str(), &json],
        )?;
        Ok(())
    }

    fn fetch_upload(&mut self, id: &AttachmentId) -> Result<Option<SharedUpload>, Down> {
        let c = self.client()?;
        let result = (|| {
            let Some(file) = c.query_opt(
                "SELECT content_type, size FROM tally_files WHERE id = $1",
                &[&id.as_str()],
            )?
            else {
                return Ok(None);
            };
            let uploads = c.query(
                "SELECT staff, name, uploaded_at FROM tally_uploads WHERE attachment = $1 ORDER BY uploaded_at",
                &[&id.as_str()],
            )?;
            Ok::<_, pg::Error>(Some((file, uploads)))
        })();
        let Some((file, uploads)) = result.map_err(|e| self.lost(e))? else {
            return Ok(None);
        };
        let uploads: Vec<(StaffId, String, u64)> = uploads
            .into_iter()
            .filter_map(|r| {
                let staff = StaffId::new(r.get::<_, String>(0)).ok()?;
                Some((staff, r.get(1), r.get::<_, i64>(2) as u64))
            })
            .collect();
        Ok(Some(SharedUpload {
            attachment: Attachment {
                id: id.clone(),
                name: uploads.first().map(|u| u.1.clone()).unwrap_or_default(),
                content_type: file.get(0),
                size: file.get::<_, i64>(1) as u64,
            },
            uploads,
        }))
    }

    fn forget_uploads(&mut self, ids: &[AttachmentId]) -> Result<(), Down> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = ids.iter().map(AttachmentId::as_str).collect();
        let c = self.client()?;
        match c.execute("DELETE FROM tally_files WHERE id = ANY($1)", &[&ids]) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.lost(e)),
        }
    }

    fn find_service_key(&mut self, _local: &Connection, presented: &str) -> anyhow::Result<Option<String>> {
        if !presented.starts_with(crate::service_keys::PREFIX) {
            return Ok(None);
        }
        let c = self.client()?;
        Ok(c.query_opt(
            "SELECT name FROM tally_service_keys WHERE hash = $1 AND revoked_at IS NULL",
            &[&crate::service_keys::hash(presented)],
        )?
        .map(|r| r.get(0)))
    }

    fn sync_webhooks(&mut self, local: &Connection) -> anyhow::Result<()> {
        let c = self.client()?;
        let rows: Vec<_> = c
            .query(
                "SELECT id, url, secret, events, created_at, removed_at FROM tally_webhooks ORDER BY id",
                &[],
            )?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect();
        crate::webhooks::mirror(local, &rows)
    }

    fn leads_reminders(&mut self) -> bool {
        if self.leader && self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return true;
        }
        // The lock is the session's: a new connection must take it again.
        self.leader = false;
        let Ok(c) = self.client() else { return false };
        match c.query_one("SELECT pg_try_advisory_lock($1)", &[&REMINDER_LOCK]) {
            Ok(row) => {
                self.leader = row.get(0);
                if self.leader {
                    tracing::info!("this node sends the cluster's unread reminders");
                }
                self.leader
            }
            Err(e) => {
                let _ = self.lost(e);
                false
            }
        }
    }
}

/// What the sharer thread does.
enum Job {
    Share {
        uploader: StaffId,
        attachment: Attachment,
        file: std::path::PathBuf,
        now: u64,
        reply: tokio::sync::oneshot::Sender<Result<(), Down>>,
    },
    Fetch {
        id: AttachmentId,
        reply: tokio::sync::oneshot::Sender<Result<Option<Vec<u8>>, Down>>,
    },
}

/// Upload bytes to and from a cluster's PostgreSQL, on a thread and a connection of their own:
/// a 10 MiB file never holds up the core (which only ever reads an upload's records). One at a
/// time; callers wait in a bounded queue.
#[derive(Debug, Clone)]
pub struct Sharer {
    jobs: tokio::sync::mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Share { .. } => "Share",
            Job::Fetch { .. } => "Fetch",
        })
    }
}

/// Uploads waiting for the sharer before the next is refused as `unavailable`.
const SHARER_QUEUE: usize = 32;

impl Sharer {
    /// Connects (call it off any async runtime) and starts the thread.
    pub fn start(url: &str) -> anyhow::Result<Sharer> {
        let mut pg = Postgres::connect(url)?;
        let (jobs, mut queue) = tokio::sync::mpsc::channel::<Job>(SHARER_QUEUE);
        std::thread::Builder::new()
            .name("tally-sharer".into())
            .spawn(move || {
                while let Some(job) = queue.blocking_recv() {
                    match job {
                        Job::Share {
                            uploader,
                            attachment,
                            file,
                            now,
                            reply,
                        } => {
                            let _ = reply.send(pg.share_upload(&uploader, &attachment, &file, now));
                        }
                        Job::Fetch { id, reply } => {
                            let _ = reply.send(pg.upload_bytes(&id));
                        }
                    }
                }
            })?;
        Ok(Sharer { jobs })
    }

    async fn run<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, Down>>) -> Job,
    ) -> Result<T, Down> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .try_send(make(reply))
            .map_err(|_| Down("too many uploads waiting for the database".into()))?;
        answer.await.map_err(|_| Down("the sharer stopped".into()))?
    }

    /// Shares an upload (its bytes in `file`) before it is acknowledged.
    pub async fn share(
        &self,
        uploader: StaffId,
        attachment: Attachment,
        file: std::path::PathBuf,
        now: u64,
    ) -> Result<(), Down> {
        self.run(|reply| Job::Share {
            uploader,
            attachment,
            file,
            now,
            reply,
        })
        .await
    }

    /// A shared upload's bytes.
    pub async fn fetch(&self, id: AttachmentId) -> Result<Option<Vec<u8>>, Down> {
        self.run(|reply| Job::Fetch { id, reply }).await
    }
}
