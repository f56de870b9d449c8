//! Posting: checking a post against the room's rules, rendering it, and writing it with
//! its events, one at a time or in batches (a bridge's transaction, the post queue's groups).

use std::collections::{HashMap, HashSet};

use weft_core::permission::{self, Standing};
use weft_core::{
    Attachment, Author, Event, Id, IssueRef, Membership, Message, MessageMention, MessageView,
    Origin, Profile, Room, StoredFile, User, VirtualUser, validate,
};
use weft_store::{NewMessage, WriteTx};

use super::subject::MessageRef;
use crate::error::{from_write, rejected};
use crate::{Actor, Chat, ChatError, Result};

/// A change checked and prepared ahead, to write with others in one batch
/// ([`Chat::write_batch`]).
#[derive(Debug)]
pub enum Change {
    /// A new message ([`Chat::prepare_post`]).
    Post(PreparedPost),
    /// A reaction added or removed ([`Chat::prepare_reaction`]).
    Reaction(super::reactions::PreparedReaction),
    /// An edit ([`Chat::prepare_edit`]).
    Edit(super::editing::PreparedEdit),
    /// A deletion ([`Chat::prepare_deletion`]).
    Deletion(super::editing::PreparedDeletion),
    /// A virtual user's new name or avatar ([`Chat::prepare_profile`]).
    Profile(PostAs, Origin),
}

/// Who a bridge posts as: someone from another network.
#[derive(Debug, Clone)]
pub struct PostAs {
    /// Network, e.g. `matrix`.
    pub kind: String,
    /// Their id there, e.g. `@alice:example.org`.
    pub external_id: String,
    /// Display name.
    pub display_name: String,
    /// Avatar URL: `None` keeps the one weft has, an empty one removes it.
    pub avatar_url: Option<String>,
}

/// A message to post.
#[derive(Debug, Clone, Default)]
pub struct NewPost {
    /// Markdown source. A leading `/me ` makes it a status message.
    pub text: String,
    /// A `/me` status message.
    pub status: bool,
    /// Reply in this message's thread: a stored message, or one pending in the same batch.
    pub parent: Option<MessageRef>,
    /// Post as a virtual user (bridge tokens only).
    pub as_virtual: Option<PostAs>,
    /// Files uploaded with this message, recorded in the same transaction.
    pub files: Vec<StoredFile>,
    /// A unique key for this message (a bridged event id): posting the same key again
    /// returns the message already stored instead of a second copy.
    pub external_ref: Option<String>,
}

/// What writing posts reads first: the external keys already taken and the stored virtual
/// users, by `(kind, external id)` (see [`Chat::look_up_for_posts`]).
#[derive(Debug, Default)]
struct PostLookups {
    taken: HashSet<String>,
    virtual_users: HashMap<(String, String), VirtualUser>,
}

/// A post that passed every check and is rendered, ready for [`Chat::write_batch`].
#[derive(Debug, Clone)]
pub struct PreparedPost {
    pub(super) new: NewMessage,
    files: Vec<StoredFile>,
    pub(super) as_virtual: Option<PostAs>,
    origin: Origin,
    poster: Option<User>,
}

impl PreparedPost {
    /// The id the message will have.
    pub fn id(&self) -> Id {
        self.new.id
    }

    /// The room it goes to.
    pub fn room_id(&self) -> Id {
        self.new.room_id
    }
}

impl Chat {
    /// Checks that the actor may post in the room; returns the author to post as.
    pub(crate) async fn poster(
        &self,
        actor: &Actor,
        room_id: Id,
        standing: &(Option<Membership>, bool),
        as_virtual: Option<&PostAs>,
    ) -> Result<Author> {
        let me = actor.require_user()?;
        if let Some(v) = as_virtual {
            if !actor.is_bridge() {
                return Err(ChatError::Forbidden(
                    "only bridge tokens may post as virtual users".into(),
                ));
            }
            validate::short_text("virtual user name", &v.display_name, 256)?;
            if v.kind.is_empty() || v.external_id.is_empty() {
                return Err(ChatError::Invalid(
                    "virtualUser needs type and externalId".into(),
                ));
            }
            self.refuse_if_banned(room_id, Some(v)).await?;
            // Bridges speak for people elsewhere in rooms they can read (checked by the
            // caller); the virtual user's own id is settled when the post is written.
            return Ok(Author::Virtual(Id::generate()));
        }
        let (membership, banned) = standing;
        let s = Standing {
            user: Some(me),
            membership: membership.as_ref(),
            banned: *banned,
        };
        if !permission::can_post(s) {
            return Err(if *banned {
                ChatError::Forbidden("you are banned from this room".into())
            } else {
                ChatError::Forbidden("join the room to post in it".into())
            });
        }
        Ok(Author::User(me.id))
    }

