//! The ranks' samples, from the bus: every poll of every exchange, whichever instance made it.
//!
//! Each exchange's poller announces a hash notice when its tickers change and a
//! still-current notice when a poll found them unchanged (`topcoins.v1.<kind>.current`). This
//! follows both for every enabled exchange and records each metric's value at the notice's
//! time: one sample per metric per poll, unchanged polls included, as the records in the
//! database. The snapshot a notice names is fetched once per hash (a still-current notice
//! names the one already held).
//!
//! **After a restart** (with a database: `TOPCOINS_DATABASE_URL`), the first time a metric
//! is seen its records of the last 24 h are read from the database (the recorder's, one per
//! poll) and go in before the new sample, so its deviation covers the day rather than the
//! polls since the start. Without a database, or while it cannot be read, a metric starts from
//! its first poll here.
//!
//! Reading the bus rather than the pollers' own results means that with several instances
//! (`TOPCOINS_LEASE`: a lease per exchange, and one for the ranks) the instance that ranks
//! has every exchange's samples, whichever instances poll.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use topcoins_bus::{SnapshotStore, subscribe_polls};
use topcoins_poller::{RunError, ServiceContext};
use topcoins_schemas::{Kind, MetricKind, PairTicker, SnapshotHash, ticker::decode_tickers};

use topcoins_history::{DatabaseUrl, RecordRange, RecordStore, Store};

use crate::Pair;
use crate::rank::{MetricKey, Samples, WINDOW_MS};

/// One enabled exchange as the feed sees it: its kind, and its tracked pairs now.
pub(crate) struct Fed {
    pub exchange: &'static str,
    pub kind: Kind,
    pub configured: Arc<Vec<Pair>>,
    pub watched: tokio::sync::watch::Receiver<Vec<String>>,
}

impl Fed {
    fn tracks(&self, pair: &str) -> bool {
        self.configured.iter().any(|p| p.as_str() == pair)
            || self.watched.borrow().iter().any(|p| p == pair)
    }
}

/// Follows the polls of `fed` until `shutdown`, recording into `samples`.
pub(crate) async fn feed(
    context: ServiceContext,
    fed: Vec<Fed>,
    samples: Arc<Mutex<Samples>>,
    database: Option<DatabaseUrl>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let mut shutdown = Box::pin(shutdown);
    let mut history = match &database {
        Some(url) => match Store::open(url).await {
            Ok(store) => Some(History {
                store,
                seen: HashSet::new(),
            }),
            Err(e) => {
                tracing::warn!(database = %url, error = %e, "ranks feed: database not opened; ranks start from the polls since now");
                None
            }
        },
        None => None,
    };
    let (client, _link) = topcoins_bus::connect(&context.nats).await?;
    let Some(store) =
        SnapshotStore::open_when_ready(&client, context.nats.stream_replicas, &mut shutdown).await
    else {
        return Ok(());
    };
    let kinds: Vec<Kind> = fed.iter().map(|f| f.kind).collect();
    let mut polls = loop {
        match subscribe_polls(&client, &kinds).await {
            Ok(polls) => break polls,
            Err(e) => {
                tracing::warn!(error = %e, "ranks feed: subscribe failed; retrying");
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let mut held: HashMap<Kind, (SnapshotHash, Arc<Vec<PairTicker>>)> = HashMap::new();
    loop {
        let received = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = polls.next() => r,
        };
        let Some(received) = received else {
            return Ok(());
        };
        let received = match received {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "ranks feed: not a notice; ignored");
                continue;
            }
        };
        let Some(f) = fed.iter().find(|f| f.kind == received.kind) else {
            continue;
        };
        let hash = received.notice.hash;
        let tickers = match held.get(&received.kind) {
            Some((h, t)) if *h == hash => t.clone(),
            _ => match store.fetch(hash).await {
                Ok(bytes) => match decode_tickers(received.kind, &bytes) {
                    Some(Ok((_, tickers))) => {
                        let tickers = Arc::new(tickers);
                        held.insert(received.kind, (hash, tickers.clone()));
                        tickers
                    }
                    Some(Err(e)) => {
                        tracing::warn!(kind = %received.kind, %hash, error = %e, "ranks feed: snapshot does not decode; poll skipped");
                        continue;
                    }
                    None => continue,
                },
                Err(e) => {
                    tracing::warn!(kind = %received.kind, %hash, error = %e, "ranks feed: snapshot not fetched; poll skipped");
                    continue;
                }
            },
        };
        let time = i64::try_from(received.notice.as_of.unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(i64::MAX);
        let earlier = match &mut history {
            Some(h) => h.earlier(f.exchange, &tickers, time).await,
            None => Vec::new(),
        };
        let mut samples = samples.lock().expect("not poisoned");
        for (key, t, v) in earlier {
            samples.record(key, t, v);
        }
        // A pair no longer tracked leaves the ranks now, not when its samples age out. A pair
        // in this poll is tracked by whoever polled it (this instance may not have read the
        // watched pairs yet).
        samples.retain(time, |(e, pair, _)| {
            *e != f.exchange
                || f.tracks(pair)
                || tickers.iter().any(|t| t.pair.as_str() == pair.as_str())
        });
        for t in tickers.iter() {
            for kind in MetricKind::ALL {
                samples.record((f.exchange, t.pair.clone(), kind), time, t.value(kind));
            }
        }
    }
}

/// The recorder's database, for the samples from before this process started.
struct History {
    store: Store,
    /// Metrics whose records have been read (or tried): each is read once.
    seen: HashSet<MetricKey>,
}

impl History {
    /// The records of the last 24 h before `time` of the metrics of `tickers` not seen yet,
    /// oldest first per metric.
    async fn earlier(
        &mut self,
        exchange: &'static str,
        tickers: &[PairTicker],
        time: i64,
    ) -> Vec<(MetricKey, i64, f64)> {
        let mut out = Vec::new();
        for t in tickers {
            for kind in MetricKind::ALL {
                let key: MetricKey = (exchange, t.pair.clone(), kind);
                if !self.seen.insert(key.clone()) {
                    continue;
                }
                let range = RecordRange {
                    metric: format!("{exchange}:{}:{}", t.pair, kind.as_str()),
                    from: time.saturating_sub(WINDOW_MS),
                    to: time.saturating_sub(1),
                    limit: topcoins_history::MAX_LIMIT,
                    cursor: None,
                };
                match self.store.records(&range).await {
                    Ok(page) => out.extend(
                        page.records
                            .into_iter()
                            .map(|(at, value)| (key.clone(), at, value)),
                    ),
                    Err(e) => {
                        tracing::warn!(metric = %range.metric, error = %e, "ranks feed: records not read; this metric starts from now");
                    }
                }
            }
        }
        if !out.is_empty() {
            tracing::info!(
                samples = out.len(),
                "ranks feed: samples of the last 24 h read from the database"
            );
        }
        out
    }
}
