//! Opaque identifiers: 12 bytes shown as 24 lowercase hex characters, the shape Gitter's
//! (MongoDB ObjectId) ids had, so existing clients that validate ids keep working.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

/// An identifier of a user, room, group, message or token.
///
/// The first four bytes are the creation time in seconds, then five random bytes chosen once
/// per process and a three-byte counter, as in MongoDB's ObjectId: unique across processes,
/// and one process's ids increase, so a new row's id lands at the end of an index rather
/// than on a random page of it (a hundred messages written together touch one page of the
/// id index instead of a hundred). Ids are not secrets.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id([u8; 12]);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// This process's five random bytes.
static PROCESS: std::sync::OnceLock<[u8; 5]> = std::sync::OnceLock::new();

impl Id {
    /// A new, unique id.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 12];
        let secs = (crate::now_millis() / 1000) as u32;
        bytes[..4].copy_from_slice(&secs.to_be_bytes());
        bytes[4..9].copy_from_slice(PROCESS.get_or_init(rand::random));
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        bytes[9..].copy_from_slice(&count.to_be_bytes()[1..]);
        Id(bytes)
    }

    /// The 24-character hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The text given was not 24 hexadecimal characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id: expected 24 hexadecimal characters")]
pub struct InvalidId;

impl FromStr for Id {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        if s.len() != 24 {
            return Err(InvalidId);
        }
        let mut bytes = [0u8; 12];
        hex::decode_to_slice(s.to_ascii_lowercase(), &mut bytes).map_err(|_| InvalidId)?;
        Ok(Id(bytes))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.to_hex())
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_unique() {
        let a = Id::generate();
        let b = Id::generate();
        assert_ne!(a, b);
        assert_eq!(a.to_hex().len(), 24);
        assert_eq!(a.to_hex().parse::<Id>(), Ok(a));
    }

    #[test]
    fn one_process_ids_increase() {
        let ids: Vec<Id> = (0..1000).map(|_| Id::generate()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids sort in creation order"
        );
        assert_eq!(
            ids[0].0[4..9],
            ids[999].0[4..9],
            "one process, one random part"
        );
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!("xyz".parse::<Id>(), Err(InvalidId));
        assert_eq!("zzzzzzzzzzzzzzzzzzzzzzzz".parse::<Id>(), Err(InvalidId));
        assert!("5fb9a1c2e4b0c9a1d2e3f4a5".parse::<Id>().is_ok());
    }
}
