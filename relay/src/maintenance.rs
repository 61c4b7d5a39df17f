//! Operations on a data directory that the relay does not need while it serves: checking every
//! count against the log (and the newest checkpoint against the log), and restoring a backup
//! (which must also drop the checkpoints of the log it replaces).

use std::path::Path;

use rusqlite::Connection;

use crate::storage;

/// Restores a backup into `data` (see [`storage::restore`]); checkpoints there belonged to the
/// log it replaced, so they go (the relay is not running: restore is done before it starts).
/// The offset the restored log holds.
pub fn restore(from: &Path, data: &Path, force: bool) -> anyhow::Result<u64> {
    let offset = storage::restore(from, data, force)?;
    crate::checkpoints::remove_all(data)?;
    Ok(offset)
}

/// `check` for a node of a cluster: its replica must be PostgreSQL's log so far, frame for
/// frame (it may be behind, never different or ahead), and then pass [`check`] itself.
pub fn check_replica(url: &str, data: &Path) -> anyhow::Result<Vec<String>> {
    use crate::order::Order;
    let mut pg = crate::postgres::Postgres::connect(url)?;
    let conn = storage::open_reader(data)?;
    let mut problems = Vec::new();
    let mut at = tally_shared::Offset(0);
    let local_head = storage::last_offset(&conn)?;
    while at.0 < local_head {
        let shared = pg.committed_after(at, 5_000).map_err(|e| anyhow::anyhow!(e))?;
        if shared.is_empty() {
            problems.push(format!(
                "this replica is at offset {local_head}, past PostgreSQL's head {at}"
            ));
            break;
        }
        let mut mine: Vec<String> = Vec::with_capacity(shared.len());
        storage::for_each_frame(&conn, at, tally_shared::Offset(u64::MAX), |_, frame| {
            mine.push(frame.to_string());
            Ok(mine.len() < shared.len())
        })?;
        for (i, (m, s)) in mine.iter().zip(&shared).enumerate() {
            if m != s {
                problems.push(format!("event {} differs from PostgreSQL's", at.0 + 1 + i as u64));
            }
        }
        at = tally_shared::Offset(at.0 + mine.len().min(shared.len()) as u64);
        if mine.len() < shared.len() {
            break;
        }
    }
    drop(conn);
    problems.extend(check(data)?);
    Ok(problems)
}

