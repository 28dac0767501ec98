//! The query string of `GET /v1/coins/{symbol}/candles`, parsed as strictly as `GET /`'s: a
//! request means one thing or gets a 400 naming what is wrong. Unknown parameters are
//! ignored; one we use given twice is an error.

use std::str::FromStr;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use topcoins_history::{Cursor, Interval};

use crate::error::ApiError;
use crate::query::{Format, echo, parse_format, parse_limit};

/// `limit` when a request gives none, and the most it may ask for.
pub const DEFAULT_LIMIT: usize = 500;
pub const MAX_LIMIT: usize = 2000;
/// `from` when a request gives none: this long before `to`.
pub const DEFAULT_SPAN_MS: i64 = 24 * 3600 * 1000;
/// The times accepted, Unix ms: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z, what RFC
/// 3339 can write. Keeps every sum of a time and an interval far from overflowing.
pub const MIN_TIME_MS: i64 = -62_135_596_800_000;
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandlesQuery {
    pub interval: Interval,
    /// Candles whose bucket starts in `from..to` (Unix ms, `to` excluded).
    pub from: i64,
    pub to: i64,
    pub limit: usize,
    pub cursor: Option<Cursor>,
    pub format: Format,
}

/// Parses `raw` (the part after `?`). `now` (Unix ms) is the default `to`.
pub fn parse(raw: Option<&str>, accept: Option<&str>, now: i64) -> Result<CandlesQuery, ApiError> {
    let (mut interval, mut from, mut to, mut limit, mut cursor, mut format) =
        (None, None, None, None, None, None);
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let slot = match key.as_ref() {
            "interval" => &mut interval,
            "from" => &mut from,
            "to" => &mut to,
            "limit" => &mut limit,
            "cursor" => &mut cursor,
            "format" => &mut format,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(ApiError::bad_request(
                "duplicate_parameter",
                format!("{key} is given more than once"),
            ));
        }
    }
    let interval = match interval.as_deref() {
        None => {
            return Err(ApiError::bad_request(
                "missing_parameter",
                "interval is required: 1m, 5m, 15m, 1h, 4h or 1d",
            ));
        }
        Some(v) => Interval::from_str(v).map_err(|_| {
            ApiError::bad_request(
                "invalid_interval",
                format!(
                    "interval must be 1m, 5m, 15m, 1h, 4h or 1d, got {:?}",
                    echo(v)
                ),
            )
        })?,
    };
    let (from, to) = parse_range(from.as_deref(), to.as_deref(), now)?;
    let limit = match limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(v) => parse_limit(v, MAX_LIMIT)?,
    };
    let cursor = match cursor.as_deref() {
        None => None,
        Some(v) => Some(parse_cursor(v)?),
    };
    let format = parse_format(format.as_deref(), accept)?;
    Ok(CandlesQuery {
        interval,
        from,
        to,
        limit,
        cursor,
        format,
    })
}

/// `from` and `to` (default now, and a day before `to`), checked to be in order.
pub(crate) fn parse_range(
    from: Option<&str>,
    to: Option<&str>,
    now: i64,
) -> Result<(i64, i64), ApiError> {
    let to = match to {
        None => now.clamp(MIN_TIME_MS, MAX_TIME_MS),
        Some(v) => parse_time("to", v)?,
    };
    let from = match from {
        None => to.saturating_sub(DEFAULT_SPAN_MS).max(MIN_TIME_MS),
        Some(v) => parse_time("from", v)?,
    };
    if from > to {
        return Err(ApiError::bad_request(
            "invalid_range",
            format!("from ({from}) is after to ({to})"),
        ));
    }
    Ok((from, to))
}

/// Unix milliseconds (an optional `-`, then digits) or RFC 3339.
pub(crate) fn parse_time(name: &str, value: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_time",
            format!(
                "{name} must be Unix milliseconds or an RFC 3339 time between the years 1 and \
                 9999, got {:?}",
                echo(value)
            ),
        )
    };
    let digits = value.strip_prefix('-').unwrap_or(value);
    let ms = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        value.parse::<i64>().map_err(|_| bad())?
    } else {
        // An unencoded `+` of an offset arrives as a space (form encoding): take it back.
        let t = OffsetDateTime::parse(&value.replace(' ', "+"), &Rfc3339).map_err(|_| bad())?;
        i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).map_err(|_| bad())?
    };
    if (MIN_TIME_MS..=MAX_TIME_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(bad())
    }
}

