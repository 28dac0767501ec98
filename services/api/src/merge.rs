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

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::hash_table::{Entry, HashTable};

use serde::Serialize;
use topcoins_schemas::api::TopEntry;
use topcoins_schemas::{Caseless, PriceSnapshot, RankingSnapshot};

/// The merged list: rows that point into the two snapshots it was made from. Merging copies no
/// string; an entry is put together when a response is written, and only for the entries it
/// shows.
pub struct Merged {
    ranking: Arc<RankingSnapshot>,
    prices: Arc<PriceSnapshot>,
    rows: Vec<Row>,
}

#[derive(Clone, Copy)]
struct Row {
    /// Index into the ranking snapshot's coins.
    coin: u32,
    price: Price,
}

#[derive(Clone, Copy)]
enum Price {
    /// From the price snapshot.
    Priced(f64),
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
        let coin = &self.ranking.coins[row.coin as usize];
        let (price_usd, price_source) = match row.price {
            Price::Priced(p) => (Some(p), Some(self.prices.source.as_str())),
            Price::Fallback(p) => (Some(p), Some(self.ranking.source.as_str())),
            Price::Unknown => (None, None),
        };
        EntryRef {
            rank: i as u32 + 1,
            symbol: &coin.symbol,
            name: &coin.name,
            price_usd,
            price_source,
            volume_24h_usd: coin.volume_24h_usd,
        }
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
    snapshot: Arc<RankingSnapshot>,
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

pub fn merge(ranked: &Ranked, prices: Arc<PriceSnapshot>) -> Merged {
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
        .map(|(&coin, winner)| Row {
            coin,
            price: match (winner, coins[coin as usize].price_usd) {
                (Some(w), _) => Price::Priced(prices.coins[w as usize].price_usd),
                (None, Some(p)) => Price::Fallback(p),
                (None, None) => Price::Unknown,
            },
        })
        .collect();
    Merged {
        ranking: ranked.snapshot.clone(),
        prices,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;
    use topcoins_schemas::{PricedCoin, RankedCoin};

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
        let top = all(&merge(&Ranked::new(Arc::new(ranking)), Arc::new(prices)));
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
        let merged = merge(&Ranked::new(Arc::new(ranking)), Arc::new(prices));
        assert_eq!(merged.len(), 2);
        for e in merged.entries(2) {
            assert_eq!(
                serde_json::to_string(&e).unwrap(),
                serde_json::to_string(&e.to_entry()).unwrap()
            );
        }
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
            let top = all(&merge(&Ranked::new(Arc::new(ranking)), Arc::new(prices.clone())));
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
