//! Response bytes for a merged list.
//!
//! A merge keeps its entries; the bytes of a response are written the first time a (limit,
//! format) is asked for and then kept by the view (see [`crate::view::View::response`]), so a
//! request is a cache lookup and a reference-counted clone. Rendering lazily keeps a new
//! snapshot's path to being served short: a change costs a fetch, a decode and a merge, and
//! the first request for a limit writes only that many entries.

use bytes::{BufMut, BytesMut};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use topcoins_schemas::{HashNotice, SnapshotHash};

use crate::merge::Merged;

pub const CSV_HEADER: &str = "Rank,Symbol,Price USD\n";

/// The merged top list, rendered on demand (see the module docs).
pub struct TopList {
    merged: Merged,
}

/// A CSV field, quoted when it has to be (RFC 4180).
fn csv_field(out: &mut BytesMut, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.put_u8(b'"');
        out.put_slice(field.replace('"', "\"\"").as_bytes());
        out.put_u8(b'"');
    } else {
        out.put_slice(field.as_bytes());
    }
}

impl TopList {
    pub fn new(merged: Merged) -> Self {
        Self { merged }
    }

    pub fn merged(&self) -> &Merged {
        &self.merged
    }

    /// Entries in the list: the most any response shows.
    pub fn count(&self) -> usize {
        self.merged.len()
    }

    /// The JSON body for the first `n` entries (`n` ≤ [`count`](Self::count)).
    pub fn json_body(&self, n: usize, meta: &Meta, stale: bool) -> Vec<u8> {
        let tail = if stale {
            &meta.tail_stale
        } else {
            &meta.tail_fresh
        };
        let mut body = BytesMut::with_capacity(64 + n * 150 + tail.len());
        body.put_slice(b"{\"data\":[");
        for (i, entry) in self.merged.entries(n).enumerate() {
            if i > 0 {
                body.put_u8(b',');
            }
            serde_json::to_writer((&mut body).writer(), &entry).expect("entry serialises");
        }
        body.put_slice(b"],\"meta\":{\"count\":");
        body.put_slice(n.to_string().as_bytes());
        body.put_slice(tail.as_bytes());
        body.into()
    }

    /// The CSV body for the first `n` entries.
    pub fn csv_body(&self, n: usize) -> Vec<u8> {
        let mut body = BytesMut::with_capacity(CSV_HEADER.len() + n * 28);
        body.put_slice(CSV_HEADER.as_bytes());
        for entry in self.merged.entries(n) {
            body.put_slice(entry.rank.to_string().as_bytes());
            body.put_u8(b',');
            csv_field(&mut body, entry.symbol);
            body.put_u8(b',');
            if let Some(price) = entry.price_usd {
                // The same shortest round-trip form as the JSON.
                body.put_slice(serde_json::to_string(&price).expect("finite").as_bytes());
            }
            body.put_u8(b'\n');
        }
        body.into()
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The meta block after `count`, for the notices in force; built once per view.
pub struct Meta {
    tail_fresh: String,
    tail_stale: String,
    /// Names the pair of snapshots; the stem of every ETag.
    pub tag: String,
}

impl Meta {
    /// `references` names the reference prices the changes were worked out against
    /// ([`crate::merge::References::id`]): they show in the body, so they are in the ETag.
    pub fn new(prices: &HashNotice, ranking: &HashNotice, references: u64) -> Self {
        let common = format!(
            ",\"prices_hash\":\"{}\",\"ranking_hash\":\"{}\",\"prices_as_of\":\"{}\",\"ranking_as_of\":\"{}\",\"stale\":",
            prices.hash,
            ranking.hash,
            rfc3339(prices.as_of),
            rfc3339(ranking.as_of),
        );
        Self {
            tail_fresh: format!("{common}false}}}}"),
            tail_stale: format!("{common}true}}}}"),
            tag: pair_tag(prices, ranking, references),
        }
    }
}

/// 16 hex digits naming the pair of hashes and the times they were announced (which the body
/// shows, so they must change the ETag too), and the reference prices.
fn pair_tag(prices: &HashNotice, ranking: &HashNotice, references: u64) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&references.to_le_bytes());
    for (hash, as_of) in [(prices.hash, prices.as_of), (ranking.hash, ranking.as_of)] {
        h.update(SnapshotHash::as_bytes(&hash));
        h.update(&as_of.unix_timestamp_nanos().to_le_bytes());
    }
    h.finalize().to_hex()[..16].to_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use topcoins_schemas::api::{TopEntry, TopResponse};
    use topcoins_schemas::{PriceSnapshot, PricedCoin, RankedCoin, RankingSnapshot};

