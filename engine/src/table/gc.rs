//! `scorch gc`: delete what scorch's own records show it wrote and no longer needs — never a
//! file scorch has no record of — after finishing what an interrupted run left half done.
//!
//! A dry run by default: it reports what it would delete; `--apply` deletes.
//!
//! - Delta tables: Delta's vacuum (files that a version removed longer ago than the retention
//!   window; never a file any version inside the window references, never a file the log does
//!   not know), plus the uncommitted files of runs that died, found through their in-flight
//!   records, and their staging.
//! - Parquet mode: publishes committed versions an interrupted run left behind (with
//!   `--apply`), then removes staging of dead runs and files commits replaced; `--repair`
//!   commits a version without live files that are lost, so that the table can publish again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

use super::delta::{DeltaTable, INFLIGHT_DIR};
use super::target::detect;
use super::{CommitRequest, STAGING_DIR, SUCCESS_FILE, Table};
use crate::error::{Error, Result};
use crate::job::{OutputFormat, WriteMode};
use crate::store::location::Location;

/// What `gc` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcOptions {
    /// Files younger than this are kept (the retention window).
    pub older_than: Duration,
    /// Delete; without it, only report.
    pub apply: bool,
    /// Parquet mode: commit a version without lost files.
    pub repair: bool,
}

/// What `gc` did, or would do.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GcReport {
    /// `delta` or `parquet`.
    pub format: String,
    /// Whether anything was deleted (`--apply`), or only reported.
    pub applied: bool,
    /// Parquet mode: the newest version an interrupted publish left behind, published now.
    pub rolled_forward: Option<u64>,
    /// Data files a version replaced longer ago than the window, deleted (or to delete).
    pub replaced_files_removed: Vec<String>,
    /// Replaced files kept because they are younger than the window.
    pub replaced_files_kept: Vec<String>,
    /// Runs that died before committing, whose files were removed (or are to be).
    pub dead_runs_removed: Vec<String>,
    /// Objects of dead runs deleted (or to delete).
    pub dead_run_objects: u64,
    /// Runs younger than the window, left alone (they may still be going).
    pub runs_kept: Vec<String>,
    /// Files no record of this table lists: scorch did not write them, so it never deletes them.
    pub unknown_files_kept: Vec<String>,
    /// Parquet mode, `--repair`: live files that were lost, and dropped from a new version.
    pub lost_files_dropped: Vec<String>,
}

/// Runs `gc` on the table at `location`, whichever its format.
pub async fn gc(
    location: &Location,
    store: Arc<dyn ObjectStore>,
    options: GcOptions,
) -> Result<GcReport> {
    match detect(location, &store).await? {
        Some(OutputFormat::Delta) => {
            let table = DeltaTable::open(location.clone(), store).await?;
            delta_gc(&table, options).await
        }
        Some(OutputFormat::Parquet) => Table::new(location.clone(), store).gc(options).await,
        None => {
            // A Delta table whose first run died before committing has no log yet, but may
            // have in-flight records.
            let table = DeltaTable::open(location.clone(), Arc::clone(&store)).await?;
            if has_inflight(location, &store).await? {
                return delta_gc(&table, options).await;
            }
            Err(Error::NotATable {
                location: location.to_string(),
            })
        }
    }
}

async fn has_inflight(location: &Location, store: &Arc<dyn ObjectStore>) -> Result<bool> {
    use futures::StreamExt;
    let prefix = location.child(INFLIGHT_DIR);
    Ok(store.list(Some(&prefix)).next().await.is_some())
}

fn storage(location: &Location, action: &'static str) -> impl Fn(object_store::Error) -> Error {
    let location = location.to_string();
    move |source| Error::Storage {
        action,
        location: location.clone(),
        source,
    }
}

fn cutoff(options: &GcOptions) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(options.older_than).unwrap_or(chrono::Duration::MAX)
}

async fn delta_gc(table: &DeltaTable, options: GcOptions) -> Result<GcReport> {
    let location = table.location().clone();
    let root = Arc::clone(table.root());
    let mut report = GcReport {
        format: "delta".into(),
        applied: options.apply,
        ..Default::default()
    };
    let cutoff = cutoff(&options);

    // Runs that died before committing: their in-flight records, older than the window.
    let prefix = location.child(INFLIGHT_DIR);
    let records: Vec<_> = root
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(storage(&location, "list"))?;
    for record in records {
        let Some(run) = record
            .location
            .filename()
            .and_then(|n| n.strip_suffix(".json"))
            .filter(|r| uuid::Uuid::parse_str(r).is_ok())
            .map(str::to_string)
        else {
            continue;
        };
        if record.last_modified >= cutoff {
            report.runs_kept.push(run);
            continue;
        }
        // A rejects table's record of a run whose output committed: its files wait for the
        // rejects commit the next run makes.
        let body = root
            .get(&record.location)
            .await
            .map_err(storage(&location, "read"))?
            .bytes()
            .await
            .map_err(storage(&location, "read"))?;
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body)
            && super::rejects::awaited_by_output(&root, &location, &run, &value).await?
        {
            tracing::info!(
                run,
                "kept: the output committed this run; its next run commits these rejected rows"
            );
            report.runs_kept.push(run);
            continue;
        }
        let staging = location.join(&format!("{STAGING_DIR}/{run}"));
        if options.apply {
            report.dead_run_objects += table.remove_run_files(&run).await?;
            report.dead_run_objects += Table::new(location.clone(), Arc::clone(&root))
                .remove_prefix(&staging)
                .await?;
            table.clear_inflight(&run).await;
        }
        report.dead_runs_removed.push(run);
    }

    // Delta's vacuum, in its lite mode: only files the log removed, never unknown ones.
    if table.version().is_some() {
        let retention =
            chrono::Duration::from_std(options.older_than).unwrap_or(chrono::Duration::MAX);
        let (_, metrics) = table
            .log()
            .clone()
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_dry_run(!options.apply)
            .await
            .map_err(|e| Error::Delta {
                output: location.to_string(),
                action: "vacuum".into(),
                source: Box::new(e),
            })?;
        report.replaced_files_removed = metrics.files_deleted;
    }
    Ok(report)
}

