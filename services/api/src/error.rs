//! The API's error responses: a status and `{"error":{"code":"…","message":"…"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use topcoins_schemas::api::ErrorBody;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    pub fn no_data() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "no_data",
            message: "no market data yet; the node is waiting for its first snapshots".into(),
        }
    }

    /// The history database is not configured, not open yet, or down.
    pub fn history_unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "history_unavailable",
            message: message.into(),
        }
    }

    /// A symbol neither in the current top list nor in the record.
    pub fn unknown_symbol(symbol: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "unknown_symbol",
            message: format!(
                "no coin {:?} in the top list or the record",
                crate::query::echo(symbol)
            ),
        }
    }

    pub fn not_found() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: "no such endpoint; try GET /?limit=200".into(),
        }
    }

    pub fn method_not_allowed() -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: "this path does not take that method (see /openapi.json)".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, Json(ErrorBody::new(self.code, self.message))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
