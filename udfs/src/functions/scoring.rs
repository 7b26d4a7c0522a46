//! What `predict` and `embed` share: the function itself ([`ScoringFunc`], parameterised by a
//! [`ScoringKind`]), resolving the model named by the first argument, checking the arguments
//! against its declared inputs at plan time, and scoring a batch into Arrow.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Int64Array, StringArray, StructArray,
};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

use crate::cache::ModelLoader;
use crate::catalog::{ModelCatalog, ModelRef, ScorchOptions};
use crate::error::Error;
use crate::features::{FeatureMatrix, accepts};
use crate::kernels::threads::Lease;
use crate::package::{OutputSpec, OutputType};
use crate::profile::{Profile, Sketch, count_ks};
use crate::rejects;
use crate::runtime::OutputColumn;
use crate::unscored::{self, Reason};

/// Field metadata key naming the model whose output a column holds. Set on the return field, it
/// follows the column through projections into the output schema, so the engine can count
/// unscored rows and readers can see which model produced a column.
pub const PREDICTION_METADATA: &str = "scorch.model";

/// The state both scoring functions carry: how to load models, and which models exist.
#[derive(Debug, Clone)]
pub struct Scorer {
    /// Loads models (process-wide cache).
    pub loader: ModelLoader,
    /// The models of the session.
    pub catalog: Arc<ModelCatalog>,
}

impl PartialEq for Scorer {
    fn eq(&self, other: &Self) -> bool {
        self.catalog == other.catalog
    }
}

impl Eq for Scorer {}

impl Hash for Scorer {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for model in self.catalog.iter() {
            model.name.hash(state);
            model.sha256.hash(state);
        }
    }
}

/// What tells one scoring function from another: its name, arity, which models it accepts and
/// its documentation. Everything else is [`ScoringFunc`].
pub trait ScoringKind:
    std::fmt::Debug + Clone + PartialEq + Eq + Hash + Default + Send + Sync + 'static
{
    /// The SQL name.
    const NAME: &'static str;

    /// Checks the number of arguments (model name included).
    fn check_arity(count: usize) -> Result<()>;

    /// Checks that the function may call `model`.
    fn check_model(_model: &ModelRef) -> Result<()> {
        Ok(())
    }

    /// User-facing documentation.
    fn documentation() -> &'static Documentation;
}

/// A scoring function of kind `K`: `K::NAME('<model>', args…)` resolves the model in the
/// session's catalog, type-checks the arguments against its declared inputs at plan time and
/// scores batches through the process-wide model cache.
///
/// The function specialises itself from the session configuration
/// ([`ScalarUDFImpl::with_updated_config`]), so the planner on any process that receives the
/// configuration can type-check calls without having seen the job file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScoringFunc<K: ScoringKind> {
    signature: Signature,
    scorer: Scorer,
    kind: K,
}

impl<K: ScoringKind> ScoringFunc<K> {
    /// A function that loads models with `loader` and knows the models of `catalog`.
    pub fn new(loader: ModelLoader, catalog: Arc<ModelCatalog>) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            scorer: Scorer { loader, catalog },
            kind: K::default(),
        }
    }
}

