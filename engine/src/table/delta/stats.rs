//! Per-file statistics in the Delta protocol's form (`numRecords`, `minValues`, `maxValues`,
//! `nullCount`), from the Parquet footer the writer just produced: readers skip files with them.
//!
//! Only top-level columns of plain types get bounds: integers, floats, dates, timestamps and
//! short strings. A bound is only ever widened, never narrowed: a timestamp's maximum is rounded
//! up to the millisecond the protocol stores, and a string longer than 64 bytes gets
//! no bounds at all.

use std::collections::BTreeMap;

use arrow::datatypes::{DataType, Schema, TimeUnit};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use serde_json::{Map, Value, json};

/// Strings up to this many bytes get bounds.
const MAX_STRING_BOUND: usize = 64;

/// A column's bounds and nulls, combined over row groups.
#[derive(Default)]
struct Column {
    min: Option<Value>,
    max: Option<Value>,
    nulls: u64,
    /// A row group without statistics, or a value that cannot be bounded: no bounds at all.
    unbounded: bool,
}

/// The statistics of one file, as the JSON string a Delta `add` action carries.
pub fn json(metadata: &ParquetMetaData, schema: &Schema) -> String {
    let mut columns: BTreeMap<String, Column> = BTreeMap::new();
    for group in metadata.row_groups() {
        for chunk in group.columns() {
            let parts = chunk.column_path().parts();
            let [name] = parts else { continue };
            let Ok(field) = schema.field_with_name(name) else {
                continue;
            };
            let column = columns.entry(name.clone()).or_default();
            let Some(stats) = chunk.statistics() else {
                column.unbounded = true;
                continue;
            };
            column.nulls += stats.null_count_opt().unwrap_or(0);
            match bounds(stats, field.data_type()) {
                Some((min, max)) => {
                    column.min = Some(match column.min.take() {
                        Some(old) if order(&old, &min).is_le() => old,
                        _ => min,
                    });
                    column.max = Some(match column.max.take() {
                        Some(old) if order(&old, &max).is_ge() => old,
                        _ => max,
                    });
                }
                None if group.num_rows() > stats.null_count_opt().unwrap_or(0) as i64 => {
                    column.unbounded = true
                }
                None => {}
            }
        }
    }
    let mut min_values = Map::new();
    let mut max_values = Map::new();
    let mut null_count = Map::new();
    for (name, column) in columns {
        null_count.insert(name.clone(), json!(column.nulls));
        if column.unbounded {
            continue;
        }
        if let (Some(min), Some(max)) = (column.min, column.max) {
            min_values.insert(name.clone(), min);
            max_values.insert(name, max);
        }
    }
    json!({
        "numRecords": metadata.file_metadata().num_rows(),
        "minValues": min_values,
        "maxValues": max_values,
        "nullCount": null_count,
    })
    .to_string()
}

/// How two bounds of one column compare: numbers as numbers, strings byte by byte (Parquet's
/// order for UTF-8).
fn order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => std::cmp::Ordering::Equal,
    }
}

/// A row group's (min, max) of a column, in the protocol's JSON form.
fn bounds(stats: &Statistics, data_type: &DataType) -> Option<(Value, Value)> {
    match (stats, data_type) {
        (Statistics::Int32(s), DataType::Date32) => {
            let day = |d: i32| {
                chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163)
                    .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
            };
            Some((day(*s.min_opt()?)?, day(*s.max_opt()?)?))
        }
        (Statistics::Int32(s), t) if t.is_integer() => {
            Some((json!(*s.min_opt()?), json!(*s.max_opt()?)))
        }
        (Statistics::Int64(s), DataType::Timestamp(unit, _)) => {
            let per_milli: i64 = match unit {
                TimeUnit::Second => return None,
                TimeUnit::Millisecond => 1,
                TimeUnit::Microsecond => 1_000,
                TimeUnit::Nanosecond => 1_000_000,
            };
            let millis = |v: i64, up: bool| {
                let m = v.div_euclid(per_milli) + i64::from(up && v.rem_euclid(per_milli) != 0);
                chrono::DateTime::from_timestamp_millis(m)
                    .map(|t| Value::String(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()))
            };
            Some((millis(*s.min_opt()?, false)?, millis(*s.max_opt()?, true)?))
        }
        (Statistics::Int64(s), t) if t.is_integer() => {
            Some((json!(*s.min_opt()?), json!(*s.max_opt()?)))
        }
        (Statistics::Float(s), DataType::Float32) => {
            let (min, max) = (*s.min_opt()?, *s.max_opt()?);
            (min.is_finite() && max.is_finite()).then(|| (json!(min), json!(max)))
        }
        (Statistics::Double(s), DataType::Float64) => {
            let (min, max) = (*s.min_opt()?, *s.max_opt()?);
            (min.is_finite() && max.is_finite()).then(|| (json!(min), json!(max)))
        }
        (Statistics::ByteArray(s), DataType::Utf8 | DataType::LargeUtf8) => {
            let text = |b: &parquet::data_type::ByteArray| {
                let bytes = b.data();
                (bytes.len() <= MAX_STRING_BOUND)
                    .then(|| std::str::from_utf8(bytes).ok().map(|s| json!(s)))
                    .flatten()
            };
            Some((text(s.min_opt()?)?, text(s.max_opt()?)?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Date32Array, Float32Array, Int64Array, RecordBatch, StringArray,
        TimestampMicrosecondArray,
    };
    use arrow::datatypes::Field;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;

    #[test]
    fn stats_bound_every_row_group() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("p", DataType::Float32, true),
            Field::new("region", DataType::Utf8, false),
            Field::new("day", DataType::Date32, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![5, 3, 9, 7])),
            Arc::new(Float32Array::from(vec![
                Some(0.5),
                None,
                Some(0.25),
                Some(0.75),
            ])),
            Arc::new(StringArray::from(vec!["EU", "APAC", "NA", "LATAM"])),
            Arc::new(Date32Array::from(vec![20_784, 20_780, 20_790, 20_781])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_500, 1_000_000, 2_000_001, 3])
                    .with_timezone("UTC"),
            ),
        ];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch");
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(2))
            .build();
        let mut buffer = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut buffer, Arc::clone(&schema), Some(props)).expect("writer");
        writer.write(&batch).expect("write");
        let metadata = writer.close().expect("close");
        let parsed: Value = serde_json::from_str(&json(&metadata, &schema)).expect("json");
        assert_eq!(parsed["numRecords"], 4);
        assert_eq!(parsed["minValues"]["id"], 3);
        assert_eq!(parsed["maxValues"]["id"], 9);
        assert_eq!(parsed["minValues"]["p"], 0.25);
        assert_eq!(parsed["nullCount"]["p"], 1);
        assert_eq!(parsed["minValues"]["region"], "APAC");
        assert_eq!(parsed["maxValues"]["region"], "NA");
        assert_eq!(parsed["minValues"]["day"], "2026-11-23");
        assert_eq!(parsed["maxValues"]["day"], "2026-12-03");
        assert_eq!(parsed["minValues"]["at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parsed["maxValues"]["at"], "1970-01-01T00:00:02.001Z",
            "the maximum is rounded up"
        );
    }
}
