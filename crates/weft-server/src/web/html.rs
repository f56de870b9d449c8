//! HTML building blocks: escaping, the page frame, and messages as both the server and the
//! script render them (the script builds the same structure in `renderMessage`).

use std::fmt::Write;

use weft_chat::Actor;
use weft_core::{MessageView, Profile};

use super::ASSET_VERSION;

/// Escapes text for use in HTML content and in quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes each segment of a `community/room` URI for use in a path.
pub fn path(uri: &str) -> String {
    uri.split('/')
        .map(|segment| {
            segment
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// JSON for a `<script type="application/json">` block: `<` is escaped so that no string in
/// it can close the element.
pub fn json_block(id: &str, value: &serde_json::Value) -> String {
    let text = value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    format!("<script type=\"application/json\" id=\"{id}\">{text}</script>")
}

/// What goes into a page's `<head>` besides the basics.
pub struct Head {
    pub title: String,
    pub description: Option<String>,
    pub noindex: bool,
    pub script: bool,
    pub body_class: &'static str,
}

impl Head {
    pub fn new(title: impl Into<String>) -> Head {
        Head {
            title: title.into(),
            description: None,
            noindex: false,
            script: false,
            body_class: "",
        }
    }
}

/// The frame of every page: head, top bar (with the viewer's account links), content.
pub fn layout(head: &Head, viewer: &Actor, content: &str) -> String {
    let v = ASSET_VERSION.as_str();
    let mut out = String::with_capacity(content.len() + 2048);
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(out, "<title>{} · weft</title>", esc(&head.title));
    if let Some(d) = &head.description {
        let _ = write!(out, "<meta name=\"description\" content=\"{}\">", esc(d));
    }
    if head.noindex {
        out.push_str("<meta name=\"robots\" content=\"noindex\">");
    }
    // The style sheet is in the page: as a separate request it blocked the first paint, and
    // in a fresh browser tab it was often the last thing the page waited for (see the peeking
    // benchmark). At 15 kB it costs less than the request did.
    out.push_str("<style>");
    out.push_str(super::APP_CSS);
    out.push_str("</style>");
    if head.script {
        let _ = write!(out, "<script src=\"/assets/app.js?v={v}\" defer></script>");
    }
    let _ = write!(
        out,
        "</head><body class=\"{}\"><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header class=\"top\"><a class=\"brand\" href=\"/\">weft</a><nav class=\"account\">",
        head.body_class
    );
    match &viewer.user {
        Some(user) => {
            let _ = write!(
                out,
                "<span class=\"me\" title=\"@{u}\">{name}</span>\
                 <a href=\"/settings/tokens\">Tokens</a>\
                 <form method=\"post\" action=\"/logout\" class=\"inline\"><button type=\"submit\" class=\"link\">Sign out</button></form>",
                u = esc(&user.username),
                name = esc(&user.display_name),
            );
        }
        None => out.push_str("<a href=\"/login\" id=\"sign-in\">Sign in</a>"),
    }
    out.push_str("</nav></header>");
    out.push_str(content);
    out.push_str("</body></html>");
    out
}

/// `HH:MM` (UTC) and the full ISO time of a timestamp; the script shows local time instead.
pub fn time(ms: i64) -> (String, String) {
    let iso = weft_core::iso8601(ms);
    let short = iso.get(11..16).unwrap_or_default().to_string();
    (iso, short)
}

/// A stable hue for a name: the colour of its generated avatar (and of the space an avatar
/// takes while it loads).
pub fn hue(name: &str) -> u32 {
    name.bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 360
}

/// One message as a list item. `permalink_base` is the room's path, for `?at=` links.
pub fn message(view: &MessageView, permalink_base: &str, highlight: bool) -> String {
    let m = &view.message;
    let (author_id, name, username, badge, avatar_url) = match &view.author {
        Some(Profile::User(u)) => (
            u.id.to_string(),
            u.display_name.as_str(),
            u.username.as_str(),
            None,
            u.avatar_url.as_deref(),
        ),
        Some(Profile::Virtual(v)) => (
            v.id.to_string(),
            v.display_name.as_str(),
            v.external_id.as_str(),
            Some(v.kind.as_str()),
            v.avatar_url.as_deref(),
        ),
        None => (String::new(), "someone", "", None, None),
    };
    let mut class = String::from("msg");
    if m.status {
        class.push_str(" status");
    }
    if m.deleted {
        class.push_str(" deleted");
    }
    if highlight {
        class.push_str(" highlight");
    }
    let (iso, short) = time(m.sent);
    let mut out = String::with_capacity(m.html.len() + 600);
    let _ = write!(
        out,
        "<li class=\"{class}\" id=\"m-{id}\" data-id=\"{id}\" data-author=\"{author_id}\">\
         <img class=\"avatar\" src=\"{avatar}\" alt=\"\" width=\"34\" height=\"34\" style=\"--hue:{hue}\">\
         <div class=\"body\"><div class=\"meta\"><span class=\"author\">{name}</span> \
         <span class=\"username\">{at}{username}</span>",
        id = m.id,
        hue = hue(username),
        avatar = esc(&super::avatar::src(avatar_url, username)),
        name = esc(name),
        at = if badge.is_some() { "" } else { "@" },
        username = esc(username),
    );
    if let Some(kind) = badge {
        let _ = write!(
            out,
            " <span class=\"badge\">{}</span>",
            esc(&network_label(kind))
        );
    }
    let _ = write!(
        out,
        " <a class=\"time\" href=\"{base}?at={id}\"><time datetime=\"{iso}\" title=\"{iso}\">{short}</time></a>",
        base = esc(permalink_base),
        id = m.id,
    );
    if let Some(mark) = &m.undelivered {
        let _ = write!(
            out,
            " <span class=\"undelivered\" title=\"Not delivered to {network}: {reason}\">⚠ not on {network}</span>",
            network = esc(&network_label(&mark.network)),
            reason = esc(&mark.reason),
        );
    }
    if m.edited_at.is_some() {
        out.push_str(" <span class=\"edited\">(edited)</span>");
    }
    out.push_str("</div>");
    if m.deleted {
        out.push_str("<div class=\"text\"><em>This message was deleted.</em></div>");
    } else {
        let _ = write!(out, "<div class=\"text\">{}</div>", m.html);
    }
    if !m.attachments.is_empty() {
        out.push_str("<div class=\"attachments\">");
        for a in &m.attachments {
            let url = weft_chat::file_url(a.file_id, &a.name);
            if a.content_type.starts_with("image/") {
                let _ = write!(
                    out,
                    "<a class=\"attachment\" href=\"{url}\" target=\"_blank\"><img src=\"{url}\" alt=\"{name}\" loading=\"lazy\"></a>",
                    url = esc(&url),
                    name = esc(&a.name),
                );
            } else {
                let _ = write!(
                    out,
                    "<a class=\"attachment file\" href=\"{url}\" download>{name}</a>",
                    url = esc(&url),
                    name = esc(&a.name),
                );
            }
        }
        out.push_str("</div>");
    }
    out.push_str("<div class=\"reactions\">");
    for r in &m.reactions {
        let _ = write!(
            out,
            "<button type=\"button\" class=\"reaction{mine}\" data-emoji=\"{e}\" aria-pressed=\"{me}\" title=\"{e}\">{e} <span class=\"count\">{n}</span></button>",
            mine = if r.me { " mine" } else { "" },
            me = r.me,
            e = esc(&r.emoji),
            n = r.count,
        );
    }
    out.push_str("</div>");
    if m.thread_count > 0 {
        let _ = write!(
            out,
            "<button type=\"button\" class=\"thread-link\" data-count=\"{n}\">{n} {word}</button>",
            n = m.thread_count,
            word = if m.thread_count == 1 {
                "reply"
            } else {
                "replies"
            },
        );
    }
    out.push_str("</div></li>");
    out
}

/// How a network's name is shown.
fn network_label(kind: &str) -> String {
    if kind.eq_ignore_ascii_case("matrix") {
        "Matrix".to_string()
    } else {
        kind.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::{esc, path};

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<img src=x onerror='a'>&\""),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;&quot;"
        );
        assert_eq!(path("rust lang/b&c"), "rust%20lang/b%26c");
    }
}
