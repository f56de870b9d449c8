//! How weft things are named on Matrix.
//!
//! Weft users are `@{username}-{id}:{server}`: the id keeps the Matrix ID stable when someone
//! renames, so history never passes from one person to another. Rooms are
//! `#{community}_{room}:{server}`.

use weft_core::{Id, User};

/// Names on one homeserver.
#[derive(Debug, Clone)]
pub struct Identities {
    server_name: String,
    bot_localpart: String,
}

impl Identities {
    /// Names on `server_name`, with the bridge bot's localpart.
    pub fn new(server_name: &str, bot_localpart: &str) -> Self {
        Identities {
            server_name: server_name.to_string(),
            bot_localpart: bot_localpart.to_string(),
        }
    }

    /// The homeserver's name.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The bridge bot's Matrix ID.
    pub fn bot(&self) -> String {
        format!("@{}:{}", self.bot_localpart, self.server_name)
    }

    /// The puppet localpart of a weft user.
    pub fn puppet_localpart(&self, user: &User) -> String {
        format!("{}-{}", user.username.to_lowercase(), user.id)
    }

    /// The puppet Matrix ID of a weft user.
    pub fn puppet(&self, user: &User) -> String {
        format!("@{}:{}", self.puppet_localpart(user), self.server_name)
    }

    /// The weft user id inside a puppet Matrix ID, if it is one of ours.
    pub fn puppet_user_id(&self, mxid: &str) -> Option<Id> {
        let local = mxid
            .strip_prefix('@')?
            .strip_suffix(&format!(":{}", self.server_name))?;
        let (_, id) = local.rsplit_once('-')?;
        id.parse().ok()
    }

    /// Whether a Matrix ID belongs to the bridge (the bot or a puppet): its events are echoes.
    pub fn is_ours(&self, mxid: &str) -> bool {
        mxid == self.bot() || self.puppet_user_id(mxid).is_some()
    }

    /// The alias localpart of a room URI: `community/room` → `community_room`.
    pub fn alias_localpart(uri: &str) -> String {
        uri.to_lowercase().replace('/', "_")
    }

    /// The full alias of a room URI.
    pub fn alias(&self, uri: &str) -> String {
        format!("#{}:{}", Self::alias_localpart(uri), self.server_name)
    }

    /// The localpart of an alias on this server.
    pub fn alias_to_localpart(&self, alias: &str) -> Option<String> {
        alias
            .strip_prefix('#')?
            .strip_suffix(&format!(":{}", self.server_name))
            .map(str::to_string)
    }

    /// Regular expressions of the namespaces weft claims exclusively (for the registration).
    pub fn user_namespace(&self) -> String {
        format!(
            "@[a-z0-9._=/-]+-[0-9a-f]{{24}}:{}",
            regex_escape(&self.server_name)
        )
    }

    /// The alias namespace: every alias on the server (the server is weft's).
    pub fn alias_namespace(&self) -> String {
        format!("#[^:]+:{}", regex_escape(&self.server_name))
    }
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> User {
        User {
            id: Id::generate(),
            username: name.into(),
            display_name: name.into(),
            avatar_url: None,
            site_admin: false,
            created_at: 0,
        }
    }

    #[test]
    fn puppets_round_trip_and_survive_renames() {
        let ids = Identities::new("weft.test", "weft");
        let mut u = user("Alice");
        let mxid = ids.puppet(&u);
        assert_eq!(mxid, format!("@alice-{}:weft.test", u.id));
        assert_eq!(ids.puppet_user_id(&mxid), Some(u.id));
        assert!(ids.is_ours(&mxid) && ids.is_ours("@weft:weft.test"));
        assert!(
            !ids.is_ours("@alice:weft.test") && !ids.is_ours(&format!("@alice-{}:other.org", u.id))
        );
        u.username = "alicia".into();
        assert_eq!(ids.puppet_user_id(&ids.puppet(&u)), Some(u.id));
    }

    #[test]
    fn aliases() {
        let ids = Identities::new("weft.test", "weft");
        assert_eq!(ids.alias("Rust-Lang/rust"), "#rust-lang_rust:weft.test");
        assert_eq!(
            ids.alias_to_localpart("#rust-lang_rust:weft.test")
                .as_deref(),
            Some("rust-lang_rust")
        );
        assert_eq!(ids.alias_to_localpart("#x:elsewhere"), None);
        assert_eq!(
            ids.user_namespace(),
            "@[a-z0-9._=/-]+-[0-9a-f]{24}:weft\\.test"
        );
    }
}
