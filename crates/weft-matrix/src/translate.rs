//! Translation of message content between weft and Matrix, both ways, with no I/O: the one
//! place to read how an edit, a thread reply, a mention or a `/me` looks on the other side.
//! What the bridge sends and parses is ruma's typed content (`RoomMessageEventContent`,
//! `ReactionEventContent`, relations, `Mentions`), so its shape is the spec's.
//!
//! Spec: <https://spec.matrix.org/latest/client-server-api/#mroommessage-msgtypes>,
//! threads <https://spec.matrix.org/latest/client-server-api/#threading>, edits
//! <https://spec.matrix.org/latest/client-server-api/#event-replacements>.

use htmd::Element;
use htmd::element_handler::Handlers;
use markup5ever_rcdom::{Node, NodeData};
use ruma::events::Mentions;
use ruma::events::reaction::ReactionEventContent;
use ruma::events::receipt::{ReceiptEventContent, ReceiptType};
use ruma::events::relation::{Annotation, InReplyTo, Replacement, Reply, Thread};
use ruma::events::room::canonical_alias::RoomCanonicalAliasEventContent;
use ruma::events::room::history_visibility::{
    HistoryVisibility, RoomHistoryVisibilityEventContent,
};
use ruma::events::room::join_rules::{JoinRule, RoomJoinRulesEventContent};
use ruma::events::room::member::RoomMemberEventContent;
use ruma::events::room::message::{
    AudioInfo, AudioMessageEventContent, EmoteMessageEventContent, FileInfo,
    FileMessageEventContent, ImageMessageEventContent, MessageFormat, MessageType, Relation,
    RoomMessageEventContent, RoomMessageEventContentWithoutRelation, TextMessageEventContent,
    VideoInfo, VideoMessageEventContent,
};
use ruma::events::room::name::RoomNameEventContent;
use ruma::events::room::redaction::RoomRedactionEventContent;
use ruma::events::room::topic::RoomTopicEventContent;
use ruma::events::room::{ImageInfo, MediaSource};
use ruma::events::typing::TypingEventContent;
use ruma::{EventId, OwnedMxcUri, OwnedRoomAliasId, OwnedUserId, UInt};
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

/// A weft message's `body`: its Markdown, with emoji shortcodes as the emoji. Clients build
/// notifications (and show replies' quotes) from `body`, where `:tada:` would read as typed.
fn plain_body(text: &str) -> String {
    weft_render::with_unicode_emoji(text)
}

/// The `m.text` or `m.emote` body of a weft message: its text, and its HTML when it needs
/// one.
fn text_msgtype(status: bool, body: String, formatted: Option<String>) -> MessageType {
    match (status, formatted) {
        (false, Some(html)) => MessageType::Text(TextMessageEventContent::html(body, html)),
        (false, None) => MessageType::Text(TextMessageEventContent::plain(body)),
        (true, Some(html)) => MessageType::Emote(EmoteMessageEventContent::html(body, html)),
        (true, None) => MessageType::Emote(EmoteMessageEventContent::plain(body)),
    }
}

/// [Mentions] of the pills' Matrix users, each once; Matrix IDs that do not parse are left
/// out (no client could have been notified for them).
///
/// [Mentions]: https://spec.matrix.org/latest/client-server-api/#user-and-room-mentions
fn mentions_of<'a>(mxids: impl IntoIterator<Item = &'a str>) -> Mentions {
    Mentions::with_user_ids(
        mxids
            .into_iter()
            .filter_map(|m| OwnedUserId::try_from(m).ok()),
    )
}

/// A thread reply's relation, with the reply fallback for clients that do not show threads
/// ([spec: threading](https://spec.matrix.org/latest/client-server-api/#threading)).
fn in_thread(root: &EventId) -> Relation<RoomMessageEventContentWithoutRelation> {
    Relation::Thread(Thread::plain(root.to_owned(), root.to_owned()))
}

/// Reads typed content out of a JSON value without cloning it first (ruma still goes through
/// its raw JSON text); `None` when it is not valid content of that type.
fn typed<'v, T: serde::Deserialize<'v>>(value: &'v Value) -> Option<T> {
    T::deserialize(value).ok()
}

