//! Translation of message content between weft and Matrix, both ways, with no I/O: the one
//! place to read how an edit, a thread reply, a mention or a `/me` looks on the other side.
//!
//! Spec: <https://spec.matrix.org/latest/client-server-api/#mroommessage-msgtypes>,
//! threads <https://spec.matrix.org/latest/client-server-api/#threading>, edits
//! <https://spec.matrix.org/latest/client-server-api/#event-replacements>.

use htmd::Element;
use htmd::element_handler::Handlers;
use markup5ever_rcdom::{Node, NodeData};
use serde_json::{Value, json};
use weft_core::Message;

/// A weft user mentioned in a message, with their puppet.
#[derive(Debug, Clone)]
pub struct Pill {
    /// The name as written after `@`.
    pub screen_name: String,
    /// Their Matrix ID.
    pub mxid: String,
}

/// The `formatted_body` for a weft message: weft's sanitised HTML with mention spans turned
/// into pills, MathML into Matrix's `data-mx-maths` (with the TeX as a fallback) and
/// highlighted code back to plain code.
pub fn formatted_body(html: &str, pills: &[Pill]) -> String {
    let mut out = maths_to_matrix(&strip_highlighting(html));
    for pill in pills {
        let span = format!(
            "<span class=\"mention\" data-link-type=\"mention\" data-screen-name=\"{0}\">@{0}</span>",
            pill.screen_name
        );
        let link = format!(
            "<a href=\"https://matrix.to/#/{}\">@{}</a>",
            pill.mxid, pill.screen_name
        );
        out = out.replace(&span, &link);
    }
    out
}

