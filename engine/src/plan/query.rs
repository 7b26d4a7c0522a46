//! The job's query: parsed once to give SQL errors with their file and line, planned with the
//! job's parameters bound as typed placeholders.

use std::collections::HashMap;
use std::path::Path;

use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast;

use crate::error::{Error, Result};
use crate::job::{BoundParams, JobSpec};

/// Where the job's SQL comes from, as error messages name it.
pub fn sql_origin(job: &JobSpec) -> String {
    match &job.sql_file {
        Some(file) => display_path(file),
        None => format!("{} ([query] sql)", display_path(&job.path)),
    }
}

fn display_path(path: &Path) -> String {
    path.display().to_string()
}

/// Checks that the SQL is one `SELECT` (or `WITH … SELECT`), with syntax errors pointing at the
/// file and line.
pub fn check_statement(job: &JobSpec) -> Result<()> {
    let origin = sql_origin(job);
    let syntax = |message: String| Error::SqlSyntax {
        origin: origin.clone(),
        message,
    };
    let statements = DFParser::parse_sql(&job.sql).map_err(|e| {
        syntax(match &e {
            datafusion::error::DataFusionError::SQL(parser, _) => parser_message(parser, &job.sql),
            other => other.to_string(),
        })
    })?;
    if statements.len() != 1 {
        return Err(syntax(format!(
            "found {} statements; a job's query is a single SELECT",
            statements.len()
        )));
    }
    match statements.front() {
        Some(Statement::Statement(s)) if matches!(s.as_ref(), ast::Statement::Query(_)) => Ok(()),
        Some(Statement::Statement(s)) => Err(syntax(format!(
            "`{}` is not a query; a job's query is a single SELECT (no DDL, DML or SET)",
            first_words(&s.to_string())
        ))),
        Some(other) => Err(syntax(format!(
            "`{}` is not a query; a job's query is a single SELECT (no DDL, DML or SET)",
            first_words(&other.to_string())
        ))),
        None => Err(syntax("the SQL holds no statement".into())),
    }
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The parser's message in `line L, column C: …` form when it carries a position; an error at
/// the end of the text points at its last line.
fn parser_message(e: &datafusion::sql::sqlparser::parser::ParserError, sql: &str) -> String {
    use datafusion::sql::sqlparser::parser::ParserError;
    let text = match e {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "the query nests too deeply".to_string(),
    };
    // sqlparser appends " at Line: L, Column: C".
    match text.rsplit_once(" at Line: ") {
        Some((message, position)) => {
            let mut parts = position.split(", Column: ");
            match (parts.next(), parts.next()) {
                (Some(line), Some(column)) => format!("line {line}, column {column}: {message}"),
                _ => text.clone(),
            }
        }
        None if text.ends_with("found: EOF") => {
            let lines = sql.trim_end().lines().count().max(1);
            format!("line {lines}, at the end of the query: {text}")
        }
        None => text,
    }
}

/// Plans the SQL and binds the parameters it uses. A placeholder the job does not declare is an
/// error; declared parameters the query does not use are ignored.
pub async fn plan(ctx: &SessionContext, job: &JobSpec, params: &BoundParams) -> Result<DataFrame> {
    check_statement(job)?;
    let sql_options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx
        .sql_with_options(&job.sql, sql_options)
        .await
        .map_err(|e| Error::from_query(job, e))?;
    let used = df
        .logical_plan()
        .get_parameter_types()
        .map_err(|e| Error::from_query(job, e))?;
    let mut values = HashMap::new();
    for placeholder in used.keys() {
        let name = placeholder.trim_start_matches('$');
        let value = params.get(name).ok_or_else(|| Error::Param {
            name: name.to_string(),
            message: format!(
                "the query uses {placeholder} but job `{}` declares no parameter `{name}`; add it under [params]",
                job.name
            ),
        })?;
        values.insert(name.to_string(), value.clone());
    }
    if values.is_empty() {
        return Ok(df);
    }
    df.with_param_values(ParamValues::from(values))
        .map_err(|e| Error::from_query(job, e))
}
