//! How two models' predictions of the same rows agree: what a shadow run reports and
//! `scorch compare` prints.
//!
//! A [`Tally`] is filled batch by batch from pairs of columns (the champion's and the
//! challenger's prediction of the same rows) and merged across writer tasks and executors, so
//! nothing is gathered: exact counts, mean and largest absolute difference and label flips, and a
//! joint histogram over fixed, monotone bins (fine on [0, 1], logarithmic outside) from which the
//! population stability index of the two distributions and their rank correlation (Spearman's,
//! with the rows of a bin sharing its average rank) are computed.

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

/// Bins of the joint histogram per axis: 25 below 0, 50 on [0, 1], 25 above 1.
const BINS: usize = 100;

/// Pairs of one column, counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Row pairs.
    pub rows: u64,
    /// Pairs where both are NULL.
    pub both_null: u64,
    /// Pairs where exactly one is NULL.
    pub one_null: u64,
    /// Pairs with equal values (both NULL included).
    pub equal: u64,
    /// Numeric pairs (both non-NULL).
    pub numeric: u64,
    /// Sum of absolute differences of numeric pairs.
    pub sum_abs_diff: f64,
    /// Largest absolute difference.
    pub max_abs_diff: f64,
    /// Pairs on opposite sides of 0.5 (probabilities) or with different labels.
    pub flips: u64,
    /// Joint histogram of numeric pairs, `BINS × BINS`, cell `a_bin * BINS + b_bin` (empty
    /// until a numeric pair is counted).
    #[serde(default)]
    pub joint: Vec<u64>,
}

/// What a [`Tally`] says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Row pairs compared.
    pub rows: u64,
    /// Share of pairs with the same value (NULL and NULL count as the same).
    pub agreement: f64,
    /// Pairs where one model scored the row and the other did not.
    pub one_null: u64,
    /// Mean absolute difference of the pairs both scored (numeric outputs).
    pub mean_abs_diff: Option<f64>,
    /// Largest absolute difference.
    pub max_abs_diff: Option<f64>,
    /// Spearman's rank correlation of the pairs both scored.
    pub rank_correlation: Option<f64>,
    /// Population stability index of the challenger's distribution against the champion's.
    pub psi: Option<f64>,
    /// Share of pairs whose label differs: for a score, the side of 0.5; for a label output,
    /// the label.
    pub label_flip_share: f64,
}

/// The bin of a value: monotone, fixed for every process.
fn bin(x: f64) -> usize {
    let scaled = if x < 0.0 {
        25.0 - (-x).ln_1p().min(25.0)
    } else if x <= 1.0 {
        25.0 + x * 49.999
    } else {
        75.0 + (x - 1.0).ln_1p().min(24.999)
    };
    (scaled.max(0.0) as usize).min(BINS - 1)
}

impl Tally {
    /// Counts the pairs of `a` (champion) and `b` (challenger), row by row.
    pub fn add(&mut self, a: &ArrayRef, b: &ArrayRef) -> arrow::error::Result<()> {
        let rows = a.len().min(b.len());
        self.rows += rows as u64;
        // An integer output is a label: it flips when it changes, not when it crosses 0.5.
        let labels = a.data_type().is_integer() && b.data_type().is_integer();
        let numeric = |c: &ArrayRef| -> arrow::error::Result<Option<ArrayRef>> {
            Ok(match c.data_type() {
                t if t.is_numeric() => Some(cast(c, &DataType::Float64)?),
                _ => None,
            })
        };
        match (numeric(a)?, numeric(b)?) {
            (Some(a), Some(b)) => {
                let (a, b) = (
                    a.as_primitive::<arrow::datatypes::Float64Type>(),
                    b.as_primitive::<arrow::datatypes::Float64Type>(),
                );
                if self.joint.is_empty() {
                    self.joint = vec![0; BINS * BINS];
                }
                for i in 0..rows {
                    if self.both_scored(a.is_valid(i), b.is_valid(i)) {
                        let (x, y) = (a.value(i), b.value(i));
                        let d = (x - y).abs();
                        self.numeric += 1;
                        self.sum_abs_diff += d;
                        self.max_abs_diff = self.max_abs_diff.max(d);
                        self.equal += u64::from(x == y);
                        self.flips += u64::from(if labels {
                            x != y
                        } else {
                            (x >= 0.5) != (y >= 0.5)
                        });
                        self.joint[bin(x) * BINS + bin(y)] += 1;
                    }
                }
            }
            _ => {
                let (a, b) = (cast(a, &DataType::Utf8)?, cast(b, &DataType::Utf8)?);
                let (a, b) = (a.as_string::<i32>(), b.as_string::<i32>());
                for i in 0..rows {
                    if self.both_scored(a.is_valid(i), b.is_valid(i)) {
                        let same = a.value(i) == b.value(i);
                        self.equal += u64::from(same);
                        self.flips += u64::from(!same);
                    }
                }
            }
        }
        Ok(())
    }

