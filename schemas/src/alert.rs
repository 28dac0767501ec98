//! Alert rules as users write them (`POST /v1/alerts/rules`), their validation, and the
//! bodies alerts are delivered in. Shared by the API node, which checks rules, and the alerts
//! process, which evaluates them and delivers what fires.
//!
//! A rule's condition is one of:
//! - `above_average` / `below_average`: the value is above `factor` × (below 1/`factor` ×)
//!   the average of the samples in the trailing `window`, the current one excluded;
//! - `price_above` / `price_below`: the value is above (below) `threshold`;
//! - `change_pct`: the value moved by more than `percent` % (either way) since the oldest
//!   sample in the trailing `window`.
//!
//! Every condition may also say `for` (how long it must hold before the rule fires, default
//! none) and `notify_resolved` (also send an `alert.resolved` when it clears). A rule fires
//! at most once per `window` (threshold rules: `window` defaults to 1 h), and not again until
//! its condition has cleared.

use serde::{Deserialize, Serialize};

/// The NATS subject the API nodes publish on when a rule is created, deleted or its
/// channel's secret rotated: the alerts process reads the rules again.
pub const RULES_CHANGED_SUBJECT: &str = "topcoins.v1.alert_rules.changed";

/// The prefix of a webhook secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A webhook secret of `key`: `whsec_` and the key in base64, the Standard Webhooks form.
pub fn secret_of(key: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Unix ms as RFC 3339 (UTC), as the bodies carry times.
pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Shortest and longest window a rule may ask for.
pub const MIN_WINDOW_MS: i64 = 60_000;
pub const MAX_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;
/// The window of threshold rules that give none: how soon they may fire again.
pub const DEFAULT_THRESHOLD_WINDOW_MS: i64 = 3600 * 1000;
/// The share of a window's expected samples that must be there before an average or a change
/// over it is evaluated (no false alarm after a restart or a gap).
pub const MIN_COVERAGE: f64 = 0.9;

/// What a rule watches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConditionType {
    AboveAverage,
    BelowAverage,
    PriceAbove,
    PriceBelow,
    ChangePct,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::AboveAverage => "above_average",
            ConditionType::BelowAverage => "below_average",
            ConditionType::PriceAbove => "price_above",
            ConditionType::PriceBelow => "price_below",
            ConditionType::ChangePct => "change_pct",
        }
    }

    /// Whether it compares with the samples of a window (and so needs them there).
    pub fn uses_window(self) -> bool {
        !matches!(self, ConditionType::PriceAbove | ConditionType::PriceBelow)
    }
}

/// The grammar of a window: a whole number of minutes (1-9999), hours (1-168) or days (1-7),
/// so every window it admits is within 1 min..7 days.
pub const WINDOW_PATTERN: &str =
    "^([1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h|[1-7]d)$";
/// The grammar of a pending period (`for`): `0s`, seconds (1-99999), or a window.
pub const PENDING_PATTERN: &str =
    "^(0s|[1-9][0-9]{0,4}s|[1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h|[1-7]d)$";
/// A rule's metric: an exchange metric or a coin's price.
pub const METRIC_PATTERN: &str = "^((kraken|coinbase|binance):[a-z0-9]{1,20}-[a-z0-9]{1,20}:(price|high|low|change_pct|change_abs|volume|volume_quote)|coin:[A-Za-z0-9]{1,20}:price)$";
/// A channel's URL: `http` or `https`, a host name or IPv4 address, an optional port, and an
/// optional path and query of printable ASCII (no spaces: percent-encode them).
pub const URL_PATTERN: &str = "^https?://[A-Za-z0-9.-]{1,253}(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?([/?#][!-~]{0,1900})?$";
/// An e-mail address as channels take it.
pub const ADDRESS_PATTERN: &str =
    "^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\\.[A-Za-z0-9-]{1,63}){0,8}$";
/// Largest factor, threshold and percent (keeps every figure finite and readable).
pub const MAX_LEVEL: f64 = 1e15;

