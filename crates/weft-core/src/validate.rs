//! Validation of what users type: names, URIs and message text. Errors say what is wrong in
//! words fit to show the user.

/// Longest message text, in characters (Gitter's limit).
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// Input that does not meet weft's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

/// A username: 1–39 characters of letters, digits, `-` and `_`, starting with a letter or digit
/// (GitHub's login rules, which Gitter users had).
pub fn username(name: &str) -> Result<(), Invalid> {
    let ok_len = (1..=39).contains(&name.len());
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok_len && first_ok && rest_ok {
        Ok(())
    } else {
        Err(invalid(
            "username must be 1-39 letters, digits, '-' or '_', starting with a letter or digit",
        ))
    }
}

/// One segment of a room URI (`community` or `room` in `community/room`).
pub fn uri_segment(segment: &str) -> Result<(), Invalid> {
    let ok_len = (1..=80).contains(&segment.len());
    let first_ok = segment
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = segment
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok_len && first_ok && rest_ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "'{segment}' is not a valid name: use 1-80 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )))
    }
}

/// Splits `community/room` into its two validated halves.
pub fn room_uri(uri: &str) -> Result<(&str, &str), Invalid> {
    let (group, room) = uri
        .split_once('/')
        .ok_or_else(|| invalid("room URI must look like community/room"))?;
    uri_segment(group)?;
    uri_segment(room)?;
    Ok((group, room))
}

/// Message text: non-empty after trimming, at most [`MAX_MESSAGE_CHARS`] characters, no NUL.
pub fn message_text(text: &str) -> Result<(), Invalid> {
    if text.trim().is_empty() {
        return Err(invalid("message text must not be empty"));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(invalid(format!(
            "message text is longer than {MAX_MESSAGE_CHARS} characters"
        )));
    }
    if text.contains('\0') {
        return Err(invalid("message text must not contain NUL characters"));
    }
    Ok(())
}

/// A display name, room name or topic: bounded length, no control characters but newlines.
pub fn short_text(what: &str, text: &str, max_chars: usize) -> Result<(), Invalid> {
    if text.chars().count() > max_chars {
        return Err(invalid(format!(
            "{what} is longer than {max_chars} characters"
        )));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

/// An emoji reaction key: one short piece of text without spaces (a Unicode emoji, or a
/// `:shortcode:` the caller has already resolved).
pub fn reaction_key(key: &str) -> Result<(), Invalid> {
    if key.is_empty() || key.chars().count() > 16 || key.chars().any(char::is_whitespace) {
        return Err(invalid("reaction must be one emoji"));
    }
    Ok(())
}

/// An `http`/`https` URL for an avatar.
pub fn avatar_url(url: &str) -> Result<(), Invalid> {
    let lower = url.to_ascii_lowercase();
    if url.len() <= 2048
        && (lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("/"))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        Ok(())
    } else {
        Err(invalid(
            "avatar URL must be an http(s) URL or a path on this server",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(username("alice").is_ok());
        assert!(username("a-b_c9").is_ok());
        assert!(username("").is_err());
        assert!(username("-alice").is_err());
        assert!(username("al ice").is_err());
        assert!(username(&"a".repeat(40)).is_err());
    }

    #[test]
    fn room_uris() {
        assert_eq!(room_uri("rust-lang/rust"), Ok(("rust-lang", "rust")));
        assert!(room_uri("rust").is_err());
        assert!(room_uri("a/b/c").is_err());
        assert!(room_uri("/b").is_err());
    }

    #[test]
    fn message_texts() {
        assert!(message_text("hi").is_ok());
        assert!(message_text("  \n ").is_err());
        assert!(message_text(&"é".repeat(4096)).is_ok());
        assert!(message_text(&"é".repeat(4097)).is_err());
        assert!(message_text("a\0b").is_err());
    }
}
