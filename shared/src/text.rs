//! Message text as a widget shows it: plain text with the links in it found, so that every
//! client makes the same links. Only `http:`, `https:` and `mailto:` become links; nothing in a
//! message is ever markup.

/// A piece of a message's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Text, shown as it is.
    Text(&'a str),
    /// A link: shown as written, pointing where it says.
    Link(&'a str),
}

/// What may start a link.
const SCHEMES: [&str; 3] = ["https://", "http://", "mailto:"];

/// Splits `text` into text and links. A link starts with one of [`SCHEMES`] (any case) at the
/// start of the text or after a character that is not a letter or a digit, runs to the next
/// space or `<`, `>`, `"`, and leaves out trailing punctuation (`.`, `,`, `;`, `:`, `!`, `?`,
/// quotes) and a closing bracket it did not open. A scheme with nothing after it is text.
pub fn segments(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut plain_from = 0;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < text.len() {
        let at_boundary = !text[..i].chars().next_back().is_some_and(char::is_alphanumeric);
        if at_boundary && let Some(scheme) = scheme_at(text, i) {
            let end = link_end(text, i, scheme.len());
            if end > i + scheme.len() {
                if plain_from < i {
                    out.push(Segment::Text(&text[plain_from..i]));
                }
                out.push(Segment::Link(&text[i..end]));
                plain_from = end;
                i = end;
                continue;
            }
        }
        i += utf8_len(bytes[i]);
    }
    if plain_from < text.len() {
        out.push(Segment::Text(&text[plain_from..]));
    }
    out
}

/// Where a link that starts at byte `i` of `text` ends, if one starts there: the rule of
/// [`segments`] (a scheme at a boundary, and something after it), for a scanner that walks the
/// text itself (the Markdown parser, so that markup characters inside a link stay the link's).
pub fn link_at(text: &str, i: usize) -> Option<usize> {
    let at_boundary = !text[..i].chars().next_back().is_some_and(char::is_alphanumeric);
    let scheme = scheme_at(text, i).filter(|_| at_boundary)?;
    let end = link_end(text, i, scheme.len());
    (end > i + scheme.len()).then_some(end)
}

/// The scheme a link at `i` starts with, if one does.
fn scheme_at(text: &str, i: usize) -> Option<&'static str> {
    SCHEMES.iter().copied().find(|s| {
        text.len() - i >= s.len()
            && text.is_char_boundary(i + s.len())
            && text[i..i + s.len()].eq_ignore_ascii_case(s)
    })
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Where a link that starts at `start` (its scheme `scheme_len` bytes long) ends.
fn link_end(text: &str, start: usize, scheme_len: usize) -> usize {
    let rest = &text[start..];
    let mut end = rest
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
        .map_or(rest.len(), |(i, _)| i);
    // Trailing punctuation belongs to the sentence, and so does a closing bracket the link
    // did not open ("(see https://x.org/a)").
    while let Some(last) = rest[..end].chars().next_back() {
        let unopened = |open: char, close: char| {
            last == close && rest[..end].matches(open).count() < rest[..end].matches(close).count()
        };
        if matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '’' | '”' | '»')
            || unopened('(', ')')
            || unopened('[', ']')
            || unopened('{', '}')
        {
            end -= last.len_utf8();
        } else {
            break;
        }
    }
    if end <= scheme_len { start } else { start + end }
}

/// Whether a link may be followed (its scheme is one of [`SCHEMES`]): checked again where the
/// link is made, whatever made the segment.
pub fn safe_href(link: &str) -> bool {
    SCHEMES.iter().any(|s| {
        link.len() > s.len()
            && link
                .get(..s.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(s))
    })
}

#[cfg(test)]
mod tests {
    use super::Segment::{Link, Text};
    use super::*;

    #[test]
    fn links_are_found_where_they_start_and_end() {
        assert_eq!(segments("no links here"), vec![Text("no links here")]);
        assert_eq!(
            segments("see https://example.org/a?b=1#c, then"),
            vec![Text("see "), Link("https://example.org/a?b=1#c"), Text(", then")]
        );
        assert_eq!(
            segments("(docs: http://x.org/p_(1)) ok"),
            vec![Text("(docs: "), Link("http://x.org/p_(1)"), Text(") ok")]
        );
        assert_eq!(
            segments("mailto:ops@acme.test."),
            vec![Link("mailto:ops@acme.test"), Text(".")]
        );
        assert_eq!(segments("HTTPS://A.B"), vec![Link("HTTPS://A.B")]);
        assert_eq!(
            segments("«https://x.org»"),
            vec![Text("«"), Link("https://x.org"), Text("»")]
        );
    }

    #[test]
    fn nothing_else_is_a_link() {
        for text in [
            "javascript:alert(1)",
            "data:text/html,<b>x</b>",
            "xhttps://x.org",
            "https://",
            "http:// spaced",
            "ftp://files.example",
            "<a href=\"https://x.org\">x</a>",
        ] {
            for s in segments(text) {
                if let Link(l) = s {
                    assert!(
                        safe_href(l) && !l.contains('"') && !l.contains('<'),
                        "{text:?} made {l:?}"
                    );
                }
            }
        }
        assert_eq!(segments("xhttps://x.org"), vec![Text("xhttps://x.org")]);
        assert_eq!(segments("https://"), vec![Text("https://")]);
        assert!(!safe_href("javascript:alert(1)"));
        // A destination whose first bytes end inside a character (a Markdown link's, found
        // by the renderer's property test) is no link, not a panic.
        assert!(!safe_href("mailtoé:x"));
    }

    #[test]
    fn any_text_splits_back_into_itself() {
        for text in [
            "é https://ü.org/ä ü",
            "日本 http://例え.jp/パス。",
            "",
            "https://a.b https://c.d",
        ] {
            let joined: String = segments(text)
                .into_iter()
                .map(|s| match s {
                    Text(t) | Link(t) => t,
                })
                .collect();
            assert_eq!(joined, text);
        }
    }
}
