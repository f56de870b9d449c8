//! Matrix traffic for the inbound benchmark, generated: the plain mix (what the benchmark
//! always sent: short unformatted messages from people weft knows) and a realistic one, shaped
//! like what a homeserver pushes for a busy bridged community.
//!
//! The realistic mix, per 100 events ([`REALISTIC`]): 50 plain messages of varied length, 20
//! with HTML formatting (emphasis, code, links, code blocks, pills), 5 rich replies (with the
//! reply fallback in both bodies), 5 thread replies, 2 emotes, 6 edits of the sender's own
//! earlier messages, 7 reactions, 2 redactions of the sender's own messages and 3 member
//! events of people joining with a display name. Senders are new to weft when they first
//! speak (300 of them over 20 rooms); replies, threads, edits, reactions and redactions point
//! at recent events of the same room, often of the same transaction. Event ids look like
//! Synapse's (43 characters that look random), which land all over the index of message keys.

use std::collections::{HashMap, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// One kind of event in a mix, with how many of every 100 events it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Plain,
    Formatted,
    RichReply,
    ThreadReply,
    Emote,
    Edit,
    Reaction,
    Redaction,
    Join,
}

/// The realistic mix: kinds and their shares of 100 events.
pub(super) const REALISTIC: [(Kind, u32); 9] = [
    (Kind::Plain, 50),
    (Kind::Formatted, 20),
    (Kind::RichReply, 5),
    (Kind::ThreadReply, 5),
    (Kind::Emote, 2),
    (Kind::Edit, 6),
    (Kind::Reaction, 7),
    (Kind::Redaction, 2),
    (Kind::Join, 3),
];

/// Events per transaction, as Synapse sends them to a busy application service.
pub(super) const EVENTS_PER_TRANSACTION: usize = 100;

/// A generated run: its transactions and what weft must hold after applying them.
pub(super) struct Run {
    /// Each transaction's events.
    pub transactions: Vec<Vec<Value>>,
    /// Messages weft stores in the end (posted, less those redacted).
    pub messages: usize,
    /// How many events of each kind were generated.
    pub counts: HashMap<Kind, usize>,
}

/// The plain mix: `transactions` × 100 `m.room.message` events in one room, from `senders`
/// people introduced beforehand by their member events (the first transaction).
pub(super) fn plain(room: &str, senders: usize, transactions: usize, seed: u64) -> Run {
    let mut ids = EventIds::new(seed);
    let members = (0..senders)
        .map(|i| member_event(room, &format!("@u{i}:remote.test"), &ids.next(), i))
        .collect();
    let mut out = vec![members];
    for t in 0..transactions {
        out.push(
            (0..EVENTS_PER_TRANSACTION)
                .map(|i| {
                    let sender = format!("@u{}:remote.test", i % senders);
                    let content = json!({ "msgtype": "m.text", "body": format!("message {t}/{i} with **bold**") });
                    message_event(room, &sender, &ids.next(), content)
                })
                .collect(),
        );
    }
    let messages = transactions * EVENTS_PER_TRANSACTION;
    Run {
        transactions: out,
        messages,
        counts: HashMap::from([(Kind::Plain, messages), (Kind::Join, senders)]),
    }
}

/// Event ids like Synapse's, from a seed.
struct EventIds {
    rng: StdRng,
}

