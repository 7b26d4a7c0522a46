//! Running a job: plan, score, stage, check, commit, publish.
//!
//! [`prepare`] does everything up to the physical plan (bind parameters, resolve and verify
//! models, register sources, plan the SQL, fingerprint the inputs); `scorch validate` and
//! `scorch explain` stop there. [`run`] then writes the stamped output under the run's staging
//! prefix, checks the quality gates and commits through [`Table`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimeUnit, UInt64Type};
use chrono::{DateTime, Utc};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use datafusion::prelude::{SessionContext, lit};
use futures::TryStreamExt;
use object_store::ObjectStore;
use scorch_udfs::cache::PackageSource;
use scorch_udfs::{DeviceSpec, ModelCatalog, ModelLoader, ModelPackage, ModelRef};
use serde::Serialize;

use crate::checks;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::job::{BoundParams, JobSpec};
use crate::manifest::{
    ModelUse, OutputSummary, RowCounts, RunManifest, RunStatus, SCORCH_VERSION, Timings,
};
use crate::progress::CountRowsExec;
use crate::registry::StoreRegistry;
use crate::scan::{self, PlannedScan, ScanEstimate};
use crate::session::{self, SessionSettings};
use crate::table::{DataFile, StagedFile, Table, data_file_path};
use crate::writer::{StagingWrite, WriteSpec};

/// Bytes an output writer buffers before it switches to a multipart upload.
const DEFAULT_WRITE_BUFFER: usize = 10 * 1024 * 1024;

/// Names of the stamp columns added to every output row.
pub const STAMP_COLUMNS: [&str; 6] = [
    "_model",
    "_model_version",
    "_model_sha256",
    "_data_sha256",
    "_run_id",
    "_scored_at",
];

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
}

/// A job planned and ready to execute.
pub struct Prepared {
    /// The job.
    pub job: JobSpec,
    /// Bound parameters.
    pub params: BoundParams,
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
    /// The catalog the session carries.
    pub catalog: ModelCatalog,
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

/// Plans a job without executing it.
pub async fn prepare(job: &JobSpec, options: &RunOptions) -> Result<Prepared> {
    let started = Instant::now();
    let params = job.bind(&options.params)?;
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

    let mut catalog = ModelCatalog::new();
    let mut packages = BTreeMap::new();
    let mut package_sources = BTreeMap::new();
    for decl in &job.models {
        let (package, source) = loader
            .fetch_verified(
                &decl.name,
                decl.location.url().as_str(),
                decl.sha256.as_deref(),
            )
            .await?;
        package_sources.insert(decl.name.clone(), source);
        match &decl.sha256 {
            Some(_) => {}
            None => tracing::warn!(
                model = %decl.name,
                sha256 = %package.sha256,
                "model is not pinned: add `sha256 = \"{}\"` to [models.{}] to make runs reproducible",
                package.sha256,
                decl.name
            ),
        }
        loader.load_package(&decl.name, &package).await?;
        catalog.insert(ModelRef::from_package(&decl.name, &package));
        packages.insert(decl.name.clone(), package);
    }

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
    };
    let ctx = session::local_context(&settings, catalog.clone(), loader.clone());
    let cluster = match options.cluster.as_ref().or(job.execution.cluster.as_ref()) {
        Some(url) => {
            let remote =
                crate::cluster::remote_context(url, &settings, catalog.clone(), loader, &stores)
                    .await?;
            Some((url.clone(), remote))
        }
        None => None,
    };
    for source in &job.sources {
        session::register_source(&ctx, &stores, source).await?;
    }
    stores.register_with(ctx.runtime_env().as_ref(), &job.output.location)?;

    let sql_options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx
        .sql_with_options(&job.sql, sql_options)
        .await
        .map_err(|e| Error::from_query(&job.name, e))?;
    let used_params = df
        .logical_plan()
        .get_parameter_types()
        .map_err(|e| Error::from_query(&job.name, e))?;
    let mut values = HashMap::new();
    for placeholder in used_params.keys() {
        let name = placeholder.trim_start_matches('$');
        let value = params.get(name).ok_or_else(|| Error::Param {
            name: name.to_string(),
            message: format!(
                "the query uses {placeholder} but job `{}` declares no parameter `{name}`; add it under [params]",
                job.name
            ),
        })?;
        values.insert(name.to_string(), value.clone());
    }
    let query = if values.is_empty() {
        df
    } else {
        df.with_param_values(ParamValues::from(values))
            .map_err(|e| Error::from_query(&job.name, e))?
    };
    let models_used = models_in_plan(query.logical_plan());
    let warnings = argument_warnings(query.logical_plan(), &catalog);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let physical = query
        .clone()
        .create_physical_plan()
        .await
        .map_err(|e| Error::from_query(&job.name, e))?;
    let scans = scan::planned_scans(&physical);
    let data_sha256 = scan::data_sha256(&scans);
    Ok(Prepared {
        job: job.clone(),
        params,
        stores,
        ctx,
        cluster,
        packages,
        package_sources,
        catalog,
        query,
        physical,
        scans,
        data_sha256,
        models_used,
        warnings,
        device,
        settings,
        plan_time: started.elapsed(),
        show_progress: options.progress,
    })
}

