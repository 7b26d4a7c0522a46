//! A tree-ensemble evaluator shared by XGBoost, LightGBM and ONNX tree ensembles.
//!
//! Every format is converted at load time into one flat node array ([`Ensemble`]); scoring walks
//! each tree from its root for each row, in double precision, adding each reached leaf's
//! contributions to the row's per-output margins. Ensembles whose splits allow it are scored
//! through a branch-free layout instead ([`crate::runtime::compiled`]), with the same results. Missing-value routing, comparison operators
//! and categorical splits are stored per node, so each library's exact rules (XGBoost's `<` with
//! default directions, LightGBM's `<=` with its missing types and category bitsets, ONNX's
//! `BRANCH_*` modes) are reproduced.

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::features::{FeatureMatrix, MissingPolicy, Numeric, Precision};
use crate::package::{ModelPackage, OutputSpec, OutputType};
use crate::runtime::compiled::{self, Compiled};
use crate::runtime::{Model, OutputColumn};

/// A split's comparison: the row goes to `left` when it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cond {
    /// `x < threshold`.
    Lt,
    /// `x <= threshold`.
    Le,
    /// `x > threshold`.
    Gt,
    /// `x >= threshold`.
    Ge,
    /// `x == threshold`.
    Eq,
    /// `x != threshold`.
    Ne,
    /// The integer category of `x` is in a bitset of `len` 32-bit words at `start` in
    /// [`Ensemble::bitsets`] (LightGBM); negative, fractional-negative or NaN values go right.
    InSet {
        /// First word.
        start: u32,
        /// Number of words.
        len: u32,
    },
}

/// How a split treats missing values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Missing {
    /// NaN follows the node's default direction; other values are compared.
    Nan,
    /// NaN is compared as 0 (LightGBM's missing type "None").
    NanAsZero,
    /// NaN and zero follow the default direction (LightGBM's missing type "Zero").
    NanOrZero,
}

/// One node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Node {
    /// An internal node.
    Split {
        /// Feature index.
        feature: u32,
        /// Threshold.
        threshold: f64,
        /// Comparison.
        cond: Cond,
        /// Missing-value handling.
        missing: Missing,
        /// Where missing values go: left when true.
        default_left: bool,
        /// Index of the left child in [`Ensemble::nodes`].
        left: u32,
        /// Index of the right child.
        right: u32,
    },
    /// A leaf: `len` contributions starting at `start` in [`Ensemble::leaf_values`].
    Leaf {
        /// First contribution.
        start: u32,
        /// Number of contributions.
        len: u32,
    },
}

/// How margins become the library's default prediction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Transform {
    /// Unchanged (regression, raw scores).
    #[default]
    Identity,
    /// `1 / (1 + exp(-scale * m))`, per output.
    Sigmoid(f64),
    /// Softmax over the outputs.
    Softmax,
    /// `exp(m)` (Poisson, Gamma, Tweedie).
    Exp,
}

/// A flattened tree ensemble.
#[derive(Debug, Clone, Default)]
pub struct Ensemble {
    /// All nodes of all trees.
    pub nodes: Vec<Node>,
    /// The root node of each tree.
    pub roots: Vec<u32>,
    /// Leaf contributions: (output index, value).
    pub leaf_values: Vec<(u32, f64)>,
    /// Category bitsets.
    pub bitsets: Vec<u32>,
    /// Number of margins per row.
    pub outputs: usize,
    /// Added to every row's margins.
    pub base: Vec<f64>,
    /// Divide the sum of each output by the number of trees contributing to it (random forests).
    pub average: bool,
    /// Margins to predictions.
    pub transform: Transform,
    /// Number of features the trees may read.
    pub features: usize,
    /// Round each feature to `f32` before comparing (XGBoost and ONNX compare in single
    /// precision; LightGBM in double).
    pub round_to_f32: bool,
    /// The branch-free layout, built on first use (`None` inside when the ensemble has splits it
    /// cannot express).
    pub(crate) compiled: OnceLock<Option<Compiled>>,
}

impl Ensemble {
    /// Appends a leaf with `contributions`, returning its node index.
    pub fn push_leaf(&mut self, contributions: &[(u32, f64)]) -> u32 {
        let start = self.leaf_values.len() as u32;
        self.leaf_values.extend_from_slice(contributions);
        self.nodes.push(Node::Leaf {
            start,
            len: contributions.len() as u32,
        });
        (self.nodes.len() - 1) as u32
    }

