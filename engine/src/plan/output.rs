//! Checks of the output before anything is written: the query's columns against the stamps and
//! the partitioning, the output location, and the run's schema against what the table has
//! committed. `scorch run` and `scorch validate` run the same checks.

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::common::DFSchema;

use crate::error::{Error, Result};
use crate::job::{JobSpec, OutputFormat};
use crate::run::stamps::STAMP_COLUMNS;
use crate::table::Table;
use crate::table::schema::TableSchema;
use crate::table::target::Target;

/// The Arrow schema a run of `query_schema` writes: the query's columns, then the stamps.
pub fn stamped_arrow_schema(query_schema: &DFSchema) -> Schema {
    let mut fields: Vec<Field> = query_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(STAMP_COLUMNS.iter().map(|c| {
        let t = if *c == "_scored_at" {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        } else {
            DataType::Utf8
        };
        Field::new(*c, t, true)
    }));
    Schema::new(fields)
}

/// The schema a run commits, as scorch compares schemas: for a Delta table, as Delta keeps it.
pub fn table_schema(format: OutputFormat, schema: &Schema) -> Result<TableSchema> {
    match format {
        OutputFormat::Parquet => Ok(TableSchema::from_arrow(schema)),
        OutputFormat::Delta => crate::table::delta::as_committed(schema),
    }
}

/// Checks the query's columns: no stamp column, every `partition_by` column present.
pub fn check_columns(job: &JobSpec, schema: &DFSchema) -> Result<()> {
    let job_error = |message: String| Error::JobFile {
        path: job.path.clone(),
        message,
    };
    for name in STAMP_COLUMNS {
        if schema.has_column_with_unqualified_name(name) {
            return Err(job_error(format!(
                "the query returns a column `{name}`, which scorch adds to every row; rename it"
            )));
        }
    }
    for (key, col) in job
        .output
        .partition_by
        .iter()
        .map(|c| ("partition_by", c))
        .chain(job.output.key.iter().map(|c| ("key", c)))
    {
        if !schema.has_column_with_unqualified_name(col) {
            return Err(job_error(format!(
                "output.{key}: the query returns no column `{col}` (it returns: {})",
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// Checks the output location and the run's schema against the table: the location is a folder,
/// a new table starts in a folder that holds nothing scorch did not write, and the schema is the
/// committed one unless `[output] schema_mode` allows the change. `key` names the location in
/// messages (`output.url`, or `shadow.url` for a shadow table). Returns whether the run changes
/// the table's schema.
pub async fn check_table(
    job: &JobSpec,
    key: &str,
    target: &Target,
    schema: &Schema,
) -> Result<bool> {
    let job_error = |message: String| Error::JobFile {
        path: job.path.clone(),
        message,
    };
    let location = target.location();
    let probe = Table::new(location.clone(), target_store(target));
    if let Some(what) = probe.is_not_a_folder().await? {
        return Err(job_error(format!(
            "{key} {location}: {what}; the output is a folder (a table)"
        )));
    }
    if !target.has_commits().await? {
        let foreign: Vec<String> = probe
            .foreign_files(5)
            .await?
            .into_iter()
            .filter(|f| !crate::table::delta::in_log(f))
            .collect();
        if !foreign.is_empty() {
            return Err(job_error(format!(
                "{key} {location} is not empty and holds files scorch did not write ({}); \
                 a new table starts in an empty folder: choose another {key}, or move \
                 those files away",
                foreign.join(", ")
            )));
        }
        return Ok(false);
    }
    let run_schema = table_schema(target.format(), schema)?;
    let Some((version, committed)) = target.committed_schema().await? else {
        return Ok(false);
    };
    let differences = committed.differences(&run_schema, job.output.schema_mode);
    if !differences.is_empty() {
        return Err(Error::SchemaChange {
            output: location.to_string(),
            version,
            differences,
            mode: job.output.schema_mode,
        });
    }
    Ok(!committed
        .differences(&run_schema, crate::job::SchemaMode::Strict)
        .is_empty())
}

fn target_store(target: &Target) -> std::sync::Arc<dyn object_store::ObjectStore> {
    match target {
        Target::Parquet(t) => t.store(),
        Target::Delta(t) => std::sync::Arc::clone(t.root()),
    }
}
