//! Planning a job: everything up to the physical plan, with no data read beyond Parquet footers.
//!
//! [`prepare`] binds the job's parameters, resolves and verifies its models, registers its
//! sources, plans the SQL and fingerprints the input files. `scorch explain` ([`mod@explain`]) and
//! `scorch validate` ([`mod@validate`]) stop there; `scorch run` (`crate::run`) goes on to execute.
//!
//! - [`session`]: the DataFusion configuration scorch scores with;
//! - [`sources`]: listing and registering sources;
//! - [`query`]: SQL checks and parameter binding;
//! - [`models`]: resolving packages, and what the query does with them;
//! - [`mod@rejects`]: the key columns scoring calls carry for `[output.rejects]`;
//! - [`shadow`]: the shadow model's twin columns of a champion/challenger run;
//! - [`scan`]: input files, the data fingerprint and pruning estimates;
//! - [`output`]: checks of the output against the query and the committed table.
//!
//! Invariant: planning never writes.

pub mod delta_source;
pub mod explain;
pub mod models;
pub mod output;
pub mod query;
pub mod rejects;
pub mod scan;
pub mod session;
pub mod shadow;
pub mod sources;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::dataframe::DataFrame;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use scorch_udfs::cache::PackageSource;
use scorch_udfs::{DeviceSpec, ModelCatalog, ModelLoader, ModelPackage};

use crate::error::{Error, Result};
use crate::job::{BoundParams, JobSpec, Unbound};
use crate::store::StoreRegistry;
pub use explain::{ExplainReport, explain};
use scan::PlannedScan;
use session::SessionSettings;
use sources::SourceListing;
pub use validate::{ValidateReport, validate};

/// How to run a job, beyond the job file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--param key=value` overrides.
    pub params: Vec<(String, String)>,
    /// Partitions scored at once (overrides the job's `[execution]`).
    pub target_partitions: Option<usize>,
    /// Rows per batch (overrides the job's `[execution]`).
    pub batch_size: Option<usize>,
    /// Device (overrides the job's `[execution]`).
    pub device: Option<DeviceSpec>,
    /// Draw a progress bar on stderr when it is a terminal.
    pub progress: bool,
    /// Run on this Ballista scheduler (`df://host:port`) instead of in-process (overrides the
    /// job's `[execution] cluster`).
    pub cluster: Option<String>,
    /// The run's id (a UUID), when the caller chose it (to announce the run before it starts,
    /// as lineage does); a new time-ordered one otherwise.
    pub run_id: Option<uuid::Uuid>,
    /// Skip the run when the last committed run of the same parameters read the same inputs
    /// with the same models and query (see [`crate::run::incremental`]).
    pub skip_unchanged: bool,
}

/// A job planned and ready to execute.
pub struct Prepared {
    /// The job.
    pub job: JobSpec,
    /// Bound parameters.
    pub params: BoundParams,
    /// Declared parameters that had no value and were planned as `NULL` (validation only).
    pub unbound: Vec<String>,
    /// Stores in use.
    pub stores: Arc<StoreRegistry>,
    /// The local session: planning, fingerprints, estimates (and execution when in-process).
    pub ctx: SessionContext,
    /// The cluster session the job executes on, when it runs on a cluster.
    pub cluster: Option<(String, SessionContext)>,
    /// Models resolved and verified, by SQL name.
    pub packages: BTreeMap<String, ModelPackage>,
    /// Where each package was read from (local disk, local cache, object store).
    pub package_sources: BTreeMap<String, PackageSource>,
    /// How the models named through a registry resolved.
    pub registered: BTreeMap<String, crate::run::manifest::RegistryUse>,
    /// Per output partition, the inputs key an incremental run compares (empty when the
    /// output's partitions are not the sources').
    pub partition_keys: BTreeMap<String, String>,
    /// Partitions an incremental run leaves as they are.
    pub skipped_partitions: Vec<String>,
    /// The catalog the session carries.
    pub catalog: ModelCatalog,
    /// What each source held when it was listed.
    pub listings: Vec<SourceListing>,
    /// The query with parameters bound.
    pub query: DataFrame,
    /// The physical plan of the query.
    pub physical: Arc<dyn ExecutionPlan>,
    /// The scans it performs.
    pub scans: Vec<PlannedScan>,
    /// Fingerprint of the input files.
    pub data_sha256: String,
    /// Models the query calls.
    pub models_used: BTreeSet<String>,
    /// With `[output.rejects]`: the key columns the scoring calls carry (`None` when the query
    /// calls no model, so nothing can be rejected).
    pub reject_keys: Option<arrow::datatypes::Fields>,
    /// Warnings found while planning (argument names that differ from the model's inputs).
    pub warnings: Vec<String>,
    /// Device.
    pub device: DeviceSpec,
    /// Session settings.
    pub settings: SessionSettings,
    /// Time spent preparing.
    pub plan_time: Duration,
    /// Whether to draw a progress bar.
    pub show_progress: bool,
}

