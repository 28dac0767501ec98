//! Subject names, fixed by the contract in DESIGN.md.
//!
//! ## Symbol tokens
//!
//! A subject token may not contain `.`, `*`, `>` or white space, and symbols can (CryptoCompare
//! writes `HOT*` for the second coin called HOT). **Rule:** ASCII letters, digits, `-` and `_`
//! stand for themselves; every other byte of the symbol's UTF-8 is written `~` followed by two
//! upper-case hex digits (`HOT*` → `HOT~2A`, `A B` → `A~20B`, `~` → `~7E`); the empty symbol is
//! `~`. The mapping is one-to-one, so [`decode_symbol`] inverts it exactly.

use topcoins_schemas::Kind;

/// Every kind of snapshot that travels the bus. **A new kind is one entry here** (and its
/// [`Snapshot`](topcoins_schemas::Snapshot) type in schemas): its notice subject follows from
/// its name ([`hash_subject`]), the notice stream keeps its notices, and every follower can
/// take it in.
pub const KINDS: &[Kind] = &[
    Kind::PRICES,
    Kind::RANKING,
    <topcoins_schemas::Kraken as topcoins_schemas::Exchange>::KIND,
    <topcoins_schemas::Coinbase as topcoins_schemas::Exchange>::KIND,
    <topcoins_schemas::Binance as topcoins_schemas::Exchange>::KIND,
    <topcoins_schemas::Kraken as topcoins_schemas::Exchange>::MARKETS_KIND,
    <topcoins_schemas::Coinbase as topcoins_schemas::Exchange>::MARKETS_KIND,
    <topcoins_schemas::Binance as topcoins_schemas::Exchange>::MARKETS_KIND,
    topcoins_schemas::RanksSnapshot::KIND,
];

/// An API key was revoked: `{"key_id":"key_…"}`. Every API node drops what it cached of that
/// key, so the revocation holds everywhere within a second (a node that missed the message
/// forgets cached keys after their time to live anyway).
pub const KEY_REVOKED: &str = "topcoins.v1.keys.revoked";

/// A stored alert, for the user's live streams (`/v1/stream`'s `alert` event):
/// `topcoins.v1.stream.alerts.<user_id>`, published by `topcoins alerts` after the commit.
pub fn stream_alerts_subject(user_id: &str) -> String {
    format!("{STREAM_ALERTS_PREFIX}.{user_id}")
}
/// Every user's [`stream_alerts_subject`], for API nodes to subscribe to.
pub const STREAM_ALERTS_ALL: &str = "topcoins.v1.stream.alerts.*";
/// The prefix of [`stream_alerts_subject`]; the user id is the token after it.
pub const STREAM_ALERTS_PREFIX: &str = "topcoins.v1.stream.alerts";

/// Prefix of per-coin price events; the symbol token follows.
pub const PRICE_PREFIX: &str = "topcoins.v1.price.";
/// Every per-coin price event.
pub(crate) const PRICE_ALL: &str = "topcoins.v1.price.*";
/// Every topcoins subject, for tools that watch the whole bus (see [`crate::watch_all`]).
pub(crate) const ALL: &str = "topcoins.>";

/// The plain publish → subscribe that propagation benchmarks measure as their baseline.
pub const BENCH_BASELINE: &str = "topcoins-bench.baseline";

/// JetStream stream that keeps the hash notices (the last few per subject).
pub const NOTICE_STREAM: &str = "TOPCOINS_NOTICES";
/// JetStream stream the recorder reads: a mirror of [`NOTICE_STREAM`] that keeps every
/// notice for the stream retention (see [`crate::durable`]).
pub const RECORD_STREAM: &str = "TOPCOINS_RECORD";
/// The recorder's durable consumer on the record stream (see [`crate::durable`]); the actors'
/// snapshot pruning spares what it has not acknowledged yet.
pub const RECORDER_CONSUMER: &str = "topcoins-recorder";
/// JetStream stream holding snapshots by hash (see [`crate::store`]).
pub const SNAPSHOT_STREAM: &str = "TOPCOINS_SNAPSHOTS";
/// Root of the snapshot subjects: `topcoins-snapshots.<hash>.<chunk>`. A root of its own, so
/// a subscriber to `topcoins.>` gets events, not megabytes of snapshots.
pub const SNAPSHOT_PREFIX: &str = "topcoins-snapshots";

/// The subject of chunk `chunk` of the snapshot named `hash`.
pub fn snapshot_subject(hash: &topcoins_schemas::SnapshotHash, chunk: usize) -> String {
    format!("{SNAPSHOT_PREFIX}.{hash}.{chunk}")
}

/// The hash-notice subject of a kind: `topcoins.v1.<kind>.hash` (`topcoins.v1.prices.hash`).
pub fn hash_subject(kind: Kind) -> String {
    format!("{NOTICE_ROOT}.{kind}.hash")
}

