//! The conformance cases; each receives a fresh store.

use weft_core::{
    Author, Event, Id, Membership, MessageMention, Origin, Profile, Role, Room, RoomKind, User,
};
use weft_store::{Fence, MessagePage, NewMessage, PageAnchor, Store, StoreError, Upserted};

fn user(name: &str) -> User {
    User {
        id: Id::generate(),
        username: name.to_string(),
        display_name: name.to_string(),
        avatar_url: None,
        site_admin: false,
        created_at: 1,
    }
}

fn room(uri: &str) -> Room {
    Room {
        id: Id::generate(),
        group_id: None,
        uri: Some(uri.to_string()),
        name: uri.to_string(),
        topic: String::new(),
        kind: RoomKind::Public,
        avatar_url: None,
        noindex: false,
        member_count: 0,
        created_at: 1,
    }
}

fn message(room_id: Id, author: Id, text: &str, parent: Option<Id>) -> NewMessage {
    NewMessage {
        id: Id::generate(),
        room_id,
        author: Author::User(author),
        text: text.to_string(),
        html: format!("<p>{text}</p>"),
        status: false,
        parent_id: parent,
        sent: weft_core::now_millis(),
        mentions: Vec::new(),
        issues: Vec::new(),
        urls: Vec::new(),
        attachments: Vec::new(),
        external_ref: None,
    }
}

/// A room with the given members; returns the room.
async fn setup(store: &Store, members: &[&User]) -> Room {
    let r = room(&format!("c/r{}", Id::generate()));
    let (r2, users): (Room, Vec<User>) =
        (r.clone(), members.iter().map(|u| (*u).clone()).collect());
    store
        .write(move |tx| {
            Box::pin(async move {
                tx.insert_room(&r2, None).await?;
                for u in &users {
                    tx.insert_user(u, None).await?;
                    let m = Membership {
                        room_id: r2.id,
                        user_id: u.id,
                        role: Role::Member,
                        last_read_seq: 0,
                        favourite: false,
                        joined_at: 1,
                    };
                    tx.insert_membership(&m).await?;
                }
                Ok(())
            })
        })
        .await
        .expect("setup");
    r
}

async fn post(store: &Store, m: NewMessage) -> i64 {
    store
        .write(move |tx| {
            Box::pin(async move {
                let seq = tx.insert_message(&m).await?;
                tx.append(
                    &Origin::local(),
                    &Event::MessageCreated {
                        room_id: m.room_id,
                        message_id: m.id,
                    },
                )
                .await?;
                Ok(seq)
            })
        })
        .await
        .expect("message stored")
}

pub async fn usernames_are_unique_ignoring_case(store: &Store) {
    let a = user("Alice");
    let a2 = a.clone();
    store
        .write(move |tx| Box::pin(async move { tx.insert_user(&a2, None).await }))
        .await
        .expect("first insert");
    let b = user("alice");
    let result = store
        .write(move |tx| Box::pin(async move { tx.insert_user(&b, None).await }))
        .await;
    assert!(
        matches!(result, Err(StoreError::Conflict("username"))),
        "got {result:?}"
    );
    let found = store
        .user_by_username("ALICE")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.id, a.id);
}

pub async fn a_failed_job_rolls_back_its_change_and_its_event(store: &Store) {
    let before = store.last_event_seq().await.expect("seq");
    let u = user("rolled");
    let result: Result<(), StoreError> = store
        .write(move |tx| {
            Box::pin(async move {
                tx.insert_user(&u, None).await?;
                tx.append(&Origin::local(), &Event::UserCreated { user_id: u.id })
                    .await?;
                Err(StoreError::Rejected("refused on purpose".into()))
            })
        })
        .await;
    assert!(result.is_err());
    assert!(
        store
            .user_by_username("rolled")
            .await
            .expect("lookup")
            .is_none()
    );
    assert_eq!(store.last_event_seq().await.expect("seq"), before);
    // A later good write still lands.
    let ok = user("kept");
    store
        .write(move |tx| {
            Box::pin(async move {
                tx.insert_user(&ok, None).await?;
                tx.append(&Origin::local(), &Event::UserCreated { user_id: ok.id })
                    .await
            })
        })
        .await
        .expect("good write");
    assert!(
        store
            .user_by_username("kept")
            .await
            .expect("lookup")
            .is_some()
    );
}

pub async fn concurrent_writes_commit_with_ordered_events(store: &Store) {
    let author = user("writer");
    let r = setup(store, &[&author]).await;
    let mut committed = store.committed();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        let m = message(r.id, author.id, &format!("message {i}"), None);
        tasks.push(tokio::spawn(async move { post(&store, m).await }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("task"));
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 200, "every message got its own sequence number");
    assert_eq!(store.count_messages(r.id).await.expect("count"), 200);
    let events = store.events_after(0, 10_000).await.expect("events");
    let created: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.event, Event::MessageCreated { .. }))
        .collect();
    assert_eq!(created.len(), 200);
    assert!(
        events.windows(2).all(|w| w[0].seq < w[1].seq),
        "log is strictly ordered"
    );
    committed.changed().await.ok();
    assert_eq!(
        *committed.borrow(),
        events.last().expect("some").seq,
        "the committed watermark reached the end of the log"
    );
}

