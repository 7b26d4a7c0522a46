//! Arrow columns to dense feature matrices, applying the model's input contract.
//!
//! The contract, the same for every model format:
//! - a row whose feature is SQL `NULL`, `NaN` or infinite is not scored: its prediction is `NULL`
//!   (tree models and ONNX graphs that handle missing values themselves can opt in to receiving
//!   `NaN` instead, see [`MissingPolicy`]);
//! - a row whose feature is outside the `[min, max]` range the manifest declares is not scored;
//! - a row whose feature is finite but beyond the range of the model's numeric type (a `DOUBLE`
//!   above 3.4e38 fed to a single-precision model, which would become infinity) is not scored;
//! - integers are converted to the model's float type rounding to nearest, as NumPy and pandas
//!   do (integers above 2^24 for single precision, 2^53 for double, are not all representable);
//! - an argument whose SQL type cannot be converted (a string for a numeric input, a date) is
//!   refused when the query is planned, naming the argument and the expected type.
//!
//! Each unscored row has a [`Reason`] and the input that broke the contract first;
//! [`FeatureMatrix::counts`] sums them for the run's tally ([`crate::unscored`]), and a job can
//! fail when their share passes a threshold.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float32Type, Float64Type};

use crate::error::{Error, Result};
use crate::package::{FeatureType, InputSpec};
use crate::unscored::{ModelCounts, Reason};

/// Whether an Arrow type can feed an input of type `expected`.
pub fn accepts(expected: FeatureType, actual: &DataType) -> bool {
    let text = |t: &DataType| {
        matches!(
            t,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
        )
    };
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
        FeatureType::String => match actual {
            DataType::Dictionary(_, value) => text(value),
            other => text(other),
        },
    }
}

/// The numeric precision a runtime wants its features in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// `f32`: neural networks.
    F32,
    /// `f64`: models that compute in double precision.
    F64,
    /// Tree ensembles, whose tests give the same answers in either precision when every value
    /// is exact in `f32`: `f32` when `single` (the model compares in single precision itself,
    /// as XGBoost does) or every numeric input column holds only `f32`-exact values (`Float32`,
    /// small integers, booleans), `f64` otherwise. Contracts are checked in double precision.
    Splits {
        /// The model rounds every value to `f32` before its tests.
        single: bool,
    },
}

/// What happens to a row with a missing (NULL or NaN) numeric feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingPolicy {
    /// Not scored: its prediction is NULL.
    Reject,
    /// Scored with NaN in place of the value: for models that route missing values themselves
    /// (tree ensembles' default directions, imputers).
    PassNan,
}

/// Row-major numeric features of the scored rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Numeric {
    /// Single precision.
    F32(Vec<f32>),
    /// Double precision.
    F64(Vec<f64>),
}

impl Numeric {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Numeric::F32(v) => v.len(),
            Numeric::F64(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as `f32` (borrowed when already single precision).
    pub fn to_f32(&self) -> std::borrow::Cow<'_, [f32]> {
        match self {
            Numeric::F32(v) => std::borrow::Cow::Borrowed(v),
            Numeric::F64(v) => std::borrow::Cow::Owned(v.iter().map(|x| *x as f32).collect()),
        }
    }

    /// The values as `f64` (borrowed when already double precision).
    pub fn to_f64(&self) -> std::borrow::Cow<'_, [f64]> {
        match self {
            Numeric::F64(v) => std::borrow::Cow::Borrowed(v),
            Numeric::F32(v) => std::borrow::Cow::Owned(v.iter().map(|x| f64::from(*x)).collect()),
        }
    }
}

/// Where a declared input's values are in a [`FeatureMatrix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Column `i` of the numeric matrix.
    Numeric(usize),
    /// Text column `i`.
    Text(usize),
}

/// The features of the rows that can be scored, and which rows those are.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    /// Row-major numeric features, `scored_rows() * cols` values.
    pub numeric: Numeric,
    /// Numeric features per row.
    pub cols: usize,
    /// Text features, one vector of `scored_rows()` strings per text input.
    pub text: Vec<Vec<String>>,
    /// Where each declared input is.
    pub slots: Vec<Slot>,
    /// Number of input rows.
    pub total_rows: usize,
    /// Which input rows are scored; `None` when all are.
    pub valid: Option<BooleanBuffer>,
    /// Why each input row is not scored: `None` when all are; per row 0 when scored, otherwise
    /// the reason's code in the low byte and the failing input's position plus one above it.
    pub rejected: Option<Vec<u32>>,
    scored: usize,
}