impl Prepared {
    /// Input files, over all scans.
    pub fn input_files(&self) -> Vec<scan::InputFile> {
        let files: BTreeSet<&scan::InputFile> = self.scans.iter().flat_map(|s| &s.files).collect();
        files.into_iter().cloned().collect()
    }
}

/// The version each Delta source was read at: (source name, version).
pub fn delta_versions(listings: &[SourceListing]) -> Vec<(&str, u64)> {
    listings
        .iter()
        .filter_map(|l| l.delta_version.map(|v| (l.name.as_str(), v)))
        .collect()
}

/// Plans a job without executing it.
pub async fn prepare(job: &JobSpec, options: &RunOptions) -> Result<Prepared> {
    prepare_with(job, options, Unbound::Fail).await
}

/// Plans a job; `unbound` says what to do with parameters that have no value.
pub async fn prepare_with(
    job: &JobSpec,
    options: &RunOptions,
    unbound: Unbound,
) -> Result<Prepared> {
    let started = Instant::now();
    let (params, unbound) = job.bind_with(&options.params, unbound)?;
    query::check_statement(job)?;
    let stores = Arc::new(StoreRegistry::with_options(job.stores.clone()));
    let device = match (options.device, &job.execution.device) {
        (Some(d), _) => d,
        (None, Some(text)) => text.parse()?,
        (None, None) => DeviceSpec::Auto,
    };
    let loader = ModelLoader::try_new(
        Arc::clone(&stores) as Arc<dyn scorch_udfs::StoreResolver>,
        device,
    )?;
    let models = models::resolve(job, &loader, &stores).await?;

    let defaults = SessionSettings::default();
    let settings = SessionSettings {
        target_partitions: options
            .target_partitions
            .or(job.execution.target_partitions)
            .unwrap_or(defaults.target_partitions),
        batch_size: options
            .batch_size
            .or(job.execution.batch_size)
            .unwrap_or(defaults.batch_size),
        write_buffer_bytes: job.execution.write_buffer_bytes,
        device,
        stores: job.stores.clone(),
    };
    let ctx = session::local_context(&settings, models.catalog.clone(), loader.clone());
    let cluster = match options.cluster.as_ref().or(job.execution.cluster.as_ref()) {
        Some(url) => {
            let remote = crate::cluster::remote_context(
                url,
                &settings,
                models.catalog.clone(),
                loader,
                &stores,
            )
            .await?;
            Some((url.clone(), remote))
        }
        None => None,
    };
    let mut listings = Vec::new();
    for source in &job.sources {
        listings.push(sources::register_source(&ctx, &stores, source).await?);
    }
    stores.register_with(ctx.runtime_env().as_ref(), &job.output.location)?;

    let query = query::plan(&ctx, job, &params).await?;
    let models_used = models::models_in_plan(query.logical_plan());
    models::check_all_used(job, &models_used)?;
    models::check_drift_limits(job, &models.catalog)?;
    let warnings = models::argument_warnings(query.logical_plan(), &models.catalog);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let (query, reject_keys) = rejects::add_keys(query, job)?;
    if let Some(r) = &job.output.rejects {
        stores.register_with(ctx.runtime_env().as_ref(), &r.location)?;
    }
    let physical = match query.clone().create_physical_plan().await {
        Ok(physical) => physical,
        Err(e) => {
            let e = Error::from_query(job, e);
            return Err(sources::name_the_file(e, &stores, &job.sources, &listings, None).await);
        }
    };
    let scans = scan::planned_scans(&physical);
    let data_sha256 = scan::data_sha256(&scans, &delta_versions(&listings));
    Ok(Prepared {
        job: job.clone(),
        params,
        unbound,
        stores,
        ctx,
        cluster,
        packages: models.packages,
        package_sources: models.sources,
        registered: models.registered,
        partition_keys: BTreeMap::new(),
        skipped_partitions: Vec::new(),
        catalog: models.catalog,
        listings,
        query,
        physical,
        scans,
        data_sha256,
        models_used,
        reject_keys,
        warnings,
        device,
        settings,
        plan_time: started.elapsed(),
        show_progress: options.progress,
    })
}
