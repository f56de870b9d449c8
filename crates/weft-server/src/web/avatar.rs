//! Generated avatars: `/avatars/{name}` draws a user's initials on a colour derived from the
//! name, as a small SVG. The API points users without an avatar of their own here, and the web
//! app shows it for them and for people from other networks whose avatar weft cannot serve.

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::html::{esc, hue};
use crate::AppState;

/// How long browsers may use an avatar before asking again (a changed display name shows
/// within this time; asking again costs a 304).
const MAX_AGE: &str = "public, max-age=3600";

/// `GET /avatars/{name}`: the avatar of the user `name`, with the initials of their display
/// name. Any other name (a Matrix ID, say) gets an avatar made from the name itself.
pub async fn avatar(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if name.is_empty() || name.len() > 255 {
        return StatusCode::NOT_FOUND.into_response();
    }
    let display_name = match weft_core::validate::username(&name) {
        Ok(()) => match state.chat.views().user_by_username(&name).await {
            Ok(Some(user)) => user.display_name,
            Ok(None) => name.clone(),
            Err(e) => {
                tracing::error!(error = %e, "looking up an avatar's user failed");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        },
        Err(_) => name.clone(),
    };
    let svg = svg(&name, &display_name);
    let etag = format!("\"{:016x}\"", fingerprint(&svg));
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        svg.into_response()
    };
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(MAX_AGE));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, etag);
    }
    // Opened on its own, the picture may run nothing.
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The SVG for the user `name` called `display_name`: the colour follows the name (the same
/// hue the pages used for their initials badges), the letters the display name.
pub fn svg(name: &str, display_name: &str) -> String {
    let (r, g, b) = hsl_to_rgb(hue(name), 0.55, 0.45);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" height=\"64\" viewBox=\"0 0 64 64\">\
         <title>{title}</title><rect width=\"64\" height=\"64\" fill=\"#{r:02x}{g:02x}{b:02x}\"/>\
         <text x=\"32\" y=\"32\" dy=\"0.35em\" text-anchor=\"middle\" fill=\"#fff\" \
         font-family=\"system-ui, -apple-system, 'Segoe UI', sans-serif\" font-size=\"{size}\" \
         font-weight=\"700\">{initials}</text></svg>",
        title = esc(display_name),
        initials = esc(&initials(display_name)),
        size = if initials(display_name).chars().count() > 1 {
            26
        } else {
            30
        },
    )
}

/// Up to two letters: the first letter or digit of the first and of the last word of a name,
/// after any `@` and before any `:` (so `@carl:example.org` gives `C`); `?` when there is none.
pub fn initials(name: &str) -> String {
    let name = name.trim_start_matches('@');
    let name = match name.split_once(':') {
        Some((local, _)) if !local.is_empty() => local,
        _ => name,
    };
    let first_letter = |word: &str| word.chars().find(|c| c.is_alphanumeric());
    let words: Vec<&str> = name
        .split(|c: char| c.is_whitespace() || matches!(c, '-' | '_' | '.'))
        .filter(|w| first_letter(w).is_some())
        .collect();
    let mut out = String::new();
    for word in [words.first(), words.get(1).and(words.last())]
        .into_iter()
        .flatten()
    {
        if let Some(c) = first_letter(word) {
            out.extend(c.to_uppercase());
        }
    }
    if out.is_empty() {
        out.push('?');
    }
    out
}

fn hsl_to_rgb(hue: u32, saturation: f64, lightness: f64) -> (u8, u8, u8) {
    let h = f64::from(hue % 360) / 60.0;
    let chroma = (1.0 - (2.0 * lightness - 1.0).abs()) * saturation;
    let x = chroma * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (chroma, x, 0.0),
        1 => (x, chroma, 0.0),
        2 => (0.0, chroma, x),
        3 => (0.0, x, chroma),
        4 => (x, 0.0, chroma),
        _ => (chroma, 0.0, x),
    };
    let m = lightness - chroma / 2.0;
    let byte = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    (byte(r), byte(g), byte(b))
}

fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where a page shows the avatar of someone whose stored avatar is `url`: that URL when it is
/// one weft may load (http, https, or a path on this server), else the generated one.
pub fn src(url: Option<&str>, name: &str) -> String {
    match url {
        Some(url) if loadable(url) => url.to_string(),
        _ => generated(name),
    }
}

/// `/avatars/{name}`, the name escaped for a path.
pub fn generated(name: &str) -> String {
    let mut out = String::from("/avatars/");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether an avatar URL is one pages load: http(s), or a path on this server. Not `mxc:`
/// (Matrix media, which weft does not serve), not `data:` or anything else.
fn loadable(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    (lower.starts_with("https://")
        || lower.starts_with("http://")
        || (lower.starts_with('/') && !lower.starts_with("//")))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initials_of_names() {
        assert_eq!(initials("Alice Liddell"), "AL");
        assert_eq!(initials("alice"), "A");
        assert_eq!(initials("Mary Ann van Dyke"), "MD");
        assert_eq!(initials("@carl:example.org"), "C");
        assert_eq!(initials("  "), "?");
        assert_eq!(initials("<Zed> & co"), "ZC");
        assert_eq!(initials("élodie"), "É");
        assert_eq!(initials("poster3-0190abc"), "P0");
    }

    #[test]
    fn colours_are_hsl() {
        assert_eq!(hsl_to_rgb(0, 1.0, 0.5), (255, 0, 0));
        assert_eq!(hsl_to_rgb(120, 1.0, 0.5), (0, 255, 0));
        assert_eq!(hsl_to_rgb(240, 1.0, 0.5), (0, 0, 255));
        assert_eq!(hsl_to_rgb(200, 0.55, 0.45), (52, 136, 178));
    }

    #[test]
    fn the_svg_escapes_the_name() {
        let svg = svg("zed", "<Zed> & \"co\"");
        assert!(
            svg.contains("<title>&lt;Zed&gt; &amp; &quot;co&quot;</title>"),
            "{svg}"
        );
        assert!(svg.contains(">ZC</text>"), "{svg}");
    }

    #[test]
    fn only_loadable_urls_are_shown() {
        assert_eq!(src(Some("https://e.org/a.png"), "a"), "https://e.org/a.png");
        assert_eq!(src(Some("/files/1/a.png"), "a"), "/files/1/a.png");
        assert_eq!(src(Some("mxc://matrix.org/abc"), "a"), "/avatars/a");
        assert_eq!(src(Some("javascript:alert(1)"), "a"), "/avatars/a");
        assert_eq!(src(Some("//evil.example/x"), "a"), "/avatars/a");
        assert_eq!(
            src(None, "@carl:example.org"),
            "/avatars/%40carl%3Aexample.org"
        );
    }
}
