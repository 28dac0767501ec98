//! The normalised pair and each exchange's names for it.
//!
//! topcoins names a pair `base-quote`, lower case, ASCII: `btc-usd`, `eth-usdt`, `doge-usd`.
//! Asset codes are the common tickers (`btc`, not Kraken's `xbt`), so the same market on two
//! exchanges has the same name.
//!
//! **Kraken.** Asset codes: `XBT` is BTC and `XDG` is DOGE. Old assets carry a one-letter class
//! prefix in result keys — `X` for crypto, `Z` for fiat — so `XXBTZUSD` is BTC/USD, `XETHZUSD`
//! ETH/USD, `XETHXXBT` ETH/BTC; newer listings have none (`SOLUSD`, `ADAUSD`, `DAIUSD`), and
//! some mix the two (`USDTZUSD`). A key is read as: eight characters with `X`/`Z` at positions
//! 0 and 4 are two prefixed codes of four; otherwise the longest known quote suffix from
//! [`KRAKEN_QUOTES`] is the quote and the rest the base. Each code loses a class prefix when it
//! is four characters starting with `X` or `Z` (`XXBT` → `XBT`, `ZUSD` → `USD`), then `XBT` →
//! `btc`, `XDG` → `doge`. Query names are the unprefixed codes: `btc-usd` → `XBTUSD`.
//!
//! **Binance.** Symbols are base and quote run together (`BTCUSDT`); the quote is the longest
//! suffix found in [`BINANCE_QUOTES`] with a non-empty base before it (`BTCTUSD` is
//! `btc-tusd`, not `btct-usd`). A symbol ending in none of them is unknown.
//!
//! **Coinbase Exchange.** Product ids are `BASE-QUOTE` (`BTC-USD`), lower-cased.

use std::fmt;

use compact_str::CompactString;

/// A pair as topcoins names it: `base-quote`, lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair(CompactString);

impl Pair {
    /// From a base and quote code in any case; `None` when either is empty or not
    /// alphanumeric ASCII.
    pub fn new(base: &str, quote: &str) -> Option<Self> {
        let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ok(base) || !ok(quote) {
            return None;
        }
        let mut s = CompactString::with_capacity(base.len() + quote.len() + 1);
        s.push_str(&base.to_ascii_lowercase());
        s.push('-');
        s.push_str(&quote.to_ascii_lowercase());
        Some(Self(s))
    }