pub async fn pages_of_the_timeline(store: &Store) {
    let author = user("pager");
    let r = setup(store, &[&author]).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let m = message(r.id, author.id, &format!("m{i}"), None);
        ids.push(m.id);
        post(store, m).await;
    }
    let page = |anchor, limit| MessagePage {
        room_id: r.id,
        anchor,
        limit,
        include_threads: false,
    };
    let latest = store
        .messages(page(PageAnchor::Latest, 10))
        .await
        .expect("latest");
    assert_eq!(
        latest.iter().map(|v| v.message.id).collect::<Vec<_>>(),
        ids[20..30].to_vec()
    );
    let seq_of = |i: usize| latest_seq(store, ids[i]);
    let before = store
        .messages(page(PageAnchor::Before(seq_of(20).await), 5))
        .await
        .expect("before");
    assert_eq!(
        before.iter().map(|v| v.message.id).collect::<Vec<_>>(),
        ids[15..20].to_vec()
    );
    let after = store
        .messages(page(PageAnchor::After(seq_of(3).await), 4))
        .await
        .expect("after");
    assert_eq!(
        after.iter().map(|v| v.message.id).collect::<Vec<_>>(),
        ids[4..8].to_vec()
    );
    let around = store
        .messages(page(PageAnchor::Around(seq_of(10).await), 6))
        .await
        .expect("around");
    assert_eq!(
        around.iter().map(|v| v.message.id).collect::<Vec<_>>(),
        ids[7..13].to_vec()
    );
    assert!(
        latest.iter().all(
            |v| matches!(&v.author, Some(weft_core::Profile::User(u)) if u.username == "pager")
        )
    );
}

async fn latest_seq(store: &Store, id: Id) -> i64 {
    store
        .message(id)
        .await
        .expect("load")
        .expect("exists")
        .message
        .seq
}

pub async fn threads_stay_out_of_the_main_feed(store: &Store) {
    let author = user("threader");
    let r = setup(store, &[&author]).await;
    let parent = message(r.id, author.id, "parent", None);
    let parent_id = parent.id;
    post(store, parent).await;
    for i in 0..3 {
        post(
            store,
            message(r.id, author.id, &format!("reply {i}"), Some(parent_id)),
        )
        .await;
    }
    let main = store
        .messages(MessagePage {
            room_id: r.id,
            anchor: PageAnchor::Latest,
            limit: 50,
            include_threads: false,
        })
        .await
        .expect("main");
    assert_eq!(main.len(), 1);
    assert_eq!(main[0].message.thread_count, 3);
    let all = store
        .messages(MessagePage {
            room_id: r.id,
            anchor: PageAnchor::Latest,
            limit: 50,
            include_threads: true,
        })
        .await
        .expect("all");
    assert_eq!(all.len(), 4);
    let thread = store.thread(parent_id, 0, 100).await.expect("thread");
    assert_eq!(
        thread
            .iter()
            .map(|v| v.message.text.as_str())
            .collect::<Vec<_>>(),
        ["reply 0", "reply 1", "reply 2"]
    );
}

pub async fn read_by_counts_follow_read_marks(store: &Store) {
    let (a, b, c) = (user("ra"), user("rb"), user("rc"));
    let r = setup(store, &[&a, &b, &c]).await;
    let mut seqs = Vec::new();
    for i in 0..4 {
        seqs.push(post(store, message(r.id, a.id, &format!("r{i}"), None)).await);
    }
    assert_eq!(
        store.read_by(r.id, &seqs).await.expect("read_by"),
        vec![0, 0, 0, 0]
    );
    let (room_id, b_id, c_id, s1, s3) = (r.id, b.id, c.id, seqs[1], seqs[3]);
    store
        .write(move |tx| {
            Box::pin(async move {
                assert!(tx.advance_read(room_id, b_id, s1).await?);
                assert!(tx.advance_read(room_id, c_id, s3).await?);
                // Moving backwards changes nothing.
                assert!(!tx.advance_read(room_id, c_id, s1).await?);
                Ok(())
            })
        })
        .await
        .expect("reads");
    assert_eq!(
        store.read_by(r.id, &seqs).await.expect("read_by"),
        vec![2, 2, 1, 1]
    );
    let (room_id, c_id) = (r.id, c.id);
    store
        .write(move |tx| Box::pin(async move { tx.delete_membership(room_id, c_id).await }))
        .await
        .expect("leave");
    assert_eq!(
        store.read_by(r.id, &seqs).await.expect("read_by"),
        vec![1, 1, 0, 0]
    );
    assert_eq!(
        store
            .room(r.id)
            .await
            .expect("room")
            .expect("exists")
            .member_count,
        2
    );
}

pub async fn reactions_are_counted_once_per_person(store: &Store) {
    let (a, b) = (user("xa"), user("xb"));
    let r = setup(store, &[&a, &b]).await;
    let m = message(r.id, a.id, "react to me", None);
    let mid = m.id;
    let seq = post(store, m).await;
    let (aid, bid) = (a.id, b.id);
    let added = store
        .write(move |tx| {
            Box::pin(async move {
                Ok((
                    tx.add_reaction(mid, Author::User(aid), "🎉", 1).await?,
                    tx.add_reaction(mid, Author::User(aid), "🎉", 2).await?,
                    tx.add_reaction(mid, Author::User(bid), "🎉", 3).await?,
                    tx.add_reaction(mid, Author::User(bid), "👍", 4).await?,
                ))
            })
        })
        .await
        .expect("reactions");
    assert_eq!(added, (true, false, true, true));
    let counts = store
        .reactions(r.id, seq, seq, Some(a.id))
        .await
        .expect("counts");
    let tada = counts
        .iter()
        .find(|(_, c)| c.emoji == "🎉")
        .expect("tada")
        .1
        .clone();
    assert_eq!((tada.count, tada.me), (2, true));
    let thumbs = counts
        .iter()
        .find(|(_, c)| c.emoji == "👍")
        .expect("thumbs")
        .1
        .clone();
    assert_eq!((thumbs.count, thumbs.me), (1, false));
    let removed = store
        .write(move |tx| {
            Box::pin(async move { tx.remove_reaction(mid, Author::User(bid), "👍").await })
        })
        .await
        .expect("remove");
    assert!(removed);
    assert_eq!(
        store
            .reactions(r.id, seq, seq, None)
            .await
            .expect("counts")
            .len(),
        1
    );
}

