//! The rejects table (`[output.rejects]`): a Delta table of the rows the models declined to
//! score, committed with the output — both or neither.
//!
//! Delta has no transaction across two tables, so the output's commit is the commit point for
//! both. Before it writes, a run records itself in the rejects table's in-flight records, naming
//! the output and the version it started from. Its writers put the rejected rows into files of the
//! rejects table (invisible until a commit lists them). The output's commit carries the list of
//! those files (`scorch.rejects` in Delta's `commitInfo`, `rejects` in a Parquet-mode commit's
//! run record); right after it, the rejects table commits the same files with an application
//! transaction named after the run. A run that failed before the output's commit leaves nothing
//! in either table. One that died between the two commits leaves its in-flight record: the next
//! run of the job (or any job writing these rejects) finds the output's commit naming the run and
//! commits the rejects it lists, once — the transaction makes the second attempt a no-op.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

use arrow::datatypes::Fields;
use chrono::Utc;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::job::{OutputFormat, SchemaMode};
use crate::store::location::Location;
use crate::table::Table;
use crate::table::delta::{self, DeltaCommit, DeltaTable, INFLIGHT_DIR, NewFile, Replace};
use crate::table::target::{Target, detect};

/// The `commitInfo` key (Delta output) under which the output's commit lists the rejects.
pub const COMMIT_INFO_KEY: &str = "scorch.rejects";

/// A file of rejected rows, as the output's commit lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectsFile {
    /// Path relative to the rejects table's root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Rows.
    pub rows: u64,
    /// Delta statistics (JSON).
    pub stats: String,
}

/// A run's rejected rows: where they go and what was written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RejectsSummary {
    /// The rejects table.
    pub url: String,
    /// Rows written.
    pub rows: u64,
    /// The rejects table's version that committed them (after the output's commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The files, for the commit (and for completing it after a crash).
    pub files: Vec<RejectsFile>,
}

/// Runs of this process between their in-flight record and their rejects commit: another run
/// here (a backfill's interval) must not complete their commit for them.
static ACTIVE: LazyLock<Mutex<BTreeSet<String>>> = LazyLock::new(Default::default);

fn set_active(run_id: &str, active: bool) {
    let mut runs = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    if active {
        runs.insert(run_id.to_string());
    } else {
        runs.remove(run_id);
    }
}

fn is_active(run_id: &str) -> bool {
    ACTIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(run_id)
}

/// The application transaction of run `run_id`'s rejects commit.
fn app_id(run_id: &str) -> String {
    format!("scorch-rejects/{run_id}")
}

/// The rejects table of a job, open for one run.
pub struct RejectsTable {
    table: DeltaTable,
}

impl RejectsTable {
    /// Opens (creating where missing) the rejects table at `location` for rows keyed by `keys`.
    /// A location that is a file, a Parquet-mode table, a folder of foreign files or a table
    /// with other columns is an error of the job file `job_file`.
    pub async fn open(
        job_file: &Path,
        location: &Location,
        store: Arc<dyn ObjectStore>,
        keys: &Fields,
    ) -> Result<Self> {
        let job_error = |message: String| Error::JobFile {
            path: job_file.to_path_buf(),
            message,
        };
        let probe = Table::new(location.clone(), Arc::clone(&store));
        if let Some(what) = probe.is_not_a_folder().await? {
            return Err(job_error(format!(
                "output.rejects.url {location}: {what}; the rejects are a table (a folder)"
            )));
        }
        if detect(location, &store).await? == Some(OutputFormat::Parquet) {
            return Err(job_error(format!(
                "output.rejects.url {location} holds a Parquet-mode table; the rejects are a \
                 Delta table: choose another folder"
            )));
        }
        let mut table = DeltaTable::open(location.clone(), store).await?;
        if table.version().is_none() {
            let foreign: Vec<String> = probe
                .foreign_files(5)
                .await?
                .into_iter()
                .filter(|f| !delta::in_log(f) && !f.starts_with('_'))
                .collect();
            if !foreign.is_empty() {
                return Err(job_error(format!(
                    "output.rejects.url {location} is not empty and holds files scorch did not \
                     write ({}); a new table starts in an empty folder",
                    foreign.join(", ")
                )));
            }
        }
        let schema = delta::nullable(&scorch_udfs::rejects::table_schema(keys));
        if let Some(committed) = table.schema()? {
            let wanted = delta::as_committed(&schema)?;
            let differences = committed.differences(&wanted, SchemaMode::Strict);
            if !differences.is_empty() {
                return Err(job_error(format!(
                    "output.rejects.url {location}: the table's columns differ from what this \
                     job keeps ({}): the keys changed; give the rejects a new table",
                    differences.join("; ")
                )));
            }
        }
        table.create_if_missing(&schema, &[]).await?;
        Ok(Self { table })
    }

