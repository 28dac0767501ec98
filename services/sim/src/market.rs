//! The simulated market: one universe of coins that every simulated provider reports on.
//!
//! **A head that looks like the market.** The first coins are real ones (the table `REAL`:
//! symbols, names, CoinGecko ids, prices, market caps, supplies and typical volumes as of late
//! 2025), each cap within ±10% of the table's, so the top of every provider's list is the
//! market one knows — Bitcoin, Ethereum, Tether, XRP, BNB, … — with the stablecoins at about
//! 1 USD.
//! Beyond the table the caps go on as a power law in the index, continuing smoothly below the
//! table's last coin (`cap ∝ (i + 1)^-1.5`), times a log-normal factor: the universe is heavy
//! tailed as the real one is (its top 1% of coins hold nearly all the value). Those coins have
//! made-up symbols and names, never a real coin's.
//!
//! **Volumes.** A coin's 24 h volume is a share of its cap: the table's for the real coins
//! (stablecoins trade much of their cap a day, Tether more than any coin, Bitcoin ~3.5%, most
//! majors 2–10%), log-uniform between 0.5% and 15% beyond. CryptoCompare ranks by volume, so
//! the top of its list is real coins too, at the start and as the market moves.
//!
//! **Steps.** Prices follow a random walk of about 1% a step, pulled back very weakly toward
//! the starting price (0.1% of the gap, in log space, a step: invisible over minutes of steps,
//! but a market left running for days keeps its shape instead of scattering); stablecoins
//! mean-revert to 1 USD and never leave ±0.5% of it. Volumes wiggle around each coin's base
//! volume (mean-reverting in log space, about ±23%), enough that ranks by volume shift among
//! neighbours from one step to the next, but no coin drifts off to anywhere. Everything comes
//! from one seeded ChaCha stream, so the same seed and the same number of steps give the same
//! market, byte for byte.
//!
//! Quirks of the real providers are built in: a few symbols are shared by two coins (the
//! smaller one appears on CryptoCompare as `SYM*`, as CryptoCompare does; the bigger one is
//! never a real coin, so the head of every list stays unambiguous), some supplies are whole
//! numbers and some are not, `max_supply` is often null, and a few coins (never real ones) have
//! no USD data on CryptoCompare at all.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::OffsetDateTime;

use crate::history::Tape;

/// What a real coin is, for its platform and its walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Its own chain's coin: no platform.
    Native,
    /// A token on another chain's platform.
    Token,
    /// A token pegged to 1 USD.
    Stable,
}

use Kind::{Native, Stable, Token};

/// One real coin: symbol, name, CoinGecko id, price in USD, market cap in billions of USD,
/// typical 24 h volume as a percentage of the cap, kind, max supply (`None`: no cap).
type RealCoin = (
    &'static str,
    &'static str,
    &'static str,
    f64,
    f64,
    f64,
    Kind,
    Option<f64>,
);

