//! `topcoins up`: the whole system in one process, for a laptop.
//!
//! - NATS: `NATS_URL` if set; otherwise a private nats-server (JetStream on, data under
//!   `TOPCOINS_DATA_DIR`, so a restart resumes from the stored snapshots).
//! - Upstream: a provider with an API key set is called for real; a provider without a key
//!   whose base URL was left at the real provider's is pointed at the built-in simulator.
//! - Both actors and one API node; one Prometheus registry served on the node's `/metrics`.

use std::net::SocketAddr;

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
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
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
        sim_addr = Some(addr);
        tasks.spawn(component(topcoins_sim::run(
            args.sim.clone(),
            listener,
            shutdown.wait(),
        )));
    }

    let context = |name: &str| ServiceContext {
        nats: args.nats.config(&nats_url, name),
        http: args.http.clone(),
        retention: args.retention.retention,
        upstream_metrics: upstream_metrics.clone(),
        poller_metrics: poller_metrics.clone(),
        lease: false,
    };
    tasks.spawn(component(topcoins_price::run(
        args.price.clone(),
        context("topcoins-price"),
        shutdown.wait(),
    )));
    tasks.spawn(component(topcoins_ranking::run(
        args.ranking.clone(),
        context("topcoins-ranking"),
        shutdown.wait(),
    )));

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("API cannot listen on {} (set TOPCOINS_LISTEN)", args.listen))?;
    let started = Started {
        api: listener.local_addr()?,
        sim: sim_addr,
        nats_url: nats_url.clone(),
    };
    let api_nats = args.nats.config(&nats_url, "topcoins-api");
    tasks.spawn(component(topcoins_api::run(
        args.api.clone(),
        api_nats,
        registry,
        listener,
        shutdown.wait(),
    )));
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

/// A component's run, with its own error type turned into `anyhow` for the join set.
async fn component<E>(run: impl Future<Output = Result<(), E>>) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    run.await.map_err(anyhow::Error::from)
}

/// The banner `topcoins up` prints once everything is listening.
pub fn banner(started: &Started) -> String {
    let mut s = format!(
        "\ntopcoins is up\n  open      http://{api}/?limit=200\n  csv       http://{api}/?limit=200&format=csv\n  metrics   http://{api}/metrics\n  nats      {nats}\n",
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