    /// Counts a pair's NULLs; true when both models scored the row.
    fn both_scored(&mut self, a: bool, b: bool) -> bool {
        match (a, b) {
            (true, true) => return true,
            (false, false) => {
                self.both_null += 1;
                self.equal += 1;
            }
            _ => self.one_null += 1,
        }
        false
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Tally) {
        self.rows += other.rows;
        self.both_null += other.both_null;
        self.one_null += other.one_null;
        self.equal += other.equal;
        self.numeric += other.numeric;
        self.sum_abs_diff += other.sum_abs_diff;
        self.max_abs_diff = self.max_abs_diff.max(other.max_abs_diff);
        self.flips += other.flips;
        if self.joint.is_empty() {
            self.joint = other.joint.clone();
        } else {
            for (mine, theirs) in self.joint.iter_mut().zip(&other.joint) {
                *mine += theirs;
            }
        }
    }

    /// The figures.
    pub fn agreement(&self) -> Agreement {
        let share = |n: u64| {
            if self.rows == 0 {
                0.0
            } else {
                n as f64 / self.rows as f64
            }
        };
        let numeric = self.numeric > 0;
        let mut a_counts = vec![0u64; BINS];
        let mut b_counts = vec![0u64; BINS];
        for (cell, n) in self.joint.iter().enumerate() {
            a_counts[cell / BINS] += n;
            b_counts[cell % BINS] += n;
        }
        let total = self.numeric as f64;
        let psi = numeric.then(|| {
            scorch_udfs::profile::psi_of_shares(
                a_counts.iter().map(|c| *c as f64 / total),
                b_counts.iter().map(|c| *c as f64 / total),
            )
        });
        Agreement {
            rows: self.rows,
            agreement: share(self.equal),
            one_null: self.one_null,
            mean_abs_diff: numeric.then(|| self.sum_abs_diff / total),
            max_abs_diff: numeric.then_some(self.max_abs_diff),
            rank_correlation: numeric
                .then(|| spearman(&self.joint, &a_counts, &b_counts, total))
                .flatten(),
            psi,
            label_flip_share: share(self.flips),
        }
    }
}

/// Average rank of each bin's rows.
fn bin_ranks(counts: &[u64]) -> Vec<f64> {
    let mut before = 0.0;
    counts
        .iter()
        .map(|c| {
            let rank = before + (*c as f64 + 1.0) / 2.0;
            before += *c as f64;
            rank
        })
        .collect()
}

