//! Exchange tickers (issue 12): one snapshot per exchange, one [`PairTicker`] per tracked
//! pair, each carrying the seven metric kinds ([`MetricKind`]) of that pair.
//!
//! The exchange is part of the type ([`Exchange`]), so each exchange's snapshot is a kind of
//! its own ([`Kind`] `kraken_tickers`, `coinbase_tickers`, `binance_tickers`): its own hash
//! notices on `topcoins.v1.<kind>.hash`, its own lease, its own poll metrics, and one
//! exchange that fails leaves the others' snapshots alone.
//!
//! Canonical form: tickers sorted by pair (unique), every figure finite, `-0` folded into `0`;
//! prices, highs, lows and volumes non-negative, the changes signed.

use std::marker::PhantomData;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::{Kind, Snapshot, SnapshotError};

/// An exchange whose tickers are a snapshot kind. Implemented by the marker types below.
pub trait Exchange: Send + Sync + 'static {
    /// The exchange's id in metric ids, `TOPCOINS_EXCHANGES` and `GET /v1/exchanges`.
    const ID: &'static str;
    /// The snapshot kind of its tickers.
    const KIND: Kind;
    /// The snapshot kind of its list of tradable pairs ([`MarketsSnapshot`]).
    const MARKETS_KIND: Kind;
}

macro_rules! exchange {
    ($(#[$doc:meta])* $name:ident, $id:literal, $kind:literal, $markets:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;

        impl Exchange for $name {
            const ID: &'static str = $id;
            const KIND: Kind = Kind::new($kind);
            const MARKETS_KIND: Kind = Kind::new($markets);
        }
    };
}

exchange!(
    /// Kraken (`/0/public/Ticker`).
    Kraken,
    "kraken",
    "kraken_tickers",
    "kraken_markets"
);
exchange!(
    /// Coinbase Exchange (`/products/{id}/ticker` and `/stats`).
    Coinbase,
    "coinbase",
    "coinbase_tickers",
    "coinbase_markets"
);
exchange!(
    /// Binance (`/api/v3/ticker/24hr`).
    Binance,
    "binance",
    "binance_tickers",
    "binance_markets"
);

/// Every exchange id, in the order `GET /v1/exchanges` lists them.
pub const EXCHANGES: [&str; 3] = [Kraken::ID, Coinbase::ID, Binance::ID];

/// The ticker kinds, one per exchange, in [`EXCHANGES`]' order.
pub const TICKER_KINDS: [Kind; 3] = [Kraken::KIND, Coinbase::KIND, Binance::KIND];

/// Decodes the bytes of a ticker snapshot of `kind`, whichever exchange's: the exchange's id
/// and its tickers. `None` if `kind` is not a ticker kind. For readers that take in every
/// exchange alike (the recorder, the ranks).
pub fn decode_tickers(
    kind: Kind,
    bytes: &[u8],
) -> Option<Result<(&'static str, Vec<PairTicker>), crate::SnapshotError>> {
    fn of<E: Exchange>(
        bytes: &[u8],
    ) -> Result<(&'static str, Vec<PairTicker>), crate::SnapshotError> {
        Ok((E::ID, TickerSnapshot::<E>::decode(bytes)?.tickers))
    }
    if kind == Kraken::KIND {
        Some(of::<Kraken>(bytes))
    } else if kind == Coinbase::KIND {
        Some(of::<Coinbase>(bytes))
    } else if kind == Binance::KIND {
        Some(of::<Binance>(bytes))
    } else {
        None
    }
}

/// The time a figure covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TickerWindow {
    /// The last 24 hours up to the reply.
    Rolling24h,
    /// Since 00:00 UTC today (Kraken's change, from its `o`).
    UtcDay,
}

/// The seven numbers of a pair that are metrics: `exchange:pair:<kind>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// The last trade price, in the quote asset.
    Price,
    High,
    Low,
    ChangePct,
    ChangeAbs,
    /// Traded volume in the base asset.
    Volume,
    /// Traded volume in the quote asset.
    VolumeQuote,
}

