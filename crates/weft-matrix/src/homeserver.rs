//! The homeserver client: the few client-server API calls the bridge makes, as the AS
//! (`Authorization: Bearer as_token`) and, for puppets, with identity assertion (`?user_id=`).
//!
//! Spec: <https://spec.matrix.org/latest/application-service-api/#identity-assertion>.

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{Value, json};

/// A failed homeserver call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("homeserver: {errcode} {message} (status {status:?})")]
pub struct HsError {
    /// HTTP status, or none when the homeserver could not be reached.
    pub status: Option<u16>,
    /// Matrix error code (`M_FORBIDDEN`, …), or a local one such as `W_UNREACHABLE`.
    pub errcode: String,
    /// Human-readable error.
    pub message: String,
    /// How long the homeserver asked us to wait.
    pub retry_after_ms: Option<u64>,
}

impl HsError {
    /// Worth retrying: unreachable, rate-limited or a server error.
    pub fn is_transient(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => s == 429 || s >= 500,
        }
    }
}

/// A client of one homeserver.
#[derive(Clone)]
pub struct Homeserver {
    http: reqwest::Client,
    base: Url,
    as_token: String,
}

impl Homeserver {
    /// A client of the homeserver at `base_url`, authenticating with the AS token.
    pub fn new(base_url: &str, as_token: &str) -> Homeserver {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let base = Url::parse(base_url)
            .unwrap_or_else(|_| Url::parse("http://127.0.0.1:8008").expect("static URL"));
        Homeserver {
            http,
            base,
            as_token: as_token.to_string(),
        }
    }

    fn url(&self, segments: &[&str], as_user: Option<&str>) -> Url {
        self.device_url(segments, as_user, None)
    }