/// Pearson's correlation of the rows' bin ranks, weighted by the joint counts; `None` when one
/// side is constant.
fn spearman(joint: &[u64], a: &[u64], b: &[u64], total: f64) -> Option<f64> {
    let (ra, rb) = (bin_ranks(a), bin_ranks(b));
    let mean = (total + 1.0) / 2.0;
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (cell, n) in joint.iter().enumerate().filter(|(_, n)| **n > 0) {
        let (x, y) = (ra[cell / BINS] - mean, rb[cell % BINS] - mean);
        let n = *n as f64;
        cov += n * x * y;
        va += n * x * x;
        vb += n * y * y;
    }
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

/// Tallies by compared column.
pub type Tallies = BTreeMap<String, Tally>;

/// Counts the pairs of column `name` into `tallies`: a struct (a model with several outputs)
/// field by field as `name.field`, a list (a vector output) element by element, anything else
/// row by row.
pub fn add_column(
    tallies: &mut Tallies,
    name: &str,
    a: &ArrayRef,
    b: &ArrayRef,
) -> arrow::error::Result<()> {
    match (a.data_type(), b.data_type()) {
        (DataType::Struct(fields), DataType::Struct(_)) => {
            let (a, b) = (a.as_struct(), b.as_struct());
            for (i, field) in fields.iter().enumerate() {
                if let Some(theirs) = b.column_by_name(field.name()) {
                    add_column(
                        tallies,
                        &format!("{name}.{}", field.name()),
                        a.column(i),
                        theirs,
                    )?;
                }
            }
            Ok(())
        }
        (DataType::FixedSizeList(..), DataType::FixedSizeList(..)) => {
            let (a, b) = (a.as_fixed_size_list(), b.as_fixed_size_list());
            add_column(tallies, name, a.values(), b.values())
        }
        (DataType::List(_), DataType::List(_)) => {
            let (a, b) = (a.as_list::<i32>(), b.as_list::<i32>());
            add_column(tallies, name, a.values(), b.values())
        }
        _ => tallies.entry(name.to_string()).or_default().add(a, b),
    }
}

/// Adds `other` into `into`.
pub fn merge(into: &mut Tallies, other: &Tallies) {
    for (column, tally) in other {
        into.entry(column.clone()).or_default().merge(tally);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float32Array, StringArray};
    use std::sync::Arc;

    fn floats(v: Vec<Option<f32>>) -> ArrayRef {
        Arc::new(Float32Array::from(v))
    }

    #[test]
    fn identical_predictions_agree_exactly() {
        let a = floats(
            (0..1000)
                .map(|i| Some(i as f32 / 1000.0))
                .chain([None])
                .collect(),
        );
        let mut t = Tally::default();
        t.add(&a, &a).unwrap();
        let g = t.agreement();
        assert_eq!(g.rows, 1001);
        assert_eq!(g.agreement, 1.0);
        assert_eq!(g.mean_abs_diff, Some(0.0));
        assert_eq!(g.max_abs_diff, Some(0.0));
        assert_eq!(g.rank_correlation, Some(1.0));
        assert_eq!(g.psi, Some(0.0));
        assert_eq!(g.label_flip_share, 0.0);
    }

    #[test]
    fn differences_flips_and_order_are_measured() {
        let a = floats(vec![Some(0.1), Some(0.4), Some(0.6), Some(0.9)]);
        let b = floats(vec![Some(0.2), Some(0.55), Some(0.65), Some(0.7)]);
        let mut t = Tally::default();
        // Split in two, merged: the same as one pass.
        t.add(&a.slice(0, 2), &b.slice(0, 2)).unwrap();
        let mut rest = Tally::default();
        rest.add(&a.slice(2, 2), &b.slice(2, 2)).unwrap();
        t.merge(&rest);
        let g = t.agreement();
        assert_eq!(g.agreement, 0.0);
        assert!((g.mean_abs_diff.unwrap() - (0.1 + 0.15 + 0.05 + 0.2) / 4.0).abs() < 1e-6);
        assert!((g.max_abs_diff.unwrap() - 0.2).abs() < 1e-6);
        assert_eq!(g.label_flip_share, 0.25);
        assert_eq!(g.rank_correlation, Some(1.0), "the order is kept");
        let reversed = floats(vec![Some(0.9), Some(0.6), Some(0.4), Some(0.1)]);
        let mut r = Tally::default();
        r.add(&a, &reversed).unwrap();
        assert!((r.agreement().rank_correlation.unwrap() + 1.0).abs() < 1e-9);
    }

    #[test]
    fn integer_labels_flip_when_they_change() {
        let a: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![0, 1, 2, 2]));
        let b: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![0, 2, 1, 2]));
        let mut t = Tally::default();
        t.add(&a, &b).unwrap();
        // 1 → 2 and 2 → 1 stay on the same side of 0.5, and are flips all the same.
        assert_eq!(t.agreement().label_flip_share, 0.5);
    }

    #[test]
    fn labels_compare_by_equality() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), Some("y"), None]));
        let b: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), Some("z"), None]));
        let mut t = Tally::default();
        t.add(&a, &b).unwrap();
        let g = t.agreement();
        assert!((g.agreement - 2.0 / 3.0).abs() < 1e-12);
        assert!((g.label_flip_share - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(g.mean_abs_diff, None);
    }

    #[test]
    fn bins_are_monotone() {
        let xs = [-1e9, -5.0, -0.1, 0.0, 0.3, 0.5, 1.0, 1.5, 100.0, 1e12];
        let bins: Vec<usize> = xs.iter().map(|x| bin(*x)).collect();
        assert!(bins.windows(2).all(|w| w[0] <= w[1]), "{bins:?}");
        assert!(bins.iter().all(|b| *b < BINS));
    }
}
