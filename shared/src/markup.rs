//! Formatting: the small Markdown subset messages may use, parsed here so that every client
//! shows a message alike. Bold (`**b**`, `__b__`), italic (`*i*`, `_i_`), strike (`~~s~~`),
//! inline `code`, fenced code blocks, quotes (`>`), lists (`-`, `*`, `+`, `1.`; nested by
//! indenting), headings (shown bold), rules, and links (`[text](https://…)`, `<https://…>`,
//! `<name@host>`, and bare `http:`, `https:` and `mailto:` links as [`crate::text`] finds them).
//! A single line break is a line break, as in every messenger.
//!
//! It is not CommonMark, on purpose: formatting never spans lines, `_` never opens or closes
//! inside a word (`snake_case` stays), four spaces do not make code (only fences do), and
//! entities and raw HTML are text as typed. A parser of the full language (pulldown-cmark) was
//! tried first and measured: 71.5 KB of gzipped wasm by itself, a quarter of the widget, for
//! rules a chat message does not need (`docs/benchmarks.md`, "Formatting").
//!
//! Nothing in a message is ever HTML: the parser yields a tree of the kinds below (a renderer
//! builds DOM nodes from it, escaping nothing because nothing is markup), images are links to
//! them (never fetched), links go only where [`crate::text::safe_href`] allows, and nesting
//! deeper than [`MAX_DEPTH`] flattens, so a renderer's recursion is bounded. Reading is linear:
//! a delimiter with no closer is remembered as such, so thousands of them cost one pass.
//!
//! Mentions come from the message's ranges ([`crate::mentions`]), not from the markup: a range
//! over text the markup left as it was written shows as a mention, in any block.

use crate::ids::StaffId;
use crate::mentions::MentionRange;
use crate::text::{link_at, safe_href};

/// Containers nested deeper than this (quotes in quotes, lists in lists, bold in italic…) are
/// dropped, their contents kept in the container around them.
pub const MAX_DEPTH: usize = 12;

/// A block of a formatted message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Block {
    /// Text.
    Paragraph(Vec<Inline>),
    /// A heading, shown as a bold paragraph.
    Heading(Vec<Inline>),
    /// A code block: its text as written.
    Code(String),
    /// A quote.
    Quote(Vec<Block>),
    /// A list: numbered from `start`, or bulleted when `None`; each item its blocks.
    List {
        /// The first number of a numbered list.
        start: Option<u64>,
        /// The items.
        items: Vec<Vec<Block>>,
    },
    /// A thematic break (`---`).
    Rule,
}

/// A piece of text inside a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inline {
    /// Text, shown as it is.
    Text(String),
    /// A mention: its text, and whom it names (`None`: everyone).
    Mention {
        /// The text, as written.
        text: String,
        /// Whom.
        staff: Option<StaffId>,
    },
    /// A link (always a safe one).
    Link {
        /// Where it goes.
        href: String,
        /// What it shows.
        children: Vec<Inline>,
    },
    /// Inline code.
    Code(String),
    /// Bold.
    Strong(Vec<Inline>),
    /// Italic.
    Emphasis(Vec<Inline>),
    /// Struck through.
    Strike(Vec<Inline>),
    /// A line break.
    Break,
}

/// Parses a message's text (and its mention ranges) into blocks.
pub fn parse(body: &str, ranges: &[MentionRange]) -> Vec<Block> {
    let mentions = byte_ranges(body, ranges);
    let lines: Vec<Line<'_>> = body
        .split('\n')
        .scan(0usize, |at, l| {
            let line = Line { at: *at, text: l };
            *at += l.len() + 1;
            Some(line)
        })
        .collect();
    let cx = Cx { mentions: &mentions };
    cx.blocks(&lines, 0)
}

/// A line of the text: where it starts in the body (so mention ranges still find it once a
/// quote's or a list's marker is cut off), and what is left of it.
#[derive(Clone, Copy)]
struct Line<'a> {
    at: usize,
    text: &'a str,
}

