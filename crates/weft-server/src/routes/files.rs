//! `/files/:id/:name`: downloads, with the room's read permission.

use axum::Router;
use axum::extract::State;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::extract::{MaybeCaller, Path, parse_id};
use crate::{ApiResult, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/files/{file_id}/{name}", get(download))
}

/// Types a browser may show inline; everything else downloads, so an uploaded HTML or SVG
/// file can never run script on weft's origin.
fn inline_safe(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/png"
            | "image/jpeg"
            | "image/gif"
            | "image/webp"
            | "video/mp4"
            | "video/webm"
            | "audio/mpeg"
            | "audio/ogg"
            | "text/plain"
            | "application/pdf"
    )
}

async fn download(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((file_id, _name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let download = state
        .chat
        .download(&caller.0, parse_id(&file_id, "file id")?)
        .await?;
    let file = download.file;
    let content_type = if inline_safe(&file.content_type) {
        file.content_type.clone()
    } else {
        "application/octet-stream".into()
    };
    let disposition = if inline_safe(&file.content_type) {
        "inline"
    } else {
        "attachment"
    };
    let ascii_name: String = file
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (CONTENT_TYPE, content_type),
            (
                CONTENT_DISPOSITION,
                format!("{disposition}; filename=\"{ascii_name}\""),
            ),
            (X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (CACHE_CONTROL, "private, max-age=86400".to_string()),
        ],
        download.bytes,
    )
        .into_response())
}
