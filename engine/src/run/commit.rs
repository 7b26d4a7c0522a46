//! Committing a staged run, per table format.
//!
//! - Delta: the files are already in place; one log entry adds them and removes what they
//!   replace (the `replace_where` condition, or the partitions written), with the run's audit
//!   record in `commitInfo`. A merge hands the staged rows to delta-rs' MERGE instead.
//! - Parquet: scorch's log entry, then the publish that moves files into place.
//!
//! Not cancelled by stop requests: once the commit point is near, finishing is safer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use datafusion::prelude::ParquetReadOptions;
use serde_json::{Value, json};

use super::{Reported, Staged, append_transaction, millis};
use crate::error::{Error, Result};
use crate::job::WriteMode;
use crate::plan::Prepared;
use crate::process::failpoint;
use crate::run::manifest::RunManifest;
use crate::run::stamps::Stamps;
use crate::store::location::Location;
use crate::table::delta::replace::{ReplaceWhere, partitions_sql};
use crate::table::delta::{self, DeltaCommit, DeltaTable, NewFile, Replace};
use crate::table::rejects::{self, RejectsTable};
use crate::table::schema::TableSchema;
use crate::table::target::Target;
use crate::table::{CommitRequest, DataFile, StagedFile, Table, data_file_path, partition};

/// The tables committed after the output, when the job has them.
#[derive(Default)]
pub struct SideCommits<'a> {
    /// The rejects table.
    pub rejects: Option<&'a mut RejectsTable>,
    /// The shadow table.
    pub shadow: Option<&'a mut DeltaTable>,
}

/// Commits and finishes a staged run; the error says whether the commit point was passed.
pub async fn commit(
    prepared: &Prepared,
    target: &mut Target,
    stamps: &Stamps,
    schema_changes: bool,
    mut staged: Staged,
    started: Instant,
    side: SideCommits<'_>,
) -> Result<(RunManifest, f64), (Error, bool)> {
    let SideCommits { rejects, shadow } = side;
    failpoint::hit("before-commit");
    let execute_time = staged.execute_time;
    let shadow_files = std::mem::take(&mut staged.shadow_files);
    let schema = Arc::clone(&staged.schema);
    let (mut manifest, version) = match target {
        Target::Parquet(table) => commit_parquet(prepared, table, stamps, staged).await?,
        Target::Delta(table) => {
            commit_delta(prepared, table, stamps, schema_changes, staged).await?
        }
    };
    manifest.output.version = Some(version);
    // The output's commit lists the rejects: they follow it, now or in the next run.
    if let (Some(table), Some(summary)) = (rejects, manifest.rejects.as_mut()) {
        failpoint::hit("before-rejects-commit");
        match table.commit(&stamps.run_id, version, summary).await {
            Ok(v) => summary.version = Some(v),
            Err(e) => tracing::warn!(
                error = %e,
                rejects = %summary.url,
                "the output is committed but its rejected rows are not yet: the next run of the job commits them"
            ),
        }
    }
    if let Some(table) = shadow
        && manifest.shadow.is_some()
    {
        let staged = Staged {
            manifest: shadow_manifest(prepared, &manifest),
            files: shadow_files,
            written_to: table.location().clone(),
            schema,
            execute_time,
            shadow_files: Vec::new(),
            commit_started: Instant::now(),
        };
        let committed = commit_delta(prepared, table, stamps, schema_changes, staged).await;
        let summary = manifest.shadow.as_mut().expect("checked above");
        match committed {
            Ok((_, version)) => summary.version = Some(version),
            Err((e, _)) => tracing::warn!(
                error = %e,
                shadow = %summary.url,
                "the output is committed, the shadow table's commit failed: its files stay for `scorch gc`"
            ),
        }
    }
    manifest.timings.total_ms = millis(started.elapsed());
    manifest.finished_at = Utc::now();
    manifest.io = prepared.stores.io_stats();
    write_run_manifest(target, &manifest).await;
    let rows_per_second = manifest.rows.written as f64 / execute_time.as_secs_f64().max(1e-9);
    tracing::info!(
        run_id = %stamps.run_id,
        version,
        rows = manifest.rows.written,
        unscored = manifest.rows.unscored,
        rows_per_second = rows_per_second.round(),
        "run committed"
    );
    Ok((manifest, rows_per_second))
}

