//! Per-caller request budgets with Gitter's `X-RateLimit-*` headers.
//!
//! A budget belongs to whoever the request *proves* to be, never to the string it carries:
//! keyed on an unchecked bearer token, a random token on each request would never be limited.
//! So the middleware checks the credential first (token look-ups are cached, see
//! `weft_chat::TOKEN_CACHE_TTL`): a request that authenticates counts against its user; one
//! without credentials counts against its client address (IPv6 by /64, since one host holds
//! a whole /64); one whose credential fails counts against its address in a much smaller
//! budget of failures, which password sign-in shares, so guessing tokens or passwords (and
//! burning argon2 CPU) stops quickly. The table of budgets is bounded: least recently used
//! windows are dropped first.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lru::LruCache;

use crate::{ApiError, AppState};

/// Budgets remembered at most.
pub const MAX_TRACKED_CALLERS: usize = 100_000;

/// Failed credentials (unknown tokens, wrong passwords) an address may present per minute.
pub const FAILURES_PER_MINUTE: u32 = 20;

const WINDOW: Duration = Duration::from_secs(60);

/// Fixed-window counters per caller.
#[derive(Clone)]
pub struct RateLimiter {
    per_minute: u32,
    windows: Arc<Mutex<LruCache<String, (Instant, u32)>>>,
}

/// The outcome of counting one request.
struct Budget {
    remaining: u32,
    reset_in: Duration,
    allowed: bool,
}

/// Who a request counts against, as the middleware found out; handlers that check
/// credentials themselves (password sign-in) record failures against it.
#[derive(Debug, Clone)]
pub struct ClientKey(String);

impl RateLimiter {
    /// A limiter allowing `per_minute` requests per caller per minute (0: unlimited).
    pub fn new(per_minute: u32) -> Self {
        let size = NonZeroUsize::new(MAX_TRACKED_CALLERS).unwrap_or(NonZeroUsize::MIN);
        RateLimiter {
            per_minute,
            windows: Arc::new(Mutex::new(LruCache::new(size))),
        }
    }

    fn count(&self, key: &str, limit: u32, add: u32) -> Budget {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let entry = windows.get_or_insert_mut(key.to_string(), || (now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(add);
        Budget {
            remaining: limit.saturating_sub(entry.1),
            reset_in: WINDOW.saturating_sub(now.duration_since(entry.0)),
            allowed: entry.1 <= limit,
        }
    }

    /// Whether the caller may still try a credential (it has failures left this minute).
    pub fn may_try_credentials(&self, client: &ClientKey) -> bool {
        self.per_minute == 0
            || self
                .count(&failures_key(client), FAILURES_PER_MINUTE, 0)
                .remaining
                > 0
    }

    /// Counts a failed credential (a wrong password) against the caller's address.
    pub fn record_failure(&self, client: &ClientKey) {
        if self.per_minute > 0 {
            self.count(&failures_key(client), FAILURES_PER_MINUTE, 1);
        }
    }

    /// How many budgets are remembered (bounded by [`MAX_TRACKED_CALLERS`]).
    pub fn tracked(&self) -> usize {
        self.windows.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn failures_key(client: &ClientKey) -> String {
    format!("f:{}", client.0)
}

/// The address part that identifies a client: the whole IPv4 address, an IPv6 /64.
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The client a request comes from: the peer, or, when the peer is a trusted proxy, the
/// nearest untrusted address its `X-Forwarded-For` names (each proxy appends the address it
/// saw, so only the part added by trusted proxies can be believed).
fn client_ip(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .copied()
        .unwrap_or(peer)
}

fn too_many(reset_in: Duration, message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, message).into_response();
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from(reset_in.as_secs().max(1)));
    response
}

/// Counts the request against its caller's budget; 429 once it is spent.
pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limiter = &state.limiter;
    let (mut parts, body) = request.into_parts();
    let address = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| {
            address_key(client_ip(
                c.0.ip(),
                &parts.headers,
                &state.config.trusted_proxies,
            ))
        })
        .unwrap_or_else(|| "unknown".to_string());
    let client = ClientKey(address);
    parts.extensions.insert(client.clone());
    if limiter.per_minute == 0 {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let bearer = crate::extract::bearer_token(&parts);
    let credential = bearer
        .clone()
        .or_else(|| crate::extract::session_cookie(&parts.headers));
    let key = match credential {
        None => format!("a:{}", client.0),
        // A valid credential always counts against its own user, even from an address that
        // is guessing: others on that address are not limited by the guesser.
        Some(secret) => match state.chat.authenticate_token(&secret).await {
            Ok(actor) => {
                let who = actor
                    .user
                    .as_ref()
                    .map(|u| u.id.to_hex())
                    .unwrap_or_default();
                // A bearer token is checked now, once; a cookie is checked again by the
                // extractor, which also applies the cross-site rule to it.
                if bearer.is_some() {
                    parts.extensions.insert(actor);
                }
                format!("u:{who}")
            }
            // A wrong bearer token is a guess. A stale session cookie is a browser that
            // signed out or whose session expired: it counts as anonymous, or a visitor
            // would be locked out after a few pages.
            Err(_) if bearer.is_some() => {
                if !limiter.may_try_credentials(&client) {
                    return too_many(
                        WINDOW,
                        "too many failed sign-ins from this address; wait a minute",
                    );
                }
                limiter.record_failure(&client);
                format!("a:{}", client.0)
            }
            Err(_) => format!("a:{}", client.0),
        },
    };
    let request = Request::from_parts(parts, body);
    let budget = limiter.count(&key, limiter.per_minute, 1);
    let mut response = if budget.allowed {
        next.run(request).await
    } else {
        too_many(budget.reset_in, "rate limit exceeded; wait before retrying")
    };
    let reset_at = weft_core::now_millis() / 1000 + budget.reset_in.as_secs() as i64;
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(limiter.per_minute));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(budget.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset_at));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_stays_bounded_under_a_flood_of_keys() {
        let limiter = RateLimiter::new(10);
        for i in 0..(MAX_TRACKED_CALLERS + 5_000) {
            limiter.count(&format!("a:{i}"), 10, 1);
        }
        assert_eq!(limiter.tracked(), MAX_TRACKED_CALLERS);
    }

    #[test]
    fn an_ipv6_host_is_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(address_key(mapped), "192.0.2.7");
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "127.0.0.1".parse().expect("ip");
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.9, 203.0.113.5"),
        );
        let real: IpAddr = "203.0.113.5".parse().expect("ip");
        assert_eq!(
            client_ip(proxy, &headers, &[proxy]),
            real,
            "the address the proxy saw"
        );
        assert_eq!(
            client_ip(proxy, &headers, &[]),
            proxy,
            "an untrusted peer is who it is"
        );
        let stranger: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!(
            client_ip(stranger, &headers, &[proxy]),
            stranger,
            "anyone can send the header"
        );
        assert_eq!(
            client_ip(proxy, &axum::http::HeaderMap::new(), &[proxy]),
            proxy
        );
    }

    #[test]
    fn failures_have_their_own_small_budget() {
        let limiter = RateLimiter::new(1000);
        let client = ClientKey("192.0.2.1".into());
        for _ in 0..FAILURES_PER_MINUTE {
            assert!(limiter.may_try_credentials(&client));
            limiter.record_failure(&client);
        }
        assert!(!limiter.may_try_credentials(&client));
        assert!(limiter.may_try_credentials(&ClientKey("192.0.2.2".into())));
    }
}
