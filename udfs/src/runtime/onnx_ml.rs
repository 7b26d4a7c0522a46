//! The `ai.onnx.ml` operators scikit-learn pipelines export to (skl2onnx), implemented natively:
//! Scaler, Imputer, Normalizer, Binarizer, OneHotEncoder, LabelEncoder, ArrayFeatureExtractor,
//! FeatureVectorizer, ZipMap, LinearRegressor, LinearClassifier, TreeEnsembleRegressor and
//! TreeEnsembleClassifier. Semantics follow the ONNX operator specification and ONNX Runtime.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_onnx::onnx::{AttributeProto, NodeProto};

use crate::features::Numeric;
use crate::runtime::onnx::Value;
use crate::runtime::trees::{Cond, Ensemble, Missing, Node, Transform};

type R<T> = Result<T, String>;

/// Attributes of a node by name.
struct Attrs<'a>(HashMap<&'a str, &'a AttributeProto>);

impl<'a> Attrs<'a> {
    fn new(node: &'a NodeProto) -> Self {
        Self(
            node.attribute
                .iter()
                .map(|a| (a.name.as_str(), a))
                .collect(),
        )
    }
    fn floats(&self, k: &str) -> Vec<f32> {
        self.0.get(k).map(|a| a.floats.clone()).unwrap_or_default()
    }
    fn ints(&self, k: &str) -> Vec<i64> {
        self.0.get(k).map(|a| a.ints.clone()).unwrap_or_default()
    }
    fn strings(&self, k: &str) -> Vec<String> {
        self.0
            .get(k)
            .map(|a| {
                a.strings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
    fn string(&self, k: &str) -> Option<String> {
        self.0
            .get(k)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }
    fn int(&self, k: &str) -> Option<i64> {
        self.0.get(k).map(|a| a.i)
    }
    fn float(&self, k: &str) -> Option<f32> {
        self.0.get(k).map(|a| a.f)
    }
    /// Float values given either as `name` (floats) or `name_as_tensor` (a double/float tensor).
    fn floats_or_tensor(&self, k: &str) -> Vec<f64> {
        let plain = self.floats(k);
        if !plain.is_empty() {
            return plain.iter().map(|v| f64::from(*v)).collect();
        }
        let Some(t) = self
            .0
            .get(format!("{k}_as_tensor").as_str())
            .and_then(|a| a.t.as_ref())
        else {
            return Vec::new();
        };
        if !t.double_data.is_empty() {
            return t.double_data.clone();
        }
        if !t.float_data.is_empty() {
            return t.float_data.iter().map(|v| f64::from(*v)).collect();
        }
        if t.data_type == 11 {
            return t
                .raw_data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
        }
        t.raw_data
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("4 bytes"))))
            .collect()
    }
}

/// Class labels of a classifier.
#[derive(Debug, Clone)]
pub enum Labels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

impl Labels {
    fn from(a: &Attrs<'_>) -> R<Self> {
        let ints = a.ints("classlabels_ints");
        let ints = if ints.is_empty() {
            a.ints("classlabels_int64s")
        } else {
            ints
        };
        let strings = a.strings("classlabels_strings");
        match (ints.is_empty(), strings.is_empty()) {
            (false, _) => Ok(Labels::Ints(ints)),
            (true, false) => Ok(Labels::Strings(strings)),
            (true, true) => Err("a classifier without class labels".into()),
        }
    }
    fn len(&self) -> usize {
        match self {
            Labels::Ints(v) => v.len(),
            Labels::Strings(v) => v.len(),
        }
    }
    fn value(&self, winners: &[usize], device: &Device) -> R<Value> {
        match self {
            Labels::Ints(l) => {
                let v: Vec<i64> = winners.iter().map(|w| l[*w]).collect();
                let n = v.len();
                Ok(Value::Tensor(
                    Tensor::from_vec(v, n, device).map_err(|e| e.to_string())?,
                ))
            }
            Labels::Strings(l) => Ok(Value::Strings(
                winners.iter().map(|w| l[*w].clone()).collect(),
                vec![winners.len()],
            )),
        }
    }
}