/// Removes the highlighting spans (`<span class="hl-…">`) from code blocks: the Matrix spec
/// allows only `class="language-…"` on `code`, and clients highlight code themselves. Inside
/// a code block all text is escaped, so every tag there but `code` is such a span.
fn strip_highlighting(html: &str) -> std::borrow::Cow<'_, str> {
    if !html.contains("<span class=\"hl-") {
        return std::borrow::Cow::Borrowed(html);
    }
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find("<pre><code") {
        let Some(end) = rest[start..].find("</code></pre>").map(|e| start + e) else {
            break;
        };
        out.push_str(&rest[..start]);
        let mut block = &rest[start..end];
        // Keep `<pre><code …>` itself.
        let open_end = block.find('>').map_or(0, |i| i + 1);
        let open_end = block[open_end..]
            .find('>')
            .map_or(block.len(), |i| open_end + i + 1);
        out.push_str(&block[..open_end]);
        block = &block[open_end..];
        while let Some(tag) = block.find('<') {
            out.push_str(&block[..tag]);
            let close = block[tag..].find('>').map_or(block.len(), |i| tag + i + 1);
            let markup = &block[tag..close];
            if !(markup.starts_with("<span") || markup == "</span>") {
                out.push_str(markup);
            }
            block = &block[close..];
        }
        out.push_str(block);
        rest = &rest[end..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Replaces each `<math>…<annotation encoding="application/x-tex">TEX</annotation>…</math>`
/// with `<span data-mx-maths="TEX"><code>TEX</code></span>` (or `div` for display maths).
fn maths_to_matrix(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find("<math") {
        let Some(end) = rest[start..]
            .find("</math>")
            .map(|e| start + e + "</math>".len())
        else {
            break;
        };
        out.push_str(&rest[..start]);
        let block = &rest[start..end];
        let display = block.contains("display=\"block\"");
        let tex = block
            .find("encoding=\"application/x-tex\">")
            .map(|i| i + "encoding=\"application/x-tex\">".len())
            .and_then(|i| block[i..].find("</annotation>").map(|j| &block[i..i + j]))
            .unwrap_or("");
        let tag = if display { "div" } else { "span" };
        out.push_str(&format!(
            "<{tag} data-mx-maths=\"{}\"><code>{tex}</code></{tag}>",
            tex.replace('"', "&quot;")
        ));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The `formatted_body` a weft message needs, or none when its HTML says nothing its body
/// does not: a single paragraph of plain text. Element leaves such messages unformatted too,
/// and every client (and Synapse's push rules) then has one string less to handle.
pub fn formatted_body_if_needed(text: &str, html: &str, pills: &[Pill]) -> Option<String> {
    let plain = !text.contains(['<', '>', '&', '\n'])
        && html
            .trim_end()
            .strip_prefix("<p>")
            .and_then(|rest| rest.strip_suffix("</p>"))
            == Some(text);
    (!plain).then(|| formatted_body(html, pills))
}

/// Adds `format` and `formatted_body` to `content` when there is one.
fn with_formatted(mut content: Value, formatted: Option<&str>) -> Value {
    if let Some(html) = formatted {
        content["format"] = json!("org.matrix.custom.html");
        content["formatted_body"] = json!(html);
    }
    content
}

/// The content of the Matrix event for a new weft message.
/// `thread_root` is the Matrix event of the thread's first message, for replies.
pub fn message_content(
    message: &Message,
    pills: &[Pill],
    thread_root: Option<&str>,
    permalink: &str,
) -> Value {
    let mut content = with_formatted(
        json!({
            "msgtype": if message.status { "m.emote" } else { "m.text" },
            "body": message.text,
            "m.mentions": { "user_ids": newly_mentioned(pills, &[]) },
            "external_url": permalink,
        }),
        formatted_body_if_needed(&message.text, &message.html, pills).as_deref(),
    );
    if let Some(root) = thread_root {
        // A thread reply, with the reply fallback for clients that do not show threads.
        content["m.relates_to"] = json!({
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": true,
            "m.in_reply_to": { "event_id": root },
        });
    }
    content
}

/// The caption of a message that carries files: its text without the file links weft added.
pub fn caption_of(text: &str) -> Option<String> {
    let caption: Vec<&str> = text
        .lines()
        .filter(|l| !(l.contains("](/files/") && (l.starts_with('[') || l.starts_with("!["))))
        .collect();
    let caption = caption.join("\n");
    (!caption.trim().is_empty()).then_some(caption)
}

/// The msgtype for a MIME type.
pub fn file_msgtype(content_type: &str) -> &'static str {
    match content_type.split('/').next() {
        Some("image") => "m.image",
        Some("video") => "m.video",
        Some("audio") => "m.audio",
        _ => "m.file",
    }
}

/// The content of the event for one file of a weft message. With a caption, `body` holds
/// the caption and `filename` the name (spec v1.10 media captions).
pub fn file_content(
    attachment: &weft_core::Attachment,
    mxc: &str,
    caption: Option<&str>,
    thread_root: Option<&str>,
    permalink: &str,
) -> Value {
    let mut content = json!({
        "msgtype": file_msgtype(&attachment.content_type),
        "body": caption.unwrap_or(&attachment.name),
        "filename": attachment.name,
        "url": mxc,
        "info": { "mimetype": attachment.content_type, "size": attachment.size },
        "external_url": permalink,
    });
    if let Some(root) = thread_root {
        content["m.relates_to"] = json!({
            "rel_type": "m.thread", "event_id": root, "is_falling_back": true, "m.in_reply_to": { "event_id": root },
        });
    }
    content
}

/// An incoming file: where to get it and what to call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingFile {
    /// `mxc://` URI.
    pub url: String,
    /// File name.
    pub name: String,
    /// MIME type (as the sender declared it).
    pub content_type: String,
    /// A caption, when `body` differs from the file name.
    pub caption: Option<String>,
    /// Declared size, if any.
    pub size: Option<u64>,
}

/// Reads an `m.image`/`m.file`/`m.video`/`m.audio` content.
pub fn incoming_file(content: &Value) -> Option<IncomingFile> {
    let msgtype = content["msgtype"].as_str()?;
    if !matches!(msgtype, "m.image" | "m.file" | "m.video" | "m.audio") {
        return None;
    }
    let url = content["url"].as_str()?.to_string();
    let body = content["body"].as_str().unwrap_or("file");
    let (name, caption) = match content["filename"].as_str() {
        Some(filename) if filename != body => (filename.to_string(), Some(body.to_string())),
        Some(filename) => (filename.to_string(), None),
        None => (body.to_string(), None),
    };
    let content_type = content["info"]["mimetype"]
        .as_str()
        .unwrap_or("application/octet-stream")
        .to_string();
    Some(IncomingFile {
        url,
        name,
        content_type,
        caption,
        size: content["info"]["size"].as_u64(),
    })
}

/// The events of an AS transaction body (`{"events": [...]}`); none when the body has another
/// shape. Spec: <https://spec.matrix.org/latest/application-service-api/#put_matrixappv1transactionstxnid>.
pub fn transaction_events(body: &Value) -> &[Value] {
    body["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// What identifies an AS transaction for deduplication: its id *and* the events it carries.
///
/// The spec asks homeservers for a transaction id unique per application service
/// (<https://spec.matrix.org/latest/application-service-api/#pushing-events>), but Synapse
/// numbers transactions from 1 again after a restart (seen with its SQLite store): keyed on
/// the id alone, every transaction after a restart looked like one already applied, and its
/// events were acknowledged and lost. A retry of a transaction carries the same events, so
/// the id plus a digest of the event ids tells a retry from a new transaction.
pub fn transaction_key(txn_id: &str, body: &Value) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for event in transaction_events(body) {
        digest.update(event["event_id"].as_str().unwrap_or_default().as_bytes());
        digest.update(b"\n");
    }
    let hash = digest.finalize();
    format!("{txn_id}:{}", hex::encode(&hash[..12]))
}

/// The content of the `m.replace` event for an edit of `original`.
///
/// `m.new_content` mentions everyone the new text mentions; the top-level `m.mentions`,
/// which is what notifies, only those of them not in `notified`, the people an earlier
/// version mentioned: a newly mentioned person is notified, nobody twice
/// (<https://spec.matrix.org/v1.16/client-server-api/#mentions>, "Mentions in edits").
pub fn edit_content(
    message: &Message,
    pills: &[Pill],
    original: &str,
    notified: &[String],
) -> Value {
    let newly: Vec<&str> = newly_mentioned(pills, notified);
    let msgtype = if message.status { "m.emote" } else { "m.text" };
    let formatted = formatted_body_if_needed(&message.text, &message.html, pills);
    let new_content = with_formatted(
        json!({
            "msgtype": msgtype,
            "body": message.text,
            "m.mentions": { "user_ids": newly_mentioned(pills, &[]) },
        }),
        formatted.as_deref(),
    );
    with_formatted(
        json!({
            "msgtype": msgtype,
            "body": format!("* {}", message.text),
            "m.new_content": new_content,
            "m.mentions": { "user_ids": newly },
            "m.relates_to": { "rel_type": "m.replace", "event_id": original },
        }),
        formatted.map(|html| format!("* {html}")).as_deref(),
    )
}

/// The Matrix IDs among `pills` not in `notified`, each once.
pub fn newly_mentioned<'p>(pills: &'p [Pill], notified: &[String]) -> Vec<&'p str> {
    let mut out: Vec<&str> = Vec::new();
    for pill in pills {
        if !notified.contains(&pill.mxid) && !out.contains(&pill.mxid.as_str()) {
            out.push(&pill.mxid);
        }
    }
    out
}

/// The content of a reaction.
pub fn reaction_content(target: &str, emoji: &str) -> Value {
    json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": target, "key": emoji } })
}

/// What an incoming `m.room.message` means for weft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingText {
    /// Markdown text for weft.
    pub text: String,
    /// `m.emote`.
    pub status: bool,
    /// The Matrix event it replies to, or whose thread it joins.
    pub in_reply_to: Option<String>,
    /// The thread root, for `m.thread` replies.
    pub thread_root: Option<String>,
    /// The event it replaces, for edits.
    pub replaces: Option<String>,
}

