//! Quality gates: decide, after scoring and before publishing, whether a run may publish.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::job::Checks;
use crate::run::drift::ModelDrift;
use crate::run::manifest::RowCounts;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Check name, as in the job's `[checks]`.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Measured value against the limit, in words.
    pub detail: String,
    /// The measured value (for drift checks, the largest one measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The limit (for `max_feature_psi`, the one not overridden per input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
}

/// Evaluates the job's checks against a run's row counts and drift.
pub fn evaluate(
    checks: &Checks,
    rows: &RowCounts,
    drift: &BTreeMap<String, ModelDrift>,
) -> Vec<CheckResult> {
    // Per model, of the rows it was called on: the counts come from the scoring functions, so
    // a query that filters on its prediction (inside the scan or after it) still shows every
    // row the model declined. A row scored twice (in WHERE and in SELECT) counts twice on both
    // sides of the fraction.
    let worst = rows
        .models
        .iter()
        .map(|(name, m)| {
            let fraction = if m.rows == 0 {
                0.0
            } else {
                m.unscored as f64 / m.rows as f64
            };
            (fraction, name.as_str(), m.unscored, m.rows)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let (unscored_fraction, unscored_detail) = match worst {
        Some((fraction, name, unscored, of)) => (
            fraction,
            format!(
                "model {name}: {unscored} of {of} rows unscored ({fraction:.4}), at most {} allowed",
                checks.max_unscored_fraction
            ),
        ),
        None => (0.0, "no model scored".to_string()),
    };
    let mut results = vec![
        CheckResult {
            name: "min_rows".into(),
            passed: rows.written >= checks.min_rows,
            detail: format!(
                "{} rows written, at least {} required",
                rows.written, checks.min_rows
            ),
            value: Some(rows.written as f64),
            limit: Some(checks.min_rows as f64),
        },
        CheckResult {
            name: "max_unscored_fraction".into(),
            passed: unscored_fraction <= checks.max_unscored_fraction,
            detail: unscored_detail,
            value: Some(unscored_fraction),
            limit: Some(checks.max_unscored_fraction),
        },
    ];
    results.extend(drift_checks(checks, drift));
    results
}

/// What was measured, its value and its limit.
type Measured = (String, f64, f64);

/// One result per drift check the job sets and per profiled model: every measured value against
/// its limit, the ones past it first.
fn drift_checks(checks: &Checks, drift: &BTreeMap<String, ModelDrift>) -> Vec<CheckResult> {
    let mut results = Vec::new();
    for (model, d) in drift {
        let mut kinds: Vec<(&str, Option<f64>, Vec<Measured>)> = Vec::new();
        let features: Vec<Measured> = d
            .features
            .iter()
            .filter_map(|(f, psi)| {
                let limit = checks
                    .feature_psi
                    .get(f)
                    .copied()
                    .or(checks.max_feature_psi)?;
                Some((f.clone(), *psi, limit))
            })
            .collect();
        if checks.max_feature_psi.is_some() || !checks.feature_psi.is_empty() {
            kinds.push(("max_feature_psi", checks.max_feature_psi, features));
        }
        if let Some(limit) = checks.max_output_psi {
            let values = d
                .outputs
                .iter()
                .filter_map(|(o, v)| Some((o.clone(), v.psi?, limit)))
                .collect();
            kinds.push(("max_output_psi", Some(limit), values));
        }
        if let Some(limit) = checks.max_output_ks {
            let values = d
                .outputs
                .iter()
                .filter_map(|(o, v)| Some((o.clone(), v.ks?, limit)))
                .collect();
            kinds.push(("max_output_ks", Some(limit), values));
        }
        for (name, limit, mut values) in kinds {
            values.sort_by(|a, b| (b.1 - b.2).total_cmp(&(a.1 - a.2)));
            let failed = values.iter().filter(|(_, v, limit)| v > limit).count();
            let listed: Vec<String> = values
                .iter()
                .take(5)
                .map(|(what, v, limit)| {
                    let op = if v > limit { ">" } else { "<=" };
                    format!("{what} {v:.4} {op} {limit}")
                })
                .collect();
            results.push(CheckResult {
                name: name.to_string(),
                passed: failed == 0,
                detail: format!(
                    "model {model}: {failed} of {} past the limit; {}",
                    values.len(),
                    listed.join(", ")
                ),
                value: values.iter().map(|(_, v, _)| *v).reduce(f64::max),
                limit,
            });
        }
    }
    results
}

/// The failed checks' details, one line each.
pub fn failures(results: &[CheckResult]) -> Vec<String> {
    results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{}: {}", r.name, r.detail))
        .collect()
}

#[cfg(test)]
mod tests {
    use scorch_udfs::unscored::ModelCounts;

    use super::*;

    fn with_model(written: u64, called: u64, unscored: u64) -> RowCounts {
        RowCounts {
            read: written,
            written,
            unscored,
            models: BTreeMap::from([(
                "churn".to_string(),
                ModelCounts {
                    rows: called,
                    unscored,
                    ..ModelCounts::default()
                },
            )]),
        }
    }

    #[test]
    fn gates_trip_at_their_limits() {
        let checks = Checks {
            min_rows: 10,
            max_unscored_fraction: 0.1,
            ..Checks::default()
        };
        assert!(failures(&evaluate(&checks, &with_model(20, 20, 2), &BTreeMap::new())).is_empty());
        let f = failures(&evaluate(&checks, &with_model(9, 9, 1), &BTreeMap::new()));
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].starts_with("min_rows: 9 rows written"));
        assert!(
            f[1].starts_with("max_unscored_fraction: model churn: 1 of 9 rows unscored (0.1111)"),
            "{f:?}"
        );
        // A query that filtered the unscored rows away wrote 10 rows; the model saw 100.
        let f = failures(&evaluate(
            &checks,
            &with_model(10, 100, 20),
            &BTreeMap::new(),
        ));
        assert_eq!(
            f,
            vec![
                "max_unscored_fraction: model churn: 20 of 100 rows unscored (0.2000), at most 0.1 allowed"
            ]
        );
        let none = RowCounts {
            read: 10,
            written: 10,
            ..RowCounts::default()
        };
        assert!(failures(&evaluate(&checks, &none, &BTreeMap::new())).is_empty());
    }

    #[test]
    fn drift_checks_use_per_feature_limits_and_list_the_worst_first() {
        let checks = Checks {
            max_feature_psi: Some(0.2),
            feature_psi: BTreeMap::from([("noisy".to_string(), 0.5)]),
            max_output_ks: Some(0.1),
            ..Checks::default()
        };
        let drift = BTreeMap::from([(
            "churn".to_string(),
            ModelDrift {
                profile_rows: 1000,
                features: BTreeMap::from([
                    ("noisy".to_string(), 0.4),
                    ("charges".to_string(), 0.9),
                    ("tenure".to_string(), 0.01),
                ]),
                outputs: BTreeMap::from([(
                    "p".to_string(),
                    crate::run::drift::OutputDrift {
                        psi: Some(0.3),
                        ks: Some(0.05),
                        ks_p_value: Some(0.2),
                        ..Default::default()
                    },
                )]),
            },
        )]);
        let results = evaluate(&checks, &with_model(20, 20, 0), &drift);
        let f = failures(&results);
        assert_eq!(
            f,
            vec![
                "max_feature_psi: model churn: 1 of 3 past the limit; charges 0.9000 > 0.2, noisy 0.4000 <= 0.5, tenure 0.0100 <= 0.2"
            ]
        );
        assert!(
            results
                .iter()
                .any(|r| r.name == "max_output_ks" && r.passed)
        );
        assert!(
            !results.iter().any(|r| r.name == "max_output_psi"),
            "not set, not checked"
        );
    }
}