/// Names of the models a plan calls through `predict`.
fn models_in_plan(plan: &LogicalPlan) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for_each_predict(plan, |model, _| {
        names.insert(model.to_string());
    });
    names
}

fn for_each_predict(plan: &LogicalPlan, mut f: impl FnMut(&str, &[Expr])) {
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(call) = e
                    && call.func.name() == scorch_udfs::functions::predict::NAME
                    && let Some(Expr::Literal(ScalarValue::Utf8(Some(model)), _)) =
                        call.args.first()
                {
                    f(model, &call.args[1..]);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(TreeNodeRecursion::Continue)
    });
}

/// Warnings for `predict` arguments that are plain columns named like a different input of the
/// model: the classic bug of passing features in the wrong order.
fn argument_warnings(plan: &LogicalPlan, catalog: &ModelCatalog) -> Vec<String> {
    let mut warnings = BTreeSet::new();
    for_each_predict(plan, |model, args| {
        let Ok(model_ref) = catalog.get(model) else {
            return;
        };
        let inputs: Vec<&str> = model_ref.inputs.iter().map(|i| i.name.as_str()).collect();
        for (i, (arg, input)) in args.iter().zip(&inputs).enumerate() {
            if let Expr::Column(c) = arg
                && c.name != *input
                && inputs.contains(&c.name.as_str())
            {
                warnings.insert(format!(
                    "predict('{model}'): argument {} is column `{}` but the model's input {} is `{input}`; \
                     features must follow the order of the model's manifest",
                    i + 2,
                    c.name,
                    i + 1
                ));
            }
        }
    });
    warnings.into_iter().collect()
}

/// The result of a committed run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The run manifest.
    pub manifest: RunManifest,
    /// A version an earlier, interrupted run committed and this run published first.
    pub recovered: Option<u64>,
    /// Rows per second of the execute phase.
    pub rows_per_second: f64,
}

/// Stamp values for one run.
struct Stamps {
    model: Option<String>,
    version: Option<String>,
    sha256: Option<String>,
    data_sha256: String,
    run_id: String,
    scored_at: DateTime<Utc>,
}

impl Stamps {
    fn new(prepared: &Prepared, run_id: &str, scored_at: DateTime<Utc>) -> Self {
        let used: Vec<&ModelRef> = prepared
            .models_used
            .iter()
            .filter_map(|n| prepared.catalog.get(n).ok())
            .collect();
        let join = |f: fn(&ModelRef) -> &str| {
            (!used.is_empty()).then(|| used.iter().map(|m| f(m)).collect::<Vec<_>>().join(","))
        };
        Self {
            model: join(|m| &m.name),
            version: join(|m| &m.version),
            sha256: join(|m| &m.sha256),
            data_sha256: prepared.data_sha256.clone(),
            run_id: run_id.to_string(),
            scored_at,
        }
    }

    fn columns(&self) -> Vec<(&'static str, ScalarValue)> {
        vec![
            ("_model", ScalarValue::Utf8(self.model.clone())),
            ("_model_version", ScalarValue::Utf8(self.version.clone())),
            ("_model_sha256", ScalarValue::Utf8(self.sha256.clone())),
            (
                "_data_sha256",
                ScalarValue::Utf8(Some(self.data_sha256.clone())),
            ),
            ("_run_id", ScalarValue::Utf8(Some(self.run_id.clone()))),
            (
                "_scored_at",
                ScalarValue::TimestampMicrosecond(
                    Some(self.scored_at.timestamp_micros()),
                    Some("UTC".into()),
                ),
            ),
        ]
    }

