//! Cross-origin requests (the Fetch standard's CORS protocol), for pages of other sites that
//! call this API.
//!
//! Public reads — `GET`/`HEAD` of current data, history, metrics, the stream, the dashboard —
//! answer any origin `TOPCOINS_CORS_ORIGINS` allows (default `*`: every origin). Requests
//! that carry a key (the routes of users, keys, watchlists and alerts, and any request with
//! `Authorization`) answer only origins listed by name: the wildcard never lets another
//! site's page use a key. Preflight `OPTIONS` requests are answered here, before routing, and
//! cost a request without `Origin` nothing but one header lookup.

use axum::body::Body;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, AUTHORIZATION, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;

/// The default of `TOPCOINS_CORS_ORIGINS`.
pub const DEFAULT_ORIGINS: &str = "*";

/// Paths whose every request needs a key.
const KEYED_PREFIXES: [&str; 4] = ["/v1/users", "/v1/keys", "/v1/watchlist", "/v1/alerts"];

/// Request headers a page may send: on public reads, those of a conditional or resumed GET;
/// with a key, also `Authorization` and `Content-Type`.
const PUBLIC_HEADERS: &str = "accept, if-none-match, last-event-id";
const KEYED_HEADERS: &str = "accept, if-none-match, last-event-id, authorization, content-type";
/// Response headers a page may read besides the CORS-safelisted ones.
const EXPOSED: &str = "etag, retry-after, location, x-topcoins-stale, x-topcoins-as-of, \
    x-topcoins-next-cursor, x-next-cursor";
/// How long a browser may keep a preflight's answer, in seconds.
const MAX_AGE: &str = "600";

/// The origins allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins {
    /// `*`: every origin, for public reads.
    any: bool,
    /// Origins named (`scheme://host[:port]`, compared exactly, lower case).
    named: Vec<HeaderValue>,
}

impl Default for Origins {
    fn default() -> Self {
        DEFAULT_ORIGINS.parse().expect("the default parses")
    }
}

impl std::str::FromStr for Origins {
    type Err = String;

    /// `*`, or origins separated by commas (`https://a.example, http://localhost:3000`); `*`
    /// may be listed with names (public reads: any; keys: the names).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut origins = Origins {
            any: false,
            named: Vec::new(),
        };
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" {
                origins.any = true;
                continue;
            }
            let (scheme, host) = item
                .split_once("://")
                .ok_or_else(|| format!("{item:?} is not an origin (scheme://host[:port])"))?;
            if !matches!(scheme, "http" | "https")
                || host.is_empty()
                || host.contains(['/', '?', '#', ' '])
            {
                return Err(format!(
                    "{item:?} is not an origin (http or https, a host, an optional port, no path)"
                ));
            }
            let value = HeaderValue::from_str(&item.to_ascii_lowercase())
                .map_err(|_| format!("{item:?} is not a valid header value"))?;
            origins.named.push(value);
        }
        if !origins.any && origins.named.is_empty() {
            return Err("no origin given (use `*` for every origin)".into());
        }
        Ok(origins)
    }
}

impl std::fmt::Display for Origins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut items: Vec<&str> = self.named.iter().filter_map(|v| v.to_str().ok()).collect();
        if self.any {
            items.insert(0, "*");
        }
        f.write_str(&items.join(","))
    }
}

impl Origins {
    /// The `Access-Control-Allow-Origin` for `origin`, and whether it depends on the origin
    /// (then the response needs `Vary: Origin`); `None`: not allowed.
    fn allow(&self, origin: &HeaderValue, keyed: bool) -> Option<(HeaderValue, bool)> {
        let named = self
            .named
            .iter()
            .any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()));
        if named {
            Some((origin.clone(), true))
        } else if self.any && !keyed {
            Some((HeaderValue::from_static("*"), false))
        } else {
            None
        }
    }
}

impl Origins {
    /// Whether answers depend on `Origin` (some origins are named): then an answer to a
    /// request without one says `Vary: Origin` too, so a shared cache does not hand it to a
    /// page of a named origin.
    pub fn named_any(&self) -> bool {
        !self.named.is_empty()
    }
}