pub async fn search_finds_words(store: &Store) {
    let a = user("searcher");
    let r = setup(store, &[&a]).await;
    post(store, message(r.id, a.id, "the quick brown fox", None)).await;
    post(store, message(r.id, a.id, "lazy dogs sleep", None)).await;
    post(store, message(r.id, a.id, "another fox appears", None)).await;
    let found = store
        .search(r.id, "fox", i64::MAX, 10)
        .await
        .expect("search");
    assert_eq!(
        found
            .iter()
            .map(|v| v.message.text.as_str())
            .collect::<Vec<_>>(),
        ["another fox appears", "the quick brown fox"]
    );
    assert!(
        store
            .search(r.id, "quick fox", i64::MAX, 10)
            .await
            .expect("search")
            .len()
            == 1
    );
    // Query syntax from users is never an error.
    assert!(
        store
            .search(r.id, "\"unbalanced AND (", i64::MAX, 10)
            .await
            .is_ok()
    );
    assert!(
        store
            .search(r.id, "cats", i64::MAX, 10)
            .await
            .expect("search")
            .is_empty()
    );
}

pub async fn deleting_a_thread_head_leaves_a_placeholder(store: &Store) {
    let a = user("deleter");
    let r = setup(store, &[&a]).await;
    let lone = message(r.id, a.id, "lonely", None);
    let head = message(r.id, a.id, "head", None);
    let (lone_id, head_id) = (lone.id, head.id);
    post(store, lone).await;
    post(store, head).await;
    post(store, message(r.id, a.id, "reply", Some(head_id))).await;
    for id in [lone_id, head_id] {
        let m = store
            .message(id)
            .await
            .expect("load")
            .expect("exists")
            .message;
        store
            .write(move |tx| Box::pin(async move { tx.delete_message(&m).await }))
            .await
            .expect("delete");
    }
    assert!(store.message(lone_id).await.expect("load").is_none());
    let placeholder = store
        .message(head_id)
        .await
        .expect("load")
        .expect("kept")
        .message;
    assert!(placeholder.deleted);
    assert_eq!(placeholder.text, "");
    assert_eq!(placeholder.thread_count, 1);
}

pub async fn messages_are_grouped_by_day_for_archives(store: &Store) {
    const DAY: i64 = 86_400_000;
    let a = user("archivist");
    let r = setup(store, &[&a]).await;
    let at = |day: i64, text: &str, parent: Option<Id>| {
        let mut m = message(r.id, a.id, text, parent);
        m.sent = day * DAY + 3_600_000;
        m
    };
    let first = at(19_000, "first", None);
    let first_id = first.id;
    post(store, first).await;
    post(store, at(19_000, "second", None)).await;
    post(store, at(19_000, "in a thread", Some(first_id))).await;
    post(store, at(19_002, "later", None)).await;
    let gone = at(19_003, "deleted", None);
    let gone_id = gone.id;
    post(store, gone).await;
    let m = store
        .message(gone_id)
        .await
        .expect("load")
        .expect("exists")
        .message;
    store
        .write(move |tx| Box::pin(async move { tx.delete_message(&m).await }))
        .await
        .expect("delete");
    let days = store
        .message_days(r.id, 18_000 * DAY, 20_000 * DAY)
        .await
        .expect("days");
    assert_eq!(days, [(19_000, 2), (19_002, 1)]);
    let none = store
        .message_days(r.id, 19_001 * DAY, 19_002 * DAY)
        .await
        .expect("empty range");
    assert!(none.is_empty());
    let page = store
        .messages_sent_between(r.id, 19_000 * DAY, 19_001 * DAY, 0, 1)
        .await
        .expect("first page");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].message.text, "first");
    let rest = store
        .messages_sent_between(r.id, 19_000 * DAY, 19_001 * DAY, page[0].message.seq, 10)
        .await
        .expect("second page");
    assert_eq!(
        rest.iter()
            .map(|v| v.message.text.as_str())
            .collect::<Vec<_>>(),
        ["second"]
    );
}

pub async fn unread_items_and_mentions(store: &Store) {
    let (a, b) = (user("ua"), user("ub"));
    let r = setup(store, &[&a, &b]).await;
    let plain = message(r.id, a.id, "hello", None);
    let mut mention = message(r.id, a.id, "hi @ub", None);
    mention.mentions = vec![MessageMention {
        screen_name: "ub".into(),
        user_id: Some(b.id),
        all: false,
    }];
    let mut own = message(r.id, b.id, "me @ub", None);
    own.mentions = vec![MessageMention {
        screen_name: "ub".into(),
        user_id: Some(b.id),
        all: false,
    }];
    let (plain_id, mention_id) = (plain.id, mention.id);
    post(store, plain).await;
    let mention_seq = post(store, mention).await;
    post(store, own).await;
    assert_eq!(
        store
            .unread_message_ids(r.id, b.id, 0, 100)
            .await
            .expect("unread"),
        vec![plain_id, mention_id]
    );
    assert_eq!(
        store
            .unread_mention_ids(r.id, b.id, 0, 100)
            .await
            .expect("mentions"),
        vec![mention_id]
    );
    assert!(
        store
            .unread_mention_ids(r.id, b.id, mention_seq, 100)
            .await
            .expect("mentions")
            .is_empty()
    );
    assert_eq!(
        store
            .unread_message_ids(r.id, b.id, 0, 1)
            .await
            .expect("capped")
            .len(),
        1
    );
}

