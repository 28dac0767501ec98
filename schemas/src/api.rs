//! Bodies of the HTTP API, as clients see them. The API node writes these bytes itself for
//! speed; these types are the contract its output is tested against, and (with the `openapi`
//! feature) the schemas its `/openapi.json` describes them with.

use serde::{Deserialize, Serialize};

use crate::SnapshotHash;

/// One row of `GET /`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopEntry {
    /// 1-based and contiguous, in the ranking source's order.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub rank: u32,
    pub symbol: String,
    pub name: String,
    /// `null` only when no source knows a price.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub price_usd: Option<f64>,
    /// The provider that priced this coin, or `null` when none could.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub price_source: Option<String>,
    /// Percent change of `price_usd` against the coin's recorded price 24 h before, or `null`
    /// when no price of then is recorded (no database, or no history yet).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub change_24h_pct: Option<f64>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub volume_24h_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopMeta {
    /// Entries in `data`.
    pub count: usize,
    /// The price snapshot's blake3 hash, 64 lowercase hex digits.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-f]{64}$"))]
    pub prices_hash: SnapshotHash,
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-f]{64}$"))]
    pub ranking_hash: SnapshotHash,
    /// When the price snapshot was announced (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub prices_as_of: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub ranking_as_of: String,
    /// NATS is unreachable, or the data is older than the node's `stale-after`.
    pub stale: bool,
}

/// The body of `GET /` as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopResponse {
    pub data: Vec<TopEntry>,
    pub meta: TopMeta,
}

/// `GET /v1/coins/{symbol}`: one coin now, as the top list has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoinResponse {
    pub symbol: String,
    pub name: String,
    /// The coin's place in the top list, 1-based.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub rank: u32,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub price_usd: Option<f64>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub price_source: Option<String>,
    /// As on `GET /`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub change_24h_pct: Option<f64>,
    /// From the price source, when it gives one.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub market_cap_usd: Option<f64>,
    /// From the ranking source.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub volume_24h_usd: Option<f64>,
    /// When the price snapshot was announced (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub as_of: String,
    /// As `meta.stale` of `GET /`.
    pub stale: bool,
}

/// One candle of `GET /v1/coins/{symbol}/candles`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CandleRow {
    /// The bucket's start, Unix ms, aligned to the interval in UTC.
    pub time: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    /// USD volume: see the operation's description.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub volume: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CandlesMeta {
    /// Upper case.
    pub symbol: String,
    pub interval: String,
    /// Pass as `cursor` for the next page; `null` on the last page of the range.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}

/// The body of `GET /v1/coins/{symbol}/candles` as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CandlesResponse {
    pub data: Vec<CandleRow>,
    pub meta: CandlesMeta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable and matchable, e.g. `invalid_limit`, `no_data`.
    pub code: String,
    /// For people; may change.
    pub message: String,
}

/// `{"error":{"code":"…","message":"…"}}`, for every 4xx and 503.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// `GET /healthz`: the process is alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `ok`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^ok$"))]
    pub status: String,
}

/// `GET /readyz` once the node has data to serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// Always `ready`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^ready$"))]
    pub status: String,
    /// Coins in the merged list: the most `GET /` can show.
    pub coins: usize,
    pub stale: bool,
    pub nats_connected: bool,
}

/// One tracked exchange metric, as `GET /v1/metrics` lists it: `id` is
/// `exchange:pair:metric` (`kraken:btc-usd:volume`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricEntry {
    pub id: String,
    pub exchange: String,
    /// `base-quote`, lower case.
    pub pair: String,
    /// `price`, `high`, `low`, `change_pct`, `change_abs`, `volume` or `volume_quote`.
    pub metric: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsMeta {
    /// Entries in `data`.
    pub count: usize,
    /// Pass as `cursor` for the next page; `null` on the last one.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}

/// `GET /v1/metrics`: tracked metrics, by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsResponse {
    pub data: Vec<MetricEntry>,
    pub meta: MetricsMeta,
}

/// A metric's rank among the tracked metrics of its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricRank {
    /// 1 is the largest standard deviation.
    pub position: u32,
    pub of: u32,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub stddev_24h: Option<f64>,
}

/// `GET /v1/metrics/{id}`: one tracked metric now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricResponse {
    pub id: String,
    pub exchange: String,
    pub pair: String,
    pub metric: String,
    /// The exchange's figure at its last poll that changed anything.
    pub value: f64,
    /// When the exchange's tickers were announced (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub as_of: String,
    /// What the figure covers: `rolling_24h`, or `utc_day` (Kraken's change, since 00:00 UTC).
    pub window: String,
    /// `null` until the exchange actors have announced ranks.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub rank: Option<MetricRank>,
}

/// One exchange of `GET /v1/exchanges`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExchangeEntry {
    /// `kraken`, `coinbase` or `binance`.
    pub id: String,
    /// Its tradable pairs (`base-quote`, lower case), sorted.
    pub pairs: Vec<String>,
}

/// `GET /v1/exchanges`: each exchange whose list of pairs has been read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExchangesResponse {
    pub data: Vec<ExchangeEntry>,
}

/// One record of a metric: its value at one poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordEntry {
    /// Unix ms of the poll.
    pub time: i64,
    pub value: f64,
}

