//! Delta Lake output tables, through delta-rs (`deltalake-core`) on scorch's own object stores.
//!
//! A run writes its data files straight into the table's partition folders, named with its run
//! id (`part-00000-<run_id>-<uuid>.parquet`): no Delta reader sees a file before a commit lists
//! it, so there is nothing to move. The commit is one log entry (`_delta_log/N.json`) created
//! with a create-if-absent write, carrying the run's `add` actions, the `remove` actions of what
//! it replaces, and `commitInfo` with the run's audit record. delta-rs' conflict checker decides
//! between concurrent commits: runs on different partitions both commit; on the same partitions
//! the later one fails and publishes nothing.
//!
//! A run records itself in `_scorch/inflight/<run_id>.json` before it writes: if it dies before
//! committing, that record is how `scorch gc` knows which uncommitted files are scorch's.

pub mod replace;
pub mod stats;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use deltalake_core::kernel::transaction::{
    CommitBuilder, CommitConflictError, CommitProperties, TransactionError,
};
use deltalake_core::kernel::{Action, Add, Remove, StructType, Transaction};
use deltalake_core::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable as DeltaLog, DeltaTableError};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::location::Location;
use crate::table::partition;
use crate::table::schema::TableSchema;

/// Folder of in-flight run records, relative to the table root.
pub const INFLIGHT_DIR: &str = "_scorch/inflight";

/// The Delta log folder.
pub const LOG_DIR: &str = "_delta_log";

/// The `commitInfo` key that names the run behind a version.
pub const RUN_ID_KEY: &str = "scorch.run_id";

/// A file a run wrote into the table, not yet committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    /// Path relative to the table root, partition folders percent-encoded.
    pub path: String,
    /// Partition values by column (raw, not encoded; `None` is NULL).
    pub partition_values: BTreeMap<String, Option<String>>,
    /// Size in bytes.
    pub size: u64,
    /// Rows.
    pub rows: u64,
    /// Delta statistics (JSON).
    pub stats: String,
}

/// What a commit replaces.
#[derive(Debug, Clone)]
pub enum Replace {
    /// Nothing: the run's files are added (append).
    Nothing,
    /// The active files for which `matches` holds; `predicate` is the same condition as SQL,
    /// for the conflict checker.
    Matching {
        /// The files replaced (paths relative to the table root).
        files: BTreeSet<String>,
        /// The condition as SQL over partition columns.
        predicate: String,
    },
    /// Every active file (an unpartitioned overwrite).
    All,
}

/// A commit of one run.
#[derive(Debug)]
pub struct DeltaCommit {
    /// The files the run wrote.
    pub files: Vec<NewFile>,
    /// What they replace.
    pub replace: Replace,
    /// The run's schema (for a new table, or a schema change the job allows).
    pub schema: SchemaRef,
    /// Whether the table's schema changes with this commit.
    pub schema_changes: bool,
    /// Partition columns.
    pub partition_by: Vec<String>,
    /// `commitInfo` entries (`scorch.run_id`, `scorch.job`, …).
    pub info: serde_json::Map<String, serde_json::Value>,
    /// An application transaction that makes the commit idempotent (appends).
    pub transaction: Option<(String, i64)>,
}

/// What one version changed, by partition folder (see [`DeltaTable::version_touch`]).
#[derive(Debug, Clone, Default)]
pub struct VersionTouch {
    /// The version.
    pub version: u64,
    /// The operation (`WRITE`, `OPTIMIZE`, …).
    pub operation: Option<String>,
    /// `commitInfo` entries.
    pub info: serde_json::Map<String, serde_json::Value>,
    /// Partition folders (encoded, `""` for none) that files were added to.
    pub added: BTreeSet<String>,
    /// Partition folders that files were removed from.
    pub removed: BTreeSet<String>,
}

/// One entry of a Delta table's history, as `scorch log` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// Version.
    pub version: u64,
    /// When it was committed.
    pub timestamp: Option<DateTime<Utc>>,
    /// The operation (`WRITE`, `CREATE TABLE`, `MERGE`, `OPTIMIZE`, …).
    pub operation: Option<String>,
    /// Files added.
    pub files_added: u64,
    /// Files removed.
    pub files_removed: u64,
    /// Rows in the added files (from their statistics).
    pub rows_added: u64,
    /// scorch's entries of `commitInfo` (run id, job, parameters, models, fingerprint, rows).
    pub scorch: serde_json::Map<String, serde_json::Value>,
}

