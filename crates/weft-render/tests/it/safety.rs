//! Whatever the input, rendering does not panic and its HTML is safe to show.

use proptest::prelude::*;
use weft_render::render_markdown;

/// One start tag of the output, with its attributes (values with entities decoded).
#[derive(Debug)]
struct StartTag {
    name: String,
    attributes: Vec<(String, String)>,
}

/// Reads the start tags of serialised HTML. In serialised text every `<` that is not markup
/// is written `&lt;`, and attribute values are always double-quoted, so a small scanner is
/// exact here.
fn start_tags(html: &str) -> Result<Vec<StartTag>, String> {
    let bytes = html.as_bytes();
    let mut tags = Vec::new();
    let mut i = 0;
    while let Some(offset) = html[i..].find('<') {
        i += offset + 1;
        match bytes.get(i) {
            Some(b'/') => {
                let end = html[i..].find('>').ok_or("unterminated end tag")?;
                i += end + 1;
                continue;
            }
            Some(b) if b.is_ascii_alphabetic() => {}
            _ => return Err(format!("unexpected markup at byte {i}: {html}")),
        }
        let name_len = html[i..]
            .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
            .ok_or("unterminated tag")?;
        let name = html[i..i + name_len].to_ascii_lowercase();
        i += name_len;
        let mut attributes = Vec::new();
        loop {
            while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
                i += 1;
            }
            match bytes.get(i) {
                None => return Err("unterminated tag".into()),
                Some(b'>') => {
                    i += 1;
                    break;
                }
                Some(b'/') if bytes.get(i + 1) == Some(&b'>') => {
                    i += 2;
                    break;
                }
                _ => {}
            }
            let attr_len = html[i..]
                .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '>' || c == '/')
                .ok_or("unterminated attribute")?;
            if attr_len == 0 {
                return Err(format!("malformed attribute at byte {i}: {html}"));
            }
            let attr = html[i..i + attr_len].to_ascii_lowercase();
            i += attr_len;
            let mut value = String::new();
            if bytes.get(i) == Some(&b'=') {
                if bytes.get(i + 1) != Some(&b'"') {
                    return Err(format!("unquoted attribute value at byte {i}: {html}"));
                }
                let end = html[i + 2..].find('"').ok_or("unterminated value")?;
                value = decode_entities(&html[i + 2..i + 2 + end]);
                i += 2 + end + 1;
            }
            attributes.push((attr, value));
        }
        tags.push(StartTag { name, attributes });
    }
    Ok(tags)
}

fn decode_entities(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

const ALLOWED_TAGS: &[&str] = &[
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

/// Attributes whose value is a URL and so must not carry a dangerous scheme.
const URL_ATTRIBUTES: &[&str] = &["href", "src"];

/// The scheme of a URL as a browser reads it (lowercased), or `None` for a relative URL.
/// Browsers drop tabs and newlines anywhere and control characters and spaces at the start.
fn url_scheme(url: &str) -> Option<&'static str> {
    let cleaned: String = url
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect::<String>()
        .to_ascii_lowercase();
    let first = cleaned.chars().next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let end =
        cleaned.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))?;
    if !cleaned[end..].starts_with(':') {
        return None;
    }
    Some(match &cleaned[..end] {
        "http" => "http",
        "https" => "https",
        "mailto" => "mailto",
        "javascript" => "javascript",
        "vbscript" => "vbscript",
        "data" => "data",
        _ => "other",
    })
}

/// Checks the safety properties of one rendered message.
fn check_safe(input: &str) -> Result<(), String> {
    let rendered = render_markdown(input);
    let html = &rendered.html;
    let lower = html.to_ascii_lowercase();
    for banned in [
        "<script", "<iframe", "<style", "<object", "<embed", "<svg", "<!--",
    ] {
        if lower.contains(banned) {
            return Err(format!("{banned} in {html:?} from {input:?}"));
        }
    }
    for tag in start_tags(html)? {
        if !ALLOWED_TAGS.contains(&tag.name.as_str()) {
            return Err(format!("tag <{}> in {html:?} from {input:?}", tag.name));
        }
        for (name, value) in &tag.attributes {
            if name.starts_with("on") {
                return Err(format!("event handler {name} in {html:?} from {input:?}"));
            }
            if URL_ATTRIBUTES.contains(&name.as_str()) {
                match url_scheme(value) {
                    None | Some("http" | "https" | "mailto") => {}
                    Some(scheme) => {
                        return Err(format!(
                            "{scheme}: URL in {name}={value:?} in {html:?} from {input:?}"
                        ));
                    }
                }
            }
            if name == "style" {
                let squashed: String = value
                    .chars()
                    .filter(|c| !c.is_whitespace() && !c.is_control())
                    .collect::<String>()
                    .to_ascii_lowercase();
                if ["javascript:", "url(", "expression(", "@import"]
                    .iter()
                    .any(|bad| squashed.contains(bad))
                {
                    return Err(format!("style={value:?} in {html:?} from {input:?}"));
                }
            }
            if name == "href" && tag.name != "a" {
                return Err(format!("href on <{}> in {html:?}", tag.name));
            }
        }
        if tag.name == "span"
            && let Some((_, class)) = tag.attributes.iter().find(|(n, _)| n == "class")
            && !(["mention", "issue"].contains(&class.as_str())
                || class
                    .strip_prefix("hl-")
                    .is_some_and(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase())))
        {
            return Err(format!("span class {class:?} in {html:?} from {input:?}"));
        }
        if tag.name == "a" {
            let has = |n: &str, v: &str| tag.attributes.iter().any(|(an, av)| an == n && av == v);
            if !has("rel", "nofollow noopener noreferrer") || !has("target", "_blank") {
                return Err(format!("unsafe link {:?} in {html:?}", tag.attributes));
            }
        }
    }
    for url in &rendered.urls {
        if !matches!(url_scheme(url), None | Some("http" | "https" | "mailto")) {
            return Err(format!("url {url:?} listed from {input:?}"));
        }
    }
    Ok(())
}

