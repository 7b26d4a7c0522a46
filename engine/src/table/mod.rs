//! The output tables and their commit protocols.
//!
//! Two formats ([`target::Target`]): a Delta Lake table ([`delta`], the default), or a Parquet
//! folder with scorch's own log, for readers that only know folders ([`Table`], this module).
//! [`writer`] writes either, [`partition`] encodes partition paths, [`schema`] compares
//! schemas, `gc` cleans up.
//!
//! Layout of a Parquet-mode table at `<root>`:
//!
//! ```text
//! <root>/ds=2026-11-27/part-00000-<run_id>.parquet   data files, as Hive/Spark/DuckDB/pyarrow read them
//! <root>/_SUCCESS                                     {"version": N, ...}: version N is fully published
//! <root>/_scorch/log/00000000000000000007.json        commit N: the table's file list after run N
//! <root>/_scorch/published/00000000000000000007       commit N's files are in place
//! <root>/_scorch/staging/<run_id>/….parquet.staged    files of runs not yet published
//! <root>/_scorch/runs/<run_id>.json                   run manifests
//! ```
//!
//! A run writes its files under its own staging prefix, named so that no `*.parquet` glob
//! matches them, then commits by creating the next log entry with `PutMode::Create`: that single
//! create-if-absent is the commit point, so of two runs racing for the same version exactly one
//! wins. The entry lists the files to move into place and the files they replace.
//!
//! Publishing ([`Table::publish_through`]) makes every committed version visible, oldest first:
//! it moves each version's staged files that are still live, deletes the files it replaced,
//! marks it published, and only then rewrites `_SUCCESS`, which is removed while files move and
//! only ever written with a newer version. Publishing is idempotent: a process that dies after
//! the commit point leaves committed but unpublished versions, which the next run (or
//! `scorch gc`) publishes, in order, before doing anything else — including versions a later run
//! committed on top of them. A process that dies before the commit point leaves only staging
//! files, which no reader sees and `scorch gc` removes.
//!
//! Readers that want snapshot isolation read the latest log entry named by `_SUCCESS` and the
//! files it lists; readers of the plain directory see the new partitions once `_SUCCESS` is back.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::job::WriteMode;
use crate::process::failpoint;
use crate::store::location::Location;
use schema::TableSchema;

pub mod delta;
pub mod gc;
pub mod parquet_file;
pub mod partition;
pub mod rejects;
pub mod schema;
pub mod target;
pub mod writer;

pub use gc::{GcOptions, GcReport};

/// Folder of the commit log, relative to the table root.
pub const LOG_DIR: &str = "_scorch/log";
/// Folder of run staging prefixes.
pub const STAGING_DIR: &str = "_scorch/staging";
/// Folder of run manifests.
pub const RUNS_DIR: &str = "_scorch/runs";
/// Folder of the markers of published versions.
pub const PUBLISHED_DIR: &str = "_scorch/published";
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
    /// The table's schema after this commit (absent in commits of scorch 0.1 before it was
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<TableSchema>,
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

/// A table's commit log, as `scorch log` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TableHistory {
    /// The table.
    pub table: String,
    /// The version `_SUCCESS` names; `None` while a publish is in progress or was interrupted.
    pub published_version: Option<u64>,
    /// Every commit, oldest first.
    pub commits: Vec<Commit>,
}

