//! Finding `@mentions` and `#123` / `owner/repo#123` issue references in a run of plain text.

use std::ops::Range;

/// One mention or issue reference found in a text, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    /// Byte range of the whole reference in the scanned text, `@` or repository included.
    pub span: Range<usize>,
    /// What was found.
    pub kind: TokenKind,
}

/// The kinds of reference the scanner recognises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// `@name`, or `@/all` (then the name is `/all`).
    Mention(String),
    /// `#number` or `owner/repo#number`.
    Issue {
        /// `owner/repo`, when written.
        repo: Option<String>,
        /// The number after the `#`.
        number: u64,
    },
}

/// Characters that make up a user name segment (dots are allowed only between segments).
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Characters that make up an `owner/repo` prefix of an issue reference.
fn is_repo_byte(b: u8) -> bool {
    is_name_byte(b) || b == b'.' || b == b'/'
}

/// Whether a character glues onto a following `@` or `#`, so that it is not at a word start.
fn joins_word(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '@' | '/' | '#' | '&' | '+')
}

fn char_before(text: &str, at: usize) -> Option<char> {
    text.get(..at).and_then(|s| s.chars().next_back())
}

fn char_at(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|s| s.chars().next())
}

/// Finds the mentions and issue references in `text`, in order, without overlaps.
pub(crate) fn scan(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut done = 0;
    let mut at = 0;
    while let Some(offset) = bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == b'@' || b == b'#'))
    {
        let i = at + offset;
        at = i + 1;
        let token = match bytes[i] {
            b'@' => mention_at(text, i),
            _ => issue_at(text, i, done),
        };
        if let Some(token) = token {
            done = token.span.end;
            at = done;
            tokens.push(token);
        }
    }
    tokens
}

/// A mention starting at the `@` at byte `i`, if there is one.
fn mention_at(text: &str, i: usize) -> Option<Token> {
    if char_before(text, i).is_some_and(joins_word) {
        return None;
    }
    let bytes = text.as_bytes();
    let start = i + 1;
    if text.get(start..)?.starts_with("/all") {
        let end = start + 4;
        if bytes.get(end).is_some_and(|&b| is_name_byte(b)) {
            return None;
        }
        return Some(Token {
            span: i..end,
            kind: TokenKind::Mention(crate::Mention::ALL.to_owned()),
        });
    }
    let mut end = start;
    while bytes.get(end).is_some_and(|&b| is_name_byte(b)) {
        end += 1;
    }
    if end == start {
        return None;
    }
    // Dotted segments, as in `@first.last`; a trailing dot ends the sentence instead.
    while bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(|&b| is_name_byte(b)) {
        end += 1;
        while bytes.get(end).is_some_and(|&b| is_name_byte(b)) {
            end += 1;
        }
    }
    // `@name:server` names a Matrix user (`@alice:matrix.org`): the server is part of it.
    if let Some(server_end) = matrix_server_end(bytes, end) {
        end = server_end;
    }
    // `@name@host` is an address of some kind, not a mention.
    if bytes.get(end) == Some(&b'@') {
        return None;
    }
    Some(Token {
        span: i..end,
        kind: TokenKind::Mention(text.get(start..end)?.to_owned()),
    })
}

/// Where a Matrix server name that follows a user name ends, if the byte at `colon` is a
/// `:` that starts one: a host name with at least one dot (or `localhost`), and an optional
/// `:port`. `@alice: hi` and `@alice:great` stay plain `@alice` mentions.
fn matrix_server_end(bytes: &[u8], colon: usize) -> Option<usize> {
    if bytes.get(colon) != Some(&b':') {
        return None;
    }
    let start = colon + 1;
    let mut end = start;
    while bytes
        .get(end)
        .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        end += 1;
    }
    // A trailing dot ends the sentence, not the host.
    while end > start && bytes[end - 1] == b'.' {
        end -= 1;
    }
    let host = &bytes[start..end];
    let plausible = host.first().is_some_and(u8::is_ascii_alphanumeric)
        && (host.contains(&b'.') || host == b"localhost");
    if !plausible {
        return None;
    }
    if bytes.get(end) == Some(&b':') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end += 1;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    Some(end)
}