/// Reads an incoming message's content; `None` for content weft does not take as text
/// (files are handled apart). `puppet_names` maps a pill's Matrix ID to a weft username.
pub fn incoming_text(
    content: &Value,
    username_of: impl Fn(&str) -> Option<String>,
) -> Option<IncomingText> {
    let relates = &content["m.relates_to"];
    let replaces = (relates["rel_type"] == "m.replace")
        .then(|| relates["event_id"].as_str().map(str::to_string))
        .flatten();
    // For an edit, the new text is in m.new_content.
    let body_source = if replaces.is_some() && content["m.new_content"].is_object() {
        &content["m.new_content"]
    } else {
        content
    };
    let msgtype = body_source["msgtype"].as_str().unwrap_or("m.text");
    if !matches!(msgtype, "m.text" | "m.notice" | "m.emote") {
        return None;
    }
    let thread_root = (relates["rel_type"] == "m.thread")
        .then(|| relates["event_id"].as_str().map(str::to_string))
        .flatten();
    let in_reply_to = relates["m.in_reply_to"]["event_id"]
        .as_str()
        .map(str::to_string);
    let falling_back = relates["is_falling_back"].as_bool().unwrap_or(false);
    let html = (body_source["format"] == "org.matrix.custom.html")
        .then(|| body_source["formatted_body"].as_str())
        .flatten();
    let text = match html {
        // The HTML is what the sender meant; the plain body is only a fallback.
        Some(html) => html_to_markdown(&pills_to_names(html, &username_of)),
        None => {
            let body = body_source["body"].as_str()?;
            if in_reply_to.is_some() && !falling_back {
                strip_reply_fallback(body)
            } else {
                body.to_string()
            }
        }
    };
    Some(IncomingText {
        text,
        status: msgtype == "m.emote",
        in_reply_to,
        thread_root,
        replaces,
    })
}