    /// The table's location.
    pub fn location(&self) -> &Location {
        self.table.location()
    }

    /// Records that run `run_id`, writing `output` from version `base`, is about to write here.
    pub async fn mark_inflight(&self, run_id: &str, output: &Target) -> Result<()> {
        let base = output.version().await?;
        set_active(run_id, true);
        self.table
            .mark_inflight(
                run_id,
                &json!({
                    "run_id": run_id,
                    "started_at": Utc::now(),
                    "output": output.location().to_string(),
                    "output_base": base,
                    "files": format!("data files named part-*-{run_id}-*"),
                }),
            )
            .await
    }

    /// Commits run `run_id`'s rejects, which the output's version `output_version` lists.
    /// Idempotent: a second call for the same run commits nothing.
    pub async fn commit(
        &mut self,
        run_id: &str,
        output_version: u64,
        summary: &RejectsSummary,
    ) -> Result<u64> {
        let committed = self.commit_once(run_id, output_version, summary).await;
        set_active(run_id, false);
        committed
    }

    async fn commit_once(
        &mut self,
        run_id: &str,
        output_version: u64,
        summary: &RejectsSummary,
    ) -> Result<u64> {
        let app = app_id(run_id);
        if self.table.transaction_version(&app).await?.is_some() {
            let version = self.table.version_committed_by(run_id, None).await?;
            self.table.clear_inflight(run_id).await;
            return Ok(version.or(self.table.version()).unwrap_or(0));
        }
        let schema = self
            .table
            .arrow_schema()?
            .map(Arc::new)
            .ok_or_else(|| Error::NotATable {
                location: self.location().to_string(),
            })?;
        let mut info = serde_json::Map::new();
        info.insert(delta::RUN_ID_KEY.into(), json!(run_id));
        info.insert("scorch.output_version".into(), json!(output_version));
        info.insert("scorch.rows".into(), json!(summary.rows));
        let committed = self
            .table
            .commit(DeltaCommit {
                files: summary
                    .files
                    .iter()
                    .map(|f| NewFile {
                        path: f.path.clone(),
                        partition_values: Default::default(),
                        size: f.size,
                        rows: f.rows,
                        stats: f.stats.clone(),
                    })
                    .collect(),
                replace: Replace::Nothing,
                schema,
                schema_changes: false,
                partition_by: Vec::new(),
                info,
                transaction: Some((app.clone(), output_version as i64)),
            })
            .await;
        let version = match committed {
            Ok(version) => version,
            // Another run completed this commit meanwhile (its transaction conflicts with ours).
            Err(Error::Delta { source, .. }) if delta::is_conflict(&source) => {
                let location = self.location().clone();
                self.table = DeltaTable::open(location, Arc::clone(self.table.root())).await?;
                if self.table.transaction_version(&app).await?.is_none() {
                    return Err(Error::Table {
                        output: self.location().to_string(),
                        message: format!(
                            "the commit of run {run_id}'s rejected rows conflicted with another \
                             and did not land; the next run commits them"
                        ),
                    });
                }
                self.table
                    .version_committed_by(run_id, None)
                    .await?
                    .unwrap_or(0)
            }
            Err(e) => return Err(e),
        };
        self.table.clear_inflight(run_id).await;
        Ok(version)
    }

    /// Removes what run `run_id` wrote here when it did not commit.
    pub async fn clean_up(&self, run_id: &str) {
        set_active(run_id, false);
        match self.table.remove_run_files(run_id).await {
            Ok(_) => self.table.clear_inflight(run_id).await,
            Err(e) => {
                tracing::warn!(error = %e, run_id, "could not remove the run's rejected rows; `scorch gc --apply` will")
            }
        }
    }

