//! Partition paths: `column=value/…`, with every value percent-encoded so that any value — with
//! `/`, `=`, `:` or spaces in it — is one path segment and decodes back to itself.
//!
//! Values are written in the Delta protocol's serialised form (dates `2026-11-27`, timestamps
//! `2026-11-27 06:30:00.000000`, booleans `true`), which Hive-style readers (Spark, DuckDB,
//! pyarrow) also parse. NULL is `__HIVE_DEFAULT_PARTITION__`.

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::error::Result;

/// The path segment of a NULL partition value.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Whether a byte is written as itself in a partition value (RFC 3986 unreserved characters).
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes a partition value for use as one path segment.
pub fn encode_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a percent-encoded path segment (invalid escapes are kept as they are).
pub fn decode_value(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path of a partition: `a=1/b=x%2Fy` (empty for an unpartitioned table).
pub fn path(values: &[(&str, Option<&str>)]) -> String {
    values
        .iter()
        .map(|(name, value)| match value {
            Some(v) => format!("{name}={}", encode_value(v)),
            None => format!("{name}={NULL_PARTITION}"),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The values of a partition path, by column (`None`: NULL).
pub fn parse(path: &str) -> BTreeMap<String, Option<String>> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .filter_map(|segment| {
            let (name, value) = segment.split_once('=')?;
            let value = (value != NULL_PARTITION).then(|| decode_value(value));
            Some((name.to_string(), value))
        })
        .collect()
}

/// Every row's value of a partition column, serialised as the Delta protocol writes partition
/// values.
pub fn value_strings(array: &ArrayRef) -> Result<Vec<Option<String>>> {
    let rows = array.len();
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let a = array.as_primitive::<TimestampMicrosecondType>();
            Ok((0..rows)
                .map(|i| {
                    (!a.is_null(i)).then(|| {
                        chrono::DateTime::from_timestamp_micros(a.value(i))
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
                            .unwrap_or_default()
                    })
                })
                .collect())
        }
        DataType::Timestamp(_, tz) => {
            let micros = cast(
                array,
                &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            )?;
            value_strings(&micros)
        }
        _ => {
            let text = cast(array, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            Ok((0..rows)
                .map(|i| (!text.is_null(i)).then(|| text.value(i).to_string()))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, StringArray, TimestampMicrosecondArray};

    use super::*;

    #[test]
    fn any_value_round_trips_as_one_segment() {
        for value in [
            "a/b",
            "k=v",
            "12:30",
            "two words",
            "100%",
            "héllo",
            "",
            "plain-value_1.2~",
        ] {
            let p = path(&[("x", Some(value)), ("y", None)]);
            assert_eq!(p.matches('/').count(), 1, "{value}: {p}");
            let back = parse(&p);
            assert_eq!(back["x"].as_deref(), Some(value), "{p}");
            assert_eq!(back["y"], None);
        }
        assert_eq!(encode_value("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn values_are_written_as_delta_serialises_them() {
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![Some(20_784), None]));
        assert_eq!(
            value_strings(&dates).expect("dates"),
            vec![Some("2026-11-27".to_string()), None]
        );
        let ts: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(vec![1_764_225_000_000_000]).with_timezone("UTC"),
        );
        assert_eq!(
            value_strings(&ts).expect("timestamps"),
            vec![Some("2025-11-27 06:30:00.000000".to_string())]
        );
        let text: ArrayRef = Arc::new(StringArray::from(vec!["EU"]));
        assert_eq!(value_strings(&text).expect("text"), vec![Some("EU".into())]);
    }
}