/// A rule's condition as written: one of five types, each with the fields it takes (others
/// are ignored, as unknown query parameters are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Condition {
    /// The value is above `factor` × the average of the trailing `window` (the current sample
    /// excluded).
    AboveAverage {
        #[cfg_attr(
            feature = "openapi",
            schema(exclusive_minimum = 0.0, maximum = 1e15, example = 3.0)
        )]
        factor: f64,
        #[cfg_attr(
            feature = "openapi",
            schema(
                pattern = "^([1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h|[1-7]d)$",
                example = "1h"
            )
        )]
        window: String,
        /// How long the condition must hold before the rule fires (default: at once).
        #[serde(
            default,
            rename = "for",
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        #[cfg_attr(
            feature = "openapi",
            schema(
                pattern = "^(0s|[1-9][0-9]{0,4}s|[1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h|[1-7]d)$",
                nullable = false
            )
        )]
        pending: Option<String>,
        /// Also notify when the condition clears.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        notify_resolved: bool,
    },
    /// The value is below 1/`factor` × the average of the trailing `window`.
    BelowAverage {
        #[cfg_attr(
            feature = "openapi",
            schema(exclusive_minimum = 0.0, maximum = 1e15, example = 3.0)
        )]
        factor: f64,
        #[cfg_attr(
            feature = "openapi",
            schema(
                pattern = "^([1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h|[1-7]d)$",
                example = "1h"
            )
        )]
        window: String,
        #[serde(
            default,
            rename = "for",
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        #[cfg_attr(
            feature = "openapi",
            schema(
                pattern = "^(0s|[1-9][0-9]{0,4}s|[1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h|[1-7]d)$",
                nullable = false
            )
        )]
        pending: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        notify_resolved: bool,
    },
    /// The value is above `threshold`.
    PriceAbove {
        #[cfg_attr(feature = "openapi", schema(minimum = -1e15, maximum = 1e15, example = 100000.0))]
        threshold: f64,
        /// How soon the rule may fire again (default `1h`).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        #[cfg_attr(
            feature = "openapi",
            schema(
                pattern = "^([1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h|[1-7]d)$",
                nullable = false
            )
        )]
        window: Option<String>,
        #[serde(
            default,
            rename = "for",
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        #[cfg_attr(
            feature = "openapi",
            schema(
                pattern = "^(0s|[1-9][0-9]{0,4}s|[1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h|[1-7]d)$",
                nullable = false
            )
        )]
        pending: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        notify_resolved: bool,
    },
    /// The value is below `threshold`.
    PriceBelow {
        #[cfg_attr(feature = "openapi", schema(minimum = -1e15, maximum = 1e15, example = 1.0))]
        threshold: f64,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        #[cfg_attr(
            feature = "openapi",
            schema(
                pattern = "^([1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h|[1-7]d)$",
                nullable = false
            )
        )]
        window: Option<String>,
        #[serde(
            default,
            rename = "for",
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        #[cfg_attr(
            feature = "openapi",
            schema(
                pattern = "^(0s|[1-9][0-9]{0,4}s|[1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h|[1-7]d)$",
                nullable = false
            )
        )]
        pending: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        notify_resolved: bool,
    },
    /// The value moved by more than `percent` % (either way) since the oldest sample of the
    /// trailing `window`.
    ChangePct {
        #[cfg_attr(
            feature = "openapi",
            schema(exclusive_minimum = 0.0, maximum = 1e15, example = 5.0)
        )]
        percent: f64,
        #[cfg_attr(
            feature = "openapi",
            schema(
                pattern = "^([1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h|[1-7]d)$",
                example = "1h"
            )
        )]
        window: String,
        #[serde(
            default,
            rename = "for",
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        #[cfg_attr(
            feature = "openapi",
            schema(
                pattern = "^(0s|[1-9][0-9]{0,4}s|[1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h|[1-7]d)$",
                nullable = false
            )
        )]
        pending: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        notify_resolved: bool,
    },
}

/// An optional field that may be left out but, when given, is a string (not `null`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// A condition checked, its durations in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checked {
    pub kind: ConditionType,
    /// The factor, threshold or percent.
    pub level: f64,
    pub window_ms: i64,
    pub pending_ms: i64,
    pub notify_resolved: bool,
}

/// Why a rule is refused: a code and a message for the JSON error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

fn invalid(code: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        code,
        message: message.into(),
    }
}

/// `30s`, `5m`, `1h`, `7d`: a whole number and one unit, in ms.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let per: i64 = match unit {
        's' => 1000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok()?.checked_mul(per)
}

/// A number without leading zero of at most `max_digits` digits, at most `max`.
fn whole(digits: &str, max_digits: usize, max: u32) -> bool {
    !digits.is_empty()
        && digits.len() <= max_digits
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
        && digits.parse::<u32>().is_ok_and(|n| n <= max)
}