impl<'a> Line<'a> {
    /// The line without its first `n` bytes.
    fn cut(self, n: usize) -> Line<'a> {
        let n = n.min(self.text.len());
        Line {
            at: self.at + n,
            text: &self.text[n..],
        }
    }

    fn blank(&self) -> bool {
        self.text.trim().is_empty()
    }

    /// Spaces it starts with (a tab counts as four).
    fn indent(&self) -> usize {
        self.text
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .map(|c| if c == '\t' { 4 } else { 1 })
            .sum()
    }
}

struct Cx<'m> {
    mentions: &'m [(usize, usize, Option<StaffId>)],
}

/// A list item's marker: its length in bytes, and the number of an ordered one.
fn list_marker(text: &str) -> Option<(usize, Option<u64>)> {
    let lead = text.len() - text.trim_start_matches(' ').len();
    if lead > 3 {
        return None;
    }
    let rest = &text[lead..];
    let bytes = rest.as_bytes();
    if matches!(bytes.first(), Some(b'-' | b'*' | b'+')) && matches!(bytes.get(1), Some(b' ') | None) {
        return Some((lead + 2.min(rest.len()), None));
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=9).contains(&digits)
        && matches!(bytes.get(digits), Some(b'.' | b')'))
        && matches!(bytes.get(digits + 1), Some(b' ') | None)
    {
        let n = rest[..digits].parse().ok();
        return Some((lead + (digits + 2).min(rest.len()), n));
    }
    None
}

/// Whether a line is a thematic break: three or more of one of `-`, `*`, `_`, spaces aside.
fn is_rule(text: &str) -> bool {
    let t: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    t.len() >= 3
        && matches!(t[0], '-' | '*' | '_')
        && t.iter().all(|c| *c == t[0])
        && text.len() - text.trim_start().len() <= 3
}

fn fence(text: &str) -> bool {
    let t = text.trim_start_matches(' ');
    text.len() - t.len() <= 3 && t.starts_with("```")
}

fn quote_marker(text: &str) -> Option<usize> {
    let t = text.trim_start_matches(' ');
    let lead = text.len() - t.len();
    (lead <= 3 && t.starts_with('>')).then(|| lead + 1 + usize::from(t[1..].starts_with(' ')))
}

fn heading(text: &str) -> Option<usize> {
    let t = text.trim_start_matches(' ');
    let hashes = t.bytes().take_while(|b| *b == b'#').count();
    ((1..=6).contains(&hashes) && (t.len() == hashes || t.as_bytes()[hashes] == b' '))
        .then(|| text.len() - t.len() + (hashes + 1).min(t.len()))
}

/// Lines past [`MAX_DEPTH`]: every quote and list marker they start with cut off, so what they
/// hold is read at the same depth (and the reading never recurses deeper).
fn flat<'a>(lines: &[Line<'a>]) -> Vec<Line<'a>> {
    lines
        .iter()
        .map(|l| {
            let mut l = *l;
            loop {
                if let Some(n) = quote_marker(l.text) {
                    l = l.cut(n);
                } else if let Some((n, _)) = list_marker(l.text).filter(|_| !is_rule(l.text)) {
                    l = l.cut(n);
                } else {
                    break l;
                }
            }
        })
        .collect()
}

