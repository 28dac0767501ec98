//! Decoding provider bodies. Only the fields topcoins uses are declared, each optional where
//! providers leave it out, so added fields never break a parse; a body that does not fit
//! reports the JSON path that broke (`data[17].quote.USD.price`), which is what an operator
//! needs when a provider changes its shape.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{UpstreamError, UpstreamErrorKind};

/// Decodes `body` as `T`, or a [`UpstreamErrorKind::Malformed`] naming the path that broke.
pub fn decode<T: DeserializeOwned>(
    provider: &'static str,
    body: &[u8],
) -> Result<T, UpstreamError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = serde_path_to_error::deserialize::<_, T>(&mut de)
        .map_err(|e| (e.path().to_string(), e.into_inner()))
        .and_then(|v| de.end().map(|()| v).map_err(|e| (".".to_owned(), e)));
    result.map_err(|(path, e)| malformed(provider, "", path, &e))
}

/// Decodes a part of a body already read as a [`Value`]; `prefix` is that part's path.
pub fn decode_value<T: DeserializeOwned>(
    provider: &'static str,
    prefix: &str,
    value: &Value,
) -> Result<T, UpstreamError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        malformed(provider, prefix, path, e.inner())
    })
}

/// `data[17].quote` → `data[].quote`: one metric label per place in the shape, not per coin.
pub fn fold_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

fn malformed(
    provider: &'static str,
    prefix: &str,
    path: String,
    e: &serde_json::Error,
) -> UpstreamError {
    let inner = with_missing_field(path, e);
    let path = match (prefix, inner.as_str()) {
        ("", p) => p.to_owned(),
        (pre, ".") => pre.to_owned(),
        (pre, p) if p.starts_with('[') => format!("{pre}{p}"),
        (pre, p) => format!("{pre}.{p}"),
    };
    UpstreamError::new(
        provider,
        UpstreamErrorKind::Malformed { path: path.clone() },
        format!("body does not match the expected shape at {path}: {e}"),
    )
}

/// serde reports a missing field at its parent; the operator wants the field itself.
fn with_missing_field(path: String, e: &serde_json::Error) -> String {
    let message = e.to_string();
    let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    else {
        return path;
    };
    if path == "." || path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Outer {
        #[allow(dead_code)]
        data: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    struct Inner {
        #[allow(dead_code)]
        price: f64,
    }

    #[test]
    fn indices_fold_to_one_label_per_place() {
        assert_eq!(
            fold_indices("data[17].quote.USD.price"),
            "data[].quote.USD.price"
        );
        assert_eq!(fold_indices("[0][3]"), "[][]");
        assert_eq!(fold_indices("status.error_code"), "status.error_code");
    }

    #[test]
    fn names_the_path_that_broke() {
        let err = decode::<Outer>("p", br#"{"data":[{"price":1},{"price":"x"}]}"#).unwrap_err();
        assert_eq!(
            err.kind,
            UpstreamErrorKind::Malformed {
                path: "data[1].price".into()
            }
        );
        let err = decode::<Outer>("p", br#"{"data":[]"#).unwrap_err();
        assert!(matches!(err.kind, UpstreamErrorKind::Malformed { .. }));
        assert!(decode::<Outer>("p", br#"{"data":[],"extra":{"new":1}}"#).is_ok());
        assert!(decode::<Outer>("p", b"<html>502 Bad Gateway</html>").is_err());
        let err = decode::<Outer>("p", br#"{"data":[{"cost":1}]}"#).unwrap_err();
        assert_eq!(
            err.kind,
            UpstreamErrorKind::Malformed {
                path: "data[0].price".into()
            }
        );
    }
}
