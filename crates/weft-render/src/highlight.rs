//! Syntax highlighting of fenced code blocks, done once on the server when a message is
//! rendered, so that every client (the web app, the API, the archives) shows the same colours
//! without shipping a highlighter.
//!
//! The grammars are syntect's built-in Sublime Text ones. Instead of a colour theme, a small
//! table maps scope selectors to a handful of token kinds, and each highlighted token becomes a
//! `<span class="hl-KIND">`; the style sheet colours the kinds for light and dark pages. The
//! sanitiser lets exactly these classes through on `<span>`.

use std::str::FromStr;
use std::sync::LazyLock;

use syntect::easy::HighlightLines;
use syntect::highlighting::{Color, ScopeSelectors, StyleModifier, Theme, ThemeItem};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;

use crate::markdown::escape_html;

/// Scope selectors and the token kind (class suffix) they mark. Where several match a token,
/// the most specific selector wins, as in an editor theme.
const KINDS: &[(&str, &str)] = &[
    ("comment", "comment"),
    ("string", "string"),
    ("string.regexp", "regexp"),
    ("constant.character.escape", "escape"),
    ("constant.numeric", "number"),
    (
        "constant.language, constant.character, constant.other",
        "constant",
    ),
    (
        "keyword, storage, storage.type, variable.language",
        "keyword",
    ),
    ("keyword.operator", "operator"),
    (
        "entity.name.type, entity.name.class, entity.name.struct, entity.name.enum, \
         entity.name.trait, entity.name.interface, entity.other.inherited-class, support.type, \
         support.class",
        "type",
    ),
    (
        "entity.name.function, support.function, variable.function, meta.function-call.identifier",
        "function",
    ),
    (
        "support.macro, entity.name.macro, meta.preprocessor",
        "macro",
    ),
    ("entity.name.tag", "tag"),
    ("entity.other.attribute-name", "attribute"),
    ("variable.parameter", "parameter"),
    (
        "entity.name.label, entity.name.namespace, entity.name.module",
        "name",
    ),
    ("markup.heading, entity.name.section", "heading"),
    ("markup.inserted", "inserted"),
    ("markup.deleted", "deleted"),
    ("markup.changed", "changed"),
    ("markup.bold, markup.italic", "emphasis"),
    ("markup.underline.link, markup.raw", "link"),
];

/// Every class a highlighted code block may carry on a `<span>`.
pub(crate) const CLASSES: &[&str] = &[
    "hl-comment",
    "hl-string",
    "hl-regexp",
    "hl-escape",
    "hl-number",
    "hl-constant",
    "hl-keyword",
    "hl-operator",
    "hl-type",
    "hl-function",
    "hl-macro",
    "hl-tag",
    "hl-attribute",
    "hl-parameter",
    "hl-name",
    "hl-heading",
    "hl-inserted",
    "hl-deleted",
    "hl-changed",
    "hl-emphasis",
    "hl-link",
];

/// The built-in grammars, loaded on first use.
static SYNTAXES: LazyLock<SyntaxSet> = LazyLock::new(SyntaxSet::load_defaults_newlines);

/// A "theme" whose foreground colour is not a colour but the token kind: red channel `i + 1`
/// for `KINDS[i]`, 0 for plain text.
static THEME: LazyLock<Theme> = LazyLock::new(|| Theme {
    scopes: KINDS
        .iter()
        .enumerate()
        .filter_map(|(i, (selector, _))| {
            Some(ThemeItem {
                scope: ScopeSelectors::from_str(selector).ok()?,
                style: StyleModifier {
                    foreground: Some(Color {
                        r: u8::try_from(i + 1).ok()?,
                        g: 0,
                        b: 0,
                        a: 0xff,
                    }),
                    background: None,
                    font_style: None,
                },
            })
        })
        .collect(),
    ..Theme::default()
});

/// The class for the kind encoded in a token's foreground colour.
fn class_of(color: Color) -> Option<&'static str> {
    let kind = usize::from(color.r).checked_sub(1)?;
    let (_, suffix) = KINDS.get(kind)?;
    CLASSES
        .iter()
        .find(|class| class.strip_prefix("hl-") == Some(suffix))
        .copied()
}

/// A fenced code block in `language`, highlighted: the same `<pre><code class="language-…">`
/// the Markdown renderer writes, with the tokens in spans. `None` when the language is not one
/// the highlighter knows (the block is then rendered plainly), or should it fail.
pub(crate) fn code_block(language: &str, code: &str) -> Option<String> {
    let syntax = SYNTAXES.find_syntax_by_token(language)?;
    if syntax.name == "Plain Text" {
        return None;
    }
    let mut lines = HighlightLines::new(syntax, &THEME);
    let mut out = String::with_capacity(code.len() * 3 + 64);
    out.push_str("<pre><code class=\"language-");
    escape_html(&mut out, language);
    out.push_str("\">");
    let mut open: Option<&str> = None;
    for line in LinesWithEndings::from(code) {
        for (style, text) in lines.highlight_line(line, &SYNTAXES).ok()? {
            // Spans hold tokens only: whitespace around a token (line ends too) stays outside
            // unless it falls between two tokens of one kind.
            let core = text.trim();
            let class = if core.is_empty() {
                None
            } else {
                class_of(style.foreground)
            };
            let lead = &text[..text.len() - text.trim_start().len()];
            if class != open || core.is_empty() {
                if open.take().is_some() {
                    out.push_str("</span>");
                }
                escape_html(&mut out, lead);
                if let Some(class) = class {
                    out.push_str("<span class=\"");
                    out.push_str(class);
                    out.push_str("\">");
                }
                open = class;
            } else {
                escape_html(&mut out, lead);
            }
            escape_html(&mut out, core);
            let tail = &text[lead.len() + core.len()..];
            if !tail.is_empty() {
                if open.take().is_some() {
                    out.push_str("</span>");
                }
                escape_html(&mut out, tail);
            }
        }
    }
    if open.is_some() {
        out.push_str("</span>");
    }
    out.push_str("</code></pre>\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_class_and_selector() {
        assert_eq!(KINDS.len(), CLASSES.len());
        assert_eq!(THEME.scopes.len(), KINDS.len(), "a selector did not parse");
        for (i, _) in KINDS.iter().enumerate() {
            let color = Color {
                r: u8::try_from(i + 1).unwrap_or(0),
                g: 0,
                b: 0,
                a: 0xff,
            };
            assert_eq!(class_of(color), Some(CLASSES[i]));
        }
    }

    #[test]
    fn highlights_known_languages_only() {
        let html = code_block("rust", "fn main() {}\n").unwrap_or_default();
        assert!(
            html.starts_with("<pre><code class=\"language-rust\">"),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"hl-keyword\">fn</span> "),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"hl-function\">main</span>"),
            "{html}"
        );
        assert!(code_block("no-such-language", "x").is_none());
        // The languages the API documentation names.
        for language in [
            "rust",
            "python",
            "py",
            "javascript",
            "js",
            "go",
            "c",
            "cpp",
            "java",
            "sh",
            "bash",
            "diff",
            "html",
            "sql",
            "yaml",
            "json",
        ] {
            assert!(code_block(language, "x\n").is_some(), "{language}");
        }
        assert!(code_block("text", "x").is_none());
    }

    #[test]
    fn escapes_code_text() {
        let html = code_block("js", "let a = \"<b>&\";\n").unwrap_or_default();
        assert!(html.contains("&lt;b&gt;&amp;"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
    }
}
