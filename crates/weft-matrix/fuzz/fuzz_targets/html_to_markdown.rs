//! A `formatted_body` as any Matrix client may send it: HTML → Markdown never panics and never
//! hands weft a raw `<script` outside code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use weft_matrix::translate;

fuzz_target!(|data: &[u8]| {
    let html = String::from_utf8_lossy(data);
    let markdown = translate::html_to_markdown(&html);
    assert_no_raw_script(&html, &markdown);
    let content = json!({
        "msgtype": "m.text",
        "body": "",
        "format": "org.matrix.custom.html",
        "formatted_body": html,
    });
    let text = translate::incoming_text(&content, |_| Some("someone".to_string()))
        .expect("an m.text with a formatted body is text");
    assert_no_raw_script(&html, &text.text);
});

/// A `<script` in the Markdown is fine only escaped (`\<`) or inside a code span or block;
/// this cheap check accepts those and flags the rest for a look.
fn assert_no_raw_script(html: &str, markdown: &str) {
    let lower = markdown.to_ascii_lowercase();
    let in_code = markdown.contains('`');
    for (i, _) in lower.match_indices("<script") {
        let escaped = lower[..i].ends_with('\\');
        assert!(escaped || in_code, "{html:?} -> {markdown:?}");
    }
}
