//! Search over a large history (`tally-loadgen search`): the release relay on a data directory
//! made by `tally-loadgen history`, and the whole request over loopback (HTTP, the core's scope,
//! the read worker, 20 results encoded) timed for words and for starts of words, each asked by
//! many staff members in turn, one at a time. The history's text comes from a vocabulary of 36
//! words, so every word is in about a third of all messages: the worst case for an index.

use std::path::Path;
use std::time::{Duration, Instant};

use tally_relay::storage::Durability;

use crate::target::Target;

/// Whole words: one frequent word, two, a phrase of six, and one no message has.
const WORDS: &[&str] = &[
    "delivery",
    "invoice",
    "tomorrow",
    "invoice report",
    "room 4",
    "can you check the order please",
    "zebra",
];

/// Starts of words, of 3 to 8 letters (the lengths with an index of their own since schema 9),
/// one longer, and several in one search.
const PREFIXES: &[&str] = &[
    "del*",
    "deli*",
    "deliv*",
    "delive*",
    "deliver*",
    "tom*",
    "tomorr*",
    "tomorrow*",
    "rep* rev*",
    "inv* rep* mee*",
    "zeb*",
];

/// One search's answer: status and time (the whole request, connecting included).
async fn search(addr: std::net::SocketAddr, q: &str, token: &str) -> anyhow::Result<(u16, Duration)> {
    let path = format!("/api/search?q={}", q.replace(' ', "%20").replace('*', "%2A"));
    let started = Instant::now();
    let status = crate::get_as(addr, &path, token).await?;
    Ok((status, started.elapsed()))
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Asks every query as each of `people` staff members (staff 0, 1, …) and prints each query's
/// median and each kind's p50/p95/max.
pub(crate) async fn run(data: &Path, people: usize) -> anyhow::Result<()> {
    let generated = crate::history::Generated::load(data).ok_or_else(|| {
        anyhow::anyhow!(
            "no history in {}: make one with `tally-loadgen history --data {}`",
            data.display(),
            data.display()
        )
    })?;
    let started = Instant::now();
    let target = Target::relay_on(data, Durability::Full, tally_relay::core::MAX_BATCH, false);
    println!(
        "search: {} messages, {} staff; relay ready in {:.1} s; each query asked by {people} staff members",
        generated.messages,
        generated.staff,
        started.elapsed().as_secs_f64()
    );
    let addr = target.addr_for(0);
    for (kind, queries) in [("words", WORDS), ("prefixes", PREFIXES)] {
        let mut all = Vec::new();
        for q in queries {
            let mut times = Vec::new();
            for i in 0..people {
                let (status, took) = search(addr, q, &target.token(i)).await?;
                anyhow::ensure!(status == 200, "{q:?} as staff {i}: HTTP {status}");
                times.push(took.as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "  {kind:<8} {q:<32} median {:>7.2} ms  max {:>7.2} ms",
                quantile(&times, 0.5),
                times[times.len() - 1]
            );
            all.extend(times);
        }
        all.sort_by(f64::total_cmp);
        println!(
            "{kind}: {} searches, p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
            all.len(),
            quantile(&all, 0.5),
            quantile(&all, 0.95),
            all[all.len() - 1]
        );
    }
    Ok(())
}