    /// Completes the rejects commits of runs that committed `output` and died before the
    /// rejects table's commit. Returns the runs completed.
    pub async fn complete_pending(&mut self, output: &Target) -> Result<Vec<String>> {
        let mut completed = Vec::new();
        for (run_id, record) in self.inflight_records().await? {
            if record["output"].as_str() != Some(output.location().to_string().as_str())
                || is_active(&run_id)
            {
                continue;
            }
            let base = record["output_base"].as_u64();
            let Some((version, summary)) = committed_rejects(output, &run_id, base).await? else {
                continue; // still running, or died before the output's commit (`gc`'s to clean)
            };
            let version_here = self.commit(&run_id, version, &summary).await?;
            tracing::warn!(
                run_id,
                output_version = version,
                rejects_version = version_here,
                rows = summary.rows,
                "committed the rejected rows of an earlier run whose output commit lists them (it stopped before committing them, or another process is finishing it now)"
            );
            completed.push(run_id);
        }
        Ok(completed)
    }

    async fn inflight_records(&self) -> Result<Vec<(String, Value)>> {
        inflight_records(self.location(), self.table.root()).await
    }
}

/// The in-flight records of the Delta table at `location`: run id and record.
pub async fn inflight_records(
    location: &Location,
    root: &Arc<dyn ObjectStore>,
) -> Result<Vec<(String, Value)>> {
    let prefix = location.child(INFLIGHT_DIR);
    let listed: Vec<_> = root
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| Error::Storage {
            action: "list",
            location: format!("{location}{INFLIGHT_DIR}"),
            source,
        })?;
    let mut records = Vec::new();
    for meta in listed {
        let Some(run_id) = meta
            .location
            .filename()
            .and_then(|n| n.strip_suffix(".json"))
            .map(str::to_string)
        else {
            continue;
        };
        let Ok(body) = root.get(&meta.location).await else {
            continue; // cleared meanwhile
        };
        let bytes = body.bytes().await.map_err(|source| Error::Storage {
            action: "read",
            location: format!("{location}{INFLIGHT_DIR}/{run_id}.json"),
            source,
        })?;
        if let Ok(record) = serde_json::from_slice::<Value>(&bytes) {
            records.push((run_id, record));
        }
    }
    Ok(records)
}

/// The version of `output` that run `run_id` committed after `base`, with the rejects it lists;
/// `None` when the run has no commit there (or its commit lists no rejects).
pub async fn committed_rejects(
    output: &Target,
    run_id: &str,
    base: Option<u64>,
) -> Result<Option<(u64, RejectsSummary)>> {
    let found = match output {
        Target::Delta(table) => table
            .commit_info_of(run_id, base)
            .await?
            .map(|(v, mut info)| (v, info.remove(COMMIT_INFO_KEY))),
        Target::Parquet(table) => {
            let mut found = None;
            let latest = table.latest_version().await?.unwrap_or(0);
            for version in base.map_or(1, |b| b + 1)..=latest {
                let commit = table.read_commit(version).await?;
                if commit.run_id == run_id {
                    found = Some((version, commit.run.get("rejects").cloned()));
                    break;
                }
            }
            found
        }
    };
    Ok(found.and_then(|(version, value)| {
        let summary = serde_json::from_value::<RejectsSummary>(value?).ok()?;
        Some((version, summary))
    }))
}

/// Whether run `run_id`, whose in-flight `record` sits in a rejects table, committed the output
/// the record names (with rejects listed): its files here then belong to that commit and wait for
/// the next run to commit them, so `gc` keeps them. An output on another store than `root`
/// cannot be checked from here and counts as committed.
pub async fn awaited_by_output(
    root: &Arc<dyn ObjectStore>,
    location: &Location,
    run_id: &str,
    record: &Value,
) -> Result<bool> {
    let Some(output) = record["output"]
        .as_str()
        .and_then(|u| url::Url::parse(u).ok())
    else {
        return Ok(false);
    };
    let output = Location::from_url(output);
    if output.store_url() != location.store_url() {
        return Ok(true);
    }
    let target = match detect(&output, root).await? {
        Some(format) => Target::open(&output, format, Arc::clone(root)).await?,
        None => return Ok(false),
    };
    let base = record["output_base"].as_u64();
    Ok(committed_rejects(&target, run_id, base).await?.is_some())
}
