//! LightGBM models saved as text (`booster.save_model("model.txt")`), evaluated natively.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::package::ModelPackage;
use crate::runtime::trees::{Cond, Ensemble, Missing, Node, Transform, TreeModel};

/// `key=value` lines of one section.
fn section(lines: &[&str]) -> HashMap<String, String> {
    lines
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn numbers<T: std::str::FromStr>(
    map: &HashMap<String, String>,
    key: &str,
) -> std::result::Result<Vec<T>, String> {
    match map.get(key) {
        None => Ok(Vec::new()),
        Some(text) if text.is_empty() => Ok(Vec::new()),
        Some(text) => text
            .split_whitespace()
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| format!("`{key}` holds `{v}`, not a number"))
            })
            .collect(),
    }
}

/// The transform named by an `objective=` line, e.g. `binary sigmoid:1`.
fn objective(line: &str) -> std::result::Result<Transform, String> {
    let mut parts = line.split_whitespace();
    let name = parts.next().unwrap_or("regression");
    let param = |key: &str| -> Option<f64> {
        line.split_whitespace().find_map(|p| {
            p.strip_prefix(key)
                .and_then(|v| v.strip_prefix(':'))
                .and_then(|v| v.parse().ok())
        })
    };
    Ok(match name {
        "binary" => Transform::Sigmoid(param("sigmoid").unwrap_or(1.0)),
        "multiclass" | "softmax" => Transform::Softmax,
        "multiclassova" | "multiclass_ova" | "ova" | "ovr" => {
            Transform::Sigmoid(param("sigmoid").unwrap_or(1.0))
        }
        "cross_entropy" | "xentropy" => Transform::Sigmoid(1.0),
        "poisson" | "gamma" | "tweedie" => Transform::Exp,
        "regression" | "regression_l2" | "l2" | "mean_squared_error" | "mse" | "regression_l1"
        | "l1" | "huber" | "fair" | "quantile" | "mape" | "lambdarank" | "rank_xendcg"
        | "custom" => Transform::Identity,
        other => return Err(format!("objective `{other}` is not supported")),
    })
}

/// Parses the package's LightGBM text model and checks it against the manifest.
pub fn load(name: &str, package: &ModelPackage) -> Result<TreeModel> {
    let bad = |reason: String| Error::InvalidWeights {
        name: name.to_string(),
        reason,
    };
    let spec = package
        .manifest
        .lightgbm
        .as_ref()
        .ok_or_else(|| bad("the manifest has no [lightgbm] section".into()))?;
    let text = std::str::from_utf8(package.artifact(&spec.file)?).map_err(|_| {
        bad(format!(
            "`{}` is not a LightGBM text model (not UTF-8)",
            spec.file
        ))
    })?;
    let (ensemble, feature_names) =
        parse(text).map_err(|r| bad(format!("`{}`: {r}", spec.file)))?;
    TreeModel::try_new(name, package, &spec.file, ensemble, feature_names)
}

