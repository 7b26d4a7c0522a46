//! Keeping the rows a model declines to score: their key columns, the model, the reason, and the
//! offending input's name and value.
//!
//! The engine asks for them by giving each scoring call one more argument after the features: a
//! struct of the job's key columns (`named_struct('customer_id', customer_id)`). A model input is
//! never a struct, so the argument cannot be mistaken for a feature. When a call carries keys and
//! the plan belongs to a run, the function adds one batch of its rejected rows to a process-wide
//! sink kept per run; the engine's writer tasks take what is there as they go and write it to the
//! rejects table's files, as they do with the counts of [`crate::unscored`].

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StructArray, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::Result;

use crate::features::FeatureMatrix;
use crate::package::InputSpec;
use crate::unscored::Reason;

/// The column naming the model that declined the row.
pub const MODEL_COLUMN: &str = "model";
/// The column holding the [`Reason`] (its name, as in manifests).
pub const REASON_COLUMN: &str = "reason";
/// The column naming the first input that failed (NULL for a non-finite prediction).
pub const INPUT_COLUMN: &str = "input";
/// The column holding that input's value as text (NULL for a SQL `NULL`).
pub const VALUE_COLUMN: &str = "value";
/// The column naming the run (added by the writer).
pub const RUN_ID_COLUMN: &str = "run_id";
/// When the run started (added by the writer).
pub const REJECTED_AT_COLUMN: &str = "rejected_at";

