//! `predict('<model>', feature, ...)`: score rows with a model from the session's catalog.

use std::sync::LazyLock;

use datafusion::common::plan_err;
use datafusion::error::Result;
use datafusion::logical_expr::{DocSection, Documentation};

use crate::functions::scoring::{ScoringFunc, ScoringKind};

pub use crate::functions::scoring::PREDICTION_METADATA;

/// The SQL name of the function.
pub const NAME: &str = "predict";

/// Scores rows with a model: `predict('churn', tenure, charges, ...)`.
///
/// The first argument names a model of the session's catalog; the others are its features, in
/// the order the model's manifest declares its inputs. The result is the model's one output
/// (`FLOAT`, `BIGINT` label, `VARCHAR` label or a fixed-size list of floats), or a struct with one
/// field per declared output. Rows whose features break the input contract (see
/// [`crate::features`]) get `NULL`.
pub type PredictFunc = ScoringFunc<Predict>;

/// The kind of [`PredictFunc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Predict;

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DocSection {
            include: true,
            label: "Scoring Functions",
            description: Some("Functions that run the job's models on rows."),
        },
        "Scores each row with a model declared by the job. Arguments after the model name are \
         the model's inputs in the order its manifest declares them; integers, decimals and \
         booleans are converted to the input's type. Returns the model's output (FLOAT, a BIGINT \
         or VARCHAR label, or a list of FLOATs), or a struct with one field per declared output. \
         Rows with a NULL, NaN, infinite or out-of-range feature get NULL, except for models \
         that route missing values themselves (tree ensembles, imputing pipelines).",
        "predict('<model>', feature_1[, ..., feature_n])",
    )
    .with_sql_example(
        "SELECT customer_id, predict('churn', tenure_months, monthly_charges, support_calls) AS churn_probability\nFROM customers",
    )
    .with_argument("model", "Name of a model declared in the job's [models] table, as a string literal.")
    .with_argument("feature_i", "Expression for the model's i-th declared input.")
    .build()
});

impl ScoringKind for Predict {
    const NAME: &'static str = NAME;

    fn check_arity(count: usize) -> Result<()> {
        if count < 2 {
            return plan_err!(
                "{NAME} needs a model name and at least one feature, got {count} arguments"
            );
        }
        Ok(())
    }

    fn documentation() -> &'static Documentation {
        &DOCUMENTATION
    }
}