    fn footer(&self, job: &str) -> HashMap<String, Option<String>> {
        let mut kv = HashMap::new();
        kv.insert("scorch.version".into(), Some(SCORCH_VERSION.to_string()));
        kv.insert("scorch.job".into(), Some(job.to_string()));
        kv.insert("scorch.model".into(), self.model.clone());
        kv.insert("scorch.model_version".into(), self.version.clone());
        kv.insert("scorch.model_sha256".into(), self.sha256.clone());
        kv.insert("scorch.data_sha256".into(), Some(self.data_sha256.clone()));
        kv.insert("scorch.run_id".into(), Some(self.run_id.clone()));
        kv.insert("scorch.scored_at".into(), Some(self.scored_at.to_rfc3339()));
        kv
    }
}

/// Runs a job to a committed, published table.
pub async fn run(job: &JobSpec, options: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let started_at = Utc::now();
    let prepared = prepare(job, options).await?;
    let store = prepared.stores.store(&job.output.location)?;
    let table = Table::new(job.output.location.clone(), Arc::clone(&store));
    let recovered = table.recover().await?;
    let base = table.latest_version().await?;
    let run_id = uuid::Uuid::now_v7().to_string();
    tracing::info!(job = %job.name, run_id = %run_id, output = %job.output.location, "run started");

    let stamps = Stamps::new(&prepared, &run_id, started_at);
    let staging = table.staging(&run_id);
    // Until the commit point a stop request cancels the run: dropping the staging future
    // cancels the writers, whose abandoned multipart uploads are then aborted.
    let staged = tokio::select! {
        staged = stage(&prepared, &table, &stamps, started_at) => staged,
        signal = crate::shutdown::stop_requested() => Err(Error::Interrupted { signal }),
    };
    let outcome = match staged {
        Ok(staged) => commit_and_publish(&prepared, &table, base, &stamps, staged, started).await,
        Err(e) => Err((e, false)),
    };
    match outcome {
        Ok((manifest, rows_per_second)) => Ok(RunReport {
            manifest,
            recovered,
            rows_per_second,
        }),
        Err((e, committed)) => {
            let aborted = crate::metered::drain_aborts().await;
            if aborted > 0 {
                tracing::info!(uploads = aborted, "aborted unfinished multipart uploads");
            }
            if !committed && let Err(cleanup) = table.remove_prefix(&staging).await {
                tracing::warn!(error = %cleanup, staging = %staging, "could not remove this run's staged files; `scorch gc` will");
            }
            Err(e)
        }
    }
}

/// A run's output, staged and checked, not yet committed.
struct Staged {
    manifest: RunManifest,
    files: Vec<StagedFile>,
    partitions: BTreeSet<String>,
    execute_time: Duration,
    commit_started: Instant,
}