impl FeatureMatrix {
    /// A matrix of numeric rows that are all valid (for runtimes fed outside SQL).
    pub fn from_rows(numeric: Numeric, cols: usize) -> Self {
        let scored = numeric.len().checked_div(cols).unwrap_or(0);
        Self {
            numeric,
            cols,
            text: Vec::new(),
            slots: (0..cols).map(Slot::Numeric).collect(),
            total_rows: scored,
            valid: None,
            rejected: None,
            scored,
        }
    }

    /// A matrix of one text input whose rows are all valid (for encoders fed outside SQL).
    pub fn from_texts(texts: Vec<String>) -> Self {
        let scored = texts.len();
        Self {
            numeric: Numeric::F32(Vec::new()),
            cols: 0,
            text: vec![texts],
            slots: vec![Slot::Text(0)],
            total_rows: scored,
            valid: None,
            rejected: None,
            scored,
        }
    }

    /// Builds the matrix from one array per declared input. `model` names the model in errors.
    pub fn try_new(
        model: &str,
        columns: &[ArrayRef],
        inputs: &[InputSpec],
        precision: Precision,
        missing: MissingPolicy,
    ) -> Result<Self> {
        if columns.len() != inputs.len() {
            return Err(Error::BadArguments {
                function: "predict",
                model: model.to_string(),
                reason: format!("expected {} features, got {}", inputs.len(), columns.len()),
            });
        }
        let total_rows = columns.first().map_or(0, |c| c.len());
        let mut slots = Vec::with_capacity(inputs.len());
        let mut numeric_columns: Vec<NumericColumn> = Vec::new();
        let mut text_columns: Vec<ArrayRef> = Vec::new();
        for (column, spec) in columns.iter().zip(inputs) {
            if spec.dtype == FeatureType::String {
                slots.push(Slot::Text(text_columns.len()));
                text_columns.push(cast(column, &DataType::Utf8)?);
            } else {
                slots.push(Slot::Numeric(numeric_columns.len()));
                numeric_columns.push(NumericColumn::try_new(column)?);
            }
        }

        // Pass 1: which rows keep every feature within its contract, and why the others do not
        // (the first failing input, in declaration order).
        let mut rejected = vec![0u32; total_rows];
        for (position, (column, spec)) in columns.iter().zip(inputs).enumerate() {
            let input = (position as u32 + 1) << 8;
            match slots[position] {
                Slot::Numeric(i) => {
                    numeric_columns[i].check(spec, missing, precision, input, &mut rejected)
                }
                Slot::Text(_) => {
                    if let Some(nulls) = column.logical_nulls() {
                        for (row, code) in rejected.iter_mut().enumerate() {
                            if *code == 0 && nulls.is_null(row) {
                                *code = input | u32::from(Reason::Null.code());
                            }
                        }
                    }
                }
            }
        }
        let any_invalid = rejected.iter().any(|c| *c != 0);
        let rows: Option<Vec<usize>> =
            any_invalid.then(|| (0..total_rows).filter(|r| rejected[*r] == 0).collect());
        let scored = rows.as_ref().map_or(total_rows, Vec::len);

        // Pass 2: gather the valid rows, row-major; missing values become NaN.
        let cols = numeric_columns.len();
        let single = match precision {
            Precision::F32 => true,
            Precision::F64 => false,
            Precision::Splits { single } => {
                single || numeric_columns.iter().all(NumericColumn::exact_in_f32)
            }
        };
        let numeric = match single {
            false => {
                let mut data = vec![0f64; scored * cols];
                gather(&numeric_columns, rows.as_deref(), &mut data, scored);
                Numeric::F64(data)
            }
            true => {
                let mut data = vec![0f32; scored * cols];
                gather(&numeric_columns, rows.as_deref(), &mut data, scored);
                Numeric::F32(data)
            }
        };
        let rows: Vec<usize> = rows.unwrap_or_else(|| (0..total_rows).collect());
        let text = text_columns
            .iter()
            .map(|array| {
                let strings = array.as_string::<i32>();
                rows.iter()
                    .map(|&row| strings.value(row).to_string())
                    .collect()
            })
            .collect();
        let valid = any_invalid.then(|| BooleanBuffer::from_iter(rejected.iter().map(|c| *c == 0)));
        Ok(Self {
            numeric,
            cols,
            text,
            slots,
            total_rows,
            valid,
            rejected: any_invalid.then_some(rejected),
            scored,
        })
    }

