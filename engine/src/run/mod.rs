//! Running a job: score, stage, check, commit, publish.
//!
//! [`run`] plans the job ([`crate::plan`]), checks the output against the table, writes the
//! stamped rows ([`crate::table::writer`]), evaluates the quality gates ([`checks`]) and
//! commits ([`commit`]): one Delta log entry, or scorch's log entry and a publish for the Parquet
//! mode. Until the commit point a stop request cancels the run and removes what it wrote; after
//! it, the run finishes.
//!
//! - [`stamps`]: the traceability columns and footer metadata;
//! - [`checks`]: quality gates;
//! - [`drift`]: PSI and KS against the models' reference profiles;
//! - [`commit`]: committing a staged run, per table format;
//! - [`manifest`]: the run's audit record;
//! - [`progress`]: row counting and the progress bar.

pub mod agreement;
pub mod backfill;
pub mod checks;
pub mod commit;
pub mod compare;
pub mod drift;
pub mod incremental;
pub mod manifest;
pub mod progress;
pub mod stamps;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use chrono::{DateTime, Utc};
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::collect;
use datafusion::prelude::lit;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::job::{JobSpec, OutputFormat, WriteMode};
use crate::plan::{Prepared, RunOptions, output, prepare, scan, sources};
use crate::process::{failpoint, shutdown};
use crate::store::location::Location;
use crate::table::rejects::{RejectsFile, RejectsSummary, RejectsTable};
use crate::table::target::Target;
use crate::table::writer::{
    REJECTS_TABLE, RejectsWriter, SHADOW_TABLE, ShadowWrite, StagingWrite, WriteSpec,
};
use manifest::{
    ModelUse, OutputSummary, RowCounts, RunManifest, RunStatus, SCORCH_VERSION, ShadowSummary,
    Timings,
};
use progress::{Progress, count_scan_rows};
use stamps::Stamps;

/// Bytes an output writer buffers before it switches to a multipart upload.
const DEFAULT_WRITE_BUFFER: usize = 10 * 1024 * 1024;

/// Files one writer task keeps open at once (a high-cardinality `partition_by` closes the least
/// recently written instead of opening more).
const MAX_OPEN_FILES: usize = 64;

/// The result of a committed run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The run manifest.
    pub manifest: RunManifest,
    /// A version an earlier, interrupted run committed and this run published first.
    pub recovered: Option<u64>,
    /// Rows per second of the execute phase.
    pub rows_per_second: f64,
    /// The sources' and the output's columns (name and type), for lineage.
    pub schemas: RunSchemas,
}

/// The columns a run read and wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunSchemas {
    /// Per source name, its columns.
    pub inputs: std::collections::BTreeMap<String, Vec<(String, String)>>,
    /// The output's columns, stamps included.
    pub output: Vec<(String, String)>,
}

fn columns(schema: &arrow::datatypes::Schema) -> Vec<(String, String)> {
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect()
}

/// One file a writer reported.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reported {
    /// Path relative to where the writers wrote.
    pub path: String,
    /// Its partition folder (`ds=2026-11-27`, values percent-encoded).
    pub partition: String,
    /// Rows.
    pub rows: u64,
    /// Bytes.
    pub bytes: u64,
    /// Delta statistics (JSON).
    pub stats: String,
}

/// A run's output, written and checked, not yet committed.
pub struct Staged {
    /// The manifest so far.
    pub manifest: RunManifest,
    /// The files the writers reported (with rows).
    pub files: Vec<Reported>,
    /// Where they are.
    pub written_to: Location,
    /// The output schema, as Arrow types (stamps included).
    pub schema: arrow::datatypes::SchemaRef,
    /// Time spent executing.
    pub execute_time: Duration,
    /// A shadow run: the shadow table's files (paths relative to its root).
    pub shadow_files: Vec<Reported>,
    /// When committing started.
    pub commit_started: Instant,
}