/// Scans, scores and writes under the staging prefix, then evaluates the quality gates.
async fn stage(
    prepared: &Prepared,
    table: &Table,
    stamps: &Stamps,
    started_at: DateTime<Utc>,
) -> Result<Staged> {
    let job = &prepared.job;

    // Stamp, then write under the staging prefix.
    let schema = prepared.query.schema().clone();
    for name in STAMP_COLUMNS {
        if schema.has_column_with_unqualified_name(name) {
            return Err(Error::JobFile {
                path: job.path.clone(),
                message: format!(
                    "the query returns a column `{name}`, which scorch adds to every row; rename it"
                ),
            });
        }
    }
    for col in &job.output.partition_by {
        if !schema.has_column_with_unqualified_name(col) {
            return Err(Error::JobFile {
                path: job.path.clone(),
                message: format!(
                    "output.partition_by: the query returns no column `{col}` (it returns: {})",
                    schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    let prediction_columns: Vec<String> = schema
        .fields()
        .iter()
        .filter(|f| {
            f.metadata()
                .contains_key(scorch_udfs::functions::predict::PREDICTION_METADATA)
        })
        .map(|f| f.name().clone())
        .collect();
    let mut stamped = prepared.query.clone();
    for (name, value) in stamps.columns() {
        stamped = stamped
            .with_column(name, lit(value))
            .map_err(|e| Error::from_query(&job.name, e))?;
    }
    let staging = table.staging(&stamps.run_id);
    let spec = WriteSpec {
        staging: staging.url().to_string(),
        partition_by: job.output.partition_by.clone(),
        compression: job.output.compression.clone(),
        metadata: stamps
            .footer(&job.name)
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
        prediction_columns: prediction_columns.clone(),
        buffer_bytes: job
            .execution
            .write_buffer_bytes
            .unwrap_or(DEFAULT_WRITE_BUFFER),
    };
    let write = StagingWrite::try_new(stamped.logical_plan().clone(), spec)
        .map_err(|e| Error::from_query(&job.name, e))?
        .into_plan();
    let exec_ctx = prepared
        .cluster
        .as_ref()
        .map_or(&prepared.ctx, |(_, ctx)| ctx);
    let failed = |e: DataFusionError| match &prepared.cluster {
        Some((url, _)) => Error::Cluster {
            url: url.clone(),
            message: crate::cluster::explain_job_failure(&e.to_string()),
        },
        None => Error::from_query(&job.name, e),
    };
    let physical = exec_ctx
        .state()
        .create_physical_plan(&write)
        .await
        .map_err(failed)?;
    let rows_counter = Arc::new(AtomicU64::new(0));
    let physical = count_scan_rows(physical, &rows_counter).map_err(Error::Execution)?;

    failpoint::hit("before-write");
    let execute_started = Instant::now();
    let total_rows_hint = prepared
        .scans
        .iter()
        .map(|s| s.rows_in_files)
        .sum::<Option<u64>>();
    let bar = progress_bar(
        prepared.show_progress && prepared.cluster.is_none(),
        total_rows_hint,
        Arc::clone(&rows_counter),
    );
    let result = collect(Arc::clone(&physical), exec_ctx.task_ctx()).await;
    if let Some((bar, handle)) = bar {
        handle.abort();
        bar.finish_and_clear();
    }
    let written = result.map_err(failed)?;
    let execute_time = execute_started.elapsed();
    let scan_metrics = scan::scan_metrics(&physical);

    // What was staged.
    let staged = staged_files(table, &staging, &stamps.run_id, &written)?;
    failpoint::hit("staged");
    let written_rows: u64 = staged.iter().map(|s| s.0.file.rows).sum();
    let rows = RowCounts {
        // On a cluster the scans' counters stay on the executors.
        read: if prepared.cluster.is_some() {
            written_rows
        } else {
            scan_metrics.rows
        },
        written: staged.iter().map(|s| s.0.file.rows).sum(),
        unscored: staged.iter().map(|s| s.1).sum(),
    };
    let partitions: BTreeSet<String> = staged.iter().map(|s| s.0.file.partition.clone()).collect();
    let staged: Vec<StagedFile> = staged.into_iter().map(|s| s.0).collect();
    let check_results = checks::evaluate(&job.checks, &rows);
    let commit_started = Instant::now();
    let source_files_total = count_source_files(prepared).await?;
    let mut manifest = RunManifest {
        scorch_version: SCORCH_VERSION.to_string(),
        run_id: stamps.run_id.clone(),
        status: RunStatus::Committed,
        job: job.name.clone(),
        job_file: job.path.display().to_string(),
        started_at,
        finished_at: Utc::now(),
        params: prepared
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        sql: job.sql.clone(),
        models: prepared
            .models_used
            .iter()
            .filter_map(|n| prepared.catalog.get(n).ok())
            .map(|m| ModelUse {
                name: m.name.clone(),
                uri: m.uri.clone(),
                version: m.version.clone(),
                sha256: m.sha256.clone(),
                format: m.format.to_string(),
                source: prepared.package_sources.get(&m.name).copied(),
            })
            .collect(),
        data_sha256: prepared.data_sha256.clone(),
        inputs: prepared
            .scans
            .iter()
            .flat_map(|s| s.files.clone())
            .collect(),
        rows,
        scan: scan_metrics,
        source_files_total,
        output: OutputSummary {
            url: job.output.location.to_string(),
            mode: Some(job.output.mode),
            partitions: partitions.iter().cloned().collect(),
            files: staged.len() as u64,
            bytes: staged.iter().map(|s| s.file.size).sum(),
            version: None,
        },
        checks: check_results.clone(),
        timings: Timings {
            plan_ms: millis(prepared.plan_time),
            execute_ms: millis(execute_time),
            ..Default::default()
        },
        device: prepared.device.to_string(),
        cluster: prepared.cluster.as_ref().map(|(url, _)| url.clone()),
        target_partitions: prepared.settings.target_partitions,
        io: prepared.stores.io_stats(),
    };
    let failures = checks::failures(&check_results);
    if !failures.is_empty() {
        manifest.status = RunStatus::RejectedByChecks;
        manifest.finished_at = Utc::now();
        let value = serde_json::to_value(&manifest).expect("a manifest always serialises");
        if let Err(e) = table.write_run_manifest(&stamps.run_id, &value).await {
            tracing::warn!(error = %e, "could not write the manifest of the rejected run");
        }
        return Err(Error::QualityGate { failures });
    }
    Ok(Staged {
        manifest,
        files: staged,
        partitions,
        execute_time,
        commit_started,
    })
}

/// Commits and publishes a staged run. Not cancelled by stop requests: once the commit point is
/// near, finishing is safer than stopping.
async fn commit_and_publish(
    prepared: &Prepared,
    table: &Table,
    base: Option<u64>,
    stamps: &Stamps,
    staged: Staged,
    started: Instant,
) -> Result<(RunManifest, f64), (Error, bool)> {
    let job = &prepared.job;
    let Staged {
        mut manifest,
        files,
        partitions,
        execute_time,
        commit_started,
    } = staged;
    failpoint::hit("before-commit");
    let value = serde_json::to_value(&manifest).expect("a manifest always serialises");
    let commit = table
        .commit(
            base,
            &stamps.run_id,
            &job.name,
            job.output.mode,
            files,
            partitions,
            value,
        )
        .await
        .map_err(|e| (e, false))?;
    let committed = |e: Error| (e, true);
    failpoint::hit("committed");
    manifest.timings.commit_ms = millis(commit_started.elapsed());
    let publish_started = Instant::now();
    table.publish(&commit).await.map_err(committed)?;
    failpoint::hit("published");
    manifest.output.version = Some(commit.version);
    manifest.timings.publish_ms = millis(publish_started.elapsed());
    manifest.timings.total_ms = millis(started.elapsed());
    manifest.finished_at = Utc::now();
    manifest.io = prepared.stores.io_stats();
    let value = serde_json::to_value(&manifest).expect("a manifest always serialises");
    table
        .write_run_manifest(&stamps.run_id, &value)
        .await
        .map_err(committed)?;
    let rows_per_second = manifest.rows.written as f64 / execute_time.as_secs_f64().max(1e-9);
    tracing::info!(
        run_id = %stamps.run_id,
        version = commit.version,
        rows = manifest.rows.written,
        unscored = manifest.rows.unscored,
        rows_per_second = rows_per_second.round(),
        "run committed"
    );
    Ok((manifest, rows_per_second))
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// Puts a row counter above every scan, so progress is measured in rows read.
fn count_scan_rows(
    plan: Arc<dyn ExecutionPlan>,
    rows: &Arc<AtomicU64>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        if node.is::<DataSourceExec>() {
            let counted: Arc<dyn ExecutionPlan> =
                Arc::new(CountRowsExec::new(node, Arc::clone(rows)));
            Ok(Transformed::yes(counted))
        } else {
            Ok(Transformed::no(node))
        }
    })
    .map(|t| t.data)
}

type ProgressHandle = (indicatif::ProgressBar, tokio::task::JoinHandle<()>);

fn progress_bar(enabled: bool, total: Option<u64>, rows: Arc<AtomicU64>) -> Option<ProgressHandle> {
    if !enabled
        || !std::io::stderr().is_terminal()
        || std::env::var_os("SCORCH_NO_PROGRESS").is_some()
    {
        return None;
    }
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} scoring [{bar:40}] {human_pos}/{human_len} rows ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let updater = bar.clone();
    let handle = tokio::spawn(async move {
        loop {
            updater.set_position(rows.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Some((bar, handle))
}

/// The files a run's writers reported, with their published names and unscored rows.
fn staged_files(
    table: &Table,
    staging: &crate::location::Location,
    run_id: &str,
    written: &[RecordBatch],
) -> Result<Vec<(StagedFile, u64)>> {
    let mut reported = Vec::new();
    for batch in written {
        let column = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| Error::Table {
                output: table.location().to_string(),
                message: format!("the writers' report has no column `{name}`"),
            })
        };
        let paths = column("path")?.as_string::<i32>().clone();
        let partitions = column("partition")?.as_string::<i32>().clone();
        let rows = column("rows")?.as_primitive::<UInt64Type>().clone();
        let bytes = column("bytes")?.as_primitive::<UInt64Type>().clone();
        let unscored = column("unscored")?.as_primitive::<UInt64Type>().clone();
        for i in 0..batch.num_rows() {
            reported.push((
                paths.value(i).to_string(),
                partitions.value(i).to_string(),
                rows.value(i),
                bytes.value(i),
                unscored.value(i),
            ));
        }
    }
    reported.sort();
    if let Some(pair) = reported.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::Table {
            output: table.location().to_string(),
            message: format!("two writers reported the same staged file `{}`", pair[0].0),
        });
    }
    let mut per_partition: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (relative, partition, rows, size, unscored) in reported {
        if rows == 0 {
            continue;
        }
        let index = per_partition.entry(partition.clone()).or_default();
        let staged = table
            .location()
            .relative(&staging.child(&relative))
            .unwrap_or_else(|| relative.clone());
        out.push((
            StagedFile {
                staged,
                file: DataFile {
                    path: data_file_path(&partition, *index, run_id),
                    partition,
                    size,
                    rows,
                    run_id: run_id.to_string(),
                },
            },
            unscored,
        ));
        *index += 1;
    }
    Ok(out)
}

async fn count_source_files(prepared: &Prepared) -> Result<u64> {
    let mut total = 0;
    for source in &prepared.job.sources {
        let store = prepared.stores.store(&source.location)?;
        let prefix = source.location.path();
        let metas: Vec<_> =
            store
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|e| Error::Storage {
                    action: "list",
                    location: source.location.to_string(),
                    source: e,
                })?;
        total += metas
            .iter()
            .filter(|m| {
                m.location
                    .filename()
                    .is_some_and(|n| n.ends_with(".parquet"))
            })
            .count() as u64;
    }
    Ok(total)
}

/// What `scorch explain` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainReport {
    /// The physical plan, indented.
    pub physical_plan: String,
    /// Per source: files, row groups and bytes the run would read against the total.
    pub scans: Vec<ScanEstimate>,
    /// Fingerprint of the input files.
    pub data_sha256: String,
    /// Models the query calls.
    pub models: Vec<String>,
    /// Bound parameters.
    pub params: BTreeMap<String, String>,
    /// Warnings found while planning.
    pub warnings: Vec<String>,
}

/// Plans a job and estimates what it would read, without scoring.
pub async fn explain(job: &JobSpec, options: &RunOptions) -> Result<ExplainReport> {
    let prepared = prepare(job, options).await?;
    let scans = scan::estimate(&prepared.stores, &job.sources, &prepared.scans).await?;
    Ok(ExplainReport {
        physical_plan: displayable(prepared.physical.as_ref())
            .indent(true)
            .to_string(),
        scans,
        data_sha256: prepared.data_sha256.clone(),
        models: prepared.models_used.iter().cloned().collect(),
        params: prepared
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        warnings: prepared.warnings.clone(),
    })
}

/// What `scorch validate` checked.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateReport {
    /// Job name.
    pub job: String,
    /// Models, verified.
    pub models: Vec<ModelUse>,
    /// Sources and their columns.
    pub sources: BTreeMap<String, Vec<String>>,
    /// Output columns, stamps included.
    pub output_columns: Vec<(String, String)>,
    /// Warnings.
    pub warnings: Vec<String>,
}