/// The manifest the shadow table's commit records: the run's, with the shadow model in place of
/// the one it shadows, and nothing of the output's own rejects or shadow.
fn shadow_manifest(prepared: &Prepared, manifest: &RunManifest) -> RunManifest {
    let mut shadowed = manifest.clone();
    let (Some(config), Some(primary)) = (&prepared.job.shadow, prepared.job.shadowed_model())
    else {
        return shadowed;
    };
    if let (Some(slot), Ok(model)) = (
        shadowed.models.iter_mut().find(|m| m.name == primary),
        prepared.catalog.get(&config.model),
    ) {
        *slot = crate::run::manifest::ModelUse {
            name: model.name.clone(),
            uri: model.uri.clone(),
            version: model.version.clone(),
            sha256: model.sha256.clone(),
            format: model.format.to_string(),
            source: prepared.package_sources.get(&model.name).copied(),
            registry: prepared.registered.get(&model.name).cloned(),
        };
    }
    shadowed.rejects = None;
    shadowed.shadow = None;
    shadowed
}

/// Writes the run's manifest under the table's `_scorch/runs/`; a failure is logged, not fatal
/// (the commit already records the run).
pub async fn write_run_manifest(target: &Target, manifest: &RunManifest) {
    let value = serde_json::to_value(manifest).expect("a manifest always serialises");
    let table = match target {
        Target::Parquet(t) => t.clone(),
        Target::Delta(t) => Table::new(t.location().clone(), Arc::clone(t.root())),
    };
    if let Err(e) = table.write_run_manifest(&manifest.run_id, &value).await {
        tracing::warn!(error = %e, "could not write the run manifest");
    }
}

/// Removes what a run that did not commit wrote.
pub async fn clean_up(target: &Target, run_id: &str, written_to: &Location) {
    let result = match target {
        Target::Parquet(table) => table.remove_prefix(written_to).await.map(|_| ()),
        Target::Delta(table) => {
            let staged = if written_to != table.location() {
                Table::new(table.location().clone(), Arc::clone(table.root()))
                    .remove_prefix(written_to)
                    .await
                    .map(|_| ())
            } else {
                table.remove_run_files(run_id).await.map(|_| ())
            };
            if staged.is_ok() {
                table.clear_inflight(run_id).await;
            }
            staged
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, run_id, "could not remove the run's files; `scorch gc --apply` will");
    }
}

async fn commit_parquet(
    prepared: &Prepared,
    table: &Table,
    stamps: &Stamps,
    staged: Staged,
) -> Result<(RunManifest, u64), (Error, bool)> {
    let job = &prepared.job;
    let Staged {
        mut manifest,
        files,
        written_to,
        schema,
        commit_started,
        ..
    } = staged;
    let base = table.published_version().await.map_err(|e| (e, false))?;
    let staged_files = parquet_files(table, &written_to, &stamps.run_id, &files);
    let mut partitions: BTreeSet<String> = files.iter().map(|f| f.partition.clone()).collect();
    if let Some(sql) = &job.output.replace_where {
        let condition =
            ReplaceWhere::try_bind(sql, &prepared.params, &schema, &job.output.partition_by)
                .map_err(|e| (e, false))?;
        let committed = table.live_partitions().await.map_err(|e| (e, false))?;
        let parsed: Vec<BTreeMap<String, Option<String>>> =
            committed.iter().map(|p| partition::parse(p)).collect();
        let covered = condition.matches(&parsed).map_err(|e| (e, false))?;
        check_covered(&condition, &partitions).map_err(|e| (e, false))?;
        partitions.extend(
            committed
                .into_iter()
                .zip(covered)
                .filter(|(_, c)| *c)
                .map(|(p, _)| p),
        );
    }
    let value = serde_json::to_value(&manifest).expect("a manifest always serialises");
    let commit = table
        .commit(CommitRequest {
            base,
            run_id: &stamps.run_id,
            job: &job.name,
            mode: job.output.mode,
            staged: staged_files,
            partitions,
            schema: TableSchema::from_arrow(&schema),
            run: value,
        })
        .await
        .map_err(|e| (e, false))?;
    let committed = |e: Error| (e, true);
    failpoint::hit("committed");
    manifest.timings.commit_ms = millis(commit_started.elapsed());
    let publish_started = Instant::now();
    table
        .publish_through(commit.version)
        .await
        .map_err(committed)?;
    failpoint::hit("published");
    manifest.timings.publish_ms = millis(publish_started.elapsed());
    Ok((manifest, commit.version))
}

