//! Uploads (`multipart/form-data`) and downloads.

use serde_json::{Value, json};
use weft_chat::ChatConfig;
use weft_core::{Id, RoomKind};
use weft_server::ServerConfig;

use crate::harness::{TestServer, TestUser, id_of, ids};

const BOUNDARY: &str = "weft-test-boundary-7MA4YWxkTrZu0gW";

/// A `multipart/form-data` body with a `file` part and optional extra text parts.
fn multipart(name: &str, content_type: &str, bytes: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in extra {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(
    server: &TestServer,
    user: Option<&TestUser>,
    room: Id,
    body: Vec<u8>,
) -> (u16, Value) {
    server
        .raw(
            reqwest::Method::POST,
            user.map(|u| u.token.as_str()),
            &format!("/v1/rooms/{room}/files"),
            &format!("multipart/form-data; boundary={BOUNDARY}"),
            body,
        )
        .await
}

async fn download(server: &TestServer, token: Option<&str>, url: &str) -> reqwest::Response {
    let mut req = server.http.get(server.url(url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("download sent")
}

#[tokio::test]
async fn an_upload_posts_a_message_whose_file_downloads_byte_for_byte() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    // Bytes that are not UTF-8, to show nothing is transcoded.
    let content: Vec<u8> = (0..=255u8).cycle().take(5000).collect();

    let (status, m) = upload(
        &server,
        Some(&alice),
        room,
        multipart(
            "report v2.bin",
            "application/x-custom",
            &content,
            &[("text", "the report")],
        ),
    )
    .await;
    assert_eq!(status, 200, "{m}");
    let attachments = m["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1, "{m}");
    let a = &attachments[0];
    assert_eq!(a["name"], "report v2.bin");
    assert_eq!(a["mimeType"], "application/x-custom");
    assert_eq!(a["size"], 5000);
    let url = a["url"].as_str().expect("url").to_string();
    assert!(url.starts_with("/files/"), "{url}");
    assert!(
        m["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("the report\n") && t.contains(&url)),
        "{m}"
    );
    assert_eq!(m["fromUser"]["username"], "alice");

    // The message is in the timeline with the same attachment.
    let list = server.snapshot(&alice, room).await;
    assert_eq!(ids(&list), [id_of(&m)]);
    assert_eq!(list[0]["attachments"], m["attachments"]);

    // Anyone who may read the (public) room downloads the same bytes, as an attachment.
    for token in [Some(alice.token.as_str()), None] {
        let response = download(&server, token, &url).await;
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/octet-stream")
        );
        assert!(
            response
                .headers()
                .get("content-disposition")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("attachment")),
            "{:?}",
            response.headers()
        );
        assert_eq!(
            response
                .headers()
                .get("x-content-type-options")
                .and_then(|v| v.to_str().ok()),
            Some("nosniff")
        );
        let bytes = response.bytes().await.expect("body");
        assert_eq!(bytes.as_ref(), content.as_slice());
    }

    // An image is linked as an image and shown inline.
    let png = b"\x89PNG\r\n\x1a\nnot really a png".to_vec();
    let (status, img) = upload(
        &server,
        Some(&alice),
        room,
        multipart("cat.png", "image/png", &png, &[]),
    )
    .await;
    assert_eq!(status, 200, "{img}");
    assert!(
        img["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("![cat.png](")),
        "{img}"
    );
    assert!(
        img["html"].as_str().is_some_and(|h| h.contains("<img")),
        "{img}"
    );
    let url = img["attachments"][0]["url"]
        .as_str()
        .expect("url")
        .to_string();
    let response = download(&server, None, &url).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        png.as_slice()
    );

    // An HTML upload is never served as HTML.
    let (status, html) = upload(
        &server,
        Some(&alice),
        room,
        multipart("x.html", "text/html", b"<script>alert(1)</script>", &[]),
    )
    .await;
    assert_eq!(status, 200, "{html}");
    let response = download(
        &server,
        None,
        html["attachments"][0]["url"].as_str().expect("url"),
    )
    .await;
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/octet-stream")
    );
}

#[tokio::test]
async fn uploads_over_the_limit_are_413_and_post_nothing() {
    let server = TestServer::start_with(
        ChatConfig {
            max_upload_bytes: 1024,
            ..Default::default()
        },
        ServerConfig::default(),
    )
    .await;
    let alice = server.user("alice").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    server.say(&alice, room, "before").await;
    let before = server.snapshot(&alice, room).await;

    // Just over the file limit (the request itself is small).
    let (status, body) = upload(
        &server,
        Some(&alice),
        room,
        multipart("big.bin", "application/octet-stream", &[7u8; 1025], &[]),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("larger") || e.contains("large")),
        "{body}"
    );
    // Far over: the body limit refuses the request itself.
    let (status, body) = upload(
        &server,
        Some(&alice),
        room,
        multipart("huge.bin", "application/octet-stream", &[7u8; 200_000], &[]),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(server.snapshot(&alice, room).await, before);
    assert_eq!(
        server.stored_files(),
        0,
        "refused uploads leave no bytes behind"
    );

    // Exactly at the limit is fine.
    let (status, m) = upload(
        &server,
        Some(&alice),
        room,
        multipart("ok.bin", "application/octet-stream", &[7u8; 1024], &[]),
    )
    .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["attachments"][0]["size"], 1024);
    assert_eq!(server.stored_files(), 1);
}

#[tokio::test]
async fn uploading_needs_membership_and_leaves_nothing_behind_when_refused() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    let (status, body) = upload(
        &server,
        Some(&bob),
        room,
        multipart("drive-by.txt", "text/plain", b"spam", &[]),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("join the room")),
        "{body}"
    );
    assert_eq!(server.snapshot(&alice, room).await, json!([]));
    assert_eq!(server.stored_files(), 0, "a refused upload stores no bytes");

    // A banned user is refused the same way.
    server.join(&bob, "acme/general").await;
    let (status, _) = server
        .post(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/bans"),
            json!({ "username": "bob" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = upload(
        &server,
        Some(&bob),
        room,
        multipart("again.txt", "text/plain", b"spam", &[]),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(server.stored_files(), 0);

    // Once a member, the upload works, in a thread too; a thread that does not exist is
    // refused without keeping the bytes.
    let carol = server.user("carol").await;
    server.join(&carol, "acme/general").await;
    let head = server.say(&alice, room, "post the logs here").await;
    let before = server.snapshot(&alice, room).await;
    let (status, body) = upload(
        &server,
        Some(&carol),
        room,
        multipart(
            "log.txt",
            "text/plain",
            b"all good",
            &[("parentId", &Id::generate().to_hex())],
        ),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        server.stored_files(),
        0,
        "bytes of a refused upload are removed"
    );
    assert_eq!(server.snapshot(&alice, room).await, before);
    let (status, m) = upload(
        &server,
        Some(&carol),
        room,
        multipart(
            "log.txt",
            "text/plain",
            b"all good",
            &[("parentId", head["id"].as_str().expect("id"))],
        ),
    )
    .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["parentId"], head["id"]);
    assert_eq!(server.stored_files(), 1);
}

#[tokio::test]
async fn private_files_are_404_to_outsiders() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mallory = server.user("mallory").await;
    let room = server.room(&alice, "acme/staff", RoomKind::Private).await;
    let (status, m) = upload(
        &server,
        Some(&alice),
        room,
        multipart("plan.txt", "text/plain", b"secret plan", &[]),
    )
    .await;
    assert_eq!(status, 200, "{m}");
    let url = m["attachments"][0]["url"]
        .as_str()
        .expect("url")
        .to_string();

    let response = download(&server, Some(&alice.token), &url).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        b"secret plan"
    );

    for token in [Some(mallory.token.as_str()), None] {
        let response = download(&server, token, &url).await;
        assert_eq!(response.status().as_u16(), 404, "as {token:?}");
        let text = response.text().await.expect("body");
        assert!(!text.contains("secret"), "{text}");
        let body: Value = serde_json::from_str(&text).expect("a JSON error");
        assert!(body["error"].is_string(), "{body}");
    }
    // Outsiders cannot upload into it either.
    let (status, body) = upload(
        &server,
        Some(&mallory),
        room,
        multipart("x.txt", "text/plain", b"x", &[]),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = upload(
        &server,
        None,
        room,
        multipart("x.txt", "text/plain", b"x", &[]),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(ids(&server.snapshot(&alice, room).await), [id_of(&m)]);

    // Unknown and malformed file ids.
    let response = download(&server, None, &format!("/files/{}/x.txt", Id::generate())).await;
    assert_eq!(response.status().as_u16(), 404);
    let response = download(&server, None, "/files/nope/x.txt").await;
    assert_eq!(response.status().as_u16(), 400);
}

#[tokio::test]
async fn malformed_uploads_are_400() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;

    // No `file` part.
    let body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nhello\r\n--{BOUNDARY}--\r\n"
    );
    let (status, body) = upload(&server, Some(&alice), room, body.into_bytes()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("file")),
        "{body}"
    );
    // Not multipart at all.
    let (status, body) = server
        .raw(
            reqwest::Method::POST,
            Some(&alice.token),
            &format!("/v1/rooms/{room}/files"),
            "application/json",
            "{}",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_string(), "{body}");
    // A truncated multipart body.
    let mut truncated = multipart("a.txt", "text/plain", b"abc", &[]);
    truncated.truncate(truncated.len() - 10);
    let (status, body) = upload(&server, Some(&alice), room, truncated).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(server.snapshot(&alice, room).await, json!([]));
}

