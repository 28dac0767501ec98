//! Ranking × prices → the top list.
//!
//! **Rules.**
//! - Order and ranks come from the ranking snapshot (24h total volume); ranks are 1-based and
//!   contiguous.
//! - A coin is priced by the price snapshot's coin with the same symbol, compared without
//!   regard to case. When several price-source coins share the symbol, the one with the
//!   largest market cap wins ([`PriceSnapshot::by_symbol`]).
//! - When the price source lacks the symbol, the ranking source's own USD price is used if it
//!   has one, else the price is `null`; `price_source` names whoever priced the entry.
//! - A symbol appears once, at its best rank: a later ranking entry with a symbol already
//!   listed is skipped (CryptoCompare's own symbols are unique, so this only guards against
//!   bad data).

use std::collections::HashSet;

use topcoins_schemas::api::TopEntry;
use topcoins_schemas::{PriceSnapshot, RankingSnapshot};

pub fn merge(ranking: &RankingSnapshot, prices: &PriceSnapshot) -> Vec<TopEntry> {
    let by_symbol = prices.by_symbol();
    let mut listed = HashSet::with_capacity(ranking.coins.len());
    let mut out = Vec::with_capacity(ranking.coins.len());
    for coin in &ranking.coins {
        let key = coin.symbol.to_uppercase();
        if listed.contains(&key) {
            continue;
        }
        let (price_usd, price_source) = match by_symbol.get(&key) {
            Some(priced) => (Some(priced.price_usd), Some(prices.source.clone())),
            None => match coin.price_usd {
                Some(p) => (Some(p), Some(ranking.source.clone())),
                None => (None, None),
            },
        };
        listed.insert(key);
        out.push(TopEntry {
            rank: out.len() as u32 + 1,
            symbol: coin.symbol.clone(),
            name: coin.name.clone(),
            price_usd,
            price_source,
            volume_24h_usd: coin.volume_24h_usd,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use topcoins_schemas::{PricedCoin, RankedCoin};

    use super::*;

    fn ranked(id: &str, symbol: &str, volume: f64, price: Option<f64>) -> RankedCoin {
        RankedCoin {
            id: id.into(),
            symbol: symbol.into(),
            name: format!("{symbol} name"),
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
        let top = merge(&ranking, &prices);
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

    proptest! {
        /// Whatever the input: ranks are 1..=n, symbols are unique, and every priced entry's
        /// price comes from the source it names.
        #[test]
        fn ranks_contiguous_symbols_unique(
            ranked_syms in proptest::collection::vec("[A-C]{1,2}", 1..30),
            priced_syms in proptest::collection::vec(("[A-C]{1,2}", 0.0f64..10.0, 0.0f64..100.0), 1..30),
        ) {
            let ranking = RankingSnapshot::new("r", ranked_syms.iter().enumerate()
                .map(|(i, s)| ranked(&i.to_string(), s, 100.0 - i as f64, (i % 2 == 0).then_some(1.5))).collect()).unwrap();
            let prices = PriceSnapshot::new("p", priced_syms.iter().enumerate()
                .map(|(i, (s, p, c))| priced(&i.to_string(), s, *p, *c)).collect()).unwrap();
            let top = merge(&ranking, &prices);
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