/// Checks a job end to end without scoring: job file, parameters, model hashes and weights,
/// source schemas against the query and the models' declared inputs, output partitioning.
pub async fn validate(job: &JobSpec, options: &RunOptions) -> Result<ValidateReport> {
    let prepared = prepare(job, options).await?;
    let schema = prepared.query.schema();
    for col in &job.output.partition_by {
        if !schema.has_column_with_unqualified_name(col) {
            return Err(Error::JobFile {
                path: job.path.clone(),
                message: format!("output.partition_by: the query returns no column `{col}`"),
            });
        }
    }
    let mut sources = BTreeMap::new();
    for source in &job.sources {
        let table = prepared
            .ctx
            .table_provider(source.name.as_str())
            .await
            .map_err(|e| Error::from_query(&job.name, e))?;
        sources.insert(
            source.name.clone(),
            table
                .schema()
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect(),
        );
    }
    let mut output_columns: Vec<(String, String)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect();
    output_columns.extend(STAMP_COLUMNS.iter().map(|c| {
        let t = if *c == "_scored_at" {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        } else {
            DataType::Utf8
        };
        (c.to_string(), t.to_string())
    }));
    Ok(ValidateReport {
        job: job.name.clone(),
        models: prepared
            .packages
            .iter()
            .map(|(name, p)| ModelUse {
                name: name.clone(),
                uri: p.uri.clone(),
                version: p.manifest.version.to_string(),
                sha256: p.sha256.clone(),
                format: p.manifest.format.to_string(),
                source: prepared.package_sources.get(name).copied(),
            })
            .collect(),
        sources,
        output_columns,
        warnings: prepared.warnings.clone(),
    })
}
