//! Checks of the output before anything is written: the query's columns against the stamps and
//! the partitioning, the output location, and the run's schema against what the table has
//! committed. `scorch run` and `scorch validate` run the same checks.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::DFSchema;

use crate::error::{Error, Result};
use crate::job::JobSpec;
use crate::run::stamps::STAMP_COLUMNS;
use crate::table::Table;
use crate::table::schema::{TableColumn, TableSchema};

/// The schema a run of `query_schema` commits: the query's columns, then the stamps.
pub fn table_schema(query_schema: &DFSchema) -> TableSchema {
    let mut columns: Vec<TableColumn> = query_schema
        .fields()
        .iter()
        .map(|f| TableColumn::new(f.name(), f.data_type()))
        .collect();
    columns.extend(STAMP_COLUMNS.iter().map(|c| {
        let t = if *c == "_scored_at" {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        } else {
            DataType::Utf8
        };
        TableColumn::new(c, &t)
    }));
    TableSchema { columns }
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
    for col in &job.output.partition_by {
        if !schema.has_column_with_unqualified_name(col) {
            return Err(job_error(format!(
                "output.partition_by: the query returns no column `{col}` (it returns: {})",
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
/// committed one unless `[output] schema_mode` allows the change.
pub async fn check_table(job: &JobSpec, table: &Table, schema: &TableSchema) -> Result<()> {
    let job_error = |message: String| Error::JobFile {
        path: job.path.clone(),
        message,
    };
    if let Some(what) = table.is_not_a_folder().await? {
        return Err(job_error(format!(
            "output.url {}: {what}; the output is a folder (a table)",
            table.location()
        )));
    }
    match table.latest_commit().await? {
        None => {
            let foreign = table.foreign_files(5).await?;
            if !foreign.is_empty() {
                return Err(job_error(format!(
                    "output.url {} is not empty and holds files scorch did not write ({}); \
                     a new table starts in an empty folder: choose another output.url, or move \
                     those files away",
                    table.location(),
                    foreign.join(", ")
                )));
            }
        }
        Some(commit) => {
            if let Some(committed) = &commit.schema {
                let differences = committed.differences(schema, job.output.schema_mode);
                if !differences.is_empty() {
                    return Err(Error::SchemaChange {
                        output: table.location().to_string(),
                        version: commit.version,
                        differences,
                        mode: job.output.schema_mode,
                    });
                }
            }
        }
    }
    Ok(())
}
