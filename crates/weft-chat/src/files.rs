//! File uploads: bytes in the object store, a record and a message in the database.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use weft_core::{Attachment, Author, Id, MessageView, StoredFile};

use crate::{Actor, Chat, ChatError, NewPost, Result};

/// A file someone uploads.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Original file name.
    pub name: String,
    /// MIME type as sent.
    pub content_type: String,
    /// The content.
    pub bytes: Bytes,
}

/// A stored file and its content.
#[derive(Debug, Clone)]
pub struct Download {
    /// The record.
    pub file: StoredFile,
    /// The content.
    pub bytes: Bytes,
}

fn object_path(id: Id) -> Path {
    Path::from(format!("files/{id}"))
}

/// The path a stored file is served at.
pub fn file_url(id: Id, name: &str) -> String {
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/files/{id}/{encoded}")
}

impl Chat {
    /// Stores an upload and posts a message that carries it (with `text` as its caption).
    pub async fn upload(
        &self,
        actor: &Actor,
        room_id: Id,
        upload: Upload,
        caption: Option<String>,
        parent_id: Option<Id>,
    ) -> Result<MessageView> {
        let post = NewPost {
            text: caption.unwrap_or_default(),
            parent: parent_id.map(crate::MessageRef::Stored),
            ..NewPost::default()
        };
        self.upload_with(actor, room_id, upload, post).await
    }

    /// Like [`Chat::upload`], with everything a post may carry: `post.text` is the caption,
    /// and a bridge may post as a virtual user under an external key (a second upload with
    /// the same key returns the first message and stores nothing).
    pub async fn upload_with(
        &self,
        actor: &Actor,
        room_id: Id,
        upload: Upload,
        post: NewPost,
    ) -> Result<MessageView> {
        let me = actor.require_user()?.id;
        if let Some(existing) = self
            .already_posted(actor, room_id, post.external_ref.as_deref())
            .await?
        {
            return Ok(existing);
        }
        if upload.bytes.len() > self.config().max_upload_bytes {
            return Err(ChatError::TooLarge(format!(
                "file is larger than the limit of {} bytes",
                self.config().max_upload_bytes
            )));
        }
        let name = sanitize_name(&upload.name);
        let content_type = if upload.content_type.contains('/') && upload.content_type.len() < 128 {
            upload.content_type
        } else {
            "application/octet-stream".to_string()
        };
        // Fail early (before storing bytes) if the caller may not post here.
        let (_, standing) = self.room_with_standing(actor, room_id).await?;
        self.poster(actor, room_id, &standing, post.as_virtual.as_ref())
            .await?;
        let file = StoredFile {
            id: Id::generate(),
            room_id,
            uploader: Author::User(me),
            name: name.clone(),
            content_type: content_type.clone(),
            size: upload.bytes.len() as i64,
            created_at: weft_core::now_millis(),
        };
        self.inner
            .files
            .put(&object_path(file.id), PutPayload::from(upload.bytes))
            .await
            .map_err(|e| ChatError::Internal(format!("could not store the file: {e}")))?;
        let url = file_url(file.id, &name);
        let link = if content_type.starts_with("image/") {
            format!("![{}]({url})", escape_brackets(&name))
        } else {
            format!("[{}]({url})", escape_brackets(&name))
        };
        let text = if post.text.trim().is_empty() {
            link
        } else {
            format!("{}\n{link}", post.text)
        };
        let object = object_path(file.id);
        let posted = self
            .post(
                actor,
                room_id,
                NewPost {
                    text,
                    files: vec![file],
                    ..post
                },
            )
            .await;
        if posted.is_err() {
            // Nothing refers to the bytes: do not keep them.
            if let Err(e) = self.inner.files.delete(&object).await {
                tracing::warn!(error = %e, "could not remove the bytes of a refused upload");
            }
        }
        posted
    }

    /// Removes the bytes of files whose message is gone, so their URLs stop serving them; a
    /// failure is logged, not returned, as the message is already deleted.
    pub(crate) async fn remove_files(&self, attachments: &[Attachment]) {
        for a in attachments {
            if let Err(e) = self.inner.files.delete(&object_path(a.file_id)).await {
                tracing::warn!(error = %e, file_id = %a.file_id, "could not remove a deleted message's file");
            }
        }
    }

    /// A stored file, if the caller may read the room it was uploaded to.
    pub async fn download(&self, actor: &Actor, file_id: Id) -> Result<Download> {
        let file = self
            .store()
            .file(file_id)
            .await?
            .ok_or(ChatError::NotFound("file"))?;
        self.room(actor, file.room_id)
            .await
            .map_err(|_| ChatError::NotFound("file"))?;
        let bytes = self
            .inner
            .files
            .get(&object_path(file.id))
            .await
            .map_err(|e| match e {
                // Its message was deleted.
                object_store::Error::NotFound { .. } => ChatError::NotFound("file"),
                e => ChatError::Internal(format!("could not read the file: {e}")),
            })?
            .bytes()
            .await
            .map_err(|e| ChatError::Internal(format!("could not read the file: {e}")))?;
        Ok(Download { file, bytes })
    }
}

/// Keeps a file name printable and path-free.
fn sanitize_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    if clean.trim().is_empty() {
        "file".to_string()
    } else {
        clean
    }
}

fn escape_brackets(name: &str) -> String {
    name.replace('[', "\\[").replace(']', "\\]")
}