/// A cursor is what `meta.next_cursor` handed out: a bucket's time, digits only.
pub(crate) fn parse_cursor(value: &str) -> Result<Cursor, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_cursor",
            format!(
                "cursor must be a meta.next_cursor of an earlier page, got {:?}",
                echo(value)
            ),
        )
    };
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let cursor: Cursor = value.parse().map_err(|_| bad())?;
    if (MIN_TIME_MS..=MAX_TIME_MS).contains(&cursor.0) {
        Ok(cursor)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_764_596_832_345;

    fn code(raw: &str) -> &'static str {
        parse(Some(raw), None, NOW).unwrap_err().code
    }

    #[test]
    fn defaults_are_the_last_day_500_json() {
        let q = parse(Some("interval=5m"), None, NOW).unwrap();
        assert_eq!(
            q,
            CandlesQuery {
                interval: Interval::M5,
                from: NOW - DEFAULT_SPAN_MS,
                to: NOW,
                limit: 500,
                cursor: None,
                format: Format::Json,
            }
        );
        let q = parse(Some("interval=1h&to=1000000000000"), Some("text/csv"), NOW).unwrap();
        assert_eq!(
            (q.from, q.to),
            (1_000_000_000_000 - DEFAULT_SPAN_MS, 1_000_000_000_000)
        );
        assert_eq!(q.format, Format::Csv);
    }

    #[test]
    fn times_are_milliseconds_or_rfc_3339() {
        let q = parse(
            Some("interval=1d&from=2025-12-01T00:00:00Z&to=2025-12-01T02:00:00.5%2B01:00"),
            None,
            NOW,
        )
        .unwrap();
        assert_eq!(q.from, 1_764_547_200_000);
        assert_eq!(q.to, 1_764_547_200_000 + 3_600_000 + 500);
        let q = parse(Some("interval=1d&to=2025-12-01T01:00:00+01:00"), None, NOW).unwrap();
        assert_eq!(q.to, 1_764_547_200_000);
        let q = parse(
            Some("interval=1m&from=-5&to=0&limit=2000&cursor=-3"),
            None,
            NOW,
        )
        .unwrap();
        assert_eq!(
            (q.from, q.to, q.limit, q.cursor),
            (-5, 0, 2000, Some(Cursor(-3)))
        );
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(code(""), "missing_parameter");
        assert_eq!(code("interval=2m"), "invalid_interval");
        assert_eq!(code("interval=1H"), "invalid_interval");
        assert_eq!(code("interval=1m&from=yesterday"), "invalid_time");
        assert_eq!(code("interval=1m&to=2025-13-01T00:00:00Z"), "invalid_time");
        assert_eq!(code("interval=1m&to=99999999999999999999"), "invalid_time");
        assert_eq!(code("interval=1m&to=253402300800000"), "invalid_time");
        assert_eq!(code("interval=1m&from="), "invalid_time");
        assert_eq!(code("interval=1m&from=2&to=1"), "invalid_range");
        assert_eq!(code("interval=1m&limit=0"), "invalid_limit");
        assert_eq!(code("interval=1m&limit=2001"), "invalid_limit");
        assert_eq!(code("interval=1m&cursor=abc"), "invalid_cursor");
        assert_eq!(code("interval=1m&cursor="), "invalid_cursor");
        assert_eq!(code("interval=1m&format=xml"), "invalid_format");
        assert_eq!(code("interval=1m&interval=1h"), "duplicate_parameter");
    }

    proptest! {
        #[test]
        fn any_query_is_ok_or_a_400(raw in any::<String>(), now in any::<i64>()) {
            match parse(Some(&raw), None, now) {
                Ok(q) => {
                    prop_assert!(q.from <= q.to);
                    prop_assert!((1..=MAX_LIMIT).contains(&q.limit));
                    prop_assert!(q.from >= MIN_TIME_MS && q.to <= MAX_TIME_MS);
                }
                Err(e) => prop_assert_eq!(e.status.as_u16(), 400),
            }
        }

        #[test]
        fn milliseconds_round_trip(ms in MIN_TIME_MS..=MAX_TIME_MS) {
            let q = parse(Some(&format!("interval=1m&from={ms}&to={ms}")), None, 0).unwrap();
            prop_assert_eq!((q.from, q.to), (ms, ms));
        }
    }
}