    /// Parses the normalised form (`btc-usd`, any case).
    pub fn parse(s: &str) -> Option<Self> {
        let (base, quote) = s.split_once('-')?;
        Self::new(base, quote)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn base(&self) -> &str {
        self.0.split_once('-').map_or("", |(b, _)| b)
    }

    pub fn quote(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, q)| q)
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Quote suffixes of Kraken result keys and query names, longest first within a family so
/// that `ZUSD` wins over `USD` and `USDT` over `USD`.
pub const KRAKEN_QUOTES: &[&str] = &[
    "ZUSD", "ZEUR", "ZGBP", "ZCAD", "ZJPY", "ZCHF", "ZAUD", "XXBT", "XETH", "USDT", "USDC", "USD",
    "EUR", "GBP", "CAD", "JPY", "CHF", "AUD", "XBT", "ETH", "DAI",
];

/// Quote assets of Binance spot symbols, longest first so `FDUSD` and `TUSD` win over `USD`.
pub const BINANCE_QUOTES: &[&str] = &[
    "FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "GBP", "TRY", "BRL",
    "JPY", "AUD", "DAI", "USD",
];

/// One Kraken asset code to the common one: class prefix dropped, `XBT` → `btc`, `XDG` → `doge`.
pub fn kraken_asset(code: &str) -> CompactString {
    let code = code.to_ascii_uppercase();
    let bare = match code.as_bytes() {
        [b'X' | b'Z', _, _, _] => &code[1..],
        _ => &code[..],
    };
    let common = match bare {
        "XBT" => "btc",
        "XDG" => "doge",
        other => return CompactString::from(other.to_ascii_lowercase()),
    };
    CompactString::from(common)
}

/// A Kraken result key or pair name (`XXBTZUSD`, `SOLUSD`, `XBTUSD`) to its pair.
pub fn from_kraken(key: &str) -> Option<Pair> {
    let key = key.to_ascii_uppercase();
    let b = key.as_bytes();
    let (base, quote) =
        if b.len() == 8 && matches!(b[0], b'X' | b'Z') && matches!(b[4], b'X' | b'Z') {
            key.split_at(4)
        } else {
            let quote = KRAKEN_QUOTES
                .iter()
                .find(|q| key.len() > q.len() && key.ends_with(*q))?;
            key.split_at(key.len() - quote.len())
        };
    Pair::new(&kraken_asset(base), &kraken_asset(quote))
}

/// The name to put in `Ticker?pair=`: `btc-usd` → `XBTUSD`, `doge-usd` → `XDGUSD`.
pub fn kraken_query_name(pair: &Pair) -> String {
    let code = |c: &str| match c {
        "btc" => "XBT".to_owned(),
        "doge" => "XDG".to_owned(),
        other => other.to_ascii_uppercase(),
    };
    format!("{}{}", code(pair.base()), code(pair.quote()))
}

/// A Binance symbol (`BTCUSDT`) to its pair, split at the longest known quote suffix.
pub fn from_binance(symbol: &str) -> Option<Pair> {
    let symbol = symbol.to_ascii_uppercase();
    let quote = BINANCE_QUOTES
        .iter()
        .find(|q| symbol.len() > q.len() && symbol.ends_with(*q))?;
    let (base, quote) = symbol.split_at(symbol.len() - quote.len());
    Pair::new(base, quote)
}

/// The Binance symbol of a pair: `btc-usdt` → `BTCUSDT`.
pub fn binance_symbol(pair: &Pair) -> String {
    format!("{}{}", pair.base(), pair.quote()).to_ascii_uppercase()
}

/// A Coinbase product id (`BTC-USD`) to its pair.
pub fn from_coinbase(product_id: &str) -> Option<Pair> {
    Pair::parse(product_id)
}

/// The Coinbase product id of a pair: `btc-usd` → `BTC-USD`.
pub fn coinbase_product_id(pair: &Pair) -> String {
    pair.as_str().to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pair {
        Pair::parse(s).unwrap()
    }

    #[test]
    fn normalised_form() {
        assert_eq!(Pair::new("BTC", "USD").unwrap().as_str(), "btc-usd");
        assert_eq!(p("ETH-usdt").base(), "eth");
        assert_eq!(p("ETH-usdt").quote(), "usdt");
        assert_eq!(Pair::new("", "usd"), None);
        assert_eq!(Pair::parse("btcusd"), None);
        assert_eq!(Pair::parse("btc-us/d"), None);
    }

    #[test]
    fn kraken_result_keys() {
        for (key, want) in [
            ("XXBTZUSD", "btc-usd"),
            ("XETHZUSD", "eth-usd"),
            ("XXBTZEUR", "btc-eur"),
            ("XETHXXBT", "eth-btc"),
            ("XXDGZUSD", "doge-usd"),
            ("XDGUSD", "doge-usd"),
            ("SOLUSD", "sol-usd"),
            ("ADAUSD", "ada-usd"),
            ("DAIUSD", "dai-usd"),
            ("USDTZUSD", "usdt-usd"),
            ("XBTUSDT", "btc-usdt"),
            ("XBTUSD", "btc-usd"),
            ("NEARUSD", "near-usd"),
            ("ETHXBT", "eth-btc"),
        ] {
            assert_eq!(from_kraken(key), Some(p(want)), "{key}");
        }
        assert_eq!(from_kraken("USD"), None);
        assert_eq!(from_kraken("FOOBAR"), None);
    }

    #[test]
    fn kraken_query_names() {
        assert_eq!(kraken_query_name(&p("btc-usd")), "XBTUSD");
        assert_eq!(kraken_query_name(&p("doge-usd")), "XDGUSD");
        assert_eq!(kraken_query_name(&p("sol-usd")), "SOLUSD");
        assert_eq!(kraken_query_name(&p("eth-btc")), "ETHXBT");
        for pair in ["btc-usd", "doge-usd", "sol-usd", "eth-btc", "ada-eur"] {
            assert_eq!(from_kraken(&kraken_query_name(&p(pair))), Some(p(pair)));
        }
    }

    #[test]
    fn binance_symbols() {
        for (symbol, want) in [
            ("BTCUSDT", "btc-usdt"),
            ("ETHBTC", "eth-btc"),
            ("BNBBTC", "bnb-btc"),
            ("BTCTUSD", "btc-tusd"),
            ("BTCFDUSD", "btc-fdusd"),
            ("SHIBTRY", "shib-try"),
            ("USDCUSDT", "usdc-usdt"),
            ("BTCUSD", "btc-usd"),
        ] {
            assert_eq!(from_binance(symbol), Some(p(want)), "{symbol}");
            assert_eq!(binance_symbol(&p(want)), symbol);
        }
        assert_eq!(from_binance("USDT"), None);
        assert_eq!(from_binance("BTCXYZ"), None);
    }

    #[test]
    fn coinbase_product_ids() {
        assert_eq!(from_coinbase("BTC-USD"), Some(p("btc-usd")));
        assert_eq!(from_coinbase("ETH-USDC"), Some(p("eth-usdc")));
        assert_eq!(coinbase_product_id(&p("btc-usd")), "BTC-USD");
        assert_eq!(from_coinbase("BTCUSD"), None);
        assert_eq!(from_coinbase("BTC-"), None);
    }
}
