//! The bridge's tables on both databases: every test runs on SQLite and on PostgreSQL (from
//! `WEFT_TEST_POSTGRES_URL`, as the store's conformance suite).

use weft_core::{Author, Event, Id, Origin, Room, RoomKind, User};
use weft_store::{NewMessage, Store, StoreError};

use super::*;

/// Declares each case once per database.
macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, guard) = weft_store::testing::sqlite().await;
                    super::$case(&store).await;
                    guard.finish(store).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, guard) = weft_store::testing::postgres().await;
                    super::$case(&store).await;
                    guard.finish(store).await;
                }
            )*
        }
    };
}

on_both!(
    mappings_round_trip,
    every_kind_of_carried_thing_reads_back,
    messages_from_matrix_are_found_by_their_external_key,
    fenced_writes_need_the_current_lease,
    devices_are_recorded,
    failures_are_recorded_once_per_key,
    avatars_keep_their_bytes,
    spaces_follow_the_open_bridged_rooms,
);

async fn tables(store: &Store) -> MatrixTables {
    MatrixTables::open(store.clone())
        .await
        .expect("the bridge's migrations run")
}

/// A weft room with one member, written through the store as the chat would.
async fn room_with(store: &Store, name: &str) -> (Room, User) {
    let user = User {
        id: Id::generate(),
        username: name.to_string(),
        display_name: name.to_string(),
        avatar_url: None,
        site_admin: false,
        created_at: 1,
    };
    let room = Room {
        id: Id::generate(),
        group_id: None,
        uri: Some(format!("c/{name}")),
        name: name.to_string(),
        topic: String::new(),
        kind: RoomKind::Public,
        avatar_url: None,
        noindex: false,
        member_count: 0,
        created_at: 1,
    };
    let (r, u) = (room.clone(), user.clone());
    store
        .write(move |tx| {
            Box::pin(async move {
                tx.insert_room(&r, None).await?;
                tx.insert_user(&u, None).await
            })
        })
        .await
        .expect("setup");
    (room, user)
}

fn message(room: &Room, user: &User, external_ref: Option<&str>) -> NewMessage {
    NewMessage {
        id: Id::generate(),
        room_id: room.id,
        author: Author::User(user.id),
        text: "hello".into(),
        html: "<p>hello</p>".into(),
        status: false,
        parent_id: None,
        sent: weft_core::now_millis(),
        mentions: Vec::new(),
        issues: Vec::new(),
        urls: Vec::new(),
        attachments: Vec::new(),
        external_ref: external_ref.map(str::to_string),
    }
}

async fn mappings_round_trip(store: &Store) {
    let tables = tables(store).await;
    let room_id = Id::generate();
    let mapped = MatrixRoom {
        room_id,
        matrix_room_id: "!abc:hs".into(),
        alias: "#c_r:hs".into(),
        open: true,
    };
    let (m1, m2) = (
        mapped.clone(),
        MatrixRoom {
            matrix_room_id: "!other:hs".into(),
            ..mapped.clone()
        },
    );
    let lease = tables.take_lease("matrix-outbound").await.expect("lease");
    let fence = lease.fence().clone();
    let message = Carried::Message(Id::generate());
    let sent = message.clone();
    let inserted = tables
        .write(move |tx| {
            Box::pin(async move {
                let first = tx.insert_matrix_room(&m1).await?;
                let second = tx.insert_matrix_room(&m2).await?;
                let new = tx
                    .insert_outbound_event(&fence, "$e:hs", "!abc:hs", &sent)
                    .await?;
                let dup = tx
                    .insert_outbound_event(&fence, "$e:hs", "!abc:hs", &sent)
                    .await?;
                let txn_new = tx.insert_matrix_transaction("t1").await?;
                let txn_again = tx.insert_matrix_transaction("t1").await?;
                tx.set_matrix_cursor(7, &fence).await?;
                tx.set_matrix_cursor(9, &fence).await?;
                tx.insert_matrix_member("!abc:hs", "@p:hs").await?;
                tx.insert_matrix_member("!abc:hs", "@p:hs").await?;
                Ok((first, second, new, dup, txn_new, txn_again))
            })
        })
        .await
        .expect("mappings");
    assert_eq!(
        inserted,
        (true, false, true, false, true, false),
        "one mapping per room, event and transaction"
    );
    assert_eq!(
        tables.room(room_id).await.expect("room"),
        Some(mapped.clone())
    );
    tables
        .write(move |tx| Box::pin(async move { tx.set_matrix_room_open(room_id, false).await }))
        .await
        .expect("close");
    assert_eq!(
        tables.room(room_id).await.expect("room"),
        Some(MatrixRoom {
            open: false,
            ..mapped.clone()
        }),
        "a closed room reads back closed"
    );
    assert_eq!(
        tables.room_for_matrix("!abc:hs").await.expect("lookup"),
        Some(room_id)
    );
    assert_eq!(
        tables.room_for_matrix("!other:hs").await.expect("lookup"),
        None
    );
    assert_eq!(
        tables.carried_by("$e:hs").await.expect("carried"),
        Some(message.clone())
    );
    assert_eq!(
        tables
            .event_for(&message)
            .await
            .expect("event")
            .map(|(e, r)| (e.to_string(), r)),
        Some(("$e:hs".into(), "!abc:hs".into()))
    );
    assert!(tables.transaction_seen("t1").await.expect("seen"));
    assert!(!tables.transaction_seen("t2").await.expect("seen"));
    assert_eq!(tables.cursor().await.expect("cursor"), Some(9));
    assert!(tables.is_member("!abc:hs", "@p:hs").await.expect("member"));
    tables
        .write(|tx| Box::pin(async move { tx.delete_matrix_member("!abc:hs", "@p:hs").await }))
        .await
        .expect("leave");
    assert!(!tables.is_member("!abc:hs", "@p:hs").await.expect("member"));
}

