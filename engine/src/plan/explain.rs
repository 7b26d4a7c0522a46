//! `scorch explain`: the plan, and what a run would read against what it prunes.

use std::collections::BTreeMap;

use datafusion::physical_plan::displayable;
use serde::Serialize;

use crate::error::Result;
use crate::job::JobSpec;
use crate::plan::scan::{self, ScanEstimate};
use crate::plan::{RunOptions, prepare};

/// What `scorch explain` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainReport {
    /// The physical plan, indented.
    pub physical_plan: String,
    /// Per source: files, row groups and bytes the run would read against the total.
    pub scans: Vec<ScanEstimate>,
    /// Fingerprint of the input files.
    pub data_sha256: String,
    /// Models the query calls.
    pub models: Vec<String>,
    /// Bound parameters.
    pub params: BTreeMap<String, String>,
    /// Warnings found while planning.
    pub warnings: Vec<String>,
}

/// Plans a job and estimates what it would read, without scoring.
pub async fn explain(job: &JobSpec, options: &RunOptions) -> Result<ExplainReport> {
    let prepared = prepare(job, options).await?;
    let scans = scan::estimate(
        &prepared.stores,
        &job.sources,
        &prepared.listings,
        &prepared.scans,
    )
    .await?;
    Ok(ExplainReport {
        physical_plan: displayable(prepared.physical.as_ref())
            .indent(true)
            .to_string(),
        scans,
        data_sha256: prepared.data_sha256.clone(),
        models: prepared.models_used.iter().cloned().collect(),
        params: prepared
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        warnings: prepared.warnings.clone(),
    })
}
