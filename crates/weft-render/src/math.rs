//! TeX maths to MathML, on the server.

use std::panic::{AssertUnwindSafe, catch_unwind};

use pulldown_latex::config::DisplayMode;
use pulldown_latex::{Parser, RenderConfig, Storage, push_mathml};

use crate::markdown::escape_html;

/// Longest TeX source, in bytes, that is rendered; longer sources are shown as a math error.
/// No chat formula needs more, and it bounds the work one message can cause.
const MAX_TEX_LEN: usize = 8 * 1024;

/// Control sequences that define macros. Definitions let a short source expand into a
/// very large formula, so they are refused.
const DEFINING_COMMANDS: [&str; 8] = [
    "def",
    "gdef",
    "edef",
    "xdef",
    "let",
    "newcommand",
    "renewcommand",
    "providecommand",
];

/// Renders `tex` as MathML (a `<math>` element, in display mode when `display` is set) and
/// appends it to `out`. TeX that cannot be rendered is appended escaped inside
/// `<code class="math-error">` instead, between the delimiters it was written with, so
/// nothing the user typed is lost.
pub(crate) fn push_math(out: &mut String, tex: &str, display: bool, delimiters: [&str; 2]) {
    match to_mathml(tex, display) {
        Some(mathml) => out.push_str(&mathml),
        None => {
            out.push_str("<code class=\"math-error\">");
            escape_html(out, delimiters[0]);
            escape_html(out, tex);
            escape_html(out, delimiters[1]);
            out.push_str("</code>");
        }
    }
}

/// Renders a fenced `math` block: display MathML in a paragraph, or, when the TeX cannot be
/// rendered, the block's source escaped in a `<pre><code class="math-error">`.
pub(crate) fn push_math_block(out: &mut String, tex: &str) {
    match to_mathml(tex, true) {
        Some(mathml) => {
            out.push_str("<p>");
            out.push_str(&mathml);
            out.push_str("</p>\n");
        }
        None => {
            out.push_str("<pre><code class=\"math-error\">");
            escape_html(out, tex);
            out.push_str("\n</code></pre>\n");
        }
    }
}

/// The MathML for `tex`, or `None` when it does not parse or may not be rendered.
fn to_mathml(tex: &str, display: bool) -> Option<String> {
    if tex.trim().is_empty() || tex.len() > MAX_TEX_LEN || defines_macros(tex) {
        return None;
    }
    // The TeX parser is a third-party library with internal assertions; a bug there must
    // turn into a shown error, not take the caller down.
    catch_unwind(AssertUnwindSafe(|| render(tex, display))).ok()?
}

fn render(tex: &str, display: bool) -> Option<String> {
    let storage = Storage::new();
    let events: Vec<_> = Parser::new(tex, &storage).collect();
    if events.iter().any(Result::is_err) {
        return None;
    }
    let mut annotation = String::with_capacity(tex.len());
    escape_html(&mut annotation, tex);
    let config = RenderConfig {
        display_mode: if display {
            DisplayMode::Block
        } else {
            DisplayMode::Inline
        },
        annotation: Some(&annotation),
        ..RenderConfig::default()
    };
    let mut mathml = String::with_capacity(tex.len() * 8 + 64);
    push_mathml(&mut mathml, events.into_iter(), config).ok()?;
    Some(mathml)
}

/// Whether `tex` uses one of the [`DEFINING_COMMANDS`].
fn defines_macros(tex: &str) -> bool {
    let mut rest = tex;
    while let Some(at) = rest.find('\\') {
        rest = &rest[at + 1..];
        let name_len = rest
            .bytes()
            .position(|b| !b.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        if name_len == 0 {
            // `\\`, `\{` and the like: skip the escaped character.
            let skip = rest.chars().next().map_or(0, char::len_utf8);
            rest = &rest[skip..];
        } else if DEFINING_COMMANDS.contains(&&rest[..name_len]) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_to_string(tex: &str, display: bool) -> String {
        let mut out = String::new();
        let delimiter = if display { "$$" } else { "$" };
        push_math(&mut out, tex, display, [delimiter, delimiter]);
        out
    }

    #[test]
    fn simple_formula_becomes_mathml() {
        let html = render_to_string("x^2 + 1", false);
        assert!(html.starts_with("<math display=\"inline\">"), "{html}");
        assert!(html.contains("<msup>"), "{html}");
        assert!(html.contains("<annotation encoding=\"application/x-tex\">x^2 + 1</annotation>"));
        let html = render_to_string(r"\frac{a}{b}", true);
        assert!(html.starts_with("<math display=\"block\">"), "{html}");
    }

    #[test]
    fn errors_show_the_source() {
        assert_eq!(
            render_to_string(r"\frac{1}{", false),
            "<code class=\"math-error\">$\\frac{1}{$</code>"
        );
        assert_eq!(
            render_to_string("a<b & \\nosuchcommand", true),
            "<code class=\"math-error\">$$a&lt;b &amp; \\nosuchcommand$$</code>"
        );
    }

    #[test]
    fn macro_definitions_are_refused() {
        assert!(defines_macros(r"\def\a{b}"));
        assert!(defines_macros(r"\newcommand{\x}{y} \x"));
        assert!(!defines_macros(r"\default"));
        assert!(!defines_macros(r"a \\ b"));
        assert!(!defines_macros(r"\\def"));
        assert!(render_to_string(r"\def\a{xx}\a", false).contains("math-error"));
    }

    #[test]
    fn blocks() {
        let mut out = String::new();
        push_math_block(&mut out, "x");
        assert!(out.starts_with("<p><math display=\"block\">"), "{out}");
        let mut out = String::new();
        push_math_block(&mut out, "\\frac{<");
        assert_eq!(
            out,
            "<pre><code class=\"math-error\">\\frac{&lt;\n</code></pre>\n"
        );
    }

    #[test]
    fn annotation_is_escaped() {
        let html = render_to_string(r"a </annotation><script>", false);
        assert!(!html.contains("<script>"), "{html}");
    }
}
