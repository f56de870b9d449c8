//! Weft's message renderer: turns the Markdown source of a chat message into sanitised HTML.
//!
//! Rendering follows what Gitter did for its messages:
//!
//! * GitHub-flavoured Markdown (tables, strikethrough, autolinked bare URLs, task lists,
//!   fenced code keeping `class="language-…"`), with every single newline turned into a line
//!   break, as befits chat.
//! * Fenced code in a language the highlighter knows is highlighted here, on the server: its
//!   tokens become `<span class="hl-…">` (comment, string, keyword, type, function, …), which
//!   the web app's style sheet colours.
//! * `:shortcode:` emoji become the Unicode emoji (unknown shortcodes stay as they were typed).
//! * `@username` and `@/all` become mention spans, `#123` and `owner/repo#123` become issue
//!   spans; both are also returned as data so the caller can notify people or link issues.
//! * `$…$` and `$$…$$` maths (and fenced `math` blocks) become MathML, rendered here on the
//!   server; TeX that does not parse is shown, escaped, in `<code class="math-error">`.
//! * Raw HTML in the source is shown as text, never interpreted, and the final HTML goes
//!   through an allow-list sanitiser, so the output carries no script, no event handler and
//!   no URL with a scheme other than http, https or mailto.
//!
//! The crate does no I/O and [`render_markdown`] never panics, whatever its input.

mod highlight;
mod markdown;
mod math;
mod refs;
mod sanitize;

use serde::Serialize;

/// What rendering a message's Markdown source produced.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Rendered {
    /// The sanitised HTML, safe to insert into a page as it is.
    pub html: String,
    /// The people mentioned, in order of first appearance, each once (names compared without
    /// regard to ASCII case; the first spelling is kept).
    pub mentions: Vec<Mention>,
    /// The issues referred to, in order of first appearance, each once.
    pub issues: Vec<IssueRef>,
    /// Every link target, whether an autolinked bare URL, an e-mail address or an explicit
    /// link, in order of first appearance, each once. Targets that the sanitiser would not
    /// let through (such as `javascript:` URLs) are left out.
    pub urls: Vec<String>,
}

/// A mention of a user, written `@username`, or of everyone in the room, written `@/all`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mention {
    /// The screen name as written after the `@`, or `/all` for the everyone mention.
    pub screen_name: String,
}

impl Mention {
    /// The screen name that stands for "everyone in the room".
    pub const ALL: &'static str = "/all";

    /// Whether this is the `@/all` mention of everyone in the room.
    pub fn is_all(&self) -> bool {
        self.screen_name == Self::ALL
    }
}

/// A reference to an issue or pull request, written `#123` or `owner/repo#123`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueRef {
    /// The `owner/repo` before the `#`, when one was written.
    pub repo: Option<String>,
    /// The issue number.
    pub number: u64,
}

/// What `text` mentions when it is exactly one `@mention` (`@alice` → `alice`,
/// `@alice:matrix.org` → `alice:matrix.org`), or `None` when it is anything else; for code
/// that writes mentions and must know the renderer will read them back as one.
pub fn mention_name(text: &str) -> Option<String> {
    match refs::scan(text).as_slice() {
        [token] if token.span == (0..text.len()) => match &token.kind {
            refs::TokenKind::Mention(name) => Some(name.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Renders the Markdown source of a chat message to sanitised HTML, and collects the
/// mentions, issue references and link targets it contains.
///
/// Never panics, whatever the input.
pub fn render_markdown(text: &str) -> Rendered {
    // The Markdown parser, the TeX renderer and the sanitiser are third-party code. Should
    // one of them fail on some input, the message is still shown, as escaped plain text.
    std::panic::catch_unwind(|| render(text, markdown::Images::Inline))
        .unwrap_or_else(|_| plain_text_fallback(text))
}

/// [`render_markdown`] for text from another network (a bridge's virtual users): its images
/// become links, so that no reader's browser fetches an address a stranger chose (a remote
/// image in a Matrix message would tell its sender who read it, and when).
pub fn render_markdown_from_elsewhere(text: &str) -> Rendered {
    std::panic::catch_unwind(|| render(text, markdown::Images::AsLinks))
        .unwrap_or_else(|_| plain_text_fallback(text))
}

/// A message's Markdown with its `:shortcode:` emoji written as Unicode and nothing else
/// changed: what a plain-text reading of it shows (a Matrix `body`, from which clients build
/// notifications). Shortcodes inside code stay as typed, as in the rendered HTML.
///
/// Never panics, whatever the input.
pub fn with_unicode_emoji(text: &str) -> String {
    if !text.contains(':') {
        return text.to_string();
    }
    std::panic::catch_unwind(|| markdown::shortcodes_as_unicode(text))
        .unwrap_or_else(|_| text.to_string())
}

fn render(text: &str, images: markdown::Images) -> Rendered {
    let mut found = markdown::Found::default();
    let html = markdown::to_html(text, &mut found, images);
    let html = sanitize::clean(&html);
    Rendered {
        html,
        mentions: found.mentions,
        issues: found.issues,
        urls: found.urls,
    }
}

/// The message as one paragraph of escaped text, its lines kept.
fn plain_text_fallback(text: &str) -> Rendered {
    let mut html = String::with_capacity(text.len() + 16);
    html.push_str("<p>");
    for (i, line) in text.trim_end().lines().enumerate() {
        if i > 0 {
            html.push_str("<br>\n");
        }
        markdown::escape_html(&mut html, line);
    }
    html.push_str("</p>");
    Rendered {
        html,
        ..Rendered::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_is_escaped_text() {
        assert_eq!(
            plain_text_fallback("<script>\n& more\n").html,
            "<p>&lt;script&gt;<br>\n&amp; more</p>"
        );
    }
}

#[cfg(test)]
mod emoji_tests {
    use super::with_unicode_emoji;

    #[test]
    fn shortcodes_become_unicode_outside_code() {
        assert_eq!(with_unicode_emoji("ship it :rocket:"), "ship it 🚀");
        assert_eq!(
            with_unicode_emoji(":tada: line one\nline **two** :+1:"),
            "🎉 line one\nline **two** 👍"
        );
        assert_eq!(
            with_unicode_emoji("`:rocket:` and :rocket:"),
            "`:rocket:` and 🚀"
        );
        assert_eq!(
            with_unicode_emoji("```\n:rocket:\n```\n:rocket:"),
            "```\n:rocket:\n```\n🚀"
        );
        assert_eq!(
            with_unicode_emoji("unknown :not-an-emoji: stays, 10:30:00 too"),
            "unknown :not-an-emoji: stays, 10:30:00 too"
        );
        assert_eq!(with_unicode_emoji("é :smile: ü"), "é 😄 ü");
        assert_eq!(with_unicode_emoji("> quoted :smile:"), "> quoted 😄");
        assert_eq!(
            with_unicode_emoji("- item :smile:\r\n- two :smile:"),
            "- item 😄\r\n- two 😄"
        );
    }
}
