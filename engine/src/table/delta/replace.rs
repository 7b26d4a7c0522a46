//! What an overwrite replaces: the condition the job declares (`[output] replace_where = "ds =
//! $ds"`, bound from the run's typed parameters), or the partitions the run wrote.
//!
//! The condition may name partition columns only, so it is decided per file from the partition
//! values in the log, and given to the conflict checker as SQL: a concurrent commit that adds or
//! removes files it covers makes one of the two runs fail.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{Field, Schema};
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;

use crate::error::{Error, Result};
use crate::job::BoundParams;

/// A replace condition bound to a run's parameters.
#[derive(Debug, Clone)]
pub struct ReplaceWhere {
    expr: Expr,
    schema: Arc<Schema>,
    /// The condition as SQL, parameters replaced by their values.
    pub sql: String,
}

fn invalid(sql: &str, message: impl std::fmt::Display) -> Error {
    Error::ReplaceWhere {
        predicate: sql.to_string(),
        message: message.to_string(),
    }
}

impl ReplaceWhere {
    /// Binds `sql` over the partition columns of `schema` (the run's output) with `params`.
    pub fn try_bind(
        sql: &str,
        params: &BoundParams,
        schema: &Schema,
        partition_by: &[String],
    ) -> Result<Self> {
        if partition_by.is_empty() {
            return Err(invalid(
                sql,
                "the output has no partition_by: replace_where decides per partition",
            ));
        }
        let fields: Vec<Field> = partition_by
            .iter()
            .map(|c| {
                schema
                    .field_with_name(c)
                    .map(|f| f.clone().with_nullable(true))
                    .map_err(|_| invalid(sql, format!("the output has no column `{c}`")))
            })
            .collect::<Result<_>>()?;
        let schema = Arc::new(Schema::new(fields));
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| invalid(sql, e))?;
        let ctx = SessionContext::new();
        let expr = ctx.parse_sql_expr(sql, &df_schema).map_err(|e| {
            invalid(
                sql,
                format!(
                    "{e}; replace_where may use the partition columns only ({})",
                    partition_by.join(", ")
                ),
            )
        })?;
        let mut unknown = None;
        let expr = expr
            .transform(|e| match e {
                Expr::Placeholder(p) => {
                    let name = p.id.trim_start_matches('$').to_string();
                    match params.get(&name) {
                        Some(value) => Ok(Transformed::yes(Expr::Literal(value.clone(), None))),
                        None => {
                            unknown = Some(name);
                            Ok(Transformed::no(Expr::Placeholder(p)))
                        }
                    }
                }
                other => Ok(Transformed::no(other)),
            })
            .map_err(|e| invalid(sql, e))?
            .data;
        if let Some(name) = unknown {
            return Err(invalid(
                sql,
                format!("it uses ${name}, which the job does not declare under [params]"),
            ));
        }
        let sql_text = datafusion::sql::unparser::expr_to_sql(&expr)
            .map_err(|e| invalid(sql, e))?
            .to_string();
        Ok(Self {
            expr,
            schema,
            sql: sql_text,
        })
    }

    /// Whether each partition (its values by column, as the Delta log holds them) satisfies the
    /// condition.
    pub fn matches(&self, partitions: &[BTreeMap<String, Option<String>>]) -> Result<Vec<bool>> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                let text: ArrayRef = Arc::new(StringArray::from_iter(
                    partitions
                        .iter()
                        .map(|p| p.get(f.name()).cloned().flatten()),
                ));
                cast(&text, f.data_type())
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| invalid(&self.sql, e))?;
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .map_err(|e| invalid(&self.sql, e))?;
        let df_schema =
            DFSchema::try_from(self.schema.as_ref().clone()).map_err(|e| invalid(&self.sql, e))?;
        let ctx = SessionContext::new();
        let physical = ctx
            .create_physical_expr(self.expr.clone(), &df_schema)
            .map_err(|e| invalid(&self.sql, e))?;
        let result = physical
            .evaluate(&batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| invalid(&self.sql, e))?;
        let result = cast(&result, &arrow::datatypes::DataType::Boolean)
            .map_err(|e| invalid(&self.sql, e))?;
        let result = result.as_boolean();
        Ok((0..result.len())
            .map(|i| result.is_valid(i) && result.value(i))
            .collect())
    }
}

/// SQL naming exactly the given partitions (`a = 'x' AND b = 'y' OR …`), for the conflict
/// checker of an overwrite that declares no condition.
pub fn partitions_sql(partitions: &[BTreeMap<String, Option<String>>]) -> String {
    let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
    let one = |p: &BTreeMap<String, Option<String>>| {
        p.iter()
            .map(|(k, v)| match v {
                Some(v) => format!("\"{}\" = {}", k.replace('"', "\"\""), quote(v)),
                None => format!("\"{}\" IS NULL", k.replace('"', "\"\"")),
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    match partitions {
        [] => "false".to_string(),
        [p] => one(p),
        many => many
            .iter()
            .map(|p| format!("({})", one(p)))
            .collect::<Vec<_>>()
            .join(" OR "),
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;

    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("ds", DataType::Date32, false),
            Field::new("region", DataType::Utf8, false),
        ])
    }

    fn partition(ds: &str, region: &str) -> BTreeMap<String, Option<String>> {
        BTreeMap::from([
            ("ds".to_string(), Some(ds.to_string())),
            ("region".to_string(), Some(region.to_string())),
        ])
    }

    #[test]
    fn a_bound_condition_decides_per_partition() {
        let params = BoundParams::from([("ds".to_string(), ScalarValue::Date32(Some(20_784)))]);
        let r = ReplaceWhere::try_bind(
            "ds = $ds",
            &params,
            &schema(),
            &["ds".into(), "region".into()],
        )
        .expect("binds");
        assert!(r.sql.contains("2026-11-27"), "{}", r.sql);
        let m = r
            .matches(&[partition("2026-11-27", "EU"), partition("2026-11-26", "EU")])
            .expect("evaluates");
        assert_eq!(m, vec![true, false]);
    }

    #[test]
    fn only_partition_columns_and_declared_parameters() {
        let params = BoundParams::new();
        let err = ReplaceWhere::try_bind("id > 3", &params, &schema(), &["ds".into()])
            .expect_err("id is not a partition column")
            .to_string();
        assert!(err.contains("partition columns only"), "{err}");
        let err = ReplaceWhere::try_bind("ds = $day", &params, &schema(), &["ds".into()])
            .expect_err("undeclared")
            .to_string();
        assert!(err.contains("$day"), "{err}");
    }

    #[test]
    fn partitions_become_sql() {
        assert_eq!(
            partitions_sql(&[partition("2026-11-27", "O'Hare")]),
            "\"ds\" = '2026-11-27' AND \"region\" = 'O''Hare'"
        );
    }
}
