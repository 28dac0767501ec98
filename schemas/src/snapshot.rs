//! Normalised snapshots and their canonical encoding.
//!
//! A snapshot holds market *data* only — never the time it was fetched — so that an upstream
//! that has not changed yields the same bytes, the same hash, and nothing on the bus. When the
//! data was observed travels beside it, in the [`HashNotice`](crate::HashNotice).
//!
//! Canonical bytes are [`CANONICAL_MAGIC`] followed by the [postcard] encoding of the
//! normalised value: fields in declaration order, strings and lists length-prefixed (varint),
//! floats as their 8 little-endian IEEE-754 bytes, coins in a fixed order (prices by provider
//! id; a ranking in its source's own order, which *is* the ranking), every number finite with
//! `-0` folded into `0`. Normalisation happens
//! once, in the constructors, so a value of these types is always canonical.
//!
//! Why not JSON, which earlier versions used: every API node decodes every new snapshot, and
//! that decode was the largest part of a change's way to being served. The binary form is a
//! third of the size (less for NATS to carry and blake3 to hash) and decodes five times faster
//! (`bench/RESULTS.md`). Decoding still accepts the JSON form, so snapshots stored by an
//! earlier version are read until the actors store their next change.
//!
//! [postcard]: https://postcard.jamesmunns.com/wire-format

use std::collections::{HashMap, HashSet};

use compact_str::CompactString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Kind, SnapshotHash};

/// Why a set of coins could not become a snapshot.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot has no coins")]
    Empty,
    #[error("coin {index} has an empty {field}")]
    EmptyField { index: usize, field: &'static str },
    #[error("coin {symbol} has an invalid {field}: {value}")]
    BadNumber {
        symbol: String,
        field: &'static str,
        value: f64,
    },
    #[error("coin id {0} appears more than once")]
    DuplicateId(String),
    #[error("snapshot bytes do not decode: {0}")]
    Decode(String),
}

impl SnapshotError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SnapshotError::Empty => "empty",
            SnapshotError::EmptyField { .. } => "missing_field",
            SnapshotError::BadNumber { .. } => "bad_number",
            SnapshotError::DuplicateId(_) => "duplicate",
            SnapshotError::Decode(_) => "undecodable",
        }
    }
}

/// Behaviour common to every snapshot kind: a new kind of data is a type implementing this.
pub trait Snapshot: Serialize + DeserializeOwned + Send + Sync + 'static {
    const KIND: Kind;

    /// Whether a poll that found the data unchanged says so: a small *still current* notice
    /// (the same hash, the poll's time) on the kind's `.current` subject, for the recorder,
    /// which keeps one sample per poll of such kinds (exchange tickers). API nodes do not
    /// follow those subjects. Off for the rest: an unchanged price list costs the bus nothing.
    const CONFIRMED: bool = false;

    /// Number of coins.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Provider name, e.g. `coinmarketcap`.
    fn source(&self) -> &str;

    /// The canonical bytes: equal data ⇒ equal bytes.
    fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising plain structs of strings and floats cannot fail.
        postcard::to_extend(self, CANONICAL_MAGIC.to_vec()).expect("snapshot serialises")
    }

    /// The canonical bytes and their hash, computed together so they cannot disagree.
    fn encode(&self) -> (Vec<u8>, SnapshotHash) {
        let bytes = self.canonical_bytes();
        let hash = SnapshotHash::of(&bytes);
        (bytes, hash)
    }

    /// Decodes bytes previously produced by [`Snapshot::canonical_bytes`] (or the JSON form
    /// earlier versions stored). The caller checks the hash first. A kind whose values obey
    /// rules (prices and ranking do) overrides this to re-validate, so no invalid value is
    /// ever constructed from the wire.
    fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        decode_raw(bytes)
    }
}

/// The first bytes of every canonical snapshot: names the format and its version, so a later
/// format can be told apart (the JSON that earlier versions stored starts with `{`).
pub const CANONICAL_MAGIC: &[u8; 4] = b"TCS1";

/// The value `bytes` hold, in either form [`Snapshot::decode`] accepts, before validation.
pub(crate) fn decode_raw<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SnapshotError> {
    let error = |e: &dyn std::fmt::Display| SnapshotError::Decode(e.to_string());
    if let Some(body) = bytes.strip_prefix(CANONICAL_MAGIC) {
        let (value, rest) = postcard::take_from_bytes(body).map_err(|e| error(&e))?;
        if !rest.is_empty() {
            return Err(SnapshotError::Decode(format!(
                "{} bytes after the end of the snapshot",
                rest.len()
            )));
        }
        Ok(value)
    } else if bytes.first() == Some(&b'{') {
        serde_json::from_slice(bytes).map_err(|e| error(&e))
    } else {
        let head = &bytes[..bytes.len().min(4)];
        Err(SnapshotError::Decode(format!(
            "not a snapshot: starts with {head:?}, not {CANONICAL_MAGIC:?} or a JSON object"
        )))
    }
}

