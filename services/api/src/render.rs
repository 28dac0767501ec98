//! Response bytes, prepared once per merge so that a request is a lookup and a copy.
//!
//! The merged list is rendered once as JSON objects and once as CSV rows, each into one
//! buffer with the end offset of every entry. A response for `limit = n` is the fixed head,
//! the first `n` entries sliced out of the buffer, and a small tail with the meta block; no
//! per-limit cache, no serialisation on the request path.

use bytes::{BufMut, Bytes, BytesMut};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use topcoins_schemas::api::TopEntry;
use topcoins_schemas::{HashNotice, SnapshotHash};

pub const CSV_HEADER: &str = "Rank,Symbol,Price USD\n";

/// One merged list, rendered.
pub struct Prepared {
    pub count: usize,
    json: Bytes,
    json_ends: Vec<usize>,
    csv: Bytes,
    csv_ends: Vec<usize>,
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

impl Prepared {
    pub fn new(entries: &[TopEntry]) -> Self {
        let mut json = BytesMut::with_capacity(entries.len() * 140);
        let mut json_ends = Vec::with_capacity(entries.len());
        let mut csv = BytesMut::with_capacity(entries.len() * 24);
        let mut csv_ends = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                json.put_u8(b',');
            }
            let mut writer = (&mut json).writer();
            serde_json::to_writer(&mut writer, entry).expect("entry serialises");
            json_ends.push(json.len());

            csv.put_slice(entry.rank.to_string().as_bytes());
            csv.put_u8(b',');
            csv_field(&mut csv, &entry.symbol);
            csv.put_u8(b',');
            if let Some(price) = entry.price_usd {
                // The same shortest round-trip form as the JSON.
                csv.put_slice(serde_json::to_string(&price).expect("finite").as_bytes());
            }
            csv.put_u8(b'\n');
            csv_ends.push(csv.len());
        }
        Self {
            count: entries.len(),
            json: json.freeze(),
            json_ends,
            csv: csv.freeze(),
            csv_ends,
        }
    }

    /// The JSON body for the first `n` entries (`n` ≤ `count`).
    pub fn json_body(&self, n: usize, meta: &Meta, stale: bool) -> Vec<u8> {
        let items = if n == 0 {
            &[][..]
        } else {
            &self.json[..self.json_ends[n - 1]]
        };
        let tail = if stale {
            &meta.tail_stale
        } else {
            &meta.tail_fresh
        };
        let count = n.to_string();
        let mut body = Vec::with_capacity(40 + items.len() + count.len() + tail.len());
        body.extend_from_slice(b"{\"data\":[");
        body.extend_from_slice(items);
        body.extend_from_slice(b"],\"meta\":{\"count\":");
        body.extend_from_slice(count.as_bytes());
        body.extend_from_slice(tail.as_bytes());
        body
    }

    /// The CSV body for the first `n` entries.
    pub fn csv_body(&self, n: usize) -> Vec<u8> {
        let rows = if n == 0 {
            &[][..]
        } else {
            &self.csv[..self.csv_ends[n - 1]]
        };
        let mut body = Vec::with_capacity(CSV_HEADER.len() + rows.len());
        body.extend_from_slice(CSV_HEADER.as_bytes());
        body.extend_from_slice(rows);
        body
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
    pub fn new(prices: &HashNotice, ranking: &HashNotice) -> Self {
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
            tag: pair_tag(prices, ranking),
        }
    }
}

/// 16 hex digits naming the pair of hashes and the times they were announced (which the body
/// shows, so they must change the ETag too).
fn pair_tag(prices: &HashNotice, ranking: &HashNotice) -> String {
    let mut h = blake3::Hasher::new();
    for (hash, as_of) in [(prices.hash, prices.as_of), (ranking.hash, ranking.as_of)] {
        h.update(SnapshotHash::as_bytes(&hash));
        h.update(&as_of.unix_timestamp_nanos().to_le_bytes());
    }
    h.finalize().to_hex()[..16].to_owned()
}

#[cfg(test)]
mod tests {
    use topcoins_schemas::api::TopResponse;

    use super::*;

    fn entries() -> Vec<TopEntry> {
        ["BTC", "A,B", "Q\"T"]
            .iter()
            .enumerate()
            .map(|(i, s)| TopEntry {
                rank: i as u32 + 1,
                symbol: (*s).into(),
                name: format!("{s} coin"),
                price_usd: (i != 2).then_some(1.5 * (i + 1) as f64),
                price_source: (i != 2).then(|| "coinmarketcap".to_owned()),
                volume_24h_usd: Some(10.0),
            })
            .collect()
    }

    fn notice(b: &[u8]) -> HashNotice {
        HashNotice {
            hash: SnapshotHash::of(b),
            as_of: OffsetDateTime::UNIX_EPOCH,
            count: 3,
            source: "s".into(),
        }
    }

    #[test]
    fn sliced_json_is_the_contract_shape() {
        let p = Prepared::new(&entries());
        let meta = Meta::new(&notice(b"p"), &notice(b"r"));
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
        let p = Prepared::new(&entries());
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