/// The tables a run writes beside its output: where its rejected rows and its shadow model's
/// predictions go.
#[derive(Debug, Clone, Copy, Default)]
pub struct SideTables<'a> {
    /// `[output.rejects]`.
    pub rejects: Option<&'a Location>,
    /// `[shadow]`.
    pub shadow: Option<&'a Location>,
}

/// What the writer tasks reported: the output's files, the unscored counts, the rejects' files,
/// the shadow table's files and the agreement tallies.
struct WritersReport {
    files: Vec<Reported>,
    counts: scorch_udfs::unscored::Counts,
    rejected: Vec<RejectsFile>,
    shadow: Vec<Reported>,
    tallies: agreement::Tallies,
}

/// The application transaction of an append: one id per job and parameter values, so that a
/// retried run of the same interval is recognised as already committed.
pub fn append_transaction(prepared: &Prepared) -> String {
    let mut hasher = Sha256::new();
    for (name, value) in &prepared.params {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(value.to_string().as_bytes());
        hasher.update([0]);
    }
    format!(
        "scorch/{}/{}",
        prepared.job.name,
        &hex::encode(hasher.finalize())[..16]
    )
}

/// Runs a job to a committed, published table.
pub async fn run(job: &JobSpec, options: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let started_at = Utc::now();
    let mut prepared = prepare(job, options).await?;
    let store = prepared.stores.store(&job.output.location)?;
    let query_schema = prepared.query.schema();
    output::check_columns(job, query_schema)?;
    let mut target = Target::open(&job.output.location, job.output.format, store).await?;
    let stamped_schema = output::stamped_arrow_schema(query_schema);
    let mut schemas = RunSchemas {
        output: columns(&stamped_schema),
        ..Default::default()
    };
    for source in &job.sources {
        if let Ok(table) = prepared.ctx.table_provider(source.name.as_str()).await {
            schemas
                .inputs
                .insert(source.name.clone(), columns(&table.schema()));
        }
    }
    let schema_changes = output::check_table(job, "output.url", &target, &stamped_schema).await?;
    let recovered = match &target {
        Target::Parquet(table) => table.recover().await?,
        Target::Delta(_) => None,
    };
    let run_id = options
        .run_id
        .unwrap_or_else(uuid::Uuid::now_v7)
        .to_string();
    let stamps = Stamps::new(&prepared, &run_id, started_at);
    let mut rejects = open_rejects(&prepared, &target).await?;
    let mut shadow = open_shadow(&prepared, &stamped_schema).await?;

    if let Target::Delta(table) = &target
        && job.output.mode == WriteMode::Append
    {
        let app_id = append_transaction(&prepared);
        if let Some(version) = table.transaction_version(&app_id).await? {
            tracing::info!(job = %job.name, app_id, "already committed: this job and these parameters were appended before; nothing to do");
            let mut manifest = base_manifest(&prepared, &stamps, started_at);
            manifest.status = RunStatus::AlreadyCommitted;
            manifest.output.version = table.version();
            manifest.timings.total_ms = millis(started.elapsed());
            let _ = version;
            return Ok(RunReport {
                manifest,
                recovered,
                rows_per_second: 0.0,
                schemas,
            });
        }
    }

    let partition_keys = incremental::partition_keys(&prepared);
    if let Some(keys) = &partition_keys {
        prepared.partition_keys = keys
            .iter()
            .map(|(p, (k, _))| (p.clone(), k.clone()))
            .collect();
    }
    if options.skip_unchanged {
        let manifest = base_manifest(&prepared, &stamps, started_at);
        let skipped = |manifest: RunManifest, version: Option<u64>, since: String| {
            let mut manifest = manifest;
            manifest.status = RunStatus::SkippedUnchanged;
            manifest.output.version = version;
            manifest.unchanged_since = Some(since);
            manifest.timings.total_ms = millis(started.elapsed());
            manifest
        };
        if let Some(found) = incremental::last_unchanged(
            &target,
            &job.name,
            &manifest.params,
            &manifest.inputs_key,
            partition_keys.as_ref().map(|_| &prepared.partition_keys),
        )
        .await?
        {
            tracing::info!(job = %job.name, version = found.version, run_id = %found.run_id, "unchanged since that run: same input files, models, query and parameters; nothing to do");
            return Ok(RunReport {
                manifest: skipped(manifest, Some(found.version), found.run_id),
                recovered,
                rows_per_second: 0.0,
                schemas,
            });
        }
        // Partition by partition, where the output's partitions are the sources' own.
        if let Some(keys) = &partition_keys
            && job.output.mode == WriteMode::Overwrite
            && job.output.replace_where.is_none()
        {
            let unchanged =
                incremental::unchanged_partitions(&target, &prepared.partition_keys).await?;
            let changed: Vec<String> = keys
                .keys()
                .filter(|p| !unchanged.contains(*p))
                .cloned()
                .collect();
            if changed.is_empty() && !keys.is_empty() {
                tracing::info!(job = %job.name, partitions = keys.len(), "every partition unchanged since the commit that wrote it; nothing to do");
                let version = target.version().await?;
                return Ok(RunReport {
                    manifest: skipped(manifest, version, "each partition's last writer".into()),
                    recovered,
                    rows_per_second: 0.0,
                    schemas,
                });
            }
            if !unchanged.is_empty() {
                let expected: BTreeSet<String> = changed
                    .iter()
                    .flat_map(|p| keys[p].1.iter().cloned())
                    .collect();
                match incremental::restrict(&prepared, &changed, &expected).await? {
                    Some((query, physical)) => {
                        tracing::info!(job = %job.name, scored = changed.len(), unchanged = unchanged.len(), "re-scoring only the partitions whose inputs changed");
                        prepared.scans = scan::planned_scans(&physical);
                        prepared.query = query;
                        prepared.physical = physical;
                        prepared.skipped_partitions = unchanged.into_iter().collect();
                        prepared.partition_keys.retain(|p, _| changed.contains(p));
                    }
                    None => tracing::info!(
                        job = %job.name,
                        "the output's partitions do not map to the sources' one to one; re-scoring every partition"
                    ),
                }
            }
        }
    }

    if let Target::Delta(table) = &mut target {
        table
            .create_if_missing(
                &crate::table::delta::nullable(&stamped_schema),
                &job.output.partition_by,
            )
            .await?;
    }
    tracing::info!(job = %job.name, run_id = %run_id, output = %job.output.location, format = %job.output.format, "run started");
    let (write_location, extension) = target.write_location(&run_id, job.output.mode);
    let inflight = serde_json::json!({
        "run_id": run_id,
        "job": job.name,
        "started_at": started_at,
        "files": format!("data files named part-*-{run_id}-*"),
    });
    if let Target::Delta(table) = &target {
        table.mark_inflight(&run_id, &inflight).await?;
    }
    if let Some(rejects) = &rejects {
        rejects.mark_inflight(&run_id, &target).await?;
    }
    if let Some(table) = &shadow {
        let mut record = inflight.clone();
        record["shadow_of"] = serde_json::json!(job.output.location.to_string());
        table.mark_inflight(&run_id, &record).await?;
    }
    let shadow_location = shadow.as_ref().map(|t| t.location().clone());
    let rejects_location = rejects.as_ref().map(|r| r.location().clone());
    // Until the commit point a stop request cancels the run: dropping the staging future
    // cancels the writers, whose abandoned multipart uploads are then aborted.
    let staged = tokio::select! {
        staged = stage(&prepared, &target, &stamps, started_at, &write_location, extension, SideTables { rejects: rejects_location.as_ref(), shadow: shadow_location.as_ref() }) => staged,
        signal = shutdown::stop_requested() => Err(Error::Interrupted { signal }),
    };
    let outcome = match staged {
        Ok(staged) => {
            commit::commit(
                &prepared,
                &mut target,
                &stamps,
                schema_changes,
                staged,
                started,
                commit::SideCommits {
                    rejects: rejects.as_mut(),
                    shadow: shadow.as_mut(),
                },
            )
            .await
        }
        Err(e) => Err((e, false)),
    };
    match outcome {
        Ok((manifest, rows_per_second)) => Ok(RunReport {
            manifest,
            recovered,
            rows_per_second,
            schemas,
        }),
        Err((e, committed)) => {
            let aborted = crate::store::metered::drain_aborts().await;
            if aborted > 0 {
                tracing::info!(uploads = aborted, "aborted unfinished multipart uploads");
            }
            if !committed {
                commit::clean_up(&target, &run_id, &write_location).await;
                if let Some(rejects) = &rejects {
                    rejects.clean_up(&run_id).await;
                }
                if let Some(table) = &shadow {
                    match table.remove_run_files(&run_id).await {
                        Ok(_) => table.clear_inflight(&run_id).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not remove the run's shadow files; `scorch gc --apply` will")
                        }
                    }
                }
            }
            Err(e)
        }
    }
}

