//! Ranking × prices → the top list.
//!
//! **Rules.**
//! - Order and ranks come from the ranking snapshot, in its source's own order (CryptoCompare's
//!   toplist by 24h total volume, as the provider sorted it); ranks are 1-based and contiguous.
//! - A coin is priced by the price snapshot's coin with the same symbol, compared without
//!   regard to case. When several price-source coins share the symbol, the one with the
//!   largest market cap wins ([`PriceSnapshot::by_symbol`]).
//! - When the price source lacks the symbol, the ranking source's own USD price is used if it
//!   has one, else the price is `null`; `price_source` names whoever priced the entry.
//! - A symbol appears once, at its best rank: a later ranking entry with a symbol already
//!   listed is skipped (CryptoCompare's own symbols are unique, so this only guards against
//!   bad data).
//! - `change_24h_pct` is `(price − reference) / reference × 100`, the reference being the
//!   coin's recorded price 24 h before ([`References`], read from the database off the
//!   request path); `null` without a price or a positive reference. It is worked out here,
//!   once per merge, like everything else an entry shows.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::hash_table::{Entry, HashTable};

use serde::Serialize;
use topcoins_schemas::api::TopEntry;
use topcoins_schemas::{Caseless, PriceSnapshot, PricedCoin, RankingSnapshot};

/// The merged list: rows that point into the two snapshots it was made from. Merging copies no
/// string; an entry is put together when a response is written, and only for the entries it
/// shows.
pub struct Merged {
    ranked: Arc<Ranked>,
    prices: Arc<PriceSnapshot>,
    rows: Vec<Row>,
    /// Names the references the changes were worked out against ([`References::id`]).
    references: u64,
}

#[derive(Clone, Copy)]
struct Row {
    /// Index into the ranking snapshot's coins.
    coin: u32,
    price: Price,
    change_24h_pct: Option<f64>,
}

#[derive(Clone, Copy)]
enum Price {
    /// From the price snapshot: the price and the index of the coin that gave it.
    Priced(f64, u32),
    /// The ranking source's own price, for a symbol the price source lacks.
    Fallback(f64),
    Unknown,
}

/// One entry of the list, borrowed from the snapshots. Serialises exactly as [`TopEntry`],
/// the contract type.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EntryRef<'a> {
    pub rank: u32,
    pub symbol: &'a str,
    pub name: &'a str,
    pub price_usd: Option<f64>,
    pub price_source: Option<&'a str>,
    pub change_24h_pct: Option<f64>,
    pub volume_24h_usd: Option<f64>,
}

impl EntryRef<'_> {
    pub fn to_entry(&self) -> TopEntry {
        TopEntry {
            rank: self.rank,
            symbol: self.symbol.to_owned(),
            name: self.name.to_owned(),
            price_usd: self.price_usd,
            price_source: self.price_source.map(str::to_owned),
            change_24h_pct: self.change_24h_pct,
            volume_24h_usd: self.volume_24h_usd,
        }
    }
}

impl Merged {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Entry `i` (0-based; its rank is `i + 1`).
    pub fn entry(&self, i: usize) -> EntryRef<'_> {
        let row = self.rows[i];
        let ranking = &self.ranked.snapshot;
        let coin = &ranking.coins[row.coin as usize];
        let (price_usd, price_source) = match row.price {
            Price::Priced(p, _) => (Some(p), Some(self.prices.source.as_str())),
            Price::Fallback(p) => (Some(p), Some(ranking.source.as_str())),
            Price::Unknown => (None, None),
        };
        EntryRef {
            rank: i as u32 + 1,
            symbol: &coin.symbol,
            name: &coin.name,
            price_usd,
            price_source,
            change_24h_pct: row.change_24h_pct,
            volume_24h_usd: coin.volume_24h_usd,
        }
    }

    /// The entry (0-based index) whose symbol is `symbol`, compared without regard to case:
    /// one lookup in the ranking's table.
    pub fn find(&self, symbol: &str) -> Option<usize> {
        self.ranked.row(symbol)
    }

    /// The price-source coin that priced entry `i`, if the price source did.
    pub fn priced_by(&self, i: usize) -> Option<&PricedCoin> {
        match self.rows[i].price {
            Price::Priced(_, w) => Some(&self.prices.coins[w as usize]),
            _ => None,
        }
    }

    /// The price snapshot merged.
    pub fn prices(&self) -> &Arc<PriceSnapshot> {
        &self.prices
    }

    /// [`References::id`] of the references the changes were worked out against.
    pub fn references(&self) -> u64 {
        self.references
    }

    /// The first `n` entries (`n` ≤ `len`).
    pub fn entries(&self, n: usize) -> impl Iterator<Item = EntryRef<'_>> {
        (0..n).map(|i| self.entry(i))
    }
}