/// A Delta table on one of scorch's object stores.
pub struct DeltaTable {
    location: Location,
    root: Arc<dyn ObjectStore>,
    log: DeltaLog,
}

impl std::fmt::Debug for DeltaTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaTable")
            .field("location", &self.location.to_string())
            .field("version", &self.version())
            .finish()
    }
}

fn delta_error(location: &Location, action: &str) -> impl FnOnce(DeltaTableError) -> Error {
    let output = location.to_string();
    let action = action.to_string();
    move |e| match e {
        DeltaTableError::ObjectStore { source } => Error::Storage {
            action: "access Delta table at",
            location: format!("{output} ({action})"),
            source,
        },
        other => Error::Delta {
            output,
            action,
            source: Box::new(other),
        },
    }
}

/// The log store of the table at `location`, over `root` (the store of the location's bucket,
/// or of `/` for local paths): delta-rs adds the table's prefix itself.
pub fn log_store(location: &Location, root: Arc<dyn ObjectStore>) -> LogStoreRef {
    let prefixed: Arc<dyn ObjectStore> =
        Arc::new(PrefixStore::new(Arc::clone(&root), location.path()));
    default_logstore(prefixed, root, location.url(), &StorageConfig::default())
}

impl DeltaTable {
    /// The table at `location` (loaded when it exists).
    pub async fn open(location: Location, root: Arc<dyn ObjectStore>) -> Result<Self> {
        let mut log = DeltaLog::new(log_store(&location, Arc::clone(&root)));
        if log
            .log_store()
            .is_delta_table_location()
            .await
            .map_err(delta_error(&location, "probe"))?
        {
            log.load().await.map_err(delta_error(&location, "load"))?;
        }
        Ok(Self {
            location,
            root,
            log,
        })
    }

    /// Whether there is a Delta log at `location`.
    pub async fn exists_at(location: &Location, root: &Arc<dyn ObjectStore>) -> Result<bool> {
        log_store(location, Arc::clone(root))
            .is_delta_table_location()
            .await
            .map_err(delta_error(location, "probe"))
    }

    /// The table root.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The loaded version; `None` before the first commit.
    pub fn version(&self) -> Option<u64> {
        self.log.version()
    }

    /// The table's schema as Arrow types, when the table exists.
    pub fn arrow_schema(&self) -> Result<Option<Schema>> {
        let Ok(snapshot) = self.log.snapshot() else {
            return Ok(None);
        };
        let kernel = snapshot.schema();
        to_arrow(&kernel)
            .map(Some)
            .map_err(delta_error(&self.location, "read the schema"))
    }

    /// The committed schema, as scorch compares schemas.
    pub fn schema(&self) -> Result<Option<TableSchema>> {
        Ok(self.arrow_schema()?.map(|s| TableSchema::from_arrow(&s)))
    }

    /// The table's partition columns.
    pub fn partition_columns(&self) -> Vec<String> {
        self.log
            .snapshot()
            .map(|s| s.metadata().partition_columns().to_vec())
            .unwrap_or_default()
    }

    /// The version of the application transaction `app_id`, when one was committed.
    pub async fn transaction_version(&self, app_id: &str) -> Result<Option<i64>> {
        let Ok(snapshot) = self.log.snapshot() else {
            return Ok(None);
        };
        snapshot
            .transaction_version(self.log.log_store().as_ref(), app_id)
            .await
            .map_err(delta_error(&self.location, "read transactions"))
    }

    /// The active files: path (relative, decoded as the log holds it) and partition values.
    pub fn active_files(&self) -> Vec<(String, BTreeMap<String, Option<String>>)> {
        let Ok(snapshot) = self.log.snapshot() else {
            return Vec::new();
        };
        snapshot
            .log_data()
            .iter()
            .map(|f| {
                (
                    f.path().into_owned(),
                    f.partition_values_map().into_iter().collect(),
                )
            })
            .collect()
    }