/// Every partition the run wrote must satisfy the replace condition, or its rows would stay
/// beside the ones the condition keeps.
fn check_covered(condition: &ReplaceWhere, written: &BTreeSet<String>) -> Result<()> {
    let written: Vec<&String> = written.iter().collect();
    let parsed: Vec<BTreeMap<String, Option<String>>> =
        written.iter().map(|p| partition::parse(p)).collect();
    let covered = condition.matches(&parsed)?;
    if let Some((p, _)) = written.iter().zip(&covered).find(|(_, c)| !**c) {
        return Err(Error::ReplaceWhere {
            predicate: condition.sql.clone(),
            message: format!(
                "the run wrote partition `{p}`, which the condition does not cover: the rows \
                 it replaces and the rows it writes must be the same part of the table"
            ),
        });
    }
    Ok(())
}

/// The Parquet mode's staged files, with the names they are published under.
fn parquet_files(
    table: &Table,
    written_to: &Location,
    run_id: &str,
    files: &[Reported],
) -> Vec<StagedFile> {
    let mut per_partition: BTreeMap<String, usize> = BTreeMap::new();
    files
        .iter()
        .map(|f| {
            let index = per_partition.entry(f.partition.clone()).or_default();
            let staged = table
                .location()
                .relative(&delta::object_path(written_to, &f.path))
                .unwrap_or_else(|| f.path.clone());
            let file = StagedFile {
                staged,
                file: DataFile {
                    path: data_file_path(&f.partition, *index, run_id),
                    partition: f.partition.clone(),
                    size: f.bytes,
                    rows: f.rows,
                    run_id: run_id.to_string(),
                },
            };
            *index += 1;
            file
        })
        .collect()
}

/// The `commitInfo` entries of a run.
fn commit_info(prepared: &Prepared, manifest: &RunManifest) -> serde_json::Map<String, Value> {
    let mut info = serde_json::Map::new();
    info.insert("scorch.version".into(), json!(manifest.scorch_version));
    info.insert(delta::RUN_ID_KEY.into(), json!(manifest.run_id));
    info.insert("scorch.job".into(), json!(manifest.job));
    info.insert("scorch.params".into(), json!(manifest.params));
    info.insert(
        "scorch.models".into(),
        Value::Array(
            manifest
                .models
                .iter()
                .map(|m| {
                    let mut model =
                        json!({"name": m.name, "version": m.version, "sha256": m.sha256});
                    if let Some(r) = &m.registry {
                        model["registry"] = json!(r);
                    }
                    model
                })
                .collect(),
        ),
    );
    info.insert("scorch.data_sha256".into(), json!(manifest.data_sha256));
    info.insert(
        crate::run::incremental::INPUTS_KEY.into(),
        json!(manifest.inputs_key),
    );
    if !manifest.partition_keys.is_empty() {
        info.insert(
            crate::run::incremental::PARTITION_KEYS.into(),
            json!(manifest.partition_keys),
        );
    }
    info.insert("scorch.rows".into(), json!(manifest.rows));
    if !manifest.drift.is_empty() {
        info.insert("scorch.drift".into(), json!(manifest.drift));
    }
    if let Some(rejects) = &manifest.rejects {
        info.insert(rejects::COMMIT_INFO_KEY.into(), json!(rejects));
    }
    info.insert("scorch.checks".into(), json!(manifest.checks));
    info.insert("scorch.inputs".into(), json!(prepared.input_files().len()));
    info
}

