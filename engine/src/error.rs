//! The one error type of `scorch-engine`, and the exit code each error maps to.

use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// What a scheduler sees: the process exit code of `scorch` for each outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitCode {
    /// The run committed (or the command did what it was asked).
    Success = 0,
    /// Anything not covered below: a bug or an unexpected failure.
    Internal = 1,
    /// Bad command line, job file, parameter or SQL: fix the job, do not retry.
    Usage = 2,
    /// Input data breaks the job's expectations: missing source, missing column, schema or
    /// contract violation. Fix the data upstream.
    InputData = 3,
    /// A quality gate failed: the output was computed but not published.
    QualityGate = 4,
    /// Storage or cluster failure (network, permissions, server errors): usually worth a retry.
    Storage = 5,
    /// A model package is missing, unreadable, refused, or does not match its pinned hash.
    Model = 6,
    /// Another run committed the same partitions first; this run published nothing.
    Conflict = 7,
    /// Stopped by SIGINT (Ctrl-C) before the commit point; nothing published.
    Interrupted = 130,
    /// Stopped by SIGTERM before the commit point; nothing published.
    Terminated = 143,
}

impl ExitCode {
    /// The numeric code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The exit code numbered `code` (an unknown number is [`ExitCode::Internal`]).
    pub fn from_code(code: i32) -> Self {
        [
            ExitCode::Success,
            ExitCode::Usage,
            ExitCode::InputData,
            ExitCode::QualityGate,
            ExitCode::Storage,
            ExitCode::Model,
            ExitCode::Conflict,
            ExitCode::Interrupted,
            ExitCode::Terminated,
        ]
        .into_iter()
        .find(|c| c.code() == code)
        .unwrap_or(ExitCode::Internal)
    }
}