    /// Records that run `run_id` is writing here, before it writes.
    pub async fn mark_inflight(&self, run_id: &str, info: &serde_json::Value) -> Result<()> {
        let path = self
            .location
            .child(&format!("{INFLIGHT_DIR}/{run_id}.json"));
        let body = serde_json::to_vec_pretty(info).expect("a record always serialises");
        self.root
            .put(&path, PutPayload::from(Bytes::from(body)))
            .await
            .map_err(|source| Error::Storage {
                action: "write",
                location: format!("{}{}", self.location.store_url().as_str(), path),
                source,
            })?;
        Ok(())
    }

    /// Removes the in-flight record of a run that committed or cleaned up after itself.
    pub async fn clear_inflight(&self, run_id: &str) {
        let path = self
            .location
            .child(&format!("{INFLIGHT_DIR}/{run_id}.json"));
        if let Err(e) = self.root.delete(&path).await
            && !matches!(e, object_store::Error::NotFound { .. })
        {
            tracing::warn!(error = %e, "could not remove the run's in-flight record; `scorch gc` will");
        }
    }

    /// The actions of log entry `version`; `None` when it is not there (never written, or
    /// cleaned up behind a checkpoint).
    async fn log_entry(&self, version: u64) -> Result<Option<Vec<Action>>> {
        let Some(bytes) = self
            .log
            .log_store()
            .read_commit_entry(version)
            .await
            .map_err(delta_error(&self.location, "read the log"))?
        else {
            return Ok(None);
        };
        deltalake_core::logstore::get_actions(version, &bytes)
            .map(Some)
            .map_err(delta_error(&self.location, "read the log"))
    }

    /// What version `version` did: its `commitInfo` entries, its operation, and the partition
    /// folders its files were added to and removed from; `None` when the entry is gone (behind
    /// a checkpoint).
    pub async fn version_touch(&self, version: u64) -> Result<Option<VersionTouch>> {
        let Some(actions) = self.log_entry(version).await? else {
            return Ok(None);
        };
        let folder = |path: &str| {
            path.rsplit_once('/')
                .map_or(String::new(), |(d, _)| d.to_string())
        };
        let mut touch = VersionTouch {
            version,
            ..Default::default()
        };
        for action in actions {
            match action {
                Action::Add(add) => {
                    touch.added.insert(folder(&add.path));
                }
                Action::Remove(remove) => {
                    touch.removed.insert(folder(&remove.path));
                }
                Action::CommitInfo(info) => {
                    touch.operation = info.operation.clone();
                    touch.info = info.info.into_iter().collect();
                }
                _ => {}
            }
        }
        Ok(Some(touch))
    }

    /// The version that run `run_id` committed, looking at the log after version `after` up to
    /// the latest; `None` when no entry names it. Tells a commit whose reply was lost (it landed)
    /// from one that failed, and keeps `gc` off the files of a run that committed.
    pub async fn version_committed_by(
        &self,
        run_id: &str,
        after: Option<u64>,
    ) -> Result<Option<u64>> {
        Ok(self.commit_info_of(run_id, after).await?.map(|(v, _)| v))
    }

    /// The version that run `run_id` committed after `after`, with its `commitInfo` entries.
    pub async fn commit_info_of(
        &self,
        run_id: &str,
        after: Option<u64>,
    ) -> Result<Option<(u64, serde_json::Map<String, serde_json::Value>)>> {
        let mut latest = self.log.clone();
        latest
            .update_state()
            .await
            .map_err(delta_error(&self.location, "load"))?;
        let Some(last) = latest.version() else {
            return Ok(None);
        };
        for version in after.map_or(0, |v| v + 1)..=last {
            let Some(actions) = self.log_entry(version).await? else {
                continue; // cleaned up behind a checkpoint
            };
            for action in actions {
                if let Action::CommitInfo(info) = action
                    && info.info.get(RUN_ID_KEY).and_then(|v| v.as_str()) == Some(run_id)
                {
                    return Ok(Some((version, info.info.into_iter().collect())));
                }
            }
        }
        Ok(None)
    }

