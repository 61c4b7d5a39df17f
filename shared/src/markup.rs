//! Formatting: the small Markdown subset messages may use, parsed here so that every client
//! shows a message alike. Bold (`**b**`), italic (`*i*`, `_i_`), strike (`~~s~~`), inline
//! `code`, fenced and indented code blocks, quotes (`>`), lists (`-`, `*`, `1.`), and links
//! (`[text](https://…)`, `<https://…>`, and bare `http:`, `https:` and `mailto:` links as
//! [`crate::text`] finds them). A single line break is a line break, as in every messenger.
//!
//! Nothing in a message is ever HTML: the parser (pulldown-cmark, without its HTML writer)
//! yields a tree of the kinds below, raw HTML in the text stays text, an image is a link to it
//! (never fetched), links go only where [`crate::text::safe_href`] allows, and nesting deeper
//! than [`MAX_DEPTH`] flattens, so a renderer's recursion is bounded. Headings show as bold
//! paragraphs; tables, footnotes and the like are not enabled, so they stay text.
//!
//! Mentions come from the message's ranges ([`crate::mentions`]), not from the markup: a range
//! over text the markup left as it was written shows as a mention, in any block.

use pulldown_cmark::{Event, LinkType, Options, Parser, Tag};

use crate::ids::StaffId;
use crate::mentions::MentionRange;
use crate::text::{Segment, safe_href, segments};

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

/// What an open container collects.
enum Open {
    /// Blocks (the message, a quote, a list item), with inlines not yet in a paragraph (a
    /// tight list's items hold text directly).
    Blocks(BlockKind, Vec<Block>, Vec<Inline>),
    /// A list's items.
    List(Option<u64>, Vec<Vec<Block>>),
    /// Inlines (a paragraph, a heading, bold, italic, strike, a link).
    Inlines(InlineKind, Vec<Inline>),
    /// A code block's text.
    Code(String),
    /// A container past [`MAX_DEPTH`] (or one not shown): its contents go to the one around.
    Skip,
}

#[derive(Clone, Copy)]
enum BlockKind {
    Root,
    Quote,
    Item,
}

enum InlineKind {
    Paragraph,
    Heading,
    Strong,
    Emphasis,
    Strike,
    /// A link or an image: where it goes, if it may go there.
    Link(Option<String>),
}

/// Parses a message's text (and its mention ranges) into blocks.
pub fn parse(body: &str, ranges: &[MentionRange]) -> Vec<Block> {
    let mentions = byte_ranges(body, ranges);
    let mut stack: Vec<Open> = vec![Open::Blocks(BlockKind::Root, Vec::new(), Vec::new())];
    let parser = Parser::new_ext(body, Options::ENABLE_STRIKETHROUGH).into_offset_iter();
    for (event, at) in parser {
        match event {
            Event::Start(tag) => {
                let open = if stack.len() > MAX_DEPTH {
                    Open::Skip
                } else {
                    opened(tag)
                };
                if let Open::Blocks(..) | Open::List(..) | Open::Code(_) = open {
                    flush_loose(&mut stack);
                }
                stack.push(open);
            }
            Event::End(_) => {
                if stack.len() > 1 {
                    let open = stack.pop().expect("the root stays");
                    close(&mut stack, open);
                }
            }
            Event::Text(text) => {
                if let Some(Open::Code(code)) = stack.iter_mut().rev().find(|o| !matches!(o, Open::Skip)) {
                    code.push_str(&text);
                    continue;
                }
                let written = body.get(at.clone()) == Some(&*text);
                let in_link = stack
                    .iter()
                    .any(|o| matches!(o, Open::Inlines(InlineKind::Link(_), _)));
                for piece in text_pieces(&text, written.then_some(at.start), &mentions, !in_link) {
                    push_inline(&mut stack, piece);
                }
            }
            Event::Code(code) => push_inline(&mut stack, Inline::Code(code.to_string())),
            // Raw HTML is text, as written.
            Event::Html(html) | Event::InlineHtml(html) => {
                push_inline(&mut stack, Inline::Text(html.to_string()))
            }
            Event::SoftBreak | Event::HardBreak => push_inline(&mut stack, Inline::Break),
            Event::Rule => {
                flush_loose(&mut stack);
                push_block(&mut stack, Block::Rule);
            }
            // Not enabled, so never emitted; kept as text should that change.
            Event::InlineMath(t) | Event::DisplayMath(t) | Event::FootnoteReference(t) => {
                push_inline(&mut stack, Inline::Text(t.to_string()))
            }
            Event::TaskListMarker(done) => push_inline(
                &mut stack,
                Inline::Text(if done { "[x] " } else { "[ ] " }.into()),
            ),
        }
    }
    while stack.len() > 1 {
        let open = stack.pop().expect("more than the root");
        close(&mut stack, open);
    }
    match stack.pop() {
        Some(Open::Blocks(_, mut blocks, loose)) => {
            if !loose.is_empty() {
                blocks.push(Block::Paragraph(loose));
            }
            blocks
        }
        _ => Vec::new(),
    }
}

