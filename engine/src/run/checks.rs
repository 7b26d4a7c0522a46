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
    let unscored_fraction = if rows.written == 0 {
        0.0
    } else {
        rows.unscored as f64 / rows.written as f64
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
            detail: format!(
                "{} of {} rows unscored ({:.4}), at most {} allowed",
                rows.unscored, rows.written, unscored_fraction, checks.max_unscored_fraction
            ),
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
    use super::*;

    #[test]
    fn gates_trip_at_their_limits() {
        let checks = Checks {
            min_rows: 10,
            max_unscored_fraction: 0.1,
        };
        let ok = RowCounts {
            read: 20,
            written: 20,
            unscored: 2,
        };
        assert!(failures(&evaluate(&checks, &ok)).is_empty());
        let bad = RowCounts {
            read: 9,
            written: 9,
            unscored: 1,
        };
        let f = failures(&evaluate(&checks, &bad));
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].starts_with("min_rows: 9 rows written"));
        assert!(f[1].starts_with("max_unscored_fraction: 1 of 9"));
    }
}