impl Cx<'_> {
    /// The blocks of some lines, `depth` containers deep.
    fn blocks(&self, lines: &[Line<'_>], depth: usize) -> Vec<Block> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            if line.blank() {
                i += 1;
            } else if fence(line.text) {
                let mut code = String::new();
                i += 1;
                while i < lines.len() && !fence(lines[i].text) {
                    code.push_str(lines[i].text);
                    code.push('\n');
                    i += 1;
                }
                i += 1; // the closing fence (or the end)
                out.push(Block::Code(code));
            } else if let Some(n) = quote_marker(line.text) {
                let mut inner = vec![line.cut(n)];
                i += 1;
                while i < lines.len()
                    && let Some(n) = quote_marker(lines[i].text)
                {
                    inner.push(lines[i].cut(n));
                    i += 1;
                }
                if depth < MAX_DEPTH {
                    out.push(Block::Quote(self.blocks(&inner, depth + 1)));
                } else {
                    out.extend(self.blocks(&flat(&inner), depth));
                }
            } else if is_rule(line.text) {
                out.push(Block::Rule);
                i += 1;
            } else if let Some((_, start)) = list_marker(line.text) {
                let mut items = Vec::new();
                while i < lines.len() {
                    let Some((n, number)) = list_marker(lines[i].text) else {
                        break;
                    };
                    if number.is_some() != start.is_some() || is_rule(lines[i].text) {
                        break;
                    }
                    // The item: its first line, then the lines indented under it.
                    let mut inner = vec![lines[i].cut(n)];
                    i += 1;
                    while i < lines.len() && !lines[i].blank() && lines[i].indent() >= 2 {
                        let cut = lines[i].text.len() - lines[i].text.trim_start().len();
                        inner.push(lines[i].cut(cut.min(n.max(2))));
                        i += 1;
                    }
                    items.push(if depth < MAX_DEPTH {
                        self.blocks(&inner, depth + 2)
                    } else {
                        self.blocks(&flat(&inner), depth)
                    });
                }
                if depth < MAX_DEPTH {
                    out.push(Block::List { start, items });
                } else {
                    out.extend(items.into_iter().flatten());
                }
            } else if let Some(n) = heading(line.text) {
                let text = line.cut(n);
                let text = Line {
                    at: text.at,
                    text: text.text.trim_end().trim_end_matches('#').trim_end(),
                };
                out.push(Block::Heading(self.inlines(text, depth + 1)));
                i += 1;
            } else {
                // A paragraph: lines up to a blank one or one that starts another block.
                let mut inlines = Vec::new();
                loop {
                    if !inlines.is_empty() {
                        inlines.push(Inline::Break);
                    }
                    inlines.extend(self.inlines(lines[i], depth + 1));
                    i += 1;
                    let next = lines.get(i);
                    let ends = next.is_none_or(|l| {
                        l.blank()
                            || fence(l.text)
                            || quote_marker(l.text).is_some()
                            || list_marker(l.text).is_some()
                            || is_rule(l.text)
                            || heading(l.text).is_some()
                    });
                    if ends {
                        break;
                    }
                }
                out.push(Block::Paragraph(inlines));
            }
        }
        out
    }

    /// The inlines of one line. Formatting never spans lines, as in the messengers staff know.
    fn inlines(&self, line: Line<'_>, depth: usize) -> Vec<Inline> {
        let mut out = Vec::new();
        let mut scan = Scan {
            cx: self,
            text: line.text,
            at: line.at,
            no_closer: Vec::new(),
            no_code: Vec::new(),
            in_link: false,
        };
        scan.run(0, line.text.len(), depth, &mut out);
        out
    }
}

/// One line being read into inlines.
struct Scan<'c, 'm, 't> {
    cx: &'c Cx<'m>,
    text: &'t str,
    /// Where the line starts in the body.
    at: usize,
    /// Delimiters known to have no closer from some position on (so a text of thousands of
    /// unmatched `*` is read once, not once per `*`).
    no_closer: Vec<(&'static str, usize)>,
    /// Backtick runs known to have no closing run from some position on.
    no_code: Vec<(usize, usize)>,
    /// Inside a link's text: no links in it.
    in_link: bool,
}

/// The longest link text read, in characters (its destination may be twice as long): past
/// it, a `[` is text, so a text of thousands of `[` is read in linear time.
const LINK_TEXT_MAX: usize = 500;

