//! The price source in force: CoinMarketCap when it is usable, CoinGecko otherwise.
//!
//! - No CoinMarketCap configured (no key, and the base URL left at the real provider's):
//!   CoinGecko only.
//! - CoinMarketCap failing [`FAILOVER_AFTER`] cycles in a row: switch to CoinGecko, in the same
//!   cycle, so a price snapshot still comes out of it.
//! - While on CoinGecko, CoinMarketCap is tried again every [`PROBE_EVERY`] cycles; the first
//!   success switches back.
//!
//! Each snapshot carries its source, so every API entry's `price_source` says who priced it.

use topcoins_schemas::PriceSnapshot;
use topcoins_upstream::{UpstreamError, UpstreamMetrics};

use crate::cmc::{self, CmcClient};
use crate::coingecko::{self, CoinGeckoClient};

/// Consecutive failed CoinMarketCap cycles before falling over to CoinGecko.
pub const FAILOVER_AFTER: u32 = 3;
/// While on CoinGecko, cycles between two tries of CoinMarketCap.
pub const PROBE_EVERY: u32 = 5;

pub struct FailoverPrices {
    primary: Option<(CmcClient, usize)>,
    fallback: (CoinGeckoClient, usize),
    failures: u32,
    on_fallback: bool,
    cycles_on_fallback: u32,
    metrics: UpstreamMetrics,
}

impl FailoverPrices {
    pub fn new(
        primary: Option<(CmcClient, usize)>,
        fallback: (CoinGeckoClient, usize),
        metrics: UpstreamMetrics,
    ) -> Self {
        let this = Self {
            on_fallback: primary.is_none(),
            primary,
            fallback,
            failures: 0,
            cycles_on_fallback: 0,
            metrics,
        };
        this.show_active();
        this
    }

    pub fn active(&self) -> &'static str {
        if self.on_fallback {
            coingecko::PROVIDER
        } else {
            cmc::PROVIDER
        }
    }

    fn show_active(&self) {
        for source in [cmc::PROVIDER, coingecko::PROVIDER] {
            self.metrics
                .active_source
                .with_label_values(&[source])
                .set(i64::from(source == self.active()));
        }
    }

    fn switch(&mut self, to_fallback: bool) {
        self.on_fallback = to_fallback;
        self.failures = 0;
        self.cycles_on_fallback = 0;
        self.metrics
            .failovers
            .with_label_values(&[self.active()])
            .inc();
        self.show_active();
        tracing::warn!(source = self.active(), "price source switched");
    }

    pub async fn fetch(&mut self) -> Result<PriceSnapshot, UpstreamError> {
        if let Some((cmc, universe)) = &self.primary {
            let probe = self.on_fallback && {
                self.cycles_on_fallback += 1;
                self.cycles_on_fallback.is_multiple_of(PROBE_EVERY)
            };
            if !self.on_fallback || probe {
                match cmc.snapshot(*universe).await {
                    Ok(snapshot) => {
                        self.failures = 0;
                        if self.on_fallback {
                            self.switch(false);
                        }
                        return Ok(snapshot);
                    }
                    Err(e) if !self.on_fallback => {
                        self.failures += 1;
                        if self.failures < FAILOVER_AFTER {
                            return Err(e);
                        }
                        tracing::warn!(error = %e, failures = self.failures, "coinmarketcap keeps failing; falling over to coingecko");
                        self.metrics
                            .rejected
                            .with_label_values(&[e.provider, e.reason()])
                            .inc();
                        self.switch(true);
                    }
                    Err(e) => {
                        self.metrics
                            .rejected
                            .with_label_values(&[e.provider, e.reason()])
                            .inc();
                        tracing::info!(error = %e, "coinmarketcap still failing; staying on coingecko");
                    }
                }
            }
        }
        let (gecko, universe) = &self.fallback;
        gecko.snapshot(*universe).await
    }
}
