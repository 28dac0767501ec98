//! Property-based fuzzing of the HTTP API against its own description: schemathesis reads a
//! live node's `/openapi.json`, generates requests for every operation (valid ones and ones
//! the description rules out), and checks that no answer is a 5xx and that each matches what
//! is described — status, content type, headers and body schema — and that invalid input is
//! refused with a 4xx. The node has a history database (SQLite in a temporary directory, a
//! day of BTC candles in it), so the candles route is fuzzed against a real one.
//!
//! schemathesis is a Python program: `scripts/test` installs the pinned version and sets
//! `SCHEMATHESIS_BIN`. Without it this test fails rather than passing unchecked.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{Harness, POLL};

/// Test cases per operation and phase: enough to reach every parameter's edges (at 40, a run
/// seldom tried a query string long enough for the 414), few enough that the run takes
/// seconds.
const MAX_EXAMPLES: &str = "100";
/// The whole schemathesis run is killed after this. With one worker and the six alert
/// operations a run takes 27 to 61 s on these 2-core machines (measured), so the limit leaves
/// room for a busy one.
const RUN_LIMIT: Duration = Duration::from_secs(150);
/// The stream's own run: a few cases, each read for half a second.
const STREAM_RUN_LIMIT: Duration = Duration::from_secs(90);
/// Every check that applies to an API of GET routes without authentication.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
    response_headers_conformance,response_schema_conformance,negative_data_rejection,\
    positive_data_acceptance,unsupported_method,allow_header_conformance";

/// What the checks accept, and that a warning fails the run.
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");

/// Whether `bin` runs and is schemathesis 4 (an `st` on PATH may be another program).
fn is_schemathesis(bin: &Path) -> bool {
    std::process::Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|out| {
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("version 4.")
        })
}

/// `$SCHEMATHESIS_BIN`, else `schemathesis` or `st` on PATH or in Python's scripts folders.
fn schemathesis() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SCHEMATHESIS_BIN") {
        let bin = PathBuf::from(bin);
        if is_schemathesis(&bin) {
            return Ok(bin);
        }
        bail!(
            "SCHEMATHESIS_BIN={} is not schemathesis 4; run scripts/test, which installs it",
            bin.display()
        );
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for query in [
        "import sysconfig; print(sysconfig.get_path('scripts'))",
        "import site, os; print(os.path.join(site.getuserbase(), 'bin'))",
    ] {
        if let Ok(out) = std::process::Command::new("python3")
            .args(["-c", query])
            .output()
        {
            dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    dirs.iter()
        .flat_map(|d| [d.join("schemathesis"), d.join("st")])
        .find(|bin| is_schemathesis(bin))
        .context(
            "schemathesis not found (SCHEMATHESIS_BIN unset, none on PATH or in Python's scripts \
             folders): run scripts/test, which installs it, or set SCHEMATHESIS_BIN",
        )
}

/// A migrated SQLite database in `dir` with BTC sampled every minute for the last day.
async fn seeded_database(dir: &Path) -> Result<String> {
    use topcoins_history::{Batch, CandleStore, Observation, Sample, Store};
    let url = format!("sqlite://{}", dir.join("history.db").display());
    let store = Store::open(&url.parse()?).await?;
    store.migrate().await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let samples: Vec<Sample> = (1..=24 * 60)
        .map(|i| Sample {
            symbol: "BTC".into(),
            time: now - i * 60_000,
            observation: Observation::Price {
                price_usd: 67_000.0 + (i % 50) as f64,
                market_cap_usd: None,
            },
        })
        .collect();
    store.apply(Batch::from_samples(&samples)).await?;
    Ok(url)
}

/// The fuzz node's admin key.
const FUZZ_ADMIN_KEY: &str = "fuzz-admin-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_matches_its_description_under_fuzzing() -> Result<()> {
    let bin = schemathesis()?;
    let h = Harness::start(60).await?;
    let price = h.start_price(POLL);
    let ranking = h.start_ranking(POLL);
    let exchanges = h.start_exchanges(&["kraken:btc-usd", "binance:btc-usdt"]);
    let scratch = tempfile::tempdir()?;
    let database_url = seeded_database(scratch.path()).await?;
    let node = h
        .start_api_with(topcoins_api::ApiConfig {
            database_url: Some(database_url.parse()?),
            admin_key: Some(FUZZ_ADMIN_KEY.to_owned()),
            // Thousands of requests with one key in seconds: above them, so the key routes are
            // fuzzed rather than answered 429.
            key_rate: 100_000,
            key_burst: 100_000,
            ..Default::default()
        })
        .await?;
    h.ready(&node, "/?limit=1").await?;
    h.ready(&node, "/v1/coins/BTC/candles?interval=1h").await?;
    h.ready(&node, "/v1/metrics/kraken:btc-usd:volume").await?;

    // The node's own /openapi.json, read from a file: given the document's URL, schemathesis
    // leaves out the operation served there. Its own folder, as schemathesis may leave a report
    // or an example database behind.
    // A user whose key schemathesis sends (`schemathesis.toml` reads both keys from the
    // environment), so the key routes are fuzzed past their 401.
    let user: serde_json::Value = h
        .http
        .post(node.url("/v1/users"))
        .bearer_auth(FUZZ_ADMIN_KEY)
        .json(&serde_json::json!({"name": "fuzz"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let user_key = user["api_key"].as_str().context("a key")?.to_owned();
    let spec = h.get(&node.url("/openapi.json")).await?;
    anyhow::ensure!(spec.status() == 200, "GET /openapi.json: {}", spec.status());
    std::fs::write(scratch.path().join("openapi.json"), spec.bytes().await?)?;
    // Two runs: every operation but the stream, then the stream alone with few examples and
    // a short timeout (a stream never ends by itself: each case is read until the timeout,
    // its events checked against the description as they come).
    let url = node.url("/");
    let common = [
        "--config-file",
        CONFIG,
        "run",
        "openapi.json",
        "--url",
        url.as_str(),
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        // One worker: with two, Hypothesis describing a strategy's lambda in both threads at
        // once sometimes trips CPython 3.11's `ast` ("AST constructor recursion depth
        // mismatch"), a runtime error of the fuzzer's own that fails the run.
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
    ];
    let runs: [(&[&str], Duration); 2] = [
        (
            &[
                "--exclude-operation-id",
                "stream",
                "--max-examples",
                MAX_EXAMPLES,
                "--request-timeout",
                "5",
            ],
            RUN_LIMIT,
        ),
        (
            &[
                "--include-operation-id",
                "stream",
                "--max-examples",
                "5",
                "--request-timeout",
                "0.5",
            ],
            STREAM_RUN_LIMIT,
        ),
    ];
    for (extra, limit) in runs {
        let args: Vec<&str> = common.iter().chain(extra).copied().collect();
        let started = Instant::now();
        let run = tokio::process::Command::new(&bin)
            .args(&args)
            .current_dir(scratch.path())
            .env("TOPCOINS_FUZZ_KEY", &user_key)
            .env("TOPCOINS_FUZZ_ADMIN_KEY", FUZZ_ADMIN_KEY)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(limit, run)
            .await
            .with_context(|| format!("schemathesis ran longer than {limit:?}: {args:?}"))??;
        let report = format!(
            "{} {}\n(exit {}, {:.1} s)\n{}\n{}",
            bin.display(),
            args.join(" "),
            out.status,
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        println!("{report}");
        assert!(
            out.status.success(),
            "schemathesis found problems:\n{report}"
        );
    }

    node.component.stop().await;
    price.stop().await;
    ranking.stop().await;
    exchanges.stop().await;
    h.sim.stop().await;
    Ok(())
}