impl EventIds {
    fn new(seed: u64) -> EventIds {
        EventIds {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn next(&mut self) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let id: String = (0..43)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        format!("${id}")
    }
}

/// What the generator remembers of a room: its recent messages, for replies and reactions.
#[derive(Default)]
struct RoomState {
    /// Recent message events (event id, sender), newest last.
    recent: VecDeque<(String, String)>,
}

/// The realistic mix over `rooms`, `senders` people, `transactions` transactions.
pub(super) fn realistic(rooms: &[String], senders: usize, transactions: usize, seed: u64) -> Run {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ids = EventIds::new(seed ^ 0x5eed);
    let mut state: Vec<RoomState> = rooms.iter().map(|_| RoomState::default()).collect();
    // Each sender's live messages (room index, event id), for edits and redactions.
    let mut own: HashMap<usize, Vec<(usize, String)>> = HashMap::new();
    let mut counts: HashMap<Kind, usize> = HashMap::new();
    let mut messages = 0usize;
    // Threads as weft keeps them: each reply's thread root (a reply joins the thread of what
    // it answers) and each root's live replies. A root with replies stays as a placeholder
    // when redacted; a reply redacted leaves its thread.
    let mut root_of: HashMap<String, String> = HashMap::new();
    let mut replies: HashMap<String, usize> = HashMap::new();
    let total: u32 = REALISTIC.iter().map(|(_, n)| n).sum();
    let mut out = Vec::with_capacity(transactions);
    for _ in 0..transactions {
        let mut events = Vec::with_capacity(EVENTS_PER_TRANSACTION);
        while events.len() < EVENTS_PER_TRANSACTION {
            let mut pick = rng.random_range(0..total);
            let mut kind = Kind::Plain;
            for (k, n) in REALISTIC {
                if pick < n {
                    kind = k;
                    break;
                }
                pick -= n;
            }
            let r = rng.random_range(0..rooms.len());
            // People talk mostly in "their" room: each sender has a home room.
            let s = {
                let base = rng.random_range(0..(senders / rooms.len()).max(1));
                (base * rooms.len() + r) % senders
            };
            let room = rooms[r].as_str();
            let sender = format!("@person{s}:remote{}.test", s % 7);
            let event_id = ids.next();
            let recent_target = |state: &RoomState, rng: &mut StdRng| -> Option<(String, String)> {
                let n = state.recent.len();
                (n > 0).then(|| state.recent[n - 1 - rng.random_range(0..n.min(30))].clone())
            };
            let event = match kind {
                Kind::Join => member_event(room, &sender, &event_id, s),
                Kind::Plain | Kind::Formatted | Kind::Emote => {
                    let content = match kind {
                        Kind::Plain => json!({ "msgtype": "m.text", "body": sentence(&mut rng) }),
                        Kind::Emote => json!({ "msgtype": "m.emote", "body": sentence(&mut rng) }),
                        _ => formatted(
                            &mut rng,
                            &format!("@person{}:remote.test", (s + 1) % senders),
                        ),
                    };
                    messages += 1;
                    own.entry(s).or_default().push((r, event_id.clone()));
                    state[r]
                        .recent
                        .push_back((event_id.clone(), sender.clone()));
                    message_event(room, &sender, &event_id, content)
                }
                Kind::RichReply | Kind::ThreadReply => {
                    let Some((target, target_sender)) = recent_target(&state[r], &mut rng) else {
                        continue;
                    };
                    let root = root_of
                        .get(&target)
                        .cloned()
                        .unwrap_or_else(|| target.clone());
                    *replies.entry(root.clone()).or_default() += 1;
                    root_of.insert(event_id.clone(), root);
                    let text = sentence(&mut rng);
                    let content = if kind == Kind::RichReply {
                        json!({
                            "msgtype": "m.text",
                            "body": format!("> <{target_sender}> earlier words\n\n{text}"),
                            "format": "org.matrix.custom.html",
                            "formatted_body": format!("<mx-reply><blockquote><a href=\"https://matrix.to/#/!r/{target}\">In reply to</a> <a href=\"https://matrix.to/#/{target_sender}\">{target_sender}</a><br>earlier words</blockquote></mx-reply>{text}"),
                            "m.relates_to": { "m.in_reply_to": { "event_id": target } },
                            "m.mentions": { "user_ids": [target_sender] },
                        })
                    } else {
                        json!({
                            "msgtype": "m.text", "body": text,
                            "m.relates_to": { "rel_type": "m.thread", "event_id": target, "is_falling_back": true, "m.in_reply_to": { "event_id": target } },
                        })
                    };
                    messages += 1;
                    own.entry(s).or_default().push((r, event_id.clone()));
                    state[r]
                        .recent
                        .push_back((event_id.clone(), sender.clone()));
                    message_event(room, &sender, &event_id, content)
                }
                Kind::Edit => {
                    let Some((room_index, target)) = own.get(&s).and_then(|m| m.last()).cloned()
                    else {
                        continue;
                    };
                    let text = sentence(&mut rng);
                    let content = json!({
                        "msgtype": "m.text", "body": format!("* {text}"),
                        "m.new_content": { "msgtype": "m.text", "body": text },
                        "m.relates_to": { "rel_type": "m.replace", "event_id": target },
                    });
                    message_event(&rooms[room_index], &sender, &event_id, content)
                }
                Kind::Reaction => {
                    let Some((target, _)) = recent_target(&state[r], &mut rng) else {
                        continue;
                    };
                    let key = ["👍", "🎉", "❤️", "😄", "👀", "🚀", "+1"][rng.random_range(0..7)];
                    json!({
                        "type": "m.reaction", "sender": sender, "room_id": room, "event_id": event_id,
                        "origin_server_ts": 1_764_000_000_000_i64, "unsigned": { "age": 40 },
                        "content": { "m.relates_to": { "rel_type": "m.annotation", "event_id": target, "key": key } },
                    })
                }
                Kind::Redaction => {
                    let Some(list) = own.get_mut(&s).filter(|m| !m.is_empty()) else {
                        continue;
                    };
                    let (room_index, target) = list.remove(0);
                    if replies.get(&target).is_some_and(|n| *n > 0) {
                        // A thread's head stays, as a placeholder for its replies.
                    } else {
                        messages -= 1;
                        if let Some(root) = root_of.get(&target) {
                            *replies.entry(root.clone()).or_default() -= 1;
                        }
                    }
                    state[room_index].recent.retain(|(e, _)| *e != target);
                    json!({
                        "type": "m.room.redaction", "sender": sender, "room_id": rooms[room_index], "event_id": event_id,
                        "origin_server_ts": 1_764_000_000_000_i64, "unsigned": { "age": 40 },
                        "redacts": target, "content": { "redacts": target },
                    })
                }
            };
            let recent = &mut state[r].recent;
            while recent.len() > 200 {
                recent.pop_front();
            }
            *counts.entry(kind).or_default() += 1;
            events.push(event);
        }
        out.push(events);
    }
    Run {
        transactions: out,
        messages,
        counts,
    }
}

fn message_event(room: &str, sender: &str, event_id: &str, content: Value) -> Value {
    json!({
        "type": "m.room.message", "sender": sender, "room_id": room, "event_id": event_id,
        "origin_server_ts": 1_764_000_000_000_i64, "unsigned": { "age": 12 },
        "content": content,
    })
}

fn member_event(room: &str, mxid: &str, event_id: &str, i: usize) -> Value {
    json!({
        "type": "m.room.member", "state_key": mxid, "sender": mxid, "room_id": room,
        "event_id": event_id, "origin_server_ts": 1_764_000_000_000_i64,
        "content": { "membership": "join", "displayname": format!("Person {i}") },
    })
}

/// Words of chat, 2 to 40 of them.
fn sentence(rng: &mut StdRng) -> String {
    const WORDS: &[&str] = &[
        "the",
        "build",
        "fails",
        "on",
        "main",
        "since",
        "yesterday",
        "could",
        "someone",
        "look",
        "at",
        "this",
        "I",
        "think",
        "it's",
        "the",
        "new",
        "release",
        "thanks",
        "works",
        "for",
        "me",
        "now",
        "which",
        "version",
        "are",
        "you",
        "using",
        "docs",
        "say",
        "otherwise",
    ];
    let n = rng.random_range(2..40);
    (0..n)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

/// A formatted message, as Element sends one: Markdown in `body`, HTML in `formatted_body`.
fn formatted(rng: &mut StdRng, pill: &str) -> Value {
    let words = sentence(rng);
    let (body, html) = match rng.random_range(0..5) {
        0 => (format!("**{words}**"), format!("<strong>{words}</strong>")),
        1 => (
            format!("try `cargo test` then {words}"),
            format!("try <code>cargo test</code> then {words}"),
        ),
        2 => (
            format!("see [the docs](https://example.org/docs) {words}"),
            format!("see <a href=\"https://example.org/docs\">the docs</a> {words}"),
        ),
        3 => (
            format!("```rust\nfn main() {{}}\n```\n{words}"),
            format!(
                "<pre><code class=\"language-rust\">fn main() {{}}\n</code></pre>\n<p>{words}</p>"
            ),
        ),
        _ => (
            format!("Person: {words}"),
            format!("<a href=\"https://matrix.to/#/{pill}\">Person</a>: {words}"),
        ),
    };
    json!({ "msgtype": "m.text", "body": body, "format": "org.matrix.custom.html", "formatted_body": html })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mix is what the module says: its shares, and references only to events that came
    /// before in the same room.
    #[test]
    fn the_realistic_mix_has_its_shares_and_sound_references() {
        let rooms: Vec<String> = (0..20).map(|i| format!("!r{i}:bench.test")).collect();
        let run = realistic(&rooms, 300, 100, 7);
        assert_eq!(run.transactions.len(), 100);
        let events: Vec<&Value> = run.transactions.iter().flatten().collect();
        assert_eq!(events.len(), 10_000);
        for (kind, share) in REALISTIC {
            let got = run.counts.get(&kind).copied().unwrap_or_default() as f64 / 100.0;
            assert!(
                (got - share as f64).abs() <= 1.5,
                "{kind:?}: {got} per 100, meant {share}"
            );
        }
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for event in &events {
            let id = event["event_id"].as_str().expect("id");
            let room = event["room_id"].as_str().expect("room");
            let relates = &event["content"]["m.relates_to"];
            let target = relates["event_id"]
                .as_str()
                .or(relates["m.in_reply_to"]["event_id"].as_str())
                .or(event["redacts"].as_str());
            if let Some(target) = target {
                assert_eq!(seen.get(target), Some(&room), "{event}");
            }
            assert!(seen.insert(id, room).is_none(), "event ids are unique");
        }
        let plain = plain("!p:bench.test", 50, 10, 1);
        assert_eq!(plain.messages, 1_000);
    }
}