/// The real coins at the head of the universe, largest cap first, as of late 2025 (rounded;
/// the circulating supply is the cap over the price). A stablecoin's 24 h volume is often
/// many times that of a coin of its size: Tether's is the largest of all, FDUSD's above its
/// cap.
#[rustfmt::skip]
const REAL: &[RealCoin] = &[
    ("BTC", "Bitcoin", "bitcoin", 90_000.0, 1_796.4, 3.5, Native, Some(21e6)),
    ("ETH", "Ethereum", "ethereum", 3_100.0, 374.2, 7.0, Native, None),
    ("USDT", "Tether", "tether", 1.0, 186.0, 55.0, Stable, None),
    ("XRP", "XRP", "ripple", 2.05, 123.6, 3.5, Native, Some(100e9)),
    ("BNB", "BNB", "binancecoin", 880.0, 121.2, 1.6, Native, None),
    ("USDC", "USD Coin", "usd-coin", 1.0, 77.0, 13.0, Stable, None),
    ("SOL", "Solana", "solana", 135.0, 75.6, 5.0, Native, None),
    ("TRX", "TRON", "tron", 0.28, 26.5, 2.5, Native, None),
    ("DOGE", "Dogecoin", "dogecoin", 0.14, 21.2, 6.0, Native, None),
    ("ADA", "Cardano", "cardano", 0.42, 15.4, 4.5, Native, Some(45e9)),
    ("BCH", "Bitcoin Cash", "bitcoin-cash", 560.0, 11.2, 3.0, Native, Some(21e6)),
    ("HYPE", "Hyperliquid", "hyperliquid", 30.0, 10.1, 4.0, Native, Some(1e9)),
    ("LINK", "Chainlink", "chainlink", 14.0, 9.5, 5.0, Token, Some(1e9)),
    ("XLM", "Stellar", "stellar", 0.25, 8.05, 3.0, Native, Some(50e9)),
    ("XMR", "Monero", "monero", 400.0, 7.38, 1.5, Native, None),
    ("ZEC", "Zcash", "zcash", 420.0, 6.85, 12.0, Native, Some(21e6)),
    ("USDE", "Ethena USDe", "ethena-usde", 1.0, 6.5, 3.0, Stable, None),
    ("LTC", "Litecoin", "litecoin", 82.0, 6.3, 6.0, Native, Some(84e6)),
    ("SUI", "Sui", "sui", 1.6, 5.92, 8.0, Native, Some(10e9)),
    ("AVAX", "Avalanche", "avalanche-2", 13.5, 5.8, 6.0, Native, Some(720e6)),
    ("HBAR", "Hedera", "hedera-hashgraph", 0.13, 5.5, 3.0, Native, Some(50e9)),
    ("DAI", "Dai", "dai", 1.0, 5.3, 3.0, Stable, None),
    ("SHIB", "Shiba Inu", "shiba-inu", 8.5e-6, 5.0, 3.0, Token, None),
    ("TON", "Toncoin", "the-open-network", 1.6, 4.0, 4.0, Native, None),
    ("MNT", "Mantle", "mantle", 1.15, 3.74, 2.5, Token, Some(6.22e9)),
    ("UNI", "Uniswap", "uniswap", 5.8, 3.65, 7.0, Token, Some(1e9)),
    ("CRO", "Cronos", "crypto-com-chain", 0.10, 3.6, 1.0, Native, Some(100e9)),
    ("DOT", "Polkadot", "polkadot", 2.1, 3.4, 6.0, Native, None),
    ("PYUSD", "PayPal USD", "paypal-usd", 1.0, 3.0, 4.0, Stable, None),
    ("AAVE", "Aave", "aave", 190.0, 2.89, 9.0, Token, Some(16e6)),
    ("TAO", "Bittensor", "bittensor", 280.0, 2.69, 5.0, Native, Some(21e6)),
    ("NEAR", "NEAR Protocol", "near", 1.75, 2.24, 9.0, Native, None),
    ("ETC", "Ethereum Classic", "ethereum-classic", 13.5, 2.08, 4.0, Native, Some(210.7e6)),
    ("PEPE", "Pepe", "pepe", 4.5e-6, 1.89, 20.0, Token, Some(420.69e12)),
    ("ICP", "Internet Computer", "internet-computer", 3.5, 1.89, 5.0, Native, None),
    ("ENA", "Ethena", "ethena", 0.25, 1.8, 12.0, Token, Some(15e9)),
    ("ONDO", "Ondo", "ondo-finance", 0.45, 1.42, 6.0, Token, Some(10e9)),
    ("WLD", "Worldcoin", "worldcoin-wld", 0.55, 1.32, 10.0, Token, Some(10e9)),
    ("POL", "Polygon", "polygon-ecosystem-token", 0.12, 1.26, 4.0, Token, None),
    ("APT", "Aptos", "aptos", 1.7, 1.22, 8.0, Native, None),
    ("KAS", "Kaspa", "kaspa", 0.045, 1.21, 4.0, Native, Some(28.7e9)),
    ("ALGO", "Algorand", "algorand", 0.13, 1.14, 4.0, Native, Some(10e9)),
    ("ARB", "Arbitrum", "arbitrum", 0.20, 1.1, 10.0, Token, Some(10e9)),
    ("QNT", "Quant", "quant-network", 75.0, 1.09, 2.0, Token, Some(14.61e6)),
    ("ATOM", "Cosmos Hub", "cosmos", 2.2, 1.06, 6.0, Native, None),
    ("VET", "VeChain", "vechain", 0.012, 1.03, 3.0, Native, Some(86.7e9)),
    ("FIL", "Filecoin", "filecoin", 1.35, 0.945, 10.0, Native, Some(1.96e9)),
    ("FDUSD", "First Digital USD", "first-digital-usd", 1.0, 0.85, 150.0, Stable, None),
    ("SEI", "Sei", "sei-network", 0.13, 0.81, 10.0, Native, Some(10e9)),
    ("BONK", "Bonk", "bonk", 9.5e-6, 0.80, 10.0, Token, None),
    ("RENDER", "Render", "render-token", 1.4, 0.725, 7.0, Token, Some(644e6)),
    ("JUP", "Jupiter", "jupiter-exchange-solana", 0.20, 0.62, 6.0, Token, Some(10e9)),
    ("IMX", "Immutable", "immutable-x", 0.30, 0.585, 5.0, Token, Some(2e9)),
    ("OP", "Optimism", "optimism", 0.30, 0.57, 12.0, Token, Some(4.29e9)),
    ("INJ", "Injective", "injective-protocol", 5.5, 0.5498, 10.0, Native, Some(100e6)),
    ("CRV", "Curve DAO Token", "curve-dao-token", 0.38, 0.54, 15.0, Token, Some(3.03e9)),
    ("FET", "Artificial Superintelligence Alliance", "fetch-ai", 0.22, 0.506, 12.0, Token, Some(2.72e9)),
    ("STX", "Stacks", "blockstack", 0.27, 0.48, 6.0, Native, Some(1.818e9)),
    ("LDO", "Lido DAO", "lido-dao", 0.55, 0.465, 10.0, Token, Some(1e9)),
    ("TIA", "Celestia", "celestia", 0.55, 0.45, 12.0, Native, None),
    ("GRT", "The Graph", "the-graph", 0.04, 0.424, 6.0, Token, None),
];

