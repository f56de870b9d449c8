//! The benchmark's data: users and tokens, a room to post in, and the big room (a million
//! messages, 20,000 members) written straight into the store.

use anyhow::Context;
use weft_chat::{Actor, Chat, NewRoom, NewUser};
use weft_core::{Author, Id, Membership, Role, RoomKind, User};
use weft_store::NewMessage;

use crate::config::Config;

use super::{BenchArgs, Fixture};

/// Users, tokens, a room for posting, and the big room (seeded straight into the store).
pub(super) async fn seed(args: &BenchArgs, config: &Config) -> anyhow::Result<Fixture> {
    let (store, chat): (weft_store::Store, Chat) = crate::open_parts(config).await?;
    let system = Actor::system();
    let group = chat
        .create_group(&system, &format!("bench{}", Id::generate()), None)
        .await?;
    let room = chat
        .create_room(
            &system,
            NewRoom {
                group_id: group.id,
                name: "load".into(),
                topic: String::new(),
                kind: RoomKind::Public,
            },
        )
        .await?;
    let big = chat
        .create_room(
            &system,
            NewRoom {
                group_id: group.id,
                name: "big".into(),
                topic: String::new(),
                kind: RoomKind::Public,
            },
        )
        .await?;
    let mut tokens = Vec::new();
    let posters = args.concurrency.max(1);
    for i in 0..posters {
        let user = chat
            .create_user(NewUser {
                username: format!("poster{i}-{}", Id::generate()),
                display_name: None,
                password: None,
                site_admin: false,
            })
            .await?;
        let actor = Actor::user(user.clone());
        chat.join(&actor, room.id).await?;
        chat.join(&actor, big.id).await?;
        tokens.push(chat.create_token(user.id, "bench", false).await?.1);
    }
    // The big room: members and messages written in large transactions.
    let members_per_job = 2_000;
    let mut created = 0;
    while created < args.seed_members {
        let n = members_per_job.min(args.seed_members - created);
        let room_id = big.id;
        store
            .write(move |tx| {
                Box::pin(async move {
                    for _ in 0..n {
                        let id = Id::generate();
                        let user = User {
                            id,
                            username: format!("m{id}"),
                            display_name: format!("Member {id}"),
                            avatar_url: None,
                            site_admin: false,
                            created_at: weft_core::now_millis(),
                        };
                        tx.insert_user(&user, None).await?;
                        let m = Membership {
                            room_id,
                            user_id: id,
                            role: Role::Member,
                            last_read_seq: 0,
                            favourite: false,
                            joined_at: 0,
                        };
                        tx.insert_membership(&m).await?;
                    }
                    Ok(())
                })
            })
            .await?;
        created += n;
    }
    let author = chat
        .views()
        .members(big.id, "", 1, 0)
        .await?
        .first()
        .map(|(u, _)| u.id)
        .context("no member")?;
    let per_job = 5_000;
    let mut written = 0;
    while written < args.seed_messages {
        let n = per_job.min(args.seed_messages - written);
        let room_id = big.id;
        let base = written;
        store
            .write(move |tx| {
                Box::pin(async move {
                    for i in 0..n {
                        let text = format!(
                            "seeded message number {} with a little **markdown**",
                            base + i
                        );
                        let m = NewMessage {
                            id: Id::generate(),
                            room_id,
                            author: Author::User(author),
                            html: format!("<p>{text}</p>"),
                            text,
                            status: false,
                            parent_id: None,
                            sent: weft_core::now_millis(),
                            mentions: Vec::new(),
                            issues: Vec::new(),
                            urls: Vec::new(),
                            attachments: Vec::new(),
                            external_ref: None,
                        };
                        tx.insert_message(&m).await?;
                    }
                    Ok(())
                })
            })
            .await?;
        written += n;
    }
    // A server that grew to this size has statistics; a bulk load has none until analysed.
    chat.refresh_statistics().await?;
    chat.close().await;
    Ok(Fixture {
        room_id: room.id,
        big_room_id: big.id,
        big_room_uri: big.uri.clone().context("the big room has no URI")?,
        tokens,
    })
}
