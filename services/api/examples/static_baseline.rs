//! The benchmark baseline: an axum server that answers `GET /` with a fixed body from memory,
//! nothing else. `bench/serve.sh` runs it beside an API node serving a body of the same size.
//!
//! Usage: `static_baseline <listen-addr> <body-file> <content-type> [content-encoding]`: with
//! a coding, the file holds the compressed bytes, sent as they are with `Content-Encoding`.

use std::net::SocketAddr;

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, ETAG};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage =
        "usage: static_baseline <listen-addr> <body-file> <content-type> [content-encoding]";
    let addr: SocketAddr = args.next().expect(usage).parse().expect("listen address");
    let body = Bytes::from(std::fs::read(args.next().expect(usage))?);
    let content_type = args.next().unwrap_or_else(|| "application/json".into());
    let encoding = args.next();
    let app = Router::new().route(
        "/",
        get(move || {
            let (body, content_type, encoding) =
                (body.clone(), content_type.clone(), encoding.clone());
            async move {
                let mut response = (
                    [
                        (CONTENT_TYPE, content_type),
                        (ETAG, "\"baseline\"".to_owned()),
                    ],
                    body,
                )
                    .into_response();
                if let Some(encoding) = encoding {
                    response.headers_mut().insert(
                        CONTENT_ENCODING,
                        HeaderValue::from_str(&encoding).expect("a header value"),
                    );
                }
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
