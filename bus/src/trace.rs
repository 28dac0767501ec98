//! Trace context across the bus: each poll cycle gets a W3C `traceparent`, carried in the
//! header of the hash notice it publishes, so the API nodes' spans for that change carry the
//! same trace id as the actor's and one change can be followed across processes in the logs.

use std::time::{SystemTime, UNIX_EPOCH};

use topcoins_schemas::SnapshotHash;

/// The header name, as in W3C Trace Context.
pub const TRACEPARENT: &str = "traceparent";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

impl TraceContext {
    /// A fresh context; unique enough for following changes (time and a counter, hashed).
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut seed = nanos.to_le_bytes().to_vec();
        seed.extend_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        seed.extend_from_slice(&std::process::id().to_le_bytes());
        let h = SnapshotHash::of(&seed);
        let bytes = h.as_bytes();
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        trace_id.copy_from_slice(&bytes[..16]);
        span_id.copy_from_slice(&bytes[16..24]);
        Self { trace_id, span_id }
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// `00-<trace id>-<span id>-01`.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", hex(&self.trace_id), hex(&self.span_id))
    }

    /// Reads a `traceparent` value; `None` for anything not of version 00's shape.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, _flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id = unhex::<16>(trace)?;
        let span_id = unhex::<8>(span)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, span_id })
    }
}

impl TraceContext {
    /// Puts this context into a message's headers: the one place it is written.
    pub(crate) fn inject(&self, headers: &mut async_nats::HeaderMap) {
        headers.insert(TRACEPARENT, self.traceparent().as_str());
    }

    /// The context a message's headers carry, if any: the one place it is read.
    pub(crate) fn extract(headers: Option<&async_nats::HeaderMap>) -> Option<Self> {
        headers
            .and_then(|h| h.get(TRACEPARENT))
            .and_then(|v| Self::parse(v.as_str()))
    }
}

impl Default for TraceContext {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let t = TraceContext::new();
        assert_ne!(t, TraceContext::new());
        let header = t.traceparent();
        assert_eq!(header.len(), 55);
        assert_eq!(TraceContext::parse(&header), Some(t));
        for bad in [
            "",
            "01-aa-bb-01",
            "00-00000000000000000000000000000000-0000000000000001-01",
            "00-xyz-abc-01",
            &format!("{header}-x"),
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }
}