#[test]
fn scanner_reads_attributes() {
    let tags =
        start_tags(r#"<p>a &lt;b onion=1&gt; <a href="x&amp;y" title="&quot;on">z</a><br></p>"#)
            .expect("well-formed");
    let names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["p", "a", "br"]);
    assert_eq!(
        tags[1].attributes,
        [
            ("href".to_owned(), "x&y".to_owned()),
            ("title".to_owned(), "\"on".to_owned())
        ]
    );
    // The word "onion" in text is not an attribute.
    check_safe("onion onerror=1 javascript: alert").expect("text is fine");
}

#[test]
fn known_attacks() {
    let attacks = [
        "<script>alert(1)</script>",
        "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
        "<img src=x onerror=alert(1)>",
        "<iframe src=\"javascript:alert(1)\"></iframe>",
        "<style>body{display:none}</style>",
        "<a href=\"javascript:alert(1)\">x</a>",
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](java\tscript:alert(1))",
        "[x](<java script:alert(1)>)",
        "[x](&#106;avascript:alert(1))",
        "[x](javascript&colon;alert(1))",
        "[x](vbscript:msgbox(1))",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "![x](data:image/svg+xml;base64,PHN2Zz4=)",
        "![x](javascript:alert(1))",
        "[x]: javascript:alert(1)\n\n[x]",
        "<svg><script>alert(1)</script></svg>",
        "<math><mi xlink:href=\"javascript:alert(1)\">x</mi></math>",
        "$x$<img src=x onerror=alert(1)>",
        "$\\text{<img src=x onerror=alert(1)>}$",
        "$\\href{javascript:alert(1)}{x}$",
        "$$\\color{red}{x} \\style{background:url(javascript:alert(1))}{y}$$",
        "@<img src=x onerror=alert(1)>",
        "#1<script>",
        "```\"><script>alert(1)</script>\nx\n```",
        "```js onload=alert(1)\nx\n```",
        "```html\n<script>alert(1)</script><img src=x onerror=alert(1)>\n```",
        "```js\n\"</span><script>alert(1)</script>\n```",
        "```rust\n/* </code></pre><script>alert(1)</script>\n```",
        "```\"><img src=x onerror=alert(1)>\nx\n```",
        "<!-- <script>alert(1)</script> -->",
        "<div style=\"background:url(javascript:alert(1))\">x</div>",
        "<a href=\"&#x6A;avascript:alert(1)\">x</a>",
        "https://example.com/\"onmouseover=\"alert(1)",
        "www.example.com/<script>",
        "<https://example.com/\" onerror=\"x>",
        "<javascript:alert(1)>",
        "<form action=javascript:alert(1)><input type=submit></form>",
        "<details open ontoggle=alert(1)>",
        "- [x] <input type=text autofocus onfocus=alert(1)>",
    ];
    for attack in attacks {
        if let Err(problem) = check_safe(attack) {
            panic!("{problem}");
        }
    }
}