    /// Deletes the data files run `run_id` wrote, unless the run committed: then its files
    /// belong to the log (and to `vacuum`, which honours the retention window). Its files are
    /// named with its id. Returns how many were deleted.
    pub async fn remove_run_files(&self, run_id: &str) -> Result<u64> {
        if let Some(version) = self.version_committed_by(run_id, None).await? {
            tracing::info!(
                run_id,
                version,
                "the run committed; its files stay with the log"
            );
            return Ok(0);
        }
        let active: BTreeSet<String> = self.active_files().into_iter().map(|(p, _)| p).collect();
        let root = self.location.path();
        let objects: Vec<_> =
            self.root
                .list(Some(&root))
                .try_collect()
                .await
                .map_err(|source| Error::Storage {
                    action: "list",
                    location: self.location.to_string(),
                    source,
                })?;
        let marker = format!("-{run_id}-");
        let mut removed = 0;
        for meta in objects {
            let Some(relative) = self.location.relative(&meta.location) else {
                continue;
            };
            let name = relative.rsplit('/').next().unwrap_or_default();
            if relative.starts_with('_') || !name.contains(&marker) || active.contains(&relative) {
                continue;
            }
            match self.root.delete(&meta.location).await {
                Ok(()) => removed += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(Error::Storage {
                        action: "delete",
                        location: format!(
                            "{}{}",
                            self.location.store_url().as_str(),
                            meta.location
                        ),
                        source,
                    });
                }
            }
        }
        Ok(removed)
    }

    /// Creates the table (version 0: schema and partition columns, no rows) unless it exists.
    /// A run does this before it writes, so that it commits against a version it read: two runs
    /// that both found no table are then told apart by the conflict checker like any others.
    pub async fn create_if_missing(
        &mut self,
        schema: &Schema,
        partition_by: &[String],
    ) -> Result<()> {
        if self.version().is_some() {
            return Ok(());
        }
        let kernel_schema =
            to_kernel(schema).map_err(delta_error(&self.location, "convert the schema"))?;
        let created = self
            .log
            .create()
            .with_columns(kernel_schema.fields().cloned())
            .with_partition_columns(partition_by.to_vec())
            // No retries: a retried creation lands as a later version that replaces the
            // table's metadata under the other run.
            .with_commit_properties(
                CommitProperties::default()
                    .with_cleanup_expired_logs(Some(false))
                    .with_max_retries(0),
            )
            .await;
        match created {
            Ok(table) => {
                self.log = table;
                Ok(())
            }
            // Another run created it first: read its version 0.
            Err(_)
                if self
                    .log
                    .log_store()
                    .is_delta_table_location()
                    .await
                    .unwrap_or(false) =>
            {
                self.log
                    .load()
                    .await
                    .map_err(delta_error(&self.location, "load"))
            }
            Err(e) => Err(delta_error(&self.location, "create")(e)),
        }
    }

    /// Commits a run onto the version the table was opened at: adds the run's files and removes
    /// what they replace, in one log entry; delta-rs' conflict checker refuses the commit when a
    /// version committed since touched the same part of the table. Returns the new version.
    pub async fn commit(&mut self, commit: DeltaCommit) -> Result<u64> {
        let adds: Vec<Action> = commit.files.iter().map(add_action).collect();
        let mut properties = CommitProperties::default()
            .with_metadata(commit.info.clone())
            .with_cleanup_expired_logs(Some(false));
        if let Some((app_id, version)) = &commit.transaction {
            properties =
                properties.with_application_transaction(Transaction::new(app_id, *version));
        }
        let kernel_schema =
            to_kernel(&commit.schema).map_err(delta_error(&self.location, "convert the schema"))?;

        if self.version().is_none() {
            return Err(Error::Delta {
                output: self.location.to_string(),
                action: "commit".into(),
                source: Box::new(DeltaTableError::NotInitialized),
            });
        }
        let snapshot = self
            .log
            .snapshot()
            .map_err(delta_error(&self.location, "read the snapshot"))?
            .clone();
        let now = Utc::now().timestamp_millis();
        let mut actions = adds;
        let replaced: Vec<Remove> = match &commit.replace {
            Replace::Nothing => Vec::new(),
            Replace::All => snapshot
                .log_data()
                .iter()
                .map(|f| removal(f.remove_action(true), now))
                .collect(),
            Replace::Matching { files, .. } => snapshot
                .log_data()
                .iter()
                .filter(|f| files.contains(f.path().as_ref()))
                .map(|f| removal(f.remove_action(true), now))
                .collect(),
        };
        actions.extend(replaced.into_iter().map(Action::Remove));
        if commit.schema_changes {
            use deltalake_core::kernel::MetadataExt as _;
            let metadata = snapshot
                .metadata()
                .clone()
                .with_schema(&kernel_schema)
                .map_err(|e| delta_error(&self.location, "change the schema")(e.into()))?;
            actions.push(Action::Metadata(metadata));
        }
        let (mode, predicate) = match &commit.replace {
            Replace::Nothing => (SaveMode::Append, None),
            Replace::All => (SaveMode::Overwrite, None),
            Replace::Matching { predicate, .. } => (SaveMode::Overwrite, Some(predicate.clone())),
        };
        let operation = DeltaOperation::Write {
            mode,
            partition_by: (!commit.partition_by.is_empty()).then(|| commit.partition_by.clone()),
            predicate,
        };
        let finalized = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(&snapshot), self.log.log_store(), operation)
            .await
            .map_err(delta_error(&self.location, "commit"))?;
        let version = finalized.version();
        self.log.state = Some(finalized.snapshot());
        Ok(version)
    }

    /// Every version's commit, oldest first.
    pub async fn history(&self) -> Result<Vec<HistoryEntry>> {
        let Some(latest) = self.version() else {
            return Err(Error::NotATable {
                location: self.location.to_string(),
            });
        };
        let mut entries = Vec::new();
        for version in 0..=latest {
            let Some(actions) = self.log_entry(version).await? else {
                continue; // cleaned up behind a checkpoint
            };
            let mut entry = HistoryEntry {
                version,
                timestamp: None,
                operation: None,
                files_added: 0,
                files_removed: 0,
                rows_added: 0,
                scorch: serde_json::Map::new(),
            };
            for action in actions {
                match action {
                    Action::Add(add) => {
                        entry.files_added += 1;
                        entry.rows_added += add
                            .stats
                            .as_deref()
                            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                            .and_then(|s| s["numRecords"].as_u64())
                            .unwrap_or(0);
                    }
                    Action::Remove(_) => entry.files_removed += 1,
                    Action::CommitInfo(info) => {
                        entry.timestamp = info.timestamp.and_then(DateTime::from_timestamp_millis);
                        entry.operation = info.operation.clone();
                        entry.scorch = info
                            .info
                            .iter()
                            .filter(|(k, _)| k.starts_with("scorch."))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                    }
                    _ => {}
                }
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    /// The underlying delta-rs table (for maintenance operations).
    pub fn log(&self) -> &DeltaLog {
        &self.log
    }

    /// The store the table's bucket lives in.
    pub fn root(&self) -> &Arc<dyn ObjectStore> {
        &self.root
    }
}

fn removal(mut remove: Remove, now: i64) -> Remove {
    // Vacuum counts the retention window from here; without it a file would be deletable at once.
    remove.deletion_timestamp = Some(now);
    remove
}

fn add_action(file: &NewFile) -> Action {
    Action::Add(Add {
        // The path as the object key has it (partition values already percent-encoded once).
        path: file.path.clone(),
        partition_values: file
            .partition_values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>(),
        size: file.size as i64,
        modification_time: Utc::now().timestamp_millis(),
        data_change: true,
        stats: Some(file.stats.clone()),
        ..Default::default()
    })
}

/// Whether a delta-rs error is a commit conflict with another writer.
pub fn is_conflict(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_)
        }
    )
}

