//! Normalised snapshots and their canonical encoding.
//!
//! A snapshot holds market *data* only — never the time it was fetched — so that an upstream
//! that has not changed yields the same bytes, the same hash, and nothing on the bus. When the
//! data was observed travels beside it, in the [`HashNotice`](crate::HashNotice).
//!
//! Canonical bytes are the compact JSON of the normalised value: fields in declaration order,
//! coins in a fixed order (prices by provider id, ranking by rank), every number finite with
//! `-0` folded into `0`, floats in their shortest round-trip form. Normalisation happens once,
//! in the constructors, so a value of these types is always canonical.

use std::collections::{HashMap, HashSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::SnapshotHash;

/// Which of the two snapshot streams a value belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Prices,
    Ranking,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Prices, Kind::Ranking];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Prices => "prices",
            Kind::Ranking => "ranking",
        }
    }
}

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

/// Behaviour common to both snapshot kinds.
pub trait Snapshot: Serialize + DeserializeOwned + Send + Sync + 'static {
    const KIND: Kind;

    /// Number of coins.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Provider name, e.g. `coinmarketcap`.
    fn source(&self) -> &str;

    /// The canonical bytes: equal data ⇒ equal bytes.
    fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising plain structs of strings and finite floats cannot fail.
        serde_json::to_vec(self).expect("snapshot serialises")
    }

    /// The canonical bytes and their hash, computed together so they cannot disagree.
    fn encode(&self) -> (Vec<u8>, SnapshotHash) {
        let bytes = self.canonical_bytes();
        let hash = SnapshotHash::of(&bytes);
        (bytes, hash)
    }

    /// Decodes bytes previously produced by [`Snapshot::canonical_bytes`]. The caller checks
    /// the hash first; this re-validates, so no invalid value is ever constructed from the wire.
    fn decode(bytes: &[u8]) -> Result<Self, SnapshotError>;
}

/// One coin as a price source reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricedCoin {
    /// The provider's own id (CoinMarketCap numeric id, CoinGecko slug), as a string.
    pub id: String,
    pub symbol: String,
    pub name: String,
    pub price_usd: f64,
    pub market_cap_usd: Option<f64>,
}

/// All prices from one source at one moment, sorted by provider id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceSnapshot {
    pub source: String,
    pub coins: Vec<PricedCoin>,
}

/// One coin in the volume ranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedCoin {
    pub id: String,
    pub symbol: String,
    pub name: String,
    /// Total 24h trading volume in USD; `None` when the provider has no figure.
    pub volume_24h_usd: Option<f64>,
    /// The ranking source's own USD price, used when the price source lacks the coin.
    pub price_usd: Option<f64>,
}

/// Coins ranked by 24h volume, highest first; position + 1 is the rank.
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
    let mut seen = HashSet::new();
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
        coins.sort_by(|a, b| a.id.cmp(&b.id));
        check_unique_ids(coins.iter().map(|c| c.id.as_str()))?;
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
        let mut map: HashMap<String, &PricedCoin> = HashMap::with_capacity(self.coins.len());
        for coin in &self.coins {
            map.entry(coin.symbol.to_uppercase())
                .and_modify(|held| {
                    if outranks(coin, held) {
                        *held = coin;
                    }
                })
                .or_insert(coin);
        }
        map
    }
}

/// Whether `a` should win a symbol over `b` (see [`PriceSnapshot::by_symbol`]).
fn outranks(a: &PricedCoin, b: &PricedCoin) -> bool {
    let cap = |c: &PricedCoin| c.market_cap_usd.unwrap_or(-1.0);
    match cap(a).total_cmp(&cap(b)) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => a.id < b.id,
    }
}

impl RankingSnapshot {
    /// Validates and ranks: highest 24h volume first, coins without a volume last, ties in the
    /// provider's own order.
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
        // Stable sort: equal volumes keep the provider's order, so the result is a function
        // of the input sequence alone.
        coins.sort_by(|a, b| {
            let v = |c: &RankedCoin| c.volume_24h_usd.unwrap_or(-1.0);
            v(b).total_cmp(&v(a))
        });
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
                let raw: Self = serde_json::from_slice(bytes)
                    .map_err(|e| SnapshotError::Decode(e.to_string()))?;
                Self::new(raw.source, raw.coins)
            }
        }
    };
}

impl_snapshot!(PriceSnapshot, Kind::Prices);
impl_snapshot!(RankingSnapshot, Kind::Ranking);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn priced(id: &str, symbol: &str, price: f64, cap: Option<f64>) -> PricedCoin {
        PricedCoin {
            id: id.into(),
            symbol: symbol.into(),
            name: format!("{symbol} coin"),
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
    fn ranking_orders_by_volume_missing_last() {
        let r = RankingSnapshot::new(
            "t",
            vec![
                ranked("a", "A", Some(1.0)),
                ranked("b", "B", None),
                ranked("c", "C", Some(3.0)),
                ranked("d", "D", Some(1.0)),
            ],
        )
        .unwrap();
        let order: Vec<_> = r.coins.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(order, ["c", "a", "d", "b"]);
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
                id,
                symbol,
                name,
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
                    s.by_symbol().into_iter().map(|(k, c)| (k, c.id.clone())).collect();
                v.sort();
                v
            };
            prop_assert_eq!(ids(&a), ids(&b));
        }
    }
}
