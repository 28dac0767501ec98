//! `topcoins up`: the whole system in one process, for a laptop.
//!
//! - NATS: `NATS_URL` if set; otherwise a private nats-server (JetStream on, data under
//!   `TOPCOINS_DATA_DIR`, so a restart resumes from the stored snapshots).
//! - Database: `TOPCOINS_DATABASE_URL` if set; otherwise a SQLite file in the data directory
//!   (`topcoins.db`), which the recorder writes and the API reads.
//! - Upstream: a provider with an API key set is called for real; a provider without a key
//!   whose base URL was left at the real provider's is pointed at the built-in simulator.
//! - The services are the rows of [`COMPONENTS`]: each says whether it runs in this setup and
//!   how it starts. **A new service is one row.** They share one Prometheus registry, served on
//!   the API node's `/metrics`.

use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use topcoins_bus::LocalServer;
use topcoins_poller::{PollerMetrics, ServiceContext};
use topcoins_upstream::UpstreamMetrics;

use crate::cli::UpArgs;
use crate::shutdown::Shutdown;

/// What `up` started, for the banner and for tests.
pub struct Started {
    pub api: SocketAddr,
    pub sim: Option<SocketAddr>,
    pub nats_url: String,
}

/// What the components are started from: the settings, the bus, the shared registry, and the
/// listeners bound before anything starts (so a port in use fails `up` at once).
struct Plan {
    args: UpArgs,
    nats_url: String,
    registry: Registry,
    upstream_metrics: UpstreamMetrics,
    poller_metrics: PollerMetrics,
    sim: Option<TcpListener>,
    api: Option<TcpListener>,
    /// `TOPCOINS_DATABASE_URL`, or a SQLite file in the data directory.
    database: topcoins_history::DatabaseUrl,
}

impl Plan {
    /// What a polling service needs besides its own provider settings.
    fn actor_context(&self, name: &str) -> ServiceContext {
        ServiceContext {
            nats: self.args.nats.config(&self.nats_url, name),
            http: self.args.http.clone(),
            retention: self.args.retention.retention,
            upstream_metrics: self.upstream_metrics.clone(),
            poller_metrics: self.poller_metrics.clone(),
            lease: false,
        }
    }
}

type Run = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// One service `up` runs.
struct Component {
    name: &'static str,
    /// Starts it: a future that runs until `shutdown` (taking what it needs from the plan).
    start: fn(&mut Plan, Shutdown) -> anyhow::Result<Run>,
}

/// Everything `up` runs, in start order. The simulator's row runs only when some provider is
/// pointed at it (its listener is bound then).
const COMPONENTS: &[Component] = &[
    Component {
        name: "sim",
        start: |plan, shutdown| {
            let Some(listener) = plan.sim.take() else {
                return Ok(Box::pin(async { Ok(()) }));
            };
            Ok(boxed(topcoins_sim::run_in(
                plan.args.sim.clone(),
                plan.registry.clone(),
                listener,
                shutdown.wait(),
            )))
        },
    },
    Component {
        name: "price",
        start: |plan, shutdown| {
            Ok(boxed(topcoins_price::run(
                plan.args.price.clone(),
                plan.actor_context("topcoins-price"),
                shutdown.wait(),
            )))
        },
    },
    Component {
        name: "ranking",
        start: |plan, shutdown| {
            Ok(boxed(topcoins_ranking::run(
                plan.args.ranking.clone(),
                plan.actor_context("topcoins-ranking"),
                shutdown.wait(),
            )))
        },
    },
    Component {
        name: "exchanges",
        start: |plan, shutdown| {
            let mut config = plan.args.exchanges.clone();
            config.database = Some(plan.database.clone());
            Ok(boxed(topcoins_exchanges::run(
                config,
                plan.actor_context("topcoins-exchanges"),
                shutdown.wait(),
            )))
        },
    },
    Component {
        name: "recorder",
        start: |plan, shutdown| {
            let database = plan.database.clone();
            let backfill = crate::backfill(
                &plan.args.backfill,
                plan.args.ranking.endpoint(),
                plan.args.http.clone(),
                plan.upstream_metrics.clone(),
                &plan.registry,
            )?;
            Ok(boxed(topcoins_recorder::run(
                plan.args.recorder.clone(),
                database,
                plan.args.nats.config(&plan.nats_url, "topcoins-recorder"),
                plan.registry.clone(),
                backfill,
                shutdown.wait(),
            )))
        },
    },
    Component {
        name: "alerts",
        start: |plan, shutdown| {
            Ok(boxed(topcoins_alerts::run(
                plan.args.alerts.clone(),
                plan.database.clone(),
                plan.args.nats.config(&plan.nats_url, "topcoins-alerts"),
                plan.registry.clone(),
                shutdown.wait(),
            )))
        },
    },
    Component {
        name: "api",
        start: |plan, shutdown| {
            let listener = plan.api.take().context("the API listener is bound once")?;
            Ok(boxed(topcoins_api::run(
                plan.args.api.clone(),
                plan.args.nats.config(&plan.nats_url, "topcoins-api"),
                plan.registry.clone(),
                listener,
                shutdown.wait(),
            )))
        },
    },
];