/// The ranking side of a merge, worked out once per ranking snapshot: the coins listed (a
/// symbol at its best rank only) and a table from symbol to row. Prices change far more often
/// than the ranking, and a price change then costs one table lookup per priced coin.
pub struct Ranked {
    pub(crate) snapshot: Arc<RankingSnapshot>,
    /// Index into the snapshot's coins of each listed coin, best rank first.
    listed: Vec<u32>,
    /// Positions in `listed`, found by symbol compared without regard to case.
    rows: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl Ranked {
    pub fn new(snapshot: Arc<RankingSnapshot>) -> Self {
        let hasher = foldhash::fast::RandomState::default();
        let coins = &snapshot.coins;
        let mut listed: Vec<u32> = Vec::with_capacity(coins.len());
        let mut rows = HashTable::with_capacity(coins.len());
        for (index, coin) in coins.iter().enumerate() {
            let key = Caseless(&coin.symbol);
            let symbol = |row: &u32| Caseless(&coins[listed[*row as usize] as usize].symbol);
            if let Entry::Vacant(slot) = rows.entry(
                hasher.hash_one(key),
                |row| symbol(row) == key,
                |row| hasher.hash_one(symbol(row)),
            ) {
                slot.insert(listed.len() as u32);
                listed.push(index as u32);
            }
        }
        Self {
            snapshot,
            listed,
            rows,
            hasher,
        }
    }

    /// Coins listed, best rank first.
    pub fn len(&self) -> usize {
        self.listed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// The reference price of each listed coin, in list order: what [`merge`] takes. Worked
    /// out when the ranking or the references change, not on every price change.
    pub fn references(&self, references: &References) -> RowReferences {
        let coins = &self.snapshot.coins;
        RowReferences {
            id: references.id,
            prices: if references.prices.is_empty() {
                Vec::new()
            } else {
                self.listed
                    .iter()
                    .map(|&c| {
                        references
                            .prices
                            .get(&topcoins_history::symbol_key(&coins[c as usize].symbol))
                            .copied()
                    })
                    .collect()
            },
        }
    }

    /// The row whose symbol is `symbol`, if any.
    fn row(&self, symbol: &str) -> Option<usize> {
        let key = Caseless(symbol);
        let coins = &self.snapshot.coins;
        self.rows
            .find(self.hasher.hash_one(key), |row| {
                Caseless(&coins[self.listed[*row as usize] as usize].symbol) == key
            })
            .map(|row| *row as usize)
    }
}

/// Each coin's recorded price 24 h ago, by symbol in upper case (see the module docs). `id`
/// names the contents: it goes into the merge cache's key and every ETag of `GET /`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct References {
    pub id: u64,
    pub prices: std::collections::HashMap<compact_str::CompactString, f64>,
}

impl References {
    pub fn new(prices: std::collections::HashMap<compact_str::CompactString, f64>) -> Self {
        let mut sorted: Vec<(&compact_str::CompactString, &f64)> = prices.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut h = blake3::Hasher::new();
        for (symbol, price) in sorted {
            h.update(symbol.as_bytes());
            h.update(&[0]);
            h.update(&price.to_le_bytes());
        }
        let id = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
        Self {
            id: if prices.is_empty() { 0 } else { id },
            prices,
        }
    }
}

/// [`References`] laid out along one ranking's list (see [`Ranked::references`]); empty
/// when there are none.
#[derive(Debug, Clone, Default)]
pub struct RowReferences {
    id: u64,
    prices: Vec<Option<f64>>,
}

fn change_pct(price: Option<f64>, reference: Option<f64>) -> Option<f64> {
    match (price, reference) {
        (Some(p), Some(r)) if r > 0.0 => Some((p - r) / r * 100.0).filter(|c| c.is_finite()),
        _ => None,
    }
}

pub fn merge(ranked: &Arc<Ranked>, prices: Arc<PriceSnapshot>, refs: &RowReferences) -> Merged {
    // The price-source coin each row gets: of those with its symbol, the one that wins it
    // (`PricedCoin::outranks`, the rule of `PriceSnapshot::by_symbol`).
    let mut winners: Vec<Option<u32>> = vec![None; ranked.listed.len()];
    for (index, coin) in prices.coins.iter().enumerate() {
        let Some(row) = ranked.row(&coin.symbol) else {
            continue;
        };
        let winner = &mut winners[row];
        if winner.is_none_or(|held| coin.outranks(&prices.coins[held as usize])) {
            *winner = Some(index as u32);
        }
    }
    let coins = &ranked.snapshot.coins;
    let rows = ranked
        .listed
        .iter()
        .zip(winners)
        .enumerate()
        .map(|(i, (&coin, winner))| {
            let price = match (winner, coins[coin as usize].price_usd) {
                (Some(w), _) => Price::Priced(prices.coins[w as usize].price_usd, w),
                (None, Some(p)) => Price::Fallback(p),
                (None, None) => Price::Unknown,
            };
            let usd = match price {
                Price::Priced(p, _) | Price::Fallback(p) => Some(p),
                Price::Unknown => None,
            };
            Row {
                coin,
                price,
                change_24h_pct: change_pct(usd, refs.prices.get(i).copied().flatten()),
            }
        })
        .collect();
    Merged {
        ranked: ranked.clone(),
        prices,
        rows,
        references: refs.id,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;
    use topcoins_schemas::RankedCoin;

    use super::*;

    fn all(merged: &Merged) -> Vec<TopEntry> {
        merged.entries(merged.len()).map(|e| e.to_entry()).collect()
    }

    fn ranked(id: &str, symbol: &str, volume: f64, price: Option<f64>) -> RankedCoin {
        RankedCoin {
            id: id.into(),
            symbol: symbol.into(),
            name: format!("{symbol} name").into(),
            volume_24h_usd: Some(volume),
            price_usd: price,
        }
    }

    fn priced(id: &str, symbol: &str, price: f64, cap: f64) -> PricedCoin {
        PricedCoin {
            id: id.into(),
            symbol: symbol.into(),
            name: symbol.into(),
            price_usd: price,
            market_cap_usd: Some(cap),
        }
    }

    #[test]
    fn prices_fallback_and_shared_symbols() {
        let ranking = RankingSnapshot::new(
            "cryptocompare",
            vec![
                ranked("1", "BTC", 100.0, Some(99.0)),
                ranked("2", "HOT", 50.0, Some(0.5)),
                ranked("3", "HOT*", 40.0, Some(0.01)),
                ranked("4", "NOPE", 30.0, None),
                ranked("5", "btc", 10.0, None),
            ],
        )
        .unwrap();
        let prices = PriceSnapshot::new(
            "coinmarketcap",
            vec![
                priced("1", "BTC", 100.0, 1e9),
                priced("20", "HOT", 0.4, 1e6),
                priced("21", "HOT", 0.002, 1e3),
            ],
        )
        .unwrap();
        let top = all(&merge(
            &Arc::new(Ranked::new(Arc::new(ranking))),
            Arc::new(prices),
            &RowReferences::default(),
        ));
        let view: Vec<_> = top
            .iter()
            .map(|e| {
                (
                    e.rank,
                    e.symbol.as_str(),
                    e.price_usd,
                    e.price_source.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                (1, "BTC", Some(100.0), Some("coinmarketcap")),
                (2, "HOT", Some(0.4), Some("coinmarketcap")),
                (3, "HOT*", Some(0.01), Some("cryptocompare")),
                (4, "NOPE", None, None),
            ]
        );
    }

    #[test]
    fn borrowed_entries_serialise_as_the_contract_type() {
        let ranking = RankingSnapshot::new(
            "cryptocompare",
            vec![
                ranked("1", "BTC", 100.0, None),
                ranked("2", "Ñ\"x", 50.0, Some(0.5)),
            ],
        )
        .unwrap();
        let prices =
            PriceSnapshot::new("coinmarketcap", vec![priced("1", "btc", 100.5, 1e9)]).unwrap();
        let merged = merge(
            &Arc::new(Ranked::new(Arc::new(ranking))),
            Arc::new(prices),
            &RowReferences::default(),
        );
        assert_eq!(merged.len(), 2);
        for e in merged.entries(2) {
            assert_eq!(
                serde_json::to_string(&e).unwrap(),
                serde_json::to_string(&e.to_entry()).unwrap()
            );
        }
    }

    /// The change is worked out against the reference by hand: BTC 100 → 110 is +10 %, ETH's
    /// fallback price 1.5 against 2 is −25 %; no reference, a zero one or no price: `null`.
    #[test]
    fn change_24h_is_against_the_reference() {
        let ranking = RankingSnapshot::new(
            "cryptocompare",
            vec![
                ranked("1", "BTC", 100.0, None),
                ranked("2", "eth", 50.0, Some(1.5)),
                ranked("3", "NEW", 40.0, Some(3.0)),
                ranked("4", "ZERO", 30.0, Some(3.0)),
                ranked("5", "NOPE", 20.0, None),
            ],
        )
        .unwrap();
        let prices =
            PriceSnapshot::new("coinmarketcap", vec![priced("1", "btc", 110.0, 1e9)]).unwrap();
        let references = References::new(
            [("BTC", 100.0), ("ETH", 2.0), ("ZERO", 0.0), ("NOPE", 1.0)]
                .into_iter()
                .map(|(s, p)| (s.into(), p))
                .collect(),
        );
        assert_ne!(references.id, 0);
        let ranked = Arc::new(Ranked::new(Arc::new(ranking)));
        let merged = merge(&ranked, Arc::new(prices), &ranked.references(&references));
        let changes: Vec<_> = merged.entries(5).map(|e| e.change_24h_pct).collect();
        assert_eq!(changes, [Some(10.0), Some(-25.0), None, None, None]);
        assert_eq!(changes[0], Some((110.0 - 100.0) / 100.0 * 100.0));
        assert_eq!(merged.references(), references.id);
        assert_eq!(merged.find("Eth"), Some(1));
        assert_eq!(
            merged.priced_by(0).map(|c| c.market_cap_usd),
            Some(Some(1e9))
        );
        assert!(merged.priced_by(1).is_none());
    }

    proptest! {
        /// Whatever the input: ranks are 1..=n, symbols are unique, and every priced entry's
        /// price comes from the source it names.
        #[test]
        fn ranks_contiguous_symbols_unique(
            ranked_syms in proptest::collection::vec("[A-Ca-c]{1,2}", 1..30),
            priced_syms in proptest::collection::vec(("[A-Ca-c]{1,2}", 0.0f64..10.0, 0.0f64..100.0), 1..30),
        ) {
            let ranking = RankingSnapshot::new("r", ranked_syms.iter().enumerate()
                .map(|(i, s)| ranked(&i.to_string(), s, 100.0 - i as f64, (i % 2 == 0).then_some(1.5))).collect()).unwrap();
            let prices = PriceSnapshot::new("p", priced_syms.iter().enumerate()
                .map(|(i, (s, p, c))| priced(&i.to_string(), s, *p, *c)).collect()).unwrap();
            let top = all(&merge(&Arc::new(Ranked::new(Arc::new(ranking))), Arc::new(prices.clone()), &RowReferences::default()));
            let mut seen = HashSet::new();
            for (i, e) in top.iter().enumerate() {
                prop_assert_eq!(e.rank as usize, i + 1);
                prop_assert!(seen.insert(e.symbol.to_uppercase()));
                match e.price_source.as_deref() {
                    Some("p") => prop_assert_eq!(e.price_usd, Some(prices.by_symbol()[&e.symbol.to_uppercase()].price_usd)),
                    Some("r") => prop_assert_eq!(e.price_usd, Some(1.5)),
                    None => prop_assert!(e.price_usd.is_none()),
                    Some(other) => prop_assert!(false, "unknown source {}", other),
                }
            }
            let distinct: HashSet<String> = ranked_syms.iter().map(|s| s.to_uppercase()).collect();
            prop_assert_eq!(top.len(), distinct.len());
        }
    }
}
