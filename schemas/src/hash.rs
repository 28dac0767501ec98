//! The content address of a snapshot: blake3 over its canonical bytes, written as 64 lowercase
//! hex digits wherever it leaves the process (notices, object names, JSON, ETags).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotHash([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid snapshot hash: expected 64 lowercase hex digits")]
pub struct HashParseError;

impl SnapshotHash {
    /// The hash of `bytes`; the only way a hash is ever made from data.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Whether `bytes` are the ones this hash names. Constant-time, as blake3's own comparison.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        blake3::hash(bytes) == blake3::Hash::from_bytes(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl FromStr for SnapshotHash {
    type Err = HashParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only the canonical spelling is accepted, so one hash has one name everywhere
        // (object names, ETags) and an uppercase twin cannot sneak past a cache lookup.
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(HashParseError);
        }
        blake3::Hash::from_hex(s)
            .map(|h| Self(*h.as_bytes()))
            .map_err(|_| HashParseError)
    }
}

impl fmt::Display for SnapshotHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for SnapshotHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotHash({})", &self.to_hex()[..12])
    }
}

impl Serialize for SnapshotHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for SnapshotHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_strictness() {
        let h = SnapshotHash::of(b"abc");
        assert_eq!(h.to_hex().parse::<SnapshotHash>(), Ok(h));
        assert!(h.matches(b"abc"));
        assert!(!h.matches(b"abd"));
        assert_eq!(
            h.to_hex().to_uppercase().parse::<SnapshotHash>(),
            Err(HashParseError)
        );
        assert_eq!("".parse::<SnapshotHash>(), Err(HashParseError));
        assert_eq!("zz".repeat(32).parse::<SnapshotHash>(), Err(HashParseError));
    }

    #[test]
    fn serde_is_the_hex_string() {
        let h = SnapshotHash::of(b"x");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{}\"", h.to_hex()));
        assert_eq!(serde_json::from_str::<SnapshotHash>(&json).unwrap(), h);
        assert!(serde_json::from_str::<SnapshotHash>("\"abc\"").is_err());
    }
}
