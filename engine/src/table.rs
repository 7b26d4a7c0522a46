//! The output table and its commit protocol.
//!
//! Layout of a table at `<root>`:
//!
//! ```text
//! <root>/ds=2026-11-27/part-00000-<run_id>.parquet   data files, as Hive/Spark/DuckDB/pyarrow read them
//! <root>/_SUCCESS                                     {"version": N, ...}: version N is fully published
//! <root>/_scorch/log/00000000000000000007.json        commit N: the table's file list after run N
//! <root>/_scorch/staging/<run_id>/...                 files of runs not yet committed (readers ignore `_` folders)
//! <root>/_scorch/runs/<run_id>.json                   run manifests
//! ```
//!
//! A run writes its files under its own staging prefix, then commits by creating the next log
//! entry with `PutMode::Create`: that single create-if-absent is the commit point, so of two
//! runs racing for the same version exactly one wins. The entry lists the files to move into
//! place and the files they replace. Publishing then moves the staged files, deletes the replaced
//! ones and rewrites `_SUCCESS`. Publishing is idempotent: a process that dies after the commit
//! point leaves a committed but unpublished version, which the next run (or `scorch gc`) rolls
//! forward before doing anything else. A process that dies before the commit point leaves only
//! staging files, which no reader sees and `scorch gc` removes.
//!
//! Readers that want snapshot isolation read the latest log entry named by `_SUCCESS` and the
//! files it lists; readers of the plain directory see the new partitions once `_SUCCESS` is back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::failpoint;
use crate::job::WriteMode;
use crate::location::Location;

/// Folder of the commit log, relative to the table root.
pub const LOG_DIR: &str = "_scorch/log";
/// Folder of run staging prefixes.
pub const STAGING_DIR: &str = "_scorch/staging";
/// Folder of run manifests.
pub const RUNS_DIR: &str = "_scorch/runs";
/// The publish marker.
pub const SUCCESS_FILE: &str = "_SUCCESS";
/// Format tag of log entries.
pub const LOG_FORMAT: &str = "scorch-table-v1";

/// A data file of the table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DataFile {
    /// Path relative to the table root.
    pub path: String,
    /// Hive partition path (`ds=2026-11-27`), empty for an unpartitioned table.
    pub partition: String,
    /// Size in bytes.
    pub size: u64,
    /// Rows.
    pub rows: u64,
    /// The run that wrote it.
    pub run_id: String,
}

/// A file written by a run, before and after it is moved into place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedFile {
    /// Where the run wrote it, relative to the table root.
    pub staged: String,
    /// Where it is published.
    pub file: DataFile,
}

/// One entry of the commit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// Always [`LOG_FORMAT`].
    pub format: String,
    /// Version number, from 1.
    pub version: u64,
    /// The committing run.
    pub run_id: String,
    /// The job's name.
    pub job: String,
    /// When the commit point was passed.
    pub committed_at: DateTime<Utc>,
    /// Overwrite or append.
    pub mode: WriteMode,
    /// Partitions this run wrote.
    pub partitions: Vec<String>,
    /// Files this commit adds.
    pub add: Vec<StagedFile>,
    /// Files (relative paths) this commit removes.
    pub remove: Vec<String>,
    /// Every live file of the table after this commit.
    pub files: Vec<DataFile>,
    /// The run manifest as of the commit point.
    pub run: serde_json::Value,
}

/// Contents of `_SUCCESS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuccessMarker {
    /// The published version.
    pub version: u64,
    /// The run that committed it.
    pub run_id: String,
    /// When publishing finished.
    pub published_at: DateTime<Utc>,
}

/// What [`Table::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GcReport {
    /// A version that was committed but not published, and was rolled forward.
    pub rolled_forward: Option<u64>,
    /// Staging prefixes removed (run ids).
    pub staging_runs_removed: Vec<String>,
    /// Objects deleted under staging.
    pub staging_objects_removed: u64,
    /// Data files no commit references, removed.
    pub orphan_files_removed: Vec<String>,
    /// Staging prefixes kept because they are younger than the age limit.
    pub staging_runs_kept: Vec<String>,
}