const DELIMITERS: [(&str, u8); 5] = [("**", 0), ("__", 0), ("~~", 2), ("*", 1), ("_", 1)];

impl Scan<'_, '_, '_> {
    /// Reads `text[from..to]`, `depth` containers deep, into `out`.
    fn run(&mut self, from: usize, to: usize, depth: usize, out: &mut Vec<Inline>) {
        let text = self.text;
        let mut plain = from;
        let mut i = from;
        while i < to {
            let c = text.as_bytes()[i];
            let one = |made: Option<(Inline, usize)>| made.map(|(i, next)| (vec![i], next));
            let made: Option<(Vec<Inline>, usize)> = match c {
                b'\\' if text[i + 1..to].starts_with(|c: char| c.is_ascii_punctuation()) => {
                    Some((vec![Inline::Text(text[i + 1..i + 2].to_string())], i + 2))
                }
                b'`' => one(self.code(i, to)),
                b'[' => self.link(i, to, depth, 1),
                b'!' if text[i + 1..to].starts_with('[') => self.link(i, to, depth, 2),
                b'<' if !self.in_link => one(self.autolink(i, to)),
                b'*' | b'_' | b'~' if depth <= MAX_DEPTH => one(self.emphasis(i, to, depth)),
                b'h' | b'H' | b'm' | b'M' if !self.in_link => one(link_at(&text[..to], i).map(|end| {
                    let l = &text[i..end];
                    let link = Inline::Link {
                        href: l.to_string(),
                        children: vec![Inline::Text(l.to_string())],
                    };
                    (link, end)
                })),
                _ => None,
            };
            match made {
                Some((inlines, next)) => {
                    self.plain(plain, i, out);
                    out.extend(inlines);
                    i = next;
                    plain = next;
                }
                None => i += text[i..].chars().next().map_or(1, char::len_utf8),
            }
        }
        self.plain(plain, to, out);
    }

    /// Text as written, with mentions where ranges cover it.
    fn plain(&self, from: usize, to: usize, out: &mut Vec<Inline>) {
        if from < to {
            out.extend(text_pieces(
                &self.text[from..to],
                self.at + from,
                self.cx.mentions,
            ));
        }
    }

    /// A code span: a run of backticks up to the next run of as many.
    fn code(&mut self, i: usize, to: usize) -> Option<(Inline, usize)> {
        let text = &self.text[..to];
        let n = text[i..].bytes().take_while(|b| *b == b'`').count();
        if self.no_code.iter().any(|(len, from)| *len == n && *from <= i) {
            return None;
        }
        let run = &text[i..i + n];
        let mut from = i + n;
        while let Some(k) = text[from..].find(run) {
            let at = from + k;
            let len = text[at..].bytes().take_while(|b| *b == b'`').count();
            if len == n {
                let inner = &text[i + n..at];
                let inner = if inner.len() > 2 && inner.starts_with(' ') && inner.ends_with(' ') {
                    &inner[1..inner.len() - 1]
                } else {
                    inner
                };
                return Some((Inline::Code(inner.to_string()), at + n));
            }
            from = at + len;
        }
        self.no_code.push((n, i));
        None
    }

    /// `[text](destination)` (or `![alt](destination)`, an image, shown as a link): a link
    /// where the destination may be followed, its text alone where not.
    fn link(&mut self, i: usize, to: usize, depth: usize, open: usize) -> Option<(Vec<Inline>, usize)> {
        if self.in_link {
            return None;
        }
        let text = &self.text[..to];
        let label_from = i + open;
        let mut nest = 0usize;
        let mut close = None;
        for (k, c) in text[label_from..].char_indices().take(LINK_TEXT_MAX) {
            match c {
                '[' => nest += 1,
                ']' if nest == 0 => {
                    close = Some(label_from + k);
                    break;
                }
                ']' => nest -= 1,
                _ => {}
            }
        }
        let close = close?;
        if !text[close + 1..].starts_with('(') {
            return None;
        }
        let dest_from = close + 2;
        let mut parens = 0usize;
        let mut dest_end = None;
        for (k, c) in text[dest_from..].char_indices().take(LINK_TEXT_MAX * 2) {
            match c {
                c if c.is_whitespace() => return None,
                '(' => parens += 1,
                ')' if parens == 0 => {
                    dest_end = Some(dest_from + k);
                    break;
                }
                ')' => parens -= 1,
                _ => {}
            }
        }
        let dest_end = dest_end?;
        let href = &text[dest_from..dest_end];
        let mut children = Vec::new();
        if depth <= MAX_DEPTH {
            self.in_link = true;
            self.run(label_from, close, depth + 1, &mut children);
            self.in_link = false;
        } else {
            children.push(Inline::Text(text[label_from..close].to_string()));
        }
        let made = if safe_href(href) && !href.contains('"') {
            vec![Inline::Link {
                href: href.to_string(),
                children,
            }]
        } else {
            // A destination that may not be followed: its text alone.
            children
        };
        Some((made, dest_end + 1))
    }

    /// `<https://…>` or `<name@host>`.
    fn autolink(&mut self, i: usize, to: usize) -> Option<(Inline, usize)> {
        let text = &self.text[..to];
        let end = i + 1 + text[i + 1..].find('>')?;
        let inner = &text[i + 1..end];
        if inner.is_empty()
            || inner.contains(char::is_whitespace)
            || inner.contains('<')
            || inner.contains('"')
        {
            return None;
        }
        let href = if safe_href(inner) {
            inner.to_string()
        } else if inner.contains('@') && !inner.contains(':') && !inner.starts_with('@') {
            format!("mailto:{inner}")
        } else {
            return None;
        };
        let link = Inline::Link {
            href,
            children: vec![Inline::Text(inner.to_string())],
        };
        Some((link, end + 1))
    }

    /// Bold (`**`, `__`), italic (`*`, `_`) or strike (`~~`) from a delimiter at `i` to the
    /// next closing one: an opener is followed by a non-space, a closer follows one, and `_`
    /// never opens or closes inside a word (`snake_case` stays as it is).
    fn emphasis(&mut self, i: usize, to: usize, depth: usize) -> Option<(Inline, usize)> {
        let text = &self.text[..to];
        let before = text[..i].chars().next_back();
        for (delim, kind) in DELIMITERS {
            if !text[i..].starts_with(delim) {
                continue;
            }
            let after_open = text[i + delim.len()..].chars().next();
            if after_open.is_none_or(char::is_whitespace) {
                continue;
            }
            if delim.starts_with('_') && before.is_some_and(char::is_alphanumeric) {
                continue;
            }
            if self.no_closer.iter().any(|(d, from)| *d == delim && *from <= i) {
                continue;
            }
            let Some(close) = self.closer(delim, i + delim.len() + 1, to) else {
                self.no_closer.push((delim, i));
                continue;
            };
            let mut children = Vec::new();
            self.run(i + delim.len(), close, depth + 1, &mut children);
            let made = match kind {
                0 => Inline::Strong(children),
                1 => Inline::Emphasis(children),
                _ => Inline::Strike(children),
            };
            return Some((made, close + delim.len()));
        }
        None
    }

    /// The first closing `delim` at or after `from`.
    fn closer(&self, delim: &str, from: usize, to: usize) -> Option<usize> {
        let text = &self.text[..to];
        let mut at = from;
        while at <= text.len() {
            let k = at + text.get(at..)?.find(delim)?;
            let prev = text[..k].chars().next_back();
            let next = text[k + delim.len()..].chars().next();
            let doubled = delim.len() == 1 && next == delim.chars().next();
            let word_inside = delim.starts_with('_') && next.is_some_and(char::is_alphanumeric);
            if prev.is_some_and(|p| !p.is_whitespace()) && !doubled && !word_inside {
                return Some(k);
            }
            at = k + delim.len();
        }
        None
    }
}

