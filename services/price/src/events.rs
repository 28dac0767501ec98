//! Per-coin price events: after a new price snapshot is announced, one small message on
//! `topcoins.v1.price.<SYMBOL>` for each symbol whose price differs from the previous
//! snapshot (every symbol, the first time). Symbols are named by the same rule as the merge
//! ([`PriceSnapshot::by_symbol`]), upper case, so a subscriber sees the price the API serves.

use async_nats::Client;
use time::OffsetDateTime;
use topcoins_schemas::{PriceEvent, PriceSnapshot};
use topcoins_upstream::UpstreamMetrics;

pub struct PriceEvents {
    client: Client,
    metrics: UpstreamMetrics,
}

/// The events that take `previous` to `current`, in symbol order.
pub fn changes(
    previous: Option<&PriceSnapshot>,
    current: &PriceSnapshot,
    as_of: OffsetDateTime,
) -> Vec<PriceEvent> {
    let before = previous.map(PriceSnapshot::by_symbol).unwrap_or_default();
    let mut events: Vec<PriceEvent> = current
        .by_symbol()
        .into_iter()
        .filter(|(symbol, coin)| {
            before
                .get(symbol)
                .is_none_or(|old| old.price_usd != coin.price_usd)
        })
        .map(|(symbol, coin)| PriceEvent {
            symbol,
            price_usd: coin.price_usd,
            as_of,
        })
        .collect();
    events.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    events
}

impl PriceEvents {
    pub fn new(client: Client, metrics: UpstreamMetrics) -> Self {
        Self { client, metrics }
    }

    pub async fn publish_changes(
        &self,
        previous: Option<&PriceSnapshot>,
        current: &PriceSnapshot,
        as_of: OffsetDateTime,
    ) {
        let events = changes(previous, current, as_of);
        let mut sent = 0u64;
        for event in &events {
            match topcoins_bus::publish_price(&self.client, event).await {
                Ok(()) => sent += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "price events not published");
                    break;
                }
            }
        }
        self.metrics
            .price_events_published
            .with_label_values(&[current.source.as_str()])
            .inc_by(sent);
        tracing::debug!(sent, "price events published");
    }
}

#[cfg(test)]
mod tests {
    use topcoins_schemas::PricedCoin;

    use super::*;

    fn snap(prices: &[(&str, &str, f64, f64)]) -> PriceSnapshot {
        let coins = prices
            .iter()
            .map(|&(id, symbol, price, cap)| PricedCoin {
                id: id.into(),
                symbol: symbol.into(),
                name: symbol.into(),
                price_usd: price,
                market_cap_usd: Some(cap),
            })
            .collect();
        PriceSnapshot::new("t", coins).unwrap()
    }

    #[test]
    fn only_changed_symbols_and_by_the_merge_rule() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let a = snap(&[
            ("1", "BTC", 10.0, 100.0),
            ("2", "ETH", 5.0, 50.0),
            ("3", "HOT", 1.0, 9.0),
            ("4", "hot", 2.0, 1.0),
        ]);
        let first = changes(None, &a, now);
        assert_eq!(first.len(), 3);
        let hot = first.iter().find(|e| e.symbol == "HOT").unwrap();
        assert_eq!(hot.price_usd, 1.0, "HOT is the larger-cap coin");
        let b = snap(&[
            ("1", "BTC", 11.0, 100.0),
            ("2", "ETH", 5.0, 50.0),
            ("3", "HOT", 1.0, 9.0),
            ("4", "hot", 3.0, 1.0),
        ]);
        let next = changes(Some(&a), &b, now);
        assert_eq!(
            next.iter().map(|e| e.symbol.as_str()).collect::<Vec<_>>(),
            ["BTC"]
        );
    }
}
