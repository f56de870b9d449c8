//! Messages: posting (one at a time or in batches), reading, editing and deleting, reactions,
//! and read state, one module each.

mod batch;
mod editing;
pub(crate) mod posting;
mod reactions;
mod read_state;
mod reading;
mod subject;

pub use editing::{PreparedDeletion, PreparedEdit};
pub use posting::{Change, NewPost, PostAs, PreparedPost};
pub use reactions::PreparedReaction;
pub use read_state::UnreadItems;
pub use reading::MessageQuery;
pub use subject::{MessageRef, PendingMessage};