/// Whether a delta-rs error says another commit carried the same application transaction.
pub fn is_concurrent_transaction(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction)
        }
    )
}

/// Every field nullable: a Delta column declared NOT NULL would refuse a later run's NULLs.
pub fn nullable(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    )
}

/// An Arrow schema as a Delta schema.
pub fn to_kernel(schema: &Schema) -> std::result::Result<StructType, DeltaTableError> {
    use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel as _;
    schema.try_into_kernel().map_err(DeltaTableError::from)
}

/// A Delta schema as an Arrow schema.
pub fn to_arrow(schema: &StructType) -> std::result::Result<Schema, DeltaTableError> {
    use deltalake_core::kernel::engine::arrow_conversion::TryIntoArrow as _;
    schema.try_into_arrow().map_err(DeltaTableError::from)
}

/// An Arrow schema as it comes back from a Delta table (types Delta cannot keep, such as a
/// fixed-size list, become their Delta equivalent), so that a run's schema and the committed
/// one compare like for like.
pub fn as_committed(schema: &Schema) -> Result<TableSchema> {
    let round_trip = to_kernel(schema)
        .and_then(|k| to_arrow(&k))
        .map_err(|e| Error::Delta {
            output: String::new(),
            action: "convert the schema".into(),
            source: Box::new(e),
        })?;
    Ok(TableSchema::from_arrow(&round_trip))
}