/// The job's rejects table, open (created where missing) with the commits of earlier runs that
/// stopped between their output's commit and their rejects' completed.
async fn open_rejects(prepared: &Prepared, target: &Target) -> Result<Option<RejectsTable>> {
    let Some(config) = &prepared.job.output.rejects else {
        return Ok(None);
    };
    let Some(keys) = &prepared.reject_keys else {
        tracing::warn!(
            rejects = %config.location,
            "output.rejects: the query calls no model, so no row can be rejected"
        );
        return Ok(None);
    };
    let store = prepared.stores.store(&config.location)?;
    let mut table = RejectsTable::open(&prepared.job.path, &config.location, store, keys).await?;
    table.complete_pending(target).await?;
    Ok(Some(table))
}

/// The shadow table of a champion/challenger run, open (created where missing) with the
/// output's columns and checked like an output.
async fn open_shadow(
    prepared: &Prepared,
    schema: &arrow::datatypes::Schema,
) -> Result<Option<crate::table::delta::DeltaTable>> {
    let job = &prepared.job;
    let Some(config) = &job.shadow else {
        return Ok(None);
    };
    let store = prepared.stores.store(&config.location)?;
    let target = Target::open(&config.location, OutputFormat::Delta, store).await?;
    output::check_table(job, "shadow.url", &target, schema).await?;
    let Target::Delta(mut table) = target else {
        return Err(Error::Table {
            output: config.location.to_string(),
            message: "the shadow table must be a Delta table".into(),
        });
    };
    table
        .create_if_missing(
            &crate::table::delta::nullable(schema),
            &job.output.partition_by,
        )
        .await?;
    Ok(Some(*table))
}