/// The container a tag opens.
fn opened(tag: Tag<'_>) -> Open {
    match tag {
        Tag::Paragraph => Open::Inlines(InlineKind::Paragraph, Vec::new()),
        Tag::Heading { .. } => Open::Inlines(InlineKind::Heading, Vec::new()),
        Tag::BlockQuote(_) => Open::Blocks(BlockKind::Quote, Vec::new(), Vec::new()),
        Tag::CodeBlock(_) => Open::Code(String::new()),
        Tag::List(start) => Open::List(start, Vec::new()),
        Tag::Item => Open::Blocks(BlockKind::Item, Vec::new(), Vec::new()),
        Tag::Emphasis => Open::Inlines(InlineKind::Emphasis, Vec::new()),
        Tag::Strong => Open::Inlines(InlineKind::Strong, Vec::new()),
        Tag::Strikethrough => Open::Inlines(InlineKind::Strike, Vec::new()),
        Tag::Link {
            link_type, dest_url, ..
        }
        | Tag::Image {
            link_type, dest_url, ..
        } => {
            let href = match link_type {
                LinkType::Email => format!("mailto:{dest_url}"),
                _ => dest_url.to_string(),
            };
            Open::Inlines(InlineKind::Link(safe_href(&href).then_some(href)), Vec::new())
        }
        // Everything else (HTML blocks, tables, footnotes…) is not shown as such; what is in
        // it is.
        _ => Open::Skip,
    }
}

/// Ends a container, giving what it made to the one around it.
fn close(stack: &mut [Open], open: Open) {
    match open {
        Open::Skip => {}
        Open::Code(code) => push_block(stack, Block::Code(code)),
        Open::List(start, items) => push_block(stack, Block::List { start, items }),
        Open::Blocks(kind, mut blocks, loose) => {
            if !loose.is_empty() {
                blocks.push(Block::Paragraph(loose));
            }
            match kind {
                BlockKind::Quote => push_block(stack, Block::Quote(blocks)),
                BlockKind::Item => match real_top(stack) {
                    Some(Open::List(_, items)) => items.push(blocks),
                    _ => blocks.into_iter().for_each(|b| push_block(stack, b)),
                },
                BlockKind::Root => {}
            }
        }
        Open::Inlines(kind, children) => match kind {
            InlineKind::Paragraph => push_block(stack, Block::Paragraph(children)),
            InlineKind::Heading => push_block(stack, Block::Heading(children)),
            InlineKind::Strong => push_inline(stack, Inline::Strong(children)),
            InlineKind::Emphasis => push_inline(stack, Inline::Emphasis(children)),
            InlineKind::Strike => push_inline(stack, Inline::Strike(children)),
            InlineKind::Link(Some(href)) => push_inline(stack, Inline::Link { href, children }),
            // A link that may not be followed shows its text only.
            InlineKind::Link(None) => children.into_iter().for_each(|c| push_inline(stack, c)),
        },
    }
}

/// The innermost container that is not skipped.
fn real_top(stack: &mut [Open]) -> Option<&mut Open> {
    stack.iter_mut().rev().find(|o| !matches!(o, Open::Skip))
}

fn push_inline(stack: &mut [Open], inline: Inline) {
    match real_top(stack) {
        Some(Open::Inlines(_, children)) => children.push(inline),
        Some(Open::Blocks(_, _, loose)) => loose.push(inline),
        Some(Open::Code(code)) => code.push_str(&plain_inline(&inline)),
        // Text straight inside a list (not in an item) cannot come from the parser.
        Some(Open::List(_, items)) => items.push(vec![Block::Paragraph(vec![inline])]),
        Some(Open::Skip) | None => {}
    }
}

fn push_block(stack: &mut [Open], block: Block) {
    match real_top(stack) {
        Some(Open::Blocks(_, blocks, loose)) => {
            if !loose.is_empty() {
                blocks.push(Block::Paragraph(std::mem::take(loose)));
            }
            blocks.push(block);
        }
        Some(Open::List(_, items)) => items.push(vec![block]),
        // A block inside inlines (only when containers were skipped): its text.
        Some(Open::Inlines(_, children)) => children.push(Inline::Text(plain_blocks(&[block]))),
        Some(Open::Code(code)) => code.push_str(&plain_blocks(&[block])),
        Some(Open::Skip) | None => {}
    }
}

/// Puts the inlines waiting in the innermost block container into a paragraph (a block is
/// about to start after them).
fn flush_loose(stack: &mut [Open]) {
    if let Some(Open::Blocks(_, blocks, loose)) = real_top(stack)
        && !loose.is_empty()
    {
        blocks.push(Block::Paragraph(std::mem::take(loose)));
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

/// A text event as inlines: mentions where ranges cover it (when it is the body's own text
/// at `start`), links found in the rest (outside links).
fn text_pieces(
    text: &str,
    start: Option<usize>,
    mentions: &[(usize, usize, Option<StaffId>)],
    find_links: bool,
) -> Vec<Inline> {
    let mut out = Vec::new();
    let plain = |s: &str, out: &mut Vec<Inline>| {
        if !find_links {
            out.push(Inline::Text(s.to_string()));
            return;
        }
        for seg in segments(s) {
            out.push(match seg {
                Segment::Link(l) if safe_href(l) => Inline::Link {
                    href: l.to_string(),
                    children: vec![Inline::Text(l.to_string())],
                },
                Segment::Link(t) | Segment::Text(t) => Inline::Text(t.to_string()),
            });
        }
    };
    let Some(start) = start else {
        plain(text, &mut out);
        return out;
    };
    let end = start + text.len();
    let mut from = start;
    for (s, e, staff) in mentions {
        let (s, e) = ((*s).max(from), (*e).min(end));
        if s >= e {
            continue;
        }
        if from < s {
            plain(&text[from - start..s - start], &mut out);
        }
        out.push(Inline::Mention {
            text: text[s - start..e - start].to_string(),
            staff: staff.clone(),
        });
        from = e;
    }
    if from < end {
        plain(&text[from - start..], &mut out);
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
        assert_eq!(html("a &amp; b"), "<p>a &amp; b</p>");
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
