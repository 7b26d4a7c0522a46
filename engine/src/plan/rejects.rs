//! Asking the scoring calls for their rejected rows: with `[output.rejects]`, every `predict` and
//! `embed` call of the plan gets one more argument, a struct of the job's key columns, resolved
//! where the call is evaluated. The functions keep the rows they decline with those keys (see
//! [`scorch_udfs::rejects`]); a key the call cannot see is a job error that names it.

use arrow::datatypes::{Field, Fields};
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::dataframe::DataFrame;
use datafusion::functions::core::expr_fn::named_struct;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::prelude::{Column, lit};

use crate::error::{Error, Result};
use crate::job::JobSpec;
use crate::plan::models::is_scoring_function;

/// The query with the key struct added to every scoring call, and the key columns' fields (as
/// the first call sees them). Without `[output.rejects]` the query is returned as it is.
pub fn add_keys(query: DataFrame, job: &JobSpec) -> Result<(DataFrame, Option<Fields>)> {
    let Some(rejects) = &job.output.rejects else {
        return Ok((query, None));
    };
    let (state, plan) = query.into_parts();
    let mut fields: Option<Fields> = None;
    let mut missing: Option<String> = None;
    let rewritten = plan
        .transform_up_with_subqueries(|node| {
            let mut scope = DFSchema::empty();
            for input in node.inputs() {
                scope.merge(input.schema());
            }
            let preserver = NamePreserver::new(&node);
            let node = node.map_expressions(|expr| {
                let saved = preserver.save(&expr);
                let rewritten = expr.transform_up(|e| {
                    let Expr::ScalarFunction(mut call) = e else {
                        return Ok(Transformed::no(e));
                    };
                    if !is_scoring_function(call.func.name()) {
                        return Ok(Transformed::no(Expr::ScalarFunction(call)));
                    }
                    let mut args = Vec::with_capacity(rejects.keys.len() * 2);
                    let mut found = Vec::with_capacity(rejects.keys.len());
                    for key in &rejects.keys {
                        match scope.qualified_field_with_unqualified_name(key) {
                            Ok((qualifier, field)) => {
                                args.push(lit(key.as_str()));
                                args.push(Expr::Column(Column::new(qualifier.cloned(), key)));
                                found.push(Field::new(key, field.data_type().clone(), true));
                            }
                            Err(_) if missing.is_none() => {
                                let visible: Vec<&str> =
                                    scope.fields().iter().map(|f| f.name().as_str()).collect();
                                missing = Some(format!(
                                    "output.rejects.keys: `{key}` is not a column where `{}` is \
                                     called (columns there: {}); list columns of the source \
                                     rows the model scores",
                                    call.func.name(),
                                    visible.join(", ")
                                ));
                            }
                            Err(_) => {}
                        }
                    }
                    if found.len() != rejects.keys.len() {
                        return Ok(Transformed::no(Expr::ScalarFunction(call)));
                    }
                    fields.get_or_insert_with(|| Fields::from(found));
                    call.args.push(named_struct(args));
                    Ok(Transformed::yes(Expr::ScalarFunction(call)))
                })?;
                Ok(rewritten.update_data(|e| saved.restore(e)))
            })?;
            if node.transformed {
                node.map_data(|p| p.recompute_schema())
            } else {
                Ok(node)
            }
        })
        .map_err(|e| Error::from_query(job, e))?;
    if let Some(message) = missing {
        return Err(Error::JobFile {
            path: job.path.clone(),
            message,
        });
    }
    Ok((DataFrame::new(state, rewritten.data), fields))
}
