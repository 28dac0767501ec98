//! The command line. Every flag can also be given as the environment variable shown in
//! `--help`; names follow the contract in DESIGN.md.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use topcoins_alerts::AlertsConfig;
use topcoins_api::ApiConfig;
use topcoins_backfill::BackfillConfig;
use topcoins_bus::{NatsAuth, NatsConfig};
use topcoins_exchanges::ExchangesConfig;
use topcoins_price::PriceConfig;
use topcoins_ranking::RankingConfig;
use topcoins_recorder::RecorderConfig;
use topcoins_sim::SimConfig;
use topcoins_upstream::HttpConfig;

use crate::telemetry::LogFormat;

pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_SIM_LISTEN: &str = "127.0.0.1:9000";
pub const DEFAULT_RETENTION: &str = "1h";
pub const DEFAULT_DATA_DIR: &str = ".topcoins";

#[derive(Debug, Parser)]
#[command(
    name = "topcoins",
    version,
    about = "Top crypto coins by 24h volume, priced in USD, served from memory"
)]
pub struct Cli {
    /// Log line format.
    #[arg(
        long,
        env = "TOPCOINS_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process: simulator (unless API keys are set), both actors, one API node,
    /// and a private nats-server unless NATS_URL is set.
    Up(Box<UpArgs>),
    /// An API node.
    Api(ApiArgs),
    /// The price actor.
    Price(PriceArgs),
    /// The ranking actor.
    Ranking(RankingArgs),
    /// The exchange ticker actors: one per enabled exchange (`TOPCOINS_EXCHANGES`).
    Exchanges(ExchangesArgs),
    /// The recorder: price and ranking snapshots into candles in the database.
    Recorder(RecorderArgs),
    /// The alerts process: users' alert rules evaluated on every new value, alerts delivered
    /// (webhook, Slack, NATS, e-mail) at least once.
    Alerts(AlertsArgs),
    /// The simulated market.
    Sim(SimArgs),
    /// CoinMarketCap listings on the command line.
    Cmc(crate::cmc::CmcArgs),
}

#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(long = "nats-url", env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// NATS user (with --nats-password).
    #[arg(long = "nats-user", env = "NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password (never logged).
    #[arg(long = "nats-password", env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// NATS token (never logged).
    #[arg(long = "nats-token", env = "NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// NATS NKey seed (never logged).
    #[arg(long = "nats-nkey", env = "NATS_NKEY", hide_env_values = true)]
    pub nats_nkey: Option<String>,
    /// NATS credentials file (JWT + NKey seed, as written by `nsc`).
    #[arg(long = "nats-creds", env = "NATS_CREDS")]
    pub nats_creds: Option<std::path::PathBuf>,
    /// CA certificate(s) for the NATS server's TLS certificate, PEM; implies TLS.
    #[arg(long = "nats-tls-ca", env = "NATS_TLS_CA")]
    pub nats_tls_ca: Option<std::path::PathBuf>,
    /// Client certificate for mutual TLS with NATS, PEM (with --nats-tls-key).
    #[arg(long = "nats-tls-cert", env = "NATS_TLS_CERT")]
    pub nats_tls_cert: Option<std::path::PathBuf>,
    /// Client key for mutual TLS with NATS, PEM.
    #[arg(long = "nats-tls-key", env = "NATS_TLS_KEY")]
    pub nats_tls_key: Option<std::path::PathBuf>,
    /// Replicas of the JetStream streams topcoins creates: 1 for a single server, 3 in a cluster.
    #[arg(
        long = "stream-replicas",
        env = "TOPCOINS_STREAM_REPLICAS",
        default_value_t = 1
    )]
    pub stream_replicas: usize,
    /// Refuse a NATS connection without TLS.
    #[arg(long = "nats-tls-required", env = "NATS_TLS_REQUIRED")]
    pub nats_tls_required: bool,
}

impl NatsArgs {
    pub fn config(&self, url: &str, name: &str) -> NatsConfig {
        NatsConfig {
            url: url.to_owned(),
            name: name.to_owned(),
            auth: NatsAuth {
                user: self.nats_user.clone(),
                password: self.nats_password.clone(),
                token: self.nats_token.clone(),
                nkey_seed: self.nats_nkey.clone(),
                creds_file: self.nats_creds.clone(),
                tls_ca: self.nats_tls_ca.clone(),
                tls_cert: self.nats_tls_cert.clone(),
                tls_key: self.nats_tls_key.clone(),
                tls_required: self.nats_tls_required,
            },
            stream_replicas: self.stream_replicas,
        }
    }

    pub fn required(&self, name: &str) -> anyhow::Result<NatsConfig> {
        let url = self.nats_url.as_deref().ok_or_else(|| {
            anyhow::anyhow!("NATS_URL (or --nats-url) is required for `topcoins {name}`")
        })?;
        Ok(self.config(url, &format!("topcoins-{name}")))
    }
}

#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Address to serve `/metrics` and `/healthz` on (none when unset).
    #[arg(long = "metrics-listen", env = "TOPCOINS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Args)]
pub struct RetentionArgs {
    /// Stored snapshots older than this, and not current, are deleted.
    #[arg(long = "snapshot-retention", env = "TOPCOINS_SNAPSHOT_RETENTION", default_value = DEFAULT_RETENTION, value_parser = humantime::parse_duration)]
    pub retention: Duration,
}