/// Drops the quoted `> <@user> …` lines a reply carries for old clients.
pub fn strip_reply_fallback(body: &str) -> String {
    if !body.starts_with("> <") {
        return body.to_string();
    }
    let mut lines = body.lines().skip_while(|l| l.starts_with('>'));
    let mut rest: Vec<&str> = Vec::new();
    if let Some(first) = lines.next()
        && !first.is_empty()
    {
        rest.push(first);
    }
    rest.extend(lines);
    rest.join("\n")
}

/// The Matrix user a weft mention names, when it is written as one (`@alice:matrix.org`
/// mentions `alice:matrix.org`); `None` for weft usernames and for anything that is not a
/// valid Matrix user ID.
pub fn mentioned_matrix_user(screen_name: &str) -> Option<String> {
    let (localpart, server) = screen_name.split_once(':')?;
    // Today's grammar only (the ID parser also takes legacy IDs, spaces included).
    let valid_localpart = !localpart.is_empty()
        && localpart
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=-/+".contains(&b));
    let valid_server = <&ruma::ServerName>::try_from(server).is_ok();
    (valid_localpart && valid_server).then(|| format!("@{screen_name}"))
}

/// Whether `mxid`, written in a weft message, reads back as a mention of that Matrix user.
fn is_matrix_user_mention(mxid: &str) -> bool {
    weft_render::mention_name(mxid)
        .is_some_and(|name| mxid.get(1..) == Some(name.as_str()) && name.contains(':'))
}

