//! The domain's records, as the store keeps them and the service hands them out.
//!
//! These are not the wire format: the server maps them to Gitter's JSON shapes, the bridge to
//! Matrix events.

use serde::{Deserialize, Serialize};

use crate::{Id, Millis};

/// A person (or bot) with a weft account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable id; never changes, even when the username does.
    pub id: Id,
    /// Unique login and mention name.
    pub username: String,
    /// Free-form name shown next to messages.
    pub display_name: String,
    /// Avatar image URL, if the user set one.
    pub avatar_url: Option<String>,
    /// Site administrators may administer every community and room.
    pub site_admin: bool,
    /// When the account was created.
    pub created_at: Millis,
}

/// Somebody from another network (a Matrix user) who appears in weft without an account.
///
/// Virtual users author messages and reactions, never log in and never hold tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualUser {
    /// Weft's id for this virtual user.
    pub id: Id,
    /// The network, e.g. `matrix`.
    pub kind: String,
    /// The id on that network, e.g. `@alice:example.org`.
    pub external_id: String,
    /// Name shown next to their messages.
    pub display_name: String,
    /// Avatar image URL.
    pub avatar_url: Option<String>,
}

/// Who wrote a message or reacted to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "camelCase")]
pub enum Author {
    /// A weft account.
    User(Id),
    /// A virtual user (someone on Matrix).
    Virtual(Id),
}

impl Author {
    /// The id of the user or virtual user.
    pub fn id(&self) -> Id {
        match self {
            Author::User(id) | Author::Virtual(id) => *id,
        }
    }
}

/// A community (Gitter's "group"): a namespace of rooms, e.g. `rust-lang`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Group id.
    pub id: Id,
    /// The first part of its rooms' URIs; unique.
    pub uri: String,
    /// Display name.
    pub name: String,
    /// Avatar image URL.
    pub avatar_url: Option<String>,
    /// When it was created.
    pub created_at: Millis,
}

/// Who may see and join a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RoomKind {
    /// Anyone may read, anyone signed in may join.
    Public,
    /// Only members may read; joining needs an invitation by a member.
    Private,
    /// A conversation between exactly two users.
    OneToOne,
}

impl RoomKind {
    /// The name used in the database and on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            RoomKind::Public => "public",
            RoomKind::Private => "private",
            RoomKind::OneToOne => "one_to_one",
        }
    }

    /// Parses [`RoomKind::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(RoomKind::Public),
            "private" => Some(RoomKind::Private),
            "one_to_one" => Some(RoomKind::OneToOne),
            _ => None,
        }
    }
}

/// A chat room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// Room id.
    pub id: Id,
    /// The community it belongs to (none for one-to-one rooms).
    pub group_id: Option<Id>,
    /// `community/room`; none for one-to-one rooms.
    pub uri: Option<String>,
    /// Display name.
    pub name: String,
    /// Topic line.
    pub topic: String,
    /// Visibility.
    pub kind: RoomKind,
    /// Avatar image URL.
    pub avatar_url: Option<String>,
    /// Ask search engines not to index its archives.
    pub noindex: bool,
    /// Number of members.
    pub member_count: i64,
    /// When it was created.
    pub created_at: Millis,
}

/// A member's role in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Ordinary member.
    Member,
    /// May delete others' messages and remove or ban members.
    Moderator,
    /// May also change the room itself.
    Admin,
}

impl Role {
    /// The name used in the database and on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    /// Parses [`Role::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "member" => Some(Role::Member),
            "moderator" => Some(Role::Moderator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A user's membership of a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The room.
    pub room_id: Id,
    /// The member.
    pub user_id: Id,
    /// Their role.
    pub role: Role,
    /// Messages up to and including this sequence number count as read.
    pub last_read_seq: i64,
    /// Pinned to the top of the user's room list.
    pub favourite: bool,
    /// When they joined.
    pub joined_at: Millis,
}

/// A `@name` mention in a message, resolved to a user when one has that name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMention {
    /// The name as written (`/all` for `@/all`).
    pub screen_name: String,
    /// The user it names, if any.
    pub user_id: Option<Id>,
    /// `@/all`: everyone in the room (only honoured for room admins).
    pub all: bool,
}

/// An issue reference such as `#12` or `owner/repo#12`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRef {
    /// `owner/repo`, when written.
    pub repo: Option<String>,
    /// The issue number.
    pub number: u64,
}

/// A file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The stored file's id.
    pub file_id: Id,
    /// Original file name.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes.
    pub size: i64,
}

/// How many people reacted to a message with one emoji.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionCount {
    /// The emoji (Unicode).
    pub emoji: String,
    /// How many distinct people reacted with it.
    pub count: i64,
    /// Whether the user asking reacted with it.
    pub me: bool,
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Message id.
    pub id: Id,
    /// Position in the room's timeline (strictly increasing across the whole store).
    pub seq: i64,
    /// The room.
    pub room_id: Id,
    /// Who wrote it.
    pub author: Author,
    /// Markdown source.
    pub text: String,
    /// Rendered, sanitised HTML.
    pub html: String,
    /// A `/me` status message.
    pub status: bool,
    /// The thread it replies in.
    pub parent_id: Option<Id>,
    /// Number of replies in its thread.
    pub thread_count: i64,
    /// When it was sent.
    pub sent: Millis,
    /// When it was last edited.
    pub edited_at: Option<Millis>,
    /// Deleted (kept as a placeholder because its thread has replies).
    pub deleted: bool,
    /// Mentions, resolved to users where possible.
    pub mentions: Vec<MessageMention>,
    /// Issue references.
    pub issues: Vec<IssueRef>,
    /// Link targets.
    pub urls: Vec<String>,
    /// Files attached.
    pub attachments: Vec<Attachment>,
    /// Increases with every change (Gitter's `v`).
    pub version: i64,
    /// Reactions, per emoji (filled for the asking user).
    pub reactions: Vec<ReactionCount>,
    /// How many members have read it (filled on reads).
    pub read_by: i64,
    /// Set when a bridge gave up carrying it to another network.
    pub undelivered: Option<Undelivered>,
}

/// A message that a bridge could not carry to its network, for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undelivered {
    /// The network (a bridge's name, such as `matrix`).
    pub network: String,
    /// Why, in words for the people in the room.
    pub reason: String,
}

/// A personal access token's record (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Token id.
    pub id: Id,
    /// Owner.
    pub user_id: Id,
    /// Label chosen at creation.
    pub name: String,
    /// May post as virtual users (for bridges).
    pub bridge: bool,
    /// When it was created.
    pub created_at: Millis,
}

/// A stored upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// File id.
    pub id: Id,
    /// Room it was uploaded to (its visibility follows the room's).
    pub room_id: Id,
    /// Uploader.
    pub uploader: Author,
    /// Original file name.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes.
    pub size: i64,
    /// When it was uploaded.
    pub created_at: Millis,
}

/// Whoever is behind an [`Author`], loaded for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Profile {
    /// A weft account.
    User(User),
    /// Someone from another network.
    Virtual(VirtualUser),
}

impl Profile {
    /// The author reference for this profile.
    pub fn author(&self) -> Author {
        match self {
            Profile::User(u) => Author::User(u.id),
            Profile::Virtual(v) => Author::Virtual(v.id),
        }
    }
}

/// A message together with its author's profile, as lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    /// The message.
    pub message: Message,
    /// Its author (absent only if the author record was removed).
    pub author: Option<Profile>,
}