impl MetricKind {
    pub const ALL: [MetricKind; 7] = [
        MetricKind::Price,
        MetricKind::High,
        MetricKind::Low,
        MetricKind::ChangePct,
        MetricKind::ChangeAbs,
        MetricKind::Volume,
        MetricKind::VolumeQuote,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            MetricKind::Price => "price",
            MetricKind::High => "high",
            MetricKind::Low => "low",
            MetricKind::ChangePct => "change_pct",
            MetricKind::ChangeAbs => "change_abs",
            MetricKind::Volume => "volume",
            MetricKind::VolumeQuote => "volume_quote",
        }
    }

    pub fn parse(s: &str) -> Option<MetricKind> {
        MetricKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the figure may be negative.
    pub const fn signed(self) -> bool {
        matches!(self, MetricKind::ChangePct | MetricKind::ChangeAbs)
    }
}

/// One pair's figures on one exchange. `pair` is `base-quote` in lower case (`btc-usd`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairTicker {
    pub pair: CompactString,
    pub price: f64,
    pub high: f64,
    pub low: f64,
    pub change_pct: f64,
    pub change_abs: f64,
    pub volume: f64,
    pub volume_quote: f64,
    /// What `high`, `low` and the volumes cover.
    pub window: TickerWindow,
    /// What the changes cover.
    pub change_window: TickerWindow,
}

impl PairTicker {
    /// The figure of one metric kind.
    pub fn value(&self, kind: MetricKind) -> f64 {
        match kind {
            MetricKind::Price => self.price,
            MetricKind::High => self.high,
            MetricKind::Low => self.low,
            MetricKind::ChangePct => self.change_pct,
            MetricKind::ChangeAbs => self.change_abs,
            MetricKind::Volume => self.volume,
            MetricKind::VolumeQuote => self.volume_quote,
        }
    }

    fn set(&mut self, kind: MetricKind, v: f64) {
        *match kind {
            MetricKind::Price => &mut self.price,
            MetricKind::High => &mut self.high,
            MetricKind::Low => &mut self.low,
            MetricKind::ChangePct => &mut self.change_pct,
            MetricKind::ChangeAbs => &mut self.change_abs,
            MetricKind::Volume => &mut self.volume,
            MetricKind::VolumeQuote => &mut self.volume_quote,
        } = v;
    }
}

/// One exchange's tickers at one moment, sorted by pair.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct TickerSnapshot<E: Exchange> {
    pub tickers: Vec<PairTicker>,
    #[serde(skip)]
    exchange: PhantomData<E>,
}

impl<E: Exchange> Clone for TickerSnapshot<E> {
    fn clone(&self) -> Self {
        Self {
            tickers: self.tickers.clone(),
            exchange: PhantomData,
        }
    }
}

impl<E: Exchange> TickerSnapshot<E> {
    /// Validates and normalises: every pair named and valid (`base-quote`, lower case), every
    /// figure finite (and non-negative except the changes), pairs unique. Any bad ticker
    /// rejects the snapshot — the exchange parsers have already set bad pairs aside, so one
    /// here is a bug or a corrupted message.
    pub fn new(mut tickers: Vec<PairTicker>) -> Result<Self, SnapshotError> {
        if tickers.is_empty() {
            return Err(SnapshotError::Empty);
        }
        for (index, t) in tickers.iter_mut().enumerate() {
            if !is_pair(&t.pair) {
                return Err(SnapshotError::EmptyField {
                    index,
                    field: "pair",
                });
            }
            for kind in MetricKind::ALL {
                let v = t.value(kind);
                if !v.is_finite() || (!kind.signed() && v < 0.0) {
                    return Err(SnapshotError::BadNumber {
                        symbol: t.pair.to_string(),
                        field: kind.as_str(),
                        value: v,
                    });
                }
                t.set(kind, v + 0.0);
            }
        }
        if !tickers.is_sorted_by(|a, b| a.pair < b.pair) {
            tickers.sort_by(|a, b| a.pair.cmp(&b.pair));
            if let Some(w) = tickers.windows(2).find(|w| w[0].pair == w[1].pair) {
                return Err(SnapshotError::DuplicateId(w[0].pair.to_string()));
            }
        }
        Ok(Self {
            tickers,
            exchange: PhantomData,
        })
    }

    /// The ticker of a pair.
    pub fn get(&self, pair: &str) -> Option<&PairTicker> {
        self.tickers
            .binary_search_by(|t| t.pair.as_str().cmp(pair))
            .ok()
            .map(|i| &self.tickers[i])
    }
}