/// One coin as a price source reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricedCoin {
    /// The provider's own id (CoinMarketCap numeric id, CoinGecko slug), as a string.
    pub id: CompactString,
    pub symbol: CompactString,
    pub name: CompactString,
    pub price_usd: f64,
    pub market_cap_usd: Option<f64>,
}

/// All prices from one source at one moment, sorted by provider id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceSnapshot {
    pub source: String,
    pub coins: Vec<PricedCoin>,
}

/// One coin of the ranking source's toplist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedCoin {
    pub id: CompactString,
    pub symbol: CompactString,
    pub name: CompactString,
    /// Total 24h trading volume in USD; `None` when the provider has no figure. Carried for
    /// clients, never a sort key: the provider's order is the rank.
    pub volume_24h_usd: Option<f64>,
    /// The ranking source's own USD price, used when the price source lacks the coin.
    pub price_usd: Option<f64>,
}

/// Coins in the ranking source's own order; position + 1 is the rank.
///
/// The order is the one the client read them in (page × page size + index), not a sort by
/// [`RankedCoin::volume_24h_usd`]: CryptoCompare sorts its toplist before rendering the
/// volumes, so the two disagree now and then on real bodies, and the provider's order wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankingSnapshot {
    pub source: String,
    pub coins: Vec<RankedCoin>,
}

fn check_text(index: usize, field: &'static str, value: &str) -> Result<(), SnapshotError> {
    if value.trim().is_empty() {
        return Err(SnapshotError::EmptyField { index, field });
    }
    Ok(())
}

/// A finite, non-negative number with `-0` folded into `0`.
fn check_amount(symbol: &str, field: &'static str, value: f64) -> Result<f64, SnapshotError> {
    if !value.is_finite() || value < 0.0 {
        return Err(SnapshotError::BadNumber {
            symbol: symbol.to_owned(),
            field,
            value,
        });
    }
    Ok(value + 0.0)
}

fn check_optional(
    symbol: &str,
    field: &'static str,
    value: Option<f64>,
) -> Result<Option<f64>, SnapshotError> {
    value.map(|v| check_amount(symbol, field, v)).transpose()
}

fn check_unique_ids<'a>(ids: impl Iterator<Item = &'a str>) -> Result<(), SnapshotError> {
    let mut seen = HashSet::<_, foldhash::fast::RandomState>::default();
    for id in ids {
        if !seen.insert(id) {
            return Err(SnapshotError::DuplicateId(id.to_owned()));
        }
    }
    Ok(())
}

impl PriceSnapshot {
    /// Validates and normalises. Any invalid coin rejects the whole snapshot: a price list
    /// with a NaN in it says the provider sent something we do not understand.
    pub fn new(
        source: impl Into<String>,
        mut coins: Vec<PricedCoin>,
    ) -> Result<Self, SnapshotError> {
        if coins.is_empty() {
            return Err(SnapshotError::Empty);
        }
        for (index, coin) in coins.iter_mut().enumerate() {
            check_text(index, "id", &coin.id)?;
            check_text(index, "symbol", &coin.symbol)?;
            coin.price_usd = check_amount(&coin.symbol, "price_usd", coin.price_usd)?;
            coin.market_cap_usd =
                check_optional(&coin.symbol, "market_cap_usd", coin.market_cap_usd)?;
        }
        // Ids strictly increasing means sorted and unique, which is how canonical bytes hold
        // them: a snapshot read back from the store is checked in one pass, without the sort
        // and the set (a tenth of the decode, criterion).
        if !coins.is_sorted_by(|a, b| a.id < b.id) {
            coins.sort_by(|a, b| a.id.cmp(&b.id));
            check_unique_ids(coins.iter().map(|c| c.id.as_str()))?;
        }
        Ok(Self {
            source: source.into(),
            coins,
        })
    }

