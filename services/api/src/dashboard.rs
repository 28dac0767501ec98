//! `GET /dashboard`: the browser dashboard, from files built into the binary (`web/`, built
//! by `scripts/build-web` and embedded by `build.rs`; no CDN, works offline).
//!
//! `/dashboard/app.js`, `/dashboard/app.css` and `/dashboard/LICENSES.txt` are files; every
//! other page (`/dashboard`, `/dashboard/watchlist`, `/dashboard/coins/{symbol}`) is
//! `index.html`, whose script routes in the browser. Each file is served like a prepared
//! response: a strong ETag, and gzip and brotli variants compressed once (at start, off the
//! request path).

use std::sync::LazyLock;

use axum::extract::Request;
use axum::http::header::{CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use topcoins_schemas::api::ErrorBody;

use crate::encoding::{Coding, Variants};
use crate::error::ApiError;

mod built {
    include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));
}

/// What the pages may load: only this node (and `data:` images; the chart library sets
/// inline styles).
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: Bytes,
    etag: HeaderValue,
    variants: Variants,
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    built::ASSETS
        .iter()
        .map(|(name, content_type, bytes)| Asset {
            name,
            content_type,
            body: Bytes::from_static(bytes),
            etag: HeaderValue::from_str(&format!("\"{}\"", &blake3::hash(bytes).to_hex()[..16]))
                .expect("hex"),
            variants: Variants::default(),
        })
        .collect()
});

/// Whether the assets were built into this binary.
pub fn built() -> bool {
    !ASSETS.is_empty()
}

/// Compresses every file in both codings now (a blocking thread at start), so that the first
/// visitor does not wait for it.
pub fn warm() {
    for asset in ASSETS.iter() {
        for coding in [Coding::Gzip, Coding::Br] {
            asset.variants.choose(&asset.body, &asset.etag, coding);
        }
    }
}

/// The file of `page` (the path after `/dashboard/`), or `index.html`.
fn asset(page: &str) -> Option<&'static Asset> {
    let assets = &*ASSETS;
    assets
        .iter()
        .find(|a| a.name == page && a.name != "index.html")
        .or_else(|| assets.iter().find(|a| a.name == "index.html"))
}

fn serve(request: &Request, page: &str) -> Response {
    // A name with an extension is a file: one we do not have is a 404, not the page.
    if page.contains('.') && built() && !ASSETS.iter().any(|a| a.name == page) {
        return ApiError::not_found().into_response();
    }
    let Some(asset) = asset(page) else {
        return ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "dashboard_not_built",
            message: "this binary was built without the dashboard's assets: run \
                scripts/build-web, then build again (scripts/up and scripts/test do both)"
                .into(),
        }
        .into_response();
    };
    let mut response = crate::http::respond(
        request.headers(),
        (&asset.body, &asset.etag, &asset.variants),
        asset.content_type,
        "no-cache",
    );
    let h = response.headers_mut();
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if asset.name == "index.html" {
        h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    response
}

#[utoipa::path(
    get,
    path = "/dashboard",
    operation_id = "dashboard",
    summary = "The browser dashboard: the live top list",
    description = "An HTML page (its script and style from `/dashboard/app.js` and \
        `/dashboard/app.css`); `/dashboard/coins/{symbol}` opens a coin's page, \
        `/dashboard/watchlist` the watchlist and alerts of an API key.",
    params(("If-None-Match" = Option<String>, Header, nullable = false,
        description = "An ETag of an earlier response: `304` if it is still current")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String,
            headers(("ETag" = String, description = "Strong"), ("Cache-Control" = String))),
        (status = 304, description = "Not modified",
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 503, description = "`dashboard_not_built`: the binary has no dashboard \
            assets", body = ErrorBody),
    ),
)]
pub(crate) async fn dashboard(request: Request) -> Response {
    serve(&request, "")
}

#[utoipa::path(
    get,
    path = "/dashboard/{page}",
    operation_id = "dashboard_page",
    summary = "A dashboard file (`app.js`, `app.css`, `LICENSES.txt`) or page (`watchlist`)",
    params(
        ("page" = String, Path, description = "A file of the dashboard, or a page of it"),
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "An ETag of an earlier response: `304` if it is still current"),
    ),
    responses(
        (status = 200, description = "The file, or the page (`index.html`)",
            content(("text/html"), ("text/javascript"), ("text/css"), ("text/plain")),
            headers(("ETag" = String, description = "Strong"), ("Cache-Control" = String))),
        (status = 304, description = "Not modified",
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 404, description = "`not_found`: a file (a name with an extension) the \
            dashboard does not have", body = ErrorBody),
        (status = 503, description = "`dashboard_not_built`: the binary has no dashboard \
            assets", body = ErrorBody),
    ),
)]
pub(crate) async fn dashboard_page(request: Request) -> Response {
    let page = request
        .uri()
        .path()
        .strip_prefix("/dashboard/")
        .unwrap_or("")
        .to_owned();
    serve(&request, &page)
}

#[utoipa::path(
    get,
    path = "/dashboard/coins/{symbol}",
    operation_id = "dashboard_coin",
    summary = "The dashboard's page of one coin: its candles, live",
    params(
        ("symbol" = String, Path, description = "The coin's symbol"),
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "An ETag of an earlier response: `304` if it is still current"),
    ),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String,
            headers(("ETag" = String, description = "Strong"), ("Cache-Control" = String))),
        (status = 304, description = "Not modified",
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 503, description = "`dashboard_not_built`: the binary has no dashboard \
            assets", body = ErrorBody),
    ),
)]
pub(crate) async fn dashboard_coin(request: Request) -> Response {
    serve(&request, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_the_index_and_files_are_themselves() {
        if !built() {
            // Nothing to serve; the route's 503 is tested end to end.
            return;
        }
        assert_eq!(asset("").unwrap().name, "index.html");
        assert_eq!(asset("watchlist").unwrap().name, "index.html");
        assert_eq!(asset("app.js").unwrap().name, "app.js");
        assert_eq!(
            asset("app.js").unwrap().content_type,
            "text/javascript; charset=utf-8"
        );
        assert_eq!(asset("index.html").unwrap().name, "index.html");
        let index = std::str::from_utf8(&asset("").unwrap().body).unwrap();
        assert!(index.contains("/dashboard/app.js"));
    }
}