/// The database the recorder writes and the API reads history from.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB` (also `postgresql://`).
    /// `topcoins up` defaults to `sqlite://<data dir>/topcoins.db`.
    #[arg(
        long = "database-url",
        env = "TOPCOINS_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<topcoins_history::DatabaseUrl>,
}

#[derive(Debug, Clone, Args)]
pub struct RecorderArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub recorder: RecorderConfig,
    #[command(flatten)]
    pub backfill: BackfillConfig,
    /// CryptoCompare base URL, for the history backfill (the ranking's setting).
    #[arg(long = "cryptocompare-url", env = "TOPCOINS_CRYPTOCOMPARE_URL", default_value = topcoins_ranking::cryptocompare::DEFAULT_URL)]
    pub cryptocompare_url: String,
    /// CryptoCompare API key (never logged).
    #[arg(
        long = "cryptocompare-api-key",
        env = "CRYPTOCOMPARE_API_KEY",
        hide_env_values = true
    )]
    pub cryptocompare_api_key: Option<String>,
    /// A simulator to backfill from when CryptoCompare has no API key (`http://sim:9000` in compose).
    #[arg(long = "sim-url", env = "TOPCOINS_SIM_URL")]
    pub sim_url: Option<String>,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

impl RecorderArgs {
    /// CryptoCompare as configured, the simulator standing in when it has no key.
    pub fn cryptocompare(&self) -> topcoins_upstream::Endpoint {
        let mut endpoint = topcoins_upstream::Endpoint::new(
            self.cryptocompare_url.clone(),
            self.cryptocompare_api_key.clone(),
            topcoins_ranking::cryptocompare::DEFAULT_URL,
        );
        if let Some(sim) = &self.sim_url {
            endpoint.use_sim_if_keyless(sim);
        }
        endpoint
    }
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub http: HttpConfig,
    /// Address the API listens on.
    #[arg(long, env = "TOPCOINS_LISTEN", default_value = DEFAULT_API_LISTEN)]
    pub listen: SocketAddr,
    /// Address the simulator listens on (when it runs).
    #[arg(long = "sim-listen", env = "TOPCOINS_SIM_LISTEN", default_value = DEFAULT_SIM_LISTEN)]
    pub sim_listen: SocketAddr,
    /// Where the private nats-server keeps its data, so a restart resumes from it.
    #[arg(long, env = "TOPCOINS_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: std::path::PathBuf,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub api: ApiConfig,
    #[command(flatten)]
    pub price: PriceConfig,
    #[command(flatten)]
    pub ranking: RankingConfig,
    #[command(flatten)]
    pub exchanges: ExchangesConfig,
    #[command(flatten)]
    pub recorder: RecorderConfig,
    #[command(flatten)]
    pub backfill: BackfillConfig,
    #[command(flatten)]
    pub alerts: AlertsConfig,
    #[command(flatten)]
    pub sim: SimConfig,
}

#[derive(Debug, Clone, Args)]
pub struct AlertsArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub alerts: AlertsConfig,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Address the API listens on.
    #[arg(long, env = "TOPCOINS_LISTEN", default_value = DEFAULT_API_LISTEN)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub api: ApiConfig,
}

/// What the `price` and `ranking` processes take besides their provider settings.
#[derive(Debug, Clone, Args)]
pub struct ActorArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Run as one of several instances: only the holder of a lease in NATS polls; the others
    /// stand by and take over within two intervals when it goes away.
    #[arg(long = "lease", env = "TOPCOINS_LEASE")]
    pub lease: bool,
    /// A simulator to serve the providers that have no API key (`http://sim:9000` in compose).
    #[arg(long = "sim-url", env = "TOPCOINS_SIM_URL")]
    pub sim_url: Option<String>,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PriceArgs {
    #[command(flatten)]
    pub actor: ActorArgs,
    #[command(flatten)]
    pub price: PriceConfig,
}

#[derive(Debug, Clone, Args)]
pub struct RankingArgs {
    #[command(flatten)]
    pub actor: ActorArgs,
    #[command(flatten)]
    pub ranking: RankingConfig,
}

#[derive(Debug, Clone, Args)]
pub struct ExchangesArgs {
    #[command(flatten)]
    pub actor: ActorArgs,
    #[command(flatten)]
    pub exchanges: ExchangesConfig,
    /// The recorder's database (`sqlite://PATH` or `postgres://…`): when set, the ranks start
    /// from the metrics' records of the last 24 h. Optional; read only.
    #[arg(
        long = "database-url",
        env = "TOPCOINS_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<topcoins_history::DatabaseUrl>,
}

#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Address the simulator listens on.
    #[arg(long, env = "TOPCOINS_LISTEN", default_value = DEFAULT_SIM_LISTEN)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub sim: SimConfig,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_an_environment_variable() {
        fn walk(cmd: &clap::Command) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                assert!(
                    arg.get_env().is_some(),
                    "`{}` flag {id} has no env",
                    cmd.get_name()
                );
            }
            cmd.get_subcommands().for_each(walk);
        }
        walk(&Cli::command());
    }
}