/// `post_transform` of linear and tree models.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Post {
    None,
    Softmax,
    Logistic,
    SoftmaxZero,
    Probit,
}

impl Post {
    fn from(a: &Attrs<'_>) -> R<Self> {
        Ok(
            match a.string("post_transform").as_deref().unwrap_or("NONE") {
                "NONE" => Post::None,
                "SOFTMAX" => Post::Softmax,
                "LOGISTIC" => Post::Logistic,
                "SOFTMAX_ZERO" => Post::SoftmaxZero,
                "PROBIT" => Post::Probit,
                other => return Err(format!("post_transform {other} is not supported")),
            },
        )
    }

    fn apply(self, row: &mut [f32]) {
        match self {
            Post::None => {}
            Post::Logistic => row.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            Post::Softmax | Post::SoftmaxZero => {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for v in row.iter_mut() {
                    if self == Post::SoftmaxZero && *v == 0.0 {
                        continue;
                    }
                    *v = (*v - max).exp();
                    sum += *v;
                }
                row.iter_mut().for_each(|v| *v /= sum);
            }
            Post::Probit => row
                .iter_mut()
                .for_each(|v| *v = std::f32::consts::SQRT_2 * erfinv(2.0 * *v - 1.0)),
        }
    }
}

/// Inverse error function (Giles' approximation, as ONNX Runtime uses).
fn erfinv(x: f32) -> f32 {
    let w = -((1.0 - x) * (1.0 + x)).ln();
    if w < 5.0 {
        let w = w - 2.5;
        let mut p = 2.810_226_4e-8;
        for c in [
            3.432_739_4e-7,
            -3.523_387_7e-6,
            -4.391_506_5e-6,
            2.185_808_8e-4,
            -1.253_725e-3,
            -4.177_681_6e-3,
            0.246_640_73,
            1.501_409_4,
        ] {
            p = c + p * w;
        }
        p * x
    } else {
        let w = w.sqrt() - 3.0;
        let mut p = -2.002_142_6e-4;
        for c in [
            1.009_505_6e-4,
            1.349_343_2e-3,
            -3.673_428_4e-3,
            5.739_507_7e-3,
            -7.622_461e-3,
            9.438_870_4e-3,
            1.001_674_2,
            2.832_976_8,
        ] {
            p = c + p * w;
        }
        p * x
    }
}

/// A compiled `ai.onnx.ml` node.
#[derive(Debug)]
pub enum MlOp {
    /// `(x - offset) * scale`.
    Scaler { offset: Vec<f32>, scale: Vec<f32> },
    /// Replaces `replaced` (NaN by default) with a per-column value.
    Imputer { values: Vec<f32>, replaced: f32 },
    /// Row normalisation.
    Normalizer { norm: String },
    /// `x > threshold`.
    Binarizer { threshold: f32 },
    /// One-hot encoding of integer or string categories.
    OneHot {
        ints: Vec<i64>,
        strings: Vec<String>,
        zeros: bool,
    },
    /// Gathers columns.
    ArrayFeatureExtractor,
    /// Concatenates inputs column-wise.
    FeatureVectorizer,
    /// Sequence-of-maps output of classifiers: passed through as the probability tensor.
    ZipMap,
    /// String/integer mapping.
    LabelEncoder {
        keys: Vec<String>,
        ints: Vec<i64>,
        default_int: i64,
        to_strings: Option<Vec<String>>,
        default_string: String,
    },
    /// Linear regression.
    LinearRegressor {
        coefficients: Vec<f32>,
        intercepts: Vec<f32>,
        targets: usize,
        post: Post,
    },
    /// Linear classification.
    LinearClassifier {
        coefficients: Vec<f32>,
        intercepts: Vec<f32>,
        labels: Labels,
        post: Post,
    },
    /// A tree ensemble regressor.
    TreeRegressor { ensemble: Box<Ensemble>, post: Post },
    /// A tree ensemble classifier.
    TreeClassifier {
        ensemble: Box<Ensemble>,
        labels: Labels,
        post: Post,
        binary: bool,
    },
}

