//! The data `render_markdown` collects besides the HTML: mentions, issues and URLs.

use weft_render::{IssueRef, Mention, Rendered, render_markdown};

fn mentions(input: &str) -> Vec<String> {
    render_markdown(input)
        .mentions
        .into_iter()
        .map(|m| m.screen_name)
        .collect()
}

fn issue(repo: Option<&str>, number: u64) -> IssueRef {
    IssueRef {
        repo: repo.map(str::to_owned),
        number,
    }
}

#[test]
fn mentions_in_order_deduplicated() {
    assert_eq!(
        mentions("@bob hi @alice, @bob and @Alice again"),
        ["bob", "alice"]
    );
    assert_eq!(mentions("@first.last."), ["first.last"]);
    assert_eq!(mentions("**@strong** _@em_"), ["strong", "em"]);
    assert_eq!(mentions("- [ ] ask @carol\n> @dave"), ["carol", "dave"]);
}

#[test]
fn everyone_mention() {
    let rendered = render_markdown("@/all release at noon, @dan");
    assert_eq!(
        rendered.mentions,
        [
            Mention {
                screen_name: "/all".to_owned()
            },
            Mention {
                screen_name: "dan".to_owned()
            }
        ]
    );
    assert!(rendered.mentions[0].is_all());
    assert!(!rendered.mentions[1].is_all());
    assert!(rendered.html.contains("data-screen-name=\"/all\""));
}

#[test]
fn not_mentions() {
    for input in [
        "write to a@b.com",
        "a@b",
        "`@alice`",
        "```\n@alice\n```",
        "    @alice indented code",
        "[@alice](https://example.com)",
        "https://example.com/@alice",
        "@ alone",
        "\\`@x",
    ] {
        let got = mentions(input);
        if input == "\\`@x" {
            // An escaped backtick is text, so the mention after it counts.
            assert_eq!(got, ["x"], "{input}");
        } else {
            assert!(got.is_empty(), "{input}: {got:?}");
        }
    }
}

#[test]
fn mentions_across_raw_html() {
    // Raw HTML is shown as text, and references next to it are still found.
    assert_eq!(mentions("<b>@alice</b> <i>x</i>@bob"), ["alice", "bob"]);
    let rendered = render_markdown("<i>owner/repo#5</i>");
    assert_eq!(rendered.issues, [issue(Some("owner/repo"), 5)]);
    assert!(
        rendered.html.contains("&lt;i&gt;<span class=\"issue\""),
        "{}",
        rendered.html
    );
}

#[test]
fn issue_references() {
    let rendered = render_markdown("fixes #12, see weft-org/weft#345 and #12 again; owner/repo#12");
    assert_eq!(
        rendered.issues,
        [
            issue(None, 12),
            issue(Some("weft-org/weft"), 345),
            issue(Some("owner/repo"), 12)
        ]
    );
    for input in [
        "abc#12",
        "`#12`",
        "[#12](https://example.com)",
        "https://example.com/page#12",
        "#12abc",
        "a/b/c#1",
        "# 12",
    ] {
        let rendered = render_markdown(input);
        assert!(rendered.issues.is_empty(), "{input}: {:?}", rendered.issues);
    }
    // A heading is not an issue, but an issue in a heading is.
    assert_eq!(render_markdown("# about #7").issues, [issue(None, 7)]);
}

#[test]
fn urls_of_every_link() {
    let rendered = render_markdown(
        "https://a.example.com and www.b.example.com, [c](https://c.example.com/x?y=1) \
         <https://d.example.com> https://a.example.com again, mail x@e.example.com, \
         [rel](/docs) [bad](javascript:alert(1)) ![img](https://img.example.com/i.png)",
    );
    assert_eq!(
        rendered.urls,
        [
            "https://a.example.com",
            "http://www.b.example.com",
            "https://c.example.com/x?y=1",
            "https://d.example.com",
            "mailto:x@e.example.com",
            "/docs",
        ]
    );
}

#[test]
fn urls_in_code_are_not_links() {
    assert!(render_markdown("`https://example.com`").urls.is_empty());
}

#[test]
fn empty_and_whitespace() {
    assert_eq!(render_markdown(""), Rendered::default());
    assert_eq!(render_markdown("   \n\n  ").html, "");
}

#[test]
fn serialises_for_the_api() {
    fn assert_serialize<T: serde::Serialize>(_: &T) {}
    assert_serialize(&render_markdown("@a #1 https://x.example"));
}