fn keyed_path(path: &str) -> bool {
    KEYED_PREFIXES.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The answer to a preflight request (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`), or `None` if `method`/`headers` are not one.
pub fn preflight(
    origins: &Origins,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    if method != Method::OPTIONS {
        return None;
    }
    let origin = headers.get(axum::http::header::ORIGIN)?;
    let requested = headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
    let asks_key = headers
        .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|h| h.trim().eq_ignore_ascii_case(AUTHORIZATION.as_str()));
    let keyed = keyed_path(path) || asks_key;
    let read = matches!(requested.as_bytes(), b"GET" | b"HEAD");
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let h = response.headers_mut();
    h.insert(
        VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    // Writes need a key whatever the path: only named origins may make them.
    if let Some((allowed, _)) = origins.allow(origin, keyed || !read) {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        h.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(if keyed || !read {
                "GET, HEAD, POST, PUT, DELETE"
            } else {
                "GET, HEAD"
            }),
        );
        h.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(if keyed { KEYED_HEADERS } else { PUBLIC_HEADERS }),
        );
        h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
    }
    Some(response)
}

/// Adds the CORS headers to the `response` of a request from `origin` (its `method`, `path`,
/// and whether it carried `Authorization`).
pub fn decorate(
    origins: &Origins,
    origin: &HeaderValue,
    method: &Method,
    path: &str,
    authorized: bool,
    response: &mut Response,
) {
    let read = method == Method::GET || method == Method::HEAD;
    let keyed = authorized || keyed_path(path) || !read;
    let h = response.headers_mut();
    match origins.allow(origin, keyed) {
        Some((allowed, varies)) => {
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
            h.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED),
            );
            if varies {
                h.append(VARY, HeaderValue::from_static("Origin"));
            }
        }
        None => {
            if !origins.named.is_empty() {
                h.append(VARY, HeaderValue::from_static("Origin"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preflight_for(origins: &str, path: &str, method: &str, headers: &str) -> Response {
        let mut h = HeaderMap::new();
        h.insert("origin", HeaderValue::from_static("https://app.example"));
        h.insert(
            ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_str(method).unwrap(),
        );
        if !headers.is_empty() {
            h.insert(
                ACCESS_CONTROL_REQUEST_HEADERS,
                HeaderValue::from_str(headers).unwrap(),
            );
        }
        preflight(&origins.parse().unwrap(), &Method::OPTIONS, path, &h).unwrap()
    }

    fn allowed(r: &Response) -> Option<&str> {
        r.headers()
            .get(ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap())
    }

    #[test]
    fn origins_parse() {
        assert_eq!(Origins::default().to_string(), "*");
        let o: Origins = "https://A.example, http://localhost:3000".parse().unwrap();
        assert_eq!(o.to_string(), "https://a.example,http://localhost:3000");
        for bad in [
            "",
            " , ",
            "ftp://x",
            "https://x/path",
            "example.com",
            "https://",
        ] {
            assert!(bad.parse::<Origins>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn public_reads_answer_any_origin_keys_only_named_ones() {
        let r = preflight_for("*", "/v1/coins/BTC/candles", "GET", "if-none-match");
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(allowed(&r), Some("*"));
        assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_METHODS], "GET, HEAD");

        // A key route, or a read that sends a key: not for the wildcard.
        assert_eq!(
            allowed(&preflight_for("*", "/v1/watchlist", "GET", "")),
            None
        );
        let r = preflight_for("*", "/v1/stream", "GET", "authorization");
        assert_eq!(allowed(&r), None);
        assert_eq!(allowed(&preflight_for("*", "/", "POST", "")), None);

        let named = "*, https://app.example";
        let r = preflight_for(
            named,
            "/v1/alerts/rules",
            "POST",
            "authorization, content-type",
        );
        assert_eq!(allowed(&r), Some("https://app.example"));
        assert!(
            r.headers()[ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap()
                .contains("authorization")
        );
        let other = preflight_for("https://else.example", "/", "GET", "");
        assert_eq!(allowed(&other), None);
    }

    #[test]
    fn actual_requests_are_decorated() {
        let origins: Origins = "*".parse().unwrap();
        let origin = HeaderValue::from_static("https://app.example");
        let mut r = Response::new(Body::empty());
        decorate(&origins, &origin, &Method::GET, "/", false, &mut r);
        assert_eq!(allowed(&r), Some("*"));
        assert!(r.headers().contains_key(ACCESS_CONTROL_EXPOSE_HEADERS));
        let mut r = Response::new(Body::empty());
        decorate(&origins, &origin, &Method::GET, "/v1/keys", true, &mut r);
        assert_eq!(allowed(&r), None);

        let named: Origins = "https://app.example".parse().unwrap();
        let mut r = Response::new(Body::empty());
        decorate(&named, &origin, &Method::DELETE, "/v1/keys/3", true, &mut r);
        assert_eq!(allowed(&r), Some("https://app.example"));
        assert_eq!(r.headers()[VARY], "Origin");
    }
}
