//! Matrix avatars in weft: the `mxc://` avatar a Matrix user's member event sets, or a
//! bridged room's `m.room.avatar`, is fetched once through authenticated media (as the
//! bridge), kept in the bridge's tables, and served by weft at [`avatar_path`], which
//! becomes their virtual user's avatar (or the weft room's). No
//! reader's browser talks to the homeserver, and weft serves only avatars it fetched itself
//! (never an open proxy to the homeserver's media), only as raster images (never SVG or
//! HTML, which a browser could run).
//!
//! Fetching happens in the background, never on a transaction's path; an avatar that
//! cannot be fetched (too large, not an image, the homeserver away) leaves the person as
//! they were, and the next member event tries again. A member event without an avatar
//! takes the Matrix one away ([`Bridge::forget_avatar`]).
//!
//! Spec: [authenticated media](https://spec.matrix.org/latest/client-server-api/#get_matrixclientv1mediadownloadservernamemediaid).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Bridge;

/// The largest avatar weft fetches.
const MAX_AVATAR_BYTES: u64 = 1024 * 1024;

/// Image types served as avatars; anything else is not kept.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Where weft serves the avatar `mxc://server/media`: `/matrix-avatars/server/media`, when
/// both parts are plain (letters, digits, `-_.:`), else `None`.
pub fn avatar_path(mxc: &str) -> Option<String> {
    let (server, media) = mxc.strip_prefix("mxc://")?.split_once('/')?;
    let plain = |s: &str, extra: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c) || extra.contains(c))
    };
    (plain(server, ".:") && plain(media, "")).then(|| format!("/matrix-avatars/{server}/{media}"))
}

/// The routes anyone may call: the avatars weft fetched.
pub(crate) fn router(bridge: Bridge) -> Router {
    Router::new()
        .route("/matrix-avatars/{server}/{media}", get(serve))
        .with_state(bridge)
}