/// Everything that can stop a scorch command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job file cannot be read.
    #[error("job file {path}")]
    JobFileIo {
        /// The job file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The job file is not valid TOML or breaks the job schema.
    #[error("job file {path}: {message}")]
    JobFile {
        /// The job file.
        path: PathBuf,
        /// What is wrong, naming the key (and line, when the parser knows it).
        message: String,
    },

    /// A parameter is unknown, missing or of the wrong type.
    #[error("parameter `{name}`: {message}")]
    Param {
        /// The parameter.
        name: String,
        /// What is wrong.
        message: String,
    },

    /// The SQL is not one `SELECT`, or does not parse: `origin` names the `.sql` file (or the
    /// job file's `[query] sql`), `message` the line and column.
    #[error("query {origin}: {message}")]
    SqlSyntax {
        /// Where the SQL comes from.
        origin: String,
        /// What is wrong, with the position when the parser knows it.
        message: String,
    },

    /// The SQL parses but does not plan for a reason that is not the data's fault.
    #[error("query {origin}")]
    Sql {
        /// Where the SQL comes from.
        origin: String,
        /// DataFusion's error.
        #[source]
        source: DataFusionError,
    },

    /// A source has no files or cannot be listed.
    #[error("source `{name}` at {url}: {message}")]
    Source {
        /// The source's name in the job.
        name: String,
        /// Its location.
        url: String,
        /// What is wrong.
        message: String,
    },

    /// A source's store could not be reached (network, permissions, server errors).
    #[error("source `{name}` at {url}: storage error")]
    SourceUnreachable {
        /// The source's name in the job.
        name: String,
        /// Its location.
        url: String,
        /// DataFusion's error, holding the store's.
        #[source]
        source: DataFusionError,
    },

    /// A column the query (or a model) needs is missing.
    #[error("column `{column}` not found in {table}; available columns: {available}")]
    MissingColumn {
        /// The table(s) searched.
        table: String,
        /// The missing column.
        column: String,
        /// Comma-separated list of what exists.
        available: String,
    },

    /// The input data breaks an expectation found while planning or running.
    #[error("input data")]
    InputData {
        /// The underlying error.
        #[source]
        source: DataFusionError,
    },

    /// A model could not be resolved, verified or loaded.
    #[error(transparent)]
    Model(Box<scorch_udfs::Error>),

    /// An input file the scan could not read, found after the scan failed without naming it.
    #[error("{file}")]
    UnreadableInput {
        /// The source, the file and what is wrong with it.
        file: String,
        /// The scan's error.
        #[source]
        source: Box<Error>,
    },

    /// A quality gate failed; nothing was published.
    #[error("quality gate failed, nothing published: {}", failures.join("; "))]
    QualityGate {
        /// One line per failed check.
        failures: Vec<String>,
        /// The manifest of the rejected run (written beside the table too).
        manifest: Option<Box<crate::run::manifest::RunManifest>>,
    },

    /// The run's output schema differs from the table's in a way the job does not allow.
    #[error(
        "table {output}: this run's columns differ from the schema committed in version {version} \
         ({}); nothing was written. If the change is intended, set [output] schema_mode = \"{}\"",
        differences.join("; "),
        if *mode == crate::job::SchemaMode::Strict && differences.iter().all(|d| d.ends_with(" is new")) { "merge" } else { "overwrite" }
    )]
    SchemaChange {
        /// The output table.
        output: String,
        /// The version whose schema differs.
        version: u64,
        /// One line per differing column.
        differences: Vec<String>,
        /// The mode in force.
        mode: crate::job::SchemaMode,
    },

    /// A Delta Lake operation failed.
    #[error("Delta table {output}: cannot {action}")]
    Delta {
        /// The table.
        output: String,
        /// What scorch was doing.
        action: String,
        /// delta-rs' error.
        #[source]
        source: Box<deltalake_core::DeltaTableError>,
    },

    /// Another run committed to the same part of a Delta table first.
    #[error(
        "commit conflict on {output}: {reason}; this run published nothing (its files are removed)"
    )]
    DeltaConflict {
        /// The table.
        output: String,
        /// What the conflict checker found.
        reason: String,
    },

    /// `[output] replace_where` does not fit the output.
    #[error("output.replace_where `{predicate}`: {message}")]
    ReplaceWhere {
        /// The condition as the job gives it.
        predicate: String,
        /// What is wrong.
        message: String,
    },

    /// A command that works on a table was given a location where scorch has not written.
    #[error(
        "no scorch table at {location}: there is no Delta log (_delta_log), no Parquet-mode \
         commit log (_scorch/log) and no run record there; give the output URL of a job"
    )]
    NotATable {
        /// The location given.
        location: String,
    },

    /// A model registry refused a request (a version that exists with other bytes, an unknown
    /// version or alias).
    #[error("model registry {registry}: {message}")]
    Registry {
        /// The registry.
        registry: String,
        /// What was wrong and what to do.
        message: String,
    },

    /// Some intervals of a backfill failed (each was attempted; the table says which).
    #[error(
        "backfill: {failed} of {total} intervals failed; the first, {first}, with exit code {code}"
    )]
    Backfill {
        /// Intervals that failed.
        failed: usize,
        /// Intervals in all.
        total: usize,
        /// The first that failed.
        first: String,
        /// Its exit code, which the backfill exits with.
        code: i32,
    },

    /// Another promotion moved the alias first.
    #[error(
        "model registry {registry}: {alias} moved while this promotion ran (it now names version \
         {now}); nothing was changed: run the promotion again if it should still win"
    )]
    RegistryConflict {
        /// The registry.
        registry: String,
        /// `name@alias`.
        alias: String,
        /// The version the alias names now.
        now: String,
    },

    /// Another run committed overlapping partitions first.
    #[error(
        "commit conflict on {output}: run {other_run} committed version {version} with partitions [{partitions}] \
         after this run started; this run published nothing"
    )]
    Conflict {
        /// The output table.
        output: String,
        /// The winning run.
        other_run: String,
        /// The version it committed.
        version: u64,
        /// The partitions both runs wrote.
        partitions: String,
    },

    /// An object store operation failed.
    #[error("storage: {action} {location}")]
    Storage {
        /// What scorch was doing.
        action: &'static str,
        /// Where.
        location: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },

    /// A URL or path in the job or on the command line is not usable.
    #[error("location `{location}`: {message}")]
    Location {
        /// The offending text.
        location: String,
        /// Why.
        message: String,
    },

    /// The cluster could not be reached, or failed the job.
    #[error("cluster {url}: {message}")]
    Cluster {
        /// The scheduler's URL.
        url: String,
        /// What happened.
        message: String,
    },

    /// The table's commit log is unreadable or inconsistent.
    #[error("table {output}: {message}")]
    Table {
        /// The output table.
        output: String,
        /// What is wrong.
        message: String,
    },

    /// DataFusion failed while executing.
    #[error("execution")]
    Execution(#[source] DataFusionError),

    /// Parquet metadata could not be read.
    #[error("parquet {path}")]
    Parquet {
        /// The file.
        path: String,
        /// The parquet error.
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// Local file I/O outside the object stores (demo, logs).
    #[error("{path}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A stop was requested (SIGTERM or SIGINT) before the commit point.
    #[error(
        "stopped by signal {signal} before the commit point; nothing published, staged files removed"
    )]
    Interrupted {
        /// The signal number.
        signal: i32,
    },

    /// The demo was asked for something it cannot do, or would overwrite work.
    #[error("scorch demo: {message}")]
    Demo {
        /// What is wrong and what to do.
        message: String,
    },

    /// A failure in the demo's training step.
    #[error("training: {0}")]
    Training(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<scorch_udfs::Error> for Error {
    fn from(e: scorch_udfs::Error) -> Self {
        Error::Model(Box::new(e))
    }
}

impl Error {
    /// The exit code this error maps to.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::JobFileIo { .. }
            | Error::JobFile { .. }
            | Error::Param { .. }
            | Error::SqlSyntax { .. }
            | Error::Sql { .. }
            | Error::SchemaChange { .. }
            | Error::NotATable { .. }
            | Error::Demo { .. }
            | Error::ReplaceWhere { .. }
            | Error::Registry { .. }
            | Error::Location { .. } => ExitCode::Usage,
            Error::RegistryConflict { .. } => ExitCode::Conflict,
            Error::Backfill { code, .. } => ExitCode::from_code(*code),
            Error::DeltaConflict { .. } => ExitCode::Conflict,
            Error::Delta { .. } => ExitCode::Storage,
            Error::UnreadableInput { .. } => ExitCode::InputData,
            Error::Source { .. }
            | Error::MissingColumn { .. }
            | Error::InputData { .. }
            | Error::Parquet { .. } => ExitCode::InputData,
            Error::Model(e) => match e.as_ref() {
                scorch_udfs::Error::BadArguments { .. }
                | scorch_udfs::Error::UnknownModel { .. } => ExitCode::Usage,
                scorch_udfs::Error::DeviceUnavailable { .. } => ExitCode::Usage,
                scorch_udfs::Error::Store { source, .. } if is_not_found(source) => ExitCode::Model,
                scorch_udfs::Error::Store { .. } => ExitCode::Storage,
                _ => ExitCode::Model,
            },
            Error::QualityGate { .. } => ExitCode::QualityGate,
            Error::Conflict { .. } => ExitCode::Conflict,
            Error::Storage { .. }
            | Error::Table { .. }
            | Error::SourceUnreachable { .. }
            | Error::Cluster { .. } => ExitCode::Storage,
            Error::Execution(e) => classify_datafusion(e),
            Error::Io { .. } | Error::Training(_) => ExitCode::Internal,
            Error::Interrupted { signal } if *signal == libc::SIGINT => ExitCode::Interrupted,
            Error::Interrupted { .. } => ExitCode::Terminated,
        }
    }

    /// Wraps a DataFusion error from planning or running a job's query, recognising the causes
    /// that have a more precise variant (a model error, a missing column, a storage failure).
    pub fn from_query(job: &crate::job::JobSpec, e: DataFusionError) -> Self {
        let origin = crate::plan::query::sql_origin(job);
        let e = match take_model_error(e) {
            Ok(model) => return Error::from(model),
            Err(e) => e,
        };
        if caused_by_store(&e) {
            return Error::Execution(e);
        }
        match e.find_root() {
            DataFusionError::SchemaError(schema_error, _) => {
                if let datafusion::common::SchemaError::FieldNotFound {
                    field,
                    valid_fields,
                } = schema_error.as_ref()
                {
                    let mut available: Vec<String> =
                        valid_fields.iter().map(|c| c.name.clone()).collect();
                    available.sort();
                    available.dedup();
                    let table = field
                        .relation
                        .as_ref()
                        .map(|r| format!("table `{r}`"))
                        .unwrap_or_else(|| format!("the sources of job `{}`", job.name));
                    return Error::MissingColumn {
                        table,
                        column: field.name.clone(),
                        available: available.join(", "),
                    };
                }
                Error::Sql { origin, source: e }
            }
            DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => Error::Execution(e),
            DataFusionError::ParquetError(_) | DataFusionError::ArrowError(_, _) => {
                Error::InputData { source: e }
            }
            DataFusionError::SQL(_, _)
            | DataFusionError::Plan(_)
            | DataFusionError::NotImplemented(_) => Error::Sql { origin, source: e },
            _ => Error::Execution(e),
        }
    }
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// Takes a `scorch_udfs::Error` out of a DataFusion error (possibly under context layers).
fn take_model_error(e: DataFusionError) -> Result<scorch_udfs::Error, DataFusionError> {
    match e {
        DataFusionError::External(boxed) => boxed
            .downcast::<scorch_udfs::Error>()
            .map(|model| *model)
            .map_err(DataFusionError::External),
        DataFusionError::Context(context, inner) => take_model_error(*inner)
            .map_err(|inner| DataFusionError::Context(context, Box::new(inner))),
        other => Err(other),
    }
}

