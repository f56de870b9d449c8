//! Weft's chat domain, free of I/O: identifiers, the models the store keeps and the API shows,
//! validation of user input, the permission rules and the one event enum every change becomes.
//!
//! Nothing in here knows about Matrix, HTTP or a database; the bridge, the server and the store
//! all speak these types.

pub mod event;
pub mod id;
pub mod model;
pub mod permission;
pub mod validate;

pub use event::{Event, LoggedEvent, Origin};
pub use id::Id;
pub use model::*;

/// Milliseconds since the Unix epoch, the one timestamp representation weft stores.
pub type Millis = i64;

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as Millis
}

/// Formats milliseconds since the epoch as Gitter did: ISO 8601 with milliseconds and `Z`.
pub fn iso8601(ms: Millis) -> String {
    let dt = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_has_gitter_shape() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_606_000_000_123), "2020-11-21T23:06:40.123Z");
    }
}