/// A window as [`WINDOW_PATTERN`] admits it, in ms.
pub fn window_ms(text: &str) -> Option<i64> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let ok = match unit {
        "m" => whole(digits, 4, 9999),
        "h" => whole(digits, 3, 168),
        "d" => whole(digits, 1, 7),
        _ => false,
    };
    ok.then(|| parse_duration_ms(text)).flatten()
}

/// A pending period as [`PENDING_PATTERN`] admits it, in ms.
pub fn pending_ms(text: &str) -> Option<i64> {
    if text == "0s" {
        return Some(0);
    }
    match text.strip_suffix('s') {
        Some(digits) => whole(digits, 5, 99_999)
            .then(|| parse_duration_ms(text))
            .flatten(),
        None => window_ms(text),
    }
}

impl Condition {
    pub fn kind(&self) -> ConditionType {
        match self {
            Condition::AboveAverage { .. } => ConditionType::AboveAverage,
            Condition::BelowAverage { .. } => ConditionType::BelowAverage,
            Condition::PriceAbove { .. } => ConditionType::PriceAbove,
            Condition::PriceBelow { .. } => ConditionType::PriceBelow,
            Condition::ChangePct { .. } => ConditionType::ChangePct,
        }
    }

    /// The window as written (`None`: a threshold rule's default).
    pub fn window(&self) -> Option<&str> {
        match self {
            Condition::AboveAverage { window, .. }
            | Condition::BelowAverage { window, .. }
            | Condition::ChangePct { window, .. } => Some(window),
            Condition::PriceAbove { window, .. } | Condition::PriceBelow { window, .. } => {
                window.as_deref()
            }
        }
    }

    /// The window as the bodies show it: as written, or the default `1h`.
    pub fn window_text(&self) -> String {
        self.window().unwrap_or("1h").to_owned()
    }

    /// Checks the condition: each figure and duration in range.
    pub fn check(&self) -> Result<Checked, Invalid> {
        let (level, pending, notify_resolved) = match self {
            Condition::AboveAverage {
                factor,
                pending,
                notify_resolved,
                ..
            }
            | Condition::BelowAverage {
                factor,
                pending,
                notify_resolved,
                ..
            } => {
                if !(factor.is_finite() && *factor > 0.0 && *factor <= MAX_LEVEL) {
                    return Err(invalid(
                        "invalid_factor",
                        format!("factor must be above 0 (and at most 1e15), got {factor}"),
                    ));
                }
                (*factor, pending, *notify_resolved)
            }
            Condition::PriceAbove {
                threshold,
                pending,
                notify_resolved,
                ..
            }
            | Condition::PriceBelow {
                threshold,
                pending,
                notify_resolved,
                ..
            } => {
                if !(threshold.is_finite() && threshold.abs() <= MAX_LEVEL) {
                    return Err(invalid(
                        "invalid_condition",
                        format!("threshold must be a number from -1e15 to 1e15, got {threshold}"),
                    ));
                }
                (*threshold, pending, *notify_resolved)
            }
            Condition::ChangePct {
                percent,
                pending,
                notify_resolved,
                ..
            } => {
                if !(percent.is_finite() && *percent > 0.0 && *percent <= MAX_LEVEL) {
                    return Err(invalid(
                        "invalid_condition",
                        format!("percent must be above 0 (and at most 1e15), got {percent}"),
                    ));
                }
                (*percent, pending, *notify_resolved)
            }
        };
        let window_ms = match self.window() {
            None => DEFAULT_THRESHOLD_WINDOW_MS,
            Some(w) => window_ms(w).ok_or_else(|| {
                invalid(
                    "invalid_window",
                    format!(
                        "window must be 1m to 7d: minutes (1-9999m), hours (1-168h) or days (1-7d), got {w:?}"
                    ),
                )
            })?,
        };
        let pending_ms = match pending {
            None => 0,
            Some(p) => pending_ms(p).ok_or_else(|| {
                invalid(
                    "invalid_for",
                    format!(
                        "for must be 0s to 7d: seconds (0-99999s), minutes (1-9999m), hours (1-168h) or days (1-7d), got {p:?}"
                    ),
                )
            })?,
        };
        Ok(Checked {
            kind: self.kind(),
            level,
            window_ms,
            pending_ms,
            notify_resolved,
        })
    }
}

/// Where a rule's alerts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    /// A signed HTTP POST (Standard Webhooks).
    Webhook,
    /// A Slack incoming webhook: a readable text.
    Slack,
    /// `topcoins.v1.alerts.<user_id>` on the installation's NATS.
    Nats,
    /// An e-mail through the installation's SMTP server.
    Email,
}

