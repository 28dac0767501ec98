//! Helpers for tests of provider clients: the recorded responses in the repository's
//! `testdata/upstream/`, and a one-response HTTP server to replay them through a real client.
//! Test support only; nothing in a service uses it.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The recorded-responses folder: `$TOPCOINS_FIXTURES` when set, else the repository's own
/// `testdata/upstream` (found from this crate's manifest directory, so a plain clone has it).
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("TOPCOINS_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => repository_fixtures(),
    }
}

/// `testdata/upstream` in the repository this crate was built from. Panics with directions
/// when absent, so a missing folder is never mistaken for a passing test.
fn repository_fixtures() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("testdata/upstream"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "recorded upstream responses not found: expected testdata/upstream in the \
                 repository above {}, or set TOPCOINS_FIXTURES to the folder",
                here.display()
            )
        })
}

/// The bytes of one recorded response, e.g. `coinmarketcap/listings_latest_100_2020-10-24.json`.
pub fn fixture(relative: &str) -> Vec<u8> {
    let path = fixtures_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// Serves `body` with `status` to every request until dropped; returns the base URL.
pub async fn serve(
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without `TOPCOINS_FIXTURES` the recorded bodies come from the repository itself.
    #[test]
    fn default_fixtures_are_the_repositorys_testdata() {
        let dir = repository_fixtures();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert_eq!(dir, repo.join("testdata/upstream"));
        for known in [
            "SOURCES.md",
            "coinmarketcap/listings_latest_100_2020-10-24.json",
            "cryptocompare/v2_histoday_BTC_USD_limit7_2021-11-21.json",
        ] {
            assert!(
                dir.join(known).is_file(),
                "{known} missing from {}",
                dir.display()
            );
        }
        if std::env::var_os("TOPCOINS_FIXTURES").is_none() {
            assert_eq!(fixtures_dir(), dir);
            assert!(fixture("coinmarketcap/listings_latest_100_2020-10-24.json").starts_with(b"{"));
        }
    }
}
