//! An AS transaction body as the homeserver PUTs it: bytes → JSON → every event the bridge
//! reads (text, edits, replies, files, pills), as `inbound.rs` walks them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use weft_matrix::translate;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for event in translate::transaction_events(&body) {
        let content = &event["content"];
        let html = content["formatted_body"]
            .as_str()
            .or(content["m.new_content"]["formatted_body"].as_str())
            .unwrap_or_default();
        let targets = translate::pill_targets(html);
        let _ = translate::incoming_text(content, |mxid| {
            targets.iter().any(|t| t == mxid).then(|| "someone".to_string())
        });
        let _ = translate::incoming_file(content);
        let _ = translate::strip_reply_fallback(content["body"].as_str().unwrap_or_default());
    }
});