pub async fn one_to_one_rooms_are_unique_per_pair(store: &Store) {
    let (a, b) = (user("oa"), user("ob"));
    let (a2, b2) = (a.clone(), b.clone());
    store
        .write(move |tx| {
            Box::pin(async move {
                tx.insert_user(&a2, None).await?;
                tx.insert_user(&b2, None).await
            })
        })
        .await
        .expect("users");
    let mut first = room("x/y");
    first.uri = None;
    first.kind = RoomKind::OneToOne;
    let mut second = first.clone();
    second.id = Id::generate();
    let (aid, bid) = (a.id, b.id);
    store
        .write(move |tx| Box::pin(async move { tx.insert_room(&first, Some((aid, bid))).await }))
        .await
        .expect("first");
    let again = store
        .write(move |tx| Box::pin(async move { tx.insert_room(&second, Some((bid, aid))).await }))
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict(_))),
        "got {again:?}"
    );
    assert!(
        store
            .one_to_one_room(b.id, a.id)
            .await
            .expect("lookup")
            .is_some()
    );
}

pub async fn virtual_users_are_upserted(store: &Store) {
    let (first, changed) = store
        .write(|tx| {
            Box::pin(async move {
                tx.upsert_virtual_user("matrix", "@al:hs", Some("Al"), None)
                    .await
            })
        })
        .await
        .expect("insert");
    assert_eq!(changed, Upserted::Created);
    let (same, changed) = store
        .write(|tx| {
            Box::pin(async move {
                tx.upsert_virtual_user("matrix", "@al:hs", Some("Al"), None)
                    .await
            })
        })
        .await
        .expect("again");
    assert_eq!((same.id, changed), (first.id, Upserted::Unchanged));
    let (renamed, changed) = store
        .write(|tx| {
            Box::pin(async move {
                tx.upsert_virtual_user("matrix", "@al:hs", Some("Alan"), Some("mxc://a"))
                    .await
            })
        })
        .await
        .expect("rename");
    assert_eq!(
        (renamed.id, changed, renamed.display_name.as_str()),
        (first.id, Upserted::Updated, "Alan")
    );
    assert_eq!(
        store
            .virtual_user(first.id)
            .await
            .expect("load")
            .expect("exists")
            .display_name,
        "Alan"
    );
    // A claim by id only (a removal) keeps the known name and avatar.
    let (kept, changed) = store
        .write(|tx| {
            Box::pin(async move { tx.upsert_virtual_user("matrix", "@al:hs", None, None).await })
        })
        .await
        .expect("nameless");
    assert_eq!(
        (
            kept.display_name.as_str(),
            kept.avatar_url.as_deref(),
            changed
        ),
        ("Alan", Some("mxc://a"), Upserted::Unchanged)
    );
    // An empty avatar takes it away, and the name stays.
    let (bare, changed) = store
        .write(|tx| {
            Box::pin(async move {
                tx.upsert_virtual_user("matrix", "@al:hs", None, Some(""))
                    .await
            })
        })
        .await
        .expect("avatar removed");
    assert_eq!(
        (bare.display_name.as_str(), bare.avatar_url, changed),
        ("Alan", None, Upserted::Updated)
    );
    let stored = store
        .virtual_user(first.id)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(
        stored.avatar_url, None,
        "stored without an avatar, not an empty one"
    );
}

/// Appends one event in its own write; returns its sequence number.
pub async fn append_one_event(store: &Store) -> i64 {
    store
        .write(|tx| {
            Box::pin(async move {
                tx.append(
                    &Origin::local(),
                    &Event::UserCreated {
                        user_id: Id::generate(),
                    },
                )
                .await
            })
        })
        .await
        .expect("event appended")
}

pub async fn external_refs_are_unique(store: &Store) {
    let a = user("bridged");
    let r = setup(store, &[&a]).await;
    let mut first = message(r.id, a.id, "from matrix", None);
    first.external_ref = Some("$event1:hs".into());
    let first_id = first.id;
    post(store, first).await;
    let mut again = message(r.id, a.id, "from matrix", None);
    again.external_ref = Some("$event1:hs".into());
    let result = store
        .write(move |tx| Box::pin(async move { tx.insert_message(&again).await }))
        .await;
    assert!(
        matches!(result, Err(StoreError::Conflict(_))),
        "got {result:?}"
    );
    let found = store
        .message_by_external_ref("$event1:hs")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.message.id, first_id);
    assert_eq!(store.count_messages(r.id).await.expect("count"), 1);
    assert_eq!(
        store
            .message_id_for_external_ref("$event1:hs")
            .await
            .expect("lookup"),
        Some(first_id)
    );
    assert_eq!(
        store.external_ref_of(first_id).await.expect("lookup"),
        Some((r.id, "$event1:hs".to_string()))
    );
    let unkeyed = message(r.id, a.id, "typed in weft", None);
    let unkeyed_id = unkeyed.id;
    post(store, unkeyed).await;
    assert_eq!(
        store.external_ref_of(unkeyed_id).await.expect("lookup"),
        None
    );
}

/// A fenced write: appends one event if `fence` still holds its lease; returns its seq.
pub async fn fenced_write(store: &Store, fence: &Fence) -> Result<i64, StoreError> {
    let fence = fence.clone();
    store
        .write(move |tx| {
            Box::pin(async move {
                tx.check_lease(&fence).await?;
                tx.append(
                    &Origin::local(),
                    &Event::UserCreated {
                        user_id: Id::generate(),
                    },
                )
                .await
            })
        })
        .await
}

