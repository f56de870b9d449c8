//! Markdown to (not yet sanitised) HTML: parsing, then rewriting the syntax tree so that raw
//! HTML becomes text, maths becomes MathML and mentions and issue references become spans.

use std::borrow::Cow;
use std::sync::LazyLock;

use comrak::nodes::{AstNode, NodeValue};
use comrak::{Arena, Node, Options, format_html, parse_document};

use crate::refs::{self, TokenKind};
use crate::{IssueRef, Mention, highlight, math};

/// The Markdown dialect of chat messages, built once.
static OPTIONS: LazyLock<Options<'static>> = LazyLock::new(|| {
    let mut options = Options::default();
    let extension = &mut options.extension;
    extension.strikethrough = true;
    extension.table = true;
    extension.autolink = true;
    extension.tasklist = true;
    extension.shortcodes = true;
    extension.math_dollars = true;
    extension.math_code = true;
    // A chat message is typed line by line: every newline is meant.
    options.render.hardbreaks = true;
    // Raw HTML is turned into text before rendering; should any be left, it is omitted.
    options.render.r#unsafe = false;
    options
});

/// What the tree walk collected besides the HTML.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub mentions: Vec<Mention>,
    pub issues: Vec<IssueRef>,
    pub urls: Vec<String>,
}

impl Found {
    fn add_mention(&mut self, screen_name: &str) {
        if !self
            .mentions
            .iter()
            .any(|m| m.screen_name.eq_ignore_ascii_case(screen_name))
        {
            self.mentions.push(Mention {
                screen_name: screen_name.to_owned(),
            });
        }
    }

    fn add_issue(&mut self, repo: Option<&str>, number: u64) {
        if !self
            .issues
            .iter()
            .any(|i| i.number == number && i.repo.as_deref() == repo)
        {
            self.issues.push(IssueRef {
                repo: repo.map(str::to_owned),
                number,
            });
        }
    }

    fn add_url(&mut self, url: &str) {
        if !self.urls.iter().any(|u| u == url) {
            self.urls.push(url.to_owned());
        }
    }
}

/// Whether a link target is one the sanitiser lets through: http, https, mailto, or relative.
fn is_allowed_url(url: &str) -> bool {
    // Browsers ignore tabs and newlines anywhere in a URL, and leading control characters
    // and spaces, so they must not hide a scheme from this check.
    let cleaned: String = url
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    if cleaned.trim().is_empty() {
        return false;
    }
    let scheme_end = cleaned.find([':', '/', '?', '#']);
    match scheme_end {
        Some(end) if cleaned[end..].starts_with(':') => {
            let scheme = &cleaned[..end];
            ["http", "https", "mailto"]
                .iter()
                .any(|allowed| scheme.eq_ignore_ascii_case(allowed))
        }
        _ => true,
    }
}

/// Appends `text` to `out` with the HTML special characters escaped.
pub(crate) fn escape_html(out: &mut String, text: &str) {
    let mut last = 0;
    for (i, b) in text.bytes().enumerate() {
        let replacement = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&text[last..i]);
        out.push_str(replacement);
        last = i + 1;
    }
    out.push_str(&text[last..]);
}

/// Renders `text` to HTML, filling `found` with the mentions, issues and URLs met on the way.
pub(crate) fn to_html(text: &str, found: &mut Found, images: Images) -> String {
    let arena = Arena::new();
    let root = parse_document(&arena, text, &OPTIONS);
    raw_html_to_text(&arena, root);
    rewrite(&arena, root, found, images);
    let mut html = String::with_capacity(text.len() * 2 + 16);
    // Writing into a String cannot fail; if the renderer ever reported an error anyway,
    // whatever it had written so far is still sanitised and returned.
    let _ = format_html(root, &OPTIONS, &mut html);
    html
}

