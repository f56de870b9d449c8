//! Property tests for what the bridge reads from the network: whatever a homeserver (or anyone
//! holding its token) sends, the translation functions return without panicking, and HTML
//! turned into Markdown never carries a `<script` element on to weft.
//!
//! The fuzz targets in `crates/weft-matrix/fuzz` explore the same functions with coverage
//! guidance; these run in every `cargo test`.

use proptest::prelude::*;
use serde_json::{Value, json};
use weft_matrix::translate;

/// Arbitrary JSON, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        html().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys, mostly the ones the bridge looks at, so the walk gets deep.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "events",
            "type",
            "content",
            "sender",
            "room_id",
            "event_id",
            "redacts",
            "msgtype",
            "body",
            "format",
            "formatted_body",
            "m.relates_to",
            "m.new_content",
            "rel_type",
            "m.in_reply_to",
            "is_falling_back",
            "key",
            "url",
            "filename",
            "info",
            "mimetype",
            "size",
            "displayname",
        ])
        .prop_map(str::to_string),
        any::<String>(),
    ]
}

/// HTML-ish strings: tags Matrix clients send, hostile ones, pills, entities and broken pieces.
fn html() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "<p>",
            "</p>",
            "<strong>",
            "</strong>",
            "<em>",
            "<code>",
            "</code>",
            "<pre>",
            "</pre>",
            "<a href=\"https://matrix.to/#/@a-1:s\">",
            "<a href=\"https://matrix.to/#/",
            "</a>",
            "<a href=\"javascript:alert(1)\">",
            "<mx-reply>",
            "</mx-reply>",
            "<blockquote>",
            "</blockquote>",
            "<script>",
            "</script>",
            "<SCRIPT src=x>",
            "<scr<script>ipt>",
            "&lt;script&gt;",
            "&lt;",
            "&gt;",
            "&amp;",
            "&#60;script&#62;",
            "<img src=x onerror=alert(1)>",
            "<ul><li>",
            "</li></ul>",
            "<ol start=\"3\"><li>",
            "<table><tr><td>",
            "<br>",
            "<br/>",
            "<h1>",
            "</h1>",
            "<del>",
            "<span data-mx-maths=\"x\">",
            "<iframe>",
            "<style>",
            "</style>",
            "<!--",
            "-->",
            "<![CDATA[",
            "]]>",
            "`",
            "*",
            "_",
            "\\",
            "[",
            "](",
            ")",
            "\n",
            " ",
            "<",
            ">",
            "\"",
            "'",
            "é",
            "🦀",
            "\u{0}",
        ])
        .prop_map(str::to_string),
        "[a-z ]{0,6}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

/// Whether Markdown yields a `<script` element once rendered. Rendered with raw HTML kept, as
/// the laxest Markdown renderer would, so the check does not lean on weft's sanitiser: a
/// backslash-escaped `\<script>` or one in a code span is text, not markup.
fn has_script(markdown: &str) -> bool {
    let mut options = comrak::Options::default();
    options.render.r#unsafe = true;
    comrak::markdown_to_html(markdown, &options)
        .to_ascii_lowercase()
        .contains("<script")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn html_to_markdown_never_panics_nor_emits_script(html in html()) {
        let markdown = translate::html_to_markdown(&html);
        prop_assert!(!has_script(&markdown), "{html:?} -> {markdown:?}");
    }

    #[test]
    fn formatted_bodies_never_panic_nor_emit_script(html in html(), body in any::<String>()) {
        let content = json!({
            "msgtype": "m.text",
            "body": body,
            "format": "org.matrix.custom.html",
            "formatted_body": html,
        });
        let got = translate::incoming_text(&content, |m| Some(m.chars().take(8).collect()));
        let got = got.expect("an m.text with a formatted body is text");
        prop_assert!(!has_script(&got.text), "{html:?} -> {:?}", got.text);
        let _ = translate::pill_targets(&html);
    }

    #[test]
    fn transactions_never_panic(body in any_json(), events in prop::collection::vec(any_json(), 0..4)) {
        let body = if events.is_empty() { body } else { json!({ "events": events }) };
        for event in translate::transaction_events(&body) {
            let content = &event["content"];
            let html = content["formatted_body"].as_str().unwrap_or_default();
            let _ = translate::pill_targets(html);
            let _ = translate::incoming_text(content, |_| None);
            let _ = translate::incoming_file(content);
            let _ = translate::strip_reply_fallback(content["body"].as_str().unwrap_or_default());
            let _ = translate::relation_target(content);
            let _ = translate::incoming_reaction(content);
            let _ = translate::incoming_redaction(event);
            let _ = translate::incoming_member(event);
            let _ = translate::typing_users(event);
        }
    }

    #[test]
    fn contents_never_panic(content in any_json()) {
        let _ = translate::incoming_text(&content, |m| Some(m.to_string()));
        let _ = translate::incoming_file(&content);
        let _ = translate::relation_target(&content);
        let _ = translate::incoming_reaction(&content);
    }
}