    /// Creates or refreshes a virtual user's name and avatar (bridge actors only).
    pub async fn update_virtual_user(&self, actor: &Actor, who: PostAs) -> Result<()> {
        check_profile(actor, &who)?;
        let origin = actor.origin.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move { virtual_author(tx, &who, &origin).await.map(|_| ()) })
            })
            .await
            .map_err(from_write)
    }

    /// Checks a virtual user's new profile (a bridge's only) for a batch
    /// ([`Chat::write_batch`]).
    pub fn prepare_profile(&self, actor: &Actor, who: PostAs) -> Result<Change> {
        check_profile(actor, &who)?;
        Ok(Change::Profile(who, actor.origin.clone()))
    }

    /// Whether the actor may use `@/all` in the room.
    async fn may_mention_all(&self, actor: &Actor, room: &Room) -> Result<bool> {
        let Some(me) = &actor.user else {
            return Ok(false);
        };
        let (membership, banned) = self.standing(actor, room.id).await?;
        Ok(permission::can_administer(Standing {
            user: Some(me),
            membership: membership.as_ref(),
            banned,
        }))
    }

    /// Renders text and resolves its mentions to users; text from another network
    /// (`from_elsewhere`, a virtual user's) shows its images as links.
    pub(super) async fn render(
        &self,
        actor: &Actor,
        room: &Room,
        text: &str,
        from_elsewhere: bool,
    ) -> Result<(String, Vec<MessageMention>, Vec<IssueRef>, Vec<String>)> {
        let rendered = if from_elsewhere {
            weft_render::render_markdown_from_elsewhere(text)
        } else {
            weft_render::render_markdown(text)
        };
        let mut mentions = Vec::with_capacity(rendered.mentions.len());
        for m in rendered.mentions {
            if m.screen_name == "/all" {
                if self.may_mention_all(actor, room).await? {
                    mentions.push(MessageMention {
                        screen_name: m.screen_name,
                        user_id: None,
                        all: true,
                    });
                }
                continue;
            }
            let user_id = self
                .store()
                .user_by_username(&m.screen_name)
                .await?
                .map(|u| u.id);
            mentions.push(MessageMention {
                screen_name: m.screen_name,
                user_id,
                all: false,
            });
        }
        let issues = rendered
            .issues
            .into_iter()
            .map(|i| IssueRef {
                repo: i.repo,
                number: i.number,
            })
            .collect();
        Ok((rendered.html, mentions, issues, rendered.urls))
    }

    /// Posts a message.
    pub async fn post(&self, actor: &Actor, room_id: Id, post: NewPost) -> Result<MessageView> {
        let external_ref = post.external_ref.clone();
        if let Some(existing) = self
            .already_posted(actor, room_id, external_ref.as_deref())
            .await?
        {
            return Ok(existing);
        }
        let prepared = self.prepare_post(actor, room_id, post).await?;
        // Written together with the other posts arriving meanwhile (see `post_queue`).
        let written = self.inner.posts.write(prepared).await;
        match written {
            Ok(Some(view)) => Ok(view),
            // The same key raced in from elsewhere (another instance, a retried request).
            Ok(None) | Err(weft_store::StoreError::Conflict(_)) if external_ref.is_some() => self
                .already_posted(actor, room_id, external_ref.as_deref())
                .await?
                .ok_or(ChatError::Conflict("message".into())),
            Ok(None) => Err(ChatError::Conflict("message".into())),
            Err(e) => Err(from_write(e)),
        }
    }

    /// Checks and renders a post without writing it: everything [`Chat::post`] does before
    /// the write. A bridge prepares many posts and writes them in one transaction with
    /// [`Chat::write_batch`], together with its own records.
    pub async fn prepare_post(
        &self,
        actor: &Actor,
        room_id: Id,
        post: NewPost,
    ) -> Result<PreparedPost> {
        let (room, standing) = self.room_with_standing(actor, room_id).await?;
        let mut text = post.text;
        let mut status = post.status;
        if let Some(rest) = text.strip_prefix("/me ") {
            text = rest.to_string();
            status = true;
        }
        validate::message_text(&text)?;
        let author = self
            .poster(actor, room_id, &standing, post.as_virtual.as_ref())
            .await?;
        let parent_id = match &post.parent {
            Some(target) => {
                let parent = match target {
                    MessageRef::Stored(pid) => {
                        self.store()
                            .message(*pid)
                            .await?
                            .ok_or(ChatError::NotFound("parent message"))?
                            .message
                    }
                    MessageRef::Pending(_) | MessageRef::Read(_) => {
                        self.subject(room.id, target).await?.message
                    }
                };
                if parent.room_id != room.id {
                    return Err(ChatError::Invalid(
                        "parentId belongs to another room".into(),
                    ));
                }
                // Threads are one level deep: a reply to a reply joins the same thread.
                Some(parent.parent_id.unwrap_or(parent.id))
            }
            None => None,
        };
        let (html, mentions, issues, urls) = self
            .render(actor, &room, &text, post.as_virtual.is_some())
            .await?;
        let new = NewMessage {
            id: Id::generate(),
            room_id: room.id,
            author,
            text,
            html,
            status,
            parent_id,
            sent: weft_core::now_millis(),
            mentions,
            issues,
            urls,
            attachments: post
                .files
                .iter()
                .map(|f| Attachment {
                    file_id: f.id,
                    name: f.name.clone(),
                    content_type: f.content_type.clone(),
                    size: f.size,
                })
                .collect(),
            external_ref: post.external_ref,
        };
        Ok(PreparedPost {
            new,
            files: post.files,
            as_virtual: post.as_virtual,
            origin: actor.origin.clone(),
            poster: actor.user.clone(),
        })
    }

    /// Writes a prepared post inside the caller's transaction, with its events. Answers
    /// `None`, writing nothing, when a message with the same external key is already stored.
    pub(crate) async fn write_post(
        tx: &mut WriteTx,
        post: PreparedPost,
    ) -> weft_store::Result<Option<MessageView>> {
        Ok(Chat::write_posts(tx, vec![post]).await?.pop().flatten())
    }

    /// Writes many prepared posts inside the caller's transaction, in order, with their
    /// events; each answer is as [`Chat::write_post`]'s. The rows go in a few multi-row
    /// statements, so a bridge applying a hundred messages makes a handful of database
    /// round trips rather than hundreds.
    pub(crate) async fn write_posts(
        tx: &mut WriteTx,
        posts: Vec<PreparedPost>,
    ) -> weft_store::Result<Vec<Option<MessageView>>> {
        let keys: Vec<&str> = posts
            .iter()
            .filter_map(|p| p.new.external_ref.as_deref())
            .collect();
        let claims: Vec<(&str, &str)> = posts
            .iter()
            .filter_map(|p| p.as_virtual.as_ref())
            .map(|c| (c.kind.as_str(), c.external_id.as_str()))
            .collect();
        let lookups = Chat::look_up_for_posts(tx, &keys, &claims).await?;
        Chat::write_posts_with(tx, posts, lookups).await
    }

    /// What [`Chat::write_posts`] reads before it writes, for posts with these external keys
    /// and virtual users (`(kind, external id)`). A bridge that knows them before its posts
    /// are ready reads them first, inside the same transaction, and then calls
    /// [`Chat::write_posts_with`].
    async fn look_up_for_posts(
        tx: &mut WriteTx,
        external_refs: &[&str],
        virtual_users: &[(&str, &str)],
    ) -> weft_store::Result<PostLookups> {
        let taken = if external_refs.is_empty() {
            HashSet::new()
        } else {
            tx.taken_external_refs(external_refs).await?
        };
        let virtual_users = known_virtual_users(tx, virtual_users).await?;
        Ok(PostLookups {
            taken,
            virtual_users,
        })
    }

    /// [`Chat::write_posts`] with its lookups done beforehand in the same transaction
    /// ([`Chat::look_up_for_posts`]); keys and virtual users missing from them are treated
    /// as new.
    async fn write_posts_with(
        tx: &mut WriteTx,
        posts: Vec<PreparedPost>,
        lookups: PostLookups,
    ) -> weft_store::Result<Vec<Option<MessageView>>> {
        let PostLookups {
            mut taken,
            mut virtual_users,
        } = lookups;
        // Checked when each post was prepared, and again here: a ban committed in between
        // must still win. The writer then writes each post alone (see `post_queue`), or a
        // bridge's transaction comes again and meets the ban at preparation.
        let claims: Vec<(Id, &str, &str)> = posts
            .iter()
            .filter_map(|p| {
                p.as_virtual
                    .as_ref()
                    .map(|c| (p.new.room_id, c.kind.as_str(), c.external_id.as_str()))
            })
            .collect();
        if !claims.is_empty() && !tx.virtual_bans_among(&claims).await?.is_empty() {
            return Err(rejected(ChatError::Forbidden(
                "you are banned from this room".into(),
            )));
        }
        let new_claims = posts
            .iter()
            .filter(|p| {
                p.new
                    .external_ref
                    .as_ref()
                    .is_none_or(|k| !taken.contains(k))
            })
            .filter_map(|p| p.as_virtual.as_ref());
        create_missing_virtual_users(tx, new_claims, &mut virtual_users).await?;
        let mut answers: Vec<Option<(NewMessage, Option<Profile>)>> =
            Vec::with_capacity(posts.len());
        let mut to_store = Vec::new();
        let mut events: Vec<(Origin, Event)> = Vec::new();
        for post in posts {
            let PreparedPost {
                mut new,
                files,
                as_virtual,
                origin,
                poster,
            } = post;
            if let Some(key) = &new.external_ref
                && !taken.insert(key.clone())
            {
                answers.push(None);
                continue;
            }
            let author = match as_virtual {
                Some(claim) => {
                    let key = (claim.kind.clone(), claim.external_id.clone());
                    let vu = match virtual_users.get(&key) {
                        Some(known) if claim_matches(&claim, known) => known.clone(),
                        _ => {
                            let vu = virtual_author(tx, &claim, &origin).await?;
                            virtual_users.insert(key, vu.clone());
                            vu
                        }
                    };
                    new.author = Author::Virtual(vu.id);
                    Some(Profile::Virtual(vu))
                }
                None => poster.map(Profile::User),
            };
            for file in &files {
                tx.insert_file(file).await?;
            }
            events.push((
                origin.clone(),
                Event::MessageCreated {
                    room_id: new.room_id,
                    message_id: new.id,
                },
            ));
            if let Some(parent) = new.parent_id {
                events.push((
                    origin,
                    Event::ThreadUpdated {
                        room_id: new.room_id,
                        message_id: parent,
                    },
                ));
            }
            to_store.push(new.clone());
            answers.push(Some((new, author)));
        }
        let seqs = tx.insert_messages_logged(&to_store, &events).await?;
        // Answer from what was written: a new message has no reactions or readers yet.
        let mut seqs = seqs.into_iter();
        Ok(answers
            .into_iter()
            .map(|answer| {
                let (new, author) = answer?;
                let seq = seqs.next()?;
                Some(MessageView {
                    message: written_message(new, seq),
                    author,
                })
            })
            .collect())
    }

    /// The message already posted under `external_ref` in this room, if any.
    pub(crate) async fn already_posted(
        &self,
        actor: &Actor,
        room_id: Id,
        external_ref: Option<&str>,
    ) -> Result<Option<MessageView>> {
        let Some(key) = external_ref else {
            return Ok(None);
        };
        match self.store().message_by_external_ref(key).await? {
            Some(view) if view.message.room_id == room_id => {
                Ok(Some(self.message(actor, room_id, view.message.id).await?))
            }
            Some(_) => Err(ChatError::Conflict(format!(
                "message key {key} is used in another room"
            ))),
            None => Ok(None),
        }
    }
}

