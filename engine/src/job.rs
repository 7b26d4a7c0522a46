//! Job files: what a scoring job reads, which models it uses, its SQL and where it writes.
//!
//! A job is a TOML file (see the README for the full format) with an inline query or a `.sql`
//! file beside it. Every key is checked: an unknown key, a missing parameter or a parameter of the
//! wrong type fails before any data is read, naming the key.
//!
//! Parameters are bound as typed SQL placeholders (`$ds`), never spliced into the text, so a
//! parameter value cannot change the shape of the query.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::location::Location;
use crate::registry::StoreOptions;

/// The types a job parameter can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Int,
    /// 64-bit float.
    Float,
    /// `true` or `false`.
    Bool,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An instant, RFC 3339 (`2026-11-27T00:00:00Z`) or `YYYY-MM-DD HH:MM:SS` (UTC).
    Timestamp,
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::Bool => "bool",
            ParamType::Date => "date",
            ParamType::Timestamp => "timestamp",
        })
    }
}

impl ParamType {
    /// Parses a value given as text (`--param k=v`, or a TOML string default).
    pub fn parse(self, name: &str, text: &str) -> Result<ScalarValue> {
        let bad = |expected: &str| Error::Param {
            name: name.to_string(),
            message: format!("`{text}` is not a valid {self}: expected {expected}"),
        };
        Ok(match self {
            ParamType::String => ScalarValue::Utf8(Some(text.to_string())),
            ParamType::Int => ScalarValue::Int64(Some(
                text.trim()
                    .parse()
                    .map_err(|_| bad("an integer such as 42"))?,
            )),
            ParamType::Float => {
                let v: f64 = text
                    .trim()
                    .parse()
                    .map_err(|_| bad("a number such as 0.5"))?;
                if !v.is_finite() {
                    return Err(bad("a finite number"));
                }
                ScalarValue::Float64(Some(v))
            }
            ParamType::Bool => ScalarValue::Boolean(Some(match text.trim() {
                "true" => true,
                "false" => false,
                _ => return Err(bad("`true` or `false`")),
            })),
            ParamType::Date => {
                let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                    .map_err(|_| bad("a date such as 2026-11-27"))?;
                ScalarValue::Date32(Some(days_since_epoch(date)))
            }
            ParamType::Timestamp => {
                let t = text.trim();
                let instant: DateTime<Utc> = DateTime::parse_from_rfc3339(t)
                    .map(|d| d.with_timezone(&Utc))
                    .or_else(|_| {
                        NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").map(|n| n.and_utc())
                    })
                    .map_err(|_| bad("a timestamp such as 2026-11-27T00:00:00Z"))?;
                ScalarValue::TimestampMicrosecond(
                    Some(instant.timestamp_micros()),
                    Some("UTC".into()),
                )
            }
        })
    }

