//! How the log's frames and the messages' JSON are stored: compressed with zstd and a dictionary
//! trained on Tally's own JSON, about three times smaller than the text (a message is a few
//! hundred bytes; alone, zstd could not find much to share in it, the dictionary holds what
//! messages have in common: the field names, the shape, common words). `docs/benchmarks.md`,
//! "Disk per message", has the figures.
//!
//! A packed value is a SQLite BLOB: one byte naming the format (today [`ZSTD_DICT_1`]: zstd with
//! dictionary 1, without the frame's magic number), the text's length (LEB128), then the zstd
//! frame. A column that holds packed values may also hold plain TEXT (databases written before
//! packing, and the small frames that are not worth it): [`text`] reads both. A dictionary, once
//! used, is kept for as long as a database may hold a value packed with it; a better one gets
//! the next format byte.
//!
//! A message's row in `messages` holds its key (id, conversation, seq) as columns and packs
//! only the rest of its JSON ([`pack_message`], [`message_json`]).

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::LazyLock;

use rusqlite::types::ValueRef;
use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};
use zstd::zstd_safe::{CParameter, DParameter, FrameFormat};

/// The format byte of values packed with zstd and [`DICTIONARY_1`].
pub const ZSTD_DICT_1: u8 = 1;

/// The first dictionary (`tally-loadgen dictionary`): 16 KiB trained on the stored rows and
/// frames of a generated history (seed 1; the benchmarks measure seed 7).
pub const DICTIONARY_1: &[u8] = include_bytes!("packed/dictionary-1.zdict");

/// zstd's level (its default): packing is on the writer's path, and with a dictionary most of
/// what a small value shares is found at any level.
const LEVEL: i32 = 3;

/// The longest text a packed value may claim to hold: a guard against a corrupt length (a
/// message is at most a few hundred KiB).
const MAX_TEXT: usize = 64 << 20;

static ENCODER: LazyLock<EncoderDictionary<'static>> =
    LazyLock::new(|| EncoderDictionary::copy(DICTIONARY_1, LEVEL));
static DECODER: LazyLock<DecoderDictionary<'static>> =
    LazyLock::new(|| DecoderDictionary::copy(DICTIONARY_1));

thread_local! {
    static COMPRESSOR: RefCell<Compressor<'static>> = RefCell::new({
        let mut c = Compressor::with_prepared_dictionary(&ENCODER).expect("a zstd context");
        for p in [
            CParameter::Format(FrameFormat::Magicless),
            CParameter::ContentSizeFlag(false),
            CParameter::ChecksumFlag(false),
            CParameter::DictIdFlag(false),
        ] {
            c.set_parameter(p).expect("a zstd parameter");
        }
        c
    });
    static DECOMPRESSOR: RefCell<Decompressor<'static>> = RefCell::new({
        let mut d = Decompressor::with_prepared_dictionary(&DECODER).expect("a zstd context");
        d.set_parameter(DParameter::Format(FrameFormat::Magicless)).expect("a zstd parameter");
        d
    });
}

/// A stored value that is not what it should be.
#[derive(Debug, thiserror::Error)]
pub enum Unpack {
    /// An integer, a real or a NULL where text belongs.
    #[error("a stored value is neither text nor packed text")]
    NotText,
    /// A format byte this build does not know (written by a newer one?).
    #[error("a stored value has an unknown format {0}")]
    Format(u8),
    /// The bytes do not decode.
    #[error("a stored value is corrupt: {0}")]
    Corrupt(String),
}

/// `text`, packed.
pub fn pack(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 2 + 8);
    out.push(ZSTD_DICT_1);
    let mut n = text.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    let header = out.len();
    out.resize(header + zstd::zstd_safe::compress_bound(text.len()), 0);
    let written = COMPRESSOR.with(|c| {
        c.borrow_mut()
            .compress_to_buffer(text.as_bytes(), &mut out[header..])
    });
    // Compressing into a buffer of zstd's own bound does not fail.
    out.truncate(header + written.expect("zstd compresses into its bound"));
    out
}