async fn serve(
    State(bridge): State<Bridge>,
    Path((server, media)): Path<(String, String)>,
) -> Response {
    let mxc = format!("mxc://{server}/{media}");
    if avatar_path(&mxc).is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    match bridge.tables().avatar(&mxc).await {
        Ok(Some((content_type, bytes))) => (
            [
                (header::CONTENT_TYPE, content_type),
                // An mxc URI names one file for good.
                (
                    header::CACHE_CONTROL,
                    "public, max-age=604800, immutable".into(),
                ),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
            ],
            bytes,
        )
            .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::warn!(%mxc, error = %e, "could not read a Matrix avatar");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

impl Bridge {
    /// Gives a Matrix user's virtual user the avatar `mxc` (from their member event), in the
    /// background: fetched unless weft has it, then set.
    pub(crate) fn learn_avatar(&self, mxid: &str, mxc: &str) {
        let (bridge, mxid, mxc) = (self.clone(), mxid.to_string(), mxc.to_string());
        tokio::spawn(async move { bridge.set_avatar_now(&mxid, &mxc).await });
    }

    /// Gives a Matrix user's virtual user the avatar `mxc`: fetched unless weft has it, then
    /// set. Failures are logged: an avatar is never worth failing anything for.
    pub(crate) async fn set_avatar_now(&self, mxid: &str, mxc: &str) {
        let Some(path) = avatar_path(mxc) else {
            return;
        };
        let known = self
            .chat()
            .views()
            .virtual_user_by_external_id(crate::VIRTUAL_KIND, mxid)
            .await;
        if let Ok(Some(vu)) = known
            && vu.avatar_url.as_deref() == Some(path.as_str())
        {
            return; // Set already (a member event for another room, a rejoin).
        }
        if let Err(e) = self.fetch_avatar(mxc).await {
            tracing::debug!(%mxid, %mxc, error = %e, "a Matrix avatar was not fetched");
            return;
        }
        let who = weft_chat::PostAs {
            kind: crate::VIRTUAL_KIND.into(),
            external_id: mxid.to_string(),
            // No name: the one weft has stays.
            display_name: String::new(),
            avatar_url: Some(path),
        };
        if let Err(e) = self.chat().update_virtual_user(self.actor(), who).await {
            tracing::warn!(%mxid, error = %e, "could not set a Matrix user's avatar");
        }
    }

    /// Gives a bridged weft room the avatar its Matrix room took (`None`: removed), in the
    /// background: fetched unless weft has it, then set.
    pub(crate) fn learn_room_avatar(&self, room_id: weft_core::Id, mxc: Option<String>) {
        let bridge = self.clone();
        tokio::spawn(async move {
            let avatar = match mxc {
                Some(mxc) => {
                    let Some(path) = avatar_path(&mxc) else {
                        return;
                    };
                    if let Err(e) = bridge.fetch_avatar(&mxc).await {
                        tracing::debug!(%room_id, %mxc, error = %e, "a room avatar from Matrix was not fetched");
                        return;
                    }
                    Some(path)
                }
                None => None,
            };
            let patch = weft_chat::RoomPatch {
                avatar_url: Some(avatar),
                ..weft_chat::RoomPatch::default()
            };
            if let Err(e) = bridge
                .chat()
                .update_room(bridge.actor(), room_id, patch)
                .await
            {
                tracing::warn!(%room_id, error = %e, "could not set a room's avatar from Matrix");
            }
        });
    }

    /// Takes away a Matrix user's avatar in weft when their member event sets none, in the
    /// background; only an avatar that came from Matrix (one weft serves) is taken.
    pub(crate) fn forget_avatar(&self, mxid: &str) {
        let (bridge, mxid) = (self.clone(), mxid.to_string());
        tokio::spawn(async move {
            let known = bridge
                .chat()
                .views()
                .virtual_user_by_external_id(crate::VIRTUAL_KIND, &mxid)
                .await;
            let Ok(Some(vu)) = known else { return };
            if !vu
                .avatar_url
                .as_deref()
                .is_some_and(|url| url.starts_with("/matrix-avatars/"))
            {
                return;
            }
            let who = weft_chat::PostAs {
                kind: crate::VIRTUAL_KIND.into(),
                external_id: mxid.clone(),
                display_name: String::new(),
                avatar_url: Some(String::new()),
            };
            if let Err(e) = bridge.chat().update_virtual_user(bridge.actor(), who).await {
                tracing::warn!(%mxid, error = %e, "could not take a Matrix user's avatar away");
            }
        });
    }

    /// Keeps the avatar `mxc`, fetching it unless weft has it already.
    async fn fetch_avatar(&self, mxc: &str) -> Result<(), crate::BridgeError> {
        if self.tables().avatar(mxc).await?.is_some() {
            return Ok(());
        }
        let (bytes, content_type) = self.hs().download_typed(mxc, MAX_AVATAR_BYTES).await?;
        let content_type = content_type
            .as_deref()
            .and_then(|t| t.split(';').next())
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| IMAGE_TYPES.contains(&t.as_str()))
            .ok_or_else(|| crate::BridgeError::Refused("the avatar is not a picture".into()))?;
        self.tables()
            .insert_avatar(mxc, &content_type, bytes)
            .await?;
        tracing::info!(%mxc, "fetched a Matrix avatar");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::avatar_path;

    #[test]
    fn only_plain_mxc_uris_have_a_path() {
        assert_eq!(
            avatar_path("mxc://hs.test:8448/AbC-d_1").as_deref(),
            Some("/matrix-avatars/hs.test:8448/AbC-d_1")
        );
        for bad in [
            "mxc://hs.test/../../etc",
            "mxc://hs.test/a/b",
            "mxc:///x",
            "https://hs.test/x",
            "mxc://hs.test/",
            "mxc://h s/x",
        ] {
            assert_eq!(avatar_path(bad), None, "{bad}");
        }
    }
}
