//! The exchange tickers a node takes in (issue 12): one kind per exchange, each registered
//! like prices and ranking (see [`crate::node::registered`]), read here by the metric
//! handlers as one list of [`PairTicker`]s per exchange.

use std::sync::Arc;

use compact_str::CompactString;
use time::OffsetDateTime;
use topcoins_schemas::{
    Binance, Coinbase, Exchange, Kraken, MarketsSnapshot, PairTicker, RanksSnapshot, TickerSnapshot,
};

use crate::slots::{Current, Latest, Slots};

/// The tickers of one exchange's snapshot, whatever the exchange.
pub trait TickerList: Send + Sync {
    fn tickers(&self) -> &[PairTicker];

    /// The ticker of a pair (the list is sorted by pair).
    fn get(&self, pair: &str) -> Option<&PairTicker> {
        let list = self.tickers();
        list.binary_search_by(|t| t.pair.as_str().cmp(pair))
            .ok()
            .map(|i| &list[i])
    }
}

impl<E: Exchange> TickerList for TickerSnapshot<E> {
    fn tickers(&self) -> &[PairTicker] {
        &self.tickers
    }
}

/// The pairs of one exchange's list, whatever the exchange.
pub trait PairList: Send + Sync {
    fn pairs(&self) -> &[CompactString];
}

impl<E: Exchange> PairList for MarketsSnapshot<E> {
    fn pairs(&self) -> &[CompactString] {
        &self.pairs
    }
}

/// One exchange's tickers in force.
pub struct Held {
    pub as_of: OffsetDateTime,
    pub list: Arc<dyn TickerList>,
}

/// The handles of the three ticker kinds and the three pair-list kinds.
#[derive(Clone)]
pub struct Tickers {
    kraken: Current<TickerSnapshot<Kraken>>,
    coinbase: Current<TickerSnapshot<Coinbase>>,
    binance: Current<TickerSnapshot<Binance>>,
    kraken_markets: Current<MarketsSnapshot<Kraken>>,
    coinbase_markets: Current<MarketsSnapshot<Coinbase>>,
    binance_markets: Current<MarketsSnapshot<Binance>>,
    ranks: Current<RanksSnapshot>,
}

impl Tickers {
    /// Registers the three kinds with `slots`.
    pub fn register(slots: &mut Slots) -> Self {
        Self {
            kraken: slots.register::<TickerSnapshot<Kraken>>(),
            coinbase: slots.register::<TickerSnapshot<Coinbase>>(),
            binance: slots.register::<TickerSnapshot<Binance>>(),
            kraken_markets: slots.register::<MarketsSnapshot<Kraken>>(),
            coinbase_markets: slots.register::<MarketsSnapshot<Coinbase>>(),
            binance_markets: slots.register::<MarketsSnapshot<Binance>>(),
            ranks: slots.register::<RanksSnapshot>(),
        }
    }

    /// The ranks in force, if any came.
    pub fn ranks(&self) -> Option<Arc<RanksSnapshot>> {
        Some(self.ranks.load_full()?.snapshot.clone())
    }

    /// The tradable pairs of an exchange (by its id), if its list came.
    pub fn markets(&self, exchange: &str) -> Option<Arc<dyn PairList>> {
        fn list<S: PairList + 'static>(current: &Current<S>) -> Option<Arc<dyn PairList>> {
            let latest = current.load_full()?;
            Some(latest.snapshot.clone())
        }
        match exchange {
            Kraken::ID => list(&self.kraken_markets),
            Coinbase::ID => list(&self.coinbase_markets),
            Binance::ID => list(&self.binance_markets),
            _ => None,
        }
    }

    /// Handles that never hold anything (a node built without a bus, in tests).
    pub fn empty() -> Self {
        Self::register(&mut Slots::default())
    }

    /// The tickers in force of an exchange (by its id), if any came.
    pub fn get(&self, exchange: &str) -> Option<Held> {
        fn held<S: TickerList + 'static>(current: &Current<S>) -> Option<Held> {
            let latest = current.load_full()?;
            Some(Held {
                as_of: latest.notice.as_of,
                list: latest.snapshot.clone(),
            })
        }
        match exchange {
            Kraken::ID => held(&self.kraken),
            Coinbase::ID => held(&self.coinbase),
            Binance::ID => held(&self.binance),
            _ => None,
        }
    }
}

impl Tickers {
    /// Whether the metric `exchange:pair:metric` is in its exchange's snapshot in force.
    pub fn is_tracked(&self, id: &str) -> bool {
        let mut parts = id.split(':');
        let (Some(exchange), Some(pair)) = (parts.next(), parts.next()) else {
            return false;
        };
        self.get(exchange)
            .is_some_and(|held| held.list.get(pair).is_some())
    }

    /// Whether `exchange` lists `pair` as tradable; `None` if its list has not come.
    pub fn lists(&self, exchange: &str, pair: &str) -> Option<bool> {
        let list = self.markets(exchange)?;
        Some(list.pairs().iter().any(|p| p == pair))
    }
}

/// Which snapshots of the three ticker kinds and the ranks are in force: their `Latest`s,
/// held (so their addresses cannot be reused by later ones while a stamp exists), compared by
/// address. A new notice installs a new `Latest`, so equal stamps mean equal answers for every
/// metric.
#[derive(Clone, Default)]
pub struct Stamp {
    kraken: Option<Arc<Latest<TickerSnapshot<Kraken>>>>,
    coinbase: Option<Arc<Latest<TickerSnapshot<Coinbase>>>>,
    binance: Option<Arc<Latest<TickerSnapshot<Binance>>>>,
    ranks: Option<Arc<Latest<RanksSnapshot>>>,
}

fn same<S>(held: &Option<Arc<Latest<S>>>, current: &Current<S>) -> bool {
    let now = current.load();
    match (held, now.as_ref()) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

impl Tickers {
    /// The snapshots in force now.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            kraken: self.kraken.load_full(),
            coinbase: self.coinbase.load_full(),
            binance: self.binance.load_full(),
            ranks: self.ranks.load_full(),
        }
    }

    /// Whether `stamp` names the snapshots in force now (one `ArcSwap` load per kind, no
    /// reference count touched).
    pub fn is_current(&self, stamp: &Stamp) -> bool {
        same(&stamp.kraken, &self.kraken)
            && same(&stamp.coinbase, &self.coinbase)
            && same(&stamp.binance, &self.binance)
            && same(&stamp.ranks, &self.ranks)
    }
}
