//! What a change is about: a stored message, or one prepared for the same batch and not
//! written yet.
//!
//! A bridge's transaction often holds a message and, a few events later, a reply to it, an
//! edit, a reaction or its removal. Naming the pending message ([`MessageRef::Pending`]) lets
//! those be checked and prepared against it, so that the whole transaction is still one write
//! ([`crate::Chat::write_batch`] writes the posts before the changes that follow them).

use weft_core::{Author, Id, Message, MessageView, Profile};

use super::posting::{PostAs, PreparedPost};
use crate::{Chat, ChatError, Result};

/// The message a reply, reaction, edit or deletion is about.
#[derive(Debug, Clone)]
pub enum MessageRef {
    /// A message in the store.
    Stored(Id),
    /// A message prepared for the same batch ([`PreparedPost::pending`]), written before
    /// the change is.
    Pending(Box<PendingMessage>),
    /// A stored message as the caller read it a moment ago (a bridge reads what a
    /// transaction's events name together): checked as read, and read again when written.
    Read(Box<MessageView>),
}

impl From<Id> for MessageRef {
    fn from(id: Id) -> MessageRef {
        MessageRef::Stored(id)
    }
}

impl MessageRef {
    /// The id the message has, or will have once written.
    pub fn id(&self) -> Id {
        match self {
            MessageRef::Stored(id) => *id,
            MessageRef::Pending(p) => p.message.id,
            MessageRef::Read(view) => view.message.id,
        }
    }
}

/// A prepared post as later changes of its batch see it: the message as it will be written,
/// and who it is written as.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    /// The message as it will be stored (its sequence number is not known yet).
    message: Message,
    /// The virtual user it is posted as: its author's id is only settled when it is written,
    /// so authorship is checked against this claim.
    as_virtual: Option<PostAs>,
}

impl PreparedPost {
    /// This post as a later change of the same batch refers to it.
    pub fn pending(&self) -> MessageRef {
        MessageRef::Pending(Box::new(PendingMessage {
            message: super::posting::written_message(self.new.clone(), 0),
            as_virtual: self.as_virtual.clone(),
        }))
    }
}

/// A change's message, as its checks read it.
pub(super) struct Subject {
    pub(super) message: Message,
    /// Who a virtual author is elsewhere (network, id there): from the stored profile, or for
    /// a pending message the claim it is posted under (its author's id is settled when it is
    /// written). `None` for a weft user's message.
    virtual_author: Option<(String, String)>,
}

impl Chat {
    /// The message `target` names, in `room_id`; not found when it is in another room.
    pub(super) async fn subject(&self, room_id: Id, target: &MessageRef) -> Result<Subject> {
        let subject = match target {
            MessageRef::Stored(id) => {
                let view = self
                    .store()
                    .message(*id)
                    .await?
                    .ok_or(ChatError::NotFound("message"))?;
                let virtual_author = match view.author {
                    Some(Profile::Virtual(vu)) => Some((vu.kind, vu.external_id)),
                    _ => None,
                };
                Subject {
                    message: view.message,
                    virtual_author,
                }
            }
            MessageRef::Read(view) => Subject {
                message: view.message.clone(),
                virtual_author: match &view.author {
                    Some(Profile::Virtual(vu)) => Some((vu.kind.clone(), vu.external_id.clone())),
                    _ => None,
                },
            },
            MessageRef::Pending(p) => Subject {
                message: p.message.clone(),
                virtual_author: p
                    .as_virtual
                    .as_ref()
                    .map(|v| (v.kind.clone(), v.external_id.clone())),
            },
        };
        if subject.message.room_id != room_id {
            return Err(ChatError::NotFound("message"));
        }
        Ok(subject)
    }

    /// Whether the actor wrote this message (directly, or as the bridge for its virtual
    /// author).
    pub(super) fn is_author(
        &self,
        actor: &crate::Actor,
        subject: &Subject,
        as_virtual: Option<&PostAs>,
    ) -> bool {
        match subject.message.author {
            Author::User(id) => {
                as_virtual.is_none() && actor.user.as_ref().is_some_and(|u| u.id == id)
            }
            Author::Virtual(_) => {
                let Some(claim) = as_virtual.filter(|_| actor.is_bridge()) else {
                    return false;
                };
                subject
                    .virtual_author
                    .as_ref()
                    .is_some_and(|(kind, external_id)| {
                        *kind == claim.kind && *external_id == claim.external_id
                    })
            }
        }
    }
}
