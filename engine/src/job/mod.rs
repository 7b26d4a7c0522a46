//! Job files: what a scoring job reads, which models it uses, its SQL and where it writes.
//!
//! A job is a TOML file (see the README for the full format) with an inline query or a `.sql`
//! file beside it. [`mod@file`] reads and checks it section by section: an unknown key, a missing
//! parameter or a parameter of the wrong type fails before any data is read, naming the key.
//! [`params`] types and binds the parameters.
//!
//! Invariant: nothing here does I/O beyond reading the job and its `.sql` file.

pub mod file;
pub mod params;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use file::parse_size_text;
pub use params::{BoundParams, Param, ParamType, Unbound, parse_param_arg};

use crate::error::{Error, Result};
use crate::store::StoreOptions;
use crate::store::location::Location;

/// How a run's output combines with what the table already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Replace what the run covers: the rows `replace_where` selects when the job declares it,
    /// else exactly the partitions the run produced (the whole table when unpartitioned); other
    /// partitions stay. Reruns of an interval are idempotent.
    #[default]
    Overwrite,
    /// Add the run's rows. On Delta tables a retried run that already committed adds nothing.
    Append,
    /// Upsert by `key`: rows whose key exists are replaced, others inserted (Delta only).
    Merge,
}

impl fmt::Display for WriteMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WriteMode::Overwrite => "overwrite",
            WriteMode::Append => "append",
            WriteMode::Merge => "merge",
        })
    }
}

/// The table format of an output (`[output] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A Delta Lake table (the default): one atomic log entry per run, snapshot reads and time
    /// travel for every Delta reader.
    #[default]
    Delta,
    /// A Hive-partitioned Parquet folder with scorch's own log, for readers that only know
    /// folders.
    Parquet,
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputFormat::Delta => "delta",
            OutputFormat::Parquet => "parquet",
        })
    }
}

/// The format of a source (`[sources.x] format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceFormat {
    /// Parquet files in a folder (Hive partitions), or one file.
    Parquet,
    /// A Delta Lake table, at its newest version or the one asked for.
    Delta {
        /// A version to read (time travel).
        version: Option<u64>,
        /// Or the version current at this instant.
        timestamp: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// Whether a run may change the schema the table has committed (`[output] schema_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaMode {
    /// The run's columns, types and nullability must equal the table's (default): a query edit
    /// that would silently change what readers get fails with the difference.
    #[default]
    Strict,
    /// New columns may be added; existing columns keep their types.
    Merge,
    /// Any schema replaces the table's.
    Overwrite,
}

impl fmt::Display for SchemaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchemaMode::Strict => "strict",
            SchemaMode::Merge => "merge",
            SchemaMode::Overwrite => "overwrite",
        })
    }
}

/// Quality gates checked after scoring and before publishing (`[checks]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    /// Fail when fewer rows than this are produced.
    #[serde(default)]
    pub min_rows: u64,
    /// Fail when a model leaves more than this share of the rows it was called on unscored
    /// (`NULL`), between 0 and 1.
    #[serde(default = "one")]
    pub max_unscored_fraction: f64,
    /// Fail when an input's population stability index against the model's profile passes
    /// this (models with a profile only).
    #[serde(default)]
    pub max_feature_psi: Option<f64>,
    /// Per input name, a limit in place of `max_feature_psi`.
    #[serde(default)]
    pub feature_psi: BTreeMap<String, f64>,
    /// Fail when an output's population stability index against the profile passes this.
    #[serde(default)]
    pub max_output_psi: Option<f64>,
    /// Fail when an output's two-sample Kolmogorov–Smirnov statistic against the profile
    /// passes this (between 0 and 1).
    #[serde(default)]
    pub max_output_ks: Option<f64>,
    /// What a failed check does: `fail` (publish nothing, exit 4; the default) or `warn`
    /// (log it, record it, publish).
    #[serde(default)]
    pub on_fail: OnFail,
}

/// What a failed check does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFail {
    /// Publish nothing; exit 4.
    #[default]
    Fail,
    /// Log a warning and publish.
    Warn,
}

