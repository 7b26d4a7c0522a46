//! `embed('<model>', text)`: a sentence embedding from an encoder in the session's catalog.

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
use crate::package::ModelFormat;

/// The SQL name of the function.
pub const NAME: &str = "embed";

/// Embeds text with a sentence encoder: `embed('minilm', description)` returns a fixed-size
/// list of floats, pooled and normalised as the encoder's configuration asks. NULL text gives
/// NULL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmbedFunc {
    signature: Signature,
    scorer: Scorer,
}

impl EmbedFunc {
    /// An `embed` that loads encoders with `loader` and knows the models of `catalog`.
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
        "Embeds text with a sentence encoder declared by the job (format `embedder`). Returns a \
         fixed-size list of FLOATs, pooled and normalised as the encoder's configuration asks. \
         Texts longer than the encoder's maximum length are truncated. NULL text gives NULL.",
        "embed('<model>', text)",
    )
    .with_sql_example(
        "SELECT ticket_id, embed('minilm', subject || ' ' || body) AS embedding\nFROM tickets",
    )
    .with_argument(
        "model",
        "Name of an embedder declared in the job's [models] table, as a string literal.",
    )
    .with_argument("text", "The text to embed (VARCHAR).")
    .build()
});

impl ScalarUDFImpl for EmbedFunc {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!(
                "{NAME} takes a model name and one text, got {} arguments",
                arg_types.len()
            );
        }
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
        if model.format != ModelFormat::Embedder {
            return plan_err!(
                "{NAME}('{name}'): `{name}` is a {} model, not an embedder; use predict()",
                model.format
            );
        }
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
