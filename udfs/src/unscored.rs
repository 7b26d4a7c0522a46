//! Counting the rows a model declines to score, where it declines them.
//!
//! The scoring functions count, per model and per [`Reason`], every row they leave unscored, and
//! add the counts to a process-wide tally kept per run (the run id travels with the plan in
//! [`crate::ScorchOptions`]). The engine's writer tasks take what their process has tallied when
//! their input ends and report it beside the files they wrote, so a run collects the counts of
//! every partition, in process and on cluster executors alike. Counting in the function makes the
//! counts independent of what the query does with a prediction afterwards (rounding, `COALESCE`,
//! arithmetic, field access, filtering).

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};

use serde::{Deserialize, Serialize};

/// Why a row was not scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A feature is SQL `NULL`.
    Null,
    /// A feature is `NaN`.
    Nan,
    /// A feature is infinite.
    Infinite,
    /// A feature is below the manifest's `min`.
    BelowMin,
    /// A feature is above the manifest's `max`.
    AboveMax,
    /// A feature is finite but beyond the model's numeric type (a `DOUBLE` above 3.4e38 for a
    /// single-precision model).
    OutOfRange,
    /// The model returned a non-finite value (NaN or infinity) for the row.
    NonFinitePrediction,
}

impl Reason {
    /// Every reason, in the order of their codes.
    pub const ALL: [Reason; 7] = [
        Reason::Null,
        Reason::Nan,
        Reason::Infinite,
        Reason::BelowMin,
        Reason::AboveMax,
        Reason::OutOfRange,
        Reason::NonFinitePrediction,
    ];

    /// The name used in manifests and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Null => "null",
            Reason::Nan => "nan",
            Reason::Infinite => "infinite",
            Reason::BelowMin => "below_min",
            Reason::AboveMax => "above_max",
            Reason::OutOfRange => "out_of_range",
            Reason::NonFinitePrediction => "non_finite_prediction",
        }
    }

    /// A code from 1 (0 means "scored").
    pub(crate) fn code(self) -> u8 {
        self as u8 + 1
    }

    /// The reason of a non-zero code.
    pub(crate) fn from_code(code: u8) -> Option<Reason> {
        Reason::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one model did with the rows it was given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCounts {
    /// Rows the model was called on (a row a query scores twice, say in `WHERE` and in `SELECT`,
    /// counts twice).
    pub rows: u64,
    /// Rows left unscored (`NULL`).
    pub unscored: u64,
    /// Unscored rows by reason (the first failing input's reason).
    pub reasons: BTreeMap<Reason, u64>,
    /// Unscored rows by the first input that failed (absent for non-finite predictions).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, u64>,
    /// The inputs and outputs counted into the bins of the model's reference profile (models
    /// with a profile only; see [`crate::profile`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sketch: crate::profile::Sketch,
}

impl ModelCounts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &ModelCounts) {
        self.rows += other.rows;
        self.unscored += other.unscored;
        for (reason, n) in &other.reasons {
            *self.reasons.entry(*reason).or_default() += n;
        }
        for (input, n) in &other.inputs {
            *self.inputs.entry(input.clone()).or_default() += n;
        }
        crate::profile::merge_sketch(&mut self.sketch, &other.sketch);
    }
}

/// Counts by model name.
pub type Counts = BTreeMap<String, ModelCounts>;

/// Adds `other` into `into`.
pub fn merge(into: &mut Counts, other: &Counts) {
    for (model, counts) in other {
        into.entry(model.clone()).or_default().add(counts);
    }
}

static TALLY: LazyLock<Mutex<HashMap<String, Counts>>> = LazyLock::new(Default::default);

/// Adds one call's counts for `model` to run `run`'s tally in this process.
pub fn record(run: &str, model: &str, counts: &ModelCounts) {
    let mut tally = TALLY.lock().unwrap_or_else(|e| e.into_inner());
    tally
        .entry(run.to_string())
        .or_default()
        .entry(model.to_string())
        .or_default()
        .add(counts);
}

/// Takes (and clears) what this process has tallied for run `run`. Every count is taken exactly
/// once, by whichever caller comes first after it was recorded.
pub fn take(run: &str) -> Counts {
    let mut tally = TALLY.lock().unwrap_or_else(|e| e.into_inner());
    tally.remove(run).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_zero_is_scored() {
        for reason in Reason::ALL {
            assert_eq!(Reason::from_code(reason.code()), Some(reason));
        }
        assert_eq!(Reason::from_code(0), None);
        assert_eq!(Reason::from_code(8), None);
    }

    #[test]
    fn a_run_is_taken_once_and_runs_stay_apart() {
        let one = ModelCounts {
            rows: 10,
            unscored: 2,
            reasons: BTreeMap::from([(Reason::Null, 1), (Reason::AboveMax, 1)]),
            inputs: BTreeMap::from([("a".into(), 2)]),
            sketch: BTreeMap::from([("input:a".into(), vec![1, 2])]),
        };
        record("run-a", "m", &one);
        record("run-a", "m", &one);
        record("run-b", "m", &one);
        let a = take("run-a");
        assert_eq!(a["m"].rows, 20);
        assert_eq!(a["m"].reasons[&Reason::AboveMax], 2);
        assert_eq!(a["m"].inputs["a"], 4);
        assert_eq!(a["m"].sketch["input:a"], vec![2, 4]);
        assert!(take("run-a").is_empty());
        assert_eq!(take("run-b")["m"].unscored, 2);
    }

    #[test]
    fn counts_serialise_with_reason_names() {
        let counts = ModelCounts {
            rows: 3,
            unscored: 1,
            reasons: BTreeMap::from([(Reason::NonFinitePrediction, 1)]),
            inputs: BTreeMap::new(),
            sketch: BTreeMap::new(),
        };
        let json = serde_json::to_string(&counts).unwrap();
        assert_eq!(
            json,
            r#"{"rows":3,"unscored":1,"reasons":{"non_finite_prediction":1}}"#
        );
        assert_eq!(serde_json::from_str::<ModelCounts>(&json).unwrap(), counts);
    }
}