    /// The coin each symbol names, keyed by the symbol in upper case.
    ///
    /// Symbols are not unique across coins. **Rule:** a symbol names the coin with the largest
    /// market cap (a coin without one counts as smallest); on a tie, the smallest provider id.
    /// Symbols are compared case-insensitively, since providers disagree on case (CoinGecko
    /// sends `btc`).
    pub fn by_symbol(&self) -> HashMap<String, &PricedCoin> {
        self.symbol_index()
            .into_iter()
            .map(|(symbol, coin)| (symbol.0.to_uppercase(), coin))
            .collect()
    }

    /// The same as [`by_symbol`](Self::by_symbol), keyed by the symbols themselves compared
    /// without regard to case: no upper-case copy is made, which is what the API node's merge
    /// uses on every new snapshot.
    pub fn symbol_index(&self) -> SymbolIndex<'_> {
        let mut map = SymbolIndex::with_capacity_and_hasher(self.coins.len(), Default::default());
        for coin in &self.coins {
            map.entry(Caseless(&coin.symbol))
                .and_modify(|held| {
                    if coin.outranks(held) {
                        *held = coin;
                    }
                })
                .or_insert(coin);
        }
        map
    }
}

/// The coin each symbol names, from [`PriceSnapshot::symbol_index`].
pub type SymbolIndex<'a> = HashMap<Caseless<'a>, &'a PricedCoin, foldhash::fast::RandomState>;

/// A symbol that compares and hashes as its upper case (`str::to_uppercase`) would, without
/// making that copy. `"btc"`, `"BTC"` and `"Btc"` are one key; so are `"ﬀ"` and `"FF"`.
#[derive(Debug, Clone, Copy)]
pub struct Caseless<'a>(pub &'a str);

impl Caseless<'_> {
    fn upper(&self) -> impl Iterator<Item = char> + '_ {
        self.0.chars().flat_map(char::to_uppercase)
    }

    /// Calls `f` with the upper-case bytes, copied onto the stack for the common short ASCII
    /// symbol.
    fn with_upper<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        const INLINE: usize = 32;
        let s = self.0;
        if s.len() <= INLINE && s.is_ascii() {
            let mut buf = [0u8; INLINE];
            let upper = &mut buf[..s.len()];
            upper.copy_from_slice(s.as_bytes());
            upper.make_ascii_uppercase();
            f(upper)
        } else {
            f(s.to_uppercase().as_bytes())
        }
    }
}

impl PartialEq for Caseless<'_> {
    fn eq(&self, other: &Self) -> bool {
        if self.0.is_ascii() && other.0.is_ascii() {
            self.0.eq_ignore_ascii_case(other.0)
        } else {
            self.upper().eq(other.upper())
        }
    }
}

impl Eq for Caseless<'_> {}

impl std::hash::Hash for Caseless<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Both ways of getting the upper case give the same bytes for equal keys, written in
        // one call, then the end marker `str` uses.
        self.with_upper(|upper| state.write(upper));
        state.write_u8(0xff);
    }
}

impl PricedCoin {
    /// Whether this coin wins a symbol over `other` (the rule of
    /// [`PriceSnapshot::by_symbol`]).
    pub fn outranks(&self, other: &PricedCoin) -> bool {
        let cap = |c: &PricedCoin| c.market_cap_usd.unwrap_or(-1.0);
        match cap(self).total_cmp(&cap(other)) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.id < other.id,
        }
    }
}

impl RankingSnapshot {
    /// Validates, keeping the coins in the order given: that order is the ranking. An id
    /// listed twice is an error here; a client that reads pages one after another drops later
    /// repeats itself (the list can shift between two reads), keeping the first place.
    pub fn new(
        source: impl Into<String>,
        mut coins: Vec<RankedCoin>,
    ) -> Result<Self, SnapshotError> {
        if coins.is_empty() {
            return Err(SnapshotError::Empty);
        }
        for (index, coin) in coins.iter_mut().enumerate() {
            check_text(index, "id", &coin.id)?;
            check_text(index, "symbol", &coin.symbol)?;
            coin.volume_24h_usd =
                check_optional(&coin.symbol, "volume_24h_usd", coin.volume_24h_usd)?;
            coin.price_usd = check_optional(&coin.symbol, "price_usd", coin.price_usd)?;
        }
        check_unique_ids(coins.iter().map(|c| c.id.as_str()))?;
        Ok(Self {
            source: source.into(),
            coins,
        })
    }
}

/// Both snapshot types hold `source` and `coins` and validate in `new`; decoding goes through
/// `new`, so bytes from the wire are held to the same rules as a fresh fetch.
macro_rules! impl_snapshot {
    ($ty:ty, $kind:expr) => {
        impl Snapshot for $ty {
            const KIND: Kind = $kind;

            fn len(&self) -> usize {
                self.coins.len()
            }

            fn source(&self) -> &str {
                &self.source
            }

            fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
                let raw: Self = decode_raw(bytes)?;
                Self::new(raw.source, raw.coins)
            }
        }
    };
}