/// An issue reference whose `#` is at byte `i`, if there is one; it may not start before
/// `not_before`, where the previous reference ended.
fn issue_at(text: &str, i: usize, not_before: usize) -> Option<Token> {
    let bytes = text.as_bytes();
    let digits_start = i + 1;
    let mut end = digits_start;
    while bytes.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    if end == digits_start {
        return None;
    }
    if char_at(text, end).is_some_and(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let number: u64 = text.get(digits_start..end)?.parse().ok()?;

    let mut start = i;
    while start > 0 && is_repo_byte(bytes[start - 1]) {
        start -= 1;
    }
    if start < not_before || char_before(text, start).is_some_and(joins_word) {
        return None;
    }
    let repo = if start == i {
        None
    } else {
        let prefix = text.get(start..i)?;
        let (owner, name) = prefix.split_once('/')?;
        let owner_ok = owner
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
        let name_ok = !name.is_empty() && !name.contains('/') && name.bytes().any(|b| b != b'.');
        if !owner_ok || !name_ok {
            return None;
        }
        Some(prefix.to_owned())
    };
    Some(Token {
        span: start..end,
        kind: TokenKind::Issue { repo, number },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mentions(text: &str) -> Vec<String> {
        scan(text)
            .into_iter()
            .filter_map(|t| match t.kind {
                TokenKind::Mention(name) => Some(name),
                TokenKind::Issue { .. } => None,
            })
            .collect()
    }

    fn issues(text: &str) -> Vec<(Option<String>, u64, String)> {
        scan(text)
            .into_iter()
            .filter_map(|t| match t.kind {
                TokenKind::Issue { repo, number } => Some((repo, number, text[t.span].to_owned())),
                TokenKind::Mention(_) => None,
            })
            .collect()
    }

    #[test]
    fn mention_shapes() {
        assert_eq!(mentions("@alice"), ["alice"]);
        assert_eq!(mentions("hi @alice, @bob_x-y!"), ["alice", "bob_x-y"]);
        assert_eq!(mentions("@first.last."), ["first.last"]);
        assert_eq!(mentions("(@alice)"), ["alice"]);
        assert_eq!(mentions("@/all please"), ["/all"]);
        assert_eq!(mentions("@/allison"), Vec::<String>::new());
        assert_eq!(mentions("a@b.com"), Vec::<String>::new());
        assert_eq!(mentions("@ alone @"), Vec::<String>::new());
        assert_eq!(mentions("@user@host"), Vec::<String>::new());
        assert_eq!(mentions("é@x"), Vec::<String>::new());
        assert_eq!(mentions("@@x"), Vec::<String>::new());
        // Matrix users, with their server.
        assert_eq!(mentions("hi @alice:matrix.org!"), ["alice:matrix.org"]);
        assert_eq!(mentions("@bob:localhost:8448, see"), ["bob:localhost:8448"]);
        assert_eq!(mentions("ask @carol:example.org."), ["carol:example.org"]);
        assert_eq!(mentions("@alice: hi"), ["alice"]);
        assert_eq!(mentions("@alice:great work"), ["alice"]);
        assert_eq!(mentions("@alice:.org"), ["alice"]);
    }

    #[test]
    fn issue_shapes() {
        assert_eq!(issues("#12"), [(None, 12, "#12".to_owned())]);
        assert_eq!(issues("see #12."), [(None, 12, "#12".to_owned())]);
        assert_eq!(
            issues("fixed in owner/repo#3 and (#4)"),
            [
                (Some("owner/repo".to_owned()), 3, "owner/repo#3".to_owned()),
                (None, 4, "#4".to_owned())
            ]
        );
        assert_eq!(
            issues("my-org/my.repo#77"),
            [(
                Some("my-org/my.repo".to_owned()),
                77,
                "my-org/my.repo#77".to_owned()
            )]
        );
        assert!(issues("abc#12").is_empty());
        assert!(issues("a/b/c#12").is_empty());
        assert!(issues("foo/#12").is_empty());
        assert!(issues("#12abc").is_empty());
        assert!(issues("#").is_empty());
        assert!(issues("# 12").is_empty());
        assert!(issues("#99999999999999999999999").is_empty());
        assert!(issues("C#1").is_empty());
    }

    #[test]
    fn mixed_and_adjacent() {
        let tokens = scan("@ann #1 @bob, #2 @carl#3");
        let spans: Vec<_> = tokens.iter().map(|t| t.span.clone()).collect();
        // `#3` is glued to the name before it, so it is not at a word start.
        assert_eq!(spans, [0..4, 5..7, 8..12, 14..16, 17..22]);
    }

    #[test]
    fn never_panics_on_multibyte_text() {
        for text in [
            "@",
            "#",
            "é#1",
            "#1é",
            "日本@語#3",
            "@\u{0}",
            "\u{1F600}@a#1",
        ] {
            let _ = scan(text);
        }
    }
}