/// Whether an object store failure is anywhere in an error's chain (a write that failed inside
/// the Parquet writer arrives as a Parquet error wrapping the store's).
fn caused_by_store(e: &DataFusionError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if err.downcast_ref::<object_store::Error>().is_some()
            || matches!(
                err.downcast_ref::<DataFusionError>(),
                Some(DataFusionError::ObjectStore(_))
            )
        {
            return true;
        }
        // An I/O error wrapping a store error (async writers) hides it from `source()`.
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && inner.downcast_ref::<object_store::Error>().is_some()
        {
            return true;
        }
        current = err.source();
    }
    false
}

fn classify_datafusion(e: &DataFusionError) -> ExitCode {
    if caused_by_store(e) {
        return ExitCode::Storage;
    }
    match e.find_root() {
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => ExitCode::Storage,
        DataFusionError::ParquetError(_) => ExitCode::InputData,
        DataFusionError::ResourcesExhausted(_) => ExitCode::Internal,
        _ => ExitCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::common::{Column, SchemaError};

    use super::*;

    fn job() -> crate::job::JobSpec {
        crate::job::JobSpec::try_from_toml(
            r#"
[job]
name = "churn"
[sources.features]
url = "data"
[query]
sql = "SELECT 1"
[output]
url = "out"
"#,
            std::path::Path::new("/jobs/churn.toml"),
        )
        .expect("a valid job")
    }

    #[test]
    fn missing_column_lists_what_exists() {
        let e = DataFusionError::SchemaError(
            Box::new(SchemaError::FieldNotFound {
                field: Box::new(Column::new(Some("features"), "tenure")),
                valid_fields: vec![
                    Column::new(Some("features"), "b"),
                    Column::new(Some("features"), "a"),
                ],
            }),
            Box::new(None),
        );
        let err = Error::from_query(&job(), e);
        assert_eq!(err.exit_code(), ExitCode::InputData);
        assert_eq!(
            err.to_string(),
            "column `tenure` not found in table `features`; available columns: a, b"
        );
    }

    #[test]
    fn model_errors_are_found_inside_datafusion_errors() {
        let model = scorch_udfs::Error::HashMismatch {
            name: "churn".into(),
            uri: "file:///m".into(),
            expected: "a".into(),
            actual: "b".into(),
        };
        let wrapped =
            DataFusionError::Context("planning".into(), Box::new(DataFusionError::from(model)));
        let err = Error::from_query(&job(), wrapped);
        assert_eq!(err.exit_code(), ExitCode::Model);
        assert!(err.to_string().contains("SHA-256 mismatch"), "{err}");
    }
}