impl_snapshot!(PriceSnapshot, Kind::PRICES);
impl_snapshot!(RankingSnapshot, Kind::RANKING);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn priced(id: &str, symbol: &str, price: f64, cap: Option<f64>) -> PricedCoin {
        PricedCoin {
            id: id.into(),
            symbol: symbol.into(),
            name: format!("{symbol} coin").into(),
            price_usd: price,
            market_cap_usd: cap,
        }
    }

    fn ranked(id: &str, symbol: &str, volume: Option<f64>) -> RankedCoin {
        RankedCoin {
            id: id.into(),
            symbol: symbol.into(),
            name: symbol.into(),
            volume_24h_usd: volume,
            price_usd: None,
        }
    }

    #[test]
    fn rejects_bad_numbers_and_empty_fields() {
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            let err = PriceSnapshot::new("t", vec![priced("1", "A", bad, None)]).unwrap_err();
            assert!(
                matches!(
                    err,
                    SnapshotError::BadNumber {
                        field: "price_usd",
                        ..
                    }
                ),
                "{err}"
            );
        }
        assert_eq!(PriceSnapshot::new("t", vec![]), Err(SnapshotError::Empty));
        assert!(matches!(
            PriceSnapshot::new("t", vec![priced("1", " ", 1.0, None)]),
            Err(SnapshotError::EmptyField {
                field: "symbol",
                ..
            })
        ));
        assert_eq!(
            PriceSnapshot::new(
                "t",
                vec![priced("1", "A", 1.0, None), priced("1", "B", 1.0, None)]
            ),
            Err(SnapshotError::DuplicateId("1".into()))
        );
    }

    #[test]
    fn negative_zero_is_folded() {
        let s = PriceSnapshot::new("t", vec![priced("1", "A", -0.0, Some(-0.0))]).unwrap();
        let t = PriceSnapshot::new("t", vec![priced("1", "A", 0.0, Some(0.0))]).unwrap();
        assert_eq!(s.canonical_bytes(), t.canonical_bytes());
    }

    #[test]
    fn shared_symbol_goes_to_largest_market_cap() {
        let s = PriceSnapshot::new(
            "t",
            vec![
                priced("10", "HOT", 1.0, Some(5.0)),
                priced("20", "hot", 2.0, Some(50.0)),
                priced("30", "HOT", 3.0, None),
                priced("40", "TIE", 1.0, Some(7.0)),
                priced("35", "TIE", 2.0, Some(7.0)),
            ],
        )
        .unwrap();
        let map = s.by_symbol();
        assert_eq!(map["HOT"].id, "20");
        assert_eq!(map["TIE"].id, "35");
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn canonical_form_is_binary_and_json_still_decodes() {
        let s = PriceSnapshot::new(
            "t",
            vec![
                priced("2", "ETH", 3000.25, Some(4e11)),
                priced("1", "BTC", 0.1 + 0.2, None),
            ],
        )
        .unwrap();
        let bytes = s.canonical_bytes();
        assert!(bytes.starts_with(CANONICAL_MAGIC));
        assert_eq!(PriceSnapshot::decode(&bytes).unwrap(), s);
        // What versions before the binary form stored.
        let json = serde_json::to_vec(&s).unwrap();
        assert_eq!(PriceSnapshot::decode(&json).unwrap(), s);
        assert!(bytes.len() < json.len());
    }

    #[test]
    fn damaged_bytes_do_not_decode() {
        let s = PriceSnapshot::new("t", vec![priced("1", "BTC", 1.0, None)]).unwrap();
        let bytes = s.canonical_bytes();
        let mut trailing = bytes.clone();
        trailing.push(0);
        let mut bad_number = s.clone();
        bad_number.coins[0].price_usd = f64::NAN;
        let unchecked = postcard::to_extend(&bad_number, CANONICAL_MAGIC.to_vec()).unwrap();
        for (what, b) in [
            ("trailing", trailing),
            ("truncated", bytes[..bytes.len() - 3].to_vec()),
            ("other magic", [b"TCS9".as_slice(), &bytes[4..]].concat()),
            ("empty", Vec::new()),
        ] {
            let e = PriceSnapshot::decode(&b).unwrap_err();
            assert_eq!(e.reason(), "undecodable", "{what}: {e}");
        }
        // Well-formed bytes holding an invalid value are held to the constructor's rules.
        assert_eq!(
            PriceSnapshot::decode(&unchecked).unwrap_err().reason(),
            "bad_number"
        );
    }

    #[test]
    fn ranking_keeps_the_providers_order_whatever_the_volumes() {
        let coins = vec![
            ranked("a", "A", Some(1.0)),
            ranked("b", "B", None),
            ranked("c", "C", Some(3.0)),
            ranked("d", "D", Some(1.0)),
        ];
        let r = RankingSnapshot::new("t", coins.clone()).unwrap();
        let order: Vec<_> = r.coins.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        // The order is part of the data: another order is another snapshot, and it survives
        // the canonical encoding.
        let mut reversed = coins;
        reversed.reverse();
        let other = RankingSnapshot::new("t", reversed).unwrap();
        assert_ne!(r.canonical_bytes(), other.canonical_bytes());
        assert_eq!(
            RankingSnapshot::decode(&other.canonical_bytes()).unwrap(),
            other
        );
        assert_eq!(
            RankingSnapshot::new("t", vec![ranked("a", "A", None), ranked("a", "B", None)]),
            Err(SnapshotError::DuplicateId("a".into()))
        );
    }

    fn arb_coin() -> impl Strategy<Value = PricedCoin> {
        (
            "[0-9]{1,6}",
            "[A-Za-z0-9.*>][A-Za-z0-9.*> ]{0,5}",
            any::<String>(),
            0.0f64..1e12,
            proptest::option::of(0.0f64..1e15),
        )
            .prop_map(|(id, symbol, name, price_usd, market_cap_usd)| PricedCoin {
                id: id.into(),
                symbol: symbol.into(),
                name: name.into(),
                price_usd,
                market_cap_usd,
            })
    }

    proptest! {
        /// Canonical bytes do not depend on the order coins arrived in, survive a decode, and
        /// decode back to the same value.
        #[test]
        fn canonical_encoding_is_order_free_and_round_trips(
            coins in proptest::collection::vec(arb_coin(), 1..40),
            seed in any::<u64>(),
        ) {
            let mut unique = coins;
            unique.sort_by(|a, b| a.id.cmp(&b.id));
            unique.dedup_by(|a, b| a.id == b.id);
            let a = PriceSnapshot::new("src", unique.clone()).unwrap();
            let mut shuffled = unique;
            let n = shuffled.len();
            shuffled.rotate_left((seed as usize) % n);
            if seed % 2 == 0 { shuffled.reverse(); }
            let b = PriceSnapshot::new("src", shuffled).unwrap();
            let (bytes_a, hash_a) = a.encode();
            prop_assert_eq!(&bytes_a, &b.canonical_bytes());
            let decoded = PriceSnapshot::decode(&bytes_a).unwrap();
            prop_assert_eq!(&decoded, &a);
            prop_assert_eq!(decoded.encode().1, hash_a);
        }

        /// `Caseless` keys are equal exactly when the upper-case copies are, and equal keys
        /// hash alike.
        #[test]
        fn caseless_is_upper_case_equality(
            a in "[a-cA-C\u{df}\u{fb00}\u{3a3}\u{3c3}fFsS]{0,4}",
            b in "[a-cA-C\u{df}\u{fb00}\u{3a3}\u{3c3}fFsS]{0,4}",
        ) {
            use std::hash::BuildHasher;
            let equal = a.to_uppercase() == b.to_uppercase();
            prop_assert_eq!(Caseless(&a) == Caseless(&b), equal);
            let state = foldhash::fast::RandomState::default();
            if equal {
                prop_assert_eq!(state.hash_one(Caseless(&a)), state.hash_one(Caseless(&b)));
            }
        }

        /// The winner of a symbol is the same whatever the order of the coins.
        #[test]
        fn symbol_rule_is_order_free(coins in proptest::collection::vec(arb_coin(), 1..40)) {
            let mut unique = coins;
            unique.sort_by(|a, b| a.id.cmp(&b.id));
            unique.dedup_by(|a, b| a.id == b.id);
            let a = PriceSnapshot::new("s", unique.clone()).unwrap();
            unique.reverse();
            let b = PriceSnapshot::new("s", unique).unwrap();
            let ids = |s: &PriceSnapshot| {
                let mut v: Vec<(String, String)> =
                    s.by_symbol().into_iter().map(|(k, c)| (k, c.id.to_string())).collect();
                v.sort();
                v
            };
            prop_assert_eq!(ids(&a), ids(&b));
        }
    }
}