#[test]
fn hostile_shapes_do_not_panic() {
    let big_paragraph = "word @user #1 $x$ https://example.com ".repeat(5_000);
    let inputs = [
        String::new(),
        "$".to_owned(),
        "$$".to_owned(),
        "$$$".to_owned(),
        "$$$$".to_owned(),
        "$$$$$$$$".to_owned(),
        "$ $".to_owned(),
        "$\\$".to_owned(),
        "```".to_owned(),
        "```rust\nunclosed".to_owned(),
        "```rust\n/* unclosed comment".to_owned(),
        format!("```rust\n{}\n```", "\"a".repeat(1_000)),
        format!("```js\n{}\n```", "(".repeat(4_000)),
        format!("```html\n{}\n```", "<div ".repeat(800)),
        "```math\n\\frac{".to_owned(),
        "~~~~".to_owned(),
        "\u{0}\u{1}\u{7}\u{8}\u{b}\u{c}\u{1b}[31m\u{7f}\u{feff}\u{202e}".to_owned(),
        "\r\n\r\r\n".to_owned(),
        "*_**__~~`".repeat(2_000),
        "[".repeat(50_000),
        "](".repeat(20_000),
        "> ".repeat(5_000) + "deep",
        "- ".repeat(2_000) + "deep",
        "<div>".repeat(5_000),
        "<b><i>".repeat(5_000),
        format!("${}$", "{".repeat(5_000)),
        format!("${}$", "{}".repeat(5_000)),
        format!("${}$", "{}".repeat(4_000)),
        format!("${}x{}$", "{".repeat(4_000), "}".repeat(4_000)),
        format!("${}$", "\\sqrt{".repeat(1_000) + &"}".repeat(1_000)),
        format!("${}$", "\\left(".repeat(1_000) + &"\\right)".repeat(1_000)),
        format!("${}x{}$", "{".repeat(500), "}".repeat(500)),
        format!("${}$", "x^".repeat(3_000)),
        format!("$${}$$", "\\frac{1}{".repeat(1_000)),
        format!("$\\begin{{matrix}}{}\\end{{matrix}}$", "a&".repeat(3_000)),
        "|a|\n|-|\n".to_owned() + &"|x|\n".repeat(5_000),
        "@".repeat(10_000),
        "#1".repeat(10_000),
        ":".repeat(10_000),
        ":smile:".repeat(5_000),
        big_paragraph,
        "\u{10FFFF}\u{D7FF}\u{E000}".repeat(100),
    ];
    for input in &inputs {
        if let Err(problem) = check_safe(input) {
            panic!("{problem}");
        }
    }
}

/// Pieces that Markdown, HTML, TeX and the reference syntax care about.
const PIECES: &[&str] = &[
    "<",
    ">",
    "\"",
    "'",
    "=",
    "&",
    "$",
    "$$",
    ":",
    "@",
    "#",
    "[",
    "]",
    "(",
    ")",
    "!",
    "*",
    "_",
    "`",
    "```",
    "```rust\n",
    "```html\n",
    "```diff\n",
    "~",
    "|",
    "-",
    "/",
    "\\",
    "{",
    "}",
    "^",
    ";",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "script",
    "javascript",
    "JaVaScRiPt",
    "vbscript",
    "data",
    "onerror",
    "onload",
    "img",
    "src",
    "href",
    "iframe",
    "style",
    "svg",
    "math",
    "mi",
    "a",
    "x",
    "1",
    "42",
    "alice",
    "&#x6A;",
    "&#106;",
    "&colon;",
    "&lt;",
    "&#0;",
    "http://",
    "https://",
    "www.",
    "mailto:",
    "<!--",
    "-->",
    ":smile:",
    "\\frac",
    "\\text",
    "\\href",
    "\\color",
    "\\def",
    "@/all",
    "owner/repo#",
    "> ",
    "- [ ] ",
    "1. ",
    "    ",
    "\u{0}",
    "\u{200b}",
    "é",
];

fn markup_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..80).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_render_safely(input in any::<String>()) {
        if let Err(problem) = check_safe(&input) {
            prop_assert!(false, "{}", problem);
        }
    }

    #[test]
    fn markup_soup_renders_safely(input in markup_soup()) {
        if let Err(problem) = check_safe(&input) {
            prop_assert!(false, "{}", problem);
        }
    }
}

/// Text from another network shows its images as links: a reader's browser never fetches an
/// address a stranger chose (a remote image tells its sender who read the message, and when).
#[test]
fn images_from_elsewhere_are_links_never_fetched() {
    let got = weft_render::render_markdown_from_elsewhere(
        "look ![a cat](https://evil.example/track.png) and ![](https://evil.example/bare.png)",
    );
    assert!(!got.html.contains("<img"), "{}", got.html);
    assert!(
        got.html.contains("href=\"https://evil.example/track.png\"") && got.html.contains("a cat"),
        "{}",
        got.html
    );
    assert!(
        got.html.contains("https://evil.example/bare.png"),
        "{}",
        got.html
    );
    let odd =
        weft_render::render_markdown_from_elsewhere("![x](javascript:alert(1)) ![y](mxc://hs/id)");
    assert!(
        !odd.html.contains("<img") && !odd.html.contains("javascript:"),
        "{}",
        odd.html
    );
    // Weft's own users keep inline images.
    let own = weft_render::render_markdown("![a cat](https://example.org/cat.png)");
    assert!(own.html.contains("<img"), "{}", own.html);
}
