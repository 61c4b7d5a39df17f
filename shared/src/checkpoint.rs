//! Checkpoints: the engine's whole state at an offset, as bytes, so that a relay starts by
//! loading it and replaying only the log after it.
//!
//! A checkpoint is a fixed header followed by a payload:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `TALLYCKP` |
//! | 4 | format version ([`FORMAT`], little-endian) |
//! | 4 | reserved, 0 |
//! | 8 | the offset of the last event it holds |
//! | 8 | payload length |
//! | 8 | [`checksum`] of the payload |
//!
//! The payload is the engine's state in a compact binary form (little-endian integers,
//! length-prefixed strings and arrays; the indexes are stored as their raw positions and bits).
//! Anything wrong (a different magic or version, a short file, a checksum that does not match,
//! a payload that does not decode into a consistent state) is an error: the caller replays the
//! whole log instead, and never starts on wrong state. Encoding and decoding are pure; writing
//! the bytes to disk is the host's.

use crate::ids::Offset;

/// The format this build writes and reads. A change to the payload's layout bumps it; an older
/// checkpoint is then refused and the log replayed in full (which is always correct).
pub const FORMAT: u32 = 3;

const MAGIC: &[u8; 8] = b"TALLYCKP";
const HEADER: usize = 40;

/// Why a checkpoint cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Shorter than its header or than the payload the header announces.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// Not a checkpoint at all.
    #[error("not a checkpoint (bad magic)")]
    NotACheckpoint,
    /// Written by a build with another format.
    #[error("format {found}, this build reads {FORMAT}")]
    Version {
        /// The format it was written in.
        found: u32,
    },
    /// The payload is not what was written.
    #[error("checksum mismatch: the header says {expected:016x}, the payload hashes to {found:016x}")]
    Checksum {
        /// In the header.
        expected: u64,
        /// Of the payload read.
        found: u64,
    },
    /// The payload decodes into something inconsistent.
    #[error("inconsistent payload: {0}")]
    Invalid(&'static str),
}

/// A 64-bit checksum of bytes (four SplitMix64-mixed lanes over 8-byte words, then the tail
/// and the length): fast, and any damage a disk or a truncation does changes it.
pub fn checksum(bytes: &[u8]) -> u64 {
    use crate::digest::mix;
    let mut lanes = [
        0x9e37_79b9_7f4a_7c15u64,
        0xbf58_476d_1ce4_e5b9,
        0x94d0_49bb_1331_11eb,
        0x2545_f491_4f6c_dd1d,
    ];
    let mut chunks = bytes.chunks_exact(32);
    for chunk in &mut chunks {
        for (lane, word) in lanes.iter_mut().zip(chunk.chunks_exact(8)) {
            let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            *lane = mix(*lane ^ w);
        }
    }
    let mut h = bytes.len() as u64;
    for lane in lanes {
        h = mix(h ^ lane);
    }
    for b in chunks.remainder() {
        h = mix(h ^ u64::from(*b));
    }
    h
}

/// Puts a header before a payload.
pub fn seal(offset: Offset, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&offset.0.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks a checkpoint's header and checksum; its offset and payload.
pub fn open(bytes: &[u8]) -> Result<(Offset, &[u8]), CheckpointError> {
    let offset = peek(bytes)?;
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let (len, expected) = (word(24), word(32));
    let payload = &bytes[HEADER..];
    if (payload.len() as u64) < len {
        return Err(CheckpointError::Truncated(
            "the payload is shorter than its header says",
        ));
    }
    if payload.len() as u64 > len {
        return Err(CheckpointError::Invalid("bytes after the payload"));
    }
    let found = checksum(payload);
    if found != expected {
        return Err(CheckpointError::Checksum { expected, found });
    }
    Ok((offset, payload))
}

/// The offset a checkpoint's header names, without checking the payload.
pub fn peek(bytes: &[u8]) -> Result<Offset, CheckpointError> {
    if bytes.len() < HEADER {
        return Err(CheckpointError::Truncated("shorter than the header"));
    }
    if &bytes[..8] != MAGIC {
        return Err(CheckpointError::NotACheckpoint);
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if found != FORMAT {
        return Err(CheckpointError::Version { found });
    }
    Ok(Offset(u64::from_le_bytes(
        bytes[16..24].try_into().expect("8 bytes"),
    )))
}

/// Builds a payload.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn u32s(&mut self, v: &[u32]) {
        self.len(v.len());
        self.buf.reserve(v.len() * 4);
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }

    pub(crate) fn u64s(&mut self, v: &[u64]) {
        self.len(v.len());
        self.buf.reserve(v.len() * 8);
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }
}

/// Reads a payload; every read checks what is left.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

type Read<T> = Result<T, CheckpointError>;

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if self.buf.len() < n {
            return Err(CheckpointError::Invalid("a field runs past the payload"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Read<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn bool(&mut self) -> Read<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CheckpointError::Invalid("a flag is neither 0 nor 1")),
        }
    }

    pub(crate) fn u32(&mut self) -> Read<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub(crate) fn u64(&mut self) -> Read<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// A count of items of at least `each` bytes, which must fit in what is left (so damage
    /// cannot make a reader allocate more than the payload's size).
    pub(crate) fn len(&mut self, each: usize) -> Read<usize> {
        let n = self.u64()?;
        let fits = usize::try_from(n)
            .ok()
            .filter(|n| n.saturating_mul(each.max(1)) <= self.buf.len());
        fits.ok_or(CheckpointError::Invalid("a length runs past the payload"))
    }

    pub(crate) fn str(&mut self) -> Read<&'a str> {
        let n = self.len(1)?;
        std::str::from_utf8(self.take(n)?).map_err(|_| CheckpointError::Invalid("a string is not UTF-8"))
    }

    pub(crate) fn u32s(&mut self) -> Read<Vec<u32>> {
        let n = self.len(4)?;
        let bytes = self.take(n * 4)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    pub(crate) fn u64s(&mut self) -> Read<Vec<u64>> {
        let n = self.len(8)?;
        let bytes = self.take(n * 8)?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }
}

/// Refuses a decoded value that breaks an invariant.
pub(crate) fn ensure(ok: bool, why: &'static str) -> Read<()> {
    if ok {
        Ok(())
    } else {
        Err(CheckpointError::Invalid(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_payload_opens_and_damage_is_refused() {
        let payload: Vec<u8> = (0..1000u32).flat_map(|i| i.to_le_bytes()).collect();
        let sealed = seal(Offset(42), &payload);
        assert_eq!(open(&sealed), Ok((Offset(42), payload.as_slice())));
        assert!(matches!(
            open(&sealed[..sealed.len() - 1]),
            Err(CheckpointError::Truncated(_))
        ));
        assert!(matches!(open(&sealed[..10]), Err(CheckpointError::Truncated(_))));
        for at in [HEADER, HEADER + 7, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x10;
            assert!(
                matches!(open(&bad), Err(CheckpointError::Checksum { .. })),
                "{at}"
            );
        }
        let mut other = sealed.clone();
        other[8] = 9;
        assert_eq!(open(&other), Err(CheckpointError::Version { found: 9 }));
        assert_eq!(open(&[0u8; 64]), Err(CheckpointError::NotACheckpoint));
    }

    #[test]
    fn a_damaged_length_cannot_allocate_past_the_payload() {
        let mut w = Writer::default();
        w.u64(u64::MAX / 2);
        let mut r = Reader::new(&w.buf);
        assert!(r.u32s().is_err());
    }
}
