//! Quality gates: decide, after scoring and before publishing, whether a run may publish.

use serde::{Deserialize, Serialize};

use crate::job::Checks;
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
}

/// Evaluates the job's checks against a run's row counts.
pub fn evaluate(checks: &Checks, rows: &RowCounts) -> Vec<CheckResult> {
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
    vec![
        CheckResult {
            name: "min_rows".into(),
            passed: rows.written >= checks.min_rows,
            detail: format!(
                "{} rows written, at least {} required",
                rows.written, checks.min_rows
            ),
        },
        CheckResult {
            name: "max_unscored_fraction".into(),
            passed: unscored_fraction <= checks.max_unscored_fraction,
            detail: unscored_detail,
        },
    ]
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
    use std::collections::BTreeMap;

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
        };
        assert!(failures(&evaluate(&checks, &with_model(20, 20, 2))).is_empty());
        let f = failures(&evaluate(&checks, &with_model(9, 9, 1)));
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].starts_with("min_rows: 9 rows written"));
        assert!(
            f[1].starts_with("max_unscored_fraction: model churn: 1 of 9 rows unscored (0.1111)"),
            "{f:?}"
        );
        // A query that filtered the unscored rows away wrote 10 rows; the model saw 100.
        let f = failures(&evaluate(&checks, &with_model(10, 100, 20)));
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
        assert!(failures(&evaluate(&checks, &none)).is_empty());
    }
}