/// Every this many coins, one shares its symbol with a bigger coin.
const SHARED_SYMBOL_EVERY: usize = 500;
/// Every this many coins, one has no USD data on CryptoCompare.
const NO_CC_DATA_EVERY: usize = 397;
// The first coin to share a symbol takes it from one beyond the table (see `Market::new`).
const _: () = assert!(REAL.len() + SHARED_SYMBOL_EVERY / 20 < SHARED_SYMBOL_EVERY / 2);
// The coins without CryptoCompare data are all beyond the table.
const _: () = assert!(REAL.len() < NO_CC_DATA_EVERY);

/// Beyond the table a coin's market cap is the last real coin's times
/// `(REAL.len() / (i + 1))^TAIL_EXPONENT`...
const TAIL_EXPONENT: f64 = 1.5;
/// ...times a log-normal factor of this sigma.
const TAIL_SIGMA: f64 = 0.5;
/// Beyond the table a coin's base 24 h volume is a share of its cap, log-uniform in this range.
const TAIL_VOLUME_SHARE: (f64, f64) = (0.005, 0.15);

/// A coin's log price move per step, and the share of its gap (in log space) to its starting
/// price it closes per step: a walk that looks free over hundreds of steps and settles at
/// about ±22% around the start over many thousands.
const PRICE_SIGMA: f64 = 0.01;
const PRICE_PULL: f64 = 0.001;
/// A stablecoin's log price move per step, the share of its gap to the peg it closes per
/// step (about ±0.08% around 1 USD), and the band around 1 USD it never leaves.
const STABLE_SIGMA: f64 = 0.0005;
const STABLE_PULL: f64 = 0.25;
const STABLE_BAND: f64 = 0.005;
/// A 24 h volume's log move per step, and the share of its gap to the coin's base volume it
/// closes per step (about ±23% around the base).
const VOLUME_SIGMA: f64 = 0.1;
const VOLUME_PULL: f64 = 0.1;