/// Each taking of a lease has a higher epoch, and the writes of an earlier holder are refused
/// (and write nothing) once someone took the lease after it.
pub async fn fenced_writes_need_the_current_lease(store: &Store) {
    let first = store.take_lease("outbound").await.expect("lease");
    let old = first.fence().clone();
    let written = fenced_write(store, &old).await.expect("the holder writes");
    // Given up (on PostgreSQL the lock is free once its session closed) and taken again.
    drop(first);
    let second = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.take_lease("outbound"),
    )
    .await
    .expect("the lease is free again")
    .expect("lease");
    assert!(second.epoch() > old.epoch(), "a new holder has a new epoch");

    let refused = fenced_write(store, &old).await;
    assert!(
        matches!(&refused, Err(StoreError::LeaseLost { name, epoch }) if name == "outbound" && *epoch == old.epoch()),
        "the earlier holder's write is refused: {refused:?}"
    );
    assert_eq!(
        store.last_event_seq().await.expect("seq"),
        written,
        "the refused write wrote nothing"
    );
    let new = second.fence().clone();
    let again = fenced_write(store, &new)
        .await
        .expect("the new holder writes");
    assert!(again > written);
    assert!(!second.is_lost());

    // Leases are independent of each other.
    let other = store
        .take_lease("another-lease")
        .await
        .expect("other lease");
    assert_eq!(other.epoch(), 1, "a lease's first epoch is 1");
    assert!(
        !second.is_lost(),
        "taking another lease leaves this one alone"
    );
}

/// A room found by its URI spelled without slashes, as a Matrix alias spells it.
pub async fn rooms_are_found_by_flattened_uri(store: &Store) {
    let a = user("flattener");
    let r = setup(store, &[&a]).await;
    let uri = r.uri.clone().expect("uri");
    let flat = uri.replace('/', "_").to_uppercase();
    let found = store
        .room_by_flattened_uri(&flat, '_')
        .await
        .expect("lookup");
    assert_eq!(found.map(|x| x.id), Some(r.id), "any case, `_` for `/`");
    assert_eq!(
        store
            .room_by_flattened_uri(&uri, '_')
            .await
            .expect("lookup")
            .map(|x| x.id),
        None,
        "the slash is not the separator asked for"
    );
}

pub async fn users_are_found_by_part_of_their_name(store: &Store) {
    let mut names = Vec::new();
    for (username, display) in [
        ("zedone", "Zed One"),
        ("bazed", "Someone Else"),
        ("carol", "Caroline Zedd"),
        ("zedkin", "Z"),
        ("ann_b", "Ann"),
        ("annxb", "Annx"),
    ] {
        let mut u = user(username);
        u.display_name = display.to_string();
        names.push(u);
    }
    let users = names.clone();
    store
        .write(move |tx| {
            Box::pin(async move {
                for u in &users {
                    tx.insert_user(u, None).await?;
                }
                Ok(())
            })
        })
        .await
        .expect("users stored");
    let found = |list: Vec<User>| list.into_iter().map(|u| u.username).collect::<Vec<_>>();
    // Prefix matches (username or display name) first, then other substrings, by username.
    assert_eq!(
        found(store.find_users("ZED", 10, 0).await.expect("search")),
        vec!["zedkin", "zedone", "bazed", "carol"]
    );
    assert_eq!(
        found(store.find_users("zed", 2, 2).await.expect("page")),
        vec!["bazed", "carol"]
    );
    // `_` is a character, not a wildcard.
    assert_eq!(
        found(store.find_users("n_b", 10, 0).await.expect("underscore")),
        vec!["ann_b"]
    );
    assert!(
        store
            .find_users("%", 10, 0)
            .await
            .expect("percent")
            .is_empty()
    );
    assert!(
        store
            .find_users("nobody", 10, 0)
            .await
            .expect("none")
            .is_empty()
    );
}

pub async fn readers_are_the_members_read_by_counts(store: &Store) {
    let (a, b, c) = (user("rda"), user("rdb"), user("rdc"));
    let r = setup(store, &[&a, &b, &c]).await;
    let mut seqs = Vec::new();
    for i in 0..3 {
        seqs.push(post(store, message(r.id, a.id, &format!("m{i}"), None)).await);
    }
    let (room_id, b_id, c_id, s0, s2) = (r.id, b.id, c.id, seqs[0], seqs[2]);
    // A Matrix user's read receipt, recorded by the bridge, counts as a read mark too.
    let zed = store
        .write(move |tx| {
            Box::pin(async move {
                tx.advance_read(room_id, b_id, s2).await?;
                tx.advance_read(room_id, c_id, s0).await?;
                let (zed, _) = tx
                    .upsert_virtual_user("matrix", "@zed:hs.test", Some("Zed"), None)
                    .await?;
                assert_eq!(tx.advance_virtual_reads(&[(room_id, zed.id, s0)]).await?, 1);
                Ok(zed.id)
            })
        })
        .await
        .expect("reads");
    let names = |list: Vec<Profile>| {
        list.into_iter()
            .map(|p| match p {
                Profile::User(u) => u.username,
                Profile::Virtual(v) => v.display_name,
            })
            .collect::<Vec<_>>()
    };
    let agree = |seqs: Vec<i64>| async move {
        let counts = store.read_by(room_id, &seqs).await.expect("read_by");
        for (seq, count) in seqs.iter().zip(counts) {
            let readers = store.readers(room_id, *seq, 100, 0).await.expect("readers");
            assert_eq!(readers.len() as i64, count, "readers of {seq}");
        }
    };
    agree(seqs.clone()).await;
    assert_eq!(
        names(store.readers(r.id, seqs[0], 100, 0).await.expect("readers")),
        vec!["rdb", "rdc", "Zed"]
    );
    assert_eq!(
        names(store.readers(r.id, seqs[0], 1, 1).await.expect("page")),
        vec!["rdc"]
    );
    assert_eq!(
        names(store.readers(r.id, seqs[1], 100, 0).await.expect("readers")),
        vec!["rdb"]
    );
    // Receipts move forward only: an older one (receipts race) changes nothing.
    let moved = store
        .write(move |tx| {
            Box::pin(async move {
                let forward = tx.advance_virtual_reads(&[(room_id, zed, s2)]).await?;
                let back = tx.advance_virtual_reads(&[(room_id, zed, s0)]).await?;
                Ok((forward, back))
            })
        })
        .await
        .expect("receipts");
    assert_eq!(moved, (1, 0));
    agree(seqs.clone()).await;
    assert_eq!(
        names(store.readers(r.id, seqs[2], 100, 0).await.expect("readers")),
        vec!["rdb", "Zed"]
    );
}

