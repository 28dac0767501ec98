//! Messages on the bus: the hash notice an actor publishes when its snapshot changes, and the
//! per-coin price event. Both are JSON; decoding is strict about what is used and lenient about
//! what is added, so a newer publisher does not break an older subscriber.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::SnapshotHash;

/// Largest notice a subscriber will decode. A real one is under 200 bytes; anything near this
/// is not a notice.
pub const MAX_NOTICE_BYTES: usize = 4096;

/// "The snapshot of this kind is now the one with this hash."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashNotice {
    pub hash: SnapshotHash,
    /// When the publisher first observed this data.
    #[serde(with = "time::serde::rfc3339")]
    pub as_of: OffsetDateTime,
    pub count: u64,
    pub source: String,
    /// The notice-stream sequence of the notice of this kind that this one follows (0: none
    /// did). The publisher's stream refuses the notice unless that is still the last one, so
    /// a publisher that lost its lease cannot announce over a newer one; and followers order
    /// notices by it rather than by `as_of`, a clock that differs between publishers. Absent
    /// from notices of versions before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<u64>,
}

/// A coin's price changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceEvent {
    pub symbol: String,
    pub price_usd: f64,
    #[serde(with = "time::serde::rfc3339")]
    pub as_of: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    #[error("notice is {0} bytes, more than {MAX_NOTICE_BYTES}")]
    TooLarge(usize),
    #[error("notice does not decode: {0}")]
    Malformed(String),
}

impl NoticeError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            NoticeError::TooLarge(_) => "too_large",
            NoticeError::Malformed(_) => "malformed",
        }
    }
}

/// Decodes a bus message, refusing anything larger than a notice can be before parsing it.
fn decode_small<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, NoticeError> {
    if bytes.len() > MAX_NOTICE_BYTES {
        return Err(NoticeError::TooLarge(bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| NoticeError::Malformed(e.to_string()))
}

impl HashNotice {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("notice serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, NoticeError> {
        decode_small(bytes)
    }
}

impl PriceEvent {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("event serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, NoticeError> {
        decode_small(bytes)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;

    #[test]
    fn notice_round_trip_and_contract_shape() {
        let n = HashNotice {
            hash: SnapshotHash::of(b"x"),
            as_of: datetime!(2026-11-26 10:00:00.5 UTC),
            count: 3,
            source: "coinmarketcap".into(),
            follows: Some(7),
        };
        let v: serde_json::Value = serde_json::from_slice(&n.to_bytes()).unwrap();
        assert_eq!(v["as_of"], "2026-11-26T10:00:00.5Z");
        assert_eq!(v["count"], 3);
        assert_eq!(v["follows"], 7);
        assert_eq!(v["hash"].as_str().unwrap().len(), 64);
        assert_eq!(HashNotice::decode(&n.to_bytes()).unwrap(), n);
    }

    #[test]
    fn notice_tolerates_added_fields_and_rejects_junk() {
        let h = SnapshotHash::of(b"x");
        let ok = format!(
            r#"{{"hash":"{h}","as_of":"2026-01-01T00:00:00Z","count":1,"source":"s","new":[1]}}"#
        );
        assert!(HashNotice::decode(ok.as_bytes()).is_ok());
        assert_eq!(
            HashNotice::decode(&vec![b' '; 5000]).unwrap_err().reason(),
            "too_large"
        );
        for junk in [
            &b""[..],
            b"{}",
            b"null",
            b"\xff\xfe",
            br#"{"hash":"abc","as_of":"x","count":1,"source":"s"}"#,
        ] {
            assert_eq!(HashNotice::decode(junk).unwrap_err().reason(), "malformed");
        }
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = HashNotice::decode(&bytes);
            let _ = PriceEvent::decode(&bytes);
        }
    }
}
