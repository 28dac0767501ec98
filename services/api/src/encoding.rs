//! Content codings: `Accept-Encoding` read once per request, and each prepared response's
//! gzip and brotli variants compressed once, the first time a client asks for them, then kept
//! beside the plain bytes for the life of the response.
//!
//! Each variant has its own strong ETag (the plain one with `-gz` or `-br` inside the quotes),
//! as RFC 9110 asks of different representations, and every response that has variants says
//! `Vary: Accept-Encoding`. Bodies under [`MIN_BYTES`] stay plain: compressing them saves
//! less than the headers cost. Responses that are not prepared (lists read from the
//! database, error bodies) are compressed per request by [`compress_dynamic`], with the
//! same rules.

use std::io::Write;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::Bytes;

/// Bodies shorter than this are sent plain.
pub const MIN_BYTES: usize = 1024;
/// A body compressed per request from this size on is compressed on the blocking pool, not on
/// the worker thread that serves other requests meanwhile (brotli takes about 10 ms a MB).
const BLOCKING_BYTES: usize = 64 << 10;
/// gzip level 6 (zlib's default) and brotli quality 5: both take a few milliseconds for the
/// 277 KB of `GET /?limit=5000`, paid once per prepared response; brotli 5 is smaller than
/// gzip 9 on JSON.
const GZIP_LEVEL: u32 = 6;
const BROTLI_QUALITY: u32 = 5;
const BROTLI_WINDOW: u32 = 22;

/// A content coding a response can be sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Br,
}

impl Coding {
    fn header(self) -> Option<HeaderValue> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some(HeaderValue::from_static("gzip")),
            Coding::Br => Some(HeaderValue::from_static("br")),
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Coding::Identity => "",
            Coding::Gzip => "-gz",
            Coding::Br => "-br",
        }
    }
}

/// The coding a request prefers among those we make, by `Accept-Encoding` (RFC 9110
/// §12.5.3): the highest `q` wins, brotli on a tie (it is smaller); `*` stands for any coding
/// not named; `q=0` refuses. No header, or nothing acceptable: plain.
pub fn preferred(headers: &HeaderMap) -> Coding {
    let mut any: Option<f32> = None;
    let (mut gzip, mut br): (Option<f32>, Option<f32>) = (None, None);
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            // An unreadable weight counts as a refusal.
            let q = parts
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| v.trim().parse::<f32>().unwrap_or(0.0))
                })
                .next()
                .unwrap_or(1.0);
            let q = if q.is_finite() {
                q.clamp(0.0, 1.0)
            } else {
                0.0
            };
            if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(q);
            } else if name.eq_ignore_ascii_case("br") {
                br = Some(q);
            } else if name == "*" {
                any = Some(q);
            }
        }
    }
    let gzip = gzip.or(any).unwrap_or(0.0);
    let br = br.or(any).unwrap_or(0.0);
    if br > 0.0 && br >= gzip {
        Coding::Br
    } else if gzip > 0.0 {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

/// One compressed variant: its bytes and ETag.
pub struct Encoded {
    pub body: Bytes,
    pub etag: HeaderValue,
}

/// The compressed variants of one prepared body, made on first use. `None` in a slot: the
/// body is too small, or compressing did not make it smaller.
#[derive(Default)]
pub struct Variants {
    gzip: OnceLock<Option<Encoded>>,
    br: OnceLock<Option<Encoded>>,
}

/// What to send: the body, its ETag, its `Content-Encoding`, and whether it has variants
/// (then it needs `Vary: Accept-Encoding`).
pub struct Chosen<'a> {
    pub body: &'a Bytes,
    pub etag: &'a HeaderValue,
    pub encoding: Option<HeaderValue>,
    pub varies: bool,
}

impl Variants {
    /// The variant of `body` (whose ETag is `etag`) to send in `coding`.
    pub fn choose<'a>(
        &'a self,
        body: &'a Bytes,
        etag: &'a HeaderValue,
        coding: Coding,
    ) -> Chosen<'a> {
        let varies = body.len() >= MIN_BYTES;
        let slot = match coding {
            _ if !varies => None,
            Coding::Identity => None,
            Coding::Gzip => Some(&self.gzip),
            Coding::Br => Some(&self.br),
        };
        if let Some(Some(encoded)) = slot.map(|s| s.get_or_init(|| encode(body, etag, coding))) {
            return Chosen {
                body: &encoded.body,
                etag: &encoded.etag,
                encoding: coding.header(),
                varies,
            };
        }
        Chosen {
            body,
            etag,
            encoding: None,
            varies,
        }
    }
}