/// `base-quote`: two non-empty runs of lower-case ASCII letters and digits.
pub fn is_pair(s: &str) -> bool {
    let ok = |part: &str| {
        !part.is_empty()
            && part.len() <= 20
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    s.split_once('-').is_some_and(|(b, q)| ok(b) && ok(q))
}

impl<E: Exchange> Snapshot for TickerSnapshot<E> {
    const KIND: Kind = E::KIND;
    /// Records are one sample per metric per poll, unchanged polls included.
    const CONFIRMED: bool = true;

    fn len(&self) -> usize {
        self.tickers.len()
    }

    fn source(&self) -> &str {
        E::ID
    }

    fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let raw: TickerSnapshot<E> = crate::snapshot::decode_raw(bytes)?;
        TickerSnapshot::new(raw.tickers)
    }
}

/// One exchange's tradable pairs, from its own pairs endpoint (Kraken `AssetPairs`, Coinbase
/// `/products`, Binance `exchangeInfo`): what `GET /v1/exchanges` lists. Sorted, unique.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct MarketsSnapshot<E: Exchange> {
    pub pairs: Vec<CompactString>,
    #[serde(skip)]
    exchange: PhantomData<E>,
}

impl<E: Exchange> Clone for MarketsSnapshot<E> {
    fn clone(&self) -> Self {
        Self {
            pairs: self.pairs.clone(),
            exchange: PhantomData,
        }
    }
}

impl<E: Exchange> MarketsSnapshot<E> {
    /// Validates (every pair `base-quote` in lower case) and normalises (sorted, each once).
    pub fn new(mut pairs: Vec<CompactString>) -> Result<Self, SnapshotError> {
        if pairs.is_empty() {
            return Err(SnapshotError::Empty);
        }
        if let Some(index) = pairs.iter().position(|p| !is_pair(p)) {
            return Err(SnapshotError::EmptyField {
                index,
                field: "pair",
            });
        }
        if !pairs.is_sorted_by(|a, b| a < b) {
            pairs.sort();
            pairs.dedup();
        }
        Ok(Self {
            pairs,
            exchange: PhantomData,
        })
    }
}

impl<E: Exchange> Snapshot for MarketsSnapshot<E> {
    const KIND: Kind = E::MARKETS_KIND;

    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn source(&self) -> &str {
        E::ID
    }

    fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let raw: MarketsSnapshot<E> = crate::snapshot::decode_raw(bytes)?;
        MarketsSnapshot::new(raw.pairs)
    }
}

/// One metric's rank in a [`RanksSnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedMetric {
    /// `exchange:pair:metric`.
    pub id: CompactString,
    /// 1 is the largest standard deviation of its kind; ties share a position.
    pub position: u32,
    /// Tracked metrics of its kind.
    pub of: u32,
    /// The sample standard deviation of its samples over the last 24 h; `None` with fewer than
    /// two.
    pub stddev_24h: Option<f64>,
}

/// The rank of every tracked metric, computed by the exchange actors when new values arrive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RanksSnapshot {
    pub ranks: Vec<RankedMetric>,
}

impl RanksSnapshot {
    pub const KIND: Kind = Kind::new("ranks");

    /// Validates (ids named, `1 ≤ position ≤ of`, deviations finite and non-negative) and
    /// sorts by id.
    pub fn new(mut ranks: Vec<RankedMetric>) -> Result<Self, SnapshotError> {
        if ranks.is_empty() {
            return Err(SnapshotError::Empty);
        }
        for (index, r) in ranks.iter_mut().enumerate() {
            if r.id.is_empty() {
                return Err(SnapshotError::EmptyField { index, field: "id" });
            }
            if r.position == 0 || r.position > r.of {
                return Err(SnapshotError::BadNumber {
                    symbol: r.id.to_string(),
                    field: "position",
                    value: f64::from(r.position),
                });
            }
            if let Some(d) = r.stddev_24h {
                if !d.is_finite() || d < 0.0 {
                    return Err(SnapshotError::BadNumber {
                        symbol: r.id.to_string(),
                        field: "stddev_24h",
                        value: d,
                    });
                }
                r.stddev_24h = Some(d + 0.0);
            }
        }
        if !ranks.is_sorted_by(|a, b| a.id < b.id) {
            ranks.sort_by(|a, b| a.id.cmp(&b.id));
            if let Some(w) = ranks.windows(2).find(|w| w[0].id == w[1].id) {
                return Err(SnapshotError::DuplicateId(w[0].id.to_string()));
            }
        }
        Ok(Self { ranks })
    }

    /// The rank of a metric by id.
    pub fn get(&self, id: &str) -> Option<&RankedMetric> {
        self.ranks
            .binary_search_by(|r| r.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.ranks[i])
    }
}