impl ChannelType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelType::Webhook => "webhook",
            ChannelType::Slack => "slack",
            ChannelType::Nats => "nats",
            ChannelType::Email => "email",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Webhook, Self::Slack, Self::Nats, Self::Email]
            .into_iter()
            .find(|c| c.as_str() == text)
    }
}

/// A rule's channel as written (fields its type does not take are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChannelSpec {
    /// Signed POSTs of the alert body (Standard Webhooks).
    Webhook {
        #[cfg_attr(
            feature = "openapi",
            schema(
                pattern = "^https?://[A-Za-z0-9.-]{1,253}(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?([/?#][!-~]{0,1900})?$",
                example = "https://example.com/hooks/topcoins"
            )
        )]
        url: String,
    },
    /// A Slack incoming webhook.
    Slack {
        #[cfg_attr(
            feature = "openapi",
            schema(
                pattern = "^https?://[A-Za-z0-9.-]{1,253}(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?([/?#][!-~]{0,1900})?$",
                example = "https://hooks.slack.com/services/T000/B000/XXXX"
            )
        )]
        url: String,
    },
    /// `topcoins.v1.alerts.<user_id>`.
    Nats {},
    /// An e-mail.
    Email {
        #[cfg_attr(
            feature = "openapi",
            schema(
                pattern = "^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\\.[A-Za-z0-9-]{1,63}){0,8}$",
                example = "ops@example.com"
            )
        )]
        to: String,
    },
}

impl ChannelSpec {
    pub fn kind(&self) -> ChannelType {
        match self {
            ChannelSpec::Webhook { .. } => ChannelType::Webhook,
            ChannelSpec::Slack { .. } => ChannelType::Slack,
            ChannelSpec::Nats {} => ChannelType::Nats,
            ChannelSpec::Email { .. } => ChannelType::Email,
        }
    }

    /// The channel's target (URL, address, or empty for `nats`), checked.
    pub fn target(&self) -> Result<String, Invalid> {
        match self {
            ChannelSpec::Webhook { url } | ChannelSpec::Slack { url } => {
                if is_http_url(url) {
                    Ok(url.clone())
                } else {
                    Err(invalid(
                        "invalid_url",
                        "url must be http:// or https://, a host name or IPv4 address, an optional port and an optional path of printable ASCII without spaces",
                    ))
                }
            }
            ChannelSpec::Nats {} => Ok(String::new()),
            ChannelSpec::Email { to } => {
                if is_address(to) {
                    Ok(to.clone())
                } else {
                    Err(invalid(
                        "invalid_address",
                        "to must be an e-mail address: name@host (letters, digits and ._%+- before the @)",
                    ))
                }
            }
        }
    }
}

fn host_chars(host: &str, max: usize) -> bool {
    (1..=max).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// What [`URL_PATTERN`] admits.
pub fn is_http_url(u: &str) -> bool {
    let Some(rest) = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
    else {
        return false;
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u32>().is_ok_and(|n| n <= 65535)
            // The pattern's forms: up to four digits (leading zeros allowed), or 10000-65535.
            && (p.len() <= 4 || !p.starts_with('0'))
    });
    let tail_ok =
        tail.is_empty() || (tail.len() <= 1901 && tail.bytes().all(|b| (b'!'..=b'~').contains(&b)));
    host_chars(host, 253) && port_ok && tail_ok
}

/// What [`ADDRESS_PATTERN`] admits.
pub fn is_address(a: &str) -> bool {
    let Some((local, domain)) = a.split_once('@') else {
        return false;
    };
    let local_ok = (1..=64).contains(&local.len())
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() <= 9
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    local_ok && domain_ok
}

/// What [`METRIC_PATTERN`] admits, for the coin form: `coin:` and 1-20 letters or digits and
/// `:price`.
pub fn coin_metric_symbol(metric: &str) -> Option<&str> {
    let symbol = metric.strip_prefix("coin:")?.strip_suffix(":price")?;
    ((1..=20).contains(&symbol.len()) && symbol.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(symbol)
}

/// One alert in a delivered body (`data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertData {
    pub alert_id: String,
    pub rule_id: String,
    pub metric: String,
    /// The rule's condition type.
    pub condition: String,
    pub value: f64,
    /// The window's average (`above_average`, `below_average`), the value at the window's
    /// start (`change_pct`), else `null`.
    pub average: Option<f64>,
    /// The rule's factor, threshold or percent.
    pub factor: f64,
    pub window: String,
    /// When the sample was taken (RFC 3339).
    pub time: String,
}

