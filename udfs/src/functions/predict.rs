//! `predict('<model>', feature, ...)`: score rows with a model from the session's catalog.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, Float32Array, StructArray};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, DocSection, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

use crate::cache::ModelLoader;
use crate::catalog::{ModelCatalog, ModelRef};
use crate::error::Error;
use crate::features::{FeatureMatrix, accepts};

/// The SQL name of the function.
pub const NAME: &str = "predict";

/// Field metadata key naming the model whose prediction a column holds. Set on the return
/// field, it follows the column through projections into the output schema, so the engine can
/// count unscored rows and readers can see which model produced a column.
pub const PREDICTION_METADATA: &str = "scorch.model";

/// Scores rows with a model: `predict('churn', tenure, charges, ...)`.
///
/// The first argument names a model of the session's [`ModelCatalog`]; the others are its
/// features, in the order the model's manifest declares its inputs. The result is `FLOAT`
/// for a model with one output, or a struct with one `FLOAT` field per output. Rows whose
/// features break the input contract (see [`crate::features`]) get `NULL`.
///
/// The function specialises itself from the session configuration
/// ([`ScalarUDFImpl::with_updated_config`]), so the planner on any process that receives the
/// configuration can type-check calls without having seen the job file.
#[derive(Debug, Clone)]
pub struct PredictFunc {
    signature: Signature,
    loader: ModelLoader,
    catalog: Arc<ModelCatalog>,
}

impl PredictFunc {
    /// A `predict` that loads models with `loader` and knows the models of `catalog`.
    pub fn new(loader: ModelLoader, catalog: Arc<ModelCatalog>) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            loader,
            catalog,
        }
    }

    fn model_name<'a>(args: &'a [Option<&'a ScalarValue>]) -> Result<&'a str> {
        match args.first() {
            Some(Some(
                ScalarValue::Utf8(Some(name))
                | ScalarValue::LargeUtf8(Some(name))
                | ScalarValue::Utf8View(Some(name)),
            )) => Ok(name),
            _ => plan_err!(
                "{NAME}: the first argument must be a model name as a string literal, e.g. {NAME}('churn', col_a, col_b)"
            ),
        }
    }

    fn check_arguments(model: &ModelRef, arg_fields: &[FieldRef]) -> Result<(), Error> {
        let features = &arg_fields[1..];
        let bad = |reason: String| Error::BadArguments {
            function: NAME,
            model: model.name.clone(),
            reason,
        };
        if features.len() != model.inputs.len() {
            let declared: Vec<String> = model
                .inputs
                .iter()
                .map(|i| format!("{} {}", i.name, i.dtype))
                .collect();
            return Err(bad(format!(
                "expected {} features ({}), got {}",
                model.inputs.len(),
                declared.join(", "),
                features.len()
            )));
        }
        for (position, (field, input)) in features.iter().zip(&model.inputs).enumerate() {
            if !accepts(input.dtype, field.data_type()) {
                return Err(bad(format!(
                    "argument {} (`{}`) has type {}, but input `{}` expects {}",
                    position + 2,
                    field.name(),
                    field.data_type(),
                    input.name,
                    input.dtype
                )));
            }
        }
        Ok(())
    }

    /// The SQL type of a model's prediction.
    pub fn output_type(model: &ModelRef) -> DataType {
        if model.outputs.len() == 1 {
            DataType::Float32
        } else {
            DataType::Struct(output_fields(model))
        }
    }
}

fn output_fields(model: &ModelRef) -> Fields {
    model
        .outputs
        .iter()
        .map(|o| Field::new(&o.name, DataType::Float32, true))
        .collect()
}

impl PartialEq for PredictFunc {
    fn eq(&self, other: &Self) -> bool {
        self.catalog == other.catalog
    }
}

impl Eq for PredictFunc {}

impl Hash for PredictFunc {
    fn hash<H: Hasher>(&self, state: &mut H) {
        NAME.hash(state);
        for model in self.catalog.iter() {
            model.name.hash(state);
            model.sha256.hash(state);
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
         booleans are converted to the input's type. Returns FLOAT for a single-output model, \
         or a struct with one FLOAT field per declared output. Rows with a NULL, NaN, infinite \
         or out-of-range feature get NULL.",
        "predict('<model>', feature_1[, ..., feature_n])",
    )
    .with_sql_example(
        "SELECT customer_id, predict('churn', tenure_months, monthly_charges, support_calls) AS churn_probability\nFROM customers",
    )
    .with_argument("model", "Name of a model declared in the job's [models] table, as a string literal.")
    .with_argument("feature_i", "Numeric or boolean expression for the model's i-th declared input.")
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
        // which sees the model name; values are converted to f32 when the batch is scored.
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!(
            "{NAME}: the return type depends on the model; it is computed from the model name"
        )
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let name = Self::model_name(args.scalar_arguments)?;
        let model = self.catalog.get(name)?;
        Self::check_arguments(model, args.arg_fields)?;
        let metadata = HashMap::from([(PREDICTION_METADATA.to_string(), model.name.clone())]);
        Ok(Arc::new(
            Field::new(NAME, Self::output_type(model), true).with_metadata(metadata),
        ))
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let catalog = ModelCatalog::from_config(config);
        (catalog != *self.catalog)
            .then(|| ScalarUDF::new_from_impl(Self::new(self.loader.clone(), Arc::new(catalog))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = match args.args.first() {
            Some(ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(n))
                | ScalarValue::LargeUtf8(Some(n))
                | ScalarValue::Utf8View(Some(n)),
            )) => n.clone(),
            _ => return exec_err!("{NAME}: the first argument must be a model name literal"),
        };
        // The configuration that travels with the plan is authoritative; fall back to the
        // catalog this instance was built with.
        let catalog = ModelCatalog::in_config(&args.config_options).unwrap_or(&self.catalog);
        let model_ref = catalog.get(&name)?;
        let model = self.loader.load_blocking(model_ref)?;

        let rows = args.number_rows;
        let columns = args.args[1..]
            .iter()
            .map(|c| c.to_array(rows))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let features = FeatureMatrix::try_new(&name, &columns, &model_ref.inputs)?;
        let values = model.predict(&features)?;
        let width = model.num_outputs();
        if values.len() != features.scored_rows() * width {
            return exec_err!(
                "{NAME}('{name}'): the model returned {} values for {} rows x {width} outputs",
                values.len(),
                features.scored_rows()
            );
        }
        let nulls = features.valid.clone().map(NullBuffer::new);
        let column = |output: usize| -> ArrayRef {
            let mut dense = vec![0f32; rows];
            match &features.valid {
                None => dense
                    .iter_mut()
                    .zip(values.iter().skip(output).step_by(width))
                    .for_each(|(d, v)| *d = *v),
                Some(valid) => valid
                    .set_indices()
                    .zip(values.iter().skip(output).step_by(width))
                    .for_each(|(row, v)| dense[row] = *v),
            }
            Arc::new(Float32Array::new(ScalarBuffer::from(dense), nulls.clone()))
        };
        let array: ArrayRef = if width == 1 {
            column(0)
        } else {
            let arrays = (0..width).map(column).collect();
            Arc::new(StructArray::try_new(
                output_fields(model_ref),
                arrays,
                nulls.clone(),
            )?)
        };
        debug_assert_eq!(array.len(), rows);
        Ok(ColumnarValue::Array(array))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}