impl Snapshot for RanksSnapshot {
    const KIND: Kind = RanksSnapshot::KIND;

    fn len(&self) -> usize {
        self.ranks.len()
    }

    fn source(&self) -> &str {
        "topcoins"
    }

    fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let raw: RanksSnapshot = crate::snapshot::decode_raw(bytes)?;
        RanksSnapshot::new(raw.ranks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticker(pair: &str, price: f64) -> PairTicker {
        PairTicker {
            pair: pair.into(),
            price,
            high: price * 1.1,
            low: price * 0.9,
            change_pct: -1.5,
            change_abs: -0.0,
            volume: 10.0,
            volume_quote: 10.0 * price,
            window: TickerWindow::Rolling24h,
            change_window: TickerWindow::UtcDay,
        }
    }

    #[test]
    fn canonical_whatever_the_order() {
        let a = TickerSnapshot::<Kraken>::new(vec![ticker("eth-usd", 2.0), ticker("btc-usd", 1.0)])
            .unwrap();
        let b = TickerSnapshot::<Kraken>::new(vec![ticker("btc-usd", 1.0), ticker("eth-usd", 2.0)])
            .unwrap();
        assert_eq!(a.canonical_bytes(), b.canonical_bytes());
        assert_eq!(a.get("eth-usd").unwrap().price, 2.0);
        assert!(a.get("sol-usd").is_none());
        // -0 folded, so the bytes equal those of +0.
        assert_eq!(a.tickers[0].change_abs.to_bits(), 0.0f64.to_bits());
        let back = TickerSnapshot::<Kraken>::decode(&a.canonical_bytes()).unwrap();
        assert_eq!(back, a);
        assert_eq!(
            <TickerSnapshot<Kraken> as Snapshot>::KIND.as_str(),
            "kraken_tickers"
        );
        assert_eq!(
            <TickerSnapshot<Binance> as Snapshot>::KIND.as_str(),
            "binance_tickers"
        );
    }

    #[test]
    fn bad_tickers_are_refused() {
        let mut bad = ticker("btc-usd", 1.0);
        bad.volume = -1.0;
        assert!(matches!(
            TickerSnapshot::<Kraken>::new(vec![bad]),
            Err(SnapshotError::BadNumber {
                field: "volume",
                ..
            })
        ));
        let mut nan = ticker("btc-usd", 1.0);
        nan.change_pct = f64::NAN;
        assert!(TickerSnapshot::<Kraken>::new(vec![nan]).is_err());
        assert!(TickerSnapshot::<Kraken>::new(vec![ticker("BTC-USD", 1.0)]).is_err());
        assert!(TickerSnapshot::<Kraken>::new(vec![]).is_err());
        assert!(matches!(
            TickerSnapshot::<Kraken>::new(vec![ticker("btc-usd", 1.0), ticker("btc-usd", 2.0)]),
            Err(SnapshotError::DuplicateId(_))
        ));
        // Signed changes are fine.
        assert!(TickerSnapshot::<Kraken>::new(vec![ticker("btc-usd", 1.0)]).is_ok());
    }

    #[test]
    fn markets_are_sorted_and_checked() {
        let a = MarketsSnapshot::<Binance>::new(vec![
            "eth-usdt".into(),
            "btc-usdt".into(),
            "eth-usdt".into(),
        ])
        .unwrap();
        assert_eq!(a.pairs, ["btc-usdt", "eth-usdt"]);
        assert_eq!(
            MarketsSnapshot::<Binance>::decode(&a.canonical_bytes()).unwrap(),
            a
        );
        assert!(MarketsSnapshot::<Binance>::new(vec!["BTCUSDT".into()]).is_err());
        assert!(MarketsSnapshot::<Binance>::new(vec![]).is_err());
        assert_eq!(
            <MarketsSnapshot<Kraken> as Snapshot>::KIND.as_str(),
            "kraken_markets"
        );
    }

    #[test]
    fn metric_kinds_round_trip() {
        for k in MetricKind::ALL {
            assert_eq!(MetricKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(MetricKind::parse("Price"), None);
        assert!(is_pair("btc-usd") && is_pair("1inch-usdt"));
        for bad in ["btcusd", "-usd", "btc-", "btc-usd-x", "BTC-usd", "b c-usd"] {
            assert!(!is_pair(bad), "{bad}");
        }
    }
}
