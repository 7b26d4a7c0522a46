//! The job file as serde reads it, and its conversion into a validated [`JobSpec`], one section
//! at a time. Every key is checked here; anything that needs I/O (listing sources, reading
//! models) is checked later, when the job is planned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::job::params::{Param, ParamType};
use crate::job::{
    Checks, DEFAULT_TARGET_FILE_SIZE, Execution, JobSpec, ModelDecl, Output, OutputFormat,
    PartitionColumn, RegistryRef, Rejects, SchemaMode, Shadow, Source, SourceFormat, WriteMode,
    check_at_least_one,
};
use crate::registry::Selector;
use crate::store::StoreOptions;
use crate::store::location::Location;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobFile {
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
    #[serde(default)]
    shadow: Option<ShadowSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowSection {
    model: String,
    url: String,
    #[serde(default)]
    replaces: Option<String>,
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
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    timestamp: Option<toml::Value>,
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
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    registry: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    version: Option<String>,
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
    #[serde(default)]
    format: OutputFormat,
    #[serde(default)]
    partition_by: Vec<String>,
    #[serde(default)]
    mode: WriteMode,
    #[serde(default = "snappy")]
    compression: String,
    #[serde(default)]
    schema_mode: SchemaMode,
    #[serde(default)]
    replace_where: Option<String>,
    #[serde(default)]
    key: Vec<String>,
    #[serde(default)]
    target_file_size: Option<toml::Value>,
    #[serde(default)]
    rejects: Option<RejectsSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectsSection {
    url: String,
    #[serde(default)]
    keys: Vec<String>,
}

fn parquet() -> String {
    "parquet".to_string()
}

fn snappy() -> String {
    "snappy".to_string()
}

/// Converts the sections of a job file; `path` is the job file, `dir` its folder.
struct Converter<'a> {
    path: &'a Path,
    dir: PathBuf,
}

impl Converter<'_> {
    fn error(&self, message: String) -> Error {
        Error::JobFile {
            path: self.path.to_path_buf(),
            message,
        }
    }

    fn location(&self, key: &str, url: &str) -> Result<Location> {
        Location::parse_dir(url, &self.dir).map_err(|e| self.error(format!("{key}: {e}")))
    }

    fn params(&self, sections: BTreeMap<String, ParamSection>) -> Result<BTreeMap<String, Param>> {
        let mut params = BTreeMap::new();
        for (name, p) in sections {
            check_identifier(&name).map_err(|m| self.error(format!("params.{name}: {m}")))?;
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
        Ok(params)
    }

    fn sources(&self, sections: BTreeMap<String, SourceSection>) -> Result<Vec<Source>> {
        if sections.is_empty() {
            return Err(self.error("[sources] is empty: a job reads at least one table".into()));
        }
        let mut sources = Vec::new();
        for (name, s) in sections {
            check_identifier(&name).map_err(|m| self.error(format!("sources.{name}: {m}")))?;
            let format = match s.format.as_str() {
                "parquet" => {
                    if s.version.is_some() || s.timestamp.is_some() {
                        return Err(self.error(format!(
                            "sources.{name}: `version` and `timestamp` are for format = \"delta\""
                        )));
                    }
                    SourceFormat::Parquet
                }
                "delta" => {
                    let timestamp = s
                        .timestamp
                        .map(|t| {
                            let text = match &t {
                                toml::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            chrono::DateTime::parse_from_rfc3339(text.trim())
                                .map(|d| d.with_timezone(&chrono::Utc))
                                .map_err(|_| {
                                    self.error(format!(
                                        "sources.{name}.timestamp: `{text}` is not an RFC 3339 instant such as 2026-11-27T00:00:00Z"
                                    ))
                                })
                        })
                        .transpose()?;
                    if s.version.is_some() && timestamp.is_some() {
                        return Err(self.error(format!(
                            "sources.{name}: give `version` or `timestamp`, not both"
                        )));
                    }
                    if s.partition_columns.is_some() {
                        return Err(self.error(format!(
                            "sources.{name}.partition_columns: a Delta table declares its own partition columns"
                        )));
                    }
                    SourceFormat::Delta {
                        version: s.version,
                        timestamp,
                    }
                }
                other => {
                    return Err(self.error(format!(
                        "sources.{name}.format: `{other}` is not supported (expected `parquet` or `delta`)"
                    )));
                }
            };
            let location = self.location(&format!("sources.{name}.url"), &s.url)?;
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
                single_file: format == SourceFormat::Parquet && names_a_file(&s.url),
                format,
                location,
                partition_columns,
            });
        }
        Ok(sources)
    }

    fn models(&self, sections: BTreeMap<String, ModelSection>) -> Result<Vec<ModelDecl>> {
        let mut models = Vec::new();
        for (name, m) in sections {
            check_identifier(&name).map_err(|msg| self.error(format!("models.{name}: {msg}")))?;
            if let Some(sha) = &m.sha256
                && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(self.error(format!(
                    "models.{name}.sha256: expected 64 hexadecimal digits, got `{sha}`"
                )));
            }
            let key = format!("models.{name}");
            let (location, registry) = match (&m.uri, &m.registry) {
                (Some(uri), None) => {
                    if m.name.is_some() || m.alias.is_some() || m.version.is_some() {
                        return Err(self.error(format!(
                            "{key}: `name`, `alias` and `version` go with `registry`, not `uri`"
                        )));
                    }
                    (self.location(&format!("{key}.uri"), uri)?, None)
                }
                (None, Some(registry)) => {
                    let model = m.name.clone().unwrap_or_else(|| name.clone());
                    let selector = match (&m.alias, &m.version) {
                        (Some(a), None) => Selector::Alias(a.clone()),
                        (None, Some(v)) => Selector::Version(v.clone()),
                        _ => {
                            return Err(self.error(format!(
                                "{key}: a registry model needs `alias` (alias = \"champion\") or \
                                 `version` (version = \"2.1.0\"), one of them"
                            )));
                        }
                    };
                    let registry = self.location(&format!("{key}.registry"), registry)?;
                    (
                        registry.join(&model),
                        Some(RegistryRef {
                            registry,
                            name: model,
                            selector,
                        }),
                    )
                }
                _ => {
                    return Err(self.error(format!(
                        "{key}: give the package as `uri`, or `registry` with `name` and `alias` \
                         or `version`, one of the two"
                    )));
                }
            };
            models.push(ModelDecl {
                location,
                name,
                sha256: m.sha256.map(|s| s.to_ascii_lowercase()),
                registry,
            });
        }
        Ok(models)
    }

    /// The SQL text and, when it comes from a file, that file.
    fn query(&self, q: QuerySection) -> Result<(String, Option<PathBuf>)> {
        let (sql, file) = match (q.sql, q.file) {
            (Some(sql), None) => (sql, None),
            (None, Some(f)) => {
                let sql_path = self.dir.join(&f);
                let sql = std::fs::read_to_string(&sql_path).map_err(|e| {
                    self.error(format!(
                        "query.file: cannot read {}: {e}",
                        sql_path.display()
                    ))
                })?;
                (sql, Some(sql_path))
            }
            (Some(_), Some(_)) => {
                return Err(self.error("query: give either `sql` or `file`, not both".into()));
            }
            (None, None) => {
                return Err(self.error(
                    "query: missing `sql` (inline SQL) or `file` (a .sql file beside the job)"
                        .into(),
                ));
            }
        };
        if sql.trim().is_empty() {
            return Err(self.error("query: the SQL is empty".into()));
        }
        Ok((sql, file))
    }

    fn output(&self, o: OutputSection) -> Result<Output> {
        for col in o.partition_by.iter().chain(&o.key) {
            check_identifier(col).map_err(|m| self.error(format!("output: {m}")))?;
        }
        check_compression(&o.compression)
            .map_err(|m| self.error(format!("output.compression: {m}")))?;
        match (o.mode, o.format) {
            (WriteMode::Merge, OutputFormat::Parquet) => {
                return Err(self.error(
                    "output.mode = \"merge\" needs format = \"delta\": a Parquet folder cannot replace single rows".into(),
                ));
            }
            (WriteMode::Merge, _) if o.key.is_empty() => {
                return Err(self.error(
                    "output.mode = \"merge\" needs `key`, the columns that identify a row (key = [\"customer_id\"])".into(),
                ));
            }
            (WriteMode::Merge, _) => {}
            (_, _) if !o.key.is_empty() => {
                return Err(self.error(format!(
                    "output.key is for mode = \"merge\" (mode is \"{}\")",
                    o.mode
                )));
            }
            _ => {}
        }
        if o.replace_where.is_some() {
            if o.mode != WriteMode::Overwrite {
                return Err(self.error(format!(
                    "output.replace_where is for mode = \"overwrite\" (mode is \"{}\")",
                    o.mode
                )));
            }
            if o.partition_by.is_empty() {
                return Err(self.error(
                    "output.replace_where needs partition_by: it selects partitions to replace"
                        .into(),
                ));
            }
        }
        let target_file_size = match &o.target_file_size {
            None => DEFAULT_TARGET_FILE_SIZE,
            Some(value) => parse_size(value)
                .map_err(|m| self.error(format!("output.target_file_size: {m}")))?,
        };
        let rejects = match o.rejects {
            None => None,
            Some(r) => {
                if r.keys.is_empty() {
                    return Err(self.error(
                        "output.rejects needs `keys`, the columns that identify a row in the \
                         rejects table (keys = [\"customer_id\"])"
                            .into(),
                    ));
                }
                for col in &r.keys {
                    check_identifier(col)
                        .map_err(|m| self.error(format!("output.rejects.keys: {m}")))?;
                }
                Some(Rejects {
                    location: self.location("output.rejects.url", &r.url)?,
                    keys: r.keys,
                })
            }
        };
        Ok(Output {
            rejects,
            location: self.location("output.url", &o.url)?,
            partition_by: o.partition_by,
            mode: o.mode,
            compression: o.compression,
            schema_mode: o.schema_mode,
            format: o.format,
            replace_where: o.replace_where,
            key: o.key,
            target_file_size,
        })
    }

    fn checks(&self, checks: &Checks) -> Result<()> {
        let fractions = [
            ("max_unscored_fraction", Some(checks.max_unscored_fraction)),
            ("max_output_ks", checks.max_output_ks),
        ];
        for (key, value) in fractions {
            if let Some(v) = value
                && !(0.0..=1.0).contains(&v)
            {
                return Err(self.error(format!("checks.{key}: {v} is not between 0 and 1")));
            }
        }
        let psi = [
            ("max_feature_psi".to_string(), checks.max_feature_psi),
            ("max_output_psi".to_string(), checks.max_output_psi),
        ]
        .into_iter()
        .chain(
            checks
                .feature_psi
                .iter()
                .map(|(k, v)| (format!("feature_psi.{k}"), Some(*v))),
        );
        for (key, value) in psi {
            if let Some(v) = value
                && !(v >= 0.0 && v.is_finite())
            {
                return Err(self.error(format!(
                    "checks.{key}: {v} is not a population stability index (0 or more; 0.1 \
                     is a small shift, 0.25 a large one)"
                )));
            }
        }
        Ok(())
    }

    fn execution(&self, execution: &Execution) -> Result<()> {
        if let Some(device) = &execution.device {
            device
                .parse::<scorch_udfs::DeviceSpec>()
                .map_err(|e| self.error(format!("execution.device: {e}")))?;
        }
        if let Some(cluster) = &execution.cluster
            && !cluster.starts_with("df://")
        {
            return Err(self.error(format!(
                "execution.cluster: `{cluster}` is not a df://host:port URL"
            )));
        }
        for (key, value) in [
            ("target_partitions", execution.target_partitions),
            ("batch_size", execution.batch_size),
        ] {
            if let Some(v) = value {
                check_at_least_one(v).map_err(|m| self.error(format!("execution.{key}: {m}")))?;
            }
        }
        Ok(())
    }

    fn stores(
        &self,
        sections: BTreeMap<String, BTreeMap<String, toml::Value>>,
    ) -> Result<StoreOptions> {
        let mut stores = StoreOptions::default();
        for (target, options) in sections {
            let mut values = BTreeMap::new();
            for (key, value) in options {
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err(self.error(format!(
                            "stores.\"{target}\".{key}: expected a string, number or boolean, got {}",
                            other.type_str()
                        )));
                    }
                };
                values.insert(key, text);
            }
            stores
                .try_insert_from_job(&target, values)
                .map_err(|m| self.error(format!("stores.\"{target}\": {m}")))?;
        }
        Ok(stores)
    }
}