/// `body` compressed in `coding`, with its ETag; `None` unless it came out smaller.
fn encode(body: &[u8], etag: &HeaderValue, coding: Coding) -> Option<Encoded> {
    let compressed = compress(body, coding)?;
    if compressed.len() >= body.len() {
        return None;
    }
    Some(Encoded {
        body: Bytes::from(compressed),
        etag: variant_etag(etag, coding),
    })
}

/// The bytes of `body` in `coding` (`None` for identity).
pub fn compress(body: &[u8], coding: Coding) -> Option<Vec<u8>> {
    match coding {
        Coding::Identity => None,
        Coding::Gzip => {
            let mut out = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::new(GZIP_LEVEL),
            );
            out.write_all(body).ok()?;
            out.finish().ok()
        }
        Coding::Br => {
            let mut out = Vec::with_capacity(body.len() / 5);
            let params = brotli::enc::BrotliEncoderParams {
                quality: BROTLI_QUALITY as i32,
                lgwin: BROTLI_WINDOW as i32,
                size_hint: body.len(),
                ..Default::default()
            };
            brotli::BrotliCompress(&mut &body[..], &mut out, &params).ok()?;
            Some(out)
        }
    }
}

/// `"tag"` → `"tag-gz"`; a weak tag stays weak.
fn variant_etag(etag: &HeaderValue, coding: Coding) -> HeaderValue {
    let raw = etag.to_str().unwrap_or("\"\"");
    let tagged = match raw.strip_suffix('"') {
        Some(stem) => format!("{stem}{}\"", coding.suffix()),
        None => format!("\"{raw}{}\"", coding.suffix()),
    };
    HeaderValue::from_str(&tagged).unwrap_or_else(|_| etag.clone())
}

/// Content types worth compressing.
fn compressible(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            let t = t.trim_start();
            // Not `text/event-stream`: a stream is sent as it happens.
            (t.starts_with("application/json")
                || t.starts_with("text/csv")
                || t.starts_with("text/html")
                || t.starts_with("text/plain")
                || t.starts_with("text/css")
                || t.starts_with("text/javascript")
                || t.starts_with("application/javascript"))
                && !t.starts_with("text/event-stream")
        })
}