async fn commit_delta(
    prepared: &Prepared,
    table: &mut DeltaTable,
    stamps: &Stamps,
    schema_changes: bool,
    staged: Staged,
) -> Result<(RunManifest, u64), (Error, bool)> {
    let job = &prepared.job;
    let Staged {
        mut manifest,
        files,
        written_to,
        schema,
        commit_started,
        ..
    } = staged;
    let output = table.location().to_string();
    let conflict = |e: Error| match e {
        Error::Delta { source, .. } if delta::is_conflict(&source) => Error::DeltaConflict {
            output: output.clone(),
            reason: conflict_reason(&source),
        },
        other => other,
    };
    let info = commit_info(prepared, &manifest);
    let schema = delta::nullable(&schema);
    let base = table.version();
    let attempt = if job.output.mode == WriteMode::Merge {
        merge(prepared, table, &written_to, &schema, info).await
    } else {
        let new_files: Vec<NewFile> = files
            .iter()
            .map(|f| NewFile {
                path: f.path.clone(),
                partition_values: delta::partition_values(&f.path),
                size: f.bytes,
                rows: f.rows,
                stats: f.stats.clone(),
            })
            .collect();
        let replace = match job.output.mode {
            WriteMode::Append | WriteMode::Merge => Replace::Nothing,
            WriteMode::Overwrite => {
                overwrite_scope(prepared, table, &schema, &new_files).map_err(|e| (e, false))?
            }
        };
        let transaction =
            (job.output.mode == WriteMode::Append).then(|| (append_transaction(prepared), 1));
        table
            .commit(DeltaCommit {
                files: new_files,
                replace,
                schema: Arc::new(schema),
                schema_changes,
                partition_by: job.output.partition_by.clone(),
                info,
                transaction,
            })
            .await
    };
    let version = match attempt {
        Ok(version) => version,
        Err(e @ Error::Delta { .. }) if !is_conflict_error(&e) => {
            // The store may have taken the entry and lost the reply: the log decides.
            match table.version_committed_by(&stamps.run_id, base).await {
                Ok(Some(version)) => {
                    tracing::warn!(error = %e, version, "the commit reported an error but its log entry is there");
                    version
                }
                Ok(None) => return Err((e, false)),
                // Unknown: keep the files; `gc` decides once the store answers.
                Err(_) => return Err((e, true)),
            }
        }
        Err(e) => return Err((conflict(e), false)),
    };
    failpoint::hit("committed");
    table.clear_inflight(&stamps.run_id).await;
    manifest.timings.commit_ms = millis(commit_started.elapsed());
    Ok((manifest, version))
}

fn is_conflict_error(e: &Error) -> bool {
    matches!(e, Error::Delta { source, .. } if delta::is_conflict(source))
}