impl MlOp {
    /// Compiles a node, reading and checking its attributes.
    pub fn try_new(node: &NodeProto) -> R<Self> {
        let a = Attrs::new(node);
        Ok(match node.op_type.as_str() {
            "Scaler" => MlOp::Scaler {
                offset: a.floats("offset"),
                scale: a.floats("scale"),
            },
            "Imputer" => MlOp::Imputer {
                values: a.floats("imputed_value_floats"),
                replaced: a.float("replaced_value_float").unwrap_or(f32::NAN),
            },
            "Normalizer" => MlOp::Normalizer {
                norm: a.string("norm").unwrap_or_else(|| "MAX".into()),
            },
            "Binarizer" => MlOp::Binarizer {
                threshold: a.float("threshold").unwrap_or(0.0),
            },
            "OneHotEncoder" => MlOp::OneHot {
                ints: a.ints("cats_int64s"),
                strings: a.strings("cats_strings"),
                zeros: a.int("zeros").unwrap_or(1) == 1,
            },
            "ArrayFeatureExtractor" => MlOp::ArrayFeatureExtractor,
            "FeatureVectorizer" => MlOp::FeatureVectorizer,
            "ZipMap" => MlOp::ZipMap,
            "LabelEncoder" => {
                let keys = a.strings("keys_strings");
                let values_strings = a.strings("values_strings");
                MlOp::LabelEncoder {
                    keys,
                    ints: a.ints("values_int64s"),
                    default_int: a.int("default_int64").unwrap_or(-1),
                    to_strings: (!values_strings.is_empty()).then_some(values_strings),
                    default_string: a
                        .string("default_string")
                        .unwrap_or_else(|| "_Unused".into()),
                }
            }
            "LinearRegressor" => MlOp::LinearRegressor {
                coefficients: a.floats("coefficients"),
                intercepts: a.floats("intercepts"),
                targets: a.int("targets").unwrap_or(1).max(1) as usize,
                post: Post::from(&a)?,
            },
            "LinearClassifier" => MlOp::LinearClassifier {
                coefficients: a.floats("coefficients"),
                intercepts: a.floats("intercepts"),
                labels: Labels::from(&a)?,
                post: Post::from(&a)?,
            },
            "TreeEnsembleRegressor" => MlOp::TreeRegressor {
                ensemble: Box::new(tree_ensemble(
                    &a,
                    "target",
                    a.int("n_targets").unwrap_or(1).max(1) as usize,
                )?),
                post: Post::from(&a)?,
            },
            "TreeEnsembleClassifier" => {
                let labels = Labels::from(&a)?;
                let class_ids = a.ints("class_ids");
                // Binary models may carry weights for one class only.
                let distinct: std::collections::BTreeSet<i64> = class_ids.iter().copied().collect();
                let binary = labels.len() == 2 && distinct.len() == 1;
                let outputs = if binary { 1 } else { labels.len() };
                let mut ensemble = tree_ensemble(&a, "class", outputs)?;
                if binary {
                    for (o, _) in ensemble.leaf_values.iter_mut() {
                        *o = 0;
                    }
                }
                MlOp::TreeClassifier {
                    ensemble: Box::new(ensemble),
                    labels,
                    post: Post::from(&a)?,
                    binary,
                }
            }
            other => return Err(format!("ai.onnx.ml operator `{other}` is not supported")),
        })
    }