/// The schema of the batches the scoring functions record: the key columns, then model, reason,
/// input and value.
pub fn recorded_schema(keys: &Fields) -> SchemaRef {
    let mut fields: Vec<Field> = keys
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new(MODEL_COLUMN, DataType::Utf8, false));
    fields.push(Field::new(REASON_COLUMN, DataType::Utf8, false));
    fields.push(Field::new(INPUT_COLUMN, DataType::Utf8, true));
    fields.push(Field::new(VALUE_COLUMN, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// The schema of the rejects table: [`recorded_schema`] with the run id and the time.
pub fn table_schema(keys: &Fields) -> SchemaRef {
    let recorded = recorded_schema(keys);
    let mut fields: Vec<Field> = recorded
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(RUN_ID_COLUMN, DataType::Utf8, false));
    fields.push(Field::new(
        REJECTED_AT_COLUMN,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    ));
    Arc::new(Schema::new(fields))
}

/// The key struct of a call's arguments (after the model name): present when there is one
/// argument more than the model has inputs and it is a struct.
pub fn split_keys<T>(features: &[T], inputs: usize, data_type: impl Fn(&T) -> DataType) -> usize {
    match features.last() {
        Some(last)
            if features.len() == inputs + 1 && matches!(data_type(last), DataType::Struct(_)) =>
        {
            inputs
        }
        _ => features.len(),
    }
}

static SINK: LazyLock<Mutex<HashMap<String, Vec<RecordBatch>>>> = LazyLock::new(Default::default);

/// Adds a batch of rejected rows to run `run`'s sink in this process.
pub fn record(run: &str, batch: RecordBatch) {
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    sink.entry(run.to_string()).or_default().push(batch);
}

/// Takes (and clears) the rejected rows this process holds for run `run`. Every row is taken
/// exactly once, by whichever caller comes first after it was recorded.
pub fn take_recorded(run: &str) -> Vec<RecordBatch> {
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    sink.remove(run).unwrap_or_default()
}

/// The rows of one call that were not scored, with their keys: rows the contract rejected (by
/// the code in [`FeatureMatrix::rejected`]) and rows whose prediction was not finite (valid
/// features, NULL result). `None` when every row was scored.
pub fn rejected_rows(
    model: &str,
    keys: &StructArray,
    features: &FeatureMatrix,
    inputs: &[InputSpec],
    columns: &[ArrayRef],
    result_nulls: Option<&NullBuffer>,
) -> Result<Option<RecordBatch>> {
    let codes = features.rejected.as_deref();
    let rows = features.total_rows;
    let mut positions = Vec::new();
    let mut reasons = Vec::new();
    let mut input_names: Vec<Option<&str>> = Vec::new();
    let mut values: Vec<Option<String>> = Vec::new();
    let formatters = columns
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    for row in 0..rows {
        let code = codes.map_or(0, |c| c[row]);
        if code != 0 {
            let Some(reason) = Reason::from_code((code & 0xff) as u8) else {
                continue;
            };
            let input = ((code >> 8) as usize).checked_sub(1);
            positions.push(row as u32);
            reasons.push(reason.as_str());
            input_names.push(input.and_then(|i| inputs.get(i)).map(|s| s.name.as_str()));
            values.push(match input {
                Some(i) if i < columns.len() && columns[i].is_valid(row) => {
                    Some(formatters[i].value(row).to_string())
                }
                _ => None,
            });
        } else if result_nulls.is_some_and(|n| n.is_null(row)) {
            positions.push(row as u32);
            reasons.push(Reason::NonFinitePrediction.as_str());
            input_names.push(None);
            values.push(None);
        }
    }
    if positions.is_empty() {
        return Ok(None);
    }
    let indices = UInt32Array::from(positions);
    let mut arrays: Vec<ArrayRef> = keys
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<_, _>>()?;
    let n = indices.len();
    arrays.push(Arc::new(StringArray::from(vec![model; n])));
    arrays.push(Arc::new(StringArray::from(reasons)));
    arrays.push(Arc::new(StringArray::from(input_names)));
    arrays.push(Arc::new(StringArray::from(values)));
    Ok(Some(RecordBatch::try_new(
        recorded_schema(keys.fields()),
        arrays,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Float64Array, Int64Array};

    use crate::features::{MissingPolicy, Precision};

    fn input(name: &str, max: Option<f64>) -> InputSpec {
        InputSpec {
            max,
            ..InputSpec::float32(name)
        }
    }

    #[test]
    fn rejected_rows_carry_keys_reason_input_and_value() {
        let inputs = vec![input("a", None), input("b", Some(10.0))];
        let a: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(1.0),
            None,
            Some(f64::NAN),
            Some(2.0),
        ]));
        let b: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(1.0),
            Some(2.0),
            Some(3.0),
            Some(11.5),
        ]));
        let columns = vec![a, b];
        let features = FeatureMatrix::try_new(
            "m",
            &columns,
            &inputs,
            Precision::F64,
            MissingPolicy::Reject,
        )
        .unwrap();
        let keys = StructArray::from(vec![(
            Arc::new(Field::new("id", DataType::Int64, false)),
            Arc::new(Int64Array::from(vec![10, 11, 12, 13])) as ArrayRef,
        )]);
        let batch = rejected_rows("m", &keys, &features, &inputs, &columns, None)
            .unwrap()
            .expect("three rows are rejected");
        assert_eq!(batch.num_rows(), 3);
        let ids = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(ids.values().to_vec(), vec![11, 12, 13]);
        let text = |i: usize| batch.column(i).as_string::<i32>().clone();
        assert_eq!(text(2).value(0), "null");
        assert_eq!(text(2).value(1), "nan");
        assert_eq!(text(2).value(2), "above_max");
        assert_eq!(text(3).value(0), "a");
        assert_eq!(text(3).value(2), "b");
        assert!(text(4).is_null(0), "a NULL has no value");
        assert_eq!(text(4).value(1), "NaN");
        assert_eq!(text(4).value(2), "11.5");
    }

    #[test]
    fn keys_are_a_trailing_struct_only() {
        let t = |v: &[DataType]| split_keys(v, 2, |d| d.clone());
        let s = DataType::Struct(Fields::empty());
        assert_eq!(t(&[DataType::Float64, DataType::Float64, s.clone()]), 2);
        assert_eq!(t(&[DataType::Float64, DataType::Float64]), 2);
        assert_eq!(t(&[DataType::Float64, s.clone()]), 2);
        assert_eq!(
            t(&[DataType::Float64, DataType::Float64, DataType::Int64]),
            3
        );
    }

    #[test]
    fn the_sink_is_taken_once_per_run() {
        let keys = Fields::from(vec![Field::new("id", DataType::Int64, true)]);
        let batch = RecordBatch::new_empty(recorded_schema(&keys));
        record("sink-a", batch.clone());
        record("sink-a", batch);
        assert_eq!(take_recorded("sink-a").len(), 2);
        assert!(take_recorded("sink-a").is_empty());
    }
}
