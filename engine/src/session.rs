//! Sessions: a DataFusion context configured for scoring, with the job's stores, sources, model
//! catalog and scoring functions registered.

use std::sync::Arc;

use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{SessionConfig, SessionContext};
use scorch_udfs::{ModelCatalog, ModelLoader, ScorchOptions};

use crate::error::{Error, Result};
use crate::job::{ParamType, Source};
use crate::registry::StoreRegistry;

/// Default rows per batch handed to a model.
pub const DEFAULT_BATCH_SIZE: usize = 8192;

/// How a session executes.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Partitions processed at once.
    pub target_partitions: usize,
    /// Rows per batch.
    pub batch_size: usize,
    /// Bytes an output writer buffers before a multipart upload (DataFusion's default if unset).
    pub write_buffer_bytes: Option<usize>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            target_partitions: std::thread::available_parallelism().map_or(1, |n| n.get()),
            batch_size: DEFAULT_BATCH_SIZE,
            write_buffer_bytes: None,
        }
    }
}

/// The DataFusion configuration scorch scores with: pruning and pushdown on, and the model
/// catalog as a config extension so it travels with every plan.
pub fn session_config(settings: &SessionSettings, catalog: ModelCatalog) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_target_partitions(settings.target_partitions)
        .with_batch_size(settings.batch_size)
        .with_information_schema(false)
        .with_option_extension(ScorchOptions::new(catalog));
    let options = config.options_mut();
    let parquet = &mut options.execution.parquet;
    parquet.pruning = true;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    parquet.enable_page_index = true;
    parquet.bloom_filter_on_read = true;
    // Plain Utf8/Binary columns: what every downstream reader (Spark, Trino, older pyarrow) reads.
    parquet.schema_force_view_types = false;
    options.execution.collect_statistics = true;
    // One output file per partition scored in parallel, rather than DataFusion's four: fewer,
    // larger files are what downstream readers want.
    if let Ok(files) = datafusion::config::ConfigNonZeroUsize::try_new(settings.target_partitions) {
        options.execution.minimum_parallel_output_files = files;
    }
    // Footers of feature tables are tens of KiB; fetching DataFusion's default 512 KiB tail per
    // file reads far more than needed from object stores when files are small.
    options.execution.parquet.metadata_size_hint = Some(64 * 1024);
    if let Some(bytes) = settings.write_buffer_bytes {
        options.execution.objectstore_writer_buffer_size = bytes;
    }
    config
}

/// Builds a local (in-process) context with scorch's functions registered.
pub fn local_context(
    settings: &SessionSettings,
    catalog: ModelCatalog,
    loader: ModelLoader,
) -> SessionContext {
    let config = session_config(settings, catalog.clone());
    let runtime = Arc::new(RuntimeEnv::default());
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_query_planner(Arc::new(crate::writer::ScorchQueryPlanner))
        .build();
    let ctx = SessionContext::new_with_state(state);
    for udf in scorch_udfs::functions::all_functions(loader, Arc::new(catalog)) {
        ctx.register_udf(udf.as_ref().clone());
    }
    ctx
}

/// The schema of a source, from the footer of its newest file (the last path in lexicographic
/// order, which for Hive date partitions is the newest partition). Reading one footer instead of
/// all keeps planning cheap on tables with thousands of files; older files missing a newer
/// column read it as NULL.
async fn newest_file_schema(
    state: &datafusion::execution::SessionState,
    url: &ListingTableUrl,
    options: &ListingOptions,
) -> datafusion::error::Result<Option<arrow::datatypes::SchemaRef>> {
    use futures::TryStreamExt;
    let store = state.runtime_env().object_store(url)?;
    let files: Vec<_> = url
        .list_all_files(state, store.as_ref(), &options.file_extension)
        .await?
        .try_collect()
        .await?;
    let Some(newest) = files
        .into_iter()
        .filter(|f| f.size > 0)
        .max_by(|a, b| a.location.cmp(&b.location))
    else {
        return Ok(None);
    };
    options
        .format
        .infer_schema(state, &store, &[newest])
        .await
        .map(Some)
}

/// Registers a source as a listing table: hive partitions, statistics and pushdown on.
pub async fn register_source(
    ctx: &SessionContext,
    stores: &StoreRegistry,
    source: &Source,
) -> Result<()> {
    stores.register_with(ctx.runtime_env().as_ref(), &source.location)?;
    let source_error = |message: String| Error::Source {
        name: source.name.clone(),
        url: source.location.to_string(),
        message,
    };
    let url = ListingTableUrl::parse(source.location.url().as_str())
        .map_err(|e| source_error(e.to_string()))?;
    let state = ctx.state();
    let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
    let mut options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
    let partition_columns = match &source.partition_columns {
        Some(cols) => cols
            .iter()
            .map(|c| (c.name.clone(), c.ptype.data_type()))
            .collect(),
        None => options
            .infer_partitions(&state, &url)
            .await
            .map_err(|e| Error::SourceUnreachable {
                name: source.name.clone(),
                url: source.location.to_string(),
                source: e,
            })?
            .into_iter()
            .map(|name| (name, ParamType::String.data_type()))
            .collect(),
    };
    options = options.with_table_partition_cols(partition_columns);
    let schema = newest_file_schema(&state, &url, &options)
        .await
        .map_err(|e| match e.find_root() {
            DataFusionError::ObjectStore(inner)
                if !matches!(inner.as_ref(), object_store::Error::NotFound { .. }) =>
            {
                Error::SourceUnreachable {
                    name: source.name.clone(),
                    url: source.location.to_string(),
                    source: e,
                }
            }
            _ => source_error(format!("cannot read the schema: {e}")),
        })?
        .ok_or_else(|| source_error("no Parquet files found".into()))?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    let table = ListingTable::try_new(config).map_err(|e| source_error(e.to_string()))?;
    ctx.register_table(source.name.as_str(), Arc::new(table))
        .map_err(|e| source_error(e.to_string()))?;
    Ok(())
}