/// Each kind of mapping reads back as what was written, in both directions, including
/// reaction keys with spaces (any text a Matrix client sent).
async fn every_kind_of_carried_thing_reads_back(store: &Store) {
    let tables = tables(store).await;
    let lease = tables.take_lease("matrix-outbound").await.expect("lease");
    let fence = lease.fence().clone();
    let (message, reactor) = (Id::generate(), Id::generate());
    let outbound = vec![
        ("$out-edit:hs", Carried::Edit(message)),
        (
            "$out-reaction:hs",
            Carried::Reaction {
                message,
                key: "👍".into(),
                by: Some(reactor),
            },
        ),
    ];
    let inbound = vec![
        ("$in-edit:hs", Carried::Edit(message)),
        (
            "$in-reaction:hs",
            Carried::Reaction {
                message,
                key: "two words".into(),
                by: None,
            },
        ),
    ];
    let (o, i) = (outbound.clone(), inbound.clone());
    tables
        .write(move |tx| {
            Box::pin(async move {
                for (event, carried) in &o {
                    tx.insert_outbound_event(&fence, event, "!r:hs", carried)
                        .await?;
                }
                for (event, carried) in &i {
                    tx.insert_inbound_event(event, "!r:hs", carried).await?;
                }
                Ok(())
            })
        })
        .await
        .expect("mappings");
    for (event, carried) in outbound.iter().chain(&inbound) {
        assert_eq!(
            tables.carried_by(event).await.expect("carried").as_ref(),
            Some(carried),
            "{event}"
        );
    }
    assert_eq!(
        tables
            .event_for(&outbound[1].1)
            .await
            .expect("event")
            .map(|(e, r)| (e.to_string(), r)),
        Some(("$out-reaction:hs".into(), "!r:hs".into())),
        "the reaction weft sent is found by message, key and reactor"
    );
    assert_eq!(
        tables
            .event_for(&Carried::Reaction {
                message,
                key: "👍".into(),
                by: Some(Id::generate()),
            })
            .await
            .expect("event"),
        None,
        "someone else's reaction with the same key is another event"
    );
    assert_eq!(outbound[0].1.message(), Some(message));
    assert_eq!(outbound[1].1.message(), None);
    assert_eq!(
        tables.carried_by("$unknown:hs").await.expect("carried"),
        None
    );
}