pub async fn cached_standing_follows_bans_roles_and_room_changes(store: &Store) {
    let (mod_user, member) = (user("keeper"), user("guest"));
    let r = setup(store, &[&mod_user, &member]).await;
    // Read twice so that the second answer comes from the cache.
    for _ in 0..2 {
        let (membership, banned) = store.standing(r.id, member.id).await.expect("standing");
        assert_eq!(membership.expect("a member").role, Role::Member);
        assert!(!banned);
    }
    let (room_id, user_id) = (r.id, member.id);
    store
        .write(move |tx| {
            Box::pin(async move { tx.set_role(room_id, user_id, Role::Moderator).await })
        })
        .await
        .expect("role");
    let (membership, _) = store.standing(r.id, member.id).await.expect("standing");
    assert_eq!(
        membership.expect("still a member").role,
        Role::Moderator,
        "a role change is seen by the next check"
    );
    store
        .write(move |tx| {
            Box::pin(async move { tx.insert_ban(room_id, user_id, 2, None, None).await })
        })
        .await
        .expect("ban");
    let (membership, banned) = store.standing(r.id, member.id).await.expect("standing");
    assert!(
        membership.is_none() && banned,
        "a ban is seen by the next check"
    );
    let mut renamed = store.room(r.id).await.expect("room").expect("exists");
    renamed.topic = "new topic".into();
    let saved = renamed.clone();
    store
        .write(move |tx| Box::pin(async move { tx.update_room(&saved).await }))
        .await
        .expect("update");
    assert_eq!(
        store.room(r.id).await.expect("room").expect("exists").topic,
        "new topic"
    );
    // A change the writer did not see (another process) is dropped on request.
    store
        .write(move |tx| Box::pin(async move { tx.delete_ban(room_id, user_id).await }))
        .await
        .expect("unban");
    store.forget_access();
    let (_, banned) = store.standing(r.id, member.id).await.expect("standing");
    assert!(!banned);
}

pub async fn failed_jobs_in_a_batch_leave_their_neighbours(store: &Store) {
    let author = user("neighbour");
    let r = setup(store, &[&author]).await;
    let before = store.last_event_seq().await.expect("seq");
    let mut tasks = Vec::new();
    for i in 0..90 {
        let store = store.clone();
        let m = message(r.id, author.id, &format!("job {i}"), None);
        tasks.push(tokio::spawn(async move {
            store
                .write(move |tx| {
                    Box::pin(async move {
                        tx.insert_message(&m).await?;
                        tx.append(
                            &Origin::local(),
                            &Event::MessageCreated {
                                room_id: m.room_id,
                                message_id: m.id,
                            },
                        )
                        .await?;
                        if i % 3 == 2 {
                            return Err(StoreError::Rejected("refused on purpose".into()));
                        }
                        Ok(())
                    })
                })
                .await
                .is_ok()
        }));
    }
    let mut succeeded = 0;
    for t in tasks {
        if t.await.expect("task") {
            succeeded += 1;
        }
    }
    assert_eq!(succeeded, 60);
    assert_eq!(store.count_messages(r.id).await.expect("count"), 60);
    let events = store.events_after(before, 1000).await.expect("events");
    assert_eq!(events.len(), 60, "refused jobs left no events");
}

