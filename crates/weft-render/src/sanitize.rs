//! The allow-list sanitiser every rendered message goes through last.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use ammonia::Builder;

use crate::highlight;

/// The HTML elements Markdown rendering produces.
const HTML_TAGS: &[&str] = &[
    "a",
    "blockquote",
    "br",
    "code",
    "del",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "img",
    "input",
    "li",
    "ol",
    "p",
    "pre",
    "span",
    "strong",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
];

/// The MathML elements the maths renderer produces, and a few close relatives.
const MATHML_TAGS: &[&str] = &[
    "math",
    "semantics",
    "annotation",
    "merror",
    "mfrac",
    "mi",
    "mn",
    "mo",
    "menclose",
    "mover",
    "mpadded",
    "mphantom",
    "mroot",
    "mrow",
    "ms",
    "mspace",
    "msqrt",
    "mstyle",
    "msub",
    "msubsup",
    "msup",
    "mtable",
    "mtd",
    "mtext",
    "mtr",
    "munder",
    "munderover",
];

/// Presentation attributes allowed on every MathML element.
const MATHML_ATTRIBUTES: &[&str] = &[
    "accent",
    "accentunder",
    "class",
    "columnalign",
    "columnspan",
    "depth",
    "display",
    "displaystyle",
    "encoding",
    "fence",
    "form",
    "height",
    "largeop",
    "linethickness",
    "lspace",
    "mathvariant",
    "maxsize",
    "minsize",
    "movablelimits",
    "notation",
    "rowalign",
    "rowspan",
    "rspace",
    "scriptlevel",
    "separator",
    "stretchy",
    "style",
    "symmetric",
    "voffset",
    "width",
];

/// CSS properties the maths renderer uses in `style` attributes; all others are removed.
const STYLE_PROPERTIES: &[&str] = &[
    "background-color",
    "border",
    "border-color",
    "color",
    "height",
    "margin-left",
];

/// Classes allowed on `<span>`: the mention and issue markers (highlighting's `hl-…` classes
/// are allowed besides, see [`crate::highlight`]).
const SPAN_CLASSES: &[&str] = &["mention", "issue"];

static SANITISER: LazyLock<Builder<'static>> = LazyLock::new(|| {
    let mut tag_attributes: HashMap<&'static str, HashSet<&'static str>> = HashMap::new();
    let mut allow = |tag: &'static str, attributes: &[&'static str]| {
        tag_attributes
            .entry(tag)
            .or_default()
            .extend(attributes.iter().copied());
    };
    allow("a", &["href", "title"]);
    allow("img", &["src", "alt", "title"]);
    allow("input", &["type", "checked"]);
    allow("code", &["class"]);
    allow(
        "span",
        &[
            "class",
            "data-link-type",
            "data-screen-name",
            "data-issue",
            "data-issue-repo",
        ],
    );
    allow("th", &["align"]);
    allow("td", &["align"]);
    allow("ol", &["start"]);
    for tag in MATHML_TAGS {
        allow(tag, MATHML_ATTRIBUTES);
    }

    let mut builder = Builder::empty();
    builder
        .tags(HTML_TAGS.iter().chain(MATHML_TAGS).copied().collect())
        .clean_content_tags(["script", "style"].into_iter().collect())
        .tag_attributes(tag_attributes)
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .url_relative(ammonia::UrlRelative::PassThrough)
        .link_rel(Some("nofollow noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        .set_tag_attribute_value("input", "disabled", "")
        .filter_style_properties(STYLE_PROPERTIES.iter().copied().collect())
        .strip_comments(true)
        .attribute_filter(filter_attribute);
    builder
});

/// Per-value checks that a plain allow-list of attribute names cannot express.
fn filter_attribute<'u>(element: &str, attribute: &str, value: &'u str) -> Option<Cow<'u, str>> {
    let keep = match (element, attribute) {
        // Task-list boxes are the only inputs; whatever an input was, it is a checkbox.
        // (Forcing it here rather than with a second set attribute keeps attribute order
        // stable, as the sanitiser keeps its set attributes in a hash map.)
        ("input", "type") => return Some(Cow::Borrowed("checkbox")),
        ("img", "src") => has_scheme(value, "https") || has_scheme(value, "http"),
        ("code", "class") => {
            value == "math-error"
                || value
                    .strip_prefix("language-")
                    .is_some_and(|lang| !lang.is_empty() && !lang.contains(char::is_whitespace))
        }
        ("span", "class") => SPAN_CLASSES.contains(&value) || highlight::CLASSES.contains(&value),
        ("span", "data-link-type") => SPAN_CLASSES.contains(&value),
        _ => true,
    };
    keep.then_some(Cow::Borrowed(value))
}

fn has_scheme(url: &str, scheme: &str) -> bool {
    url.trim_start()
        .get(..scheme.len() + 1)
        .is_some_and(|start| {
            start[..scheme.len()].eq_ignore_ascii_case(scheme) && start.ends_with(':')
        })
}

/// Sanitises rendered HTML against the allow-list.
pub(crate) fn clean(html: &str) -> String {
    let mut cleaned = SANITISER.clean(html).to_string();
    let trimmed = cleaned.trim_end().len();
    cleaned.truncate(trimmed);
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_what_is_not_allowed() {
        assert_eq!(clean("<script>alert(1)</script>x"), "x");
        assert_eq!(clean("<p onclick=\"x\">a</p>"), "<p>a</p>");
        assert_eq!(
            clean("<a href=\"javascript:alert(1)\">a</a>"),
            "<a target=\"_blank\" rel=\"nofollow noopener noreferrer\">a</a>"
        );
        assert_eq!(clean("<img src=\"mailto:a@b.c\">"), "<img>");
        assert_eq!(
            clean("<input type=\"text\" checked=\"\">"),
            "<input type=\"checkbox\" checked=\"\" disabled=\"\">"
        );
        assert_eq!(
            clean("<span class=\"evil\" data-x=\"1\">a</span>"),
            "<span>a</span>"
        );
        assert_eq!(
            clean("<code class=\"language-rust\">x</code>"),
            "<code class=\"language-rust\">x</code>"
        );
    }

    #[test]
    fn span_classes_are_an_allow_list() {
        for kept in ["hl-keyword", "hl-string", "mention"] {
            let span = format!("<span class=\"{kept}\">a</span>");
            assert_eq!(clean(&span), span);
        }
        for dropped in [
            "hl-",
            "hl-evil",
            "hl-keyword hl-string",
            "hl-keyword evil",
            "HL-KEYWORD",
        ] {
            assert_eq!(
                clean(&format!("<span class=\"{dropped}\">a</span>")),
                "<span>a</span>",
                "{dropped}"
            );
        }
    }

    #[test]
    fn keeps_mathml() {
        let mathml =
            "<math display=\"block\"><mrow><msup><mi>x</mi><mn>2</mn></msup></mrow></math>";
        assert_eq!(clean(mathml), mathml);
    }
}
