//! The query string of `GET /`, parsed strictly: a request either means one thing or gets a
//! 400 that says what is wrong. Unknown parameters are ignored (cache busters are common);
//! a parameter we use given twice is an error, since we cannot know which one was meant.

use crate::error::ApiError;

/// The body's format: the `format` parameter, else the `Accept` header, else JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Format {
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopQuery {
    pub limit: usize,
    pub format: Format,
}

/// Longest parameter value echoed back in an error message.
const ECHO_MAX: usize = 40;

pub(crate) fn echo(value: &str) -> String {
    let mut s: String = value.chars().take(ECHO_MAX).collect();
    if value.chars().count() > ECHO_MAX {
        s.push('…');
    }
    s
}

/// Parses `raw` (the part after `?`, if any). `accept` is the Accept header, used when no
/// `format` parameter is given.
pub fn parse(
    raw: Option<&str>,
    accept: Option<&str>,
    default_limit: usize,
    max_limit: usize,
) -> Result<TopQuery, ApiError> {
    let mut limit = None;
    let mut format = None;
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let slot = match key.as_ref() {
            "limit" => &mut limit,
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
    let limit = match limit {
        None => default_limit,
        Some(v) => parse_limit(&v, max_limit)?,
    };
    let format = parse_format(format.as_deref(), accept)?;
    Ok(TopQuery { limit, format })
}

/// The values of the parameters `names` in `raw`, each at most once (`duplicate_parameter`
/// otherwise); other parameters are ignored.
pub(crate) fn params<const N: usize>(
    raw: Option<&str>,
    names: [&str; N],
) -> Result<[Option<String>; N], ApiError> {
    let mut seen: [Option<String>; N] = std::array::from_fn(|_| None);
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let Some(i) = names.iter().position(|n| *n == key) else {
            continue;
        };
        if seen[i].replace(value.into_owned()).is_some() {
            return Err(ApiError::bad_request(
                "duplicate_parameter",
                format!("{key} is given more than once"),
            ));
        }
    }
    Ok(seen)
}

/// `format` (`json` or `csv`), or without one what `Accept` prefers.
pub(crate) fn parse_format(format: Option<&str>, accept: Option<&str>) -> Result<Format, ApiError> {
    match format {
        Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(other) => Err(ApiError::bad_request(
            "invalid_format",
            format!("format must be json or csv, got {:?}", echo(other)),
        )),
        None if accept.is_some_and(prefers_csv) => Ok(Format::Csv),
        None => Ok(Format::Json),
    }
}

pub(crate) fn parse_limit(value: &str, max: usize) -> Result<usize, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_limit",
            format!(
                "limit must be an integer from 1 to {max}, got {:?}",
                echo(value)
            ),
        )
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match value.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(bad()),
    }
}

/// Whether an Accept header asks for CSV over JSON: `text/csv` listed with a quality at least
/// that of any JSON type.
pub(crate) fn prefers_csv(accept: &str) -> bool {
    let mut csv_q: Option<f32> = None;
    let mut json_q: Option<f32> = None;
    for part in accept.split(',') {
        let mut pieces = part.split(';');
        let media = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = pieces
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "text/csv" => csv_q = Some(csv_q.unwrap_or(0.0).max(q)),
            "application/json" => json_q = Some(json_q.unwrap_or(0.0).max(q)),
            _ => {}
        }
    }
    match (csv_q, json_q) {
        (Some(c), Some(j)) => c > 0.0 && c > j,
        (Some(c), None) => c > 0.0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn limit(raw: &str) -> Result<usize, String> {
        parse(Some(raw), None, 200, 5000)
            .map(|q| q.limit)
            .map_err(|e| e.code.to_owned())
    }

    #[test]
    fn limits() {
        assert_eq!(parse(None, None, 200, 5000).unwrap().limit, 200);
        assert_eq!(limit("limit=1"), Ok(1));
        assert_eq!(limit("limit=5000"), Ok(5000));
        assert_eq!(limit("limit=007"), Ok(7));
        assert_eq!(limit("cb=123&limit=3"), Ok(3));
        for bad in [
            "limit=5001",
            "limit=0",
            "limit=-1",
            "limit=abc",
            "limit=1.5",
            "limit=",
            "limit",
            "limit=+5",
            "limit=%201",
            "limit=123456789012345678901234567890",
            "limit=٣",
        ] {
            assert_eq!(limit(bad), Err("invalid_limit".into()), "{bad}");
        }
        assert_eq!(limit("limit=1&limit=2"), Err("duplicate_parameter".into()));
    }

    #[test]
    fn formats() {
        let f =
            |raw: &str, accept: Option<&str>| parse(Some(raw), accept, 200, 5000).map(|q| q.format);
        assert_eq!(f("", None).unwrap(), Format::Json);
        assert_eq!(f("format=csv", None).unwrap(), Format::Csv);
        assert_eq!(f("", Some("text/csv")).unwrap(), Format::Csv);
        assert_eq!(
            f("", Some("text/csv;q=0.5, application/json")).unwrap(),
            Format::Json
        );
        assert_eq!(f("", Some("*/*")).unwrap(), Format::Json);
        assert_eq!(f("format=json", Some("text/csv")).unwrap(), Format::Json);
        assert_eq!(f("format=xml", None).unwrap_err().code, "invalid_format");
    }

    proptest! {
        #[test]
        fn any_query_is_ok_or_a_400(raw in any::<String>(), accept in proptest::option::of(any::<String>())) {
            match parse(Some(&raw), accept.as_deref(), 200, 5000) {
                Ok(q) => prop_assert!((1..=5000).contains(&q.limit)),
                Err(e) => {
                    prop_assert_eq!(e.status.as_u16(), 400);
                    prop_assert!(e.message.chars().count() < 200);
                }
            }
        }

        #[test]
        fn numeric_limits(n in any::<u64>()) {
            let r = limit(&format!("limit={n}"));
            prop_assert_eq!(r.is_ok(), (1..=5000).contains(&n));
        }
    }
}