/// What a run commits.
#[derive(Debug)]
pub struct CommitRequest<'a> {
    /// The version the run started from.
    pub base: Option<u64>,
    /// The committing run.
    pub run_id: &'a str,
    /// The job's name.
    pub job: &'a str,
    /// Overwrite or append.
    pub mode: WriteMode,
    /// The files the run staged.
    pub staged: Vec<StagedFile>,
    /// The partitions they belong to.
    pub partitions: BTreeSet<String>,
    /// The run's output schema, which becomes the table's.
    pub schema: TableSchema,
    /// The run manifest as of the commit point.
    pub run: serde_json::Value,
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

    /// The store the table lives in.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
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

    /// Publishes every committed version an interrupted run left unpublished; returns the
    /// newest one when there was something to do.
    pub async fn recover(&self) -> Result<Option<u64>> {
        let Some(latest) = self.latest_version().await? else {
            return Ok(None);
        };
        if self.unpublished(latest).await?.is_empty()
            && self.published_version().await? >= Some(latest)
        {
            return Ok(None);
        }
        tracing::warn!(
            table = %self.location,
            version = latest,
            "versions were committed but not fully published (an interrupted run); publishing them"
        );
        self.publish_through(latest).await?;
        Ok(Some(latest))
    }

    /// The version `_SUCCESS` names, if present.
    pub async fn published_version(&self) -> Result<Option<u64>> {
        Ok(self.success_marker().await?.map(|m| m.version))
    }

    /// The partitions of the newest committed version.
    pub async fn live_partitions(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .latest_commit()
            .await?
            .map(|c| c.files.into_iter().map(|f| f.partition).collect())
            .unwrap_or_default())
    }

    /// Versions up to `through` whose files are not all in place yet, oldest first.
    async fn unpublished(&self, through: u64) -> Result<Vec<u64>> {
        let prefix = self.location.child(PUBLISHED_DIR);
        let markers: BTreeSet<u64> = self
            .store
            .list(Some(&prefix))
            .try_collect::<Vec<_>>()
            .await
            .map_err(self.storage("list", &prefix))?
            .iter()
            .filter_map(|m| m.location.filename()?.parse().ok())
            .collect();
        // Tables published before the markers existed: what _SUCCESS names is in place.
        let legacy = self.published_version().await?.unwrap_or(0);
        Ok((1..=through)
            .filter(|v| *v > legacy && !markers.contains(v))
            .collect())
    }

    /// Commits a run's staged files on top of `request.base` (the version the run started from).
    ///
    /// Fails with [`Error::Conflict`] when a commit after `base` wrote a partition this run
    /// overwrites; otherwise rebases onto the newest version and creates the next log entry
    /// with `PutMode::Create`, retrying when another commit takes that version first.
    pub async fn commit(&self, request: CommitRequest<'_>) -> Result<Commit> {
        let CommitRequest {
            base,
            run_id,
            job,
            mode,
            staged,
            partitions,
            schema,
            run,
        } = request;
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
                schema: Some(schema.clone()),
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

    /// Makes every version up to `through` visible, oldest first: moves each unpublished
    /// version's staged files that are still live, deletes the files it replaced, marks it
    /// published; then writes `_SUCCESS`. Safe to repeat, and to run concurrently.
    pub async fn publish_through(&self, through: u64) -> Result<()> {
        let pending = self.unpublished(through).await?;
        if pending.is_empty() {
            return self.write_success(through).await;
        }
        let live: BTreeSet<String> = self
            .read_commit(through)
            .await?
            .files
            .into_iter()
            .map(|f| f.path)
            .collect();
        let success = self.location.child(SUCCESS_FILE);
        match self.store.delete(&success).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.storage("delete", &success)(e)),
        }
        failpoint::hit("publish-start");
        let mut moved_any = false;
        for version in pending {
            let commit = self.read_commit(version).await?;
            for s in &commit.add {
                let from = self.location.child(&s.staged);
                if !live.contains(&s.file.path) {
                    // Replaced by a later version before it was ever published.
                    self.delete_quietly(&from).await?;
                    continue;
                }
                let to = self.location.child(&s.file.path);
                if from == to {
                    continue; // kept in place by a repair
                }
                match self.store.rename(&from, &to).await {
                    Ok(()) => {}
                    Err(object_store::Error::NotFound { .. }) => {
                        // Moved by an earlier attempt; it must be in place now.
                        self.store.head(&to).await.map_err(|e| Error::Table {
                            output: self.location.to_string(),
                            message: format!(
                                "version {version}: file {} is neither staged nor published ({e}); \
                                 run `scorch gc {} --repair --apply` to commit a version without it",
                                s.file.path, self.location
                            ),
                        })?;
                    }
                    Err(e) => return Err(self.storage("publish", &from)(e)),
                }
                if !moved_any {
                    moved_any = true;
                    failpoint::hit("publish-first-file");
                }
            }
            for removed in commit.remove.iter().filter(|r| !live.contains(*r)) {
                self.delete_quietly(&self.location.child(removed)).await?;
            }
            let marker = self
                .location
                .child(&format!("{PUBLISHED_DIR}/{version:020}"));
            self.store
                .put(&marker, PutPayload::from_static(b""))
                .await
                .map_err(self.storage("write", &marker))?;
            self.remove_prefix(&self.staging(&commit.run_id)).await?;
        }
        failpoint::hit("publish-before-success");
        self.write_success(through).await
    }

    async fn delete_quietly(&self, path: &ObjectPath) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.storage("delete", path)(e)),
        }
    }

    /// Writes `_SUCCESS` naming `version`, unless it already names a newer one: a conditional
    /// write (or, on a local disk, under a file lock), so that publishes finishing out of order
    /// never move it backwards.
    async fn write_success(&self, version: u64) -> Result<()> {
        let path = self.location.child(SUCCESS_FILE);
        let commit = self.read_commit(version).await?;
        let marker = SuccessMarker {
            version,
            run_id: commit.run_id.clone(),
            published_at: Utc::now(),
        };
        let body =
            Bytes::from(serde_json::to_vec_pretty(&marker).expect("a marker always serialises"));
        if let Some(local) = self.location.local_path() {
            let lock_path = local.join("_scorch").join("success.lock");
            if let Some(parent) = lock_path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|source| Error::Io {
                    path: lock_path.clone(),
                    source,
                })?;
            lock.lock().map_err(|source| Error::Io {
                path: lock_path.clone(),
                source,
            })?;
            let current = self.success_marker().await?.map(|m| m.version);
            let result = if current.is_some_and(|c| c >= version) {
                Ok(())
            } else {
                self.store
                    .put(&path, PutPayload::from(body))
                    .await
                    .map(|_| ())
                    .map_err(self.storage("write", &path))
            };
            let _ = lock.unlock();
            return result;
        }
        loop {
            let current = match self.store.get(&path).await {
                Ok(r) => {
                    let meta = r.meta.clone();
                    let bytes = r.bytes().await.map_err(self.storage("read", &path))?;
                    let value: Option<SuccessMarker> = serde_json::from_slice(&bytes).ok();
                    Some((value.map(|m| m.version), meta))
                }
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(self.storage("read", &path)(e)),
            };
            let mode = match &current {
                Some((Some(v), _)) if *v >= version => return Ok(()),
                Some((_, meta)) => PutMode::Update(object_store::UpdateVersion {
                    e_tag: meta.e_tag.clone(),
                    version: meta.version.clone(),
                }),
                None => PutMode::Create,
            };
            let options = PutOptions {
                mode,
                ..Default::default()
            };
            match self
                .store
                .put_opts(&path, PutPayload::from(body.clone()), options)
                .await
            {
                Ok(_) => return Ok(()),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }
                    | object_store::Error::NotFound { .. },
                ) => continue,
                Err(e) => return Err(self.storage("write", &path)(e)),
            }
        }
    }

    /// Why the table's location cannot be a folder, if it cannot: an object (a file) exists
    /// at its exact path.
    pub async fn is_not_a_folder(&self) -> Result<Option<String>> {
        if let Some(path) = self.location.local_path() {
            let path = std::path::PathBuf::from(path.to_string_lossy().trim_end_matches('/'));
            return Ok(path
                .is_file()
                .then(|| format!("{} is a file, not a folder", path.display())));
        }
        let path = self.location.path();
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(format!(
                "an object of {} bytes exists at this path, so it cannot be a folder",
                meta.size
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.storage("check", &path)(e)),
        }
    }

    /// Up to `limit` files under the table's folder that scorch did not write: anything outside
    /// `_scorch/` while the table has no commit.
    pub async fn foreign_files(&self, limit: usize) -> Result<Vec<String>> {
        use futures::StreamExt;
        let root = self.location.path();
        let mut listing = self.store.list(Some(&root));
        let mut foreign = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(self.storage("list", &root))?;
            let Some(relative) = self.location.relative(&meta.location) else {
                continue;
            };
            if !relative.starts_with("_scorch/") {
                foreign.push(relative);
                if foreign.len() >= limit {
                    break;
                }
            }
        }
        Ok(foreign)
    }

    /// Whether scorch has written here: a commit log, or staged files of an unfinished run.
    pub async fn exists(&self) -> Result<bool> {
        if self.latest_version().await?.is_some() {
            return Ok(true);
        }
        use futures::StreamExt;
        let staging = self.location.child(STAGING_DIR);
        match self.store.list(Some(&staging)).next().await {
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(self.storage("list", &staging)(e)),
            None => Ok(false),
        }
    }

    /// Fails with [`Error::NotATable`] unless scorch has written here.
    pub async fn ensure_exists(&self) -> Result<()> {
        if self.exists().await? {
            Ok(())
        } else {
            Err(Error::NotATable {
                location: self.location.to_string(),
            })
        }
    }

    /// The commit log, oldest first, and the published version. Fails with
    /// [`Error::NotATable`] where there is no log.
    pub async fn history(&self) -> Result<TableHistory> {
        let Some(latest) = self.latest_version().await? else {
            return Err(Error::NotATable {
                location: self.location.to_string(),
            });
        };
        let mut commits = Vec::new();
        for v in 1..=latest {
            commits.push(self.read_commit(v).await?);
        }
        Ok(TableHistory {
            table: self.location.to_string(),
            published_version: self.success_marker().await?.map(|m| m.version),
            commits,
        })
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
