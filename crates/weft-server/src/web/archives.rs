//! Archives that work without JavaScript and that search engines can crawl: a year calendar
//! of the days with messages, one page per day, and a sitemap of public rooms.

use std::collections::HashMap;
use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::{Date, Month};
use weft_chat::{Actor, ChatError};
use weft_core::{Room, RoomKind};

use super::html::{self, Head, esc};
use super::room::server_error;
use super::{is_https, not_found, page, viewer};
use crate::AppState;

const DAY_MS: i64 = 86_400_000;
/// Julian day number of 1970-01-01.
const EPOCH_JULIAN: i32 = 2_440_588;
/// Messages on one archive page; busier days continue on a next page.
const DAY_PAGE: i64 = 500;

fn day_number(date: Date) -> i64 {
    i64::from(date.to_julian_day() - EPOCH_JULIAN)
}

fn date_of(day: i64) -> Option<Date> {
    Date::from_julian_day(i32::try_from(day).ok()? + EPOCH_JULIAN).ok()
}

fn ymd(date: Date) -> String {
    format!(
        "{:04}/{:02}/{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// The room behind an archive URL, if the viewer may read it.
async fn readable_room(
    state: &AppState,
    actor: &Actor,
    community: &str,
    room: &str,
) -> Result<Option<Room>, ChatError> {
    match state
        .chat
        .room_by_uri(actor, &format!("{community}/{room}"))
        .await
    {
        Ok(room) => Ok(Some(room)),
        Err(ChatError::NotFound(_) | ChatError::Forbidden(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn head_for(room: &Room, title: String) -> Head {
    let mut head = Head::new(title);
    head.noindex = room.noindex || room.kind != RoomKind::Public;
    head.description = (!room.topic.is_empty()).then(|| room.topic.clone());
    head
}

fn archive_header(out: &mut String, room: &Room, uri: &str, subtitle: &str) {
    let base = format!("/{}", html::path(uri));
    let _ = write!(
        out,
        "<main id=\"main\" class=\"narrow archives\"><p class=\"crumbs\"><a href=\"{base}\">{uri}</a> › \
         <a href=\"{base}/archives\">Archives</a></p><h1>{name}: {subtitle}</h1><p class=\"topic\">{topic}</p>",
        base = esc(&base),
        uri = esc(uri),
        name = esc(&room.name),
        subtitle = esc(subtitle),
        topic = esc(&room.topic),
    );
}

#[derive(Deserialize)]
pub struct YearQuery {
    year: Option<i32>,
}

/// `/{community}/{room}/archives`: a year of days as a heat map; each day with messages
/// links to its page.
pub async fn calendar(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((community, room_name)): Path<(String, String)>,
    Query(query): Query<YearQuery>,
) -> Response {
    let actor = viewer(&state, &headers).await;
    let room = match readable_room(&state, &actor, &community, &room_name).await {
        Ok(Some(room)) => room,
        Ok(None) => return not_found(&actor, &headers),
        Err(e) => return server_error(&actor, e),
    };
    let uri = format!("{community}/{room_name}");
    let today = time::OffsetDateTime::now_utc().date();
    let first_year = date_of(room.created_at.div_euclid(DAY_MS))
        .map(|d| d.year())
        .unwrap_or(today.year())
        .min(today.year());
    let year = query
        .year
        .unwrap_or(today.year())
        .clamp(first_year, today.year());
    let (Ok(start), Ok(end)) = (
        Date::from_calendar_date(year, Month::January, 1),
        Date::from_calendar_date(year + 1, Month::January, 1),
    ) else {
        return not_found(&actor, &headers);
    };
    let counts: HashMap<i64, i64> = match state
        .chat
        .views()
        .message_days(
            room.id,
            day_number(start) * DAY_MS,
            day_number(end) * DAY_MS,
        )
        .await
    {
        Ok(days) => days.into_iter().collect(),
        Err(e) => return server_error(&actor, e.into()),
    };
    let mut out = String::with_capacity(64 * 1024);
    archive_header(&mut out, &room, &uri, &year.to_string());
    out.push_str("<nav class=\"years\" aria-label=\"Years\">");
    for y in first_year..=today.year() {
        if y == year {
            let _ = write!(out, "<strong aria-current=\"page\">{y}</strong> ");
        } else {
            let _ = write!(out, "<a href=\"?year={y}\">{y}</a> ");
        }
    }
    out.push_str("</nav>");
    let total: i64 = counts.values().sum();
    let busiest = counts.values().copied().max().unwrap_or(0).max(1);
    let _ = write!(
        out,
        "<p class=\"summary\">{total} messages on {} days.</p>",
        counts.len()
    );
    // Weeks as columns, Monday to Sunday as rows, the way contribution calendars look.
    out.push_str("<div class=\"heatmap\" id=\"heatmap\" role=\"list\">");
    let lead = start.weekday().number_days_from_monday();
    for _ in 0..lead {
        out.push_str("<span class=\"day pad\" aria-hidden=\"true\"></span>");
    }
    let mut day = start;
    while day < end {
        let n = counts.get(&day_number(day)).copied().unwrap_or(0);
        let label = format!(
            "{}-{:02}-{:02}",
            day.year(),
            u8::from(day.month()),
            day.day()
        );
        if n > 0 {
            let level = 1 + (n * 3 / busiest).min(3);
            let _ = write!(
                out,
                "<a role=\"listitem\" class=\"day l{level}\" href=\"archives/{path}\" title=\"{label}: {n} messages\" aria-label=\"{label}: {n} messages\"></a>",
                path = ymd(day),
            );
        } else {
            let _ = write!(
                out,
                "<span class=\"day\" title=\"{label}\" aria-hidden=\"true\"></span>"
            );
        }
        match day.next_day() {
            Some(next) => day = next,
            None => break,
        }
    }
    out.push_str("</div></main>");
    let head = head_for(&room, format!("{} archives {year}", room.name));
    page(StatusCode::OK, html::layout(&head, &actor, &out))
}

#[derive(Deserialize)]
pub struct AfterQuery {
    after: Option<i64>,
}

/// `/{community}/{room}/archives/{yyyy}/{mm}/{dd}`: one day's messages.
pub async fn day(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((community, room_name, year, month, day)): Path<(String, String, i32, u8, u8)>,
    Query(query): Query<AfterQuery>,
) -> Response {
    let actor = viewer(&state, &headers).await;
    let Some(date) = Month::try_from(month)
        .ok()
        .and_then(|m| Date::from_calendar_date(year, m, day).ok())
    else {
        return not_found(&actor, &headers);
    };
    let room = match readable_room(&state, &actor, &community, &room_name).await {
        Ok(Some(room)) => room,
        Ok(None) => return not_found(&actor, &headers),
        Err(e) => return server_error(&actor, e),
    };
    let uri = format!("{community}/{room_name}");
    let from = day_number(date) * DAY_MS;
    let after = query.after.unwrap_or(0).max(0);
    let messages = match state
        .chat
        .views()
        .messages_sent_between(room.id, from, from + DAY_MS, after, DAY_PAGE)
        .await
    {
        Ok(list) => list,
        Err(e) => return server_error(&actor, e.into()),
    };
    let label = format!("{year:04}-{month:02}-{day:02}");
    let base = format!("/{}", html::path(&uri));
    let mut out = String::with_capacity(64 * 1024);
    archive_header(&mut out, &room, &uri, &label);
    let nav = |out: &mut String| {
        out.push_str("<nav class=\"day-nav\">");
        if let Some(prev) = date.previous_day() {
            let _ = write!(
                out,
                "<a rel=\"prev\" href=\"{}/archives/{}\">← Previous day</a> ",
                esc(&base),
                ymd(prev)
            );
        }
        if let Some(next) = date.next_day() {
            let _ = write!(
                out,
                "<a rel=\"next\" href=\"{}/archives/{}\">Next day →</a>",
                esc(&base),
                ymd(next)
            );
        }
        out.push_str("</nav>");
    };
    nav(&mut out);
    if messages.is_empty() {
        out.push_str("<p class=\"empty\">No messages on this day.</p>");
    } else {
        out.push_str("<ol class=\"messages archive\" id=\"messages\">");
        for view in &messages {
            out.push_str(&html::message(view, &base, false));
        }
        out.push_str("</ol>");
    }
    if messages.len() as i64 >= DAY_PAGE
        && let Some(last) = messages.last()
    {
        let _ = write!(
            out,
            "<p><a rel=\"next\" href=\"?after={}\">Later messages of this day →</a></p>",
            last.message.seq
        );
    }
    nav(&mut out);
    out.push_str("</main>");
    let head = head_for(&room, format!("{} {label}", room.name));
    page(StatusCode::OK, html::layout(&head, &actor, &out))
}

/// `/sitemap.xml`: every public room that may be indexed, and its archive calendar.
pub async fn sitemap(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .unwrap_or("localhost");
    let origin = format!(
        "{}://{host}",
        if is_https(&headers) { "https" } else { "http" }
    );
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    let mut skip = 0;
    loop {
        let rooms = match state.chat.views().public_rooms("", 100, skip).await {
            Ok(rooms) => rooms,
            Err(e) => {
                tracing::error!(error = %e, "sitemap failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "sitemap unavailable").into_response();
            }
        };
        for room in rooms.iter().filter(|r| !r.noindex) {
            let Some(uri) = &room.uri else { continue };
            let loc = format!("{origin}/{}", html::path(uri));
            let _ = writeln!(
                out,
                "<url><loc>{loc}</loc></url>\n<url><loc>{loc}/archives</loc></url>",
                loc = esc(&loc)
            );
        }
        if rooms.len() < 100 || skip >= 20_000 {
            break;
        }
        skip += 100;
    }
    out.push_str("</urlset>\n");
    ([(CONTENT_TYPE, "application/xml; charset=utf-8")], out).into_response()
}
