//! Trains the dictionary the relay packs stored JSON with (`tally_relay::packed`), from a
//! history made by `tally-loadgen history`: what its messages' rows and its log's frames hold
//! (made by this build, so that the samples are what the relay packs).
//! Train on a history with another seed than the one measured (`--seed 1` against the
//! benchmarks' 7), so the figures are of text the dictionary has not seen.

use std::path::Path;

use rand::prelude::*;
use tally_relay::{packed, storage};

/// How large a dictionary: zstd's guidance is about 100 times smaller than the samples, and
/// past 16 KiB the stored messages shrank by under 1%.
const SIZE: usize = 16 * 1024;

/// Writes a dictionary trained on `samples` values of the history under `data` to `out`; what
/// it gives on those samples.
pub(crate) fn train(data: &Path, out: &Path, samples: usize) -> anyhow::Result<String> {
    let conn = storage::open_reader(data)?;
    let mut rng = StdRng::seed_from_u64(1);
    let mut texts = Vec::new();
    for sql in [
        "SELECT payload FROM messages ORDER BY random() LIMIT ?1",
        "SELECT frame FROM events WHERE length(frame) > 0 ORDER BY random() LIMIT ?1",
    ] {
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([samples as i64 / 2], |r| packed::column(r, 0))?;
        for t in rows {
            texts.push(t?);
        }
    }
    texts.shuffle(&mut rng);
    anyhow::ensure!(
        texts.len() >= 1000,
        "{} holds too little history to train on",
        data.display()
    );
    let dictionary = zstd::dict::from_samples(&texts, SIZE)?;
    std::fs::write(out, &dictionary)?;
    let raw: usize = texts.iter().map(String::len).sum();
    let mut c = zstd::bulk::Compressor::with_dictionary(3, &dictionary)?;
    let mut packed_bytes = 0;
    for t in &texts {
        packed_bytes += c.compress(t.as_bytes())?.len();
    }
    Ok(format!(
        "{} bytes of dictionary from {} samples: {:.0} bytes of JSON each, {:.0} packed",
        dictionary.len(),
        texts.len(),
        raw as f64 / texts.len() as f64,
        packed_bytes as f64 / texts.len() as f64
    ))
}