/// Only a bridge names its virtual users, and names are bounded.
fn check_profile(actor: &Actor, who: &PostAs) -> Result<()> {
    if !actor.is_bridge() {
        return Err(ChatError::Forbidden(
            "only bridge tokens may manage virtual users".into(),
        ));
    }
    validate::short_text("virtual user name", &who.display_name, 256)?;
    Ok(())
}

/// The virtual user a bridge acts as, created or refreshed inside the write. A claim without
/// a display name (a removal by id only) never blanks a known name. A rename is logged, so
/// that every instance (and every bridge's cache of names) learns it.
pub(crate) async fn virtual_author(
    tx: &mut weft_store::WriteTx,
    v: &PostAs,
    origin: &Origin,
) -> weft_store::Result<weft_core::VirtualUser> {
    let name = if v.display_name.trim().is_empty() {
        None
    } else {
        Some(v.display_name.as_str())
    };
    let (vu, upserted) = tx
        .upsert_virtual_user(&v.kind, &v.external_id, name, v.avatar_url.as_deref())
        .await?;
    if upserted == weft_store::Upserted::Updated {
        let event = Event::VirtualUserUpdated {
            virtual_user_id: vu.id,
        };
        tx.append(origin, &event).await?;
    }
    Ok(vu)
}

/// The stored virtual users the posts claim to be, looked up together.
pub(super) async fn known_virtual_users(
    tx: &mut WriteTx,
    claims: &[(&str, &str)],
) -> weft_store::Result<HashMap<(String, String), VirtualUser>> {
    let mut by_kind: HashMap<&str, Vec<&str>> = HashMap::new();
    for (kind, external_id) in claims {
        let ids = by_kind.entry(kind).or_default();
        if !ids.contains(external_id) {
            ids.push(external_id);
        }
    }
    let mut known = HashMap::new();
    for (kind, ids) in by_kind {
        for (external_id, vu) in tx.virtual_users(kind, &ids).await? {
            known.insert((kind.to_string(), external_id), vu);
        }
    }
    Ok(known)
}