/// The Matrix IDs that pills in `formatted_body` point to.
pub fn pill_targets(html: &str) -> Vec<String> {
    html.split("href=\"https://matrix.to/#/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|t| t.replace("%40", "@").replace("%3A", ":"))
        .collect()
}

/// Replaces pills (`<a href="https://matrix.to/#/@id">Name</a>`) with `@username` for weft
/// users and with the plain name for others, so the Markdown reads as people typed it.
fn pills_to_names(html: &str, username_of: &impl Fn(&str) -> Option<String>) -> String {
    const PILL: &str = "<a href=\"https://matrix.to/#/";
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find(PILL) {
        let after = &rest[start + PILL.len()..];
        let (Some(quote), Some(close)) = (after.find('"'), after.find("</a>")) else {
            break;
        };
        let Some(label_start) = after[..close].find('>').map(|i| i + 1) else {
            break;
        };
        let target = after[..quote].replace("%40", "@").replace("%3A", ":");
        out.push_str(&rest[..start]);
        match username_of(&target) {
            Some(username) => out.push_str(&format!("@{username}")),
            // Another Matrix user: a weft mention of them (`@alice:matrix.org`), which goes
            // back to Matrix as the same pill.
            None if is_matrix_user_mention(&target) => out.push_str(&target),
            None => out.push_str(&after[label_start..close]),
        }
        rest = &after[close + "</a>".len()..];
    }
    out.push_str(rest);
    out
}

/// Matrix HTML to weft's Markdown. The reply fallback (`<mx-reply>`) and anything that
/// cannot be content (script, style) are dropped; weft renders and sanitises the result again.
/// Whatever the input, the Markdown carries no raw HTML a renderer would take for a script.
pub fn html_to_markdown(html: &str) -> String {
    let converter = htmd::HtmlToMarkdown::builder()
        .skip_tags(vec![
            "mx-reply", "script", "style", "head", "iframe", "object",
        ])
        .add_handler(vec!["a"], |handlers: &dyn Handlers, element: Element| {
            let content = handlers.walk_children(element.node).content;
            let href = element
                .attrs
                .iter()
                .find(|a| &*a.name.local == "href")
                .map(|a| link_destination(&a.value));
            Some(match href {
                Some(href) => format!("[{content}]({href})").into(),
                None => content.into(),
            })
        })
        // A heading holds one line: when it wraps blocks (a code block), writing it as a
        // heading would pull the block's first line into the heading and leave the rest as
        // raw text, so such a heading becomes plain blocks.
        .add_handler(
            vec!["h1", "h2", "h3", "h4", "h5", "h6"],
            |handlers: &dyn Handlers, element: Element| {
                let content = handlers.walk_children(element.node).content;
                let content = content.trim_matches(['\n', '\r']);
                if content.contains('\n') {
                    return Some(format!("\n\n{content}\n\n").into());
                }
                let level = element
                    .tag
                    .trim_start_matches('h')
                    .parse::<usize>()
                    .unwrap_or(1);
                Some(format!("\n\n{} {content}\n\n", "#".repeat(level)).into())
            },
        )
        // htmd writes code text out raw, and an inline `<code>` around blocks breaks its code
        // span: both are written here from their text, so code stays text.
        .add_handler(vec!["pre"], |_: &dyn Handlers, element: Element| {
            let mut text = String::new();
            text_of(element.node, &mut text);
            let text = text.trim_matches('\n');
            if inside_inline(element.node) {
                // A code block cannot live inside bold, a link or a heading: the enclosing
                // markup would split its fences. Keep it code, as an inline span.
                return Some(code_span(text).into());
            }
            let fence = "`".repeat(longest_backtick_run(text).max(2) + 1);
            let language = code_language(element.node).unwrap_or_default();
            Some(format!("\n\n{fence}{language}\n{text}\n{fence}\n\n").into())
        })
        .add_handler(vec!["code"], |_: &dyn Handlers, element: Element| {
            let mut text = String::new();
            text_of(element.node, &mut text);
            Some(code_span(&text).into())
        })
        .build();
    match converter.convert(html) {
        // Only blank lines go: leading spaces may make an indented code block.
        Ok(markdown) => markdown
            .trim_start_matches(['\n', '\r'])
            .trim_end()
            .to_string(),
        Err(_) => String::new(),
    }
}

/// `text` as an inline code span, with enough backticks that none inside can close it.
fn code_span(text: &str) -> String {
    let text = text.replace(['\n', '\r'], " ");
    if text.trim().is_empty() {
        return text;
    }
    let ticks = "`".repeat(longest_backtick_run(&text) + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{ticks}{pad}{text}{pad}{ticks}")
}

/// Whether `node` sits inside an element that Markdown writes inline (or on one line).
fn inside_inline(node: &Node) -> bool {
    const INLINE: &[&str] = &[
        "a", "b", "strong", "i", "em", "del", "s", "strike", "u", "span", "sup", "sub", "code",
        "font", "h1", "h2", "h3", "h4", "h5", "h6", "th", "td",
    ];
    let mut current = parent_of(node);
    while let Some(parent) = current {
        if let NodeData::Element { name, .. } = &parent.data
            && INLINE.contains(&&*name.local)
        {
            return true;
        }
        current = parent_of(&parent);
    }
    false
}

fn parent_of(node: &Node) -> Option<std::rc::Rc<Node>> {
    let weak = node.parent.take();
    let parent = weak.as_ref().and_then(std::rc::Weak::upgrade);
    node.parent.set(weak);
    parent
}

/// The longest run of backticks in `text`.
fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// The language of `<pre><code class="language-x">`, when it is a plain word.
fn code_language(pre: &Node) -> Option<String> {
    pre.children.borrow().iter().find_map(|child| {
        let NodeData::Element { name, attrs, .. } = &child.data else {
            return None;
        };
        if &*name.local != "code" {
            return None;
        }
        let attrs = attrs.borrow();
        let class = attrs.iter().find(|a| &*a.name.local == "class")?;
        class
            .value
            .split_whitespace()
            .find_map(|c| c.strip_prefix("language-"))
            .filter(|l| {
                l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-_#.".contains(c))
            })
            .map(str::to_string)
    })
}

/// Appends the text under `node`.
fn text_of(node: &Node, out: &mut String) {
    if let NodeData::Text { contents } = &node.data {
        out.push_str(&contents.borrow());
    }
    for child in node.children.borrow().iter() {
        text_of(child, out);
    }
}

/// A link target written so that Markdown reads it as one destination: characters that would
/// end it or open raw HTML (whitespace, `<`, `>`, parentheses, backslash) are percent-encoded.
fn link_destination(href: &str) -> String {
    let mut out = String::with_capacity(href.len());
    for c in href.chars() {
        if c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '(' | ')' | '\\') {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_reused_transaction_id_with_other_events_is_another_transaction() {
        let first = json!({ "events": [{ "event_id": "$a" }, { "event_id": "$b" }] });
        let retry =
            json!({ "events": [{ "event_id": "$a" }, { "event_id": "$b" }], "ephemeral": [] });
        let after_restart = json!({ "events": [{ "event_id": "$c" }] });
        assert_eq!(transaction_key("7", &first), transaction_key("7", &retry));
        assert_ne!(
            transaction_key("7", &first),
            transaction_key("7", &after_restart)
        );
        assert_ne!(transaction_key("7", &first), transaction_key("8", &first));
    }
    use super::*;

    fn message_with(text: &str) -> Message {
        Message {
            id: weft_core::Id::generate(),
            seq: 1,
            room_id: weft_core::Id::generate(),
            author: weft_core::Author::User(weft_core::Id::generate()),
            text: text.into(),
            html: format!("<p>{text}</p>"),
            status: false,
            parent_id: None,
            thread_count: 0,
            sent: 1,
            edited_at: Some(2),
            deleted: false,
            mentions: Vec::new(),
            issues: Vec::new(),
            urls: Vec::new(),
            attachments: Vec::new(),
            version: 2,
            reactions: Vec::new(),
            read_by: 0,
            undelivered: None,
        }
    }

    /// The review's case: an edit that adds a mention must notify the person added, and
    /// only them; the new content still mentions everyone.
    #[test]
    fn an_edit_notifies_only_the_newly_mentioned() {
        let pill = |name: &str| Pill {
            screen_name: name.into(),
            mxid: format!("@{name}:s"),
        };
        let pills = [pill("bob"), pill("carol"), pill("bob")];
        let message = message_with("hi @bob and @carol");
        let content = edit_content(&message, &pills, "$original", &["@bob:s".to_string()]);
        assert_eq!(content["m.mentions"], json!({ "user_ids": ["@carol:s"] }));
        assert_eq!(
            content["m.new_content"]["m.mentions"],
            json!({ "user_ids": ["@bob:s", "@carol:s"] })
        );
        assert_eq!(content["m.relates_to"]["rel_type"], "m.replace");
        assert_eq!(content["m.relates_to"]["event_id"], "$original");
        let again = edit_content(
            &message,
            &pills,
            "$original",
            &["@bob:s".to_string(), "@carol:s".to_string()],
        );
        assert_eq!(
            again["m.mentions"],
            json!({ "user_ids": [] }),
            "nobody is notified twice"
        );
    }

    #[test]
    fn mention_spans_become_pills() {
        let html = "<p>hi <span class=\"mention\" data-link-type=\"mention\" data-screen-name=\"bob\">@bob</span></p>";
        let pills = [Pill {
            screen_name: "bob".into(),
            mxid: "@bob-1:s".into(),
        }];
        assert_eq!(
            formatted_body(html, &pills),
            "<p>hi <a href=\"https://matrix.to/#/@bob-1:s\">@bob</a></p>"
        );
    }

    #[test]
    fn only_formatted_messages_get_a_formatted_body() {
        let html_of = |text: &str| weft_render::render_markdown(text).html;
        for plain in ["hello there", "ünïcödé 🎉 fine", "a \"quoted\" word"] {
            assert_eq!(
                formatted_body_if_needed(plain, &html_of(plain), &[]),
                None,
                "{plain}: {}",
                html_of(plain)
            );
        }
        for formatted in [
            "**bold**",
            "a & b",
            "1 < 2",
            "line\nbreak",
            ":smile:",
            "see https://example.org",
            "`code`",
        ] {
            let html = html_of(formatted);
            assert_eq!(
                formatted_body_if_needed(formatted, &html, &[]),
                Some(formatted_body(&html, &[])),
                "{formatted}"
            );
        }
        let html = "<p>hi <span class=\"mention\" data-link-type=\"mention\" data-screen-name=\"bob\">@bob</span></p>";
        let pills = [Pill {
            screen_name: "bob".into(),
            mxid: "@bob-1:s".into(),
        }];
        assert!(formatted_body_if_needed("hi @bob", html, &pills).is_some());
    }

    #[test]
    fn highlighting_stays_out_of_matrix() {
        // As weft's renderer writes a highlighted block (see weft-render's snapshots).
        let html = "<p>see <code>a</code> &lt;b&gt;</p>\n<pre><code class=\"language-rust\">\
            <span class=\"hl-keyword\">fn </span><span class=\"hl-function\">main</span>() { \
            <span class=\"hl-keyword\">let</span> s = <span class=\"hl-string\">\"&lt;/span&gt;\"</span>; }\n\
            </code></pre>\n<p><span class=\"mention\" data-link-type=\"mention\" data-screen-name=\"bob\">@bob</span></p>";
        let pills = [Pill {
            screen_name: "bob".into(),
            mxid: "@bob-1:s".into(),
        }];
        assert_eq!(
            formatted_body(html, &pills),
            "<p>see <code>a</code> &lt;b&gt;</p>\n<pre><code class=\"language-rust\">fn main() { let s = \"&lt;/span&gt;\"; }\n</code></pre>\n<p><a href=\"https://matrix.to/#/@bob-1:s\">@bob</a></p>"
        );
    }

    #[test]
    fn maths_becomes_mx_maths() {
        let html = "<p><math display=\"inline\"><semantics><mi>x</mi><annotation encoding=\"application/x-tex\">x^2</annotation></semantics></math> ok</p>";
        assert_eq!(
            formatted_body(html, &[]),
            "<p><span data-mx-maths=\"x^2\"><code>x^2</code></span> ok</p>"
        );
    }

    #[test]
    fn replies_lose_their_fallback() {
        let content = json!({
            "msgtype": "m.text",
            "body": "> <@a:s> original\n> more\n\nmy answer",
            "m.relates_to": { "m.in_reply_to": { "event_id": "$orig" } },
        });
        let got = incoming_text(&content, |_| None).expect("text");
        assert_eq!(got.text, "my answer");
        assert_eq!(got.in_reply_to.as_deref(), Some("$orig"));
        assert_eq!(got.thread_root, None);
    }

    #[test]
    fn edits_take_the_new_content() {
        let content = json!({
            "msgtype": "m.text",
            "body": "* fixed",
            "m.new_content": { "msgtype": "m.text", "body": "fixed" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": "$orig" },
        });
        let got = incoming_text(&content, |_| None).expect("text");
        assert_eq!(
            (got.text.as_str(), got.replaces.as_deref()),
            ("fixed", Some("$orig"))
        );
    }

    #[test]
    fn formatted_bodies_become_markdown() {
        let content = json!({
            "msgtype": "m.text",
            "body": "bold and code",
            "format": "org.matrix.custom.html",
            "formatted_body": "<mx-reply><blockquote>quoted</blockquote></mx-reply><strong>bold</strong> and <code>code</code> <a href=\"https://example.org\">x</a><script>alert(1)</script>",
        });
        let got = incoming_text(&content, |_| None).expect("text");
        assert_eq!(got.text, "**bold** and `code` [x](https://example.org)");
    }

    #[test]
    fn emotes_threads_and_pills() {
        let content = json!({
            "msgtype": "m.emote",
            "body": "waves at Alice Smith",
            "format": "org.matrix.custom.html",
            "formatted_body": "waves at <a href=\"https://matrix.to/#/@alice-0123:s\">Alice Smith</a>",
            "m.relates_to": { "rel_type": "m.thread", "event_id": "$root", "is_falling_back": true, "m.in_reply_to": { "event_id": "$root" } },
        });
        let got = incoming_text(&content, |mxid| {
            (mxid == "@alice-0123:s").then(|| "alice".to_string())
        })
        .expect("text");
        assert_eq!(got.text, "waves at @alice");
        assert!(got.status);
        assert_eq!(got.thread_root.as_deref(), Some("$root"));
    }

    #[test]
    fn matrix_users_are_mentioned_by_their_id_both_ways() {
        assert_eq!(
            mentioned_matrix_user("maria:matrix.org").as_deref(),
            Some("@maria:matrix.org")
        );
        assert_eq!(mentioned_matrix_user("bob"), None);
        assert_eq!(mentioned_matrix_user("bad name:matrix.org"), None);
        // A pill of a Matrix user (not a puppet) becomes a weft mention of them...
        let content = json!({
            "msgtype": "m.text",
            "body": "Maria: look",
            "format": "org.matrix.custom.html",
            "formatted_body": "<a href=\"https://matrix.to/#/@maria:matrix.org\">Maria</a>: look, <a href=\"https://matrix.to/#/@x:s\">X</a>",
        });
        let got = incoming_text(&content, |_| None).expect("text");
        assert_eq!(got.text, "@maria:matrix.org: look, X");
        // ...which weft renders as a mention and sends back as the same pill.
        let rendered = weft_render::render_markdown(&got.text);
        assert_eq!(rendered.mentions[0].screen_name, "maria:matrix.org");
        let pills = [Pill {
            screen_name: "maria:matrix.org".into(),
            mxid: "@maria:matrix.org".into(),
        }];
        assert!(
            formatted_body(&rendered.html, &pills).contains(
                "<a href=\"https://matrix.to/#/@maria:matrix.org\">@maria:matrix.org</a>"
            ),
            "{}",
            rendered.html
        );
    }

    #[test]
    fn files_both_ways() {
        assert_eq!(caption_of("![cat.png](/files/0123/cat.png)"), None);
        assert_eq!(
            caption_of("look\n![cat.png](/files/0123/cat.png)").as_deref(),
            Some("look")
        );
        let got = incoming_file(&json!({ "msgtype": "m.image", "body": "so cute", "filename": "cat.png", "url": "mxc://s/x", "info": { "mimetype": "image/png", "size": 3 } }))
            .expect("file");
        assert_eq!(
            (got.name.as_str(), got.caption.as_deref(), got.size),
            ("cat.png", Some("so cute"), Some(3))
        );
        assert_eq!(
            incoming_file(&json!({ "msgtype": "m.text", "body": "x" })),
            None
        );
        assert_eq!(file_msgtype("application/pdf"), "m.file");
    }

    #[test]
    fn code_blocks_inside_inline_markup_stay_code() {
        // Found by the property test: the fence landed on the heading's or the bold's line.
        assert_eq!(
            html_to_markdown("<h1><pre>&#60;script&#62;</pre></h1>"),
            "# `<script>`"
        );
        assert_eq!(
            html_to_markdown("<strong><pre>&lt;script&gt;</pre></strong>"),
            "**`<script>`**"
        );
        assert_eq!(html_to_markdown("<h2>Title</h2>"), "## Title");
    }

    #[test]
    fn escaped_script_in_pre_stays_code() {
        // Found by the property tests: trimming the indent of a code block made raw HTML.
        let markdown = html_to_markdown("<pre>&#60;script&#62;");
        assert!(!markdown.starts_with("<script"), "{markdown:?}");
    }

    #[test]
    fn code_stays_code() {
        // Found by the property tests: inline code around a block lost its code span.
        let markdown = html_to_markdown("<code>a<ul><li>&lt;script&gt;");
        assert_eq!(markdown, "`a<script>`");
        assert_eq!(
            html_to_markdown("<pre><code class=\"language-rust\">let a = `x`;\n</code></pre>"),
            "```rust\nlet a = `x`;\n```"
        );
        assert_eq!(html_to_markdown("<code>``</code>"), "``` `` ```");
    }

    #[test]
    fn link_targets_cannot_open_html() {
        // Found by the property tests: a `<` in an href broke the link and left raw HTML.
        let markdown =
            html_to_markdown("<a href=\"https://matrix.to/#/<script><a href=\"https://x\">x");
        assert!(!markdown.contains("<script"), "{markdown:?}");
        assert_eq!(
            html_to_markdown("<a href=\"https://e.org/a b(c)\">x</a>"),
            "[x](https://e.org/a%20b%28c%29)"
        );
    }

    #[test]
    fn files_are_not_text() {
        assert_eq!(
            incoming_text(&json!({ "msgtype": "m.image", "body": "cat.png" }), |_| {
                None
            }),
            None
        );
    }
}
