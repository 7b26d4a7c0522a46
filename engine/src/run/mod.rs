//! Running a job: score, stage, check, commit, publish.
//!
//! [`run`] plans the job ([`crate::plan`]), checks the output against the table, writes the
//! stamped rows under the run's staging prefix ([`crate::table::writer`]), evaluates the quality
//! gates ([`checks`]) and commits through [`Table`]. Until the commit point a stop request
//! cancels the run and removes what it staged; after it, the run finishes publishing.
//!
//! - [`stamps`]: the traceability columns and footer metadata;
//! - [`checks`]: quality gates;
//! - [`manifest`]: the run's audit record;
//! - [`progress`]: row counting and the progress bar.

pub mod checks;
pub mod manifest;
pub mod progress;
pub mod stamps;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use chrono::{DateTime, Utc};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::collect;
use datafusion::prelude::lit;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::job::JobSpec;
use crate::plan::{Prepared, RunOptions, output, prepare, scan, sources};
use crate::process::{failpoint, shutdown};
use crate::store::location::Location;
use crate::table::schema::TableSchema;
use crate::table::writer::{StagingWrite, WriteSpec};
use crate::table::{CommitRequest, DataFile, StagedFile, Table, data_file_path};
use manifest::{
    ModelUse, OutputSummary, RowCounts, RunManifest, RunStatus, SCORCH_VERSION, Timings,
};
use progress::{Progress, count_scan_rows};
use stamps::Stamps;

/// Bytes an output writer buffers before it switches to a multipart upload.
const DEFAULT_WRITE_BUFFER: usize = 10 * 1024 * 1024;

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

/// Runs a job to a committed, published table.
pub async fn run(job: &JobSpec, options: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let started_at = Utc::now();
    let prepared = prepare(job, options).await?;
    let store = prepared.stores.store(&job.output.location)?;
    let table = Table::new(job.output.location.clone(), Arc::clone(&store));
    let query_schema = prepared.query.schema();
    output::check_columns(job, query_schema)?;
    let table_schema = output::table_schema(query_schema);
    output::check_table(job, &table, &table_schema).await?;
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
        signal = shutdown::stop_requested() => Err(Error::Interrupted { signal }),
    };
    let outcome = match staged {
        Ok(staged) => {
            commit_and_publish(
                &prepared,
                &table,
                base,
                &stamps,
                &table_schema,
                staged,
                started,
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
        }),
        Err((e, committed)) => {
            let aborted = crate::store::metered::drain_aborts().await;
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
            .map_err(|e| Error::from_query(job, e))?;
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
    let bar = Progress::start(
        prepared.show_progress && prepared.cluster.is_none(),
        total_rows_hint,
        Arc::clone(&rows_counter),
    );
    let result = collect(Arc::clone(&physical), exec_ctx.task_ctx()).await;
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
    let source_files_total = prepared.listings.iter().map(|l| l.files).sum();
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
        inputs: prepared.input_files(),
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
        return Err(Error::QualityGate {
            failures,
            manifest: Some(Box::new(manifest)),
        });
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
    schema: &TableSchema,
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
        .commit(CommitRequest {
            base,
            run_id: &stamps.run_id,
            job: &job.name,
            mode: job.output.mode,
            staged: files,
            partitions,
            schema: schema.clone(),
            run: value,
        })
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

/// The files a run's writers reported, with their published names and unscored rows.
fn staged_files(
    table: &Table,
    staging: &Location,
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
