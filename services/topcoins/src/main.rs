//! `topcoins`: parse the command line, set up logging, run the chosen service.

use anyhow::Context;
use clap::Parser;
use prometheus::Registry;
use tokio::net::TcpListener;
use topcoins::cli::{Cli, Command};
use topcoins::shutdown::Shutdown;
use topcoins::{telemetry, up};
use topcoins_upstream::{ServiceContext, UpstreamMetrics};

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
            let context = ServiceContext {
                nats: args.nats.required("price")?,
                http: args.http,
                retention: args.retention.retention,
                metrics: UpstreamMetrics::register(&Registry::new())?,
            };
            topcoins_price::run(args.price, context, shutdown.wait()).await?;
            Ok(())
        }
        Command::Ranking(args) => {
            let context = ServiceContext {
                nats: args.nats.required("ranking")?,
                http: args.http,
                retention: args.retention.retention,
                metrics: UpstreamMetrics::register(&Registry::new())?,
            };
            topcoins_ranking::run(args.ranking, context, shutdown.wait()).await?;
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