/// `GET /v1/metrics/{id}/records`: one value per poll, unchanged polls included, ascending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordsResponse {
    pub data: Vec<RecordEntry>,
    pub meta: RecordsMeta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordsMeta {
    pub id: String,
    /// The range asked for, Unix ms, both ends included.
    pub from: i64,
    pub to: i64,
    pub count: usize,
    /// Pass as `cursor` for the next page; `null` on the last one.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}

/// `POST /v1/users` takes this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewUser {
    /// 1 to 100 characters, not all white space, no control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
        )
    )]
    pub name: String,
}

/// `POST /v1/users`: the user and their first key, shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserCreated {
    pub id: String,
    pub name: String,
    pub key_id: String,
    /// `tck_` and 64 hex digits. Stored only as its SHA-256: it cannot be shown again.
    pub api_key: String,
}

/// `POST /v1/keys`: a further key for the caller, shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyCreated {
    pub id: String,
    pub api_key: String,
}

/// One of the caller's keys (never the key itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyEntry {
    pub id: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    /// Unix ms.
    pub created: i64,
    /// Unix ms, to the minute; `null` if never used.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_used: Option<i64>,
}

/// `GET /v1/keys`: the caller's keys that are not revoked, by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeysResponse {
    pub data: Vec<KeyEntry>,
    pub meta: MetricsMeta,
}

/// `POST /v1/watchlist` takes this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewWatch {
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(kraken|coinbase|binance)$", example = "kraken")
    )]
    pub exchange: String,
    /// `base-quote`, lower case; one the exchange lists (`GET /v1/exchanges`).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z0-9]{1,20}-[a-z0-9]{1,20}$", example = "btc-usd")
    )]
    pub pair: String,
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^(price|high|low|change_pct|change_abs|volume|volume_quote)$",
            example = "volume"
        )
    )]
    pub metric: String,
}

/// One metric on the caller's watchlist: its current value and rank (when it has been
/// polled since it was added) and its records of the last 24 h.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WatchEntry {
    pub id: String,
    pub exchange: String,
    pub pair: String,
    pub metric: String,
    /// Unix ms it was added.
    pub added: i64,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub value: Option<f64>,
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime))]
    pub as_of: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub rank: Option<MetricRank>,
    pub records: Vec<RecordEntry>,
}

/// `GET /v1/watchlist`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WatchlistResponse {
    pub data: Vec<WatchEntry>,
    pub meta: MetricsMeta,
}

/// `POST /v1/alerts/rules` takes this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// `exchange:pair:metric` (a tracked metric, `GET /v1/metrics`) or `coin:SYMBOL:price` (a
    /// coin of the top list).
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^((kraken|coinbase|binance):[a-z0-9]{1,20}-[a-z0-9]{1,20}:(price|high|low|change_pct|change_abs|volume|volume_quote)|coin:[A-Za-z0-9]{1,20}:price)$",
            example = "kraken:btc-usd:volume"
        )
    )]
    pub metric: String,
    pub condition: crate::alert::Condition,
    pub channel: crate::alert::ChannelSpec,
}

/// A rule's channel as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelEntry {
    /// `chn_…`: rules of a user with the same target share it (and its secret).
    pub id: String,
    #[serde(rename = "type")]
    pub kind: crate::alert::ChannelType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Unix ms when the endpoint answered 410 Gone and deliveries stopped; a new rule with
    /// the same target enables it again.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub disabled: Option<i64>,
}

/// One of the caller's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleEntry {
    /// `rul_…`.
    pub id: String,
    pub metric: String,
    pub condition: crate::alert::Condition,
    pub channel: ChannelEntry,
    /// Unix ms.
    pub created: i64,
}

/// `POST /v1/alerts/rules` answers this: the rule and its channel's secret (`whsec_…`),
/// which signs its webhooks (shown when the channel is made and on rotation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleCreated {
    #[serde(flatten)]
    pub rule: RuleEntry,
    pub secret: String,
}

/// `GET /v1/alerts/rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RulesResponse {
    pub data: Vec<RuleEntry>,
    pub meta: MetricsMeta,
}

/// `POST /v1/alerts/rules/{id}/secret`: the new secret; the previous one keeps signing (both
/// signatures are sent) until `previous_valid_until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretRotated {
    pub channel_id: String,
    pub secret: String,
    /// Unix ms.
    pub previous_valid_until: i64,
}

/// `POST /v1/alerts/rules/{id}/test`: the test alert, in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestFired {
    pub alert_id: String,
    /// The `webhook-id` it is delivered with.
    pub message_id: String,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptEntry {
    /// 1 for the first.
    pub attempt: i32,
    /// Unix ms.
    pub time: i64,
    /// The HTTP (or SMTP) status, when there was one.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub status_code: Option<i32>,
    /// `delivered`, or what went wrong.
    pub outcome: String,
}

/// What became of an alert's message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryEntry {
    /// The message's id: the `webhook-id` of every attempt.
    pub message_id: String,
    /// `pending`, `delivered`, `failed` (out of retries) or `disabled` (410 Gone).
    pub status: String,
    /// Unix ms of the next attempt, while pending.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_attempt: Option<i64>,
    pub attempts: Vec<AttemptEntry>,
}

/// One alert: what fired, when, with what value and average, and its delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertEntry {
    /// `alr_…`.
    pub id: String,
    pub rule_id: String,
    pub metric: String,
    /// `fired`, `resolved` or `test`.
    pub kind: String,
    /// Unix ms of the sample.
    pub time: i64,
    pub value: f64,
    /// The window's average (or its first value, `change_pct`); `null` for thresholds.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub average: Option<f64>,
    pub delivery: DeliveryEntry,
}

/// `GET /v1/alerts`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertsResponse {
    pub data: Vec<AlertEntry>,
    pub meta: MetricsMeta,
}