/// A delivered body: `{"type":"alert.fired","timestamp":…,"data":{…}}`, as the contract says.
/// When several alerts of one user go to one channel in one evaluation they travel in one
/// message: `data` is the first of them, and `data.alerts` holds them all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertBody {
    /// `alert.fired`, `alert.resolved` or `alert.test`.
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339.
    pub timestamp: String,
    pub data: AlertBodyData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertBodyData {
    #[serde(flatten)]
    pub first: AlertData,
    /// Every alert of the message (the first included), when there is more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertData>,
}

impl AlertBody {
    /// The body of a message of `kind` (`fired`, `resolved`, `test`) carrying `alerts` (at
    /// least one).
    pub fn new(kind: &str, timestamp: String, mut alerts: Vec<AlertData>) -> Option<Self> {
        let first = alerts.first()?.clone();
        if alerts.len() == 1 {
            alerts.clear();
        }
        Some(AlertBody {
            kind: format!("alert.{kind}"),
            timestamp,
            data: AlertBodyData { first, alerts },
        })
    }

    /// Every alert it carries.
    pub fn all(&self) -> Vec<&AlertData> {
        if self.data.alerts.is_empty() {
            vec![&self.data.first]
        } else {
            self.data.alerts.iter().collect()
        }
    }