/// Mention ranges as byte ranges of the body (those that fit it).
fn byte_ranges(body: &str, ranges: &[MentionRange]) -> Vec<(usize, usize, Option<StaffId>)> {
    if ranges.is_empty() {
        return Vec::new();
    }
    let at: Vec<usize> = body
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(body.len()))
        .collect();
    ranges
        .iter()
        .filter_map(|r| {
            let (s, e) = (*at.get(r.start as usize)?, *at.get(r.end as usize)?);
            (s < e).then(|| (s, e, r.staff.clone()))
        })
        .collect()
}

/// Text as written at byte `start` of the body: mentions where ranges cover it, text around.
fn text_pieces(text: &str, start: usize, mentions: &[(usize, usize, Option<StaffId>)]) -> Vec<Inline> {
    let mut out = Vec::new();
    let end = start + text.len();
    let mut from = start;
    for (s, e, staff) in mentions {
        let (s, e) = ((*s).max(from), (*e).min(end));
        if s >= e || !text.is_char_boundary(s - start) || !text.is_char_boundary(e - start) {
            continue;
        }
        if from < s {
            out.push(Inline::Text(text[from - start..s - start].to_string()));
        }
        out.push(Inline::Mention {
            text: text[s - start..e - start].to_string(),
            staff: staff.clone(),
        });
        from = e;
    }
    if from < end {
        out.push(Inline::Text(text[from - start..].to_string()));
    }
    out
}