impl Table {
    /// Parquet-mode `gc`: see the module's documentation. Fails with
    /// [`crate::Error::NotATable`] where scorch has never written.
    pub async fn gc(&self, options: GcOptions) -> Result<GcReport> {
        self.ensure_exists().await?;
        let mut report = GcReport {
            format: "parquet".into(),
            applied: options.apply,
            ..Default::default()
        };
        if options.repair {
            report.lost_files_dropped = self.repair(options.apply).await?;
        }
        if options.apply {
            report.rolled_forward = self.recover().await?;
        }
        let cutoff = cutoff(&options);

        // List before reading the log: a file published after the listing is not in it, and a
        // file in it belongs to a commit that the log read below already shows.
        let root = self.location.path();
        let all: Vec<_> = self
            .store
            .list(Some(&root))
            .try_collect()
            .await
            .map_err(self.storage("list", &root))?;

        let latest = self.latest_version().await?.unwrap_or(0);
        let mut written = BTreeSet::new();
        let mut live = BTreeSet::new();
        let mut committed_runs = BTreeSet::new();
        for version in 1..=latest {
            let commit = self.read_commit(version).await?;
            written.extend(commit.add.iter().map(|a| a.file.path.clone()));
            written.extend(commit.remove.iter().cloned());
            written.extend(commit.files.iter().map(|f| f.path.clone()));
            committed_runs.insert(commit.run_id.clone());
            if version == latest {
                live.extend(commit.files.into_iter().map(|f| f.path));
            }
        }

        let mut staging_runs: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for meta in &all {
            let Some(relative) = self.location.relative(&meta.location) else {
                continue;
            };
            if let Some(rest) = relative.strip_prefix(&format!("{STAGING_DIR}/")) {
                let run = rest.split('/').next().unwrap_or_default();
                if uuid::Uuid::parse_str(run).is_ok() && rest.contains('/') {
                    let newest = staging_runs
                        .entry(run.to_string())
                        .or_insert(meta.last_modified);
                    *newest = (*newest).max(meta.last_modified);
                } else {
                    report.unknown_files_kept.push(relative);
                }
            } else if relative.starts_with("_scorch/")
                || relative == SUCCESS_FILE
                || live.contains(&relative)
            {
                continue;
            } else if !written.contains(&relative) {
                report.unknown_files_kept.push(relative);
            } else if meta.last_modified >= cutoff {
                report.replaced_files_kept.push(relative);
            } else {
                if options.apply {
                    match self.store.delete(&meta.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(self.storage("delete", &meta.location)(e)),
                    }
                }
                report.replaced_files_removed.push(relative);
            }
        }
        for (run, newest) in staging_runs {
            // A committed run's staging is published (and removed) by recovery, never deleted.
            if newest >= cutoff || committed_runs.contains(&run) {
                report.runs_kept.push(run);
                continue;
            }
            if options.apply {
                report.dead_run_objects += self.remove_prefix(&self.staging(&run)).await?;
            }
            report.dead_runs_removed.push(run);
        }
        if !report.unknown_files_kept.is_empty() {
            tracing::warn!(
                files = report.unknown_files_kept.len(),
                example = %report.unknown_files_kept[0],
                "the table's folder holds files that no commit lists; scorch did not write them and keeps them"
            );
        }
        Ok(report)
    }

    /// The live files of the newest version that are neither in place nor staged; with
    /// `apply`, commits a version without them (their rows are lost either way), so that the
    /// table publishes again.
    async fn repair(&self, apply: bool) -> Result<Vec<String>> {
        let Some(latest) = self.latest_commit().await? else {
            return Ok(Vec::new());
        };
        let mut staged_at: BTreeMap<String, String> = BTreeMap::new();
        for version in 1..=latest.version {
            for s in self.read_commit(version).await?.add {
                staged_at.insert(s.file.path, s.staged);
            }
        }
        let mut lost = Vec::new();
        for file in &latest.files {
            let in_place = self
                .store
                .head(&self.location.child(&file.path))
                .await
                .is_ok();
            let staged = match staged_at.get(&file.path) {
                Some(s) => self.store.head(&self.location.child(s)).await.is_ok(),
                None => false,
            };
            if !in_place && !staged {
                lost.push(file.path.clone());
            }
        }
        if lost.is_empty() || !apply {
            return Ok(lost);
        }
        let partitions: BTreeSet<String> = latest
            .files
            .iter()
            .filter(|f| lost.contains(&f.path))
            .map(|f| f.partition.clone())
            .collect();
        // An overwrite of the damaged partitions with their surviving files.
        let survivors = latest
            .files
            .iter()
            .filter(|f| partitions.contains(&f.partition) && !lost.contains(&f.path));
        let staged = survivors
            .map(|f| super::StagedFile {
                staged: f.path.clone(),
                file: f.clone(),
            })
            .collect();
        let run_id = uuid::Uuid::now_v7().to_string();
        tracing::warn!(
            files = lost.len(),
            "repair: committing a version without lost files"
        );
        self.commit(CommitRequest {
            base: Some(latest.version),
            run_id: &run_id,
            job: "scorch gc --repair",
            mode: WriteMode::Overwrite,
            staged,
            partitions,
            schema: latest.schema.clone().unwrap_or_default(),
            run: serde_json::json!({"repair": true, "lost": lost}),
        })
        .await?;
        Ok(lost)
    }
}