/// An output table on an object store.
#[derive(Debug, Clone)]
pub struct Table {
    location: Location,
    store: Arc<dyn ObjectStore>,
}

impl Table {
    /// The table at `location`, read and written through `store`.
    pub fn new(location: Location, store: Arc<dyn ObjectStore>) -> Self {
        Self { location, store }
    }

    /// The table root.
    pub fn location(&self) -> &Location {
        &self.location
    }

    fn storage(
        &self,
        action: &'static str,
        path: &ObjectPath,
    ) -> impl FnOnce(object_store::Error) -> Error {
        let location = format!("{}{}", self.location.store_url().as_str(), path);
        move |source| Error::Storage {
            action,
            location,
            source,
        }
    }

    fn log_path(&self, version: u64) -> ObjectPath {
        self.location
            .child(&format!("{LOG_DIR}/{version:020}.json"))
    }

    /// The run's staging folder.
    pub fn staging(&self, run_id: &str) -> Location {
        self.location.join(&format!("{STAGING_DIR}/{run_id}"))
    }

    /// The newest committed version, if any.
    pub async fn latest_version(&self) -> Result<Option<u64>> {
        let prefix = self.location.child(LOG_DIR);
        let entries: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(self.storage("list", &prefix))?;
        Ok(entries
            .iter()
            .filter_map(|m| {
                m.location
                    .filename()?
                    .strip_suffix(".json")?
                    .parse::<u64>()
                    .ok()
            })
            .max())
    }

    /// Reads one log entry.
    pub async fn read_commit(&self, version: u64) -> Result<Commit> {
        let path = self.log_path(version);
        let bytes = self
            .store
            .get(&path)
            .await
            .map_err(self.storage("read", &path))?
            .bytes()
            .await
            .map_err(self.storage("read", &path))?;
        let commit: Commit = serde_json::from_slice(&bytes).map_err(|e| Error::Table {
            output: self.location.to_string(),
            message: format!("log entry {path} is not valid: {e}"),
        })?;
        if commit.format != LOG_FORMAT || commit.version != version {
            return Err(Error::Table {
                output: self.location.to_string(),
                message: format!(
                    "log entry {path} has format {} version {}",
                    commit.format, commit.version
                ),
            });
        }
        Ok(commit)
    }

    /// The newest commit, if any.
    pub async fn latest_commit(&self) -> Result<Option<Commit>> {
        match self.latest_version().await? {
            Some(v) => Ok(Some(self.read_commit(v).await?)),
            None => Ok(None),
        }
    }

