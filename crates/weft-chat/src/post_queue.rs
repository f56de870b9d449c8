//! Posts written in groups: the posts that arrive while earlier ones are being written go to
//! the store together, as one write job with multi-row statements, instead of one job each.
//!
//! The store's single writer already commits concurrent jobs together, but it runs them one
//! after another, and each job's statements are database round trips (over TCP to
//! PostgreSQL, or hand-overs to SQLite's thread). Grouping turns a hundred posts' hundred
//! round trips into a handful.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use weft_core::MessageView;
use weft_store::Store;

use crate::Chat;
use crate::messages::PreparedPost;

/// Posts written in one job at most. On PostgreSQL up to this many posts and their log
/// entries fit one statement.
const MAX_GROUP: usize = 64;

/// Groups being written at once. While they are, new posts wait and form the next group; a
/// few in flight keep the writer busy without making anyone wait for a whole commit first.
const IN_FLIGHT: usize = 4;

type Answer = weft_store::Result<Option<MessageView>>;

struct Pending {
    post: PreparedPost,
    reply: oneshot::Sender<Answer>,
}

/// The queue in front of the store for new posts.
pub(crate) struct PostQueue {
    queue: mpsc::Sender<Pending>,
}

impl PostQueue {
    /// Starts the task that groups and writes posts.
    pub(crate) fn start(store: Store) -> PostQueue {
        let (queue, mut incoming) = mpsc::channel::<Pending>(4096);
        tokio::spawn(async move {
            let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut group = Vec::with_capacity(MAX_GROUP);
            loop {
                // Wait for room first: posts arriving meanwhile join the next group.
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                if incoming.recv_many(&mut group, MAX_GROUP).await == 0 {
                    return;
                }
                let store = store.clone();
                let posts = std::mem::take(&mut group);
                tokio::spawn(async move {
                    write_group(&store, posts).await;
                    drop(permit);
                });
            }
        });
        PostQueue { queue }
    }

    /// Writes one post (with the others waiting at the same time) and answers as
    /// [`Chat::write_post`] does.
    pub(crate) async fn write(&self, post: PreparedPost) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { post, reply })
            .await
            .map_err(|_| weft_store::StoreError::Closed)?;
        answer.await.map_err(|_| weft_store::StoreError::Closed)?
    }
}

/// Writes a group in one job. If that fails, one post spoiled it (its room went away, its
/// key was taken meanwhile): each is then written on its own, so the others still land and
/// the culprit hears its own error.
async fn write_group(store: &Store, group: Vec<Pending>) {
    if group.len() > 1 {
        let posts: Vec<PreparedPost> = group.iter().map(|p| p.post.clone()).collect();
        let written = store
            .write_replayable(move |tx| Box::pin(Chat::write_posts(tx, posts.clone())))
            .await;
        if let Ok(views) = written {
            for (pending, view) in group.into_iter().zip(views) {
                let _ = pending.reply.send(Ok(view));
            }
            return;
        }
    }
    let alone = group.into_iter().map(|pending| async move {
        let post = pending.post;
        let written = store
            .write_replayable(move |tx| Box::pin(Chat::write_post(tx, post.clone())))
            .await;
        let _ = pending.reply.send(written);
    });
    futures_util::future::join_all(alone).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use weft_core::RoomKind;

    use crate::{Actor, Chat, ChatConfig, NewPost, NewRoom, NewUser};

    /// A group with one post that can no longer be written (its room was deleted after the
    /// post was checked): the others are still written, and only that post fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_bad_post_does_not_spoil_its_group() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("weft.db").display());
        let store = weft_store::Store::open(&url).await.expect("store");
        let files =
            object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("file store");
        let chat = Chat::new(store, Arc::new(files), ChatConfig::default());
        let system = Actor::system();
        let alice = chat
            .create_user(NewUser {
                username: "alice".into(),
                display_name: None,
                password: None,
                site_admin: true,
            })
            .await
            .expect("user");
        let group = chat
            .create_group(&system, "acme", None)
            .await
            .expect("group");
        let mut rooms = Vec::new();
        for name in ["kept", "doomed"] {
            let room = chat
                .create_room(
                    &system,
                    NewRoom {
                        group_id: group.id,
                        name: name.into(),
                        topic: String::new(),
                        kind: RoomKind::Public,
                    },
                )
                .await
                .expect("room");
            rooms.push(room.id);
        }
        let actor = Actor::user(alice);
        chat.join(&actor, rooms[0]).await.expect("join");
        chat.join(&actor, rooms[1]).await.expect("join");
        let mut prepared = Vec::new();
        for i in 0..12 {
            let room = rooms[usize::from(i == 5)];
            let post = NewPost {
                text: format!("post {i}"),
                ..NewPost::default()
            };
            prepared.push(
                chat.prepare_post(&actor, room, post)
                    .await
                    .expect("prepared"),
            );
        }
        chat.delete_room(&actor, rooms[1]).await.expect("delete");
        let writes = prepared.into_iter().map(|p| chat.inner.posts.write(p));
        let answers = futures_util::future::join_all(writes).await;
        for (i, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok(Some(view)) => {
                    assert_ne!(i, 5, "the post to the deleted room was written");
                    assert_eq!(view.message.text, format!("post {i}"));
                }
                Ok(None) => panic!("post {i} was taken for a duplicate"),
                Err(e) => assert_eq!(i, 5, "post {i} failed: {e}"),
            }
        }
        assert_eq!(
            chat.store().count_messages(rooms[0]).await.expect("count"),
            11
        );
    }
}