/// The text of a packed value.
pub fn unpack(packed: &[u8]) -> Result<String, Unpack> {
    let (&format, rest) = packed.split_first().ok_or(Unpack::Corrupt("empty".into()))?;
    if format != ZSTD_DICT_1 {
        return Err(Unpack::Format(format));
    }
    let (mut len, mut shift, mut at) = (0usize, 0, 0);
    loop {
        let byte = *rest.get(at).ok_or(Unpack::Corrupt("a cut length".into()))?;
        at += 1;
        len |= usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            break;
        }
        if shift > 28 {
            return Err(Unpack::Corrupt("a length too long".into()));
        }
    }
    if len > MAX_TEXT {
        return Err(Unpack::Corrupt(format!("a length of {len}")));
    }
    let mut out = Vec::with_capacity(len);
    let written = DECOMPRESSOR
        .with(|d| d.borrow_mut().decompress_to_buffer(&rest[at..], &mut out))
        .map_err(|e| Unpack::Corrupt(e.to_string()))?;
    if written != len {
        return Err(Unpack::Corrupt(format!(
            "{written} bytes where {len} were packed"
        )));
    }
    String::from_utf8(out).map_err(|e| Unpack::Corrupt(e.to_string()))
}

/// The text of a column that holds text or packed text.
pub fn text(value: ValueRef<'_>) -> Result<Cow<'_, str>, Unpack> {
    match value {
        ValueRef::Text(t) => std::str::from_utf8(t)
            .map(Cow::Borrowed)
            .map_err(|e| Unpack::Corrupt(e.to_string())),
        ValueRef::Blob(b) => unpack(b).map(Cow::Owned),
        _ => Err(Unpack::NotText),
    }
}

/// [`text`] for a row being read, as the error a row mapper returns.
pub fn column(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<String> {
    text(row.get_ref(i)?)
        .map(Cow::into_owned)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e)))
}

/// The columns of `messages` that [`message_json`] reads, in its order.
pub const MESSAGE_COLUMNS: &str = "id, conversation, seq, payload";

/// The start of a message's JSON: its key, which its row holds as columns.
fn message_key(id: i64, conversation: i64, seq: i64) -> String {
    format!("{{\"id\":{id},\"conversation\":{conversation},\"seq\":{seq},")
}

/// What a message's row stores of its JSON: the rest after its key ([`message_key`], which
/// starts with `{`, as the rest never does), packed; all of it if it does not start so.
pub fn pack_message(json: &str, id: i64, conversation: i64, seq: i64) -> Vec<u8> {
    let rest = json.strip_prefix(message_key(id, conversation, seq).as_str());
    pack(rest.filter(|r| !r.starts_with('{')).unwrap_or(json))
}

/// A stored message's JSON, as it was serialized, from the four columns at `i`
/// ([`MESSAGE_COLUMNS`]).
pub fn message_json(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<String> {
    let stored = column(row, i + 3)?;
    if stored.starts_with('{') {
        return Ok(stored);
    }
    let mut json = message_key(row.get(i)?, row.get(i + 1)?, row.get(i + 2)?);
    json.push_str(&stored);
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_packed_unpacks_to_itself_whatever_it_is() {
        let long = "é🙂 ".repeat(50_000);
        for t in ["", "x", "{\"offset\":1}", long.as_str()] {
            let p = pack(t);
            assert_eq!(p[0], ZSTD_DICT_1);
            assert_eq!(unpack(&p).unwrap(), t);
            assert_eq!(text(ValueRef::Blob(&p)).unwrap(), t);
        }
        assert_eq!(text(ValueRef::Text(b"plain")).unwrap(), "plain");
    }

    #[test]
    fn a_message_packs_to_a_fraction_of_its_json() {
        let m = r#"{"id":11924,"conversation":1,"seq":1,"sender":"s2083","body":"can you check the invoice before the meeting tomorrow","client_id":"h11452","created_at":1766835386410}"#;
        let p = pack(m);
        assert!(p.len() * 2 < m.len(), "{} bytes packed from {}", p.len(), m.len());
    }

    #[test]
    fn what_is_not_packed_text_is_refused_with_a_reason() {
        let p = pack("hello there");
        assert!(matches!(unpack(&[9, 1, 0]), Err(Unpack::Format(9))));
        assert!(matches!(unpack(&[]), Err(Unpack::Corrupt(_))));
        assert!(matches!(unpack(&p[..p.len() - 1]), Err(Unpack::Corrupt(_))));
        assert!(matches!(
            unpack(&[1, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(Unpack::Corrupt(_))
        ));
        let mut wrong_len = p.clone();
        wrong_len[1] += 1;
        assert!(matches!(unpack(&wrong_len), Err(Unpack::Corrupt(_))));
        assert!(matches!(text(ValueRef::Integer(1)), Err(Unpack::NotText)));
        assert!(matches!(text(ValueRef::Null), Err(Unpack::NotText)));
    }
}