    /// The rows of this matrix by outcome: all rows, the unscored ones, and why (`inputs` are
    /// the declared inputs the matrix was built with, for their names).
    pub fn counts(&self, inputs: &[InputSpec]) -> ModelCounts {
        let mut counts = ModelCounts {
            rows: self.total_rows as u64,
            ..ModelCounts::default()
        };
        for &code in self.rejected.iter().flatten().filter(|c| **c != 0) {
            counts.unscored += 1;
            if let Some(reason) = Reason::from_code((code & 0xff) as u8) {
                *counts.reasons.entry(reason).or_default() += 1;
            }
            if let Some(input) = ((code >> 8) as usize)
                .checked_sub(1)
                .and_then(|i| inputs.get(i))
            {
                *counts.inputs.entry(input.name.clone()).or_default() += 1;
            }
        }
        counts
    }

    /// Number of rows scored.
    pub fn scored_rows(&self) -> usize {
        self.scored
    }
}

/// Rows converted per block: a block of the row-major output stays in cache while every column
/// is written into it.
const GATHER_BLOCK: usize = 256;

/// One numeric input column, read in its own precision where Arrow allows (`Float32` and
/// `Float64` are used in place; other numeric types are cast to `Float64`, remembering whether
/// their values were all exact in `f32`).
enum NumericColumn {
    F32(ArrayRef),
    F64 { array: ArrayRef, exact_in_f32: bool },
}

impl NumericColumn {
    fn try_new(array: &ArrayRef) -> Result<Self> {
        let exact_in_f32 = matches!(
            array.data_type(),
            DataType::Boolean
                | DataType::Int8
                | DataType::Int16
                | DataType::UInt8
                | DataType::UInt16
        );
        Ok(match array.data_type() {
            DataType::Float32 => Self::F32(array.clone()),
            DataType::Float64 => Self::F64 {
                array: array.clone(),
                exact_in_f32,
            },
            _ => Self::F64 {
                array: cast(array, &DataType::Float64)?,
                exact_in_f32,
            },
        })
    }

    /// Whether every value of the column's type is exact in `f32`.
    fn exact_in_f32(&self) -> bool {
        match self {
            Self::F32(_) => true,
            Self::F64 { exact_in_f32, .. } => *exact_in_f32,
        }
    }

    fn array(&self) -> &ArrayRef {
        match self {
            Self::F32(a) | Self::F64 { array: a, .. } => a,
        }
    }

    /// Sets the code of rows not yet rejected whose value breaks the contract: NULL or NaN
    /// (unless the model takes missing values), infinite, outside `[min, max]`, or beyond what
    /// `precision` holds. `input` is this input's position in the code (see
    /// [`FeatureMatrix::rejected`]).
    fn check(
        &self,
        spec: &InputSpec,
        missing: MissingPolicy,
        precision: Precision,
        input: u32,
        rejected: &mut [u32],
    ) {
        let representable = match precision {
            Precision::F32 => f64::from(f32::MAX),
            Precision::F64 | Precision::Splits { .. } => f64::MAX,
        };
        let min = spec.min.unwrap_or(f64::NEG_INFINITY);
        let max = spec.max.unwrap_or(f64::INFINITY);
        let pass_nan = missing == MissingPolicy::PassNan;
        let code = |r: Reason| input | u32::from(r.code());
        let (nan, infinite, below, above, beyond) = (
            if pass_nan { 0 } else { code(Reason::Nan) },
            code(Reason::Infinite),
            code(Reason::BelowMin),
            code(Reason::AboveMax),
            code(Reason::OutOfRange),
        );
        // Selects rather than early returns, so that the loop stays branch-free.
        let classify = |v: f64| {
            let c = if v.abs() > representable { beyond } else { 0 };
            let c = if v > max { above } else { c };
            let c = if v < min { below } else { c };
            let c = if v.is_infinite() { infinite } else { c };
            if v.is_nan() { nan } else { c }
        };
        let null = if pass_nan { 0 } else { code(Reason::Null) };
        let nulls = self.array().logical_nulls().filter(|n| n.null_count() > 0);
        match self {
            Self::F32(a) => check_values(
                a.as_primitive::<Float32Type>().values(),
                nulls.as_ref(),
                null,
                rejected,
                |v| classify(f64::from(v)),
            ),
            Self::F64 { array: a, .. } => check_values(
                a.as_primitive::<Float64Type>().values(),
                nulls.as_ref(),
                null,
                rejected,
                classify,
            ),
        }
    }

