//! `topcoins cmc`: CoinMarketCap listings on the command line, as a table or JSON.
//!
//! Errors are one line on stderr with a non-zero exit, in CoinMarketCap's own words where it
//! gave any: `topcoins: coinmarketcap: error 1001: This API Key is invalid.`

use std::fmt::Write as _;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use prometheus::Registry;
use topcoins_price::cmc::{self, CmcClient, Row};
use topcoins_upstream::{HttpConfig, Upstream, UpstreamMetrics};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct CmcArgs {
    /// CoinMarketCap API key (sent as `X-CMC_PRO_API_KEY`; never printed).
    #[arg(long = "cmc-api-key", env = "CMC_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// CoinMarketCap base URL.
    #[arg(long = "cmc-url", env = "TOPCOINS_CMC_URL", default_value = cmc::DEFAULT_URL)]
    pub url: String,
    /// How many listings (1–5000).
    #[arg(long, env = "TOPCOINS_CMC_LIMIT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub limit: u64,
    /// Rank of the first listing (from 1).
    #[arg(long, env = "TOPCOINS_CMC_START", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub start: u64,
    /// Currency to quote in (a fiat or crypto symbol CoinMarketCap knows, e.g. USD, EUR, BTC).
    #[arg(long, env = "TOPCOINS_CMC_CONVERT", default_value = "USD")]
    pub convert: String,
    /// Output format.
    #[arg(long, env = "TOPCOINS_CMC_OUTPUT", value_enum, default_value = "table")]
    pub output: Output,
    #[command(flatten)]
    pub http: HttpConfig,
}

pub async fn run(args: CmcArgs) -> anyhow::Result<String> {
    let endpoint = topcoins_upstream::Endpoint::new(args.url, args.api_key, cmc::DEFAULT_URL);
    if endpoint.key().is_none() && endpoint.is_real() {
        bail!("a CoinMarketCap API key is needed: set CMC_API_KEY or pass --cmc-api-key");
    }
    let convert = args.convert.trim().to_uppercase();
    if convert.is_empty() || !convert.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bail!(
            "--convert takes one currency symbol such as USD, got {:?}",
            args.convert
        );
    }
    let metrics = UpstreamMetrics::register(&Registry::new())?;
    let http = Upstream::new(cmc::PROVIDER, args.http, metrics);
    let (url, key) = endpoint.into_parts();
    let client = CmcClient::new(http, &url, key);
    let rows = client
        .rows(args.start as usize, args.limit as usize, &convert)
        .await?;
    Ok(match args.output {
        Output::Json => serde_json::to_string_pretty(&rows).context("json")? + "\n",
        Output::Table => table(&rows, &convert),
    })
}

/// A price with as many digits as it needs: cents for large ones, six significant for small.
fn price(p: Option<f64>) -> String {
    match p {
        None => "-".into(),
        Some(p) if p.abs() >= 1.0 => format!("{p:.2}"),
        Some(0.0) => "0".into(),
        Some(p) => {
            let decimals = (5 - p.abs().log10().floor() as i32).clamp(2, 12) as usize;
            format!("{p:.decimals$}")
        }
    }
}

fn amount(a: Option<f64>) -> String {
    match a {
        None => "-".into(),
        Some(a) if a >= 1e12 => format!("{:.2} T", a / 1e12),
        Some(a) if a >= 1e9 => format!("{:.2} B", a / 1e9),
        Some(a) if a >= 1e6 => format!("{:.2} M", a / 1e6),
        Some(a) => format!("{a:.0}"),
    }
}

pub fn table(rows: &[Row], currency: &str) -> String {
    let header = [
        "Rank".to_owned(),
        "Symbol".into(),
        "Name".into(),
        format!("Price {currency}"),
        "Market cap".into(),
        "24h %".into(),
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.rank.map_or("-".into(), |n| n.to_string()),
                r.symbol.clone(),
                r.name.clone(),
                price(r.price),
                amount(r.market_cap),
                r.percent_change_24h
                    .map_or("-".into(), |c| format!("{c:+.2}")),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            // Text left, numbers right.
            if i == 1 || i == 2 {
                let _ = write!(line, "{cell:<w$}  ");
            } else {
                let _ = write!(line, "{cell:>w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_and_amounts_read_well() {
        assert_eq!(price(Some(67012.456)), "67012.46");
        assert_eq!(price(Some(0.00001149)), "0.0000114900");
        assert_eq!(price(Some(0.52)), "0.520000");
        assert_eq!(price(None), "-");
        assert_eq!(amount(Some(1.3e12)), "1.30 T");
        assert_eq!(amount(Some(2.5e7)), "25.00 M");
    }
}
