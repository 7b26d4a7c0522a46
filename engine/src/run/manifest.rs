//! Run manifests: the audit record of one run, written beside the table it produced.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use scorch_udfs::cache::PackageSource;

use crate::job::{OutputFormat, WriteMode};
use crate::plan::scan::{InputFile, ScanMetrics};
use crate::run::checks::CheckResult;
use crate::store::metered::IoStats;

/// Version of scorch that wrote a manifest.
pub const SCORCH_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Committed and published.
    Committed,
    /// A quality gate failed; nothing was published.
    RejectedByChecks,
    /// An append of this job and these parameters was committed before (a retry): nothing was
    /// written again.
    AlreadyCommitted,
    /// `--skip-unchanged`: the last committed run of these parameters read the same inputs
    /// with the same models and query, and its partitions are untouched; nothing was written.
    SkippedUnchanged,
}

/// A model a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelUse {
    /// Name in SQL.
    pub name: String,
    /// Package location.
    pub uri: String,
    /// Semantic version.
    pub version: String,
    /// Package SHA-256.
    pub sha256: String,
    /// Runtime format.
    pub format: String,
    /// Where the package was read from this run: `local`, `cache` or `store`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PackageSource>,
    /// For a model named through a registry: how it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryUse>,
}

/// How a registry reference resolved when the run planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryUse {
    /// The registry.
    pub registry: String,
    /// The model's name there.
    pub name: String,
    /// The alias the job follows (`None` when it names a version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The version it resolved to.
    pub version: String,
}

/// Row counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RowCounts {
    /// Rows the scans produced.
    pub read: u64,
    /// Rows written.
    pub written: u64,
    /// Rows a model declined to score (its prediction is `NULL`): the largest count among the
    /// job's models, counted by the scoring functions themselves, whatever the query did with
    /// the prediction afterwards.
    pub unscored: u64,
    /// Per model: rows scored and unscored, by reason and by input.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: scorch_udfs::unscored::Counts,
}

/// Timings of a run's phases, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Job loading, model verification and loading, planning.
    pub plan_ms: u64,
    /// Scanning, scoring and writing staged files.
    pub execute_ms: u64,
    /// Checks and the commit.
    pub commit_ms: u64,
    /// Moving files into place.
    pub publish_ms: u64,
    /// Start to end.
    pub total_ms: u64,
}

/// What a run wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputSummary {
    /// Table root.
    pub url: String,
    /// Delta or Parquet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputFormat>,
    /// Overwrite, append or merge.
    pub mode: Option<WriteMode>,
    /// Partitions written.
    pub partitions: Vec<String>,
    /// Data files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The committed version, when committed.
    pub version: Option<u64>,
}

/// The audit record of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// scorch's version.
    pub scorch_version: String,
    /// Unique, time-ordered run id.
    pub run_id: String,
    /// How the run ended.
    pub status: RunStatus,
    /// Job name.
    pub job: String,
    /// Job file path as given.
    pub job_file: String,
    /// Start time; also every row's `_scored_at`.
    pub started_at: DateTime<Utc>,
    /// End time.
    pub finished_at: DateTime<Utc>,
    /// Bound parameters, as text.
    pub params: BTreeMap<String, String>,
    /// The query (placeholders unbound: parameters are in `params`).
    pub sql: String,
    /// Models used by the query.
    pub models: Vec<ModelUse>,
    /// Fingerprint of the input files.
    pub data_sha256: String,
    /// What an incremental run compares: the input files, the models, the query and the
    /// parameters, hashed together (see [`crate::run::incremental`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub inputs_key: String,
    /// Per output partition, the key `--skip-unchanged` compares (see
    /// [`crate::run::incremental`]), for the partitions this run scored.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub partition_keys: BTreeMap<String, String>,
    /// `--skip-unchanged`: the partitions left as they were, their inputs, models and query
    /// unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_partitions: Vec<String>,
    /// For a run skipped as unchanged: the committed run it would have repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unchanged_since: Option<String>,
    /// The version each Delta source was read at, by source name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_versions: BTreeMap<String, u64>,
    /// The input files after partition pruning.
    pub inputs: Vec<InputFile>,
    /// Row counts.
    pub rows: RowCounts,
    /// Scan counters (pruning, bytes).
    pub scan: ScanMetrics,
    /// Parquet files the sources hold in total (before partition pruning).
    pub source_files_total: u64,
    /// Output.
    pub output: OutputSummary,
    /// Quality gates.
    pub checks: Vec<CheckResult>,
    /// Drift against each profiled model's reference profile.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drift: BTreeMap<String, crate::run::drift::ModelDrift>,
    /// A champion/challenger run: the shadow model, its table and how it agreed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowSummary>,
    /// The rejected rows kept in `[output.rejects]`: where, how many, and the version that
    /// committed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejects: Option<crate::table::rejects::RejectsSummary>,
    /// Phase timings.
    pub timings: Timings,
    /// Device models ran on.
    pub device: String,
    /// The Ballista scheduler the run executed on; absent for in-process runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Partitions processed at once.
    pub target_partitions: usize,
    /// Requests and bytes per object store (`scheme://bucket`), for the whole run.
    pub io: BTreeMap<String, IoStats>,
}

/// What the shadow model of a champion/challenger run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowSummary {
    /// The shadow (challenger) model.
    pub model: String,
    /// Its SHA-256.
    pub sha256: String,
    /// The model it stood beside (the champion).
    pub replaces: String,
    /// The shadow table.
    pub url: String,
    /// Rows written there.
    pub rows: u64,
    /// The shadow table's version that committed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Agreement per compared output column.
    pub agreement: BTreeMap<String, crate::run::agreement::Agreement>,
}
