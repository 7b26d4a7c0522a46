//! Champion/challenger in one scan: every output column computed from the primary model gets a
//! twin computed the same way from the shadow model, in the same projections, over the same rows.
//! The writer splits the twins off into the shadow table; the scan, the filters and the other
//! columns are shared, so a shadow run costs the second model, not a second read.

use std::collections::BTreeSet;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection};

use crate::error::{Error, Result};
use crate::job::JobSpec;
use crate::plan::models::is_scoring_function;

/// The suffix of a twin column's name.
pub const TWIN_SUFFIX: &str = "__shadow";

/// The name of the twin of column `name`.
pub fn twin(name: &str) -> String {
    format!("{name}{TWIN_SUFFIX}")
}

/// `query` with twins computed by `shadow` for every column computed by `primary`, and the
/// output columns that have twins (the twins of which are named [`twin`]).
pub fn add_twins(
    query: DataFrame,
    job: &JobSpec,
    primary: &str,
    shadow: &str,
) -> Result<(DataFrame, Vec<String>)> {
    let (state, plan) = query.into_parts();
    let rewritten = plan
        .transform_up(|node| {
            let LogicalPlan::Projection(projection) = node else {
                return node.recompute_schema().map(Transformed::yes);
            };
            let input_twins: BTreeSet<(Option<String>, String)> = projection
                .input
                .schema()
                .iter()
                .filter_map(|(q, f)| {
                    f.name()
                        .strip_suffix(TWIN_SUFFIX)
                        .map(|base| (q.map(|q| q.to_string()), base.to_string()))
                })
                .collect();
            let mut exprs = projection.expr.clone();
            for (i, expr) in projection.expr.iter().enumerate() {
                let name = projection.schema.field(i).name().clone();
                if name.ends_with(TWIN_SUFFIX) {
                    continue;
                }
                let mut changed = false;
                let twin_expr = expr
                    .clone()
                    .transform_up(|e| match e {
                        Expr::ScalarFunction(mut call)
                            if is_scoring_function(call.func.name())
                                && model_literal(call.args.first()) == Some(primary) =>
                        {
                            changed = true;
                            call.args[0] =
                                Expr::Literal(ScalarValue::Utf8(Some(shadow.into())), None);
                            Ok(Transformed::yes(Expr::ScalarFunction(call)))
                        }
                        Expr::Column(c)
                            if input_twins.contains(&(
                                c.relation.as_ref().map(|r| r.to_string()),
                                c.name.clone(),
                            )) =>
                        {
                            changed = true;
                            Ok(Transformed::yes(Expr::Column(Column::new(
                                c.relation.clone(),
                                twin(&c.name),
                            ))))
                        }
                        other => Ok(Transformed::no(other)),
                    })?
                    .data;
                if changed {
                    let unaliased = match twin_expr {
                        Expr::Alias(alias) => *alias.expr,
                        other => other,
                    };
                    exprs.push(unaliased.alias(twin(&name)));
                }
            }
            if exprs.len() == projection.expr.len() {
                return Ok(Transformed::no(LogicalPlan::Projection(projection)));
            }
            Projection::try_new(exprs, projection.input)
                .map(|p| Transformed::yes(LogicalPlan::Projection(p)))
        })
        .map_err(|e| Error::from_query(job, e))?
        .data;
    let twinned: Vec<String> = rewritten
        .schema()
        .fields()
        .iter()
        .filter_map(|f| f.name().strip_suffix(TWIN_SUFFIX).map(str::to_string))
        .collect();
    if twinned.is_empty() {
        return Err(Error::JobFile {
            path: job.path.clone(),
            message: format!(
                "shadow: no output column is computed from predict('{primary}', …) in a SELECT \
                 list, so there is nothing to score with `{shadow}` beside it"
            ),
        });
    }
    Ok((DataFrame::new(state, rewritten), twinned))
}

fn model_literal(expr: Option<&Expr>) -> Option<&str> {
    match expr? {
        Expr::Literal(
            ScalarValue::Utf8(Some(m))
            | ScalarValue::LargeUtf8(Some(m))
            | ScalarValue::Utf8View(Some(m)),
            _,
        ) => Some(m.as_str()),
        _ => None,
    }
}
