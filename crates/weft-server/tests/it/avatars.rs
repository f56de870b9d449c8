//! Generated avatars at `/avatars/{name}`, where the API points users without a picture, and
//! the avatars the room page shows beside messages.

use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde_json::json;
use weft_core::RoomKind;

use crate::harness::TestServer;

async fn avatar(server: &TestServer, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let response = server
        .http
        .get(server.url(path))
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.expect("body"), headers)
}

#[tokio::test]
async fn the_api_points_at_an_avatar_that_is_served() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let (status, _) = server
        .send(
            reqwest::Method::PATCH,
            Some(&alice.token),
            "/v1/user/me",
            json!({ "displayName": "Alice <Liddell> & \"Co\"" }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, me) = server.get(Some(&alice.token), "/v1/user/me").await;
    assert_eq!(me["avatarUrl"], "/avatars/alice");

    let (status, svg, headers) = avatar(&server, "/avatars/alice").await;
    assert_eq!(status, 200);
    assert_eq!(headers[CONTENT_TYPE], "image/svg+xml");
    let cache = headers[CACHE_CONTROL].to_str().expect("ascii");
    assert!(cache.contains("max-age="), "{cache}");
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    // Initials of the display name, which is escaped wherever it appears.
    assert!(svg.contains(">AC</text>"), "{svg}");
    assert!(
        svg.contains("&lt;Liddell&gt; &amp; &quot;Co&quot;"),
        "{svg}"
    );
    assert!(!svg.contains("<Liddell>"), "{svg}");

    // The same picture again costs nothing.
    let etag = headers[ETAG].clone();
    let again = server
        .http
        .get(server.url("/avatars/alice"))
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .expect("request sent");
    assert_eq!(again.status().as_u16(), 304);
}

#[tokio::test]
async fn other_names_get_an_avatar_of_their_own() {
    let server = TestServer::start().await;
    // A Matrix ID, as the web app asks for people bridged from Matrix.
    let (status, svg, headers) = avatar(&server, "/avatars/%40carl%3Aexample.org").await;
    assert_eq!(status, 200);
    assert_eq!(headers[CONTENT_TYPE], "image/svg+xml");
    assert!(svg.contains(">C</text>"), "{svg}");
    let (status, svg, _) = avatar(&server, "/avatars/%3Cscript%3E%26").await;
    assert_eq!(status, 200);
    assert!(!svg.contains("<script>"), "{svg}");
    assert!(svg.contains("&lt;script&gt;&amp;"), "{svg}");
    let (status, _, _) = avatar(&server, &format!("/avatars/{}", "x".repeat(300))).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_room_page_shows_avatars_beside_messages() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let bridge = server.user_with("bridge", false, true).await;
    let room = server.room(&alice, "rust/general", RoomKind::Public).await;
    server.join(&bob, "rust/general").await;
    server.join(&bridge, "rust/general").await;
    server
        .send(
            reqwest::Method::PATCH,
            Some(&bob.token),
            "/v1/user/me",
            json!({ "avatarUrl": "https://images.example/bob.png" }),
        )
        .await;
    server.say(&alice, room, "from alice").await;
    server.say(&bob, room, "from bob").await;
    for (external_id, avatar_url) in [
        ("@carl:example.org", json!("mxc://example.org/abc")),
        (
            "@dora:example.org",
            json!("https://images.example/dora.png"),
        ),
    ] {
        let (status, body) = server
            .post(
                Some(&bridge.token),
                &format!("/v1/rooms/{room}/chatMessages"),
                json!({ "text": format!("from {external_id}"), "virtualUser": {
                    "type": "matrix", "externalId": external_id, "displayName": "someone",
                    "avatarUrl": avatar_url,
                } }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let page = server
        .http
        .get(server.url("/rust/general"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .expect("request sent")
        .text()
        .await
        .expect("body");
    let src = |path: &str| format!("<img class=\"avatar\" src=\"{path}\"");
    assert!(page.contains(&src("/avatars/alice")), "{page}");
    assert!(
        page.contains(&src("https://images.example/bob.png")),
        "{page}"
    );
    // Matrix media (mxc:) is not something a browser can load: the generated one instead.
    assert!(
        page.contains(&src("/avatars/%40carl%3Aexample.org")),
        "{page}"
    );
    assert!(!page.contains("mxc://"), "{page}");
    assert!(
        page.contains(&src("https://images.example/dora.png")),
        "{page}"
    );
    assert!(!page.contains("<div class=\"avatar\""), "{page}");
}