/// Reads partition values back from a path the writer produced.
pub fn partition_values(path: &str) -> BTreeMap<String, Option<String>> {
    let folder = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    partition::parse(folder)
}

/// Whether `path` (relative to `location`) is inside the Delta log.
pub fn in_log(relative: &str) -> bool {
    relative.starts_with(LOG_DIR)
}

/// The object path of a table file given relative to the table root (percent-encoded
/// segments kept as they are).
pub fn object_path(location: &Location, relative: &str) -> ObjectPath {
    let root = location.path();
    let full = if root.as_ref().is_empty() {
        relative.to_string()
    } else {
        format!("{root}/{relative}")
    };
    ObjectPath::parse(&full).unwrap_or_else(|_| location.child(relative))
}

/// What `scorch optimize` did.
#[derive(Debug, Clone, Serialize)]
pub struct OptimizeReport {
    /// The version the compaction committed (unchanged when there was nothing to compact).
    pub version: Option<u64>,
    /// Files written.
    pub files_added: u64,
    /// Small files they replace.
    pub files_removed: u64,
    /// Partitions compacted.
    pub partitions_optimized: u64,
}

impl DeltaTable {
    /// Compacts small files (within each partition, up to `target_size` bytes per file) in the
    /// partitions `filters` select (`column op value`, all of them): one commit replacing the
    /// small files with their compacted copies, which readers see at once and `gc` reclaims.
    pub async fn optimize(
        &self,
        filters: &[(String, String, String)],
        target_size: u64,
    ) -> Result<OptimizeReport> {
        use deltalake_core::{FilterOp, FilterValue};
        let literals: Vec<deltalake_core::FilterLiteral<'_>> = filters
            .iter()
            .map(|(c, op, v)| {
                let op: FilterOp = op.parse().map_err(delta_error(&self.location, "filter"))?;
                Ok((c.as_str(), op, FilterValue::Scalar(v.as_str())))
            })
            .collect::<Result<_>>()?;
        let target = std::num::NonZeroU64::new(target_size.max(1)).expect("at least one byte");
        let (table, metrics) = self
            .log
            .clone()
            .optimize()
            .with_filters(&literals)
            .with_target_size(target)
            .with_commit_properties(
                CommitProperties::default().with_cleanup_expired_logs(Some(false)),
            )
            .await
            .map_err(delta_error(&self.location, "optimize"))?;
        Ok(OptimizeReport {
            version: table.version(),
            files_added: metrics.num_files_added,
            files_removed: metrics.num_files_removed,
            partitions_optimized: metrics.partitions_optimized,
        })
    }
}

/// Parses `--where` of `scorch optimize`: `column op value` terms joined by `AND`, where `op` is
/// one of `=`, `!=`, `<`, `<=`, `>`, `>=` and the value may be quoted.
pub fn parse_filters(text: &str) -> std::result::Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    let upper = text.to_ascii_uppercase();
    let mut rest_start = 0;
    let mut terms = Vec::new();
    for (i, _) in upper.match_indices(" AND ") {
        terms.push(&text[rest_start..i]);
        rest_start = i + 5;
    }
    terms.push(&text[rest_start..]);
    for term in terms {
        let term = term.trim();
        let op = ["!=", "<=", ">=", "=", "<", ">"]
            .into_iter()
            .find(|op| term.contains(op))
            .ok_or_else(|| {
                format!("`{term}` is not `column op value` (op: =, !=, <, <=, >, >=)")
            })?;
        let (column, value) = term.split_once(op).expect("found above");
        let column = column.trim().trim_matches('"').to_string();
        let value = value
            .trim()
            .trim_matches('\'')
            .trim_matches('"')
            .to_string();
        if column.is_empty() || value.is_empty() {
            return Err(format!("`{term}` is not `column op value`"));
        }
        out.push((column, op.to_string(), value));
    }
    Ok(out)
}