fn conflict_reason(e: &deltalake_core::DeltaTableError) -> String {
    use deltalake_core::kernel::transaction::{CommitConflictError as C, TransactionError as T};
    match e {
        deltalake_core::DeltaTableError::Transaction { source } => match source {
            T::CommitConflict(C::ConcurrentAppend) => {
                "another run added files to the partitions this run replaces".into()
            }
            T::CommitConflict(C::ConcurrentDeleteRead | C::ConcurrentDeleteDelete) => {
                "another run replaced files of the partitions this run replaces".into()
            }
            T::CommitConflict(C::ConcurrentTransaction) => {
                "another run appended the same job and parameters".into()
            }
            T::CommitConflict(C::MetadataChanged) => {
                "another run changed the table's schema".into()
            }
            T::MaxCommitAttempts(n) => format!("{n} attempts lost to concurrent commits"),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// What an overwrite replaces: the declared condition's files, else the partitions written
/// (the whole table when unpartitioned).
fn overwrite_scope(
    prepared: &Prepared,
    table: &DeltaTable,
    schema: &arrow::datatypes::Schema,
    files: &[NewFile],
) -> Result<Replace> {
    let job = &prepared.job;
    let active = table.active_files();
    if job.output.partition_by.is_empty() {
        return Ok(Replace::All);
    }
    let written: BTreeSet<BTreeMap<String, Option<String>>> =
        files.iter().map(|f| f.partition_values.clone()).collect();
    match &job.output.replace_where {
        Some(sql) => {
            let condition =
                ReplaceWhere::try_bind(sql, &prepared.params, schema, &job.output.partition_by)?;
            let written_paths: BTreeSet<String> = files
                .iter()
                .map(|f| {
                    f.path
                        .rsplit_once('/')
                        .map(|(d, _)| d.to_string())
                        .unwrap_or_default()
                })
                .collect();
            check_covered(&condition, &written_paths)?;
            let partitions: Vec<BTreeMap<String, Option<String>>> =
                active.iter().map(|(_, p)| p.clone()).collect();
            let covered = condition.matches(&partitions)?;
            Ok(Replace::Matching {
                files: active
                    .into_iter()
                    .zip(covered)
                    .filter(|(_, c)| *c)
                    .map(|((path, _), _)| path)
                    .collect(),
                predicate: condition.sql,
            })
        }
        None => {
            let replaced = active
                .into_iter()
                .filter(|(_, p)| written.contains(p))
                .map(|(path, _)| path)
                .collect();
            let written: Vec<BTreeMap<String, Option<String>>> = written.into_iter().collect();
            Ok(Replace::Matching {
                files: replaced,
                predicate: partitions_sql(&written),
            })
        }
    }
}

/// A merge: the staged rows upserted by the job's key through delta-rs' MERGE, which rewrites
/// the files holding matched rows.
async fn merge(
    prepared: &Prepared,
    table: &mut DeltaTable,
    staged: &Location,
    schema: &arrow::datatypes::Schema,
    info: serde_json::Map<String, Value>,
) -> Result<u64> {
    let job = &prepared.job;
    let output = table.location().clone();
    let delta = |action: &'static str| {
        let output = output.to_string();
        move |e: deltalake_core::DeltaTableError| Error::Delta {
            output,
            action: action.to_string(),
            source: Box::new(e),
        }
    };
    let source = prepared
        .ctx
        .read_parquet(
            staged.url().as_str(),
            ParquetReadOptions::default().file_extension(".parquet"),
        )
        .await
        .map_err(Error::Execution)?;
    let predicate = job
        .output
        .key
        .iter()
        .map(|k| format!("target.\"{k}\" = source.\"{k}\""))
        .collect::<Vec<_>>()
        .join(" AND ");
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let properties = deltalake_core::kernel::transaction::CommitProperties::default()
        .with_metadata(info)
        .with_cleanup_expired_logs(Some(false));
    let (merged, _metrics) = table
        .log()
        .clone()
        .merge(source, predicate)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_session_state(Arc::new(prepared.ctx.state()))
        .with_commit_properties(properties)
        .when_matched_update(|u| {
            columns
                .iter()
                .fold(u, |u, c| u.update(c.as_str(), format!("source.\"{c}\"")))
        })
        .map_err(delta("merge"))?
        .when_not_matched_insert(|i| {
            columns
                .iter()
                .fold(i, |i, c| i.set(c.as_str(), format!("source.\"{c}\"")))
        })
        .map_err(delta("merge"))?
        .await
        .map_err(delta("merge"))?;
    let version = merged.version().unwrap_or(0);
    *table = DeltaTable::open(table.location().clone(), Arc::clone(table.root())).await?;
    Table::new(output.clone(), Arc::clone(table.root()))
        .remove_prefix(staged)
        .await?;
    Ok(version)
}