impl<K: ScoringKind> ScalarUDFImpl for ScoringFunc<K> {
    fn name(&self) -> &str {
        K::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        K::check_arity(arg_types.len())?;
        // Types are checked against the model's declared inputs in `return_field_from_args`,
        // which sees the model name; values are converted when the batch is scored.
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!(
            "{}: the return type depends on the model; it is computed from the model name",
            K::NAME
        )
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let name = model_name(K::NAME, args.scalar_arguments)?;
        let model = self.scorer.catalog.get(name)?;
        K::check_model(model)?;
        check_arguments(K::NAME, model, args.arg_fields)?;
        Ok(return_field(K::NAME, model))
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let catalog = ModelCatalog::from_config(config);
        (catalog != *self.scorer.catalog).then(|| {
            ScalarUDF::new_from_impl(Self::new(self.scorer.loader.clone(), Arc::new(catalog)))
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.scorer.invoke(K::NAME, args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(K::documentation())
    }
}

/// The model name given as the first argument of a call.
pub fn model_name<'a>(function: &str, args: &'a [Option<&'a ScalarValue>]) -> Result<&'a str> {
    match args.first() {
        Some(Some(
            ScalarValue::Utf8(Some(name))
            | ScalarValue::LargeUtf8(Some(name))
            | ScalarValue::Utf8View(Some(name)),
        )) => Ok(name),
        _ => plan_err!(
            "{function}: the first argument must be a model name as a string literal, e.g. {function}('churn', col_a, col_b)"
        ),
    }
}

/// Checks a call's feature arguments against the model's declared inputs.
pub fn check_arguments(
    function: &'static str,
    model: &ModelRef,
    arg_fields: &[FieldRef],
) -> Result<(), Error> {
    let features = &arg_fields[1..];
    // A trailing struct is the rejects' key columns, not a feature (see `crate::rejects`).
    let features =
        &features[..rejects::split_keys(features, model.inputs.len(), |f| f.data_type().clone())];
    let bad = |reason: String| Error::BadArguments {
        function,
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

fn output_type(o: &OutputSpec) -> DataType {
    match (o.dtype, o.size) {
        (OutputType::Float32, Some(n)) => DataType::FixedSizeList(
            Arc::new(Field::new("item", DataType::Float32, true)),
            n as i32,
        ),
        (OutputType::Float32, None) => DataType::Float32,
        (OutputType::Int64, _) => DataType::Int64,
        (OutputType::String, _) => DataType::Utf8,
    }
}

fn output_fields(model: &ModelRef) -> Fields {
    model
        .outputs
        .iter()
        .map(|o| Field::new(&o.name, output_type(o), true))
        .collect()
}

/// The SQL type of a model's output: the one output's type, or a struct of all outputs.
pub fn return_type(model: &ModelRef) -> DataType {
    if model.outputs.len() == 1 {
        output_type(&model.outputs[0])
    } else {
        DataType::Struct(output_fields(model))
    }
}

/// The return field of a call, tagged with the model's name.
pub fn return_field(function: &str, model: &ModelRef) -> FieldRef {
    let metadata = HashMap::from([(PREDICTION_METADATA.to_string(), model.name.clone())]);
    Arc::new(Field::new(function, return_type(model), true).with_metadata(metadata))
}

impl Scorer {
    /// Scores one batch: resolves the model from the plan's configuration (falling back to the
    /// catalog this function was built with), converts the features, runs the model, and builds
    /// the Arrow result with NULL for unscored rows.
    pub fn invoke(&self, function: &str, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = match args.args.first() {
            Some(ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(n))
                | ScalarValue::LargeUtf8(Some(n))
                | ScalarValue::Utf8View(Some(n)),
            )) => n.clone(),
            _ => return exec_err!("{function}: the first argument must be a model name literal"),
        };
        let catalog = ModelCatalog::in_config(&args.config_options).unwrap_or(&self.catalog);
        let model_ref = catalog.get(&name)?;
        let unavailable = |e: Error| Error::ModelUnavailable {
            name: name.clone(),
            uri: model_ref.uri.clone(),
            source: Box::new(e),
        };
        // The job's device and stores travel in the configuration, to processes that never
        // saw the job (cluster executors).
        let loader = match ScorchOptions::in_config(&args.config_options) {
            Some(options) => self.loader.for_session(options).map_err(unavailable)?,
            None => self.loader.clone(),
        };
        let model = loader.load_blocking(model_ref).map_err(unavailable)?;

        let rows = args.number_rows;
        let arguments = &args.args[1..];
        let feature_count =
            rejects::split_keys(arguments, model_ref.inputs.len(), ColumnarValue::data_type);
        let keys = match arguments.get(feature_count) {
            Some(keys) => Some(keys.to_array(rows)?),
            None => None,
        };
        let columns = arguments[..feature_count]
            .iter()
            .map(|c| c.to_array(rows))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let features = FeatureMatrix::try_new(
            &name,
            &columns,
            &model_ref.inputs,
            model.precision(),
            model.missing(),
        )?;
        // The call's share of the cores, held while the model runs and binding every runtime's
        // parallel loops.
        let lease = Lease::take();
        let values = lease.install(|| model.predict(&features))?;
        drop(lease);
        if values.len() != model_ref.outputs.len() {
            return exec_err!(
                "{function}('{name}'): the model returned {} outputs, {} are declared",
                values.len(),
                model_ref.outputs.len()
            );
        }
        let mut counts = features.counts(&model_ref.inputs);
        let nulls = non_finite_predictions(&features, model_ref, &values, &mut counts)?;
        let run = ScorchOptions::in_config(&args.config_options).and_then(|o| o.run_id.clone());
        let mut arrays = Vec::with_capacity(values.len());
        for (spec, column) in model_ref.outputs.iter().zip(values) {
            arrays.push(scatter(
                &name,
                spec,
                column,
                &features,
                rows,
                nulls.clone(),
            )?);
        }
        let array: ArrayRef = if arrays.len() == 1 {
            arrays.remove(0)
        } else {
            Arc::new(StructArray::try_new(
                output_fields(model_ref),
                arrays,
                nulls,
            )?)
        };
        debug_assert_eq!(array.len(), rows);
        if let Some(run) = run {
            if let Some(profile) = &model_ref.profile {
                counts.sketch = sketch(profile, model_ref, &columns, &array)?;
            }
            unscored::record(&run, &name, &counts);
            if let Some(keys) = keys
                .as_ref()
                .and_then(|k| k.as_any().downcast_ref::<StructArray>())
                && let Some(batch) = rejects::rejected_rows(
                    &name,
                    keys,
                    &features,
                    &model_ref.inputs,
                    &columns,
                    array.logical_nulls().as_ref(),
                )?
            {
                rejects::record(&run, batch);
            }
        }
        Ok(ColumnarValue::Array(array))
    }
}

/// One batch counted into the profile's bins: every input row (missing values in their own
/// bin), and the scored rows of each profiled output.
fn sketch(
    profile: &Profile,
    model: &ModelRef,
    columns: &[ArrayRef],
    result: &ArrayRef,
) -> Result<Sketch> {
    let mut sketch = Sketch::new();
    for (spec, column) in model.inputs.iter().zip(columns) {
        if let Some(distribution) = profile.features.get(&spec.name) {
            let mut counts = vec![0; distribution.bins()];
            distribution.count(column, None, &mut counts)?;
            sketch.insert(format!("input:{}", spec.name), counts);
        }
    }
    let outputs: Vec<ArrayRef> = match result.as_any().downcast_ref::<StructArray>() {
        Some(s) => s.columns().to_vec(),
        None => vec![Arc::clone(result)],
    };
    for (spec, column) in model.outputs.iter().zip(&outputs) {
        let Some(distribution) = profile.outputs.get(&spec.name) else {
            continue;
        };
        let scored: Vec<usize> = (0..column.len()).filter(|i| column.is_valid(*i)).collect();
        let mut counts = vec![0; distribution.bins()];
        distribution.count(column, Some(&scored), &mut counts)?;
        sketch.insert(format!("output:{}", spec.name), counts);
        let quantiles = distribution.quantiles();
        if let Some(values) = column.as_any().downcast_ref::<Float32Array>()
            && !quantiles.is_empty()
        {
            let mut counts = vec![0; quantiles.len() + 1];
            count_ks(
                quantiles,
                scored.iter().map(|&i| f64::from(values.value(i))),
                &mut counts,
            );
            sketch.insert(format!("ks:{}", spec.name), counts);
        }
    }
    Ok(sketch)
}

/// The validity of the result: the rows the features allowed, less those for which the model
/// returned a non-finite value (NaN or infinity in any output), which are counted in `counts` as
/// [`Reason::NonFinitePrediction`] and become NULL like every unscored row.
fn non_finite_predictions(
    features: &FeatureMatrix,
    model: &ModelRef,
    values: &[OutputColumn],
    counts: &mut unscored::ModelCounts,
) -> Result<Option<NullBuffer>> {
    let scored = features.scored_rows();
    let mut finite = vec![true; scored];
    for (spec, column) in model.outputs.iter().zip(values) {
        if let OutputColumn::F32(v) = column {
            let width = spec.width();
            if v.len() != scored * width {
                return exec_err!(
                    "model `{}` output `{}`: {} values for {scored} rows of width {width}",
                    model.name,
                    spec.name,
                    v.len()
                );
            }
            for (ok, row) in finite.iter_mut().zip(v.chunks_exact(width.max(1))) {
                *ok &= row.iter().all(|x| x.is_finite());
            }
        }
    }
    let bad = finite.iter().filter(|ok| !**ok).count() as u64;
    if bad == 0 {
        return Ok(features.valid.clone().map(NullBuffer::new));
    }
    counts.unscored += bad;
    *counts
        .reasons
        .entry(Reason::NonFinitePrediction)
        .or_default() += bad;
    // Scored row i is input row positions[i].
    let mut valid: Vec<bool> = match &features.valid {
        None => vec![true; features.total_rows],
        Some(v) => v.iter().collect(),
    };
    let positions: Vec<usize> = (0..features.total_rows).filter(|r| valid[*r]).collect();
    for (i, ok) in finite.iter().enumerate() {
        if !ok {
            valid[positions[i]] = false;
        }
    }
    Ok(Some(NullBuffer::from(valid)))
}

/// Spreads the scored rows' values over all input rows (unscored rows get NULL).
fn scatter(
    model: &str,
    spec: &OutputSpec,
    column: OutputColumn,
    features: &FeatureMatrix,
    rows: usize,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef> {
    let width = spec.width();
    let scored = features.scored_rows();
    if column.len() != scored * width {
        return exec_err!(
            "model `{model}` output `{}`: {} values for {scored} rows of width {width}",
            spec.name,
            column.len()
        );
    }
    // Input row of each scored row.
    let positions: Vec<usize> = match &features.valid {
        None => (0..rows).collect(),
        Some(valid) => valid.set_indices().collect(),
    };
    Ok(match column {
        OutputColumn::F32(values) => {
            let mut dense = vec![0f32; rows * width];
            for (i, row) in positions.iter().enumerate() {
                dense[row * width..(row + 1) * width]
                    .copy_from_slice(&values[i * width..(i + 1) * width]);
            }
            if spec.size.is_some() {
                let item = Arc::new(Field::new("item", DataType::Float32, true));
                Arc::new(FixedSizeListArray::try_new(
                    item,
                    width as i32,
                    Arc::new(Float32Array::new(ScalarBuffer::from(dense), None)),
                    nulls,
                )?)
            } else {
                Arc::new(Float32Array::new(ScalarBuffer::from(dense), nulls))
            }
        }
        OutputColumn::I64(values) => {
            let mut dense = vec![0i64; rows];
            for (i, row) in positions.iter().enumerate() {
                dense[*row] = values[i];
            }
            Arc::new(Int64Array::new(ScalarBuffer::from(dense), nulls))
        }
        OutputColumn::Str(values) => {
            let mut dense: Vec<Option<String>> = vec![None; rows];
            for (i, row) in positions.iter().enumerate() {
                dense[*row] = Some(values[i].clone());
            }
            Arc::new(StringArray::from(dense))
        }
    })
}