    use super::*;
    use crate::merge::{Ranked, RowReferences, merge};

    const SYMBOLS: [&str; 3] = ["BTC", "A,B", "Q\"T"];

    fn volume(i: usize) -> f64 {
        30.0 - 10.0 * i as f64
    }

    /// Three ranked coins; the price source knows the first two.
    fn merged() -> Merged {
        let ranking = RankingSnapshot::new(
            "cryptocompare",
            SYMBOLS
                .iter()
                .enumerate()
                .map(|(i, s)| RankedCoin {
                    id: i.to_string().into(),
                    symbol: (*s).into(),
                    name: format!("{s} coin").into(),
                    volume_24h_usd: Some(volume(i)),
                    price_usd: None,
                })
                .collect(),
        )
        .unwrap();
        let prices = PriceSnapshot::new(
            "coinmarketcap",
            SYMBOLS[..2]
                .iter()
                .enumerate()
                .map(|(i, s)| PricedCoin {
                    id: i.to_string().into(),
                    symbol: (*s).into(),
                    name: String::new().into(),
                    price_usd: 1.5 * (i + 1) as f64,
                    market_cap_usd: None,
                })
                .collect(),
        )
        .unwrap();
        merge(
            &Arc::new(Ranked::new(Arc::new(ranking))),
            Arc::new(prices),
            &RowReferences::default(),
        )
    }

    fn entries() -> Vec<TopEntry> {
        SYMBOLS
            .iter()
            .enumerate()
            .map(|(i, s)| TopEntry {
                rank: i as u32 + 1,
                symbol: (*s).into(),
                name: format!("{s} coin"),
                price_usd: (i != 2).then_some(1.5 * (i + 1) as f64),
                price_source: (i != 2).then(|| "coinmarketcap".to_owned()),
                change_24h_pct: None,
                volume_24h_usd: Some(volume(i)),
            })
            .collect()
    }

    fn notice(b: &[u8]) -> HashNotice {
        HashNotice {
            hash: SnapshotHash::of(b),
            as_of: OffsetDateTime::UNIX_EPOCH,
            count: 3,
            source: "s".into(),
            follows: None,
        }
    }

    #[test]
    fn sliced_json_is_the_contract_shape() {
        let p = TopList::new(merged());
        let meta = Meta::new(&notice(b"p"), &notice(b"r"), 0);
        for n in 0..=3 {
            let body = p.json_body(n, &meta, n == 1);
            let parsed: TopResponse = serde_json::from_slice(&body).unwrap();
            assert_eq!(parsed.data, entries()[..n].to_vec());
            assert_eq!(parsed.meta.count, n);
            assert_eq!(parsed.meta.stale, n == 1);
            assert_eq!(parsed.meta.prices_hash, SnapshotHash::of(b"p"));
            assert_eq!(parsed.meta.ranking_as_of, "1970-01-01T00:00:00Z");
        }
    }

    #[test]
    fn csv_rows_and_quoting() {
        let p = TopList::new(merged());
        let body = String::from_utf8(p.csv_body(3)).unwrap();
        assert_eq!(
            body,
            "Rank,Symbol,Price USD\n1,BTC,1.5\n2,\"A,B\",3.0\n3,\"Q\"\"T\",\n"
        );
        assert_eq!(
            String::from_utf8(p.csv_body(1)).unwrap(),
            "Rank,Symbol,Price USD\n1,BTC,1.5\n"
        );
    }
}