/// Rebuilds every count from the log twice, with the relay's engine and with the naive
/// oracle, and lists where they disagree (nothing when all is well). It only reads, so it runs
/// on a live database beside the relay (WAL readers do not block the writer).
pub fn check(data: &Path) -> anyhow::Result<Vec<String>> {
    let conn = Connection::open_with_flags(
        storage::database(data),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    anyhow::ensure!(
        version == storage::schema_version(),
        "the database is at schema {version}, this relay at {}: start the relay once to migrate",
        storage::schema_version()
    );
    let mut engine = tally_shared::Engine::new();
    let mut oracle = tally_shared::oracle::Oracle::new();
    let mut problems = Vec::new();
    let mut expected = Some(1);
    storage::for_each_event(&conn, |e| {
        // After a hole in the log nothing can be replayed meaningfully: report it, stop there.
        let Some(next) = expected else { return };
        if e.offset.0 != next {
            problems.push(format!("the log jumps from offset {} to {}", next - 1, e.offset));
            expected = None;
            return;
        }
        expected = Some(next + 1);
        oracle.observe_logged(&e.event);
        engine.apply(e);
    })?;
    if !problems.is_empty() {
        return Ok(problems);
    }
    problems.extend(check_checkpoint(data, &conn)?);
    let projection = engine.projection();
    let mut staff = std::collections::BTreeSet::new();
    for (s, c) in oracle.memberships() {
        let (ours, naive) = (projection.counts(&s, c), oracle.counts(&s, c));
        if ours != Some(naive) {
            problems.push(format!(
                "{s} in conversation {c}: the relay counts {ours:?}, the log says {naive:?}"
            ));
        }
        staff.insert(s);
    }
    for s in &staff {
        let followed = oracle.threads_of(s);
        let ours: Vec<_> = projection
            .threads_of(s)
            .into_iter()
            .map(|(c, t, ..)| (c, t))
            .collect();
        if ours != followed {
            problems.push(format!(
                "{s} follows threads {ours:?} in the relay, {followed:?} in the log"
            ));
        }
        for (c, root) in followed {
            let (ours, naive) = (
                projection.thread_counts(s, c, root),
                oracle.thread_counts(s, c, root),
            );
            if ours != Some(naive) {
                problems.push(format!(
                    "{s} in thread {root} of conversation {c}: the relay counts {ours:?}, the log says {naive:?}"
                ));
            }
        }
    }
    for s in staff {
        let (ours, naive) = (projection.total(&s), oracle.total(&s));
        if ours != naive {
            problems.push(format!(
                "{s}: the relay's total is {ours:?}, the log says {naive:?}"
            ));
        }
        if projection.digest(&s) != oracle.digest(&s) {
            problems.push(format!("{s}: the digests differ"));
        }
    }
    Ok(problems)
}

/// Compares the newest checkpoint with the log: an engine that replays the log up to the
/// checkpoint's offset (giving staff the checkpoint's keys, in its order) must write exactly the
/// checkpoint's bytes. The differences it finds, in counts where there are some.
fn check_checkpoint(data: &Path, conn: &Connection) -> anyhow::Result<Vec<String>> {
    let Some((offset, path)) = crate::checkpoints::list(data, &storage::log_id(conn)?)
        .into_iter()
        .next()
    else {
        return Ok(Vec::new());
    };
    let name = path.display();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        // The relay pruned it while we looked: a newer one exists, and the next check sees it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Ok(vec![format!("checkpoint {name} cannot be read: {e}")]),
    };
    let saved = match tally_shared::Engine::from_checkpoint(&bytes) {
        Ok(e) => e,
        Err(e) => return Ok(vec![format!("checkpoint {name} is unusable: {e}")]),
    };
    if saved.offset() != offset {
        return Ok(vec![format!("checkpoint {name} holds offset {}", saved.offset())]);
    }
    let mut replayed = tally_shared::Engine::new();
    for s in saved.keyed_staff() {
        replayed.register(&s);
    }
    storage::for_each_frame(conn, tally_shared::Offset(0), offset, |_, frame| {
        replayed.apply(serde_json::from_str(frame)?);
        Ok(true)
    })?;
    if replayed.offset() != offset {
        return Ok(vec![format!(
            "checkpoint {name} is at offset {offset}, past the log's end {}",
            replayed.offset()
        )]);
    }
    if replayed.checkpoint() == bytes {
        return Ok(Vec::new());
    }
    let mut problems = Vec::new();
    for s in saved.keyed_staff() {
        let (ours, log) = (saved.conversation_states(&s), replayed.conversation_states(&s));
        for (a, b) in ours.iter().zip(&log) {
            if a != b {
                let c = a.conversation.id;
                problems.push(format!(
                    "checkpoint {name}: {s} in conversation {c}: it says {:?} read to {}, the log says {:?} read to {}",
                    a.counts, a.last_read, b.counts, b.last_read
                ));
            }
        }
        if ours.len() != log.len() {
            problems.push(format!(
                "checkpoint {name}: {s} is in other conversations than the log says"
            ));
        }
        if saved.projection().digest(&s) != replayed.projection().digest(&s) {
            problems.push(format!("checkpoint {name}: {s}: the digests differ"));
        }
    }
    if problems.is_empty() {
        problems.push(format!(
            "checkpoint {name} differs from the log at offset {offset} (indexes or client ids; counts agree)"
        ));
    }
    Ok(problems)
}