/// The *still current* subject of a kind: `topcoins.v1.<kind>.current`. A poll of a
/// [`CONFIRMED`](topcoins_schemas::Snapshot::CONFIRMED) kind that found its data unchanged
/// publishes a notice here (the same hash, the poll's `as_of`): the recorder keeps one sample
/// per poll from these; API nodes do not subscribe to them.
pub fn current_subject(kind: Kind) -> String {
    format!("{NOTICE_ROOT}.{kind}.current")
}

/// The subjects the notice stream keeps for `kind`: its hash notices and its still-current
/// notices.
pub(crate) fn stream_subjects(kind: Kind) -> [String; 2] {
    [hash_subject(kind), current_subject(kind)]
}

/// The kind whose notices travel on `subject`, if it is one of [`KINDS`].
pub fn kind_of_hash_subject(subject: &str) -> Option<Kind> {
    KINDS.iter().copied().find(|kind| {
        subject.len() == NOTICE_ROOT.len() + kind.as_str().len() + 6
            && subject == hash_subject(*kind)
    })
}

const NOTICE_ROOT: &str = "topcoins.v1";

/// The price-event subject of a symbol.
pub fn price_subject(symbol: &str) -> String {
    let mut subject = String::with_capacity(PRICE_PREFIX.len() + symbol.len());
    subject.push_str(PRICE_PREFIX);
    subject.push_str(&encode_symbol(symbol));
    subject
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Encodes a symbol as one subject token (see the module docs for the rule).
pub fn encode_symbol(symbol: &str) -> String {
    if symbol.is_empty() {
        return "~".to_owned();
    }
    let mut token = String::with_capacity(symbol.len());
    for &b in symbol.as_bytes() {
        if is_plain(b) {
            token.push(b as char);
        } else {
            token.push('~');
            token.push_str(&format!("{b:02X}"));
        }
    }
    token
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a symbol token: {0:?}")]
pub struct TokenError(pub String);

/// Inverts [`encode_symbol`]; anything `encode_symbol` could not have produced is an error.
pub fn decode_symbol(token: &str) -> Result<String, TokenError> {
    if token == "~" {
        return Ok(String::new());
    }
    let err = || TokenError(token.to_owned());
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'~' => {
                let hex = token.get(i + 1..i + 3).ok_or_else(err)?;
                if !hex
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
                {
                    return Err(err());
                }
                let b = u8::from_str_radix(hex, 16).map_err(|_| err())?;
                if is_plain(b) {
                    return Err(err()); // would have been written plainly
                }
                out.push(b);
                i += 3;
            }
            b if is_plain(b) => {
                out.push(b);
                i += 1;
            }
            _ => return Err(err()),
        }
    }
    if out.is_empty() {
        return Err(err());
    }
    String::from_utf8(out).map_err(|_| err())
}

/// The symbol named by a price-event subject.
pub fn symbol_of_price_subject(subject: &str) -> Result<String, TokenError> {
    let token = subject
        .strip_prefix(PRICE_PREFIX)
        .ok_or_else(|| TokenError(subject.to_owned()))?;
    decode_symbol(token)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn examples_from_the_rule() {
        assert_eq!(encode_symbol("BTC"), "BTC");
        assert_eq!(encode_symbol("HOT*"), "HOT~2A");
        assert_eq!(encode_symbol("A B"), "A~20B");
        assert_eq!(encode_symbol("a.b>c"), "a~2Eb~3Ec");
        assert_eq!(encode_symbol("~"), "~7E");
        assert_eq!(encode_symbol(""), "~");
        assert_eq!(encode_symbol("€"), "~E2~82~AC");
        assert_eq!(price_subject("HOT*"), "topcoins.v1.price.HOT~2A");
        assert_eq!(
            symbol_of_price_subject("topcoins.v1.price.HOT~2A").unwrap(),
            "HOT*"
        );
    }

    #[test]
    fn notice_subjects_are_the_contract_s_and_map_back() {
        assert_eq!(hash_subject(Kind::PRICES), "topcoins.v1.prices.hash");
        assert_eq!(hash_subject(Kind::RANKING), "topcoins.v1.ranking.hash");
        for kind in KINDS {
            assert_eq!(kind_of_hash_subject(&hash_subject(*kind)), Some(*kind));
        }
        for other in [
            "topcoins.v1.price.hash",
            "topcoins.v1.prices.hashx",
            "topcoins.v1.prices",
            "",
        ] {
            assert_eq!(kind_of_hash_subject(other), None, "{other}");
        }
    }

    #[test]
    fn rejects_tokens_the_encoder_never_writes() {
        for bad in ["~2", "~zz", "~2a", "~41", "a.b", "~FF", "", "x y"] {
            assert!(decode_symbol(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trip_and_valid_token(symbol in any::<String>()) {
            let token = encode_symbol(&symbol);
            prop_assert!(!token.is_empty());
            prop_assert!(token.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>')));
            prop_assert_eq!(decode_symbol(&token).unwrap(), symbol);
        }

        #[test]
        fn decoding_arbitrary_text_never_panics(token in any::<String>()) {
            if let Ok(symbol) = decode_symbol(&token) {
                prop_assert_eq!(encode_symbol(&symbol), token);
            }
        }
    }
}