#[derive(Debug, Clone)]
pub struct Coin {
    /// CoinMarketCap numeric id.
    pub cmc_id: u64,
    /// CryptoCompare numeric id (sent as a string, as CryptoCompare does).
    pub cc_id: u64,
    /// CoinGecko id (also CoinMarketCap's slug).
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
    /// A stablecoin: its price stays within 0.5% of 1 USD.
    pub stable: bool,
    /// The price the walk is pulled back toward: the starting price (1 USD for a stablecoin).
    anchor_price: f64,
    /// The 24 h volume `volume_24h` wiggles around.
    base_volume: f64,
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

/// The spread (standard deviation, in log space) that a walk of `sigma` a step, closing
/// `pull` of its gap to its centre each step, settles at.
fn settled_spread(sigma: f64, pull: f64) -> f64 {
    sigma / (1.0 - (1.0 - pull).powi(2)).sqrt()
}

/// A stablecoin's price as the walk leaves it: about 1 USD, within the band.
fn pegged(price: f64) -> f64 {
    price.clamp(1.0 - STABLE_BAND, 1.0 + STABLE_BAND)
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

/// What sets one coin apart, before the fields every coin draws alike.
struct Draft {
    symbol: String,
    name: String,
    gecko_id: String,
    price: f64,
    /// Unrounded.
    circulating: f64,
    max_supply: Option<f64>,
    base_volume: f64,
    cc_volume_factor: f64,
    has_platform: bool,
    stable: bool,
}

/// A coin of the table: its cap within ±10% of the table's (the price moves, the supply is
/// the table's or a hair under it, so never above the max supply; a stablecoin's supply moves
/// instead), its base volume the table's share of the cap within about ±15%.
fn real_coin(rng: &mut ChaCha8Rng, real: &RealCoin) -> Draft {
    let &(symbol, name, gecko_id, price, cap_bn, volume_pct, kind, max_supply) = real;
    let stable = kind == Stable;
    let cap = cap_bn * 1e9;
    let factor = log_uniform(rng, 0.9, 1.1);
    let (price, circulating) = if stable {
        let spread = settled_spread(STABLE_SIGMA, STABLE_PULL);
        (pegged((spread * normal(rng)).exp()), cap * factor)
    } else {
        (price * factor, cap / price * log_uniform(rng, 0.998, 1.0))
    };
    let base_volume = price * circulating * volume_pct / 100.0 * log_uniform(rng, 0.85, 1.18);
    Draft {
        symbol: symbol.to_owned(),
        name: name.to_owned(),
        gecko_id: gecko_id.to_owned(),
        price,
        circulating,
        max_supply,
        base_volume,
        cc_volume_factor: log_uniform(rng, 0.9, 1.1),
        has_platform: kind != Native,
        stable,
    }
}

/// The `i`th coin, beyond the table: a made-up symbol and name not yet `used`, the cap of the
/// power law in `i` below the table's last coin times a log-normal factor.
fn tail_coin(
    rng: &mut ChaCha8Rng,
    i: usize,
    used: &mut HashSet<String>,
    used_ids: &mut HashSet<String>,
) -> Draft {
    let (symbol, name, gecko_id) = loop {
        let s = random_symbol(rng);
        let name = format!("{}{} Coin", &s[..1], s[1..].to_lowercase());
        let id = name.to_lowercase().replace(' ', "-");
        if !used.contains(&s) && !used_ids.contains(&id) {
            break (s, name, id);
        }
    };
    used.insert(symbol.clone());
    used_ids.insert(gecko_id.clone());
    let last_cap = REAL.last().map_or(1e9, |r| r.4 * 1e9);
    let decay = (REAL.len() as f64 / (i as f64 + 1.0)).powf(TAIL_EXPONENT);
    let cap = last_cap * decay * (TAIL_SIGMA * normal(rng)).exp();
    let price = log_uniform(rng, 1e-5, 2e3);
    let circulating = cap / price;
    let max_supply = if rng.random_bool(0.4) {
        Some((circulating * log_uniform(rng, 1.0, 3.0)).ceil())
    } else {
        None
    };
    let (lo, hi) = TAIL_VOLUME_SHARE;
    Draft {
        symbol,
        name,
        gecko_id,
        price,
        circulating,
        max_supply,
        base_volume: cap * log_uniform(rng, lo, hi),
        cc_volume_factor: log_uniform(rng, 0.8, 1.25),
        has_platform: rng.random_bool(0.6),
        stable: false,
    }
}

impl Market {
    pub fn new(size: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut used: HashSet<String> = REAL.iter().map(|r| r.0.to_owned()).collect();
        let mut used_ids: HashSet<String> = REAL.iter().map(|r| r.2.to_owned()).collect();
        let volume_spread = settled_spread(VOLUME_SIGMA, VOLUME_PULL);
        let mut coins = Vec::with_capacity(size);
        for i in 0..size {
            let d = match REAL.get(i) {
                Some(real) => real_coin(&mut rng, real),
                None => tail_coin(&mut rng, i, &mut used, &mut used_ids),
            };
            let whole = rng.random_bool(0.5);
            let circulating_supply = if whole {
                d.circulating.round()
            } else {
                d.circulating
            };
            let price = round_sig(d.price, 8);
            coins.push(Coin {
                cmc_id: 1 + i as u64 * 7 + rng.random_range(0..7),
                cc_id: 1000 + i as u64 * 13,
                gecko_id: d.gecko_id,
                cc_symbol: d.symbol.clone(),
                symbol: d.symbol,
                name: d.name,
                price,
                circulating_supply,
                max_supply: d.max_supply,
                // Already somewhere in the wiggle around the base, as after many steps.
                volume_24h: d.base_volume * (volume_spread * normal(&mut rng)).exp(),
                cc_volume_factor: d.cc_volume_factor,
                change_24h_pct: 0.0,
                on_cryptocompare: i < REAL.len() || i % NO_CC_DATA_EVERY != 0,
                has_platform: d.has_platform,
                stable: d.stable,
                anchor_price: if d.stable { 1.0 } else { price },
                base_volume: d.base_volume,
            });
        }
        // A few symbols shared by two coins: the smaller takes the symbol of a bigger one
        // beyond the table (a second "ETH" would muddle the head of every list).
        for i in (SHARED_SYMBOL_EVERY / 2..size).step_by(SHARED_SYMBOL_EVERY) {
            let donor = REAL.len() + i / 10;
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
            let (sigma, pull) = if coin.stable {
                (STABLE_SIGMA, STABLE_PULL)
            } else {
                (PRICE_SIGMA, PRICE_PULL)
            };
            let r = pull * (coin.anchor_price / coin.price).ln() + sigma * normal(&mut self.rng);
            let price = coin.price * r.exp();
            let price = if coin.stable { pegged(price) } else { price };
            coin.price = round_sig(price, 8);
            coin.change_24h_pct = round_sig(coin.change_24h_pct * 0.9 + r * 100.0, 6);
            let v = VOLUME_PULL * (coin.base_volume / coin.volume_24h).ln()
                + VOLUME_SIGMA * normal(&mut self.rng);
            coin.volume_24h *= v.exp();
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
    use std::collections::HashMap;

    use super::*;

    /// A coin of the table (by its symbol and name: a shared symbol is never a real one's).
    fn is_real(c: &Coin) -> bool {
        REAL.iter().any(|r| r.0 == c.cc_symbol && r.1 == c.name)
    }

    /// The symbols of the first ten of `ranked`.
    fn top10(ranked: &[&Coin]) -> Vec<String> {
        ranked[..10].iter().map(|c| c.symbol.clone()).collect()
    }

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
        // Beyond the table the symbols are the seed's.
        let tail = REAL.len() + 20;
        assert_ne!(
            Market::new(tail + 1, 8).coins[tail].symbol,
            Market::new(tail + 1, 7).coins[tail].symbol
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

    #[test]
    fn the_head_is_the_table() {
        let m = Market::new(2000, 1);
        for (c, r) in m.coins.iter().zip(REAL) {
            assert_eq!((c.symbol.as_str(), c.name.as_str()), (r.0, r.1));
            assert_eq!(c.gecko_id, r.2);
            assert_eq!(c.stable, r.6 == Kind::Stable, "{}", r.0);
            assert_eq!(c.has_platform, r.6 != Kind::Native, "{}", r.0);
            assert_eq!(c.max_supply, r.7, "{}", r.0);
            assert!(c.on_cryptocompare, "{}", r.0);
            let cap = r.4 * 1e9;
            assert!(
                (0.89 * cap..=1.11 * cap).contains(&c.market_cap()),
                "{}: cap {} for {cap}",
                r.0,
                c.market_cap()
            );
        }
        let btc = &m.coins[0];
        assert!(
            (19.9e6..21e6).contains(&btc.circulating_supply),
            "{}",
            btc.circulating_supply
        );
        for c in &m.coins {
            if let Some(max) = c.max_supply {
                assert!(max >= c.circulating_supply, "{}: {max}", c.symbol);
            }
        }
    }

    #[test]
    fn the_top_by_cap_and_by_volume_is_real_coins_and_stays_so() {
        let mut m = Market::new(2000, 1);
        assert_eq!(top10(&m.by_market_cap())[..2], ["BTC", "ETH"]);
        for step in 0..=500 {
            if step > 0 {
                m.step();
            }
            if step % 50 != 0 {
                continue;
            }
            for (by, ranked) in [("cap", m.by_market_cap()), ("volume", m.by_cc_volume())] {
                assert!(
                    ranked[..10].iter().all(|c| is_real(c)),
                    "step {step}, top 10 by {by}: {:?}",
                    top10(&ranked)
                );
            }
            assert_eq!(m.by_market_cap()[0].symbol, "BTC", "step {step}");
            // Tether and Bitcoin trade the most.
            let volume = top10(&m.by_cc_volume());
            for symbol in ["USDT", "BTC"] {
                assert!(
                    volume[..3].iter().any(|s| s == symbol),
                    "step {step}: {volume:?}"
                );
            }
        }
    }

    #[test]
    fn stablecoins_stay_at_about_one_dollar() {
        let mut m = Market::new(200, 1);
        let stable: Vec<usize> = (0..m.coins.len()).filter(|&i| m.coins[i].stable).collect();
        let symbols: Vec<&str> = stable.iter().map(|&i| m.coins[i].symbol.as_str()).collect();
        assert_eq!(symbols, ["USDT", "USDC", "USDE", "DAI", "PYUSD", "FDUSD"]);
        let btc = m.coins[0].price;
        for step in 0..1000 {
            m.step();
            for &i in &stable {
                let c = &m.coins[i];
                assert!(
                    (0.99..=1.01).contains(&c.price),
                    "step {step}: {} at {}",
                    c.symbol,
                    c.price
                );
            }
        }
        assert!(stable.iter().any(|&i| m.coins[i].price != 1.0), "they move");
        assert_ne!(m.coins[0].price, btc, "the others walk");
    }

    #[test]
    fn caps_are_heavy_tailed_and_fall_beyond_the_table() {
        let m = Market::new(2000, 1);
        let share_of_top = |caps: &[f64], fraction: usize| -> f64 {
            let mut caps = caps.to_vec();
            caps.sort_by(|a, b| b.total_cmp(a));
            let total: f64 = caps.iter().sum();
            caps[..caps.len() / fraction].iter().sum::<f64>() / total
        };
        let caps: Vec<f64> = m.coins.iter().map(Coin::market_cap).collect();
        let top = share_of_top(&caps, 100);
        assert!(top > 0.8, "the top 1% hold {top}");
        // The tail alone is heavy tailed too, and falls on average: the geometric mean of
        // every block of 400 coins below the one before.
        let tail = &caps[REAL.len()..];
        let top = share_of_top(tail, 10);
        assert!(top > 0.5, "the top 10% of the tail hold {top}");
        let means: Vec<f64> = tail
            .chunks(400)
            .map(|b| b.iter().map(|c| c.ln()).sum::<f64>() / b.len() as f64)
            .collect();
        assert!(
            means.len() >= 4 && means.windows(2).all(|w| w[1] < w[0]),
            "{means:?}"
        );
        // It continues below the table's last coin.
        let first = tail[..20].iter().map(|c| c.ln()).sum::<f64>() / 20.0;
        let last_real = caps[REAL.len() - 1];
        assert!(
            first.exp() < 1.5 * last_real,
            "{} vs {last_real}",
            first.exp()
        );
    }

    #[test]
    fn symbols_are_unique_but_for_the_shared_ones() {
        let m = Market::new(2000, 1);
        let mut count: HashMap<&str, usize> = HashMap::new();
        for c in &m.coins {
            *count.entry(c.symbol.as_str()).or_default() += 1;
        }
        let shared: HashSet<&str> = m
            .coins
            .iter()
            .filter(|c| c.cc_symbol.ends_with('*'))
            .map(|c| c.symbol.as_str())
            .collect();
        assert!(shared.len() >= 3);
        for (symbol, n) in &count {
            let want = if shared.contains(symbol) { 2 } else { 1 };
            assert_eq!(*n, want, "{symbol}");
        }
        for r in REAL {
            assert_eq!(count.get(r.0), Some(&1), "{}", r.0);
        }
        let ids: HashSet<&str> = m.coins.iter().map(|c| c.gecko_id.as_str()).collect();
        assert_eq!(ids.len(), 2000, "CoinGecko ids are unique");
    }

    #[test]
    fn volumes_wiggle_around_their_base() {
        let mut m = Market::new(500, 3);
        for _ in 0..2000 {
            m.step();
        }
        let worst = m
            .coins
            .iter()
            .map(|c| (c.volume_24h / c.base_volume).ln().abs())
            .fold(0.0, f64::max);
        assert!(worst < 1.5, "a volume drifted to e^{worst} of its base");
    }
}