/// The manifest of a run before it executes: job, parameters, models, inputs.
fn base_manifest(prepared: &Prepared, stamps: &Stamps, started_at: DateTime<Utc>) -> RunManifest {
    let job = &prepared.job;
    RunManifest {
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
                registry: prepared.registered.get(&m.name).cloned(),
            })
            .collect(),
        data_sha256: prepared.data_sha256.clone(),
        inputs_key: incremental::inputs_key(prepared),
        unchanged_since: None,
        partition_keys: prepared.partition_keys.clone(),
        skipped_partitions: prepared.skipped_partitions.clone(),
        source_versions: crate::plan::delta_versions(&prepared.listings)
            .into_iter()
            .map(|(name, version)| (name.to_string(), version))
            .collect(),
        inputs: prepared.input_files(),
        rows: RowCounts::default(),
        scan: Default::default(),
        source_files_total: prepared.listings.iter().map(|l| l.files).sum(),
        output: OutputSummary {
            url: job.output.location.to_string(),
            format: Some(job.output.format),
            mode: Some(job.output.mode),
            ..Default::default()
        },
        checks: Vec::new(),
        drift: Default::default(),
        rejects: None,
        shadow: None,
        timings: Timings {
            plan_ms: millis(prepared.plan_time),
            ..Default::default()
        },
        device: prepared.device.to_string(),
        cluster: prepared.cluster.as_ref().map(|(url, _)| url.clone()),
        target_partitions: prepared.settings.target_partitions,
        io: prepared.stores.io_stats(),
    }
}