#[tokio::test]
async fn deleting_the_message_takes_its_file_down() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let room = server.room(&alice, "acme/general", RoomKind::Public).await;
    let (status, m) = upload(
        &server,
        Some(&alice),
        room,
        multipart("oops.txt", "text/plain", b"my password", &[]),
    )
    .await;
    assert_eq!(status, 200, "{m}");
    let url = m["attachments"][0]["url"]
        .as_str()
        .expect("url")
        .to_string();
    assert_eq!(download(&server, None, &url).await.status().as_u16(), 200);

    let (status, _) = server
        .delete(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages/{}", id_of(&m)),
        )
        .await;
    assert_eq!(status, 204);
    let response = download(&server, Some(&alice.token), &url).await;
    assert_eq!(response.status().as_u16(), 404);
    let body: Value =
        serde_json::from_str(&response.text().await.expect("body")).expect("JSON error");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(server.stored_files(), 0);

    // A thread head kept as a placeholder loses its file too.
    let (status, head) = upload(
        &server,
        Some(&alice),
        room,
        multipart("head.txt", "text/plain", b"head", &[]),
    )
    .await;
    assert_eq!(status, 200, "{head}");
    let url = head["attachments"][0]["url"]
        .as_str()
        .expect("url")
        .to_string();
    let (status, _) = server
        .post(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages"),
            json!({ "text": "reply", "parentId": head["id"] }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .delete(
            Some(&alice.token),
            &format!("/v1/rooms/{room}/chatMessages/{}", id_of(&head)),
        )
        .await;
    assert_eq!(status, 204);
    let (_, placeholder) = server
        .get(
            None,
            &format!("/v1/rooms/{room}/chatMessages/{}", id_of(&head)),
        )
        .await;
    assert_eq!(placeholder["deleted"], true);
    assert_eq!(placeholder["attachments"], json!([]));
    assert_eq!(download(&server, None, &url).await.status().as_u16(), 404);
    assert_eq!(server.stored_files(), 0);
}