/// A message that came from Matrix has no mapping row: its external key is its event id, and
/// the look-ups both ways find it there. Other external keys are not event ids.
async fn messages_from_matrix_are_found_by_their_external_key(store: &Store) {
    let tables = tables(store).await;
    let (room, user) = room_with(store, "keyed").await;
    let mapped = MatrixRoom {
        room_id: room.id,
        matrix_room_id: "!keyed:hs".into(),
        alias: "#c_keyed:hs".into(),
        open: true,
    };
    let from_matrix = message(&room, &user, Some("$inbound:hs"));
    let keyed = message(&room, &user, Some("bot-retry-1"));
    let (inbound_id, keyed_id) = (from_matrix.id, keyed.id);
    tables
        .write(move |tx| {
            Box::pin(async move {
                tx.insert_matrix_room(&mapped).await?;
                tx.insert_messages(&[from_matrix, keyed]).await?;
                tx.append(
                    &Origin(crate::VIRTUAL_KIND.into()),
                    &Event::MessageCreated {
                        room_id: mapped.room_id,
                        message_id: inbound_id,
                    },
                )
                .await
            })
        })
        .await
        .expect("messages");
    assert_eq!(
        tables.carried_by("$inbound:hs").await.expect("carried"),
        Some(Carried::Message(inbound_id))
    );
    assert_eq!(
        tables
            .event_for(&Carried::Message(inbound_id))
            .await
            .expect("event")
            .map(|(e, r)| (e.to_string(), r)),
        Some(("$inbound:hs".into(), "!keyed:hs".into()))
    );
    assert_eq!(
        tables
            .event_for(&Carried::Edit(inbound_id))
            .await
            .expect("event"),
        None,
        "an edit is never found through a message's key"
    );
    assert_eq!(
        tables
            .event_for(&Carried::Message(keyed_id))
            .await
            .expect("event"),
        None,
        "a bot's retry key is not a Matrix event"
    );
}

/// A fenced cursor write.
async fn cursor_write(tables: &MatrixTables, seq: i64, fence: &Fence) -> Result<()> {
    let fence = fence.clone();
    tables
        .write(move |tx| Box::pin(async move { tx.set_matrix_cursor(seq, &fence).await }))
        .await
}

/// A fenced mapping write; true if it recorded a new mapping.
async fn mapping_write(tables: &MatrixTables, event_id: &str, fence: &Fence) -> Result<bool> {
    let (e, fence) = (event_id.to_string(), fence.clone());
    tables
        .write(move |tx| {
            Box::pin(async move {
                tx.insert_outbound_event(&fence, &e, "!r:hs", &Carried::Edit(Id::generate()))
                    .await
            })
        })
        .await
}

/// The outbound sender's cursor and mapping writes carry their fence in the statement: once
/// someone took the lease after it, an earlier holder's writes are refused and write nothing.
async fn fenced_writes_need_the_current_lease(store: &Store) {
    let tables = tables(store).await;
    let first = tables.take_lease("matrix-outbound").await.expect("lease");
    let old = first.fence().clone();
    cursor_write(&tables, 5, &old)
        .await
        .expect("the holder moves the cursor");
    assert!(
        mapping_write(&tables, "$a:hs", &old)
            .await
            .expect("mapping")
    );
    assert!(
        !mapping_write(&tables, "$a:hs", &old)
            .await
            .expect("known mapping"),
        "a known mapping is not a lost lease"
    );
    drop(first);
    let second = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tables.take_lease("matrix-outbound"),
    )
    .await
    .expect("the lease is free again")
    .expect("lease");

    let refused = cursor_write(&tables, 99, &old).await;
    assert!(
        matches!(&refused, Err(StoreError::LeaseLost { name, epoch }) if name == "matrix-outbound" && *epoch == old.epoch()),
        "the earlier holder's cursor write is refused: {refused:?}"
    );
    assert_eq!(tables.cursor().await.expect("cursor"), Some(5));
    let refused = mapping_write(&tables, "$b:hs", &old).await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost { .. })),
        "the earlier holder's mapping write is refused: {refused:?}"
    );
    assert_eq!(tables.carried_by("$b:hs").await.expect("carried"), None);
    let refused = mapping_write(&tables, "$a:hs", &old).await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost { .. })),
        "even when the mapping exists, a lost lease is reported: {refused:?}"
    );

    let new = second.fence().clone();
    cursor_write(&tables, 7, &new)
        .await
        .expect("the new holder moves the cursor");
    assert_eq!(tables.cursor().await.expect("cursor"), Some(7));
    assert!(
        mapping_write(&tables, "$b:hs", &new)
            .await
            .expect("mapping")
    );
}