/// Validates a job given as text; relative locations resolve against `path`'s folder.
pub(super) fn convert(text: &str, path: &Path) -> Result<JobSpec> {
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let c = Converter { path, dir };
    let file: JobFile =
        toml::from_str(text).map_err(|e| c.error(e.to_string().trim_end().to_string()))?;
    check_identifier(&file.job.name).map_err(|m| c.error(format!("job.name: {m}")))?;
    c.checks(&file.checks)?;
    c.execution(&file.execution)?;
    let (sql, sql_file) = c.query(file.query)?;
    let job = JobSpec {
        name: file.job.name,
        description: file.job.description,
        path: path.to_path_buf(),
        params: c.params(file.params)?,
        sources: c.sources(file.sources)?,
        models: c.models(file.models)?,
        sql,
        sql_file,
        output: c.output(file.output)?,
        checks: file.checks,
        execution: file.execution,
        stores: c.stores(file.stores)?,
        shadow: None,
    };
    let mut job = job;
    if let Some(shadow) = file.shadow {
        job.shadow = Some(Shadow {
            location: c.location("shadow.url", &shadow.url)?,
            model: shadow.model,
            replaces: shadow.replaces,
        });
    }
    job.check_shadow().map_err(|m| c.error(m))?;
    job.check_locations().map_err(|m| c.error(m))?;
    Ok(job)
}