/// The words of a formatted message, without its markup: what search indexes, previews and
/// notifications show. Blocks are separated by line breaks.
pub fn plain_text(body: &str) -> String {
    plain_blocks(&parse(body, &[]))
}

fn plain_blocks(blocks: &[Block]) -> String {
    let mut out = String::new();
    for b in blocks {
        if !out.is_empty() {
            out.push('\n');
        }
        match b {
            Block::Paragraph(i) | Block::Heading(i) => out.push_str(&plain_inlines(i)),
            Block::Code(c) => out.push_str(c.trim_end_matches('\n')),
            Block::Quote(q) => out.push_str(&plain_blocks(q)),
            Block::List { items, .. } => {
                let lines: Vec<String> = items.iter().map(|i| plain_blocks(i)).collect();
                out.push_str(&lines.join("\n"));
            }
            Block::Rule => {}
        }
    }
    out
}

fn plain_inlines(inlines: &[Inline]) -> String {
    inlines.iter().map(plain_inline).collect()
}

fn plain_inline(inline: &Inline) -> String {
    match inline {
        Inline::Text(t) | Inline::Code(t) => t.clone(),
        Inline::Mention { text, .. } => text.clone(),
        Inline::Link { children, .. }
        | Inline::Strong(children)
        | Inline::Emphasis(children)
        | Inline::Strike(children) => plain_inlines(children),
        Inline::Break => "\n".into(),
    }
}

/// The tree as HTML, every text escaped: the reference for what a renderer makes (the widget
/// builds the same elements as DOM nodes), used by the tests and the fuzz target to show that
/// no text of a message ever becomes markup.
pub fn to_html(blocks: &[Block]) -> String {
    let mut out = String::new();
    for b in blocks {
        block_html(b, &mut out);
    }
    out
}

fn block_html(b: &Block, out: &mut String) {
    match b {
        Block::Paragraph(i) => wrap(out, "p", |o| inlines_html(i, o)),
        Block::Heading(i) => wrap(out, "p", |o| wrap(o, "strong", |o| inlines_html(i, o))),
        Block::Code(c) => wrap(out, "pre", |o| wrap(o, "code", |o| escape(c, o))),
        Block::Quote(q) => wrap(out, "blockquote", |o| q.iter().for_each(|b| block_html(b, o))),
        Block::List { start, items } => {
            let tag = if start.is_some() { "ol" } else { "ul" };
            wrap(out, tag, |o| {
                for item in items {
                    wrap(o, "li", |o| item.iter().for_each(|b| block_html(b, o)));
                }
            })
        }
        Block::Rule => out.push_str("<hr>"),
    }
}