    /// Evaluates the node.
    pub fn eval(&self, inputs: &[Value], device: &Device) -> R<Vec<Value>> {
        let x = inputs.first().ok_or("missing input")?;
        match self {
            MlOp::Scaler { offset, scale } => map_rows(x, device, |row| {
                for (j, v) in row.iter_mut().enumerate() {
                    let o = offset.get(j).or(offset.first()).copied().unwrap_or(0.0);
                    let s = scale.get(j).or(scale.first()).copied().unwrap_or(1.0);
                    *v = (*v - o) * s;
                }
            }),
            MlOp::Imputer { values, replaced } => map_rows(x, device, |row| {
                for (j, v) in row.iter_mut().enumerate() {
                    let hit = if replaced.is_nan() {
                        v.is_nan()
                    } else {
                        *v == *replaced
                    };
                    if hit {
                        *v = values.get(j).or(values.first()).copied().unwrap_or(0.0);
                    }
                }
            }),
            MlOp::Normalizer { norm } => {
                let norm = norm.clone();
                map_rows(x, device, move |row| {
                    let d = match norm.as_str() {
                        "L1" => row.iter().map(|v| v.abs()).sum::<f32>(),
                        "L2" => row.iter().map(|v| v * v).sum::<f32>().sqrt(),
                        _ => row.iter().map(|v| v.abs()).fold(0.0, f32::max),
                    };
                    if d != 0.0 {
                        row.iter_mut().for_each(|v| *v /= d);
                    }
                })
            }
            MlOp::Binarizer { threshold } => map_rows(x, device, |row| {
                row.iter_mut()
                    .for_each(|v| *v = if *v > *threshold { 1.0 } else { 0.0 })
            }),
            MlOp::OneHot {
                ints,
                strings,
                zeros,
            } => {
                let (categories, cells, shape): (usize, Vec<Option<usize>>, Vec<usize>) = match x {
                    Value::Strings(s, shape) => {
                        let index: HashMap<&str, usize> = strings
                            .iter()
                            .enumerate()
                            .map(|(i, s)| (s.as_str(), i))
                            .collect();
                        (
                            strings.len(),
                            s.iter().map(|v| index.get(v.as_str()).copied()).collect(),
                            shape.clone(),
                        )
                    }
                    Value::Tensor(t) => {
                        let index: HashMap<i64, usize> =
                            ints.iter().enumerate().map(|(i, c)| (*c, i)).collect();
                        let shape = t.dims().to_vec();
                        let v = t
                            .to_dtype(DType::F64)
                            .and_then(|t| t.flatten_all())
                            .and_then(|t| t.to_vec1::<f64>())
                            .map_err(|e| e.to_string())?;
                        (
                            ints.len(),
                            v.iter().map(|v| index.get(&(*v as i64)).copied()).collect(),
                            shape,
                        )
                    }
                };
                if !zeros && cells.iter().any(Option::is_none) {
                    return Err("a category not seen in training (zeros = 0)".into());
                }
                let mut out = vec![0f32; cells.len() * categories];
                for (i, c) in cells.iter().enumerate() {
                    if let Some(c) = c {
                        out[i * categories + c] = 1.0;
                    }
                }
                let mut dims = shape;
                dims.push(categories);
                Ok(vec![tensor(out, &dims, device)?])
            }
            MlOp::ArrayFeatureExtractor => {
                let indices: Vec<usize> = int_values(inputs.get(1).ok_or("missing indices")?)?
                    .iter()
                    .map(|i| *i as usize)
                    .collect();
                match x {
                    Value::Strings(s, shape) => {
                        let width = *shape.last().unwrap_or(&1);
                        let rows = s.len() / width.max(1);
                        let out: Vec<String> = (0..rows)
                            .flat_map(|r| indices.iter().map(move |i| (r, *i)))
                            .map(|(r, i)| s[r * width + i].clone())
                            .collect();
                        Ok(vec![Value::Strings(out, vec![rows, indices.len()])])
                    }
                    Value::Tensor(t) => {
                        let idx = Tensor::from_vec(
                            indices.iter().map(|i| *i as u32).collect::<Vec<_>>(),
                            indices.len(),
                            t.device(),
                        )
                        .map_err(|e| e.to_string())?;
                        let last = t.rank().saturating_sub(1);
                        Ok(vec![Value::Tensor(
                            t.index_select(&idx, last).map_err(|e| e.to_string())?,
                        )])
                    }
                }
            }
            MlOp::FeatureVectorizer => {
                let parts = inputs
                    .iter()
                    .map(|v| {
                        v.tensor("an input")
                            .and_then(|t| t.to_dtype(DType::F32).map_err(|e| e.to_string()))
                    })
                    .collect::<R<Vec<_>>>()?;
                let parts: Vec<Tensor> = parts
                    .into_iter()
                    .map(|t| {
                        if t.rank() == 1 {
                            t.unsqueeze(1).map_err(|e| e.to_string())
                        } else {
                            Ok(t)
                        }
                    })
                    .collect::<R<_>>()?;
                Ok(vec![Value::Tensor(
                    Tensor::cat(&parts, 1).map_err(|e| e.to_string())?,
                )])
            }
            MlOp::ZipMap => Ok(vec![x.clone()]),
            MlOp::LabelEncoder {
                keys,
                ints,
                default_int,
                to_strings,
                default_string,
            } => match (x, to_strings) {
                (Value::Strings(s, shape), None) => {
                    let index: HashMap<&str, i64> = keys
                        .iter()
                        .map(String::as_str)
                        .zip(ints.iter().copied())
                        .collect();
                    let v: Vec<i64> = s
                        .iter()
                        .map(|k| index.get(k.as_str()).copied().unwrap_or(*default_int))
                        .collect();
                    Ok(vec![Value::Tensor(
                        Tensor::from_vec(v, shape.clone(), device).map_err(|e| e.to_string())?,
                    )])
                }
                (Value::Tensor(_), Some(values)) => {
                    let v = int_values(x)?;
                    let out = v
                        .iter()
                        .map(|k| {
                            ints.iter()
                                .position(|i| i == k)
                                .map(|p| values[p].clone())
                                .unwrap_or_else(|| default_string.clone())
                        })
                        .collect::<Vec<_>>();
                    let n = out.len();
                    Ok(vec![Value::Strings(out, vec![n])])
                }
                _ => Err("this LabelEncoder mapping is not supported".into()),
            },
            MlOp::LinearRegressor {
                coefficients,
                intercepts,
                targets,
                post,
            } => {
                let (data, rows, cols) = f32_matrix(x)?;
                if coefficients.len() != targets * cols {
                    return Err(format!(
                        "{} coefficients for {targets} targets x {cols} features",
                        coefficients.len()
                    ));
                }
                let mut out = vec![0f32; rows * targets];
                for r in 0..rows {
                    let row = &data[r * cols..(r + 1) * cols];
                    let o = &mut out[r * targets..(r + 1) * targets];
                    for (t, v) in o.iter_mut().enumerate() {
                        *v = dot(row, &coefficients[t * cols..(t + 1) * cols])
                            + intercepts.get(t).copied().unwrap_or(0.0);
                    }
                    post.apply(o);
                }
                Ok(vec![tensor(out, &[rows, *targets], device)?])
            }
            MlOp::LinearClassifier {
                coefficients,
                intercepts,
                labels,
                post,
            } => {
                let (data, rows, cols) = f32_matrix(x)?;
                let classes = coefficients.len() / cols.max(1);
                let n_labels = labels.len();
                let binary_one = classes == 1 && n_labels == 2;
                let width = if binary_one { 2 } else { classes };
                let mut scores = vec![0f32; rows * width];
                let mut winners = Vec::with_capacity(rows);
                for r in 0..rows {
                    let row = &data[r * cols..(r + 1) * cols];
                    let s = &mut scores[r * width..(r + 1) * width];
                    if binary_one {
                        let z = dot(row, &coefficients[..cols])
                            + intercepts.first().copied().unwrap_or(0.0);
                        // ONNX Runtime: one score for class 1; class 0 gets its complement.
                        match post {
                            Post::Logistic => {
                                let p = 1.0 / (1.0 + (-z).exp());
                                s[0] = 1.0 - p;
                                s[1] = p;
                            }
                            _ => {
                                s[0] = -z;
                                s[1] = z;
                                post.apply(s);
                            }
                        }
                        winners.push(usize::from(z > 0.0));
                    } else {
                        for (c, v) in s.iter_mut().enumerate() {
                            *v = dot(row, &coefficients[c * cols..(c + 1) * cols])
                                + intercepts.get(c).copied().unwrap_or(0.0);
                        }
                        let best = argmax(s);
                        post.apply(s);
                        winners.push(best);
                    }
                }
                Ok(vec![
                    labels.value(&winners, device)?,
                    tensor(scores, &[rows, width], device)?,
                ])
            }
            MlOp::TreeRegressor { ensemble, post } => {
                let (data, rows, cols) = f32_matrix(x)?;
                let margins = ensemble.margins(&Numeric::F32(data), cols, rows);
                let k = ensemble.outputs;
                let mut out: Vec<f32> = margins.iter().map(|v| *v as f32).collect();
                for r in 0..rows {
                    post.apply(&mut out[r * k..(r + 1) * k]);
                }
                Ok(vec![tensor(out, &[rows, k], device)?])
            }
            MlOp::TreeClassifier {
                ensemble,
                labels,
                post,
                binary,
            } => {
                let (data, rows, cols) = f32_matrix(x)?;
                let margins = ensemble.margins(&Numeric::F32(data), cols, rows);
                let k = ensemble.outputs;
                let width = if *binary { 2 } else { k };
                let mut scores = vec![0f32; rows * width];
                let mut winners = Vec::with_capacity(rows);
                for r in 0..rows {
                    let s = &mut scores[r * width..(r + 1) * width];
                    if *binary {
                        let p = margins[r] as f32;
                        match post {
                            Post::Logistic => {
                                let q = 1.0 / (1.0 + (-p).exp());
                                s[0] = 1.0 - q;
                                s[1] = q;
                                winners.push(usize::from(q > 0.5));
                            }
                            _ => {
                                s[0] = 1.0 - p;
                                s[1] = p;
                                winners.push(usize::from(p > 0.5));
                            }
                        }
                    } else {
                        for (c, v) in s.iter_mut().enumerate() {
                            *v = margins[r * k + c] as f32;
                        }
                        winners.push(argmax(s));
                        post.apply(s);
                    }
                }
                Ok(vec![
                    labels.value(&winners, device)?,
                    tensor(scores, &[rows, width], device)?,
                ])
            }
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, x)| {
            if *x > best.1 { (i, *x) } else { best }
        })
        .0
}