    /// A URL acting as `as_user` and, if given, as one of its devices (device masquerading:
    /// the device must exist).
    fn device_url(&self, segments: &[&str], as_user: Option<&str>, device: Option<&str>) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if let Some(user) = as_user {
            url.query_pairs_mut().append_pair("user_id", user);
        }
        if let Some(device) = device {
            url.query_pairs_mut().append_pair("device_id", device);
        }
        url
    }

    /// One call; JSON in, JSON out.
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        as_user: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, HsError> {
        self.call_with_device(method, segments, as_user, None, body)
            .await
    }

    /// [`Homeserver::call`] as one of `as_user`'s devices (`?device_id=`), which must exist.
    /// The homeserver keeps the transaction ids of requests made with a device (Synapse: in
    /// its database, for a day); without one, an application service's are kept only in
    /// memory, if at all.
    pub async fn call_with_device(
        &self,
        method: Method,
        segments: &[&str],
        as_user: Option<&str>,
        device: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, HsError> {
        let mut request = self
            .http
            .request(method, self.device_url(segments, as_user, device))
            .bearer_auth(&self.as_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(unreachable)?;
        json_or_error(response).await
    }

    /// Uploads a file to the media repository as `mxid`; returns its `mxc://` URI.
    pub async fn upload(
        &self,
        bytes: Vec<u8>,
        content_type: &str,
        filename: &str,
        mxid: &str,
    ) -> Result<String, HsError> {
        let mut url = self.url(&["_matrix", "media", "v3", "upload"], Some(mxid));
        url.query_pairs_mut().append_pair("filename", filename);
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.as_token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await
            .map_err(unreachable)?;
        let value = json_or_error(response).await?;
        value["content_uri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| malformed("upload"))
    }

    /// Downloads an `mxc://server/id` file through authenticated media; returns the bytes.
    /// Stops as soon as the file is known to exceed `limit` bytes (its `Content-Length`, or
    /// what arrived so far), so a huge file is never buffered: that error (`W_TOO_LARGE`,
    /// status 413) is permanent.
    pub async fn download(&self, mxc: &str, limit: u64) -> Result<Vec<u8>, HsError> {
        Ok(self.download_typed(mxc, limit).await?.0)
    }

    /// [`Homeserver::download`], with the content type the homeserver gave, if any.
    pub async fn download_typed(
        &self,
        mxc: &str,
        limit: u64,
    ) -> Result<(Vec<u8>, Option<String>), HsError> {
        let (server, media_id) = mxc
            .strip_prefix("mxc://")
            .and_then(|rest| rest.split_once('/'))
            .ok_or_else(|| HsError {
                status: Some(400),
                errcode: "W_BAD_MXC".into(),
                message: format!("not an mxc URI: {mxc}"),
                retry_after_ms: None,
            })?;
        let url = self.url(
            &[
                "_matrix", "client", "v1", "media", "download", server, media_id,
            ],
            None,
        );
        let mut response = self
            .http
            .get(url)
            .bearer_auth(&self.as_token)
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(json_or_error(response)
                .await
                .err()
                .unwrap_or_else(|| malformed("download")));
        }
        let too_large = || HsError {
            status: Some(413),
            errcode: "W_TOO_LARGE".into(),
            message: format!("{mxc} is larger than weft's limit of {limit} bytes"),
            retry_after_ms: None,
        };
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if bytes.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((bytes, content_type))
    }

    /// Registers a puppet (no device, no access token); already registered is fine.
    pub async fn register_puppet(&self, localpart: &str) -> Result<(), HsError> {
        let body = json!({ "type": "m.login.application_service", "username": localpart, "inhibit_login": true });
        match self
            .call(
                Method::POST,
                &["_matrix", "client", "v3", "register"],
                None,
                Some(body),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.errcode == "M_USER_IN_USE" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates (or keeps) a device of one of the application service's users, without an
    /// access token (MSC4190: `PUT /_matrix/client/v3/devices/{deviceId}` as the application
    /// service; the registration needs `io.element.msc4190: true`).
    ///
    /// Spec: <https://github.com/matrix-org/matrix-spec-proposals/pull/4190>.
    pub async fn put_device(&self, mxid: &str, device_id: &str) -> Result<(), HsError> {
        self.call(
            Method::PUT,
            &["_matrix", "client", "v3", "devices", device_id],
            Some(mxid),
            Some(json!({ "display_name": "weft" })),
        )
        .await
        .map(|_| ())
    }

    /// Creates (or keeps) a device of one of the application service's users by logging in
    /// as it (`m.login.application_service` with a fixed device id): for registrations and
    /// homeservers without MSC4190. The access token it answers is not kept.
    ///
    /// Spec: <https://spec.matrix.org/latest/client-server-api/#appservice-login>.
    pub async fn login_device(&self, mxid: &str, device_id: &str) -> Result<(), HsError> {
        let body = json!({
            "type": "m.login.application_service",
            "identifier": { "type": "m.id.user", "user": mxid },
            "device_id": device_id,
            "initial_device_display_name": "weft",
        });
        self.call(
            Method::POST,
            &["_matrix", "client", "v3", "login"],
            None,
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// Sets a user's display name.
    pub async fn set_display_name(&self, mxid: &str, name: &str) -> Result<(), HsError> {
        self.call(
            Method::PUT,
            &["_matrix", "client", "v3", "profile", mxid, "displayname"],
            Some(mxid),
            Some(json!({ "displayname": name })),
        )
        .await
        .map(|_| ())
    }

    /// Sets a user's avatar (`""` takes it away).
    ///
    /// Spec: <https://spec.matrix.org/latest/client-server-api/#put_matrixclientv3profileuseridavatar_url>.
    pub async fn set_avatar_url(&self, mxid: &str, mxc: &str) -> Result<(), HsError> {
        self.call(
            Method::PUT,
            &["_matrix", "client", "v3", "profile", mxid, "avatar_url"],
            Some(mxid),
            Some(json!({ "avatar_url": mxc })),
        )
        .await
        .map(|_| ())
    }

    /// A user's display name, if they have one.
    pub async fn display_name(&self, mxid: &str) -> Result<Option<String>, HsError> {
        let value = self
            .call(
                Method::GET,
                &["_matrix", "client", "v3", "profile", mxid, "displayname"],
                None,
                None,
            )
            .await?;
        Ok(value["displayname"].as_str().map(str::to_string))
    }

    /// Creates a room as the bridge bot; returns its id.
    pub async fn create_room(&self, body: Value) -> Result<String, HsError> {
        let value = self
            .call(
                Method::POST,
                &["_matrix", "client", "v3", "createRoom"],
                None,
                Some(body),
            )
            .await?;
        value["room_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| malformed("createRoom"))
    }

    /// The room an alias points to.
    pub async fn resolve_alias(&self, alias: &str) -> Result<String, HsError> {
        let value = self
            .call(
                Method::GET,
                &["_matrix", "client", "v3", "directory", "room", alias],
                None,
                None,
            )
            .await?;
        value["room_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| malformed("directory"))
    }

    /// Lists a room in the homeserver's public room directory.
    pub async fn publish(&self, room_id: &str) -> Result<(), HsError> {
        self.directory_visibility(room_id, "public").await
    }

    /// Takes a room out of the homeserver's public room directory.
    pub async fn unpublish(&self, room_id: &str) -> Result<(), HsError> {
        self.directory_visibility(room_id, "private").await
    }

    async fn directory_visibility(&self, room_id: &str, visibility: &str) -> Result<(), HsError> {
        self.call(
            Method::PUT,
            &[
                "_matrix",
                "client",
                "v3",
                "directory",
                "list",
                "room",
                room_id,
            ],
            None,
            Some(json!({ "visibility": visibility })),
        )
        .await
        .map(|_| ())
    }

    /// Points an alias at a room; an alias that already points there is fine.
    ///
    /// Spec: <https://spec.matrix.org/latest/client-server-api/#put_matrixclientv3directoryroomroomalias>.
    pub async fn create_alias(&self, alias: &str, room_id: &str) -> Result<(), HsError> {
        let created = self
            .call(
                Method::PUT,
                &["_matrix", "client", "v3", "directory", "room", alias],
                None,
                Some(json!({ "room_id": room_id })),
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(409) => match self.resolve_alias(alias).await {
                Ok(current) if current == room_id => Ok(()),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Removes an alias; one that is already gone is fine.
    pub async fn delete_alias(&self, alias: &str) -> Result<(), HsError> {
        match self
            .call(
                Method::DELETE,
                &["_matrix", "client", "v3", "directory", "room", alias],
                None,
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A room's state event as the bridge bot sees it; `None` if the room has none.
    pub async fn state(
        &self,
        room_id: &str,
        event_type: &str,
        key: &str,
    ) -> Result<Option<Value>, HsError> {
        match self
            .call(
                Method::GET,
                &[
                    "_matrix", "client", "v3", "rooms", room_id, "state", event_type, key,
                ],
                None,
                None,
            )
            .await
        {
            Ok(content) => Ok(Some(content)),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Bans, unbans or kicks `target` from a room as `actor` (the bridge bot), with a reason
    /// the room's members see. `action` is `ban`, `unban` or `kick`.
    ///
    /// Spec: <https://spec.matrix.org/latest/client-server-api/#banning-users-in-a-room>.
    pub async fn moderate(
        &self,
        action: &str,
        room_id: &str,
        target: &str,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<(), HsError> {
        let mut body = json!({ "user_id": target });
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        self.call(
            Method::POST,
            &["_matrix", "client", "v3", "rooms", room_id, action],
            Some(actor),
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// Joins `mxid` to a room.
    pub async fn join(&self, room_id: &str, mxid: &str) -> Result<(), HsError> {
        self.call(
            Method::POST,
            &["_matrix", "client", "v3", "join", room_id],
            Some(mxid),
            Some(json!({})),
        )
        .await
        .map(|_| ())
    }

    /// Makes `mxid` leave a room; leaving a room one is not in is not an error.
    ///
    /// Spec: <https://spec.matrix.org/latest/client-server-api/#post_matrixclientv3roomsroomidleave>.
    pub async fn leave(&self, room_id: &str, mxid: &str) -> Result<(), HsError> {
        match self
            .call(
                Method::POST,
                &["_matrix", "client", "v3", "rooms", room_id, "leave"],
                Some(mxid),
                Some(json!({})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(403) || e.status == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Everyone joined to a room, as the bridge bot sees it: `(user id, display name, avatar
    /// URL)`.
    ///
    /// Spec: <https://spec.matrix.org/latest/client-server-api/#get_matrixclientv3roomsroomidjoined_members>.
    pub async fn joined_members(
        &self,
        room_id: &str,
    ) -> Result<Vec<(String, Option<String>, Option<String>)>, HsError> {
        let body = self
            .call(
                Method::GET,
                &[
                    "_matrix",
                    "client",
                    "v3",
                    "rooms",
                    room_id,
                    "joined_members",
                ],
                None,
                None,
            )
            .await?;
        let text = |v: &Value| {
            v.as_str()
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
        };
        Ok(body["joined"]
            .as_object()
            .map(|joined| {
                joined
                    .iter()
                    .map(|(mxid, m)| {
                        (
                            mxid.clone(),
                            text(&m["display_name"]),
                            text(&m["avatar_url"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Moves `mxid`'s read receipt in a room up to `event_id` (private to nobody: `m.read`).
    ///
    /// Spec: <https://spec.matrix.org/latest/client-server-api/#post_matrixclientv3roomsroomidreceiptreceipttypeeventid>.
    pub async fn read_receipt(
        &self,
        room_id: &str,
        event_id: &str,
        mxid: &str,
    ) -> Result<(), HsError> {
        self.call(
            Method::POST,
            &[
                "_matrix", "client", "v3", "rooms", room_id, "receipt", "m.read", event_id,
            ],
            Some(mxid),
            Some(json!({})),
        )
        .await
        .map(|_| ())
    }

    /// Sends an event as `mxid` from its device `device_id` with a transaction id; returns the
    /// event id. Sending the same transaction id from the same device again returns the same
    /// event (the homeserver deduplicates, across its restarts too).
    pub async fn send(
        &self,
        room_id: &str,
        event_type: &str,
        txn_id: &str,
        content: &Value,
        mxid: &str,
        device_id: &str,
    ) -> Result<String, HsError> {
        let value = self
            .call_with_device(
                Method::PUT,
                &[
                    "_matrix", "client", "v3", "rooms", room_id, "send", event_type, txn_id,
                ],
                Some(mxid),
                Some(device_id),
                Some(content.clone()),
            )
            .await?;
        value["event_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| malformed("send"))
    }

    /// Sets a state event as `mxid`.
    pub async fn set_state(
        &self,
        room_id: &str,
        event_type: &str,
        key: &str,
        content: &Value,
        mxid: &str,
    ) -> Result<(), HsError> {
        self.call(
            Method::PUT,
            &[
                "_matrix", "client", "v3", "rooms", room_id, "state", event_type, key,
            ],
            Some(mxid),
            Some(content.clone()),
        )
        .await
        .map(|_| ())
    }

    /// Redacts an event as `mxid` from its device `device_id`, with a transaction id that the
    /// homeserver deduplicates like [`Homeserver::send`]'s, and a reason if given.
    pub async fn redact(
        &self,
        room_id: &str,
        event_id: &str,
        txn_id: &str,
        mxid: &str,
        device_id: &str,
        reason: Option<&str>,
    ) -> Result<(), HsError> {
        let body = match reason {
            Some(reason) => json!({ "reason": reason }),
            None => json!({}),
        };
        self.call_with_device(
            Method::PUT,
            &[
                "_matrix", "client", "v3", "rooms", room_id, "redact", event_id, txn_id,
            ],
            Some(mxid),
            Some(device_id),
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// Asks the homeserver to ping the AS (spec `POST /_matrix/client/v1/appservice/{id}/ping`);
    /// returns the round trip it measured.
    pub async fn ping(&self, appservice_id: &str, txn_id: &str) -> Result<u64, HsError> {
        let value = self
            .call(
                Method::POST,
                &[
                    "_matrix",
                    "client",
                    "v1",
                    "appservice",
                    appservice_id,
                    "ping",
                ],
                None,
                Some(json!({ "transaction_id": txn_id })),
            )
            .await?;
        Ok(value["duration_ms"].as_u64().unwrap_or(0))
    }

    /// Who the AS token belongs to (checks that the homeserver knows our token).
    pub async fn whoami(&self) -> Result<String, HsError> {
        let value = self
            .call(
                Method::GET,
                &["_matrix", "client", "v3", "account", "whoami"],
                None,
                None,
            )
            .await?;
        value["user_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| malformed("whoami"))
    }
}

fn unreachable(e: reqwest::Error) -> HsError {
    HsError {
        status: None,
        errcode: "W_UNREACHABLE".into(),
        message: e.to_string(),
        retry_after_ms: None,
    }
}

/// The JSON body of a successful response, or the Matrix error of a failed one.
async fn json_or_error(response: reqwest::Response) -> Result<Value, HsError> {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(value);
    }
    Err(HsError {
        status: Some(status),
        errcode: value["errcode"].as_str().unwrap_or("M_UNKNOWN").to_string(),
        message: value["error"].as_str().map(str::to_string).unwrap_or(text),
        retry_after_ms: value["retry_after_ms"].as_u64(),
    })
}

fn malformed(what: &str) -> HsError {
    HsError {
        status: Some(200),
        errcode: "W_MALFORMED".into(),
        message: format!("unexpected {what} response"),
        retry_after_ms: None,
    }
}