    /// Writes this column's value of output row `i` (input row `rows[i]`, or `i` when all rows
    /// are scored) into `out[i * cols + c]` for rows `start..end`; NULL becomes NaN.
    fn gather_into<O: FromFeature>(
        &self,
        rows: Option<&[usize]>,
        (start, end): (usize, usize),
        out: &mut [O],
        cols: usize,
        c: usize,
    ) {
        match self {
            Self::F32(a) => gather_values(
                a.as_primitive::<Float32Type>().values(),
                rows,
                (start, end),
                out,
                cols,
                c,
            ),
            Self::F64 { array: a, .. } => gather_values(
                a.as_primitive::<Float64Type>().values(),
                rows,
                (start, end),
                out,
                cols,
                c,
            ),
        }
        if let Some(nulls) = self.array().logical_nulls().filter(|n| n.null_count() > 0) {
            for i in start..end {
                if nulls.is_null(rows.map_or(i, |r| r[i])) {
                    out[i * cols + c] = O::NAN;
                }
            }
        }
    }
}

/// Rows checked at once: a block whose values all pass (the common case) costs one vectorised
/// pass of `classify`, and only a block with a failing value is walked row by row.
const CHECK_BLOCK: usize = 1024;

/// Sets `rejected[row]` to `classify(value)` where it is still 0, or to `null` for a NULL (whose
/// slot holds an arbitrary value).
fn check_values<T: Copy>(
    values: &[T],
    nulls: Option<&NullBuffer>,
    null: u32,
    rejected: &mut [u32],
    classify: impl Fn(T) -> u32,
) {
    for (block, (codes, values)) in rejected
        .chunks_mut(CHECK_BLOCK)
        .zip(values.chunks(CHECK_BLOCK))
        .enumerate()
    {
        let start = block * CHECK_BLOCK;
        let any_null =
            nulls.is_some_and(|n| (start..start + codes.len()).any(|row| n.is_null(row)));
        // The OR of the codes is zero exactly when every value passes.
        if !any_null && values.iter().fold(0, |acc, v| acc | classify(*v)) == 0 {
            continue;
        }
        for (i, (code, v)) in codes.iter_mut().zip(values).enumerate() {
            if *code == 0 {
                *code = if nulls.is_some_and(|n| n.is_null(start + i)) {
                    null
                } else {
                    classify(*v)
                };
            }
        }
    }
}

/// A feature value in the precision a runtime asked for.
trait FromFeature: Copy {
    const NAN: Self;
    fn from_f32(v: f32) -> Self;
    fn from_f64(v: f64) -> Self;
}