/// The text with each `:shortcode:` the Markdown parser resolves written as its emoji, and
/// every other byte as it was: shortcodes inside code, or unknown ones, stay as typed.
pub(crate) fn shortcodes_as_unicode(text: &str) -> String {
    let arena = Arena::new();
    let root = parse_document(&arena, text, &OPTIONS);
    // Where each line starts, to turn the parser's (line, column) positions into offsets.
    let mut line_starts = vec![0];
    line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let offset = |line: usize, column: usize| {
        line_starts
            .get(line.checked_sub(1)?)
            .map(|start| start + column.saturating_sub(1))
    };
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for node in root.descendants() {
        let data = node.data();
        let NodeValue::ShortCode(code) = &data.value else {
            continue;
        };
        let pos = data.sourcepos;
        let (Some(start), Some(end)) = (
            offset(pos.start.line, pos.start.column),
            offset(pos.end.line, pos.end.column).map(|e| e + 1),
        ) else {
            continue;
        };
        // Only a span that is exactly the shortcode is replaced: should positions ever be
        // off, the text is left as it was rather than cut in the wrong place.
        if start < copied || text.get(start..end) != Some(format!(":{}:", code.code).as_str()) {
            continue;
        }
        out.push_str(&text[copied..start]);
        out.push_str(&code.emoji);
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

fn new_node<'a>(arena: &'a Arena<'a>, value: NodeValue) -> Node<'a> {
    arena.alloc(AstNode::from(value))
}

/// Replaces raw HTML with text showing it: inline HTML becomes text in the paragraph it is
/// in, an HTML block becomes a paragraph of its lines.
fn raw_html_to_text<'a>(arena: &'a Arena<'a>, root: Node<'a>) {
    let html_nodes: Vec<Node<'a>> = root
        .descendants()
        .filter(|node| {
            matches!(
                node.data().value,
                NodeValue::HtmlBlock(_) | NodeValue::HtmlInline(_)
            )
        })
        .collect();
    for node in html_nodes {
        let value = std::mem::replace(&mut node.data_mut().value, NodeValue::Paragraph);
        match value {
            NodeValue::HtmlInline(literal) => {
                node.data_mut().value = NodeValue::Text(Cow::Owned(literal));
                merge_adjacent_text(node);
            }
            NodeValue::HtmlBlock(block) => {
                let literal = block.literal.strip_suffix('\n').unwrap_or(&block.literal);
                for (i, line) in literal.split('\n').enumerate() {
                    if i > 0 {
                        node.append(new_node(arena, NodeValue::LineBreak));
                    }
                    if !line.is_empty() {
                        let text = NodeValue::Text(Cow::Owned(line.to_owned()));
                        node.append(new_node(arena, text));
                    }
                }
            }
            other => node.data_mut().value = other,
        }
    }
}

/// Joins the text node `node` with the text nodes right before and after it, so that
/// mentions and issue references are found across what used to be raw HTML.
fn merge_adjacent_text<'a>(node: Node<'a>) {
    let mut node = node;
    while let Some(prev) = node.previous_sibling() {
        let moved = {
            let mut current = node.data_mut();
            let mut before = prev.data_mut();
            match (&mut before.value, &mut current.value) {
                (NodeValue::Text(before), NodeValue::Text(current)) => {
                    before.to_mut().push_str(current);
                    true
                }
                _ => false,
            }
        };
        if !moved {
            break;
        }
        node.detach();
        node = prev;
    }
    while let Some(next) = node.next_sibling() {
        let moved = {
            let mut current = node.data_mut();
            let after = next.data();
            match (&mut current.value, &after.value) {
                (NodeValue::Text(current), NodeValue::Text(after)) => {
                    current.to_mut().push_str(after);
                    true
                }
                _ => false,
            }
        };
        if !moved {
            break;
        }
        next.detach();
    }
}

