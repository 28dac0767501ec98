//! The simulated market: one universe of coins that every simulated provider reports on.
//!
//! Prices follow a random walk (about 1% a step) and 24h volumes a wilder one, so ranks by
//! volume shift from one step to the next. Everything comes from one seeded ChaCha stream, so
//! the same seed and the same number of steps give the same market, byte for byte.
//!
//! Quirks of the real providers are built in: a few symbols are shared by two coins (the
//! smaller one appears on CryptoCompare as `SYM*`, as CryptoCompare does), some supplies are
//! whole numbers and some are not, `max_supply` is often null, and a few coins have no USD
//! data on CryptoCompare at all.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::OffsetDateTime;

use crate::history::Tape;

/// Coins whose first symbols and names are real, for a plausible top of the list.
const FAMOUS: &[(&str, &str, f64)] = &[
    ("BTC", "Bitcoin", 67_000.0),
    ("ETH", "Ethereum", 3_400.0),
    ("USDT", "Tether", 1.0),
    ("BNB", "BNB", 590.0),
    ("SOL", "Solana", 150.0),
    ("XRP", "XRP", 0.52),
    ("USDC", "USD Coin", 1.0),
    ("ADA", "Cardano", 0.45),
    ("DOGE", "Dogecoin", 0.15),
    ("TRX", "TRON", 0.12),
];

/// Every this many coins, one shares its symbol with a bigger coin.
const SHARED_SYMBOL_EVERY: usize = 500;
/// Every this many coins, one has no USD data on CryptoCompare.
const NO_CC_DATA_EVERY: usize = 397;

#[derive(Debug, Clone)]
pub struct Coin {
    /// CoinMarketCap numeric id.
    pub cmc_id: u64,
    /// CryptoCompare numeric id (sent as a string, as CryptoCompare does).
    pub cc_id: u64,
    /// CoinGecko slug.
    pub gecko_id: String,
    pub symbol: String,
    /// The symbol CryptoCompare uses: `symbol`, or `symbol*` for the second coin of a pair.
    pub cc_symbol: String,
    pub name: String,
    pub price: f64,
    pub circulating_supply: f64,
    pub max_supply: Option<f64>,
    /// 24h volume in USD as CoinMarketCap sees it.
    pub volume_24h: f64,
    /// CryptoCompare's total volume differs from CoinMarketCap's by a per-coin factor.
    pub cc_volume_factor: f64,
    pub change_24h_pct: f64,
    pub on_cryptocompare: bool,
    pub has_platform: bool,
}

impl Coin {
    pub fn market_cap(&self) -> f64 {
        self.price * self.circulating_supply
    }

    pub fn cc_volume(&self) -> f64 {
        self.volume_24h * self.cc_volume_factor
    }
}

pub struct Market {
    pub coins: Vec<Coin>,
    pub step: u64,
    pub updated: OffsetDateTime,
    /// The hourly closes the history endpoints are drawn from (see [`crate::history`]).
    pub tape: Tape,
    /// Pairs each simulated exchange lists, if not its own default (`TOPCOINS_SIM_PAIRS`).
    pub listed: Option<usize>,
    rng: ChaCha8Rng,
}

fn log_uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + rng.random::<f64>() * (hi.ln() - lo.ln())).exp()
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn random_symbol(rng: &mut ChaCha8Rng) -> String {
    let len = rng.random_range(3..=5);
    (0..len)
        .map(|_| char::from(b'A' + rng.random_range(0..26u8)))
        .collect()
}

/// Rounds to `digits` significant digits, so simulated numbers look like real quotes.
fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