fn inlines_html(inlines: &[Inline], out: &mut String) {
    for i in inlines {
        match i {
            Inline::Text(t) => escape(t, out),
            Inline::Mention { text, .. } => wrap(out, "mark", |o| escape(text, o)),
            Inline::Link { href, children } => {
                out.push_str("<a href=\"");
                escape(href, out);
                out.push_str("\">");
                inlines_html(children, out);
                out.push_str("</a>");
            }
            Inline::Code(c) => wrap(out, "code", |o| escape(c, o)),
            Inline::Strong(c) => wrap(out, "strong", |o| inlines_html(c, o)),
            Inline::Emphasis(c) => wrap(out, "em", |o| inlines_html(c, o)),
            Inline::Strike(c) => wrap(out, "s", |o| inlines_html(c, o)),
            Inline::Break => out.push_str("<br>"),
        }
    }
}

fn wrap(out: &mut String, tag: &str, inner: impl FnOnce(&mut String)) {
    out.push('<');
    out.push_str(tag);
    out.push('>');
    inner(out);
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// How deep the tree goes (blocks and inlines), for the bound the renderers rely on.
pub fn depth(blocks: &[Block]) -> usize {
    fn inl(i: &[Inline]) -> usize {
        i.iter()
            .map(|i| match i {
                Inline::Link { children, .. }
                | Inline::Strong(children)
                | Inline::Emphasis(children)
                | Inline::Strike(children) => 1 + inl(children),
                _ => 1,
            })
            .max()
            .unwrap_or(0)
    }
    blocks
        .iter()
        .map(|b| match b {
            Block::Paragraph(i) | Block::Heading(i) => 1 + inl(i),
            Block::Quote(q) => 1 + depth(q),
            Block::List { items, .. } => 2 + items.iter().map(|i| depth(i)).max().unwrap_or(0),
            Block::Code(_) | Block::Rule => 1,
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(body: &str) -> String {
        to_html(&parse(body, &[]))
    }

    #[test]
    fn the_subset_renders() {
        assert_eq!(
            html("**b** *i* _i_ ~~s~~ `c`"),
            "<p><strong>b</strong> <em>i</em> <em>i</em> <s>s</s> <code>c</code></p>"
        );
        assert_eq!(
            html("```\nlet x = 1 < 2;\n```"),
            "<pre><code>let x = 1 &lt; 2;\n</code></pre>"
        );
        assert_eq!(
            html("> quoted\n> more"),
            "<blockquote><p>quoted<br>more</p></blockquote>"
        );
        assert_eq!(html("- a\n- b"), "<ul><li><p>a</p></li><li><p>b</p></li></ul>");
        assert_eq!(html("3. c\n4. d"), "<ol><li><p>c</p></li><li><p>d</p></li></ol>");
        assert_eq!(html("line one\nline two"), "<p>line one<br>line two</p>");
        assert_eq!(html("# Title"), "<p><strong>Title</strong></p>");
        assert_eq!(
            html("- a\n  - b\n- c"),
            "<ul><li><p>a</p><ul><li><p>b</p></li></ul></li><li><p>c</p></li></ul>"
        );
        assert_eq!(html("text\n- item"), "<p>text</p><ul><li><p>item</p></li></ul>");
        assert_eq!(html("---"), "<hr>");
        assert_eq!(html("    not code"), "<p>    not code</p>");
    }

    #[test]
    fn links_only_where_safe() {
        assert_eq!(
            html("[docs](https://x.org)"),
            "<p><a href=\"https://x.org\">docs</a></p>"
        );
        assert_eq!(html("[x](javascript:alert(1))"), "<p>x</p>");
        assert_eq!(
            html("see https://x.org/a."),
            "<p>see <a href=\"https://x.org/a\">https://x.org/a</a>.</p>"
        );
        assert_eq!(
            html("<https://x.org>"),
            "<p><a href=\"https://x.org\">https://x.org</a></p>"
        );
        assert_eq!(
            html("<ops@acme.test>"),
            "<p><a href=\"mailto:ops@acme.test\">ops@acme.test</a></p>"
        );
        assert_eq!(
            html("![cat](https://x.org/c.png)"),
            "<p><a href=\"https://x.org/c.png\">cat</a></p>"
        );
        assert_eq!(html("![cat](data:image/png;base64,AAAA)"), "<p>cat</p>");
    }

    #[test]
    fn html_in_a_message_is_text() {
        assert_eq!(html("<b>hi</b>"), "<p>&lt;b&gt;hi&lt;/b&gt;</p>");
        assert_eq!(
            html("<script>alert(1)</script>"),
            "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
        );
        // Entities are text as typed: "&amp;" shows as "&amp;".
        assert_eq!(html("a &amp; b"), "<p>a &amp;amp; b</p>");
        assert_eq!(
            html("snake_case_name and 2*3*4"),
            "<p>snake_case_name and 2<em>3</em>4</p>"
        );
        assert_eq!(html("**not closed"), "<p>**not closed</p>");
        assert_eq!(html("`a` ``b`c``"), "<p><code>a</code> <code>b`c</code></p>");
        assert_eq!(html("\\*not em\\*"), "<p>*not em*</p>");
        assert_eq!(
            html("[a *b*](https://x.org/p_(1))"),
            "<p><a href=\"https://x.org/p_(1)\">a <em>b</em></a></p>"
        );
    }

    #[test]
    fn mentions_show_wherever_the_text_is_as_written() {
        let r = |start, end| MentionRange {
            start,
            end,
            staff: Some(StaffId::new("bob").unwrap()),
        };
        let blocks = parse("hi **@Bob Chen**!", &[r(5, 14)]);
        assert_eq!(
            to_html(&blocks),
            "<p>hi <strong><mark>@Bob Chen</mark></strong>!</p>"
        );
        let blocks = parse("- ask @bob_x", &[r(6, 12)]);
        assert_eq!(
            to_html(&blocks),
            "<ul><li><p>ask <mark>@bob_x</mark></p></li></ul>"
        );
    }

    #[test]
    fn deep_nesting_flattens() {
        let body = format!("{}deep", "> ".repeat(500));
        let blocks = parse(&body, &[]);
        assert!(depth(&blocks) <= MAX_DEPTH + 2, "{}", depth(&blocks));
        assert_eq!(plain_text(&body), "deep");
        let body = format!("{}x{}", "*_".repeat(300), "_*".repeat(300));
        assert!(depth(&parse(&body, &[])) <= MAX_DEPTH + 2);
        for body in [
            "> ".repeat(4000),
            "- ".repeat(4000) + "x",
            "> - ".repeat(2000) + "x",
            "1. ".repeat(2600) + "x",
        ] {
            let blocks = parse(&body, &[]);
            assert!(depth(&blocks) <= MAX_DEPTH + 2, "{}", depth(&blocks));
        }
    }

    #[test]
    fn unmatched_delimiters_by_the_thousand_are_text() {
        for body in [
            "a*".repeat(4000),
            "_a".repeat(4000),
            "`a".repeat(4000),
            "[".repeat(8000),
            "**a ".repeat(2000),
        ] {
            assert!(plain_text(&body).len() >= body.len() / 2, "{}", &body[..8]);
        }
    }

    #[test]
    fn plain_text_is_the_words() {
        assert_eq!(
            plain_text("**Deploy** the `api` to [prod](https://x.org)"),
            "Deploy the api to prod"
        );
        assert_eq!(plain_text("- one\n- two"), "one\ntwo");
    }
}
