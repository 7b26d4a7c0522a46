//! `scorch compare <table> <shadow-table>`: how two prediction tables of the same rows agree —
//! typically a job's output and its shadow table — matched on key columns, column by column.

use std::collections::BTreeMap;

use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::job::{Source, SourceFormat};
use crate::plan::session::{SessionSettings, local_context};
use crate::run::agreement::{Agreement, Tallies};
use crate::run::stamps::STAMP_COLUMNS;
use crate::store::StoreRegistry;
use crate::store::location::Location;

/// What `compare` found.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The first table (the champion's).
    pub table: String,
    /// The second (the challenger's).
    pub other: String,
    /// The columns rows were matched on.
    pub on: Vec<String>,
    /// Rows of the first table without a match in the second.
    pub unmatched: u64,
    /// Agreement per compared column.
    pub columns: BTreeMap<String, Agreement>,
}

/// Compares `columns` of the tables at `a` and `b` (Delta tables at their newest version),
/// matching rows on `on` (default: every column both have, stamps and compared columns aside;
/// `NULL` keys match `NULL`). `columns` defaults to the prediction columns (those carrying
/// `scorch.model` field metadata).
pub async fn compare(
    a: &Location,
    b: &Location,
    on: &[String],
    columns: &[String],
) -> Result<Comparison> {
    let ctx = local_context(
        &SessionSettings::default(),
        scorch_udfs::ModelCatalog::new(),
        scorch_udfs::ModelLoader::try_new(
            std::sync::Arc::new(StoreRegistry::new()),
            scorch_udfs::DeviceSpec::Cpu,
        )?,
    );
    let stores = StoreRegistry::new();
    for (name, location) in [("a", a), ("b", b)] {
        let store = stores.store(location)?;
        if !crate::table::delta::DeltaTable::exists_at(location, &store).await? {
            return Err(Error::NotATable {
                location: location.to_string(),
            });
        }
        let source = Source {
            name: name.into(),
            location: location.clone(),
            single_file: false,
            format: SourceFormat::Delta {
                version: None,
                timestamp: None,
            },
            partition_columns: None,
        };
        crate::plan::sources::register_source(&ctx, &stores, &source).await?;
    }
    let schema_a = table_schema(&ctx, "a").await?;
    let schema_b = table_schema(&ctx, "b").await?;
    let usage = |message: String| Error::Location {
        location: b.to_string(),
        message,
    };
    let compared: Vec<String> = if columns.is_empty() {
        schema_a
            .fields()
            .iter()
            .filter(|f| {
                f.metadata()
                    .contains_key(scorch_udfs::functions::scoring::PREDICTION_METADATA)
            })
            .map(|f| f.name().clone())
            .collect()
    } else {
        columns.to_vec()
    };
    if compared.is_empty() {
        return Err(usage(
            "no prediction column found (none carries scorch.model metadata); name them with \
             --column"
                .into(),
        ));
    }
    let keys: Vec<String> = if on.is_empty() {
        schema_a
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| {
                !compared.contains(n)
                    && !STAMP_COLUMNS.contains(&n.as_str())
                    && schema_b.field_with_name(n).is_ok()
            })
            .collect()
    } else {
        on.to_vec()
    };
    for column in compared.iter().chain(&keys) {
        for (schema, table) in [(&schema_a, a), (&schema_b, b)] {
            if schema.field_with_name(column).is_err() {
                return Err(usage(format!("{table} has no column `{column}`")));
            }
        }
    }
    if keys.is_empty() {
        return Err(usage(
            "no key columns to match rows on; give them with --on".into(),
        ));
    }
    let quote = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
    let condition: Vec<String> = keys
        .iter()
        .map(|k| format!("(a.{0} IS NOT DISTINCT FROM b.{0})", quote(k)))
        .collect();
    let selected: Vec<String> = compared
        .iter()
        .flat_map(|c| {
            [
                format!("a.{} AS {}", quote(c), quote(&format!("a_{c}"))),
                format!("b.{} AS {}", quote(c), quote(&format!("b_{c}"))),
            ]
        })
        .collect();
    let sql = format!(
        "SELECT {}, b.{} IS NULL AS unmatched FROM a LEFT JOIN b ON {}",
        selected.join(", "),
        quote(&keys[0]),
        condition.join(" AND ")
    );
    let mut tallies = Tallies::new();
    let mut unmatched = 0;
    let df = ctx.sql(&sql).await.map_err(Error::Execution)?;
    let mut stream = df.execute_stream().await.map_err(Error::Execution)?;
    while let Some(batch) = stream.try_next().await.map_err(Error::Execution)? {
        let flags = batch.column(batch.num_columns() - 1);
        let flags = arrow::array::AsArray::as_boolean(flags);
        let matched: arrow::array::BooleanArray =
            flags.iter().map(|f| Some(!f.unwrap_or(false))).collect();
        unmatched += (batch.num_rows() - matched.true_count()) as u64;
        let batch = arrow::compute::filter_record_batch(&batch, &matched).map_err(arrow_error)?;
        for (i, column) in compared.iter().enumerate() {
            crate::run::agreement::add_column(
                &mut tallies,
                column,
                batch.column(2 * i),
                batch.column(2 * i + 1),
            )
            .map_err(arrow_error)?;
        }
    }
    Ok(Comparison {
        table: a.to_string(),
        other: b.to_string(),
        on: keys,
        unmatched,
        columns: tallies
            .into_iter()
            .map(|(c, t)| (c, t.agreement()))
            .collect(),
    })
}

fn arrow_error(e: arrow::error::ArrowError) -> Error {
    Error::Execution(datafusion::error::DataFusionError::from(e))
}

async fn table_schema(ctx: &SessionContext, name: &str) -> Result<arrow::datatypes::SchemaRef> {
    let table = ctx.table_provider(name).await.map_err(Error::Execution)?;
    Ok(table.schema())
}
