//! A provider's endpoint as configured: its base URL, its key if any, and whether the URL is
//! the real provider's — the three facts every service decides on (which defaults are safe for
//! a free plan, whether `up` points it at the simulator, whether a key is needed at all).
//!
//! Each service keeps its own flags (their names are the contract: `--cmc-url`, `CMC_API_KEY`,
//! …) and reads them through an [`Endpoint`], so the rules are written once. An empty key (as
//! `KEY=${KEY:-}` in a compose file gives) is no key; the key is never printed, `Debug`
//! included.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: String,
    key: Option<String>,
    /// The real provider's base URL.
    real: &'static str,
}

impl Endpoint {
    pub fn new(url: impl Into<String>, key: Option<String>, real: &'static str) -> Self {
        Self {
            url: url.into(),
            key: key.filter(|k| !k.trim().is_empty()),
            real,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The configured key, taken out (for a client that owns it).
    pub fn into_parts(self) -> (String, Option<String>) {
        (self.url, self.key)
    }

    /// The URL is the real provider's (a trailing `/` aside): its plan's limits apply.
    pub fn is_real(&self) -> bool {
        self.url.trim_end_matches('/') == self.real.trim_end_matches('/')
    }

    /// A real provider without a key cannot be called (the keyless ones aside): under `up`
    /// it is pointed at the simulator at `sim_url` instead. Returns whether it was.
    pub fn use_sim_if_keyless(&mut self, sim_url: &str) -> bool {
        if self.key.is_none() && self.is_real() {
            self.url = sim_url.to_owned();
            return true;
        }
        false
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field(
                "key",
                &topcoins_runtime::secret::presence(self.key.as_ref()),
            )
            .field("real", &self.is_real())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = "https://pro-api.example.com";

    #[test]
    fn real_keyless_goes_to_the_sim_and_keys_stay_hidden() {
        let mut e = Endpoint::new(format!("{REAL}/"), Some("  ".into()), REAL);
        assert!(e.is_real());
        assert_eq!(e.key(), None, "a blank key is no key");
        assert!(e.use_sim_if_keyless("http://127.0.0.1:9000"));
        assert!(!e.is_real());
        assert_eq!(e.url(), "http://127.0.0.1:9000");

        let mut keyed = Endpoint::new(REAL, Some("secret-key".into()), REAL);
        assert!(!keyed.use_sim_if_keyless("http://127.0.0.1:9000"));
        assert_eq!(keyed.url(), REAL);
        let shown = format!("{keyed:?}");
        assert!(!shown.contains("secret-key"), "{shown}");
        assert!(shown.contains("<set>"));

        let mut proxy = Endpoint::new("http://proxy:8080", None, REAL);
        assert!(!proxy.is_real());
        assert!(!proxy.use_sim_if_keyless("http://127.0.0.1:9000"));
    }
}