pub async fn batched_writes_store_every_row(store: &Store) {
    let author = user("batcher");
    let r = setup(store, &[&author]).await;
    let before = store.last_event_seq().await.expect("seq");
    // More rows than fit one statement, with keys, a thread reply and a mention.
    let head = message(r.id, author.id, "head", None);
    let head_id = head.id;
    let mut batch = vec![head];
    for i in 0..150 {
        let mut m = message(r.id, author.id, &format!("batched {i}"), None);
        m.external_ref = Some(format!("$event{i}"));
        if i == 7 {
            m.parent_id = Some(head_id);
        }
        if i == 9 {
            m.mentions = vec![MessageMention {
                screen_name: "batcher".into(),
                user_id: Some(author.id),
                all: false,
            }];
        }
        batch.push(m);
    }
    let ids: Vec<Id> = batch.iter().map(|m| m.id).collect();
    let events: Vec<Event> = batch
        .iter()
        .map(|m| Event::MessageCreated {
            room_id: m.room_id,
            message_id: m.id,
        })
        .collect();
    let room_id = r.id;
    let (seqs, taken, known) = store
        .write(move |tx| {
            Box::pin(async move {
                let seqs = tx.insert_messages(&batch).await?;
                tx.append_all(&Origin("matrix".into()), &events).await?;
                let taken = tx
                    .taken_external_refs(&["$event3", "$event149", "$nothing"])
                    .await?;
                tx.upsert_virtual_user("matrix", "@a:hs", Some("A"), None)
                    .await?;
                let known = tx.virtual_users("matrix", &["@a:hs", "@b:hs"]).await?;
                Ok((seqs, taken, known))
            })
        })
        .await
        .expect("batch");
    assert_eq!(seqs.len(), 151);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs follow the order given: {seqs:?}"
    );
    assert_eq!(store.count_messages(room_id).await.expect("count"), 151);
    let stored = store.message(ids[8]).await.expect("read").expect("stored");
    assert_eq!(stored.message.parent_id, Some(head_id));
    assert_eq!(stored.message.seq, seqs[8]);
    let head = store.message(head_id).await.expect("read").expect("stored");
    assert_eq!(head.message.thread_count, 1);
    let expected: std::collections::HashSet<String> =
        ["$event3".to_string(), "$event149".to_string()].into();
    assert_eq!(taken, expected);
    assert_eq!(known.len(), 1);
    assert_eq!(known["@a:hs"].display_name, "A");
    let logged = store.events_after(before, 1000).await.expect("events");
    assert_eq!(logged.len(), 151);
    assert!(logged.iter().all(|e| e.origin.0 == "matrix"));
    let mut committed = store.committed();
    let last = logged.last().expect("some").seq;
    if *committed.borrow_and_update() < last {
        committed.changed().await.ok();
    }
    assert_eq!(
        *committed.borrow(),
        last,
        "the batch moved the committed watermark"
    );
}

pub async fn messages_and_their_log_entries_are_written_together(store: &Store) {
    let author = user("logger");
    let r = setup(store, &[&author]).await;
    let before = store.last_event_seq().await.expect("seq");
    let head = message(r.id, author.id, "head", None);
    let mut reply = message(r.id, author.id, "reply", Some(head.id));
    reply.external_ref = Some("$logged".into());
    let batch = vec![head.clone(), reply.clone()];
    let events = vec![
        (
            Origin::local(),
            Event::MessageCreated {
                room_id: r.id,
                message_id: head.id,
            },
        ),
        (
            Origin("matrix".into()),
            Event::MessageCreated {
                room_id: r.id,
                message_id: reply.id,
            },
        ),
        (
            Origin("matrix".into()),
            Event::ThreadUpdated {
                room_id: r.id,
                message_id: head.id,
            },
        ),
    ];
    let seqs = store
        .write(move |tx| Box::pin(async move { tx.insert_messages_logged(&batch, &events).await }))
        .await
        .expect("written");
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] < seqs[1]);
    let stored = store
        .message(reply.id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.message.seq, seqs[1]);
    let head_view = store.message(head.id).await.expect("read").expect("stored");
    assert_eq!(head_view.message.thread_count, 1);
    let logged = store.events_after(before, 100).await.expect("events");
    assert_eq!(logged.len(), 3);
    assert_eq!(logged[0].origin, Origin::local());
    assert!(logged[1..].iter().all(|e| e.origin.0 == "matrix"));
    let mut committed = store.committed();
    let last = logged.last().expect("some").seq;
    if *committed.borrow_and_update() < last {
        committed.changed().await.ok();
    }
    assert_eq!(*committed.borrow(), last);
    // The same key again: a conflict, and nothing of it stays.
    let mut again = message(r.id, author.id, "again", None);
    again.external_ref = Some("$logged".into());
    let again_event = vec![(
        Origin::local(),
        Event::MessageCreated {
            room_id: r.id,
            message_id: again.id,
        },
    )];
    let result = store
        .write(move |tx| {
            Box::pin(async move { tx.insert_messages_logged(&[again], &again_event).await })
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::Conflict("message"))),
        "got {result:?}"
    );
    assert_eq!(
        store.events_after(before, 100).await.expect("events").len(),
        3
    );
    assert_eq!(store.count_messages(r.id).await.expect("count"), 2);
}

pub async fn replayable_jobs_that_fail_leave_their_neighbours(store: &Store) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let author = user("replayer");
    let r = setup(store, &[&author]).await;
    let mut taken = message(r.id, author.id, "holds the key", None);
    taken.external_ref = Some("$taken".into());
    store
        .write(move |tx| Box::pin(async move { tx.insert_message(&taken).await.map(|_| ()) }))
        .await
        .expect("first");
    let before = store.last_event_seq().await.expect("seq");
    // Keep the writer busy so that all the jobs below queue up and share the next batch.
    let blocker = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(|_tx| {
                    Box::pin(async {
                        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                        Ok(())
                    })
                })
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..90 {
        let store = store.clone();
        let runs = runs.clone();
        let mut m = message(r.id, author.id, &format!("replayable {i}"), None);
        if i % 3 == 2 {
            // A database error: on PostgreSQL it breaks the whole transaction.
            m.external_ref = Some("$taken".into());
        }
        tasks.push(tokio::spawn(async move {
            let job = replayable(move |tx| {
                let m = m.clone();
                let runs = runs.clone();
                Box::pin(async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tx.insert_message(&m).await?;
                    tx.append(
                        &Origin::local(),
                        &Event::MessageCreated {
                            room_id: m.room_id,
                            message_id: m.id,
                        },
                    )
                    .await?;
                    if i % 5 == 4 && i % 3 != 2 {
                        // A refusal after writing: its writes must go, its neighbours' stay.
                        return Err(StoreError::Rejected("refused on purpose".into()));
                    }
                    Ok(i)
                })
            });
            if i % 10 == 0 {
                // One of its own among the replayable ones.
                store.write(job).await
            } else {
                store.write_replayable(job).await
            }
        }));
    }
    blocker.await.expect("blocker task").expect("blocker");
    let mut succeeded = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.expect("task") {
            Ok(value) => {
                assert_eq!(value, i, "each caller hears its own job's answer");
                succeeded.push(i);
            }
            Err(e) if i % 3 == 2 => {
                assert!(matches!(e, StoreError::Conflict(_)), "job {i}: {e}")
            }
            Err(e) if i % 5 == 4 => {
                assert!(matches!(e, StoreError::Rejected(_)), "job {i}: {e}")
            }
            Err(e) => panic!("job {i} should have been written: {e}"),
        }
    }
    let expected: Vec<usize> = (0..90).filter(|i| i % 3 != 2 && i % 5 != 4).collect();
    assert_eq!(succeeded, expected);
    assert_eq!(
        store.count_messages(r.id).await.expect("count"),
        expected.len() as i64 + 1
    );
    let events = store.events_after(before, 1000).await.expect("events");
    assert_eq!(events.len(), expected.len(), "failed jobs left no events");
    assert!(
        runs.load(Ordering::SeqCst) > 90,
        "jobs sharing a savepoint with a failed one ran again"
    );
}

