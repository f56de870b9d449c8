//! Snapshots of the HTML (and collected data) for each kind of message content.

use weft_render::render_markdown;

/// The input and everything rendering it produced, laid out for reading in a snapshot.
fn show(input: &str) -> String {
    let rendered = render_markdown(input);
    let mentions: Vec<&str> = rendered
        .mentions
        .iter()
        .map(|m| m.screen_name.as_str())
        .collect();
    let issues: Vec<String> = rendered
        .issues
        .iter()
        .map(|i| match &i.repo {
            Some(repo) => format!("{repo}#{}", i.number),
            None => format!("#{}", i.number),
        })
        .collect();
    format!(
        "input:\n{input}\n\nhtml:\n{}\n\nmentions: {mentions:?}\nissues: {issues:?}\nurls: {:?}\n",
        rendered.html, rendered.urls
    )
}

macro_rules! snapshot {
    ($name:ident, $input:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(stringify!($name), show($input));
        }
    };
}

snapshot!(plain_text, "Hello, world & friends");
snapshot!(
    emphasis,
    "*em* **strong** _under_ __also strong__ ***both***"
);
snapshot!(code_span, "run `cargo test` now, not `<b>@bob #1</b>`");
snapshot!(
    code_block_with_language,
    "```rust\nfn main() {\n    println!(\"<hi> @bob #1\");\n}\n```"
);
snapshot!(code_block_without_language, "```\nplain\ncode\n```");
snapshot!(
    gfm_table,
    "| left | centre | right |\n|:-----|:------:|------:|\n| a | *b* | `c` |\n| 1 | 2 | 3 |"
);
snapshot!(strikethrough, "this is ~~wrong~~ right");
snapshot!(task_list, "- [ ] todo\n- [x] done\n- plain");
snapshot!(
    autolinked_url,
    "see https://example.com/path?q=1&r=2 and www.example.org."
);
snapshot!(
    explicit_link,
    "[the docs](https://docs.example.com \"Docs\") and <https://angle.example.com>"
);
snapshot!(image, "![a cat](https://example.com/cat.png)");
snapshot!(
    mention,
    "hey @alice, have you seen @bob.smith's PR? cc @alice"
);
snapshot!(mention_all, "@/all the build is green");
snapshot!(email_is_not_mention, "mail me at someone@example.com");
snapshot!(
    mention_inside_code,
    "`@alice` is not pinged\n\n```\n@bob\n```"
);
snapshot!(mention_inside_link, "[ask @alice](https://example.com)");
snapshot!(
    issue_refs,
    "fixes #12 and weft-org/weft#345, not abc#12 or x#1"
);
snapshot!(
    emoji_shortcode,
    "ship it :rocket: :+1: :not_an_emoji_at_all:"
);
snapshot!(inline_maths, "Euler: $e^{i\\pi} + 1 = 0$ costs $5 or $10");
snapshot!(display_maths, "$$\\frac{a}{b} = \\sqrt{x^2}$$");
snapshot!(math_code_block, "```math\nx_1 + x_2\n```");
snapshot!(broken_maths, "oops $\\frac{1}{$ and $$\\notacommand x$$");
snapshot!(
    raw_html_script,
    "<script>alert('x')</script>\n\nhello <b onclick=\"evil()\">bold</b> <img src=x onerror=alert(1)>"
);
snapshot!(
    javascript_link,
    "[click](javascript:alert(1)) [also](JAVASCRIPT:alert(1)) ![img](javascript:alert(1)) [data](data:text/html;base64,PHNjcmlwdD4=)"
);
snapshot!(
    hard_breaks,
    "first line\nsecond line\n\nnew paragraph\nlast line"
);
snapshot!(blockquote, "> quoted @alice\n> second line\n\nreply");
snapshot!(
    heading_and_lists,
    "# Title\n\n1. one\n2. two\n\n---\n\n* a\n* b"
);
snapshot!(
    maths_attributes_survive_sanitising,
    "$\\color{red}{x} \\colorbox{yellow}{w} a \\hspace{1em} b$ and $$\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix} \\operatorname{f} \\sum_{i=0}^n$$"
);
snapshot!(maths_with_html_inside, "$\\text{<b>hi</b>} < 2$");
snapshot!(
    maths_code_forms,
    "inline $`a^2`$, broken $`\\frac{`$\n\n```math\n\\frac{1}{\n```"
);
snapshot!(
    code_block_highlighted,
    "```python\n# greet\ndef hello(name: str) -> str:\n    return f\"<hi> {name}\" * 2\n```"
);
snapshot!(
    code_block_diff,
    "```diff\n--- a/x\n+++ b/x\n-old line\n+new line\n```"
);
snapshot!(
    code_block_unknown_language,
    "```no-such-language\n<b>plain</b> @bob\n```"
);
snapshot!(
    code_block_info_words,
    "```rust ignore\nlet x = 1; // @bob #1\n```"
);
