//! The web's conventions, end to end on a real node: compressed variants of prepared
//! responses (made once, each with its own ETag) and CORS for public reads and key routes.

mod common;

use std::io::Read;

use anyhow::Result;
use common::{Harness, POLL};
use topcoins_api::ApiConfig;

const COINS: usize = 3000;

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096)
        .read_to_end(&mut out)
        .expect("brotli");
    out
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_responses_come_compressed_with_their_own_etags() -> Result<()> {
    let h = Harness::start(COINS).await?;
    let node = h.start_api().await?;
    let _price = h.start_price(POLL);
    let _ranking = h.start_ranking(POLL);
    h.ready(&node, "/?limit=2000").await?;

    let url = node.url("/?limit=2000");
    let plain = h.http.get(&url).send().await?;
    assert_eq!(header(&plain, "content-encoding"), None);
    assert_eq!(header(&plain, "vary"), Some("Accept, Accept-Encoding"));
    let plain_etag = header(&plain, "etag").unwrap().to_owned();
    let plain_body = plain.bytes().await?;

    for (accept, coding, decode) in [
        ("gzip", "gzip", gunzip as fn(&[u8]) -> Vec<u8>),
        ("gzip, deflate, br, zstd", "br", unbrotli),
        ("br;q=0.5, gzip;q=0.9", "gzip", gunzip),
    ] {
        let r = h
            .http
            .get(&url)
            .header("accept-encoding", accept)
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-encoding"), Some(coding), "{accept}");
        let etag = header(&r, "etag").unwrap().to_owned();
        assert_ne!(etag, plain_etag, "each variant has its own ETag");
        let suffix = if coding == "gzip" { "-gz\"" } else { "-br\"" };
        assert!(etag.ends_with(suffix), "{etag}");
        let body = r.bytes().await?;
        // The gzip of 2,000 entries is far smaller than the JSON.
        assert!(
            body.len() * 3 < plain_body.len(),
            "{coding}: {} of {}",
            body.len(),
            plain_body.len()
        );
        assert_eq!(decode(&body), plain_body, "{accept}");

        // The variant's ETag revalidates the variant; the plain one does not.
        let again = h
            .http
            .get(&url)
            .header("accept-encoding", accept)
            .header("if-none-match", &etag)
            .send()
            .await?;
        assert_eq!(again.status(), 304);
        assert_eq!(header(&again, "etag"), Some(etag.as_str()));
        let other = h
            .http
            .get(&url)
            .header("accept-encoding", accept)
            .header("if-none-match", &plain_etag)
            .send()
            .await?;
        assert_eq!(other.status(), 200);
    }

    // A tiny body stays plain and does not vary.
    let small = h
        .http
        .get(node.url("/?limit=1"))
        .header("accept-encoding", "gzip")
        .send()
        .await?;
    assert_eq!(header(&small, "content-encoding"), None);
    assert_eq!(header(&small, "vary"), Some("Accept"));

    // The OpenAPI document (prepared once) and CSV come compressed too.
    for path in ["/openapi.json", "/?limit=2000&format=csv"] {
        let r = h
            .http
            .get(node.url(path))
            .header("accept-encoding", "br")
            .send()
            .await?;
        assert_eq!(header(&r, "content-encoding"), Some("br"), "{path}");
        let plain = h.http.get(node.url(path)).send().await?.bytes().await?;
        assert_eq!(unbrotli(&r.bytes().await?), plain, "{path}");
    }
    // An error body is small: plain.
    let r = h
        .http
        .get(node.url("/?limit=0"))
        .header("accept-encoding", "gzip")
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    assert_eq!(header(&r, "content-encoding"), None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_for_public_reads_and_named_origins_for_keys() -> Result<()> {
    let h = Harness::start(50).await?;
    let node = h
        .start_api_with(ApiConfig {
            cors_origins: "*, https://app.example".parse().unwrap(),
            admin_key: Some("admin-secret-key-0123456789".into()),
            ..ApiConfig::default()
        })
        .await?;
    let _price = h.start_price(POLL);
    let _ranking = h.start_ranking(POLL);
    h.ready(&node, "/").await?;

    // A public read from any page: `*`, and the headers a page may read.
    let r = h
        .http
        .get(node.url("/?limit=3"))
        .header("origin", "https://elsewhere.example")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
    assert!(
        header(&r, "access-control-expose-headers")
            .unwrap()
            .contains("etag")
    );
    // Without `Origin`, no CORS headers at all.
    let r = h.http.get(node.url("/?limit=3")).send().await?;
    assert_eq!(header(&r, "access-control-allow-origin"), None);

    // Preflight of a conditional read of history.
    let r = h
        .http
        .request(reqwest::Method::OPTIONS, node.url("/v1/coins/BTC/candles"))
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "if-none-match")
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        header(&r, "access-control-allow-methods"),
        Some("GET, HEAD")
    );

    // Key routes: only the named origin, echoed, with `Vary: Origin`.
    let preflight = |origin: &'static str| {
        h.http
            .request(reqwest::Method::OPTIONS, node.url("/v1/watchlist"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let r = preflight("https://elsewhere.example").await?;
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let r = preflight("https://app.example").await?;
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        header(&r, "access-control-allow-headers")
            .unwrap()
            .contains("authorization")
    );
    let r = h
        .http
        .get(node.url("/v1/watchlist"))
        .header("origin", "https://app.example")
        .header("authorization", "Bearer tck_nothing")
        .send()
        .await?;
    // No database in this test: 503, with the CORS headers all the same.
    assert!(matches!(r.status().as_u16(), 401 | 503), "{}", r.status());
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(header(&r, "vary").unwrap_or("").contains("Origin"));
    let r = h
        .http
        .get(node.url("/v1/watchlist"))
        .header("origin", "https://elsewhere.example")
        .header("authorization", "Bearer tck_nothing")
        .send()
        .await?;
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    // An OPTIONS that is not a preflight is routed as any request (405 for `/`).
    let r = h
        .http
        .request(reqwest::Method::OPTIONS, node.url("/"))
        .send()
        .await?;
    assert_eq!(r.status(), 405);
    Ok(())
}