/// The bridge remembers a device per Matrix user; the bot gets a row of its own.
async fn devices_are_recorded(store: &Store) {
    let tables = tables(store).await;
    assert_eq!(tables.device("@p:hs").await.expect("device"), None);
    tables
        .write(|tx| {
            Box::pin(async move {
                tx.upsert_matrix_puppet("@p:hs", Some("P")).await?;
                tx.set_matrix_device("@bot:hs", "WEFT").await
            })
        })
        .await
        .expect("rows");
    assert_eq!(
        tables.device("@p:hs").await.expect("device"),
        None,
        "a puppet registered before devices has none"
    );
    assert_eq!(
        tables.device("@bot:hs").await.expect("device"),
        Some("WEFT".into())
    );
    tables
        .write(|tx| Box::pin(async move { tx.set_matrix_device("@p:hs", "WEFT").await }))
        .await
        .expect("device");
    assert_eq!(
        tables.device("@p:hs").await.expect("device"),
        Some("WEFT".into())
    );
    assert_eq!(
        tables.puppet("@p:hs").await.expect("puppet"),
        Some(Some("P".into())),
        "recording a device keeps the display name"
    );
    assert_eq!(tables.puppet("@bot:hs").await.expect("bot"), Some(None));
    assert_eq!(tables.puppet("@nobody:hs").await.expect("nobody"), None);
}

/// A failure is recorded once per key, however often it is met again (a replayed
/// transaction, a resend after a crash).
async fn failures_are_recorded_once_per_key(store: &Store) {
    let tables = tables(store).await;
    let room = Id::generate();
    for _ in 0..3 {
        tables
            .write(move |tx| {
                Box::pin(async move {
                    tx.insert_matrix_failure(0, Some(room), "$bad:hs", "inbound $bad:hs: no")
                        .await?;
                    tx.insert_matrix_failure(12, None, "log:12", "could not send")
                        .await
                })
            })
            .await
            .expect("failures");
    }
    assert_eq!(tables.failure_count().await.expect("count"), 2);
    let listed = tables.failures(10).await.expect("list");
    assert_eq!(listed.len(), 2);
    let inbound = listed
        .iter()
        .find(|f| f.event_seq == 0)
        .expect("the inbound failure");
    assert_eq!(inbound.room_id, Some(room));
    assert!(inbound.error.starts_with("inbound $bad:hs"));
}

/// Pictures are kept byte for byte (a blob on SQLite, `bytea` on PostgreSQL); the first one
/// fetched for an mxc URI stays.
async fn avatars_keep_their_bytes(store: &Store) {
    let tables = tables(store).await;
    let picture: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    assert!(tables.avatar("mxc://hs/a").await.expect("read").is_none());
    tables
        .insert_avatar("mxc://hs/a", "image/png", picture.clone())
        .await
        .expect("kept");
    tables
        .insert_avatar("mxc://hs/a", "image/gif", vec![1])
        .await
        .expect("a second fetch is fine");
    assert_eq!(
        tables.avatar("mxc://hs/a").await.expect("read"),
        Some(("image/png".to_string(), picture))
    );
}

/// What a Space should list follows the bridged rooms' open state, and what it lists is
/// recorded: an open room not listed is due, a closed one still listed is due to go.
async fn spaces_follow_the_open_bridged_rooms(store: &Store) {
    let tables = tables(store).await;
    let (room, _) = room_with(store, "spacey").await;
    let mapped = MatrixRoom {
        room_id: room.id,
        matrix_room_id: "!spacey:hs".into(),
        alias: "#c_spacey:hs".into(),
        open: true,
    };
    tables.insert_room(mapped).await.expect("bridged");
    let community = Id::generate();
    tables
        .insert_space(community, "!space:hs", "#c:hs")
        .await
        .expect("space");
    tables
        .insert_space(community, "!other:hs", "#c:hs")
        .await
        .expect("a racing instance's Space");
    assert_eq!(
        tables.space(community).await.expect("read"),
        Some(("!space:hs".to_string(), "#c:hs".to_string())),
        "the first Space recorded stands"
    );
    let due = tables.space_changes_due().await.expect("due");
    assert_eq!(due, (vec![(room.id, "!spacey:hs".to_string())], vec![]));
    tables
        .set_space_child("!spacey:hs", Some("!space:hs"))
        .await
        .expect("listed");
    assert_eq!(
        tables.space_changes_due().await.expect("due"),
        (vec![], vec![])
    );
    let id = room.id;
    tables
        .write(move |tx| Box::pin(async move { tx.set_matrix_room_open(id, false).await }))
        .await
        .expect("closed");
    let due = tables.space_changes_due().await.expect("due");
    assert_eq!(
        due,
        (
            vec![],
            vec![("!spacey:hs".to_string(), "!space:hs".to_string())]
        )
    );
    tables
        .set_space_child("!spacey:hs", None)
        .await
        .expect("unlisted");
    assert_eq!(
        tables.space_changes_due().await.expect("due"),
        (vec![], vec![])
    );
}
