//! Weft's avatars on Matrix: a weft user's avatar becomes their puppet's, a weft room's
//! becomes its Matrix room's `m.room.avatar`, uploaded to the homeserver once per source
//! (`mxc://`, remembered) and set again only when it changes; a room that never had a weft
//! avatar leaves its Matrix room's alone.
//!
//! An avatar is a URL a user typed, and a server that fetches whatever URL its users type can
//! be made to read its own network (SSRF). So weft fetches only from the origins listed in
//! `[matrix]` `avatar_origins` (by default the avatar hosts of GitHub, GitLab and Gravatar),
//! never follows a redirect, and takes only raster images up to 1 MiB. A Matrix avatar that
//! weft serves (`/matrix-avatars/…`, see `avatars`) maps back to its own `mxc://` without
//! any fetch. Anything else (an avatar weft draws for people who have none, another host)
//! does not reach Matrix, and the puppet or room keeps what it has.
//!
//! All of it is best effort: a puppet's avatar is set in the background, off the path that
//! carries messages; a room's is set by the outbound sender with the room's other details
//! (rarely, and bounded by a 10 s timeout). A failure is logged, and tried again only when
//! the avatar changes.
//!
//! Spec: [avatar URL](https://spec.matrix.org/latest/client-server-api/#put_matrixclientv3profileuseridavatar_url),
//! [`m.room.avatar`](https://spec.matrix.org/latest/client-server-api/#mroomavatar),
//! [upload](https://spec.matrix.org/latest/client-server-api/#post_matrixmediav3upload).

use std::time::Duration;

use reqwest::Url;
use weft_core::User;

use crate::tables::MatrixWrites;
use crate::{Bridge, BridgeError};

/// The largest avatar weft uploads.
const MAX_AVATAR_BYTES: usize = 1024 * 1024;

/// Image types weft uploads as avatars.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// The `mxc://server/media` that weft's own path to a Matrix avatar stands for.
pub(crate) fn mxc_of_served(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/matrix-avatars/")?;
    let (server, media) = rest.split_once('/')?;
    let mxc = format!("mxc://{server}/{media}");
    (crate::avatars::avatar_path(&mxc).as_deref() == Some(path)).then_some(mxc)
}

/// Whether `url` is at one of the `allowed` origins (`scheme://host[:port]`, compared as
/// browsers compare origins).
pub(crate) fn at_allowed_origin(url: &Url, allowed: &[String]) -> bool {
    let origin = url.origin().ascii_serialization();
    allowed.iter().any(|a| {
        Url::parse(a)
            .map(|a| a.origin().ascii_serialization() == origin)
            .unwrap_or(false)
    })
}

/// Why an avatar was not carried.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("not at an allowed origin")]
    NotAllowed,
    #[error("{0}")]
    Failed(String),
}

impl Bridge {
    /// The `mxc://` a weft avatar URL is on Matrix: a Matrix avatar weft serves is its own, a
    /// URL at an allowed origin is fetched and uploaded once; `None` for anything else.
    pub(crate) async fn mxc_for_avatar(&self, source: &str) -> Result<Option<String>, BridgeError> {
        if let Some(mxc) = mxc_of_served(source) {
            return Ok(Some(mxc));
        }
        if let Some(mxc) = self.tables().uploaded_avatar(source).await? {
            return Ok(Some(mxc));
        }
        let (bytes, content_type) = match self.fetch_weft_avatar(source).await {
            Ok(fetched) => fetched,
            Err(FetchError::NotAllowed) => {
                tracing::debug!(%source, "an avatar at an origin not in avatar_origins stays off Matrix");
                return Ok(None);
            }
            Err(FetchError::Failed(why)) => {
                tracing::warn!(%source, error = %why, "an avatar could not be fetched for Matrix");
                return Ok(None);
            }
        };
        let mxc = self
            .hs()
            .upload(bytes, &content_type, "avatar", &self.ids().bot())
            .await?;
        self.tables().insert_uploaded_avatar(source, &mxc).await?;
        tracing::info!(%source, %mxc, "uploaded an avatar to the homeserver");
        Ok(Some(mxc))
    }