/// Serialises typed content for sending, with weft's permalink (`external_url`, which
/// bridges add so clients can link to the original).
fn to_sendable(content: &impl serde::Serialize, permalink: Option<&str>) -> Value {
    let mut value = serde_json::to_value(content).unwrap_or_else(|_| json!({}));
    if let Some(url) = permalink {
        value["external_url"] = json!(url);
    }
    value
}

/// The content of the [`m.room.message`] event for a new weft message.
/// `thread_root` is the Matrix event of the thread's first message, for replies.
///
/// [`m.room.message`]: https://spec.matrix.org/latest/client-server-api/#mroommessage
pub fn message_content(
    message: &Message,
    pills: &[Pill],
    thread_root: Option<&EventId>,
    permalink: &str,
) -> Value {
    let body = plain_body(&message.text);
    let formatted = formatted_body_if_needed(&body, &message.html, pills);
    let mut content = RoomMessageEventContent::new(text_msgtype(message.status, body, formatted));
    content.mentions = Some(mentions_of(newly_mentioned(pills, &[])));
    content.relates_to = thread_root.map(in_thread);
    to_sendable(&content, Some(permalink))
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
/// the caption and `filename` the name
/// ([spec: media captions](https://spec.matrix.org/latest/client-server-api/#media-captions)).
pub fn file_content(
    attachment: &weft_core::Attachment,
    mxc: &str,
    caption: Option<&str>,
    thread_root: Option<&EventId>,
    permalink: &str,
) -> Value {
    let body = caption.unwrap_or(&attachment.name).to_string();
    let source = MediaSource::Plain(OwnedMxcUri::from(mxc));
    let (mimetype, size) = (
        Some(attachment.content_type.clone()),
        UInt::new(attachment.size.max(0) as u64),
    );
    let name = Some(attachment.name.clone());
    // The four media msgtypes differ only in their types.
    macro_rules! media {
        ($variant:ident, $content:ident, $info:ident) => {{
            let mut c = $content::new(body, source);
            let mut info = $info::new();
            (info.mimetype, info.size) = (mimetype, size);
            (c.filename, c.info) = (name, Some(Box::new(info)));
            MessageType::$variant(c)
        }};
    }
    let msgtype = match file_msgtype(&attachment.content_type) {
        "m.image" => media!(Image, ImageMessageEventContent, ImageInfo),
        "m.video" => media!(Video, VideoMessageEventContent, VideoInfo),
        "m.audio" => media!(Audio, AudioMessageEventContent, AudioInfo),
        _ => media!(File, FileMessageEventContent, FileInfo),
    };
    let mut content = RoomMessageEventContent::new(msgtype);
    content.relates_to = thread_root.map(in_thread);
    to_sendable(&content, Some(permalink))
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

/// Reads an `m.image`/`m.file`/`m.video`/`m.audio` content; `None` for other content, and
/// for encrypted media, which weft cannot read.
pub fn incoming_file(content: &Value) -> Option<IncomingFile> {
    let parsed = typed::<RoomMessageEventContent>(content)?;
    let info = |mimetype: Option<String>, size: Option<UInt>| (mimetype, size);
    let (body, filename, source, (mimetype, size)) = match parsed.msgtype {
        MessageType::Image(c) => {
            let i = c.info.map_or((None, None), |i| info(i.mimetype, i.size));
            (c.body, c.filename, c.source, i)
        }
        MessageType::Video(c) => {
            let i = c.info.map_or((None, None), |i| info(i.mimetype, i.size));
            (c.body, c.filename, c.source, i)
        }
        MessageType::Audio(c) => {
            let i = c.info.map_or((None, None), |i| info(i.mimetype, i.size));
            (c.body, c.filename, c.source, i)
        }
        MessageType::File(c) => {
            let i = c.info.map_or((None, None), |i| info(i.mimetype, i.size));
            (c.body, c.filename, c.source, i)
        }
        _ => return None,
    };
    let MediaSource::Plain(url) = source else {
        return None;
    };
    let (name, caption) = match filename {
        Some(filename) if filename != body => (filename, Some(body)),
        Some(filename) => (filename, None),
        None => (body, None),
    };
    Some(IncomingFile {
        url: url.to_string(),
        name,
        content_type: mimetype.unwrap_or_else(|| "application/octet-stream".into()),
        caption,
        size: size.map(u64::from),
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

/// The events a transaction's events name, their own ids first: what a relation
/// (`m.relates_to`: a reply, thread, edit or reaction) points at and what a redaction removes
/// ([spec: relations](https://spec.matrix.org/latest/client-server-api/#forming-relationships-between-events),
/// [redactions](https://spec.matrix.org/latest/client-server-api/#redactions)), so that
/// what they carry in weft can be looked up in one go. Read loosely: it only decides what is
/// looked up ahead, and each event is parsed properly when it is planned.
pub fn events_named(events: &[Value]) -> Vec<&str> {
    let mut named: Vec<&str> = Vec::with_capacity(events.len() * 2);
    for event in events {
        named.extend(event["event_id"].as_str());
    }
    for event in events {
        let content = &event["content"];
        let relation = &content["m.relates_to"];
        named.extend(relation["event_id"].as_str());
        named.extend(relation["m.in_reply_to"]["event_id"].as_str());
        named.extend(content["redacts"].as_str().or(event["redacts"].as_str()));
    }
    named.sort_unstable();
    named.dedup();
    named
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

/// The content of the [`m.replace`] event for an edit of `original`.
///
/// `m.new_content` mentions everyone the new text mentions; the top-level `m.mentions`,
/// which is what notifies, only those of them not in `notified`, the people an earlier
/// version mentioned: a newly mentioned person is notified, nobody twice
/// ([spec: mentions in edits](https://spec.matrix.org/latest/client-server-api/#user-and-room-mentions)).
/// The top-level body, `* ` and the new text, is for clients that do not show edits.
///
/// [`m.replace`]: https://spec.matrix.org/latest/client-server-api/#event-replacements
pub fn edit_content(
    message: &Message,
    pills: &[Pill],
    original: &EventId,
    notified: &[String],
) -> Value {
    let body = plain_body(&message.text);
    let formatted = formatted_body_if_needed(&body, &message.html, pills);
    let mut new_content = RoomMessageEventContentWithoutRelation::new(text_msgtype(
        message.status,
        body.clone(),
        formatted.clone(),
    ));
    new_content.mentions = Some(mentions_of(newly_mentioned(pills, &[])));
    let mut content = RoomMessageEventContent::new(text_msgtype(
        message.status,
        format!("* {body}"),
        formatted.map(|html| format!("* {html}")),
    ));
    content.mentions = Some(mentions_of(newly_mentioned(pills, notified)));
    content.relates_to = Some(Relation::Replacement(Replacement::new(
        original.to_owned(),
        new_content,
    )));
    to_sendable(&content, None)
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

/// The content of an [`m.reaction`] to `target`.
///
/// [`m.reaction`]: https://spec.matrix.org/latest/client-server-api/#mreaction
pub fn reaction_content(target: &EventId, emoji: &str) -> Value {
    to_sendable(
        &ReactionEventContent::new(Annotation::new(target.to_owned(), emoji.to_string())),
        None,
    )
}

/// The bridge bot's [`m.notice`] saying `text`.
///
/// [`m.notice`]: https://spec.matrix.org/latest/client-server-api/#mnotice
pub fn notice_content(text: &str) -> Value {
    let mut content = RoomMessageEventContent::notice_plain(text);
    content.mentions = Some(Mentions::new());
    to_sendable(&content, None)
}

/// The notice telling a Matrix user that their event did not reach weft: a reply to it that
/// mentions them, so their client shows it to them.
pub fn refusal_notice(text: &str, refused: &EventId, sender: &str) -> Value {
    let mut content = RoomMessageEventContent::notice_plain(text);
    content.mentions = Some(mentions_of([sender]));
    content.relates_to = Some(Relation::Reply(Reply::new(InReplyTo::new(
        refused.to_owned(),
    ))));
    to_sendable(&content, None)
}

/// The [`m.room.topic`] of a weft room.
///
/// [`m.room.topic`]: https://spec.matrix.org/latest/client-server-api/#mroomtopic
pub fn topic_content(topic: &str) -> Value {
    to_sendable(&RoomTopicEventContent::new(topic.to_string()), None)
}

/// The [`m.room.name`] of a weft room: its name (its URI is in its alias).
///
/// [`m.room.name`]: https://spec.matrix.org/latest/client-server-api/#mroomname
pub fn room_name_content(name: &str) -> Value {
    to_sendable(&RoomNameEventContent::new(name.to_string()), None)
}

/// A bridged room's name, topic or avatar as a Matrix state event carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomDetail {
    /// `m.room.name`: the name (empty when removed).
    Name(String),
    /// `m.room.topic`: the topic (empty when removed).
    Topic(String),
    /// `m.room.avatar`: the picture's `mxc://` URI (`None` when removed).
    Avatar(Option<String>),
}

/// Reads an incoming [`m.room.name`], [`m.room.topic`] or [`m.room.avatar`] event; `None` for
/// other events or content that is not valid.
///
/// [`m.room.name`]: https://spec.matrix.org/latest/client-server-api/#mroomname
/// [`m.room.topic`]: https://spec.matrix.org/latest/client-server-api/#mroomtopic
/// [`m.room.avatar`]: https://spec.matrix.org/latest/client-server-api/#mroomavatar
pub fn incoming_room_detail(event: &Value) -> Option<RoomDetail> {
    if event["state_key"].as_str() != Some("") {
        return None;
    }
    let content = &event["content"];
    match event["type"].as_str()? {
        "m.room.name" => Some(RoomDetail::Name(
            typed::<RoomNameEventContent>(content)?
                .name
                .trim()
                .to_string(),
        )),
        "m.room.topic" => Some(RoomDetail::Topic(
            typed::<RoomTopicEventContent>(content)?
                .topic
                .trim()
                .to_string(),
        )),
        "m.room.avatar" => Some(RoomDetail::Avatar(
            content["url"]
                .as_str()
                .filter(|url| url.starts_with("mxc://"))
                .map(str::to_string),
        )),
        _ => None,
    }
}

/// The state that closes a Matrix room to newcomers when its weft room stops being public:
/// invite only, history for members only, no canonical alias
/// ([join rules](https://spec.matrix.org/latest/client-server-api/#mroomjoin_rules),
/// [history visibility](https://spec.matrix.org/latest/client-server-api/#mroomhistory_visibility)).
pub fn closed_room_state() -> Vec<(&'static str, Value)> {
    vec![
        (
            "m.room.join_rules",
            to_sendable(&RoomJoinRulesEventContent::new(JoinRule::Invite), None),
        ),
        (
            "m.room.history_visibility",
            to_sendable(
                &RoomHistoryVisibilityEventContent::new(HistoryVisibility::Joined),
                None,
            ),
        ),
        (
            "m.room.canonical_alias",
            to_sendable(&RoomCanonicalAliasEventContent::new(), None),
        ),
    ]
}

/// The state of a public portal room: its alias, open to all, history readable by anyone.
pub fn open_room_state(alias: &str) -> Vec<(&'static str, Value)> {
    let mut canonical = RoomCanonicalAliasEventContent::new();
    canonical.alias = OwnedRoomAliasId::try_from(alias).ok();
    vec![
        ("m.room.canonical_alias", to_sendable(&canonical, None)),
        (
            "m.room.join_rules",
            to_sendable(&RoomJoinRulesEventContent::new(JoinRule::Public), None),
        ),
        (
            "m.room.history_visibility",
            to_sendable(
                &RoomHistoryVisibilityEventContent::new(HistoryVisibility::WorldReadable),
                None,
            ),
        ),
    ]
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

/// Reads an incoming [`m.room.message`]'s content; `None` for content weft does not take as
/// text (files are handled apart, and content that is not a valid message). `username_of`
/// maps a pill's Matrix ID to a weft username.
///
/// [`m.room.message`]: https://spec.matrix.org/latest/client-server-api/#mroommessage
pub fn incoming_text(
    content: &Value,
    username_of: impl Fn(&str) -> Option<String>,
) -> Option<IncomingText> {
    let parsed = typed::<RoomMessageEventContent>(content)?;
    let (mut in_reply_to, mut thread_root, mut replaces, mut falling_back) =
        (None, None, None, false);
    // For an edit, the new text is in m.new_content.
    let mut msgtype = parsed.msgtype;
    match parsed.relates_to {
        Some(Relation::Reply(reply)) => in_reply_to = Some(reply.in_reply_to.event_id),
        Some(Relation::Thread(thread)) => {
            in_reply_to = thread.in_reply_to.map(|r| r.event_id);
            falling_back = thread.is_falling_back;
            thread_root = Some(thread.event_id);
        }
        Some(Relation::Replacement(replacement)) => {
            replaces = Some(replacement.event_id);
            msgtype = replacement.new_content.msgtype;
        }
        _ => {}
    }
    let (status, body, formatted) = match msgtype {
        MessageType::Text(t) => (false, t.body, t.formatted),
        MessageType::Notice(n) => (false, n.body, n.formatted),
        MessageType::Emote(e) => (true, e.body, e.formatted),
        _ => return None,
    };
    let html = formatted
        .filter(|f| f.format == MessageFormat::Html)
        .map(|f| f.body);
    let text = match html {
        // The HTML is what the sender meant; the plain body is only a fallback.
        Some(html) => html_to_markdown(&pills_to_names(&html, &username_of)),
        None if in_reply_to.is_some() && !falling_back => strip_reply_fallback(&body),
        None => body,
    };
    Some(IncomingText {
        text,
        status,
        in_reply_to: in_reply_to.map(String::from),
        thread_root: thread_root.map(String::from),
        replaces: replaces.map(String::from),
    })
}

/// The event a message (or file) replies to or whose thread it joins: the thread root for
/// `m.thread`, else the replied-to event.
pub fn relation_target(content: &Value) -> Option<String> {
    let parsed = typed::<RoomMessageEventContent>(content)?;
    match parsed.relates_to? {
        Relation::Thread(thread) => Some(thread.event_id.into()),
        Relation::Reply(reply) => Some(reply.in_reply_to.event_id.into()),
        _ => None,
    }
}

/// An incoming [`m.reaction`]: the event reacted to and the key.
///
/// [`m.reaction`]: https://spec.matrix.org/latest/client-server-api/#mreaction
pub fn incoming_reaction(content: &Value) -> Option<(String, String)> {
    let parsed = typed::<ReactionEventContent>(content)?;
    Some((parsed.relates_to.event_id.into(), parsed.relates_to.key))
}

/// An incoming [`m.room.redaction`]: the event it removes (in the content from room version
/// 11, at the top level before) and why.
///
/// [`m.room.redaction`]: https://spec.matrix.org/latest/client-server-api/#mroomredaction
pub fn incoming_redaction(event: &Value) -> Option<(String, Option<String>)> {
    let content: RoomRedactionEventContent = typed(&event["content"]).unwrap_or_default();
    let redacts = match content.redacts {
        Some(id) => id.to_string(),
        None => <&EventId>::try_from(event["redacts"].as_str()?)
            .ok()?
            .to_string(),
    };
    Some((redacts, content.reason))
}

/// What an incoming [`m.room.member`] event says.
///
/// [`m.room.member`]: https://spec.matrix.org/latest/client-server-api/#mroommember
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMember {
    /// Whom it is about (`state_key`).
    pub target: String,
    /// `join`, `leave`, `ban`, `invite`, `knock`.
    pub membership: String,
    /// The membership before, if the homeserver said (`unsigned.prev_content`).
    pub before: Option<String>,
    /// The display name it sets, if any and not blank.
    pub display_name: Option<String>,
    /// The avatar it sets (`mxc://…`), if any.
    pub avatar_url: Option<String>,
    /// The reason a moderator gave.
    pub reason: Option<String>,
}

/// Reads an `m.room.member` event; `None` if it is not a valid one.
pub fn incoming_member(event: &Value) -> Option<IncomingMember> {
    let content = typed::<RoomMemberEventContent>(&event["content"])?;
    let before = typed::<RoomMemberEventContent>(&event["unsigned"]["prev_content"])
        .map(|prev| prev.membership.as_str().to_string());
    Some(IncomingMember {
        target: event["state_key"].as_str()?.to_string(),
        membership: content.membership.as_str().to_string(),
        before,
        display_name: content.displayname.filter(|n| !n.trim().is_empty()),
        avatar_url: content
            .avatar_url
            .filter(|mxc| mxc.is_valid())
            .map(|mxc| mxc.to_string()),
        reason: content.reason,
    })
}

/// The Matrix users an [`m.typing`] event says are typing.
///
/// [`m.typing`]: https://spec.matrix.org/latest/client-server-api/#mtyping
pub fn typing_users(event: &Value) -> Vec<String> {
    typed::<TypingEventContent>(&event["content"])
        .map(|c| c.user_ids.into_iter().map(String::from).collect())
        .unwrap_or_default()
}

/// Who read what, from an [`m.receipt`] event: `(reader, event read)` for each public read
/// receipt (`m.read`, in the main timeline or a thread). Private receipts (`m.read.private`)
/// are the reader's own business and are left out.
///
/// [`m.receipt`]: https://spec.matrix.org/latest/client-server-api/#mreceipt
pub fn read_receipts(event: &Value) -> Vec<(String, String)> {
    let Some(content) = typed::<ReceiptEventContent>(&event["content"]) else {
        return Vec::new();
    };
    let mut read = Vec::new();
    for (event_id, receipts) in content.0 {
        if let Some(readers) = receipts.get(&ReceiptType::Read) {
            for reader in readers.keys() {
                read.push((reader.to_string(), event_id.to_string()));
            }
        }
    }
    read
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
        // Maths ([MSC2191]): the TeX is in `data-mx-maths`, the element's content only a
        // fallback; weft writes it `$…$` inline and `$$…$$` as a block, and renders it.
        //
        // [MSC2191]: https://github.com/matrix-org/matrix-spec-proposals/pull/2191
        .add_handler(
            vec!["span", "div"],
            |handlers: &dyn Handlers, element: Element| {
                let tex = element
                    .attrs
                    .iter()
                    .find(|a| &*a.name.local == "data-mx-maths")
                    .map(|a| a.value.trim().replace(['\n', '\r'], " "));
                match tex {
                    Some(tex) if !tex.is_empty() && element.tag == "div" => {
                        Some(format!("\n\n$${tex}$$\n\n").into())
                    }
                    Some(tex) if !tex.is_empty() => Some(format!("${tex}$").into()),
                    _ => handlers.fallback(element),
                }
            },
        )
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

    #[test]
    fn reactions_redactions_and_member_events_parse_as_the_spec_says() {
        let reaction = json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": "$m", "key": "👍 ok" } });
        assert_eq!(
            incoming_reaction(&reaction),
            Some(("$m".to_string(), "👍 ok".to_string()))
        );
        assert_eq!(
            incoming_reaction(&json!({ "m.relates_to": { "event_id": "$m" } })),
            None
        );
        // Room version 11 carries `redacts` in the content, earlier versions at the top.
        let v11 = json!({ "content": { "redacts": "$a", "reason": "spam" } });
        assert_eq!(
            incoming_redaction(&v11),
            Some(("$a".into(), Some("spam".into())))
        );
        let v10 = json!({ "redacts": "$b", "content": {} });
        assert_eq!(incoming_redaction(&v10), Some(("$b".into(), None)));
        assert_eq!(incoming_redaction(&json!({ "content": {} })), None);
        let unban = json!({
            "state_key": "@spam:hs", "content": { "membership": "leave", "reason": "ok now" },
            "unsigned": { "prev_content": { "membership": "ban" } },
        });
        assert_eq!(
            incoming_member(&unban),
            Some(IncomingMember {
                target: "@spam:hs".into(),
                membership: "leave".into(),
                before: Some("ban".into()),
                display_name: None,
                avatar_url: None,
                reason: Some("ok now".into()),
            })
        );
        let detail = |etype: &str, content: Value| {
            incoming_room_detail(&json!({ "type": etype, "state_key": "", "content": content }))
        };
        assert_eq!(
            detail("m.room.name", json!({ "name": " Rust " })),
            Some(RoomDetail::Name("Rust".into()))
        );
        assert_eq!(
            detail("m.room.avatar", json!({ "url": "mxc://hs/pic" })),
            Some(RoomDetail::Avatar(Some("mxc://hs/pic".into())))
        );
        assert_eq!(
            detail("m.room.avatar", json!({})),
            Some(RoomDetail::Avatar(None)),
            "a removed avatar"
        );
        assert_eq!(
            detail(
                "m.room.avatar",
                json!({ "url": "https://elsewhere/pic.png" })
            ),
            Some(RoomDetail::Avatar(None)),
            "only mxc: URIs name a picture"
        );
        let pictured = json!({ "state_key": "@a:hs", "content": { "membership": "join", "avatar_url": "mxc://hs/abc" } });
        assert_eq!(
            incoming_member(&pictured)
                .and_then(|m| m.avatar_url)
                .as_deref(),
            Some("mxc://hs/abc")
        );
        let join = json!({ "state_key": "@a:hs", "content": { "membership": "join", "displayname": "  " } });
        assert_eq!(
            incoming_member(&join).and_then(|m| m.display_name),
            None,
            "a blank name names nobody"
        );
        assert_eq!(
            incoming_member(&json!({ "state_key": "@a:hs", "content": {} })),
            None
        );
        assert_eq!(
            typing_users(&json!({ "content": { "user_ids": ["@a:hs", "@b:hs"] } })),
            ["@a:hs", "@b:hs"]
        );
        let receipt = json!({ "content": {
            "$one:hs": { "m.read": { "@a:hs": { "ts": 1 } }, "m.read.private": { "@b:hs": { "ts": 2 } } },
            "$two:hs": { "m.read": { "@c:hs": { "ts": 3, "thread_id": "$root:hs" } } },
        } });
        assert_eq!(
            read_receipts(&receipt),
            [
                ("@a:hs".to_string(), "$one:hs".to_string()),
                ("@c:hs".to_string(), "$two:hs".to_string())
            ],
            "public receipts only, threaded ones too"
        );
        assert!(read_receipts(&json!({ "content": "not a map" })).is_empty());
        let thread = json!({ "msgtype": "m.text", "body": "x", "m.relates_to": { "rel_type": "m.thread", "event_id": "$root", "m.in_reply_to": { "event_id": "$last" } } });
        assert_eq!(relation_target(&thread).as_deref(), Some("$root"));
        let reply = json!({ "msgtype": "m.text", "body": "x", "m.relates_to": { "m.in_reply_to": { "event_id": "$q" } } });
        assert_eq!(relation_target(&reply).as_deref(), Some("$q"));
    }

    /// Maths from Matrix clients (MSC2191) becomes weft's dollar syntax, which weft renders.
    #[test]
    fn matrix_maths_becomes_dollar_maths() {
        assert_eq!(
            html_to_markdown(
                r#"area <span data-mx-maths="\pi r^2"><code>\pi r^2</code></span> m²"#
            ),
            r"area $\pi r^2$ m²"
        );
        assert_eq!(
            html_to_markdown(
                r#"<p>so</p><div data-mx-maths="e^{i\pi} + 1 = 0"><pre><code>e^{i\pi} + 1 = 0</code></pre></div>"#
            ),
            "so\n\n$$e^{i\\pi} + 1 = 0$$"
        );
        assert_eq!(
            html_to_markdown("<span>plain</span> <div>block</div>"),
            "plain\n\nblock"
        );
        let rendered = weft_render::render_markdown(&html_to_markdown(
            r#"<span data-mx-maths="x^2">x^2</span>"#,
        ));
        assert!(rendered.html.contains("<math"), "{}", rendered.html);
    }

    /// Clients notify from `body`: a shortcode must read as its emoji there too, in new
    /// messages and in edits, and a message that is only text with an emoji needs no HTML.
    #[test]
    fn emoji_shortcodes_are_unicode_in_the_body() {
        let mut message = message_with("ship it :rocket:");
        message.html = "<p>ship it 🚀</p>".into();
        let id = EventId::parse("$orig:hs").expect("an event id");
        let content = message_content(&message, &[], None, "https://weft.test/m");
        assert_eq!(content["body"], "ship it 🚀");
        assert!(content.get("formatted_body").is_none(), "{content}");
        let edit = edit_content(&message, &[], &id, &[]);
        assert_eq!(edit["body"], "* ship it 🚀");
        assert_eq!(edit["m.new_content"]["body"], "ship it 🚀");
        let code = message_with("`:rocket:` is how you type it");
        let content = message_content(&code, &[], None, "https://weft.test/m");
        assert_eq!(content["body"], "`:rocket:` is how you type it");
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
        let original = <&EventId>::try_from("$original").expect("an event id");
        let content = edit_content(&message, &pills, original, &["@bob:s".to_string()]);
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
            original,
            &["@bob:s".to_string(), "@carol:s".to_string()],
        );
        assert_eq!(again["m.mentions"], json!({}), "nobody is notified twice");
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