/// Scans, scores and writes the output, then evaluates the quality gates.
async fn stage(
    prepared: &Prepared,
    target: &Target,
    stamps: &Stamps,
    started_at: DateTime<Utc>,
    write_location: &Location,
    extension: &str,
    side: SideTables<'_>,
) -> Result<Staged> {
    let SideTables { rejects, shadow } = side;
    let job = &prepared.job;
    let mut stamped = prepared.query.clone();
    let mut shadow_write = None;
    if let (Some(location), Some(config), Some(primary)) =
        (shadow, &job.shadow, job.shadowed_model())
    {
        let (twinned, columns) =
            crate::plan::shadow::add_twins(stamped, job, &primary, &config.model)?;
        stamped = twinned;
        shadow_write = Some(ShadowWrite {
            url: location.url().to_string(),
            columns,
            stamps: Stamps::of_shadow(prepared, &primary, &config.model),
        });
    }
    for (name, value) in stamps.columns() {
        stamped = stamped
            .with_column(name, lit(value))
            .map_err(|e| Error::from_query(job, e))?;
    }
    // The output's columns: the shadow's twins go to the shadow table only.
    let stamped_arrow = stamped.schema().as_arrow().clone();
    let output_schema: arrow::datatypes::SchemaRef = Arc::new(arrow::datatypes::Schema::new(
        stamped_arrow
            .fields()
            .iter()
            .filter(|f| !f.name().ends_with(crate::plan::shadow::TWIN_SUFFIX))
            .cloned()
            .collect::<Vec<_>>(),
    ));
    // A merge stages whole rows (partition columns included): the merge rewrites files itself.
    let partition_by = if job.output.mode == WriteMode::Merge {
        Vec::new()
    } else {
        job.output.partition_by.clone()
    };
    let spec = WriteSpec {
        staging: write_location.url().to_string(),
        partition_by,
        compression: job.output.compression.clone(),
        metadata: stamps
            .footer(&job.name)
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
        buffer_bytes: job
            .execution
            .write_buffer_bytes
            .unwrap_or(DEFAULT_WRITE_BUFFER),
        run_id: stamps.run_id.clone(),
        extension: extension.to_string(),
        max_file_bytes: job.output.target_file_size,
        max_open_files: MAX_OPEN_FILES,
        rejects: rejects.map(|r| r.url().to_string()),
        rejected_at: started_at.timestamp_micros(),
        shadow: shadow_write,
        constant_columns: stamps
            .columns()
            .into_iter()
            .map(|(name, _)| name.to_string())
            .collect(),
    };
    let write = StagingWrite::try_new(stamped.logical_plan().clone(), spec.clone())
        .map_err(|e| Error::from_query(job, e))?
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
        None => Error::from_query(job, e),
    };
    // The run id travels with the plan: scoring functions tally their unscored rows under it.
    let mut state = exec_ctx.state();
    state
        .config_mut()
        .options_mut()
        .set("scorch.run_id", &stamps.run_id)
        .map_err(Error::Execution)?;
    // Physical expressions take their configuration from the execution properties, which
    // snapshot it when execution starts.
    state.mark_start_execution();
    let physical = state.create_physical_plan(&write).await.map_err(failed)?;
    let rows_counter = Arc::new(AtomicU64::new(0));
    let physical = count_scan_rows(physical, &rows_counter).map_err(Error::Execution)?;

    failpoint::hit("before-write");
    let execute_started = Instant::now();
    let total_rows_hint = prepared
        .scans
        .iter()
        .map(|s| s.rows_in_files)
        .sum::<Option<u64>>();
    let bar = Progress::start(
        prepared.show_progress && prepared.cluster.is_none(),
        total_rows_hint,
        Arc::clone(&rows_counter),
    );
    let result = collect(Arc::clone(&physical), Arc::new(TaskContext::from(&state))).await;
    if let Some(bar) = bar {
        bar.finish();
    }
    let written = match result.map_err(failed) {
        Ok(written) => written,
        Err(e) => {
            let files = prepared.input_files();
            return Err(sources::name_the_file(
                e,
                &prepared.stores,
                &job.sources,
                &prepared.listings,
                Some(&files),
            )
            .await);
        }
    };
    let execute_time = execute_started.elapsed();
    let scan_metrics = scan::scan_metrics(&physical);

    let WritersReport {
        files,
        counts: mut models,
        mut rejected,
        shadow: shadow_files,
        tallies,
    } = reported_files(target.location(), &written)?;
    // What this process tallied and no writer took (scoring above a stage boundary).
    scorch_udfs::unscored::merge(&mut models, &scorch_udfs::unscored::take(&stamps.run_id));
    let rejects = match rejects {
        Some(location) => {
            let leftover =
                RejectsWriter::new(prepared.stores.store(location)?, location.path(), &spec, 0);
            if let Some(file) = leftover.finish().await.map_err(Error::Execution)? {
                rejected.push(file);
            }
            Some(RejectsSummary {
                url: location.to_string(),
                rows: rejected.iter().map(|f| f.rows).sum(),
                version: None,
                files: rejected,
            })
        }
        None => None,
    };
    let drift = drift::compute(&prepared.catalog, &models);
    // The bin counts served the drift; the manifest keeps what they measured.
    for counts in models.values_mut() {
        counts.sketch.clear();
    }
    failpoint::hit("staged");
    let written_rows: u64 = files.iter().map(|f| f.rows).sum();
    let rows = RowCounts {
        // On a cluster the scans' counters stay on the executors.
        read: if prepared.cluster.is_some() {
            written_rows
        } else {
            scan_metrics.rows
        },
        written: written_rows,
        unscored: models.values().map(|m| m.unscored).max().unwrap_or(0),
        models,
    };
    let check_results = checks::evaluate(&job.checks, &rows, &drift);
    let commit_started = Instant::now();
    let mut manifest = base_manifest(prepared, stamps, started_at);
    let mut partitions: Vec<String> = files.iter().map(|f| f.partition.clone()).collect();
    partitions.sort();
    partitions.dedup();
    manifest.rows = rows;
    manifest.scan = scan_metrics;
    manifest.output.partitions = partitions;
    manifest.output.files = files.len() as u64;
    manifest.output.bytes = files.iter().map(|f| f.bytes).sum();
    manifest.checks = check_results.clone();
    manifest.drift = drift;
    manifest.rejects = rejects;
    if let (Some(location), Some(config)) = (shadow, &job.shadow) {
        manifest.shadow = Some(ShadowSummary {
            model: config.model.clone(),
            sha256: prepared
                .catalog
                .get(&config.model)
                .map(|m| m.sha256.clone())
                .unwrap_or_default(),
            replaces: job.shadowed_model().unwrap_or_default(),
            url: location.to_string(),
            rows: shadow_files.iter().map(|f| f.rows).sum(),
            version: None,
            agreement: tallies
                .iter()
                .map(|(column, tally)| (column.clone(), tally.agreement()))
                .collect(),
        });
    }
    manifest.timings.execute_ms = millis(execute_time);
    manifest.io = prepared.stores.io_stats();
    let failures = checks::failures(&check_results);
    if !failures.is_empty() && job.checks.on_fail == crate::job::OnFail::Warn {
        for failure in &failures {
            tracing::warn!("check failed (on_fail = \"warn\": publishing anyway): {failure}");
        }
    } else if !failures.is_empty() {
        manifest.status = RunStatus::RejectedByChecks;
        manifest.finished_at = Utc::now();
        commit::write_run_manifest(target, &manifest).await;
        return Err(Error::QualityGate {
            failures,
            manifest: Some(Box::new(manifest)),
        });
    }
    Ok(Staged {
        manifest,
        files,
        written_to: write_location.clone(),
        schema: output_schema,
        execute_time,
        shadow_files,
        commit_started,
    })
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// The files the writers reported, sorted, without empty ones, the unscored rows they tallied,
/// and the files of rejected rows they wrote; a path reported twice is an error (two tasks must
/// never share a file).
fn reported_files(table: &Location, written: &[RecordBatch]) -> Result<WritersReport> {
    let mut reported = Vec::new();
    let mut shadow = Vec::new();
    let mut tallies = agreement::Tallies::new();
    let mut tallied = scorch_udfs::unscored::Counts::new();
    let mut rejected = Vec::new();
    for batch in written {
        let column = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| Error::Table {
                output: table.to_string(),
                message: format!("the writers' report has no column `{name}`"),
            })
        };
        let paths = column("path")?.as_string::<i32>().clone();
        let partitions = column("partition")?.as_string::<i32>().clone();
        let rows = column("rows")?.as_primitive::<UInt64Type>().clone();
        let bytes = column("bytes")?.as_primitive::<UInt64Type>().clone();
        let stats = column("stats")?.as_string::<i32>().clone();
        let unscored = column("unscored")?.as_string::<i32>().clone();
        let tables = column("table")?.as_string::<i32>().clone();
        let agreements = column("agreement")?.as_string::<i32>().clone();
        for i in 0..batch.num_rows() {
            if !agreements.value(i).is_empty() {
                let counted: agreement::Tallies = serde_json::from_str(agreements.value(i))
                    .map_err(|e| Error::Table {
                        output: table.to_string(),
                        message: format!("a writer reported an unreadable agreement: {e}"),
                    })?;
                agreement::merge(&mut tallies, &counted);
            }
            if !unscored.value(i).is_empty() {
                let counts: scorch_udfs::unscored::Counts = serde_json::from_str(unscored.value(i))
                    .map_err(|e| Error::Table {
                        output: table.to_string(),
                        message: format!("a writer reported unreadable unscored counts: {e}"),
                    })?;
                scorch_udfs::unscored::merge(&mut tallied, &counts);
            }
            if paths.value(i).is_empty() {
                continue;
            }
            if tables.value(i) == REJECTS_TABLE {
                rejected.push(RejectsFile {
                    path: paths.value(i).to_string(),
                    size: bytes.value(i),
                    rows: rows.value(i),
                    stats: stats.value(i).to_string(),
                });
                continue;
            }
            let file = Reported {
                path: paths.value(i).to_string(),
                partition: partitions.value(i).to_string(),
                rows: rows.value(i),
                bytes: bytes.value(i),
                stats: stats.value(i).to_string(),
            };
            if tables.value(i) == SHADOW_TABLE {
                shadow.push(file);
            } else {
                reported.push(file);
            }
        }
    }
    reported.sort();
    if let Some(pair) = reported.windows(2).find(|w| w[0].path == w[1].path) {
        return Err(Error::Table {
            output: table.to_string(),
            message: format!("two writers reported the same file `{}`", pair[0].path),
        });
    }
    reported.retain(|f| f.rows > 0);
    rejected.sort_by(|a, b| a.path.cmp(&b.path));
    shadow.sort();
    shadow.retain(|f| f.rows > 0);
    Ok(WritersReport {
        files: reported,
        counts: tallied,
        rejected,
        shadow,
        tallies,
    })
}

/// Whether the run writes a Delta table.
pub fn is_delta(job: &JobSpec) -> bool {
    job.output.format == OutputFormat::Delta
}
