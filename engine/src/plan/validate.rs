//! `scorch validate`: everything a run would check before scoring, without scoring.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::job::{JobSpec, Unbound};
use crate::plan::{RunOptions, output, prepare_with};
use crate::run::manifest::ModelUse;
use crate::table::target::Target;

/// What `scorch validate` checked.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateReport {
    /// Job name.
    pub job: String,
    /// Models, verified.
    pub models: Vec<ModelUse>,
    /// Sources and their columns.
    pub sources: BTreeMap<String, Vec<String>>,
    /// Output columns, stamps included.
    pub output_columns: Vec<(String, String)>,
    /// Declared parameters given no value: the job was planned with them `NULL`, so pruning and
    /// the input files could not be checked for them.
    pub unbound_params: Vec<String>,
    /// Warnings.
    pub warnings: Vec<String>,
}

/// Checks a job end to end without scoring: job file, locations, parameters, model hashes,
/// weights and their agreement with the manifests, source schemas against the query and the
/// models' declared inputs, the output's partitioning, location and schema against the table.
/// Parameters without a value are planned as `NULL` and reported, so a job can be checked
/// before its parameters are known.
pub async fn validate(job: &JobSpec, options: &RunOptions) -> Result<ValidateReport> {
    let prepared = prepare_with(job, options, Unbound::Null).await?;
    let schema = prepared.query.schema();
    output::check_columns(job, schema)?;
    let stamped = output::stamped_arrow_schema(schema);
    let store = prepared.stores.store(&job.output.location)?;
    let target = Target::open(&job.output.location, job.output.format, store).await?;
    output::check_table(job, "output.url", &target, &stamped).await?;
    let table_schema = output::table_schema(job.output.format, &stamped)?;

    let mut sources = BTreeMap::new();
    for source in &job.sources {
        let table = prepared
            .ctx
            .table_provider(source.name.as_str())
            .await
            .map_err(|e| Error::from_query(job, e))?;
        sources.insert(
            source.name.clone(),
            table
                .schema()
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect(),
        );
    }
    Ok(ValidateReport {
        job: job.name.clone(),
        models: prepared
            .packages
            .iter()
            .map(|(name, p)| ModelUse {
                name: name.clone(),
                uri: p.uri.clone(),
                version: p.manifest.version.to_string(),
                sha256: p.sha256.clone(),
                format: p.manifest.format.to_string(),
                source: prepared.package_sources.get(name).copied(),
                registry: prepared.registered.get(name).cloned(),
            })
            .collect(),
        sources,
        output_columns: table_schema
            .columns
            .into_iter()
            .map(|c| (c.name, c.data_type))
            .collect(),
        unbound_params: prepared.unbound.clone(),
        warnings: prepared.warnings.clone(),
    })
}
