//! An import file like one exported from the chat Tally replaces (the format of
//! `docs/integration.md`), for timing `tally-relay import`: `staff` people, a direct
//! conversation per pair of neighbours and one group of 3 to 12 per 10 people; messages spread
//! over them with replies (5%) and deletions (2%); each person's `read_by` rows cover a prefix
//! of every conversation they are in (to its end 80% of the time), with a gap now and then.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use rand::prelude::*;

/// What was written.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) lines: u64,
    pub(crate) messages: u64,
    pub(crate) reads: u64,
    pub(crate) seconds: f64,
}

/// Writes the file.
pub(crate) fn write(out: &Path, staff: usize, messages: u64, seed: u64) -> anyhow::Result<Written> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let mut lines = 0u64;
    for s in 0..staff {
        writeln!(
            f,
            r#"{{"kind":"staff","id":"s{s}","name":"Staff Member {s}","active":true}}"#
        )?;
        lines += 1;
    }
    let mut conversations: Vec<Vec<usize>> = Vec::new();
    for s in 0..staff {
        conversations.push(vec![s, (s + 1) % staff]);
    }
    for _ in 0..staff / 10 {
        let size = rng.random_range(3..=12).min(staff);
        let mut members: Vec<usize> = (0..staff).choose_multiple(&mut rng, size);
        members.sort_unstable();
        conversations.push(members);
    }
    for (i, members) in conversations.iter().enumerate() {
        let kind = if i < staff { "direct" } else { "group" };
        let title = if i < staff {
            String::new()
        } else {
            format!(r#","title":"Team {i}""#)
        };
        let list: Vec<String> = members.iter().map(|m| format!("\"s{m}\"")).collect();
        writeln!(
            f,
            r#"{{"kind":"conversation","id":"c{i}","type":"{kind}"{title},"participants":[{}],"created_at":"2024-01-01T00:00:00Z"}}"#,
            list.join(",")
        )?;
        lines += 1;
    }
    // Messages per conversation, then each conversation's messages and reads together.
    let mut counts = vec![0u64; conversations.len()];
    for _ in 0..messages {
        counts[rng.random_range(0..conversations.len())] += 1;
    }
    let mut reads = 0u64;
    let mut written = 0u64;
    for (i, members) in conversations.iter().enumerate() {
        let n = counts[i];
        let mut senders = Vec::with_capacity(n as usize);
        for m in 0..n {
            let sender = members[rng.random_range(0..members.len())];
            senders.push(sender);
            let at = written * 30;
            written += 1;
            let (day, secs) = (at / 86_400, at % 86_400);
            let (month, day) = (1 + (day / 28) % 12, 1 + day % 28);
            let reply = if m > 0 && rng.random_bool(0.05) {
                format!(r#","reply_to":"c{i}m{}""#, rng.random_range(0..m))
            } else {
                String::new()
            };
            let deleted = rng.random_bool(0.02);
            writeln!(
                f,
                r#"{{"kind":"message","id":"c{i}m{m}","conversation":"c{i}","sender":"s{sender}","body":"Message {m} of conversation {i}: the patient in room {} is ready","created_at":"2025-{month:02}-{day:02}T{:02}:{:02}:{:02}Z","deleted":{deleted}{reply}}}"#,
                m % 400,
                secs / 3600,
                secs / 60 % 60,
                secs % 60,
            )?;
            lines += 1;
        }
        for &p in members {
            let upto = if rng.random_bool(0.8) {
                n
            } else {
                rng.random_range(0..=n)
            };
            let gap = rng.random_bool(0.05).then(|| rng.random_range(0..=upto));
            for m in 0..upto {
                if senders[m as usize] != p && Some(m) != gap {
                    writeln!(
                        f,
                        r#"{{"kind":"read","conversation":"c{i}","staff":"s{p}","message":"c{i}m{m}"}}"#
                    )?;
                    reads += 1;
                    lines += 1;
                }
            }
        }
    }
    f.flush()?;
    Ok(Written {
        lines,
        messages,
        reads,
        seconds: started.elapsed().as_secs_f64(),
    })
}