fn one() -> f64 {
    1.0
}

impl Default for Checks {
    fn default() -> Self {
        Self {
            min_rows: 0,
            max_unscored_fraction: 1.0,
            max_feature_psi: None,
            feature_psi: BTreeMap::new(),
            max_output_psi: None,
            max_output_ks: None,
            on_fail: OnFail::Fail,
        }
    }
}

/// Execution settings (`[execution]`); the command line can override them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Execution {
    /// Partitions scored at once (default: the number of cores).
    #[serde(default)]
    pub target_partitions: Option<usize>,
    /// Rows per batch handed to a model (default 8192).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// `auto`, `cpu` or `cuda:N`.
    #[serde(default)]
    pub device: Option<String>,
    /// Bytes an output writer buffers before switching to a multipart upload (default 10 MiB;
    /// S3 needs at least 5 MiB per part).
    #[serde(default)]
    pub write_buffer_bytes: Option<usize>,
    /// A Ballista scheduler to run on (`df://host:port`); in-process when absent.
    #[serde(default)]
    pub cluster: Option<String>,
}

/// A hive partition column of a source.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionColumn {
    /// Column name (the `name` of `name=value` directories).
    pub name: String,
    /// Type the values are read as.
    pub ptype: ParamType,
}

/// A table the query reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Table name in SQL.
    pub name: String,
    /// Where its files are (a folder, or the file itself when `single_file`).
    pub location: Location,
    /// Whether the URL names one Parquet file rather than a folder.
    pub single_file: bool,
    /// Parquet files or a Delta table.
    pub format: SourceFormat,
    /// Hive partition columns; `None` to discover them from the directory names (as strings).
    pub partition_columns: Option<Vec<PartitionColumn>>,
}

/// A model the query uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDecl {
    /// Name in SQL.
    pub name: String,
    /// Package location.
    pub location: Location,
    /// Pinned SHA-256, if the job pins one.
    pub sha256: Option<String>,
    /// Where the package is registered, when the job names it through a registry (then
    /// `location` is the model's folder in the registry, and the package is resolved at plan
    /// time).
    pub registry: Option<RegistryRef>,
}

/// A model named through a registry: `registry`, `name`, and an `alias` or `version`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryRef {
    /// The registry's root.
    pub registry: Location,
    /// The model's name in the registry.
    pub name: String,
    /// Which version.
    pub selector: crate::registry::Selector,
}

/// Where and how results are written.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Table root.
    pub location: Location,
    /// Hive partition columns of the output.
    pub partition_by: Vec<String>,
    /// Overwrite or append.
    pub mode: WriteMode,
    /// Parquet compression codec (`snappy`, `zstd(3)`, `lz4`, `uncompressed`, …).
    pub compression: String,
    /// Whether a run may change the table's committed schema.
    pub schema_mode: SchemaMode,
    /// Delta Lake (default) or a Parquet folder.
    pub format: OutputFormat,
    /// What an overwrite replaces, as SQL over the partition columns with the job's parameters
    /// (`ds = $ds`); without it, the partitions the run wrote.
    pub replace_where: Option<String>,
    /// The key columns of a merge.
    pub key: Vec<String>,
    /// Bytes after which a data file is closed and the next one started.
    pub target_file_size: u64,
    /// Where rejected rows are kept, with their reasons (`[output.rejects]`).
    pub rejects: Option<Rejects>,
}

/// `[output.rejects]`: a Delta table of the rows a model declined to score, committed with the
/// output (see [`crate::table::rejects`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejects {
    /// Table root.
    pub location: Location,
    /// The columns that identify a row, copied from the row into the rejects table.
    pub keys: Vec<String>,
}

/// Default [`Output::target_file_size`]: 256 MiB.
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 256 * 1024 * 1024;

