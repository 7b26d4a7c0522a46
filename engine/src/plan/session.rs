//! Sessions: a DataFusion context configured for scoring, with the model catalog and the scoring
//! functions registered.

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{SessionConfig, SessionContext};
use scorch_udfs::{DeviceSpec, ModelCatalog, ModelLoader, ScorchOptions};

use crate::store::StoreOptions;

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
    /// Where the job's models run; travels with the plan.
    pub device: DeviceSpec,
    /// The job's per-store options; travel with the plan (they hold no credentials).
    pub stores: StoreOptions,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            target_partitions: std::thread::available_parallelism().map_or(1, |n| n.get()),
            batch_size: DEFAULT_BATCH_SIZE,
            write_buffer_bytes: None,
            device: DeviceSpec::Auto,
            stores: StoreOptions::default(),
        }
    }
}

/// The DataFusion configuration scorch scores with: pruning and pushdown on, and the model
/// catalog, the device and the store options as a config extension, so that they travel with
/// every plan to processes that never saw the job.
pub fn session_config(settings: &SessionSettings, catalog: ModelCatalog) -> SessionConfig {
    let options = ScorchOptions::new(catalog)
        .with_device(settings.device)
        .with_stores(settings.stores.to_json());
    let mut config = SessionConfig::new()
        .with_target_partitions(settings.target_partitions)
        .with_batch_size(settings.batch_size)
        .with_information_schema(false)
        .with_option_extension(options);
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
        .with_query_planner(Arc::new(crate::table::writer::ScorchQueryPlanner))
        .build();
    let ctx = SessionContext::new_with_state(state);
    for udf in scorch_udfs::functions::all_functions(loader, Arc::new(catalog)) {
        ctx.register_udf(udf.as_ref().clone());
    }
    ctx
}
