//! Secrets in logs: how a key, a password or a URL with credentials is shown — never itself.
//!
//! Every place that logs or debug-prints configuration goes through these, so "no secret in a
//! log line" is one rule, tested here.

/// `<set>` or `<unset>`: all a log says about a key.
pub fn presence<T>(secret: Option<T>) -> &'static str {
    if secret.is_some() { "<set>" } else { "<unset>" }
}

/// Comma-separated server URLs with any `user:password@` (or `token@`) replaced by
/// `<redacted>@`, for logs.
pub fn redact_urls(urls: &str) -> String {
    urls.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}<redacted>{}", &u[..scheme + 3], &u[at..])
            }
            (None, Some(at)) => format!("<redacted>{}", &u[at..]),
            _ => u.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_shown() {
        assert_eq!(
            redact_urls("nats://user:pw@a:4222,tls://b:4222,tok@c:4222"),
            "nats://<redacted>@a:4222,tls://b:4222,<redacted>@c:4222"
        );
        assert_eq!(
            redact_urls("postgres://app:s3cret@db:5432/topcoins"),
            "postgres://<redacted>@db:5432/topcoins"
        );
        assert_eq!(redact_urls("sqlite://data/x.db"), "sqlite://data/x.db");
        assert_eq!(presence(Some("k")), "<set>");
        assert_eq!(presence(None::<&str>), "<unset>");
    }
}