    /// A readable text (Slack, e-mail): one line per alert.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for a in self.all() {
            if !out.is_empty() {
                out.push('\n');
            }
            let what = match (self.kind.as_str(), a.condition.as_str()) {
                ("alert.test", _) => "test alert".to_owned(),
                ("alert.resolved", _) => "back to normal".to_owned(),
                (_, "above_average") => format!(
                    "above {}× its {} average{}",
                    a.factor,
                    a.window,
                    a.average.map(|v| format!(" ({v})")).unwrap_or_default()
                ),
                (_, "below_average") => format!(
                    "below 1/{}× its {} average{}",
                    a.factor,
                    a.window,
                    a.average.map(|v| format!(" ({v})")).unwrap_or_default()
                ),
                (_, "price_above") => format!("above {}", a.factor),
                (_, "price_below") => format!("below {}", a.factor),
                (_, "change_pct") => format!(
                    "moved more than {}% in {}{}",
                    a.factor,
                    a.window,
                    a.average
                        .map(|v| format!(" (from {v})"))
                        .unwrap_or_default()
                ),
                (_, other) => other.to_owned(),
            };
            out.push_str(&format!(
                "{}: {} is {}, {what} (rule {}, {})",
                if self.kind == "alert.resolved" {
                    "Resolved"
                } else {
                    "Alert"
                },
                a.metric,
                a.value,
                a.rule_id,
                a.time
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(json: &str) -> Result<Checked, Invalid> {
        serde_json::from_str::<Condition>(json).unwrap().check()
    }

    #[test]
    fn conditions_are_checked() {
        let c = cond(r#"{"type":"above_average","factor":3,"window":"1h"}"#).unwrap();
        assert_eq!((c.level, c.window_ms, c.pending_ms), (3.0, 3_600_000, 0));
        assert_eq!(
            cond(r#"{"type":"above_average","factor":0,"window":"1h"}"#)
                .unwrap_err()
                .code,
            "invalid_factor"
        );
        assert_eq!(
            cond(r#"{"type":"above_average","factor":-1,"window":"1h"}"#)
                .unwrap_err()
                .code,
            "invalid_factor"
        );
        for bad in [
            "59s", "0m", "8d", "169h", "10000m", "01h", "1 hour", "", "h",
        ] {
            let json = format!(r#"{{"type":"above_average","factor":2,"window":{bad:?}}}"#);
            assert_eq!(cond(&json).unwrap_err().code, "invalid_window", "{bad}");
        }
        for good in ["1m", "9999m", "168h", "7d", "1h"] {
            let json = format!(r#"{{"type":"above_average","factor":2,"window":{good:?}}}"#);
            assert!(cond(&json).is_ok(), "{good}");
        }
        assert!(
            serde_json::from_str::<Condition>(r#"{"type":"above_average","factor":2}"#).is_err()
        );
        assert!(cond(r#"{"type":"below_average","factor":2,"window":"1m"}"#).is_ok());
        let t = cond(r#"{"type":"price_above","threshold":100000}"#).unwrap();
        assert_eq!(t.window_ms, DEFAULT_THRESHOLD_WINDOW_MS);
        // A field the type does not take is ignored; one it needs is not optional.
        assert!(
            serde_json::from_str::<Condition>(r#"{"type":"price_above","factor":2,"threshold":1}"#)
                .is_ok()
        );
        assert!(serde_json::from_str::<Condition>(r#"{"type":"price_above","factor":2}"#).is_err());
        assert_eq!(
            cond(r#"{"type":"change_pct","percent":0,"window":"1h"}"#)
                .unwrap_err()
                .code,
            "invalid_condition"
        );
        let p = cond(r#"{"type":"change_pct","percent":5,"window":"1h","for":"300s","notify_resolved":true}"#).unwrap();
        assert_eq!((p.pending_ms, p.notify_resolved), (300_000, true));
        assert_eq!(
            cond(r#"{"type":"change_pct","percent":5,"window":"1h","for":"8d"}"#)
                .unwrap_err()
                .code,
            "invalid_for"
        );
        assert!(serde_json::from_str::<Condition>(r#"{"type":"nope"}"#).is_err());
        // Left out, or a string: never null.
        assert!(
            serde_json::from_str::<Condition>(r#"{"type":"price_above","threshold":1,"for":null}"#)
                .is_err()
        );
        // Written back as given.
        let c: Condition =
            serde_json::from_str(r#"{"type":"price_below","threshold":2,"for":"5m"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"type":"price_below","threshold":2.0,"for":"5m"}"#
        );
    }

    #[test]
    fn channels_are_checked() {
        let spec = |json: &str| serde_json::from_str::<ChannelSpec>(json).unwrap().target();
        assert_eq!(
            spec(r#"{"type":"webhook","url":"https://x.example/h"}"#).unwrap(),
            "https://x.example/h"
        );
        assert!(spec(r#"{"type":"webhook","url":"http://127.0.0.1:8080/h?a=1"}"#).is_ok());
        for bad in [
            "ftp://x/",
            "https://",
            "https:///x",
            "javascript:alert(1)",
            "http://x:99999/",
            "http://a b/",
            "http://u@x/",
            "http://x/\u{1}",
        ] {
            assert_eq!(
                spec(&format!(
                    r#"{{"type":"slack","url":{}}}"#,
                    serde_json::to_string(bad).unwrap()
                ))
                .unwrap_err()
                .code,
                "invalid_url",
                "{bad}"
            );
        }
        assert!(serde_json::from_str::<ChannelSpec>(r#"{"type":"webhook"}"#).is_err());
        assert_eq!(spec(r#"{"type":"nats"}"#).unwrap(), "");
        assert_eq!(
            spec(r#"{"type":"email","to":"ops@example.com"}"#).unwrap(),
            "ops@example.com"
        );
        assert_eq!(
            spec(r#"{"type":"email","to":"nobody"}"#).unwrap_err().code,
            "invalid_address"
        );
        assert_eq!(
            spec(r#"{"type":"email","to":"a@b..c"}"#).unwrap_err().code,
            "invalid_address"
        );
    }

    #[test]
    fn one_alert_is_the_contracts_body_and_several_travel_together() {
        let data = |id: &str| AlertData {
            alert_id: id.into(),
            rule_id: "rul_1".into(),
            metric: "kraken:btc-usd:volume".into(),
            condition: "above_average".into(),
            value: 500.0,
            average: Some(100.0),
            factor: 3.0,
            window: "1h".into(),
            time: "2026-12-01T00:00:00Z".into(),
        };
        let one = AlertBody::new("fired", "2026-12-01T00:00:00Z".into(), vec![data("a")]).unwrap();
        let v: serde_json::Value = serde_json::to_value(&one).unwrap();
        assert_eq!(v["type"], "alert.fired");
        assert_eq!(v["data"]["rule_id"], "rul_1");
        assert_eq!(v["data"]["value"], 500.0);
        assert_eq!(v["data"]["average"], 100.0);
        assert_eq!(v["data"]["window"], "1h");
        assert!(v["data"].get("alerts").is_none());
        let two = AlertBody::new("fired", "t".into(), vec![data("a"), data("b")]).unwrap();
        assert_eq!(two.all().len(), 2);
        assert_eq!(two.text().lines().count(), 2);
        assert!(AlertBody::new("fired", "t".into(), vec![]).is_none());
    }
}
