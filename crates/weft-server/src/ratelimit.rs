//! Per-caller request budgets with Gitter's `X-RateLimit-*` headers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, AppState};

/// A fixed-window counter per caller key (token, or address without one).
#[derive(Clone)]
pub struct RateLimiter {
    per_minute: u32,
    windows: Arc<Mutex<HashMap<String, (Instant, u32)>>>,
}

/// The outcome of counting one request.
struct Budget {
    remaining: u32,
    reset_in: Duration,
    allowed: bool,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` requests per caller per minute (0: unlimited).
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            windows: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn count(&self, key: &str) -> Budget {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let entry = windows.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        Budget {
            remaining: self.per_minute.saturating_sub(entry.1),
            reset_in: Duration::from_secs(60).saturating_sub(now.duration_since(entry.0)),
            allowed: entry.1 <= self.per_minute,
        }
    }
}

/// Counts the request against its caller's budget; 429 once it is spent.
pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limiter = &state.limiter;
    if limiter.per_minute == 0 {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let key = crate::extract::bearer_token(&parts)
        .or_else(|| crate::extract::session_cookie(&parts.headers))
        .map(|t| format!("t:{t}"))
        .or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| format!("a:{}", c.0.ip()))
        })
        .unwrap_or_else(|| "anonymous".to_string());
    let request = Request::from_parts(parts, body);
    let budget = limiter.count(&key);
    let mut response = if budget.allowed {
        next.run(request).await
    } else {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded; wait before retrying",
        )
        .into_response()
    };
    let reset_at = weft_core::now_millis() / 1000 + budget.reset_in.as_secs() as i64;
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(limiter.per_minute));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(budget.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset_at));
    if !budget.allowed {
        headers.insert(
            "retry-after",
            HeaderValue::from(budget.reset_in.as_secs().max(1)),
        );
    }
    response
}