/// A node the rewrite pass will change, found while walking the tree.
enum Work<'a> {
    /// A text node outside links, which may contain mentions or issue references.
    Text(Node<'a>),
    /// An inline maths span.
    Math(Node<'a>),
    /// A fenced code block in the `math` language.
    MathBlock(Node<'a>),
    /// A fenced code block in another language, to be highlighted.
    CodeBlock(Node<'a>),
    /// A link whose target may not be followed: its text stays, the link goes.
    Unlink(Node<'a>),
    /// An image that must not be fetched: it becomes a link to the same place.
    ImageToLink(Node<'a>),
}

/// What happens to Markdown images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Images {
    /// Shown inline (weft's own users).
    Inline,
    /// Turned into links: text from another network is shown, never fetched by the reader's
    /// browser on a stranger's say-so.
    AsLinks,
}

/// Collects link targets, and rewrites text, maths and maths blocks.
fn rewrite<'a>(arena: &'a Arena<'a>, root: Node<'a>, found: &mut Found, images: Images) {
    let mut work = Vec::new();
    let mut link_depth = 0usize;
    for edge in root.traverse() {
        match edge {
            comrak::arena_tree::NodeEdge::Start(node) => match &node.data().value {
                NodeValue::Link(link) => {
                    if is_allowed_url(&link.url) {
                        found.add_url(&link.url);
                    } else {
                        work.push(Work::Unlink(node));
                    }
                    link_depth += 1;
                }
                NodeValue::Image(_) => {
                    if images == Images::AsLinks {
                        work.push(Work::ImageToLink(node));
                    }
                    link_depth += 1;
                }
                NodeValue::Text(text) if link_depth == 0 && text.contains(['@', '#']) => {
                    work.push(Work::Text(node));
                }
                NodeValue::Math(_) => work.push(Work::Math(node)),
                NodeValue::CodeBlock(block) if is_math_info(&block.info) => {
                    work.push(Work::MathBlock(node));
                }
                NodeValue::CodeBlock(block) if block.fenced && language(&block.info).is_some() => {
                    work.push(Work::CodeBlock(node));
                }
                _ => {}
            },
            comrak::arena_tree::NodeEdge::End(node) => {
                if matches!(node.data().value, NodeValue::Link(_) | NodeValue::Image(_)) {
                    link_depth = link_depth.saturating_sub(1);
                }
            }
        }
    }
    for item in work {
        match item {
            Work::Text(node) => link_references(arena, node, found),
            Work::Math(node) => {
                let mut data = node.data_mut();
                if let NodeValue::Math(nm) = &data.value {
                    let delimiters = match (nm.dollar_math, nm.display_math) {
                        (false, _) => ["$`", "`$"],
                        (true, true) => ["$$", "$$"],
                        (true, false) => ["$", "$"],
                    };
                    let mut html = String::new();
                    math::push_math(&mut html, &nm.literal, nm.display_math, delimiters);
                    data.value = NodeValue::Raw(html);
                }
            }
            Work::ImageToLink(node) => {
                let value = std::mem::replace(&mut node.data_mut().value, NodeValue::Paragraph);
                if let NodeValue::Image(link) = value {
                    let url = link.url.clone();
                    if is_allowed_url(&url) {
                        found.add_url(&url);
                    }
                    if node.first_child().is_none() {
                        node.append(new_node(arena, NodeValue::Text(Cow::Owned(url.clone()))));
                    }
                    node.data_mut().value = NodeValue::Link(link);
                    if !is_allowed_url(&url) {
                        while let Some(child) = node.first_child() {
                            node.insert_before(child);
                        }
                        node.detach();
                    }
                }
            }
            Work::Unlink(node) => {
                while let Some(child) = node.first_child() {
                    node.insert_before(child);
                }
                node.detach();
            }
            Work::MathBlock(node) => {
                let mut data = node.data_mut();
                if let NodeValue::CodeBlock(block) = &data.value {
                    let mut html = String::new();
                    math::push_math_block(&mut html, block.literal.trim_end());
                    data.value = NodeValue::Raw(html);
                }
            }
            Work::CodeBlock(node) => {
                let mut data = node.data_mut();
                if let NodeValue::CodeBlock(block) = &data.value
                    && let Some(language) = language(&block.info)
                    && let Some(html) = highlight::code_block(language, &block.literal)
                {
                    data.value = NodeValue::Raw(html);
                }
            }
        }
    }
}

fn is_math_info(info: &str) -> bool {
    language(info) == Some("math")
}

/// The language of a fenced code block: the first word of its info string, as the HTML
/// renderer puts it in `class="language-…"`.
fn language(info: &str) -> Option<&str> {
    info.split_ascii_whitespace().next()
}

/// Splits the text node `node` around its mentions and issue references, putting a span
/// for each in its place, and records them in `found`.
fn link_references<'a>(arena: &'a Arena<'a>, node: Node<'a>, found: &mut Found) {
    let text = match node.data().value.text() {
        Some(text) => text.to_string(),
        None => return,
    };
    let tokens = refs::scan(&text);
    if tokens.is_empty() {
        return;
    }
    let mut done = 0;
    for token in tokens {
        let (Some(before), Some(written)) = (
            text.get(done..token.span.start),
            text.get(token.span.clone()),
        ) else {
            continue;
        };
        if !before.is_empty() {
            let value = NodeValue::Text(Cow::Owned(before.to_owned()));
            node.insert_before(new_node(arena, value));
        }
        let mut span = String::with_capacity(96 + 2 * written.len());
        match &token.kind {
            TokenKind::Mention(screen_name) => {
                found.add_mention(screen_name);
                span.push_str(
                    "<span class=\"mention\" data-link-type=\"mention\" data-screen-name=\"",
                );
                escape_html(&mut span, screen_name);
                span.push_str("\">");
            }
            TokenKind::Issue { repo, number } => {
                found.add_issue(repo.as_deref(), *number);
                span.push_str("<span class=\"issue\" data-link-type=\"issue\" data-issue=\"");
                span.push_str(&number.to_string());
                if let Some(repo) = repo {
                    span.push_str("\" data-issue-repo=\"");
                    escape_html(&mut span, repo);
                }
                span.push_str("\">");
            }
        }
        escape_html(&mut span, written);
        span.push_str("</span>");
        node.insert_before(new_node(arena, NodeValue::Raw(span)));
        done = token.span.end;
    }
    let rest = text.get(done..).unwrap_or_default();
    if rest.is_empty() {
        node.detach();
    } else {
        node.data_mut().value = NodeValue::Text(Cow::Owned(rest.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_urls() {
        for url in [
            "https://example.com",
            "http://x",
            "mailto:a@b.c",
            "/relative",
            "page#frag",
            "HTTPS://EXAMPLE.COM",
        ] {
            assert!(is_allowed_url(url), "{url}");
        }
        for url in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:x",
            "java\tscript:x",
            "data:text/html,x",
            "vbscript:x",
            "",
            "   ",
        ] {
            assert!(!is_allowed_url(url), "{url:?}");
        }
    }

    #[test]
    fn escape() {
        let mut out = String::new();
        escape_html(&mut out, "a<b>&\"'c");
        assert_eq!(out, "a&lt;b&gt;&amp;&quot;&#39;c");
    }
}