fn tensor(data: Vec<f32>, dims: &[usize], device: &Device) -> R<Value> {
    Tensor::from_vec(data, dims, device)
        .map(Value::Tensor)
        .map_err(|e| e.to_string())
}

/// A value as a row-major float matrix: (values, rows, columns).
fn f32_matrix(v: &Value) -> R<(Vec<f32>, usize, usize)> {
    let t = v.tensor("the input")?;
    let dims = t.dims().to_vec();
    let (rows, cols) = match dims.as_slice() {
        [n] => (*n, 1),
        [n, c] => (*n, *c),
        other => return Err(format!("expected a matrix, got shape {other:?}")),
    };
    let data = t
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| e.to_string())?;
    Ok((data, rows, cols))
}

fn int_values(v: &Value) -> R<Vec<i64>> {
    v.tensor("indices")?
        .to_dtype(DType::I64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<i64>())
        .map_err(|e| e.to_string())
}

/// Applies `f` to each row of a float matrix.
fn map_rows(x: &Value, device: &Device, f: impl Fn(&mut [f32])) -> R<Vec<Value>> {
    let (mut data, rows, cols) = f32_matrix(x)?;
    for r in 0..rows {
        f(&mut data[r * cols..(r + 1) * cols]);
    }
    Ok(vec![tensor(data, &[rows, cols], device)?])
}