/// A validated job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Job name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// The job file.
    pub path: PathBuf,
    /// Declared parameters, by name.
    pub params: BTreeMap<String, Param>,
    /// Sources, by name.
    pub sources: Vec<Source>,
    /// Models, by name.
    pub models: Vec<ModelDecl>,
    /// The SQL text (placeholders unbound).
    pub sql: String,
    /// The `.sql` file it was read from, when not inline.
    pub sql_file: Option<PathBuf>,
    /// Output.
    pub output: Output,
    /// Quality gates.
    pub checks: Checks,
    /// Execution settings.
    pub execution: Execution,
    /// Options of the object stores the job touches (`[stores]`).
    pub stores: StoreOptions,
    /// `[shadow]` (or `run --shadow`): a second model scored beside the primary one, in the same
    /// scan, into a table of its own.
    pub shadow: Option<Shadow>,
}

/// A champion/challenger run: `model` scores every row `replaces` scores, into `location`.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadow {
    /// The shadow model (declared under `[models]`; the query need not call it).
    pub model: String,
    /// The model it shadows (default: the one other model the job declares).
    pub replaces: Option<String>,
    /// The shadow table: the output's columns, with the shadow model's predictions and stamps.
    pub location: Location,
}

impl JobSpec {
    /// Reads and validates a job file.
    pub fn try_from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::JobFileIo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::try_from_toml(&text, path)
    }

    /// Validates a job given as text; relative locations resolve against `path`'s folder.
    pub fn try_from_toml(text: &str, path: &Path) -> Result<Self> {
        file::convert(text, path)
    }

    /// The model a shadow run shadows: `[shadow] replaces`, or the one declared model other
    /// than the shadow.
    pub fn shadowed_model(&self) -> Option<String> {
        let shadow = self.shadow.as_ref()?;
        if let Some(r) = &shadow.replaces {
            return Some(r.clone());
        }
        let others: Vec<&ModelDecl> = self
            .models
            .iter()
            .filter(|m| m.name != shadow.model)
            .collect();
        match others.as_slice() {
            [one] => Some(one.name.clone()),
            _ => None,
        }
    }

    /// Checks `[shadow]`: both models declared, distinct, the shadowed one known.
    pub fn check_shadow(&self) -> std::result::Result<(), String> {
        let Some(shadow) = &self.shadow else {
            return Ok(());
        };
        let declared = |name: &str| self.models.iter().any(|m| m.name == name);
        if !declared(&shadow.model) {
            return Err(format!(
                "shadow.model: `{}` is not declared under [models]; declare it as [models.{}]",
                shadow.model, shadow.model
            ));
        }
        let Some(primary) = self.shadowed_model() else {
            return Err(
                "shadow.replaces: the job declares several models; name the one the shadow \
                 model stands beside (replaces = \"churn\")"
                    .into(),
            );
        };
        if !declared(&primary) || primary == shadow.model {
            return Err(format!(
                "shadow.replaces: `{primary}` must be another model declared under [models]"
            ));
        }
        if self.output.format != OutputFormat::Delta || self.output.mode == WriteMode::Merge {
            return Err(
                "shadow: shadow runs write Delta tables in mode \"overwrite\" or \"append\"".into(),
            );
        }
        Ok(())
    }

    /// Every location the job names, with the key that names it.
    pub fn locations(&self) -> Vec<(String, &Location)> {
        let mut all = vec![("output.url".to_string(), &self.output.location)];
        if let Some(rejects) = &self.output.rejects {
            all.push(("output.rejects.url".to_string(), &rejects.location));
        }
        if let Some(shadow) = &self.shadow {
            all.push(("shadow.url".to_string(), &shadow.location));
        }
        all.extend(
            self.sources
                .iter()
                .map(|s| (format!("sources.{}.url", s.name), &s.location)),
        );
        all.extend(
            self.models
                .iter()
                .map(|m| (format!("models.{}.uri", m.name), &m.location)),
        );
        all
    }

    /// Refuses an output that overlaps a source or a model package (the same folder, or one
    /// inside the other): a run would read its own predictions as features, and maintenance of
    /// the table could delete the inputs. Sources may overlap each other, and models may share
    /// a folder's parent; what is written must be apart from everything read.
    pub fn check_locations(&self) -> std::result::Result<(), String> {
        let locations = self.locations();
        let written =
            1 + usize::from(self.output.rejects.is_some()) + usize::from(self.shadow.is_some());
        for (index, (output_key, output)) in locations[..written].iter().enumerate() {
            for (key, other) in &locations[index + 1..] {
                if output.overlaps(other) {
                    let how = if **output == **other {
                        "is the same location as"
                    } else if output.contains(other) {
                        "contains"
                    } else {
                        "is inside"
                    };
                    let what = if key.starts_with("output.") || key.starts_with("shadow.") {
                        "the output and its rejects are two tables; give each its own folder"
                    } else {
                        "scorch would write into what the job reads; choose an output folder \
                         outside every source and model"
                    };
                    return Err(format!(
                        "{output_key} ({output}) {how} {key} ({other}): {what}"
                    ));
                }
            }
        }
        for source in &self.sources {
            for model in &self.models {
                if source.location.overlaps(&model.location) {
                    return Err(format!(
                        "sources.{}.url ({}) overlaps models.{}.uri ({}): a model package must not \
                         be read as feature data",
                        source.name, source.location, model.name, model.location
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The check shared by `[execution]` counts and the matching command-line flags.
pub fn check_at_least_one(value: usize) -> std::result::Result<usize, String> {
    if value == 0 {
        Err("must be at least 1".to_string())
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::common::ScalarValue;

    use super::*;

    const JOB: &str = r#"
[job]
name = "churn_daily"

[params]
ds = { type = "date" }
threshold = { type = "float", default = 0.5 }

[sources.features]
url = "data/features"
partition_columns = [{ name = "ds", type = "date" }, "region"]

[models.churn]
uri = "models/churn"

[query]
sql = "SELECT * FROM features WHERE ds = $ds"

[output]
url = "out/scores"
partition_by = ["ds"]
"#;

    fn job(text: &str) -> Result<JobSpec> {
        JobSpec::try_from_toml(text, Path::new("/jobs/churn.toml"))
    }

    #[test]
    fn parses_and_resolves_relative_locations() {
        let j = job(JOB).expect("valid job");
        assert_eq!(
            j.sources[0].location.url().as_str(),
            "file:///jobs/data/features/"
        );
        assert_eq!(
            j.models[0].location.url().as_str(),
            "file:///jobs/models/churn/"
        );
        assert_eq!(j.output.mode, WriteMode::Overwrite);
        let cols = j.sources[0].partition_columns.as_ref().expect("declared");
        assert_eq!(
            cols[1],
            PartitionColumn {
                name: "region".into(),
                ptype: ParamType::String
            }
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = job(&JOB.replace("partition_by", "partiton_by")).unwrap_err();
        assert!(err.to_string().contains("partiton_by"), "{err}");
        assert_eq!(err.exit_code(), crate::ExitCode::Usage);
    }

    #[test]
    fn params_bind_typed_and_complain_precisely() {
        let j = job(JOB).expect("valid job");
        let bound = j
            .bind(&[("ds".into(), "2026-11-27".into())])
            .expect("binds");
        assert_eq!(bound["ds"], ScalarValue::Date32(Some(20_784)));
        assert_eq!(bound["threshold"], ScalarValue::Float64(Some(0.5)));

        let missing = j.bind(&[]).unwrap_err().to_string();
        assert!(
            missing.contains("`ds`") && missing.contains("--param ds=<date>"),
            "{missing}"
        );

        let wrong = j
            .bind(&[("ds".into(), "yesterday".into())])
            .unwrap_err()
            .to_string();
        assert!(
            wrong.contains("`ds`") && wrong.contains("not a valid date"),
            "{wrong}"
        );

        let unknown = j
            .bind(&[("dss".into(), "2026-11-27".into())])
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("`dss`") && unknown.contains("declared: ds, threshold"),
            "{unknown}"
        );
    }

    #[test]
    fn bad_defaults_and_hashes_fail_at_load() {
        let err = job(&JOB.replace("default = 0.5", "default = \"half\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("threshold") && err.contains("not a valid float"),
            "{err}"
        );
        let err = job(&JOB.replace(
            "uri = \"models/churn\"",
            "uri = \"models/churn\"\nsha256 = \"abc\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("models.churn.sha256"), "{err}");
    }
}