    /// The `_SUCCESS` marker, if present.
    pub async fn success_marker(&self) -> Result<Option<SuccessMarker>> {
        let path = self.location.child(SUCCESS_FILE);
        match self.store.get(&path).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(self.storage("read", &path))?;
                Ok(serde_json::from_slice(&bytes).ok())
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.storage("read", &path)(e)),
        }
    }

    /// Finishes publishing the newest commit if a crash interrupted it; returns its version
    /// when there was something to roll forward.
    pub async fn recover(&self) -> Result<Option<u64>> {
        let Some(commit) = self.latest_commit().await? else {
            return Ok(None);
        };
        let published = self.success_marker().await?.map(|m| m.version);
        if published == Some(commit.version) {
            return Ok(None);
        }
        tracing::warn!(
            table = %self.location,
            version = commit.version,
            run_id = %commit.run_id,
            "version was committed but not fully published (interrupted run); rolling it forward"
        );
        self.publish(&commit).await?;
        Ok(Some(commit.version))
    }

    /// Commits a run's staged files on top of `base` (the version the run started from).
    ///
    /// Fails with [`Error::Conflict`] when a commit after `base` wrote a partition this run
    /// overwrites; otherwise rebases onto the newest version and creates the next log entry
    /// with `PutMode::Create`, retrying when another commit takes that version first.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        base: Option<u64>,
        run_id: &str,
        job: &str,
        mode: WriteMode,
        staged: Vec<StagedFile>,
        partitions: BTreeSet<String>,
        run: serde_json::Value,
    ) -> Result<Commit> {
        let mut checked_up_to = base.unwrap_or(0);
        loop {
            let latest = self.latest_version().await?.unwrap_or(0);
            for version in checked_up_to + 1..=latest {
                let other = self.read_commit(version).await?;
                let overlap: Vec<&String> = other
                    .partitions
                    .iter()
                    .filter(|p| partitions.contains(*p))
                    .collect();
                let clashes = mode == WriteMode::Overwrite || other.mode == WriteMode::Overwrite;
                if clashes && !overlap.is_empty() {
                    return Err(Error::Conflict {
                        output: self.location.to_string(),
                        other_run: other.run_id,
                        version,
                        partitions: overlap
                            .iter()
                            .map(|p| display_partition(p))
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
            checked_up_to = latest;

            let previous = if latest == 0 {
                Vec::new()
            } else {
                self.read_commit(latest).await?.files
            };
            let (kept, removed): (Vec<DataFile>, Vec<DataFile>) = previous
                .into_iter()
                .partition(|f| mode == WriteMode::Append || !partitions.contains(&f.partition));
            let mut files = kept;
            files.extend(staged.iter().map(|s| s.file.clone()));
            files.sort();
            let commit = Commit {
                format: LOG_FORMAT.to_string(),
                version: latest + 1,
                run_id: run_id.to_string(),
                job: job.to_string(),
                committed_at: Utc::now(),
                mode,
                partitions: partitions.iter().cloned().collect(),
                add: staged.clone(),
                remove: removed.into_iter().map(|f| f.path).collect(),
                files,
                run: run.clone(),
            };
            // Every staged file must still exist before the commit point is passed.
            for s in &staged {
                let path = self.location.child(&s.staged);
                self.store
                    .head(&path)
                    .await
                    .map_err(self.storage("check staged file", &path))?;
            }
            let path = self.log_path(commit.version);
            let body = serde_json::to_vec_pretty(&commit).expect("a commit always serialises");
            let options = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match self
                .store
                .put_opts(&path, PutPayload::from(body), options)
                .await
            {
                Ok(_) => {
                    tracing::info!(table = %self.location, version = commit.version, "committed");
                    return Ok(commit);
                }
                Err(object_store::Error::AlreadyExists { .. }) => {
                    tracing::info!(
                        version = commit.version,
                        "another run took this version; rebasing"
                    );
                }
                Err(e) => return Err(self.storage("commit", &path)(e)),
            }
        }
    }

    /// Moves a commit's staged files into place, removes the files it replaces and rewrites
    /// `_SUCCESS`. Safe to repeat.
    pub async fn publish(&self, commit: &Commit) -> Result<()> {
        let success = self.location.child(SUCCESS_FILE);
        match self.store.delete(&success).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.storage("delete", &success)(e)),
        }
        failpoint::hit("publish-start");
        for (i, s) in commit.add.iter().enumerate() {
            let from = self.location.child(&s.staged);
            let to = self.location.child(&s.file.path);
            match self.store.rename(&from, &to).await {
                Ok(()) => {}
                Err(object_store::Error::NotFound { .. }) => {
                    // Moved by an earlier attempt; it must be in place now.
                    self.store.head(&to).await.map_err(|e| Error::Table {
                        output: self.location.to_string(),
                        message: format!(
                            "version {}: file {} is neither staged nor published ({e}); the table needs repair",
                            commit.version, s.file.path
                        ),
                    })?;
                }
                Err(e) => return Err(self.storage("publish", &from)(e)),
            }
            if i == 0 {
                failpoint::hit("publish-first-file");
            }
        }
        for removed in &commit.remove {
            let path = self.location.child(removed);
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.storage("delete", &path)(e)),
            }
        }
        failpoint::hit("publish-before-success");
        let marker = SuccessMarker {
            version: commit.version,
            run_id: commit.run_id.clone(),
            published_at: Utc::now(),
        };
        let body = serde_json::to_vec_pretty(&marker).expect("a marker always serialises");
        self.store
            .put(&success, PutPayload::from(body))
            .await
            .map_err(self.storage("write", &success))?;
        self.remove_prefix(&self.staging(&commit.run_id)).await?;
        Ok(())
    }

    /// Writes a run manifest under `_scorch/runs/`.
    pub async fn write_run_manifest(
        &self,
        run_id: &str,
        manifest: &serde_json::Value,
    ) -> Result<()> {
        let path = self.location.child(&format!("{RUNS_DIR}/{run_id}.json"));
        let body = serde_json::to_vec_pretty(manifest).expect("a manifest always serialises");
        self.store
            .put(&path, PutPayload::from(Bytes::from(body)))
            .await
            .map_err(self.storage("write", &path))?;
        Ok(())
    }

    /// Deletes every object under a folder; returns how many.
    pub async fn remove_prefix(&self, folder: &Location) -> Result<u64> {
        let prefix = folder.path();
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(self.storage("list", &prefix))?;
        let mut removed = 0;
        for meta in objects {
            match self.store.delete(&meta.location).await {
                Ok(()) => removed += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.storage("delete", &meta.location)(e)),
            }
        }
        Ok(removed)
    }

    /// Rolls forward an interrupted publish, then removes staging prefixes and unreferenced data
    /// files older than `older_than`. Never touches a file a commit references.
    pub async fn gc(&self, older_than: Duration) -> Result<GcReport> {
        let mut report = GcReport {
            rolled_forward: self.recover().await?,
            ..Default::default()
        };
        let cutoff =
            Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let referenced: BTreeSet<String> = self
            .latest_commit()
            .await?
            .map(|c| c.files.into_iter().map(|f| f.path).collect())
            .unwrap_or_default();

        let root = self.location.path();
        let all: Vec<_> = self
            .store
            .list(Some(&root))
            .try_collect()
            .await
            .map_err(self.storage("list", &root))?;
        let mut staging_runs: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for meta in &all {
            let Some(relative) = self.location.relative(&meta.location) else {
                continue;
            };
            if let Some(rest) = relative.strip_prefix(&format!("{STAGING_DIR}/")) {
                let run = rest.split('/').next().unwrap_or_default().to_string();
                let newest = staging_runs.entry(run).or_insert(meta.last_modified);
                *newest = (*newest).max(meta.last_modified);
            } else if is_data_file_name(&relative)
                && !referenced.contains(&relative)
                && meta.last_modified < cutoff
            {
                match self.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                        report.orphan_files_removed.push(relative)
                    }
                    Err(e) => return Err(self.storage("delete", &meta.location)(e)),
                }
            }
        }
        for (run, newest) in staging_runs {
            if newest < cutoff {
                report.staging_objects_removed += self.remove_prefix(&self.staging(&run)).await?;
                report.staging_runs_removed.push(run);
            } else {
                report.staging_runs_kept.push(run);
            }
        }
        Ok(report)
    }
}

/// Whether a relative path looks like a data file scorch publishes (`…/part-NNNNN-<run>.parquet`),
/// outside scorch's own folders.
fn is_data_file_name(relative: &str) -> bool {
    let name = relative.rsplit('/').next().unwrap_or_default();
    !relative.starts_with('_') && name.starts_with("part-") && name.ends_with(".parquet")
}

fn display_partition(p: &str) -> String {
    if p.is_empty() {
        "(whole table)".to_string()
    } else {
        p.to_string()
    }
}

/// The published name of the `index`-th file a run writes into `partition`.
pub fn data_file_path(partition: &str, index: usize, run_id: &str) -> String {
    let name = format!("part-{index:05}-{run_id}.parquet");
    if partition.is_empty() {
        name
    } else {
        format!("{partition}/{name}")
    }
}
