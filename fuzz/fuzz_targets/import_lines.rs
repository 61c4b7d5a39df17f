//! Any text as an import file: checking it never panics, and every line is either accepted or
//! reported with its number and a reason (the importer once panicked on a time with a
//! character where its offset's digits go).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count();
    let bad = tally_relay::import::check(text);
    let mut numbers: Vec<usize> = bad.iter().map(|(n, _)| *n).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), bad.len(), "a line reported twice");
    assert!(bad.iter().all(|(n, why)| (1..=lines).contains(n) && !why.is_empty()));
});