/// Creates, in one statement, the virtual users that `claims` name and `known` (what the
/// store holds of them) lacks, each named by its first claim that gives a name, else by its
/// external id; adds them to `known`. A bridge's transaction full of people weft never met
/// costs one statement for all of them, not a look-up and an insert each.
pub(super) async fn create_missing_virtual_users<'c>(
    tx: &mut WriteTx,
    claims: impl Iterator<Item = &'c PostAs>,
    known: &mut HashMap<(String, String), VirtualUser>,
) -> weft_store::Result<()> {
    let mut created: Vec<VirtualUser> = Vec::new();
    let mut at: HashMap<(String, String), usize> = HashMap::new();
    for claim in claims {
        let key = (claim.kind.clone(), claim.external_id.clone());
        if known.contains_key(&key) {
            continue;
        }
        let named = !claim.display_name.trim().is_empty();
        match at.get(&key) {
            Some(&i) => {
                let vu = &mut created[i];
                if named && vu.display_name == vu.external_id {
                    vu.display_name = claim.display_name.clone();
                }
                if vu.avatar_url.is_none() {
                    vu.avatar_url = claim.avatar_url.clone().filter(|url| !url.is_empty());
                }
            }
            None => {
                at.insert(key, created.len());
                created.push(VirtualUser {
                    id: Id::generate(),
                    kind: claim.kind.clone(),
                    external_id: claim.external_id.clone(),
                    display_name: if named {
                        claim.display_name.clone()
                    } else {
                        claim.external_id.clone()
                    },
                    avatar_url: claim.avatar_url.clone().filter(|url| !url.is_empty()),
                });
            }
        }
    }
    if created.is_empty() {
        return Ok(());
    }
    tx.insert_virtual_users(&created).await?;
    for vu in created {
        known.insert((vu.kind.clone(), vu.external_id.clone()), vu);
    }
    Ok(())
}

/// Whether a stored virtual user already carries what a bridge claims (no update needed).
pub(super) fn claim_matches(claim: &PostAs, stored: &VirtualUser) -> bool {
    (claim.display_name.trim().is_empty() || stored.display_name == claim.display_name)
        && (claim.avatar_url.is_none() || stored.avatar_url == claim.avatar_url)
}

/// The message a [`NewMessage`] became once stored under `seq`.
pub(super) fn written_message(new: NewMessage, seq: i64) -> Message {
    Message {
        id: new.id,
        seq,
        room_id: new.room_id,
        author: new.author,
        text: new.text,
        html: new.html,
        status: new.status,
        parent_id: new.parent_id,
        thread_count: 0,
        sent: new.sent,
        edited_at: None,
        deleted: false,
        mentions: new.mentions,
        issues: new.issues,
        urls: new.urls,
        attachments: new.attachments,
        version: 1,
        reactions: Vec::new(),
        read_by: 0,
        undelivered: None,
    }
}