/// Builds an [`Ensemble`] from TreeEnsemble attributes; `prefix` is `target` or `class`.
fn tree_ensemble(a: &Attrs<'_>, prefix: &str, outputs: usize) -> R<Ensemble> {
    let tree_ids = a.ints("nodes_treeids");
    let node_ids = a.ints("nodes_nodeids");
    let features = a.ints("nodes_featureids");
    let values = a.floats_or_tensor("nodes_values");
    let modes = a.strings("nodes_modes");
    let true_ids = a.ints("nodes_truenodeids");
    let false_ids = a.ints("nodes_falsenodeids");
    let tracks_true = a.ints("nodes_missing_value_tracks_true");
    let n = tree_ids.len();
    if [
        node_ids.len(),
        features.len(),
        values.len(),
        modes.len(),
        true_ids.len(),
        false_ids.len(),
    ]
    .iter()
    .any(|l| *l != n)
    {
        return Err("tree node attributes differ in length".into());
    }
    let t_tree = a.ints(&format!("{prefix}_treeids"));
    let t_node = a.ints(&format!("{prefix}_nodeids"));
    let t_id = a.ints(&format!("{prefix}_ids"));
    let t_weight = a.floats_or_tensor(&format!("{prefix}_weights"));
    if [t_node.len(), t_id.len(), t_weight.len()]
        .iter()
        .any(|l| *l != t_tree.len())
    {
        return Err(format!("{prefix} attributes differ in length"));
    }
    let aggregate = a
        .string("aggregate_function")
        .unwrap_or_else(|| "SUM".into());
    if aggregate != "SUM" && aggregate != "AVERAGE" {
        return Err(format!("aggregate_function {aggregate} is not supported"));
    }
    let base = a.floats_or_tensor("base_values");
    let mut e = Ensemble {
        outputs,
        base: if base.is_empty() {
            vec![0.0; outputs]
        } else {
            base
        },
        transform: Transform::Identity,
        features: features.iter().map(|f| *f as usize + 1).max().unwrap_or(0),
        round_to_f32: true,
        ..Default::default()
    };
    if e.base.len() != outputs {
        // Binary classifiers may carry two base values for one output.
        e.base = vec![e.base.last().copied().unwrap_or(0.0); outputs];
    }
    // Leaf contributions by (tree, node).
    let mut contributions: HashMap<(i64, i64), Vec<(u32, f64)>> = HashMap::new();
    for i in 0..t_tree.len() {
        contributions
            .entry((t_tree[i], t_node[i]))
            .or_default()
            .push((t_id[i] as u32, t_weight[i]));
    }
    // Node index by (tree, node id); trees in order of first appearance.
    let mut index: HashMap<(i64, i64), u32> = HashMap::new();
    let mut trees: Vec<i64> = Vec::new();
    for i in 0..n {
        if !trees.contains(&tree_ids[i]) {
            trees.push(tree_ids[i]);
        }
        index.insert((tree_ids[i], node_ids[i]), i as u32);
    }
    let mut leaf_per_tree: HashMap<i64, u32> = HashMap::new();
    // First pass: one entry per node, leaves pointing at their contributions.
    for i in 0..n {
        let key = (tree_ids[i], node_ids[i]);
        if modes[i] == "LEAF" {
            let c = contributions.get(&key).cloned().unwrap_or_default();
            let start = e.leaf_values.len() as u32;
            e.leaf_values.extend(
                c.iter()
                    .map(|(o, w)| (if (*o as usize) < outputs { *o } else { 0 }, *w)),
            );
            e.nodes.push(Node::Leaf {
                start,
                len: c.len() as u32,
            });
            *leaf_per_tree.entry(tree_ids[i]).or_default() += 1;
        } else {
            let cond = match modes[i].as_str() {
                "BRANCH_LEQ" => Cond::Le,
                "BRANCH_LT" => Cond::Lt,
                "BRANCH_GTE" => Cond::Ge,
                "BRANCH_GT" => Cond::Gt,
                "BRANCH_EQ" => Cond::Eq,
                "BRANCH_NEQ" => Cond::Ne,
                other => return Err(format!("node mode {other} is not supported")),
            };
            let child = |id: i64| {
                index.get(&(tree_ids[i], id)).copied().ok_or_else(|| {
                    format!(
                        "node {} of tree {} points to a missing node {id}",
                        node_ids[i], tree_ids[i]
                    )
                })
            };
            e.nodes.push(Node::Split {
                feature: features[i] as u32,
                threshold: f64::from(values[i] as f32),
                cond,
                missing: Missing::Nan,
                default_left: tracks_true.get(i).copied().unwrap_or(0) == 1,
                left: child(true_ids[i])?,
                right: child(false_ids[i])?,
            });
        }
    }
    // Roots: the node with id 0 of each tree (or its first node).
    for t in &trees {
        let root = index
            .get(&(*t, 0))
            .copied()
            .or_else(|| (0..n).find(|i| tree_ids[*i] == *t).map(|i| i as u32))
            .ok_or("a tree without nodes")?;
        e.roots.push(root);
    }
    e.average = aggregate == "AVERAGE";
    Ok(e)
}
