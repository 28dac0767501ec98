//! The API node's hot functions: merge of 10,000 ranked × 10,000 priced coins, and response
//! preparation for limits 200 and 5000. Baseline in the same run: copying a body of the same
//! size (what serving a prepared response costs at least).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use time::OffsetDateTime;
use topcoins_api::merge::{Ranked, References, merge};
use topcoins_api::render::{Meta, TopList};
use topcoins_schemas::{
    HashNotice, PriceSnapshot, PricedCoin, RankedCoin, RankingSnapshot, SnapshotHash,
};

fn inputs(n: usize) -> (RankingSnapshot, PriceSnapshot) {
    let ranked = (0..n)
        .map(|i| RankedCoin {
            id: (1000 + i).to_string().into(),
            symbol: format!("C{i:04}").into(),
            name: format!("Coin number {i}").into(),
            volume_24h_usd: Some(1e10 / (i as f64 + 1.0)),
            price_usd: Some(1.5),
        })
        .collect();
    let priced = (0..n)
        .map(|i| PricedCoin {
            id: (i * 7 + 1).to_string().into(),
            // Every 10th symbol is missing at the price source, so the fallback is exercised.
            symbol: if i % 10 == 0 {
                format!("X{i:04}").into()
            } else {
                format!("C{i:04}").into()
            },
            name: format!("Coin number {i}").into(),
            price_usd: 12345.678 / (i as f64 + 1.0),
            market_cap_usd: Some(1e12 / (i as f64 + 1.0)),
        })
        .collect();
    (
        RankingSnapshot::new("cryptocompare", ranked).expect("valid"),
        PriceSnapshot::new("coinmarketcap", priced).expect("valid"),
    )
}

fn notice(b: &[u8]) -> HashNotice {
    HashNotice {
        hash: SnapshotHash::of(b),
        as_of: OffsetDateTime::UNIX_EPOCH,
        count: 1,
        source: "s".into(),
        follows: None,
    }
}

fn bench(c: &mut Criterion) {
    let (ranking, prices) = inputs(10_000);
    let (ranking, prices) = (Arc::new(ranking), Arc::new(prices));
    // A ranking change indexes the ranking, then merges; a price change only merges.
    c.bench_function("index 10,000 ranked coins (ranking change)", |b| {
        b.iter(|| Ranked::new(black_box(ranking.clone())))
    });
    let ranked = Arc::new(Ranked::new(ranking));
    // Every coin has a reference price of 24 h ago, so each entry's change is worked out.
    let references = References::new(
        (0..10_000)
            .map(|i| (format!("C{i:04}").into(), 1.0 + i as f64))
            .collect(),
    );
    c.bench_function(
        "lay out 10,000 reference prices (ranking or reference change)",
        |b| b.iter(|| black_box(&ranked).references(black_box(&references))),
    );
    let refs = ranked.references(&references);
    c.bench_function("merge 10,000 ranked x 10,000 priced", |b| {
        b.iter(|| {
            merge(
                black_box(&ranked),
                black_box(prices.clone()),
                black_box(&refs),
            )
        })
    });
    let prepared = TopList::new(merge(&ranked, prices, &refs));
    let meta = Meta::new(&notice(b"p"), &notice(b"r"), references.id);
    for n in [200, 5000] {
        let body = prepared.json_body(n, &meta, false);
        c.bench_function(
            &format!("copy a {}-byte body (baseline)", body.len()),
            |b| b.iter(|| black_box(&body).clone()),
        );
        c.bench_function(&format!("prepare JSON limit={n}"), |b| {
            b.iter(|| prepared.json_body(black_box(n), &meta, false))
        });
        c.bench_function(&format!("prepare CSV limit={n}"), |b| {
            b.iter(|| prepared.csv_body(black_box(n)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