/// A response not prepared ahead, compressed for this request if the client takes a coding
/// and the body is worth it. Prepared responses (which say `Vary` when they have variants;
/// those without are under [`MIN_BYTES`]), streams (no known length), and bodies already
/// encoded pass through. (A marker in the response's extensions would cost an allocation per
/// request; the headers are there anyway.)
pub async fn compress_dynamic(response: Response, coding: Coding) -> Response {
    let h = response.headers();
    if h.contains_key(axum::http::header::VARY)
        || h.contains_key(CONTENT_ENCODING)
        || !compressible(h)
    {
        return response;
    }
    let exact = axum::body::HttpBody::size_hint(response.body()).exact();
    if exact.is_none_or(|n| (n as usize) < MIN_BYTES) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    append_vary(&mut parts.headers);
    if coding == Coding::Identity {
        return Response::from_parts(parts, body);
    }
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        parts.headers.remove(CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    };
    let compressed = if bytes.len() >= BLOCKING_BYTES {
        let plain = bytes.clone();
        tokio::task::spawn_blocking(move || compress(&plain, coding))
            .await
            .ok()
            .flatten()
    } else {
        compress(&bytes, coding)
    };
    match compressed {
        Some(c) if c.len() < bytes.len() => {
            parts.headers.remove(CONTENT_LENGTH);
            if let Some(encoding) = coding.header() {
                parts.headers.insert(CONTENT_ENCODING, encoding);
            }
            if let Some(etag) = parts.headers.get(ETAG) {
                let etag = variant_etag(etag, coding);
                parts.headers.insert(ETAG, etag);
            }
            Response::from_parts(parts, Body::from(c))
        }
        _ => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// Adds `Accept-Encoding` to `Vary`, keeping what is there.
pub fn append_vary(headers: &mut HeaderMap) {
    use axum::http::header::VARY;
    let has = headers.get_all(VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding") || t.trim() == "*")
        })
    });
    if !has {
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn accept_encoding_is_negotiated_by_q() {
        assert_eq!(preferred(&HeaderMap::new()), Coding::Identity);
        assert_eq!(preferred(&accept("gzip, deflate, br, zstd")), Coding::Br);
        assert_eq!(preferred(&accept("gzip")), Coding::Gzip);
        assert_eq!(preferred(&accept("GZIP;q=0.8, br;q=0.5")), Coding::Gzip);
        assert_eq!(preferred(&accept("br;q=0, gzip;q=0")), Coding::Identity);
        assert_eq!(preferred(&accept("*")), Coding::Br);
        assert_eq!(preferred(&accept("*;q=0.5, br;q=0")), Coding::Gzip);
        assert_eq!(preferred(&accept("identity")), Coding::Identity);
        assert_eq!(preferred(&accept("deflate, zstd")), Coding::Identity);
        assert_eq!(preferred(&accept("gzip;q=nonsense")), Coding::Identity);
        assert_eq!(preferred(&accept("x-gzip;q=0.3")), Coding::Gzip);
    }

    #[test]
    fn variants_round_trip_and_have_their_own_etags() {
        let body = Bytes::from(
            (0..400)
                .map(|i| format!("{{\"rank\":{i},\"symbol\":\"C{i}\"}},"))
                .collect::<String>(),
        );
        let etag = HeaderValue::from_static("\"abc-200-j\"");
        let variants = Variants::default();
        let plain = variants.choose(&body, &etag, Coding::Identity);
        assert_eq!(plain.body, &body);
        assert!(plain.encoding.is_none() && plain.varies);

        let gz = variants.choose(&body, &etag, Coding::Gzip);
        assert_eq!(gz.etag, "\"abc-200-j-gz\"");
        assert_eq!(gz.encoding.as_ref().unwrap(), "gzip");
        assert!(gz.body.len() < body.len() / 3);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz.body[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
        // Made once: a second request gets the same bytes, not a new compression.
        let again = variants.choose(&body, &etag, Coding::Gzip);
        assert_eq!(again.body.as_ptr(), gz.body.as_ptr());

        let br = variants.choose(&body, &etag, Coding::Br);
        assert_eq!(br.etag, "\"abc-200-j-br\"");
        let mut out = Vec::new();
        brotli::Decompressor::new(&br.body[..], 4096)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }

    #[tokio::test]
    async fn dynamic_bodies_large_and_small_are_compressed_and_decode_to_themselves() {
        for n in [2_000, 300_000] {
            let body: String = (0..n).map(|i| char::from(b'a' + (i % 7) as u8)).collect();
            let response = Response::builder()
                .header(CONTENT_TYPE, "application/json")
                .header(ETAG, "\"e\"")
                .body(Body::from(body.clone()))
                .unwrap();
            let out = compress_dynamic(response, Coding::Gzip).await;
            assert_eq!(out.headers()[CONTENT_ENCODING], "gzip");
            assert_eq!(out.headers()[ETAG], "\"e-gz\"");
            assert_eq!(out.headers()[axum::http::header::VARY], "Accept-Encoding");
            let bytes = axum::body::to_bytes(out.into_body(), usize::MAX)
                .await
                .unwrap();
            assert!(bytes.len() < n / 10, "{n}: {}", bytes.len());
            let mut plain = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut plain)
                .unwrap();
            assert_eq!(plain, body);
        }
    }

    #[test]
    fn small_or_incompressible_bodies_stay_plain() {
        let etag = HeaderValue::from_static("\"t\"");
        let small = Bytes::from_static(b"{\"data\":[]}");
        let variants = Variants::default();
        let chosen = variants.choose(&small, &etag, Coding::Br);
        assert!(chosen.encoding.is_none() && !chosen.varies);
        // Random bytes do not compress: the plain body is sent, and still varies.
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let noise = Bytes::from(noise);
        let variants = Variants::default();
        let chosen = variants.choose(&noise, &etag, Coding::Gzip);
        assert!(chosen.encoding.is_none() || chosen.body.len() < noise.len());
    }
}
