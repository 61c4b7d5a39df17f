//! Any text as a message's body, with mention ranges from the fuzzer's bytes: the Markdown
//! renderer never panics, keeps its tree within its depth, makes only safe links, and its HTML
//! holds no tag but its own (no text of a message ever becomes markup).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_shared::markup::{self, MAX_DEPTH};
use tally_shared::mentions::MentionRange;

fuzz_target!(|data: &[u8]| {
    let (head, rest) = data.split_at(data.len().min(8));
    let Ok(body) = std::str::from_utf8(rest) else { return };
    let ranges: Vec<MentionRange> = head
        .chunks(2)
        .scan(0u32, |at, c| {
            let start = *at + u32::from(c[0] % 32);
            let end = start + 1 + u32::from(*c.get(1).unwrap_or(&0) % 16);
            *at = end;
            Some(MentionRange { start, end, staff: None })
        })
        .collect();
    let blocks = markup::parse(body, &ranges);
    assert!(markup::depth(&blocks) <= MAX_DEPTH + 2);
    let html = markup::to_html(&blocks);
    const TAGS: [&str; 14] = ["p", "strong", "em", "s", "code", "pre", "blockquote", "ul", "ol", "li", "mark", "a", "br", "hr"];
    for tag in html.split('<').skip(1) {
        let name: String = tag.trim_start_matches('/').chars().take_while(char::is_ascii_alphanumeric).collect();
        assert!(TAGS.contains(&name.as_str()), "{name:?} in {html}");
    }
    let _ = markup::plain_text(body);
});