/// Parses a LightGBM text model into an ensemble and its feature names.
pub fn parse(text: &str) -> std::result::Result<(Ensemble, Vec<String>), String> {
    let body = text.split("end of trees").next().unwrap_or(text);
    let mut blocks = body.split("\nTree=");
    let header_lines: Vec<&str> = blocks.next().unwrap_or_default().lines().collect();
    if header_lines.first().is_none_or(|l| l.trim() != "tree") {
        return Err("not a LightGBM text model (it must start with `tree`)".into());
    }
    let header = section(&header_lines);
    let get = |k: &str| {
        header
            .get(k)
            .ok_or_else(|| format!("`{k}` is missing from the header"))
    };
    let per_iteration: usize = get("num_tree_per_iteration")?
        .parse()
        .map_err(|_| "bad num_tree_per_iteration")?;
    let features: usize = get("max_feature_idx")?
        .parse::<usize>()
        .map_err(|_| "bad max_feature_idx")?
        + 1;
    let transform = objective(
        header
            .get("objective")
            .map(String::as_str)
            .unwrap_or("regression"),
    )?;
    let average = header_lines.iter().any(|l| l.trim() == "average_output");
    let feature_names = header
        .get("feature_names")
        .map(|n| n.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let mut e = Ensemble {
        outputs: per_iteration.max(1),
        base: vec![0.0; per_iteration.max(1)],
        transform,
        features,
        average,
        ..Default::default()
    };
    for (t, block) in blocks.enumerate() {
        let lines: Vec<&str> = block.lines().collect();
        let tree = section(&lines);
        let class = (t % e.outputs) as u32;
        let root = add_tree(&mut e, &tree, class).map_err(|r| format!("tree {t}: {r}"))?;
        e.roots.push(root);
    }
    if e.roots.is_empty() {
        return Err("the model has no trees".into());
    }
    Ok((e, feature_names))
}

fn add_tree(
    e: &mut Ensemble,
    tree: &HashMap<String, String>,
    class: u32,
) -> std::result::Result<u32, String> {
    let num_leaves: usize = tree
        .get("num_leaves")
        .and_then(|v| v.parse().ok())
        .ok_or("num_leaves is missing")?;
    if tree.get("is_linear").is_some_and(|v| v == "1") {
        return Err("linear trees are not supported".into());
    }
    let leaf_value: Vec<f64> = numbers(tree, "leaf_value")?;
    if leaf_value.len() != num_leaves {
        return Err(format!(
            "{} leaf values for {num_leaves} leaves",
            leaf_value.len()
        ));
    }
    if num_leaves == 1 {
        return Ok(e.push_leaf(&[(class, leaf_value[0])]));
    }
    let split_feature: Vec<u32> = numbers(tree, "split_feature")?;
    let threshold: Vec<f64> = numbers(tree, "threshold")?;
    let decision_type: Vec<u32> = numbers(tree, "decision_type")?;
    let left: Vec<i64> = numbers(tree, "left_child")?;
    let right: Vec<i64> = numbers(tree, "right_child")?;
    let internal = num_leaves - 1;
    if [
        split_feature.len(),
        threshold.len(),
        decision_type.len(),
        left.len(),
        right.len(),
    ]
    .iter()
    .any(|l| *l != internal)
    {
        return Err("node arrays differ in length".into());
    }
    let cat_boundaries: Vec<u32> = numbers(tree, "cat_boundaries")?;
    let cat_threshold: Vec<u32> = numbers(tree, "cat_threshold")?;
    let bitset_offset = e.bitsets.len() as u32;
    e.bitsets.extend_from_slice(&cat_threshold);

    // Internal node i -> offset + i; leaf j -> offset + internal + j.
    let offset = e.nodes.len() as u32;
    let child = |c: i64| -> std::result::Result<u32, String> {
        if c >= 0 {
            if c as usize >= internal {
                return Err(format!("child {c} outside the tree"));
            }
            Ok(offset + c as u32)
        } else {
            let leaf = (!c) as usize;
            if leaf >= num_leaves {
                return Err(format!("leaf {leaf} outside the tree"));
            }
            Ok(offset + (internal + leaf) as u32)
        }
    };
    for i in 0..internal {
        let d = decision_type[i];
        let categorical = d & 1 == 1;
        let default_left = d & 2 == 2;
        let missing = match (d >> 2) & 3 {
            0 => Missing::NanAsZero,
            1 => Missing::NanOrZero,
            _ => Missing::Nan,
        };
        let cond = if categorical {
            let index = threshold[i] as usize;
            if index + 1 >= cat_boundaries.len() {
                return Err(format!(
                    "node {i} names category set {index}, which does not exist"
                ));
            }
            let (start, end) = (cat_boundaries[index], cat_boundaries[index + 1]);
            Cond::InSet {
                start: bitset_offset + start,
                len: end - start,
            }
        } else {
            Cond::Le
        };
        e.nodes.push(Node::Split {
            feature: split_feature[i],
            threshold: threshold[i],
            cond,
            // Categorical splits send NaN right whatever the missing type.
            missing: if categorical { Missing::Nan } else { missing },
            default_left: if categorical { false } else { default_left },
            left: child(left[i])?,
            right: child(right[i])?,
        });
    }
    for value in leaf_value {
        e.push_leaf(&[(class, value)]);
    }
    Ok(offset)
}