    async fn fetch_weft_avatar(&self, source: &str) -> Result<(Vec<u8>, String), FetchError> {
        let url = Url::parse(source).map_err(|_| FetchError::NotAllowed)?;
        if !at_allowed_origin(&url, &self.config().settings.avatar_origins) {
            return Err(FetchError::NotAllowed);
        }
        let failed = |e: reqwest::Error| FetchError::Failed(e.to_string());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(failed)?;
        let mut response = client.get(url).send().await.map_err(failed)?;
        if !response.status().is_success() {
            return Err(FetchError::Failed(format!("status {}", response.status())));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if !IMAGE_TYPES.contains(&content_type.as_str()) {
            return Err(FetchError::Failed(format!(
                "not a raster image ({content_type:?})"
            )));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_AVATAR_BYTES {
                return Err(FetchError::Failed("larger than 1 MiB".into()));
            }
        }
        Ok((bytes, content_type))
    }

    /// Gives a puppet its weft user's avatar in the background, unless it has it already.
    pub(crate) fn sync_puppet_avatar_soon(&self, user: &User) {
        let (bridge, user) = (self.clone(), user.clone());
        tokio::spawn(async move {
            if let Err(e) = bridge.sync_puppet_avatar(&user).await {
                tracing::warn!(user = %user.username, error = %e, "could not set a puppet's avatar");
            }
        });
    }

    async fn sync_puppet_avatar(&self, user: &User) -> Result<(), BridgeError> {
        let mxid = self.ids().puppet(user);
        let wanted = user.avatar_url.clone().unwrap_or_default();
        let Some(given) = self.tables().puppet_avatar_source(&mxid).await? else {
            return Ok(()); // No puppet yet: it gets one when it is registered.
        };
        if given == wanted {
            return Ok(());
        }
        let mxc = if wanted.is_empty() {
            Some(String::new())
        } else {
            self.mxc_for_avatar(&wanted).await?
        };
        // An avatar that cannot be carried leaves the puppet's as it is.
        if let Some(mxc) = mxc {
            self.hs().set_avatar_url(&mxid, &mxc).await?;
            tracing::info!(%mxid, %mxc, "a puppet's avatar follows its weft user's");
        }
        let (m, w) = (mxid, wanted);
        self.tables()
            .write(move |tx| Box::pin(async move { tx.set_puppet_avatar_source(&m, &w).await }))
            .await?;
        Ok(())
    }

    /// Sets the Matrix room's avatar to the weft room's when weft's changed since weft last
    /// set it, where it can be carried; `put_back` sets it whatever changed (a Matrix change
    /// weft refused), taking the Matrix one away when the weft room has none. A weft room
    /// that never had an avatar leaves the Matrix room's alone: one a Matrix user set, say,
    /// whose copy weft is still fetching or could not fetch.
    pub(crate) async fn sync_room_avatar(
        &self,
        room: &weft_core::Room,
        matrix_room: &str,
        put_back: bool,
    ) -> Result<(), BridgeError> {
        let source = room.avatar_url.clone().unwrap_or_default();
        let last = self.tables().room_avatar_source(room.id).await?;
        if !put_back && last.as_deref().unwrap_or_default() == source {
            return Ok(());
        }
        let wanted = if source.is_empty() {
            String::new()
        } else {
            match self.mxc_for_avatar(&source).await? {
                Some(mxc) => mxc,
                None => return Ok(()),
            }
        };
        let current = self
            .hs()
            .state(matrix_room, "m.room.avatar", "")
            .await?
            .and_then(|c| c["url"].as_str().map(str::to_string))
            .unwrap_or_default();
        if current != wanted {
            let content = if wanted.is_empty() {
                serde_json::json!({})
            } else {
                serde_json::json!({ "url": wanted })
            };
            self.hs()
                .set_state(
                    matrix_room,
                    "m.room.avatar",
                    "",
                    &content,
                    &self.ids().bot(),
                )
                .await?;
            tracing::info!(room_id = %room.id, matrix_room_id = %matrix_room, url = %wanted, "the Matrix room's avatar follows the weft room's");
        }
        self.tables()
            .set_room_avatar_source(room.id, &source)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_origins_are_fetched() {
        let allowed = vec![
            "https://avatars.githubusercontent.com".to_string(),
            "http://127.0.0.1:8123/".to_string(),
        ];
        let ok = |u: &str| at_allowed_origin(&Url::parse(u).expect("a URL"), &allowed);
        assert!(ok("https://avatars.githubusercontent.com/u/1?v=4"));
        assert!(ok("http://127.0.0.1:8123/a.png"));
        assert!(
            !ok("http://avatars.githubusercontent.com/u/1"),
            "another scheme"
        );
        assert!(!ok("http://127.0.0.1:8124/a.png"), "another port");
        assert!(!ok(
            "https://avatars.githubusercontent.com.evil.example/u/1"
        ));
        assert!(!ok("https://user@169.254.169.254/latest/meta-data"));
        assert!(
            !ok("http://localhost:8123/a.png"),
            "a name is not the address it resolves to"
        );
    }

    #[test]
    fn served_matrix_avatars_map_back_to_their_mxc() {
        assert_eq!(
            mxc_of_served("/matrix-avatars/hs.test/AbC123").as_deref(),
            Some("mxc://hs.test/AbC123")
        );
        assert_eq!(mxc_of_served("/matrix-avatars/hs.test/a/../b"), None);
        assert_eq!(mxc_of_served("/avatars/alice"), None);
    }
}
