//! The name of a kind of snapshot: `prices`, `ranking`, and whatever comes next (exchange
//! tickers, candles, ranks of metrics).
//!
//! The set is open: a kind is a name, not a variant, so adding one is a new [`Snapshot`]
//! type with its own `KIND` constant — no `match` anywhere has to learn about it. The name
//! is used as is in subjects, bucket names and metric labels, so it is held to one rule,
//! checked at compile time for the constants: lower-case ASCII letters, digits and `_`,
//! starting with a letter, at most 32 bytes.
//!
//! [`Snapshot`]: crate::Snapshot

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(&'static str);

impl Kind {
    /// The price source's snapshot (CoinMarketCap or CoinGecko).
    pub const PRICES: Kind = Kind::new("prices");
    /// The ranking source's toplist (CryptoCompare).
    pub const RANKING: Kind = Kind::new("ranking");

    /// A kind named `name`; panics (at compile time, in a `const`) if the name breaks the rule.
    pub const fn new(name: &'static str) -> Kind {
        assert!(is_valid(name), "kind names are [a-z][a-z0-9_]{{0,31}}");
        Kind(name)
    }

    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

const fn is_valid(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 32 || !bytes[0].is_ascii_lowercase() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return false;
        }
        i += 1;
    }
    true
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        assert_eq!(Kind::PRICES.as_str(), "prices");
        assert_eq!(
            Kind::new("exchange_tickers").to_string(),
            "exchange_tickers"
        );
        for bad in ["", "Prices", "1x", "a.b", "a-b", "a b", &"x".repeat(33)] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    #[should_panic]
    fn a_bad_name_is_refused() {
        let name = String::from("a.b").leak();
        let _ = Kind::new(name);
    }
}