    /// Checks that every child index and feature index is in range, so scoring never panics on a
    /// corrupt model.
    pub fn validate(&self, name: &str) -> Result<()> {
        let bad = |reason: String| Error::InvalidWeights {
            name: name.to_string(),
            reason,
        };
        let n = self.nodes.len() as u32;
        for (i, node) in self.nodes.iter().enumerate() {
            match *node {
                Node::Split {
                    feature,
                    left,
                    right,
                    cond,
                    ..
                } => {
                    if left >= n || right >= n {
                        return Err(bad(format!("node {i} points outside the tree")));
                    }
                    if feature as usize >= self.features {
                        return Err(bad(format!(
                            "node {i} splits on feature {feature}, but the model has {} inputs",
                            self.features
                        )));
                    }
                    if let Cond::InSet { start, len } = cond
                        && (start + len) as usize > self.bitsets.len()
                    {
                        return Err(bad(format!("node {i} has an out-of-range category set")));
                    }
                }
                Node::Leaf { start, len } => {
                    if (start + len) as usize > self.leaf_values.len() {
                        return Err(bad(format!("leaf {i} has out-of-range values")));
                    }
                    if self.leaf_values[start as usize..(start + len) as usize]
                        .iter()
                        .any(|(o, _)| *o as usize >= self.outputs)
                    {
                        return Err(bad(format!(
                            "leaf {i} contributes to an output that does not exist"
                        )));
                    }
                }
            }
        }
        if self.roots.iter().any(|r| *r >= n) {
            return Err(bad("a tree root points outside the model".into()));
        }
        if self.base.len() != self.outputs {
            return Err(bad(format!(
                "{} base values for {} outputs",
                self.base.len(),
                self.outputs
            )));
        }
        Ok(())
    }

    #[inline]
    fn goes_left(
        &self,
        x: f64,
        threshold: f64,
        cond: Cond,
        missing: Missing,
        default_left: bool,
    ) -> bool {
        let x = match missing {
            Missing::Nan if x.is_nan() => return default_left,
            Missing::NanOrZero if x.is_nan() || x.abs() <= 1e-35 => return default_left,
            Missing::NanAsZero if x.is_nan() => 0.0,
            _ => x,
        };
        match cond {
            Cond::Lt => x < threshold,
            Cond::Le => x <= threshold,
            Cond::Gt => x > threshold,
            Cond::Ge => x >= threshold,
            Cond::Eq => x == threshold,
            Cond::Ne => x != threshold,
            Cond::InSet { start, len } => {
                if x.is_nan() || x < 0.0 {
                    return false;
                }
                let category = x as u64;
                let word = (category / 32) as u32;
                word < len && (self.bitsets[(start + word) as usize] >> (category % 32)) & 1 == 1
            }
        }
    }