/// Whether a source URL names one Parquet file rather than a folder. A URL ending in
/// `.parquet` may still be a folder (Spark writes `x.parquet/`): the scan then falls back to
/// listing it.
fn names_a_file(url: &str) -> bool {
    let url = url.trim();
    !url.ends_with('/') && url.ends_with(".parquet")
}

/// A size in bytes: a number, or text with a unit (`256MiB`, `1GiB`, `64MB`).
fn parse_size(value: &toml::Value) -> std::result::Result<u64, String> {
    match value {
        toml::Value::Integer(n) if *n > 0 => check_size(*n as u64),
        toml::Value::String(text) => parse_size_text(text),
        other => Err(format!("expected a size such as 256MiB, got {other}")),
    }
}

fn check_size(bytes: u64) -> std::result::Result<u64, String> {
    // Below this a file holds little more than its footer.
    if bytes < 16 << 10 {
        return Err(format!("{bytes} bytes is below the 16 KiB minimum"));
    }
    Ok(bytes)
}

/// A size given as text: `256MiB`, `1GiB`, `64MB`, or a number of bytes.
pub fn parse_size_text(text: &str) -> std::result::Result<u64, String> {
    let bytes = {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a size such as 256MiB"))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}` (B, KiB, MiB, GiB, KB, MB, GB)"
                ));
            }
        };
        n.checked_mul(factor)
            .ok_or_else(|| format!("`{text}` is too large"))?
    };
    check_size(bytes)
}

pub(super) fn check_identifier(name: &str) -> std::result::Result<(), String> {
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
