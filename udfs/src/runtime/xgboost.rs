//! XGBoost models saved as JSON (`save_model("model.json")`), evaluated natively.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::package::ModelPackage;
use crate::runtime::trees::{Cond, Ensemble, Missing, Node, Transform, TreeModel};

#[derive(Deserialize)]
struct File {
    learner: Learner,
}

#[derive(Deserialize)]
struct Learner {
    learner_model_param: LearnerParam,
    gradient_booster: Booster,
    objective: Objective,
    #[serde(default)]
    feature_names: Vec<String>,
}

#[derive(Deserialize)]
struct LearnerParam {
    base_score: String,
    #[serde(default)]
    num_class: String,
    num_feature: String,
    #[serde(default)]
    num_target: Option<String>,
}

#[derive(Deserialize)]
struct Objective {
    name: String,
}

#[derive(Deserialize)]
struct Booster {
    name: String,
    #[serde(default)]
    model: Option<GbTree>,
    #[serde(default)]
    gbtree: Option<Box<Booster>>,
    #[serde(default)]
    weight_drop: Vec<f64>,
}

#[derive(Deserialize)]
struct GbTree {
    trees: Vec<Tree>,
    tree_info: Vec<usize>,
}

#[derive(Deserialize)]
struct Tree {
    left_children: Vec<i64>,
    right_children: Vec<i64>,
    split_indices: Vec<u32>,
    split_conditions: Vec<f64>,
    default_left: Vec<u8>,
    #[serde(default)]
    split_type: Vec<u8>,
}

/// How `base_score` (in prediction space) becomes a margin.
type ToMargin = fn(f64) -> f64;

/// The transform of an objective, and how `base_score` becomes a margin.
fn objective(name: &str) -> Option<(Transform, ToMargin)> {
    let logit = |p: f64| (p / (1.0 - p)).ln();
    Some(match name {
        "binary:logistic" | "reg:logistic" => (Transform::Sigmoid(1.0), logit),
        "binary:logitraw" => (Transform::Identity, logit),
        "multi:softprob" | "multi:softmax" => (Transform::Softmax, |b| b),
        "count:poisson" | "reg:gamma" | "reg:tweedie" | "survival:cox" => (Transform::Exp, f64::ln),
        "reg:squarederror"
        | "reg:squaredlogerror"
        | "reg:pseudohubererror"
        | "reg:absoluteerror"
        | "reg:quantileerror"
        | "reg:linear"
        | "rank:pairwise"
        | "rank:ndcg"
        | "rank:map" => (Transform::Identity, |b| b),
        _ => return None,
    })
}

fn parse_list(text: &str) -> Vec<f64> {
    text.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// Parses the package's XGBoost JSON and checks it against the manifest.
pub fn load(name: &str, package: &ModelPackage) -> Result<TreeModel> {
    let bad = |reason: String| Error::InvalidWeights {
        name: name.to_string(),
        reason,
    };
    let spec = package
        .manifest
        .xgboost
        .as_ref()
        .ok_or_else(|| bad("the manifest has no [xgboost] section".into()))?;
    let bytes = package.artifact(&spec.file)?;
    let file: File = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("`{}` is not an XGBoost JSON model: {e}", spec.file)))?;
    let learner = file.learner;
    let (transform, to_margin) = objective(&learner.objective.name).ok_or_else(|| {
        bad(format!(
            "objective `{}` is not supported",
            learner.objective.name
        ))
    })?;
    let num_class: usize = learner.learner_model_param.num_class.parse().unwrap_or(0);
    let num_target: usize = learner
        .learner_model_param
        .num_target
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let outputs = num_class.max(num_target).max(1);
    let features: usize = learner
        .learner_model_param
        .num_feature
        .parse()
        .map_err(|_| bad("num_feature is not a number".into()))?;
    let base_scores = parse_list(&learner.learner_model_param.base_score);
    let base: Vec<f64> = match base_scores.len() {
        0 => return Err(bad("base_score is missing".into())),
        1 => vec![to_margin(base_scores[0]); outputs],
        n if n == outputs => base_scores.iter().map(|b| to_margin(*b)).collect(),
        n => return Err(bad(format!("{n} base scores for {outputs} outputs"))),
    };
    let (booster, weights) = match learner.gradient_booster.name.as_str() {
        "gbtree" => (learner.gradient_booster, None),
        "dart" => {
            let weights = learner.gradient_booster.weight_drop.clone();
            let inner = learner
                .gradient_booster
                .gbtree
                .ok_or_else(|| bad("a dart booster without its trees".into()))?;
            (*inner, Some(weights))
        }
        other => {
            return Err(bad(format!(
                "booster `{other}` is not supported (gbtree and dart are)"
            )));
        }
    };
    let model = booster
        .model
        .ok_or_else(|| bad("the booster holds no trees".into()))?;
    if model.tree_info.len() != model.trees.len() {
        return Err(bad("tree_info and trees differ in length".into()));
    }
    let mut ensemble = Ensemble {
        outputs,
        base,
        transform,
        features,
        round_to_f32: true,
        ..Default::default()
    };
    for (t, (tree, class)) in model.trees.iter().zip(&model.tree_info).enumerate() {
        let weight = weights
            .as_ref()
            .and_then(|w| w.get(t).copied())
            .unwrap_or(1.0);
        if *class >= outputs {
            return Err(bad(format!(
                "tree {t} contributes to class {class} of {outputs}"
            )));
        }
        let root = add_tree(&mut ensemble, tree, *class as u32, weight)
            .map_err(|r| bad(format!("tree {t}: {r}")))?;
        ensemble.roots.push(root);
    }
    TreeModel::try_new(name, package, &spec.file, ensemble, learner.feature_names)
}

/// Appends one XGBoost tree; returns its root's index.
fn add_tree(
    e: &mut Ensemble,
    tree: &Tree,
    class: u32,
    weight: f64,
) -> std::result::Result<u32, String> {
    let n = tree.left_children.len();
    if [
        tree.right_children.len(),
        tree.split_indices.len(),
        tree.split_conditions.len(),
        tree.default_left.len(),
    ]
    .iter()
    .any(|l| *l != n)
    {
        return Err("node arrays differ in length".into());
    }
    if tree.split_type.iter().any(|t| *t != 0) {
        return Err("categorical splits in XGBoost models are not supported yet; one-hot encode the feature".into());
    }
    let offset = e.nodes.len() as u32;
    // Node i of the tree becomes node offset + i; leaf values go to leaf_values in node order.
    for i in 0..n {
        if tree.left_children[i] < 0 {
            let value = tree.split_conditions[i] * weight;
            e.leaf_values.push((class, value));
            e.nodes.push(Node::Leaf {
                start: (e.leaf_values.len() - 1) as u32,
                len: 1,
            });
        } else {
            let (l, r) = (tree.left_children[i], tree.right_children[i]);
            if l as usize >= n || r < 0 || r as usize >= n {
                return Err(format!("node {i} has children outside the tree"));
            }
            e.nodes.push(Node::Split {
                feature: tree.split_indices[i],
                // XGBoost compares in single precision (`Ensemble::round_to_f32`).
                threshold: f64::from(tree.split_conditions[i] as f32),
                cond: Cond::Lt,
                missing: Missing::Nan,
                default_left: tree.default_left[i] != 0,
                left: offset + l as u32,
                right: offset + r as u32,
            });
        }
    }
    Ok(offset)
}