    /// Adds one row's margins (before the base values) into `out`; counts contributions per
    /// output into `counts` when averaging.
    #[inline]
    pub fn accumulate(&self, row: &[f64], out: &mut [f64], counts: &mut [u32]) {
        for &root in &self.roots {
            let mut i = root as usize;
            loop {
                match self.nodes[i] {
                    Node::Split {
                        feature,
                        threshold,
                        cond,
                        missing,
                        default_left,
                        left,
                        right,
                    } => {
                        let x = if self.round_to_f32 {
                            f64::from(row[feature as usize] as f32)
                        } else {
                            row[feature as usize]
                        };
                        i = if self.goes_left(x, threshold, cond, missing, default_left) {
                            left as usize
                        } else {
                            right as usize
                        };
                    }
                    Node::Leaf { start, len } => {
                        for &(output, value) in
                            &self.leaf_values[start as usize..(start + len) as usize]
                        {
                            out[output as usize] += value;
                            counts[output as usize] += 1;
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Margins of every row, row-major `rows x outputs`, from row-major `features` (`cols`
    /// wide). Single-precision features go straight to the compiled layout's `f32` walk.
    pub fn margins(&self, features: &Numeric, cols: usize, rows: usize) -> Vec<f64> {
        let k = self.outputs;
        let compiled = self
            .compiled
            .get_or_init(|| Compiled::try_from_ensemble(self));
        if let Some(compiled) = compiled {
            let mut margins = vec![0f64; rows * k];
            match features {
                Numeric::F32(x) => in_shares(&x[..rows * cols], cols, k, &mut margins, |x, m| {
                    compiled.accumulate_f32(x, cols, k, m)
                }),
                Numeric::F64(x) => in_shares(&x[..rows * cols], cols, k, &mut margins, |x, m| {
                    compiled.accumulate_f64(x, cols, k, m)
                }),
            }
            for row in margins.chunks_exact_mut(k) {
                row.iter_mut().zip(&self.base).for_each(|(m, b)| *m += b);
            }
            return margins;
        }
        let features = features.to_f64();
        let mut margins = vec![0f64; rows * k];
        let mut counts = vec![0u32; k];
        for r in 0..rows {
            counts.iter_mut().for_each(|c| *c = 0);
            let out = &mut margins[r * k..(r + 1) * k];
            self.accumulate(&features[r * cols..(r + 1) * cols], out, &mut counts);
            for (o, m) in out.iter_mut().enumerate() {
                if self.average && counts[o] > 0 {
                    *m /= f64::from(counts[o]);
                }
                *m += self.base[o];
            }
        }
        margins
    }

    /// Applies the transform to one row's margins in place.
    pub fn transform_row(&self, row: &mut [f64]) {
        match self.transform {
            Transform::Identity => {}
            Transform::Sigmoid(scale) => row
                .iter_mut()
                .for_each(|m| *m = 1.0 / (1.0 + (-scale * *m).exp())),
            Transform::Exp => row.iter_mut().for_each(|m| *m = m.exp()),
            Transform::Softmax => {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for m in row.iter_mut() {
                    *m = (*m - max).exp();
                    sum += *m;
                }
                row.iter_mut().for_each(|m| *m /= sum);
            }
        }
    }

    /// Checks the declared outputs against the ensemble, at load time.
    pub fn check_outputs(&self, name: &str, outputs: &[OutputSpec]) -> Result<()> {
        let bad = |reason: String| Error::InvalidWeights {
            name: name.to_string(),
            reason,
        };
        for o in outputs {
            let source = o.source.as_deref().unwrap_or("prediction");
            match source {
                "label" => {
                    if o.dtype != OutputType::Int64 || o.size.is_some() {
                        return Err(bad(format!(
                            "output `{}`: a label is a scalar int64",
                            o.name
                        )));
                    }
                    if self.outputs == 1 && !matches!(self.transform, Transform::Sigmoid(_)) {
                        return Err(bad(format!(
                            "output `{}`: a regression model has no label",
                            o.name
                        )));
                    }
                }
                _ => {
                    if o.dtype != OutputType::Float32 {
                        return Err(bad(format!(
                            "output `{}`: {source} values are float32",
                            o.name
                        )));
                    }
                    match (o.size, o.index) {
                        (Some(size), _) if size != self.outputs => {
                            return Err(bad(format!(
                                "output `{}`: size {size}, but the model produces {} values per row",
                                o.name, self.outputs
                            )));
                        }
                        (None, Some(i)) if i >= self.outputs => {
                            return Err(bad(format!(
                                "output `{}`: index {i}, but the model produces {} values per row",
                                o.name, self.outputs
                            )));
                        }
                        (None, None) if self.outputs != 1 => {
                            return Err(bad(format!(
                                "output `{}`: the model produces {} values per row; give `size = {}` or an `index`",
                                o.name, self.outputs, self.outputs
                            )));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Scores a feature matrix into the declared outputs.
    pub fn predict(&self, features: &FeatureMatrix, outputs: &[OutputSpec]) -> Vec<OutputColumn> {
        let rows = features.scored_rows();
        let margins = self.margins(&features.numeric, features.cols, rows);
        let k = self.outputs;
        let needs_prediction = outputs
            .iter()
            .any(|o| matches!(o.source.as_deref(), None | Some("prediction" | "label")));
        let predictions = needs_prediction.then(|| {
            let mut p = margins.clone();
            for r in 0..rows {
                self.transform_row(&mut p[r * k..(r + 1) * k]);
            }
            p
        });
        outputs
            .iter()
            .map(|o| {
                let source = o.source.as_deref().unwrap_or("prediction");
                let values = if source == "margin" {
                    &margins
                } else {
                    predictions
                        .as_ref()
                        .expect("computed when a prediction or label is declared")
                };
                if source == "label" {
                    let labels = (0..rows)
                        .map(|r| {
                            let row = &values[r * k..(r + 1) * k];
                            if k == 1 {
                                i64::from(row[0] > 0.5)
                            } else {
                                row.iter()
                                    .enumerate()
                                    .fold((0usize, f64::NEG_INFINITY), |best, (i, v)| {
                                        if *v > best.1 { (i, *v) } else { best }
                                    })
                                    .0 as i64
                            }
                        })
                        .collect();
                    return OutputColumn::I64(labels);
                }
                match (o.size, o.index) {
                    (Some(_), _) => OutputColumn::F32(values.iter().map(|v| *v as f32).collect()),
                    (None, Some(i)) => {
                        OutputColumn::F32((0..rows).map(|r| values[r * k + i] as f32).collect())
                    }
                    (None, None) => {
                        OutputColumn::F32((0..rows).map(|r| values[r * k] as f32).collect())
                    }
                }
            })
            .collect()
    }
}

/// Runs `walk` over contiguous shares of whole blocks of rows, one per thread of the current
/// pool (the call's lease; `x` row-major, `cols` wide; `margins` row-major, `k` wide).
fn in_shares<T: Sync>(
    x: &[T],
    cols: usize,
    k: usize,
    margins: &mut [f64],
    walk: impl Fn(&[T], &mut [f64]) + Sync,
) {
    let rows = margins.len() / k.max(1);
    let threads = rayon::current_num_threads();
    if threads > 1 && rows >= 2 * compiled::BLOCK_ROWS {
        let share = rows
            .div_ceil(threads)
            .next_multiple_of(compiled::BLOCK_ROWS);
        x.par_chunks(share * cols)
            .zip(margins.par_chunks_mut(share * k))
            .for_each(|(x, m)| walk(x, m));
    } else {
        walk(x, margins);
    }
}

/// A tree ensemble read from a library's model file (XGBoost, LightGBM), checked against its
/// package's manifest: the same evaluator serves both.
#[derive(Debug)]
pub struct TreeModel {
    ensemble: Ensemble,
    outputs: Vec<OutputSpec>,
    /// Feature names stored in the model, if any.
    pub feature_names: Vec<String>,
}

impl TreeModel {
    /// Checks `ensemble`, read from `artifact` of `package`, against the manifest: node and leaf
    /// indices, declared outputs, and the declared inputs against the features the trees read
    /// (their number, and their names where the artifact stores real ones).
    pub fn try_new(
        name: &str,
        package: &ModelPackage,
        artifact: &str,
        ensemble: Ensemble,
        feature_names: Vec<String>,
    ) -> Result<Self> {
        ensemble.validate(name)?;
        ensemble.check_outputs(name, &package.manifest.outputs)?;
        check_inputs(name, package, artifact, ensemble.features, &feature_names)?;
        Ok(Self {
            ensemble,
            outputs: package.manifest.outputs.clone(),
            feature_names,
        })
    }
}

impl Model for TreeModel {
    fn predict(&self, features: &FeatureMatrix) -> Result<Vec<OutputColumn>> {
        Ok(self.ensemble.predict(features, &self.outputs))
    }

    fn precision(&self) -> Precision {
        Precision::Splits {
            single: self.ensemble.round_to_f32,
        }
    }

    fn missing(&self) -> MissingPolicy {
        MissingPolicy::PassNan
    }
}

/// Whether a library's feature names are its placeholders rather than real names (LightGBM's
/// `Column_0`, XGBoost's `f0`).
fn placeholder_names(names: &[String]) -> bool {
    names
        .iter()
        .enumerate()
        .all(|(i, n)| *n == format!("Column_{i}") || *n == format!("f{i}"))
}

/// Checks the manifest's declared inputs against the features an artifact reads: the same
/// number, and the same names in the same order where the artifact stores real names. A
/// mismatch would feed the trees the wrong columns, or read past the row.
pub fn check_inputs(
    name: &str,
    package: &ModelPackage,
    artifact: &str,
    features: usize,
    feature_names: &[String],
) -> Result<()> {
    let declared: Vec<&str> = package
        .manifest
        .inputs
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    let list = |names: &[&str]| {
        const SHOWN: usize = 8;
        let mut text = names
            .iter()
            .take(SHOWN)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if names.len() > SHOWN {
            text.push_str(&format!(", … {} more", names.len() - SHOWN));
        }
        text
    };
    let real_names = !feature_names.is_empty() && !placeholder_names(feature_names);
    let artifact_names: Vec<&str> = feature_names.iter().map(String::as_str).collect();
    let mismatch = |found: String| Error::ManifestMismatch {
        name: name.to_string(),
        uri: package.uri.clone(),
        artifact: artifact.to_string(),
        declared: format!("{} inputs ({})", declared.len(), list(&declared)),
        found,
    };
    if declared.len() != features {
        return Err(mismatch(if real_names {
            format!("reads {features} features ({})", list(&artifact_names))
        } else {
            format!("reads {features} features")
        }));
    }
    if real_names && artifact_names != declared {
        let first = declared
            .iter()
            .zip(&artifact_names)
            .position(|(d, a)| d != a)
            .unwrap_or(0);
        return Err(mismatch(format!(
            "names its features differently: input {} is `{}` in the manifest and `{}` in the model ({})",
            first + 1,
            declared[first],
            artifact_names[first],
            list(&artifact_names)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x0 < 0.5 ? (x1 <= 2 ? 1 : 2) : 3, NaN on x0 goes right.
    fn small() -> Ensemble {
        let mut e = Ensemble {
            outputs: 1,
            base: vec![0.5],
            transform: Transform::Identity,
            features: 2,
            ..Default::default()
        };
        let l1 = e.push_leaf(&[(0, 1.0)]);
        let l2 = e.push_leaf(&[(0, 2.0)]);
        let l3 = e.push_leaf(&[(0, 3.0)]);
        e.nodes.push(Node::Split {
            feature: 1,
            threshold: 2.0,
            cond: Cond::Le,
            missing: Missing::NanAsZero,
            default_left: false,
            left: l1,
            right: l2,
        });
        let inner = (e.nodes.len() - 1) as u32;
        e.nodes.push(Node::Split {
            feature: 0,
            threshold: 0.5,
            cond: Cond::Lt,
            missing: Missing::Nan,
            default_left: false,
            left: inner,
            right: l3,
        });
        e.roots.push((e.nodes.len() - 1) as u32);
        e
    }

    #[test]
    fn routes_values_and_missing_values() {
        let e = small();
        e.validate("t").expect("valid");
        let rows = [0.0, 2.0, 0.0, 2.5, 1.0, 0.0, f64::NAN, 0.0, 0.0, f64::NAN];
        let m = e.margins(&Numeric::F64(rows.to_vec()), 2, 5);
        // NaN on x0 follows the default (right); NaN on x1 compares as 0 (<= 2, left).
        assert_eq!(m, vec![1.5, 2.5, 3.5, 3.5, 1.5]);
    }

    #[test]
    fn category_bitsets() {
        let mut e = Ensemble {
            outputs: 1,
            base: vec![0.0],
            features: 1,
            bitsets: vec![0b1010, 0b1],
            transform: Transform::Identity,
            ..Default::default()
        };
        let yes = e.push_leaf(&[(0, 1.0)]);
        let no = e.push_leaf(&[(0, -1.0)]);
        e.nodes.push(Node::Split {
            feature: 0,
            threshold: 0.0,
            cond: Cond::InSet { start: 0, len: 2 },
            missing: Missing::Nan,
            default_left: false,
            left: yes,
            right: no,
        });
        e.roots.push(2);
        let x = vec![1.0, 2.0, 3.0, 32.0, 33.0, -1.0, f64::NAN, 64.0];
        let m = e.margins(&Numeric::F64(x), 1, 8);
        assert_eq!(m, vec![1.0, -1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0]);
    }

    #[test]
    fn transforms() {
        let e = Ensemble {
            transform: Transform::Softmax,
            ..Default::default()
        };
        let mut row = [1.0, 2.0, 3.0];
        e.transform_row(&mut row);
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12 && row[2] > row[1]);
    }
}