impl FromFeature for f32 {
    const NAN: Self = f32::NAN;
    fn from_f32(v: f32) -> Self {
        v
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl FromFeature for f64 {
    const NAN: Self = f64::NAN;
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// A column's value type, converted into a runtime's precision.
trait FeatureValue: Copy {
    fn convert<O: FromFeature>(self) -> O;
}

impl FeatureValue for f32 {
    fn convert<O: FromFeature>(self) -> O {
        O::from_f32(self)
    }
}

impl FeatureValue for f64 {
    fn convert<O: FromFeature>(self) -> O {
        O::from_f64(self)
    }
}

fn gather_values<T: FeatureValue, O: FromFeature>(
    values: &[T],
    rows: Option<&[usize]>,
    (start, end): (usize, usize),
    out: &mut [O],
    cols: usize,
    c: usize,
) {
    let out = &mut out[start * cols..end * cols];
    match rows {
        None => out
            .chunks_exact_mut(cols)
            .zip(&values[start..end])
            .for_each(|(row, v)| row[c] = v.convert()),
        Some(rows) => out
            .chunks_exact_mut(cols)
            .zip(&rows[start..end])
            .for_each(|(row, r)| row[c] = values[*r].convert()),
    }
}

/// Fills the row-major matrix `out` (`scored` rows) from the columns, a block of rows at a time.
fn gather<O: FromFeature>(
    columns: &[NumericColumn],
    rows: Option<&[usize]>,
    out: &mut [O],
    scored: usize,
) {
    let cols = columns.len();
    for start in (0..scored).step_by(GATHER_BLOCK) {
        let end = (start + GATHER_BLOCK).min(scored);
        for (c, column) in columns.iter().enumerate() {
            column.gather_into(rows, (start, end), out, cols, c);
        }
    }
}

/// Reads a float32 column as `f32` values (a helper for runtimes and tests).
pub fn f32_values(array: &ArrayRef) -> Result<Vec<f32>> {
    let cast = cast(array, &DataType::Float32)?;
    Ok(cast.as_primitive::<Float32Type>().values().to_vec())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, StringArray,
    };

    use super::*;

    fn spec(name: &str, min: Option<f64>, max: Option<f64>) -> InputSpec {
        InputSpec {
            min,
            max,
            ..InputSpec::float32(name)
        }
    }

    fn text(name: &str) -> InputSpec {
        InputSpec {
            dtype: FeatureType::String,
            ..InputSpec::float32(name)
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
            Precision::F32,
            MissingPolicy::Reject,
        )
        .expect("valid inputs");
        let valid: Vec<bool> = m
            .valid
            .as_ref()
            .expect("some rows invalid")
            .iter()
            .collect();
        assert_eq!(valid, vec![true, false, false, true, false, false]);
        assert_eq!(m.numeric, Numeric::F32(vec![1.0, 10.0, 4.0, 40.0]));
        assert_eq!(m.scored_rows(), 2);
        let counts = m.counts(&[spec("a", None, None), spec("b", Some(0.0), Some(60.0))]);
        assert_eq!((counts.rows, counts.unscored), (6, 4));
        let reasons: Vec<(Reason, u64)> = counts.reasons.into_iter().collect();
        assert_eq!(
            reasons,
            vec![
                (Reason::Null, 1),
                (Reason::Nan, 1),
                (Reason::Infinite, 1),
                (Reason::AboveMax, 1)
            ]
        );
        assert_eq!(counts.inputs["a"], 3);
        assert_eq!(counts.inputs["b"], 1);
    }

    #[test]
    fn tree_features_are_gathered_in_single_precision_when_that_is_exact() {
        let f32s: ArrayRef = Arc::new(Float32Array::from(vec![0.1f32, f32::NAN]));
        let f64s: ArrayRef = Arc::new(Float64Array::from(vec![0.1, 1e39]));
        let small: ArrayRef = Arc::new(Int16Array::from(vec![3, -4]));
        let wide: ArrayRef = Arc::new(Int64Array::from(vec![1 << 40, 5]));
        let inputs = [spec("a", None, None), spec("b", None, None)];
        let gathered = |a: &ArrayRef, b: &ArrayRef, single: bool| {
            FeatureMatrix::try_new(
                "m",
                &[a.clone(), b.clone()],
                &inputs,
                Precision::Splits { single },
                MissingPolicy::PassNan,
            )
            .expect("valid")
            .numeric
        };
        // NaN is not equal to itself: compare the bits.
        let bits = |n: Numeric| -> Vec<u64> { n.to_f64().iter().map(|v| v.to_bits()).collect() };
        let f32_and_small = gathered(&f32s, &small, false);
        assert!(matches!(f32_and_small, Numeric::F32(_)));
        assert_eq!(
            bits(f32_and_small),
            bits(Numeric::F32(vec![0.1, 3.0, f32::NAN, -4.0]))
        );
        let f32_and_f64 = gathered(&f32s, &f64s, false);
        assert!(matches!(f32_and_f64, Numeric::F64(_)));
        assert_eq!(
            bits(f32_and_f64),
            bits(Numeric::F64(vec![f64::from(0.1f32), 0.1, f64::NAN, 1e39]))
        );
        assert!(matches!(gathered(&small, &wide, false), Numeric::F64(_)));
        // A model that rounds to single precision itself: f32, and 1e39 is scored (as
        // infinity, as the model would see it), not refused as beyond the precision.
        assert_eq!(
            gathered(&small, &f64s, true),
            Numeric::F32(vec![3.0, 0.1, -4.0, f32::INFINITY])
        );
    }

    #[test]
    fn values_beyond_the_models_precision_are_unscored_and_integers_round() {
        let huge = 1e39; // finite as a double, infinity as a float
        let a: ArrayRef = Arc::new(Float64Array::from(vec![1.0, huge, -huge]));
        let big = (1i64 << 53) + 1; // not representable in f64 or f32
        let b: ArrayRef = Arc::new(Int64Array::from(vec![big, 2, 3]));
        let inputs = [spec("a", None, None), spec("b", None, None)];
        let single = FeatureMatrix::try_new(
            "m",
            &[a.clone(), b.clone()],
            &inputs,
            Precision::F32,
            MissingPolicy::Reject,
        )
        .expect("valid");
        assert_eq!(single.scored_rows(), 1, "±1e39 cannot reach a float model");
        assert_eq!(
            single.counts(&inputs).reasons[&Reason::OutOfRange],
            2,
            "beyond the type, not infinite"
        );
        assert_eq!(single.numeric, Numeric::F32(vec![1.0, big as f32]));
        let double =
            FeatureMatrix::try_new("m", &[a, b], &inputs, Precision::F64, MissingPolicy::Reject)
                .expect("valid");
        assert_eq!(double.scored_rows(), 3, "a double model takes them");
        let Numeric::F64(v) = &double.numeric else {
            panic!("f64 requested")
        };
        assert_eq!(v[1], big as f64, "rounded to nearest, as NumPy does");
        assert_eq!(v[2], huge);
    }

    #[test]
    fn failing_rows_are_found_in_any_block() {
        let rows = 3 * CHECK_BLOCK + 7;
        let values: Vec<Option<f64>> = (0..rows)
            .map(|r| match r {
                5 => Some(f64::NAN),
                1500 => None,
                r if r == rows - 1 => Some(100.0),
                r => Some(r as f64 / rows as f64),
            })
            .collect();
        let a: ArrayRef = Arc::new(Float64Array::from(values));
        let inputs = [spec("a", Some(0.0), Some(1.0))];
        let m = FeatureMatrix::try_new("m", &[a], &inputs, Precision::F32, MissingPolicy::Reject)
            .expect("valid");
        let unscored: Vec<usize> = m
            .valid
            .as_ref()
            .expect("some rows unscored")
            .iter()
            .enumerate()
            .filter(|(_, ok)| !ok)
            .map(|(r, _)| r)
            .collect();
        assert_eq!(unscored, vec![5, 1500, rows - 1]);
        let counts = m.counts(&inputs);
        assert_eq!(
            counts.reasons.into_iter().collect::<Vec<_>>(),
            vec![(Reason::Null, 1), (Reason::Nan, 1), (Reason::AboveMax, 1)]
        );
    }

    #[test]
    fn missing_values_pass_as_nan_when_the_model_handles_them() {
        let a: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.5), None, Some(f64::NAN)]));
        let m = FeatureMatrix::try_new(
            "m",
            &[a],
            &[spec("a", None, None)],
            Precision::F64,
            MissingPolicy::PassNan,
        )
        .expect("valid");
        assert!(m.valid.is_none());
        let Numeric::F64(v) = &m.numeric else {
            panic!("f64 requested")
        };
        assert_eq!(v[0], 1.5);
        assert!(v[1].is_nan() && v[2].is_nan());
    }

    #[test]
    fn text_inputs_are_gathered_and_nulls_rejected() {
        let t: ArrayRef = Arc::new(StringArray::from(vec![Some("a b"), None, Some("c")]));
        let x: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0]));
        let m = FeatureMatrix::try_new(
            "m",
            &[t, x],
            &[text("t"), spec("x", None, None)],
            Precision::F32,
            MissingPolicy::Reject,
        )
        .expect("valid");
        assert_eq!(m.text, vec![vec!["a b".to_string(), "c".to_string()]]);
        assert_eq!(m.slots, vec![Slot::Text(0), Slot::Numeric(0)]);
        assert_eq!(m.numeric, Numeric::F32(vec![1.0, 3.0]));
    }

    #[test]
    fn all_valid_rows_have_no_mask_and_booleans_are_zero_or_one() {
        let a: ArrayRef = Arc::new(BooleanArray::from(vec![true, false]));
        let b: ArrayRef = Arc::new(Float64Array::from(vec![0.5, 1.5]));
        let m = FeatureMatrix::try_new(
            "m",
            &[a, b],
            &[spec("a", None, None), spec("b", None, None)],
            Precision::F32,
            MissingPolicy::Reject,
        )
        .expect("valid");
        assert!(m.valid.is_none());
        assert_eq!(m.numeric, Numeric::F32(vec![1.0, 0.5, 0.0, 1.5]));
    }

    #[test]
    fn argument_count_is_checked() {
        let a: ArrayRef = Arc::new(Float64Array::from(vec![0.5]));
        let err = FeatureMatrix::try_new(
            "churn",
            &[a],
            &[spec("a", None, None), spec("b", None, None)],
            Precision::F32,
            MissingPolicy::Reject,
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
        assert!(accepts(FeatureType::String, &DataType::Utf8View));
        assert!(accepts(
            FeatureType::String,
            &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
        ));
        assert!(!accepts(FeatureType::String, &DataType::Float32));
    }
}
