//! Bodies of the HTTP API, as clients see them. The API node writes these bytes itself for
//! speed; these types are the contract its output is tested against.

use serde::{Deserialize, Serialize};

use crate::SnapshotHash;

/// One row of `GET /`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopEntry {
    pub rank: u32,
    pub symbol: String,
    pub name: String,
    pub price_usd: Option<f64>,
    /// The provider that priced this coin, or `null` when none could.
    pub price_source: Option<String>,
    pub volume_24h_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopMeta {
    pub count: usize,
    pub prices_hash: SnapshotHash,
    pub ranking_hash: SnapshotHash,
    pub prices_as_of: String,
    pub ranking_as_of: String,
    pub stale: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopResponse {
    pub data: Vec<TopEntry>,
    pub meta: TopMeta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// `{"error":{"code":"…","message":"…"}}`, for every 4xx and 503.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}