impl Market {
    pub fn new(size: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut used: HashSet<String> = HashSet::new();
        let mut coins = Vec::with_capacity(size);
        for i in 0..size {
            let (symbol, name, price) = match FAMOUS.get(i) {
                Some(&(s, n, p)) => (s.to_owned(), n.to_owned(), p),
                None => {
                    let mut s = random_symbol(&mut rng);
                    while used.contains(&s) {
                        s = random_symbol(&mut rng);
                    }
                    let name = format!("{}{} Coin", &s[..1], s[1..].to_lowercase());
                    (s, name, log_uniform(&mut rng, 1e-5, 2e3))
                }
            };
            used.insert(symbol.clone());
            // Market caps fall off with the index, so the universe has a plausible head.
            let cap = 1.3e12 / (i as f64 + 1.0).powf(1.6) * log_uniform(&mut rng, 0.5, 2.0);
            let circulating = cap / price;
            let whole = rng.random_bool(0.5);
            let circulating_supply = if whole {
                circulating.round()
            } else {
                circulating
            };
            let max_supply = rng
                .random_bool(0.4)
                .then(|| (circulating * log_uniform(&mut rng, 1.0, 3.0)).round());
            coins.push(Coin {
                cmc_id: 1 + i as u64 * 7 + rng.random_range(0..7),
                cc_id: 1000 + i as u64 * 13,
                gecko_id: name.to_lowercase().replace(' ', "-"),
                cc_symbol: symbol.clone(),
                symbol,
                name,
                price: round_sig(price, 8),
                circulating_supply,
                max_supply,
                volume_24h: cap * log_uniform(&mut rng, 0.002, 0.4),
                cc_volume_factor: log_uniform(&mut rng, 0.8, 1.25),
                change_24h_pct: 0.0,
                on_cryptocompare: i == 0 || i % NO_CC_DATA_EVERY != 0,
                has_platform: i > 20 && rng.random_bool(0.6),
            });
        }
        // A few symbols shared by two coins: the smaller takes the symbol of a bigger one.
        for i in (SHARED_SYMBOL_EVERY / 2..size).step_by(SHARED_SYMBOL_EVERY) {
            let donor = i / 10;
            let symbol = coins[donor].symbol.clone();
            coins[i].cc_symbol = format!("{symbol}*");
            coins[i].symbol = symbol;
        }
        let updated = OffsetDateTime::now_utc();
        Self {
            tape: Tape::new(&coins, updated.unix_timestamp()),
            coins,
            step: 0,
            updated,
            listed: None,
            rng,
        }
    }

    /// Moves the market one step: every price and volume changes.
    pub fn step(&mut self) {
        for coin in &mut self.coins {
            let stable = coin.price > 0.98 && coin.price < 1.02 && coin.name.contains("US");
            let sigma = if stable { 0.0005 } else { 0.01 };
            let r = sigma * normal(&mut self.rng);
            coin.price = round_sig(coin.price * r.exp(), 8);
            coin.change_24h_pct = round_sig(coin.change_24h_pct * 0.9 + r * 100.0, 6);
            coin.volume_24h *= (0.15 * normal(&mut self.rng)).exp();
        }
        self.step += 1;
        self.updated = OffsetDateTime::now_utc();
        self.tape.record(&self.coins, self.updated.unix_timestamp());
    }

    /// Coins by market cap, largest first (CoinMarketCap's and CoinGecko's order).
    pub fn by_market_cap(&self) -> Vec<&Coin> {
        let mut v: Vec<&Coin> = self.coins.iter().collect();
        v.sort_by(|a, b| b.market_cap().total_cmp(&a.market_cap()));
        v
    }

    /// Coins CryptoCompare lists, by its 24h total volume, largest first; coins without USD
    /// data last.
    pub fn by_cc_volume(&self) -> Vec<&Coin> {
        let mut v: Vec<&Coin> = self.coins.iter().collect();
        v.sort_by(|a, b| {
            let key = |c: &Coin| {
                if c.on_cryptocompare {
                    c.cc_volume()
                } else {
                    -1.0
                }
            };
            key(b).total_cmp(&key(a))
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_market_and_steps_move_ranks() {
        let mut a = Market::new(2000, 7);
        let mut b = Market::new(2000, 7);
        let ranks = |m: &Market| m.by_cc_volume().iter().map(|c| c.cc_id).collect::<Vec<_>>();
        assert_eq!(ranks(&a), ranks(&b));
        let before = ranks(&a);
        a.step();
        b.step();
        assert_eq!(ranks(&a), ranks(&b));
        assert_ne!(ranks(&a), before, "a step should shift ranks");
        assert_ne!(
            Market::new(50, 8).coins[20].symbol,
            Market::new(50, 7).coins[20].symbol
        );
    }

    #[test]
    fn quirks_are_present() {
        let m = Market::new(2000, 1);
        let shared = m
            .coins
            .iter()
            .filter(|c| c.cc_symbol.ends_with('*'))
            .count();
        assert!(shared >= 3, "{shared}");
        let ids: HashSet<u64> = m.coins.iter().map(|c| c.cmc_id).collect();
        assert_eq!(ids.len(), 2000);
        let cc: HashSet<&str> = m.coins.iter().map(|c| c.cc_symbol.as_str()).collect();
        assert_eq!(cc.len(), 2000, "CryptoCompare symbols are unique");
        assert!(m.coins.iter().any(|c| !c.on_cryptocompare));
        assert!(m.coins.iter().any(|c| c.max_supply.is_none()));
        assert!(m.coins.iter().any(|c| c.circulating_supply.fract() != 0.0));
        assert!(m.coins.iter().any(|c| c.circulating_supply.fract() == 0.0));
    }
}
