//! `topcoins`: parse the command line, set up logging, run the chosen service.

use anyhow::Context;
use clap::Parser;
use prometheus::Registry;
use tokio::net::TcpListener;
use topcoins::cli::{ActorArgs, Cli, Command};
use topcoins::shutdown::Shutdown;
use topcoins::{telemetry, up};
use topcoins_poller::{PollerMetrics, ServiceContext};
use topcoins_upstream::UpstreamMetrics;

/// mimalloc instead of the system allocator: taking in a snapshot allocates thousands of small
/// strings, and glibc's malloc and free were a third of an API node's CPU for it (perf, see
/// bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("topcoins: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    match command {
        Command::Up(args) => {
            up::run(*args, shutdown, |started| {
                println!("{}", up::banner(started))
            })
            .await
        }
        Command::Api(args) => {
            let nats = args.nats.required("api")?;
            let listener = TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            topcoins_api::run(args.api, nats, Registry::new(), listener, shutdown.wait()).await?;
            Ok(())
        }
        Command::Price(args) => {
            let context = actor_context(&args.actor, "price", &shutdown).await?;
            let mut price = args.price;
            if let Some(sim) = &args.actor.sim_url {
                price.use_sim_for_keyless(sim);
            }
            topcoins_price::run(price, context, shutdown.wait()).await?;
            Ok(())
        }
        Command::Ranking(args) => {
            let context = actor_context(&args.actor, "ranking", &shutdown).await?;
            let mut ranking = args.ranking;
            if let Some(sim) = &args.actor.sim_url {
                ranking.use_sim_for_keyless(sim);
            }
            topcoins_ranking::run(ranking, context, shutdown.wait()).await?;
            Ok(())
        }
        Command::Exchanges(args) => {
            let context = actor_context(&args.actor, "exchanges", &shutdown).await?;
            let mut exchanges = args.exchanges;
            exchanges.database = args.database_url;
            if let Some(sim) = &args.actor.sim_url {
                exchanges.use_sim(sim);
            }
            topcoins_exchanges::run(exchanges, context, shutdown.wait()).await?;
            Ok(())
        }
        Command::Recorder(args) => {
            let nats = args.nats.required("recorder")?;
            let database = args.database.database_url.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "TOPCOINS_DATABASE_URL (or --database-url) is required for `topcoins recorder`"
                )
            })?;
            let registry = Registry::new();
            serve_metrics(args.metrics.metrics_listen, &registry, &shutdown).await?;
            let backfill = topcoins::backfill(
                &args.backfill,
                args.cryptocompare(),
                args.http.clone(),
                UpstreamMetrics::register(&registry)?,
                &registry,
            )?;
            topcoins_recorder::run(
                args.recorder,
                database,
                nats,
                registry,
                backfill,
                shutdown.wait(),
            )
            .await?;
            Ok(())
        }
        Command::Alerts(args) => {
            let nats = args.nats.required("alerts")?;
            let database = args.database.database_url.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "TOPCOINS_DATABASE_URL (or --database-url) is required for `topcoins alerts`"
                )
            })?;
            let registry = Registry::new();
            serve_metrics(args.metrics.metrics_listen, &registry, &shutdown).await?;
            topcoins_alerts::run(args.alerts, database, nats, registry, shutdown.wait()).await?;
            Ok(())
        }
        Command::Cmc(args) => {
            print!("{}", topcoins::cmc::run(args).await?);
            Ok(())
        }
        Command::Sim(args) => {
            let listener = TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            topcoins_sim::run(args.sim, listener, shutdown.wait()).await?;
            Ok(())
        }
    }
}

/// The context of an actor process, with its metrics served if asked for (the port bound
/// here, so that one in use fails the process at start).
async fn actor_context(
    args: &ActorArgs,
    name: &str,
    shutdown: &Shutdown,
) -> anyhow::Result<ServiceContext> {
    let registry = Registry::new();
    let context = ServiceContext {
        nats: args.nats.required(name)?,
        http: args.http.clone(),
        retention: args.retention.retention,
        upstream_metrics: UpstreamMetrics::register(&registry)?,
        poller_metrics: PollerMetrics::register(&registry)?,
        lease: args.lease,
    };
    serve_metrics(args.metrics.metrics_listen, &registry, shutdown).await?;
    Ok(context)
}

/// Serves `/metrics` and `/healthz` of `registry` on `listen`, if given (the port bound here,
/// so that one in use fails the process at start).
async fn serve_metrics(
    listen: Option<std::net::SocketAddr>,
    registry: &Registry,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let Some(addr) = listen else {
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics cannot listen on {addr}"))?;
    let wait = shutdown.wait();
    let registry = registry.clone();
    tokio::spawn(async move {
        if let Err(e) = topcoins::metrics_http::serve(listener, registry, wait).await {
            tracing::error!(%addr, error = %e, "metrics server failed");
        }
    });
    Ok(())
}
