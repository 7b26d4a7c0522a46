//! `predict('<model>', feature, ...)`: score rows with a model from the session's catalog.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::plan_err;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, DocSection, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

use crate::cache::ModelLoader;
use crate::catalog::ModelCatalog;
use crate::functions::scoring::{self, Scorer};

pub use crate::functions::scoring::PREDICTION_METADATA;

/// The SQL name of the function.
pub const NAME: &str = "predict";

/// Scores rows with a model: `predict('churn', tenure, charges, ...)`.
///
/// The first argument names a model of the session's [`ModelCatalog`]; the others are its
/// features, in the order the model's manifest declares its inputs. The result is the model's
/// one output (`FLOAT`, `BIGINT` label, `VARCHAR` label or a fixed-size list of floats), or a
/// struct with one field per declared output. Rows whose features break the input contract (see
/// [`crate::features`]) get `NULL`.
///
/// The function specialises itself from the session configuration
/// ([`ScalarUDFImpl::with_updated_config`]), so the planner on any process that receives the
/// configuration can type-check calls without having seen the job file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PredictFunc {
    signature: Signature,
    scorer: Scorer,
}

impl PredictFunc {
    /// A `predict` that loads models with `loader` and knows the models of `catalog`.
    pub fn new(loader: ModelLoader, catalog: Arc<ModelCatalog>) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            scorer: Scorer { loader, catalog },
        }
    }
}

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

impl ScalarUDFImpl for PredictFunc {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() < 2 {
            return plan_err!(
                "{NAME} needs a model name and at least one feature, got {} arguments",
                arg_types.len()
            );
        }
        // Types are checked against the model's declared inputs in `return_field_from_args`,
        // which sees the model name; values are converted when the batch is scored.
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!(
            "{NAME}: the return type depends on the model; it is computed from the model name"
        )
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let name = scoring::model_name(NAME, args.scalar_arguments)?;
        let model = self.scorer.catalog.get(name)?;
        scoring::check_arguments(NAME, model, args.arg_fields)?;
        Ok(scoring::return_field(NAME, model))
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let catalog = ModelCatalog::from_config(config);
        (catalog != *self.scorer.catalog).then(|| {
            ScalarUDF::new_from_impl(Self::new(self.scorer.loader.clone(), Arc::new(catalog)))
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.scorer.invoke(NAME, args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}
