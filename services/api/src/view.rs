//! The view a request reads: the top list in force, its meta, and the responses already
//! written for it.
//!
//! A view is made once per change (a new prices or ranking notice) and swapped in whole, so
//! a request sees one consistent pair. Responses are written the first time a (limit, format,
//! stale) is asked for and kept for the life of the view; the most common ones also sit in
//! fixed slots read without the cache's bookkeeping.

use std::sync::Arc;

use axum::http::HeaderValue;
use bytes::Bytes;
use moka::policy::EvictionPolicy;
use time::OffsetDateTime;
use topcoins_schemas::HashNotice;

use crate::query::Format;
use crate::render::{Meta, TopList, rfc3339};

/// Bytes of prepared responses a view keeps, across limits and formats.
const RESPONSE_BYTES_KEPT: u64 = 16 << 20;
/// Responses a view also keeps where a request finds them without the cache's bookkeeping
/// (see [`View::response`]), and the largest body kept there.
const HOT_SLOTS: usize = 16;
const HOT_BODY_MAX: usize = 64 << 10;

type ResponseKey = (usize, Format, bool);

/// One response, ready to send: the body and its ETag.
pub struct Ready {
    pub body: Bytes,
    pub etag: HeaderValue,
    /// Its gzip and brotli variants, made on first use.
    pub variants: crate::encoding::Variants,
}

/// What a request serves.
pub struct View {
    pub list: Arc<TopList>,
    pub meta: Meta,
    pub prices: HashNotice,
    pub ranking: HashNotice,
    /// `x-topcoins-as-of`, formatted once.
    pub as_of_header: HeaderValue,
    /// Responses already built for this view, by (entries, format, stale): the common request
    /// is a cache hit and a reference-counted clone, no copy.
    responses: moka::sync::Cache<ResponseKey, Arc<Ready>>,
    /// The first responses asked for, each in the slot its key hashes to, for the life of the
    /// view: a request that finds its response here writes no shared memory but the reference
    /// count (a cache hit also records the access, which two threads contend for).
    hot: [std::sync::OnceLock<(ResponseKey, Arc<Ready>)>; HOT_SLOTS],
}

impl View {
    pub(crate) fn new(list: Arc<TopList>, prices: &HashNotice, ranking: &HashNotice) -> Self {
        let as_of = prices.as_of.min(ranking.as_of);
        Self {
            meta: Meta::new(prices, ranking, list.merged().references()),
            list,
            prices: prices.clone(),
            ranking: ranking.clone(),
            as_of_header: HeaderValue::from_str(&rfc3339(as_of)).expect("rfc 3339 is ascii"),
            responses: moka::sync::Cache::builder()
                .max_capacity(RESPONSE_BYTES_KEPT)
                .weigher(|_, ready: &Arc<Ready>| ready.body.len().try_into().unwrap_or(u32::MAX))
                .eviction_policy(EvictionPolicy::lru())
                .build(),
            hot: Default::default(),
        }
    }

    /// The older of the two snapshot times: how old the data is, at most.
    pub fn as_of(&self) -> OffsetDateTime {
        self.prices.as_of.min(self.ranking.as_of)
    }

    /// The response for the first `n` entries (`n` ≤ the count) in `format`.
    pub fn response(&self, n: usize, format: Format, stale: bool) -> Arc<Ready> {
        let key = (n, format, stale);
        let slot = &self.hot[(n * 4 + format as usize * 2 + stale as usize) % HOT_SLOTS];
        if let Some((held, ready)) = slot.get()
            && *held == key
        {
            return ready.clone();
        }
        let ready = self.build_response(key);
        if ready.body.len() <= HOT_BODY_MAX {
            // Taken only if still free; a slot keeps its first key.
            let _ = slot.set((key, ready.clone()));
        }
        ready
    }

    fn build_response(&self, (n, format, stale): ResponseKey) -> Arc<Ready> {
        self.responses.get_with((n, format, stale), || {
            let (body, tag) = match format {
                Format::Json => (
                    self.list.json_body(n, &self.meta, stale),
                    if stale { "js" } else { "j" },
                ),
                Format::Csv => (self.list.csv_body(n), "c"),
            };
            let etag = format!("\"{}-{n}-{tag}\"", self.meta.tag);
            Arc::new(Ready {
                body: Bytes::from(body),
                etag: HeaderValue::from_str(&etag).expect("etag is ascii"),
                variants: Default::default(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use topcoins_schemas::{PriceSnapshot, PricedCoin, RankedCoin, RankingSnapshot, SnapshotHash};

    use super::*;
    use crate::merge::{Ranked, merge};

    const COINS: usize = 20;

    fn view() -> View {
        let ranking = RankingSnapshot::new(
            "cryptocompare",
            (0..COINS)
                .map(|i| RankedCoin {
                    id: i.to_string().into(),
                    symbol: format!("C{i}").into(),
                    name: format!("Coin {i}").into(),
                    volume_24h_usd: Some(1e6 - i as f64),
                    price_usd: None,
                })
                .collect(),
        )
        .unwrap();
        let prices = PriceSnapshot::new(
            "coinmarketcap",
            (0..COINS)
                .map(|i| PricedCoin {
                    id: i.to_string().into(),
                    symbol: format!("C{i}").into(),
                    name: format!("Coin {i}").into(),
                    price_usd: 1.0 + i as f64,
                    market_cap_usd: None,
                })
                .collect(),
        )
        .unwrap();
        let notice = |kind: &[u8]| HashNotice {
            hash: SnapshotHash::of(kind),
            as_of: OffsetDateTime::UNIX_EPOCH,
            count: COINS as u64,
            source: "s".into(),
            follows: None,
        };
        let list = TopList::new(merge(
            &Arc::new(Ranked::new(Arc::new(ranking))),
            Arc::new(prices),
            &Default::default(),
        ));
        View::new(Arc::new(list), &notice(b"p"), &notice(b"r"))
    }

    /// Every (entries, format, stale) gets its own response, whether it holds a hot slot,
    /// finds its slot taken by another key (n and n + 4 share one), or comes from the cache.
    #[test]
    fn responses_match_their_key_in_and_out_of_hot_slots() {
        let view = view();
        for round in 0..2 {
            for n in 0..=COINS {
                for format in [Format::Json, Format::Csv] {
                    for stale in [false, true] {
                        let ready = view.response(n, format, stale);
                        let body = match format {
                            Format::Json => view.list.json_body(n, &view.meta, stale),
                            Format::Csv => view.list.csv_body(n),
                        };
                        assert_eq!(ready.body, body, "round {round}, {n} {format:?} {stale}");
                        let etag = ready.etag.to_str().unwrap();
                        assert!(etag.contains(&format!("-{n}-")), "{etag} for {n}");
                    }
                }
            }
        }
        let held = view.hot.iter().filter(|slot| slot.get().is_some()).count();
        assert_eq!(
            held, HOT_SLOTS,
            "every slot was taken by the first key hashing to it"
        );
    }
}
