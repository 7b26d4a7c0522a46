//! Arrow columns to a dense feature matrix, applying the model's input contract.
//!
//! The contract, the same for every model format:
//! - a row whose feature is SQL `NULL`, `NaN` or infinite is not scored: its prediction is `NULL`;
//! - a row whose feature is outside the `[min, max]` range the manifest declares is not scored;
//! - an argument whose SQL type cannot be converted (strings, dates, lists) is refused when the
//!   query is planned, naming the argument and the expected type.
//!
//! Unscored rows are counted by the engine from the written output, and a job can fail when
//! their share passes a threshold.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::buffer::BooleanBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float32Type};

use crate::error::{Error, Result};
use crate::package::{FeatureType, InputSpec};

/// Whether an Arrow type can feed an input of type `expected`.
pub fn accepts(expected: FeatureType, actual: &DataType) -> bool {
    match expected {
        FeatureType::Float32 | FeatureType::Float64 => {
            actual.is_numeric() || matches!(actual, DataType::Boolean | DataType::Null)
        }
        FeatureType::Int32 | FeatureType::Int64 => {
            actual.is_integer() || matches!(actual, DataType::Boolean | DataType::Null)
        }
        FeatureType::Bool => {
            matches!(actual, DataType::Boolean | DataType::Null) || actual.is_integer()
        }
    }
}

/// A row-major `f32` matrix of the rows that can be scored, and which rows those are.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    /// Row-major values, `scored_rows() * cols` long.
    pub data: Vec<f32>,
    /// Number of features per row.
    pub cols: usize,
    /// Number of input rows.
    pub total_rows: usize,
    /// Which input rows are in `data`; `None` when all are.
    pub valid: Option<BooleanBuffer>,
}

impl FeatureMatrix {
    /// Builds the matrix from one array per declared input. `model` names the model in errors.
    pub fn try_new(model: &str, columns: &[ArrayRef], inputs: &[InputSpec]) -> Result<Self> {
        if columns.len() != inputs.len() {
            return Err(Error::BadArguments {
                function: "predict",
                model: model.to_string(),
                reason: format!("expected {} features, got {}", inputs.len(), columns.len()),
            });
        }
        let total_rows = columns.first().map_or(0, |c| c.len());
        let cols = columns.len();
        let floats = columns
            .iter()
            .map(|c| cast(c, &DataType::Float32).map_err(Error::from))
            .collect::<Result<Vec<_>>>()?;

        // Pass 1: which rows keep every feature within its contract.
        let mut valid = vec![true; total_rows];
        let mut any_invalid = false;
        for (array, spec) in floats.iter().zip(inputs) {
            let values = array.as_primitive::<Float32Type>();
            let (min, max) = (
                spec.min.unwrap_or(f64::NEG_INFINITY),
                spec.max.unwrap_or(f64::INFINITY),
            );
            let ranged = spec.min.is_some() || spec.max.is_some();
            for (row, ok) in valid.iter_mut().enumerate() {
                let v = values.value(row);
                let bad = values.is_null(row)
                    || !v.is_finite()
                    || (ranged && (f64::from(v) < min || f64::from(v) > max));
                if bad {
                    *ok = false;
                    any_invalid = true;
                }
            }
        }

        // Pass 2: gather the valid rows into row-major order.
        let scored = if any_invalid {
            valid.iter().filter(|v| **v).count()
        } else {
            total_rows
        };
        let mut data = vec![0f32; scored * cols];
        let slices: Vec<&[f32]> = floats
            .iter()
            .map(|a| a.as_primitive::<Float32Type>().values().as_ref())
            .collect();
        let mut out_row = 0;
        for row in 0..total_rows {
            if any_invalid && !valid[row] {
                continue;
            }
            let dst = &mut data[out_row * cols..(out_row + 1) * cols];
            for (d, col) in dst.iter_mut().zip(&slices) {
                *d = col[row];
            }
            out_row += 1;
        }

        let valid = any_invalid.then(|| BooleanBuffer::from_iter(valid.iter().copied()));
        Ok(Self {
            data,
            cols,
            total_rows,
            valid,
        })
    }

    /// Number of rows in `data`.
    pub fn scored_rows(&self) -> usize {
        self.data.len().checked_div(self.cols).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Float64Array, Int32Array};

    use super::*;

    fn spec(name: &str, min: Option<f64>, max: Option<f64>) -> InputSpec {
        InputSpec {
            name: name.into(),
            dtype: FeatureType::Float32,
            min,
            max,
        }
    }

    #[test]
    fn nulls_nan_infinity_and_range_make_rows_unscored() {
        let a: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(1.0),
            None,
            Some(f64::NAN),
            Some(4.0),
            Some(f64::INFINITY),
            Some(6.0),
        ]));
        let b: ArrayRef = Arc::new(Int32Array::from(vec![10, 20, 30, 40, 50, 99]));
        let m = FeatureMatrix::try_new(
            "m",
            &[a, b],
            &[spec("a", None, None), spec("b", Some(0.0), Some(60.0))],
        )
        .expect("valid inputs");
        let valid: Vec<bool> = m
            .valid
            .as_ref()
            .expect("some rows invalid")
            .iter()
            .collect();
        assert_eq!(valid, vec![true, false, false, true, false, false]);
        assert_eq!(m.data, vec![1.0, 10.0, 4.0, 40.0]);
        assert_eq!(m.scored_rows(), 2);
    }

    #[test]
    fn all_valid_rows_have_no_mask_and_booleans_are_zero_or_one() {
        let a: ArrayRef = Arc::new(BooleanArray::from(vec![true, false]));
        let b: ArrayRef = Arc::new(Float64Array::from(vec![0.5, 1.5]));
        let m = FeatureMatrix::try_new(
            "m",
            &[a, b],
            &[spec("a", None, None), spec("b", None, None)],
        )
        .expect("valid");
        assert!(m.valid.is_none());
        assert_eq!(m.data, vec![1.0, 0.5, 0.0, 1.5]);
    }

    #[test]
    fn argument_count_is_checked() {
        let a: ArrayRef = Arc::new(Float64Array::from(vec![0.5]));
        let err = FeatureMatrix::try_new(
            "churn",
            &[a],
            &[spec("a", None, None), spec("b", None, None)],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("expected 2 features, got 1"), "{err}");
    }

    #[test]
    fn type_acceptance() {
        assert!(accepts(FeatureType::Float32, &DataType::Int64));
        assert!(accepts(FeatureType::Float32, &DataType::Decimal128(10, 2)));
        assert!(!accepts(FeatureType::Float32, &DataType::Utf8));
        assert!(!accepts(FeatureType::Int64, &DataType::Float64));
        assert!(!accepts(FeatureType::Float64, &DataType::Date32));
    }
}
