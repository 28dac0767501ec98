//! Canonical encoding and blake3 hash of a 10,000-coin snapshot: what an actor does every
//! poll to know whether anything changed. Baseline in the same run: blake3 alone over the
//! same bytes (the floor for "hash the snapshot").

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use topcoins_schemas::{PriceSnapshot, PricedCoin, Snapshot, SnapshotHash};

fn snapshot(n: usize) -> PriceSnapshot {
    let coins = (0..n)
        .map(|i| PricedCoin {
            id: (i * 7 + 1).to_string().into(),
            symbol: format!("C{i:04}").into(),
            name: format!("Coin number {i}").into(),
            price_usd: 1.0 / (i as f64 + 1.0) * 12345.678,
            market_cap_usd: Some(1e12 / (i as f64 + 1.0)),
        })
        .collect();
    PriceSnapshot::new("coinmarketcap", coins).expect("valid")
}

fn bench(c: &mut Criterion) {
    let s = snapshot(10_000);
    let bytes = s.canonical_bytes();
    c.bench_function("blake3 of 10,000-coin canonical bytes (baseline)", |b| {
        b.iter(|| SnapshotHash::of(black_box(&bytes)))
    });
    c.bench_function("canonical encode + hash, 10,000 coins", |b| {
        b.iter(|| black_box(&s).encode())
    });
    c.bench_function("decode + validate, 10,000 coins", |b| {
        b.iter(|| PriceSnapshot::decode(black_box(&bytes)).expect("decodes"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