    /// The Arrow type of values of this parameter.
    pub fn data_type(self) -> DataType {
        match self {
            ParamType::String => DataType::Utf8,
            ParamType::Int => DataType::Int64,
            ParamType::Float => DataType::Float64,
            ParamType::Bool => DataType::Boolean,
            ParamType::Date => DataType::Date32,
            ParamType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    fn parse_toml(self, name: &str, value: &toml::Value) -> Result<ScalarValue> {
        match (self, value) {
            (_, toml::Value::String(s)) => self.parse(name, s),
            (ParamType::Int, toml::Value::Integer(i)) => Ok(ScalarValue::Int64(Some(*i))),
            (ParamType::Float, toml::Value::Float(f)) => Ok(ScalarValue::Float64(Some(*f))),
            (ParamType::Float, toml::Value::Integer(i)) => {
                Ok(ScalarValue::Float64(Some(*i as f64)))
            }
            (ParamType::Bool, toml::Value::Boolean(b)) => Ok(ScalarValue::Boolean(Some(*b))),
            (ParamType::Date | ParamType::Timestamp, toml::Value::Datetime(d)) => {
                self.parse(name, &d.to_string())
            }
            (_, other) => Err(Error::Param {
                name: name.to_string(),
                message: format!("default {other} does not fit the declared type {self}"),
            }),
        }
    }
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 is a valid date");
    (date - epoch).num_days() as i32
}

// ---- The file format, as serde reads it. ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    job: JobSection,
    #[serde(default)]
    params: BTreeMap<String, ParamSection>,
    sources: BTreeMap<String, SourceSection>,
    #[serde(default)]
    models: BTreeMap<String, ModelSection>,
    query: QuerySection,
    output: OutputSection,
    #[serde(default)]
    checks: Checks,
    #[serde(default)]
    execution: Execution,
    #[serde(default)]
    stores: BTreeMap<String, BTreeMap<String, toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobSection {
    name: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamSection {
    #[serde(rename = "type")]
    ptype: ParamType,
    #[serde(default)]
    default: Option<toml::Value>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSection {
    url: String,
    #[serde(default = "parquet")]
    format: String,
    #[serde(default)]
    partition_columns: Option<Vec<PartitionColumnSection>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PartitionColumnSection {
    Name(String),
    Typed {
        name: String,
        #[serde(rename = "type")]
        ptype: ParamType,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSection {
    uri: String,
    #[serde(default)]
    sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuerySection {
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputSection {
    url: String,
    #[serde(default = "parquet")]
    format: String,
    #[serde(default)]
    partition_by: Vec<String>,
    #[serde(default)]
    mode: WriteMode,
    #[serde(default = "snappy")]
    compression: String,
}

fn parquet() -> String {
    "parquet".to_string()
}

fn snappy() -> String {
    "snappy".to_string()
}

// ---- The validated job. ----

/// How a run's output combines with what the table already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Replace exactly the partitions the run produced (the whole table when unpartitioned);
    /// other partitions stay. Reruns of an interval are idempotent.
    #[default]
    Overwrite,
    /// Add the run's files to the table.
    Append,
}

impl fmt::Display for WriteMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WriteMode::Overwrite => "overwrite",
            WriteMode::Append => "append",
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
    /// Fail when the share of rows whose prediction is `NULL` (features broke the model's input
    /// contract) exceeds this, between 0 and 1.
    #[serde(default = "one")]
    pub max_unscored_fraction: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for Checks {
    fn default() -> Self {
        Self {
            min_rows: 0,
            max_unscored_fraction: 1.0,
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

/// A declared parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Name, used in SQL as `$name`.
    pub name: String,
    /// Type.
    pub ptype: ParamType,
    /// Default value, if any.
    pub default: Option<ScalarValue>,
    /// Description for `--help`-like listings.
    pub description: Option<String>,
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
    /// Where its files are.
    pub location: Location,
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
}

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
    /// Output.
    pub output: Output,
    /// Quality gates.
    pub checks: Checks,
    /// Execution settings.
    pub execution: Execution,
    /// Options of the object stores the job touches (`[stores]`).
    pub stores: StoreOptions,
}

/// Parameter values ready to bind: name to typed value.
pub type BoundParams = BTreeMap<String, ScalarValue>;

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
        let job_error = |message: String| Error::JobFile {
            path: path.to_path_buf(),
            message,
        };
        let file: JobFile =
            toml::from_str(text).map_err(|e| job_error(e.to_string().trim_end().to_string()))?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));

        check_identifier(&file.job.name).map_err(|m| job_error(format!("job.name: {m}")))?;

        let mut params = BTreeMap::new();
        for (name, p) in file.params {
            check_identifier(&name).map_err(|m| job_error(format!("params.{name}: {m}")))?;
            let default = p
                .default
                .as_ref()
                .map(|v| p.ptype.parse_toml(&name, v))
                .transpose()?;
            params.insert(
                name.clone(),
                Param {
                    name,
                    ptype: p.ptype,
                    default,
                    description: p.description,
                },
            );
        }

        if file.sources.is_empty() {
            return Err(job_error(
                "[sources] is empty: a job reads at least one table".into(),
            ));
        }
        let mut sources = Vec::new();
        for (name, s) in file.sources {
            check_identifier(&name).map_err(|m| job_error(format!("sources.{name}: {m}")))?;
            if s.format != "parquet" {
                return Err(job_error(format!(
                    "sources.{name}.format: `{}` is not supported (expected `parquet`)",
                    s.format
                )));
            }
            let location = Location::parse_dir(&s.url, &dir)
                .map_err(|e| job_error(format!("sources.{name}.url: {e}")))?;
            let partition_columns = s.partition_columns.map(|cols| {
                cols.into_iter()
                    .map(|c| match c {
                        PartitionColumnSection::Name(name) => PartitionColumn {
                            name,
                            ptype: ParamType::String,
                        },
                        PartitionColumnSection::Typed { name, ptype } => {
                            PartitionColumn { name, ptype }
                        }
                    })
                    .collect()
            });
            sources.push(Source {
                name,
                location,
                partition_columns,
            });
        }

        let mut models = Vec::new();
        for (name, m) in file.models {
            check_identifier(&name).map_err(|msg| job_error(format!("models.{name}: {msg}")))?;
            if let Some(sha) = &m.sha256
                && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(job_error(format!(
                    "models.{name}.sha256: expected 64 hexadecimal digits, got `{sha}`"
                )));
            }
            let location = Location::parse_dir(&m.uri, &dir)
                .map_err(|e| job_error(format!("models.{name}.uri: {e}")))?;
            models.push(ModelDecl {
                name,
                location,
                sha256: m.sha256.map(|s| s.to_ascii_lowercase()),
            });
        }

        let sql = match (file.query.sql, file.query.file) {
            (Some(sql), None) => sql,
            (None, Some(f)) => {
                let sql_path = dir.join(&f);
                std::fs::read_to_string(&sql_path).map_err(|e| {
                    job_error(format!(
                        "query.file: cannot read {}: {e}",
                        sql_path.display()
                    ))
                })?
            }
            (Some(_), Some(_)) => {
                return Err(job_error(
                    "query: give either `sql` or `file`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(job_error(
                    "query: missing `sql` (inline SQL) or `file` (a .sql file beside the job)"
                        .into(),
                ));
            }
        };
        if sql.trim().is_empty() {
            return Err(job_error("query: the SQL is empty".into()));
        }

        let o = file.output;
        if o.format != "parquet" {
            return Err(job_error(format!(
                "output.format: `{}` is not supported (expected `parquet`)",
                o.format
            )));
        }
        let location =
            Location::parse_dir(&o.url, &dir).map_err(|e| job_error(format!("output.url: {e}")))?;
        for col in &o.partition_by {
            check_identifier(col).map_err(|m| job_error(format!("output.partition_by: {m}")))?;
        }
        check_compression(&o.compression)
            .map_err(|m| job_error(format!("output.compression: {m}")))?;

        if !(0.0..=1.0).contains(&file.checks.max_unscored_fraction) {
            return Err(job_error(format!(
                "checks.max_unscored_fraction: {} is not between 0 and 1",
                file.checks.max_unscored_fraction
            )));
        }
        if let Some(device) = &file.execution.device {
            device
                .parse::<scorch_udfs::DeviceSpec>()
                .map_err(|e| job_error(format!("execution.device: {e}")))?;
        }
        if let Some(cluster) = &file.execution.cluster
            && !cluster.starts_with("df://")
        {
            return Err(job_error(format!(
                "execution.cluster: `{cluster}` is not a df://host:port URL"
            )));
        }
        if file.execution.target_partitions == Some(0) || file.execution.batch_size == Some(0) {
            return Err(job_error(
                "execution: target_partitions and batch_size must be at least 1".into(),
            ));
        }

        let mut stores = StoreOptions::default();
        for (target, options) in file.stores {
            let mut values = BTreeMap::new();
            for (key, value) in options {
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err(job_error(format!(
                            "stores.\"{target}\".{key}: expected a string, number or boolean, got {}",
                            other.type_str()
                        )));
                    }
                };
                values.insert(key, text);
            }
            stores
                .try_insert(&target, values)
                .map_err(|m| job_error(format!("stores.\"{target}\": {m}")))?;
        }

        Ok(Self {
            name: file.job.name,
            description: file.job.description,
            path: path.to_path_buf(),
            params,
            sources,
            models,
            sql,
            output: Output {
                location,
                partition_by: o.partition_by,
                mode: o.mode,
                compression: o.compression,
            },
            checks: file.checks,
            execution: file.execution,
            stores,
        })
    }

    /// Binds `--param` overrides over the declared defaults: every declared parameter gets a
    /// typed value, and every override names a declared parameter.
    pub fn bind(&self, overrides: &[(String, String)]) -> Result<BoundParams> {
        let mut bound = BoundParams::new();
        for (name, text) in overrides {
            let param = self.params.get(name).ok_or_else(|| Error::Param {
                name: name.clone(),
                message: format!(
                    "job `{}` declares no such parameter (declared: {})",
                    self.name,
                    self.declared_params()
                ),
            })?;
            if bound
                .insert(name.clone(), param.ptype.parse(name, text)?)
                .is_some()
            {
                return Err(Error::Param {
                    name: name.clone(),
                    message: "given more than once".into(),
                });
            }
        }
        for param in self.params.values() {
            if !bound.contains_key(&param.name) {
                let value = param.default.clone().ok_or_else(|| Error::Param {
                    name: param.name.clone(),
                    message: format!(
                        "missing: job `{}` declares it without a default; pass --param {}=<{}>",
                        self.name, param.name, param.ptype
                    ),
                })?;
                bound.insert(param.name.clone(), value);
            }
        }
        Ok(bound)
    }

    fn declared_params(&self) -> String {
        if self.params.is_empty() {
            "none".to_string()
        } else {
            self.params.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }
}

/// Splits `key=value` as given to `--param`.
pub fn parse_param_arg(arg: &str) -> Result<(String, String)> {
    let (k, v) = arg.split_once('=').ok_or_else(|| Error::Param {
        name: arg.to_string(),
        message: "expected key=value".into(),
    })?;
    Ok((k.trim().to_string(), v.to_string()))
}

fn check_identifier(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name (letters, digits and _, not starting with a digit)"
        ))
    }
}

fn check_compression(codec: &str) -> std::result::Result<(), String> {
    let base = codec
        .split('(')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match base.as_str() {
        "snappy" | "zstd" | "lz4" | "lz4_raw" | "gzip" | "uncompressed" => Ok(()),
        _ => Err(format!(
            "`{codec}` is not a known codec (snappy, zstd(level), lz4_raw, gzip(level), uncompressed)"
        )),
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn every_param_type_parses() {
        assert_eq!(
            ParamType::Int.parse("n", "42").expect("int"),
            ScalarValue::Int64(Some(42))
        );
        assert_eq!(
            ParamType::Bool.parse("b", "true").expect("bool"),
            ScalarValue::Boolean(Some(true))
        );
        assert_eq!(
            ParamType::Timestamp
                .parse("t", "1970-01-01T00:00:01Z")
                .expect("ts"),
            ScalarValue::TimestampMicrosecond(Some(1_000_000), Some("UTC".into()))
        );
        assert!(ParamType::Float.parse("f", "NaN").is_err());
        assert!(ParamType::Int.parse("n", "4.2").is_err());
    }
}
