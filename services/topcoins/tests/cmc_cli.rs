//! `topcoins cmc` as a user runs it: the real binary, against the simulator and against the
//! recorded CoinMarketCap 401 body.

use std::process::Output;
use std::time::Duration;

use anyhow::Result;
use tokio::net::TcpListener;
use tokio::process::Command;
use topcoins_upstream::testing::{fixture, serve};

async fn topcoins(args: &[&str], envs: &[(&str, &str)]) -> Result<Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_topcoins"));
    command
        .args(args)
        .env_remove("CMC_API_KEY")
        .env_remove("TOPCOINS_CMC_URL");
    for (k, v) in envs {
        command.env(k, v);
    }
    Ok(tokio::time::timeout(Duration::from_secs(30), command.output()).await??)
}

async fn sim() -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let config = topcoins_sim::SimConfig {
        sim_coins: 50,
        sim_seed: 1,
        sim_tick: Duration::ZERO,
        sim_pairs: None,
    };
    tokio::spawn(topcoins_sim::run(config, listener, std::future::pending()));
    Ok(url)
}

#[tokio::test]
async fn table_and_json() -> Result<()> {
    let url = sim().await?;
    let out = topcoins(&["cmc", "--cmc-url", &url, "--limit", "3"], &[]).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("Rank  Symbol") && lines[0].contains("Price USD"),
        "{text}"
    );
    assert!(
        lines[1].contains("BTC") && lines[1].contains("Bitcoin"),
        "{text}"
    );

    let out = topcoins(
        &["cmc", "--limit", "5", "--start", "2", "--output", "json"],
        &[("TOPCOINS_CMC_URL", &url), ("CMC_API_KEY", "k")],
    )
    .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0]["rank"], 2);
    assert_eq!(rows[0]["currency"], "USD");
    assert!(rows[0]["price"].as_f64().unwrap() > 0.0);
    Ok(())
}

#[tokio::test]
async fn bad_key_is_one_clear_line_and_a_failure() -> Result<()> {
    let (url, server) = serve(
        401,
        "application/json",
        fixture("coinmarketcap/error_401_invalid_api_key_1001_2022-03-23.json"),
    )
    .await;
    let out = topcoins(
        &["cmc", "--cmc-url", &url],
        &[("CMC_API_KEY", "supersecret-key"), ("RUST_LOG", "debug")],
    )
    .await?;
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr)?;
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "topcoins: coinmarketcap: error 1001: This API Key is invalid."
    );
    assert!(
        !stderr.contains("supersecret")
            && !String::from_utf8_lossy(&out.stdout).contains("supersecret"),
        "key leaked"
    );
    assert!(out.stdout.is_empty());
    server.abort();
    Ok(())
}

#[tokio::test]
async fn usage_errors() -> Result<()> {
    let out = topcoins(&["cmc"], &[]).await?;
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)?.contains("CMC_API_KEY"));
    let out = topcoins(&["cmc", "--cmc-api-key", "k", "--limit", "5001"], &[]).await?;
    assert_eq!(out.status.code(), Some(2));
    let url = sim().await?;
    let out = topcoins(&["cmc", "--cmc-url", &url, "--convert", "XYZ"], &[]).await?;
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.lines().last().unwrap().contains("convert"),
        "{stderr}"
    );
    Ok(())
}
