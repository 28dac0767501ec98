//! `GET /openapi.json`: the OpenAPI 3.1 description of every route, written once when the node
//! starts and then served as bytes with a strong ETag.
//!
//! Each route's description is the `#[utoipa::path]` on its handler in [`crate::http`], and
//! `utoipa_axum::routes!` registers the handler and its description together (see
//! `http::routes`), so the router and this document are made from one list. What the
//! attributes cannot say is added here: the node's own `limit` bounds, and that every header
//! described is always sent.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;
use utoipa::OpenApi;

use crate::http::AppState;

/// The document's frame: title, version and the description that applies to every route.
#[derive(OpenApi)]
#[openapi(info(
    title = "topcoins",
    description = "The top coins by 24 h trading volume, priced in USD, served from memory by \
        a stateless API node.\n\nEvery 200 for data carries a strong `ETag`; `If-None-Match` \
        with it gets `304`. Errors are `{\"error\":{\"code\":\"…\",\"message\":\"…\"}}` \
        (schema `ErrorBody`); besides those listed per route, any request may get \
        `404 not_found` (an unknown path), `405 method_not_allowed` (a method the path does \
        not take) or `413 body_too_large` (a declared body over 16 KiB).\n\nCurrent data, \
        history and metrics are public. Keys, watchlists and users need \
        `Authorization: Bearer <key>` (scheme `bearer`): no key `401`, not allowed `403`, \
        another user's or unknown `404`, over the key's rate `429` with `Retry-After`.",
    license(name = "Apache-2.0", identifier = "Apache-2.0"),
))]
struct Frame;

/// The document before any route joins it.
pub fn frame() -> utoipa::openapi::OpenApi {
    Frame::openapi()
}

/// The served document: its bytes and their ETag.
pub struct Spec {
    pub body: Bytes,
    pub etag: HeaderValue,
    /// Compressed once, on first use.
    pub variants: crate::encoding::Variants,
}

impl Spec {
    /// Completes `doc` (as the router built it) for a node whose `limit` defaults to
    /// `default_limit` and may be at most `max_limit`.
    pub fn new(doc: utoipa::openapi::OpenApi, default_limit: usize, max_limit: usize) -> Self {
        let mut doc = serde_json::to_value(doc).expect("an OpenAPI document serialises");
        doc["info"]["version"] = env!("CARGO_PKG_VERSION").into();
        if let Some(Value::Array(parameters)) = doc.pointer_mut("/paths/~1/get/parameters") {
            for p in parameters.iter_mut().filter(|p| p["name"] == "limit") {
                p["schema"]["default"] = default_limit.into();
                p["schema"]["maximum"] = max_limit.into();
            }
        }
        // A header the description names is one the node always sends with that status; saying
        // so lets a client (and the fuzz test) rely on it.
        if let Some(Value::Object(paths)) = doc.get_mut("paths") {
            for header in paths
                .values_mut()
                .filter_map(Value::as_object_mut)
                .flat_map(|item| item.values_mut())
                .filter_map(|op| op.get_mut("responses").and_then(Value::as_object_mut))
                .flat_map(|responses| responses.values_mut())
                .filter_map(|r| r.get_mut("headers").and_then(Value::as_object_mut))
                .flat_map(|headers| headers.values_mut())
            {
                header["required"] = true.into();
            }
        }
        doc["components"]["securitySchemes"]["bearer"] = serde_json::json!({
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`tck_` and 64 hex digits), or the admin key for POST /v1/users"
        });
        let body = serde_json::to_vec(&doc).expect("a JSON value serialises");
        let etag = format!("\"{}\"", &blake3::hash(&body).to_hex()[..16]);
        Self {
            body: body.into(),
            etag: HeaderValue::from_str(&etag).expect("hex is a valid header value"),
            variants: Default::default(),
        }
    }
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    summary = "This description of the API (OpenAPI 3.1)",
    params(("If-None-Match" = Option<String>, Header, nullable = false,
        description = "An ETag of an earlier response: `304` if it is still current")),
    responses(
        (status = 200, description = "The OpenAPI document", body = Object,
            headers(("ETag" = String, description = "Strong"), ("Cache-Control" = String))),
        (status = 304, description = "Not modified",
            headers(("ETag" = String), ("Cache-Control" = String))),
    ),
)]
pub(crate) async fn serve(State(app): State<AppState>, request: Request) -> Response {
    let spec = &app.openapi;
    crate::http::respond(
        request.headers(),
        (&spec.body, &spec.etag, &spec.variants),
        "application/json",
        "no-cache",
    )
}