/// Pins down a closure's type as a replayable write job.
fn replayable<F>(job: F) -> F
where
    F: for<'t> Fn(
        &'t mut weft_store::WriteTx,
    ) -> weft_store::BoxFuture<'t, weft_store::Result<usize>>,
{
    job
}

pub async fn followers_can_skip_an_origin_unread(store: &Store) {
    let author = user("skipper");
    let r = setup(store, &[&author]).await;
    let before = store.last_event_seq().await.expect("seq");
    let room_id = r.id;
    store
        .write(move |tx| {
            Box::pin(async move {
                for origin in ["matrix", "local", "matrix", "local", "matrix"] {
                    let event = Event::RoomUpdated { room_id };
                    let origin = if origin == "local" {
                        Origin::local()
                    } else {
                        Origin(origin.into())
                    };
                    tx.append(&origin, &event).await?;
                }
                Ok(())
            })
        })
        .await
        .expect("events");
    let all = store.events_after(before, 100).await.expect("all");
    assert_eq!(all.len(), 5);
    let (kept, last) = store
        .events_after_except(before, 100, "matrix")
        .await
        .expect("except");
    assert_eq!(
        last,
        Some(all[4].seq),
        "the skipped entries still count as looked at"
    );
    assert_eq!(
        kept.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![all[1].seq, all[3].seq]
    );
    assert!(kept.iter().all(|e| e.origin != Origin("matrix".into())));
    let (none, nothing) = store
        .events_after_except(all[4].seq, 100, "matrix")
        .await
        .expect("after the end");
    assert!(none.is_empty());
    assert_eq!(nothing, None);
    let (limited, upto) = store
        .events_after_except(before, 3, "matrix")
        .await
        .expect("limited");
    assert_eq!(limited.len(), 1);
    assert_eq!(upto, Some(all[2].seq));
}

pub async fn virtual_bans_round_trip(store: &Store) {
    let a = user("moderator");
    let r = setup(store, &[&a]).await;
    let (room_id, by) = (r.id, a.id);
    let (spam, other) = store
        .write(move |tx| {
            Box::pin(async move {
                let (spam, _) = tx
                    .upsert_virtual_user("matrix", "@spam:hs", None, None)
                    .await?;
                let (other, _) = tx
                    .upsert_virtual_user("matrix", "@other:hs", None, None)
                    .await?;
                assert!(
                    tx.insert_virtual_ban(room_id, spam.id, Some(by), Some("spam"))
                        .await?
                );
                assert!(
                    !tx.insert_virtual_ban(room_id, spam.id, Some(by), None)
                        .await?,
                    "banned once"
                );
                Ok((spam, other))
            })
        })
        .await
        .expect("ban");
    assert!(
        store
            .is_virtual_banned(room_id, "matrix", "@spam:hs")
            .await
            .expect("check")
    );
    assert!(
        !store
            .is_virtual_banned(room_id, "matrix", "@other:hs")
            .await
            .expect("check")
    );
    let found = store
        .write(move |tx| {
            Box::pin(async move {
                tx.virtual_bans_among(&[
                    (room_id, "matrix", "@other:hs"),
                    (room_id, "matrix", "@spam:hs"),
                    (Id::generate(), "matrix", "@spam:hs"),
                ])
                .await
            })
        })
        .await
        .expect("bans among");
    assert_eq!(
        found,
        vec![(room_id, "matrix".to_string(), "@spam:hs".to_string())]
    );
    let bans = store.bans(room_id).await.expect("list");
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].banned_by, Some(by));
    assert_eq!(bans[0].reason.as_deref(), Some("spam"));
    assert!(matches!(&bans[0].who, weft_core::Profile::Virtual(v) if v.id == spam.id));
    let (spam_id, other_id) = (spam.id, other.id);
    let lifted = store
        .write(move |tx| {
            Box::pin(async move {
                Ok((
                    tx.delete_virtual_ban(room_id, spam_id).await?,
                    tx.delete_virtual_ban(room_id, other_id).await?,
                ))
            })
        })
        .await
        .expect("unban");
    assert_eq!(lifted, (true, false));
    assert!(
        !store
            .is_virtual_banned(room_id, "matrix", "@spam:hs")
            .await
            .expect("check"),
        "the cache forgets a lifted ban at once"
    );
}