/// A component's run, with its own error type turned into `anyhow` for the join set.
fn boxed<E>(future: impl Future<Output = Result<(), E>> + Send + 'static) -> Run
where
    E: std::error::Error + Send + Sync + 'static,
{
    Box::pin(async move { future.await.map_err(anyhow::Error::from) })
}

pub async fn run(
    mut args: UpArgs,
    shutdown: Shutdown,
    on_started: impl FnOnce(&Started),
) -> anyhow::Result<()> {
    let registry = Registry::new();
    let upstream_metrics = UpstreamMetrics::register(&registry)?;
    let poller_metrics = PollerMetrics::register(&registry)?;

    let (_server, nats_url) = match args.nats.nats_url.clone() {
        Some(url) => (None, url),
        None => {
            let dir = args.data_dir.join("nats");
            let server = LocalServer::start_in(&dir)
                .await
                .context("starting a private nats-server (set NATS_URL to use a running one)")?;
            let url = server.url().to_owned();
            tracing::info!(url = %url, data = %dir.display(), "private nats-server started");
            (Some(server), url)
        }
    };

    // A provider without a key, left at its real URL, is served by the built-in simulator.
    let needs_sim =
        args.price.clone().use_sim_for_keyless("") | args.ranking.clone().use_sim_for_keyless("");
    let mut sim = None;
    let mut sim_addr = None;
    if needs_sim {
        let listener = TcpListener::bind(args.sim_listen).await.with_context(|| {
            format!(
                "simulator cannot listen on {} (set TOPCOINS_SIM_LISTEN)",
                args.sim_listen
            )
        })?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        args.price.use_sim_for_keyless(&url);
        args.ranking.use_sim_for_keyless(&url);
        // The exchanges need no key: with the simulator running, those left at their real
        // URLs are its too (a machine without the internet gets the whole system).
        args.exchanges.use_sim(&url);
        sim_addr = Some(addr);
        sim = Some(listener);
    }
    let api = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("API cannot listen on {} (set TOPCOINS_LISTEN)", args.listen))?;
    let started = Started {
        api: api.local_addr()?,
        sim: sim_addr,
        nats_url: nats_url.clone(),
    };

    // The API's `TOPCOINS_DATABASE_URL` (flattened into `up` with the API's settings) is the
    // recorder's too.
    let database = match args.api.database_url.clone() {
        Some(url) => url,
        None => {
            std::fs::create_dir_all(&args.data_dir).with_context(|| {
                format!(
                    "cannot create the data directory {}",
                    args.data_dir.display()
                )
            })?;
            topcoins_history::DatabaseUrl::Sqlite(args.data_dir.join("topcoins.db"))
        }
    };
    tracing::info!(%database, "history database");
    args.api.database_url = Some(database.clone());
    let mut plan = Plan {
        args,
        database,
        nats_url,
        registry,
        upstream_metrics,
        poller_metrics,
        sim,
        api: Some(api),
    };
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    for component in COMPONENTS {
        let future = (component.start)(&mut plan, shutdown.clone())
            .with_context(|| format!("starting {}", component.name))?;
        let name = component.name;
        tasks.spawn(async move { future.await.with_context(|| format!("{name} failed")) });
    }
    on_started(&started);

    // The first component to fail takes the others down with it.
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = outcome {
            if result.is_ok() {
                result = Err(e);
            }
            shutdown.trigger();
        }
    }
    result
}

/// The banner `topcoins up` prints once everything is listening.
pub fn banner(started: &Started) -> String {
    let mut s = format!(
        "\ntopcoins is up\n  open      http://{api}/?limit=200\n  csv       http://{api}/?limit=200&format=csv\n  api spec  http://{api}/openapi.json\n  metrics   http://{api}/metrics\n  nats      {nats}\n",
        api = started.api,
        nats = started.nats_url
    );
    if let Some(sim) = started.sim {
        s.push_str(&format!(
            "  simulator http://{sim} (no API keys set; the market moves by itself)\n"
        ));
    }
    s.push_str("Press Ctrl-C to stop.\n");
    s
}
