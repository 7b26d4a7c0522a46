//! Stamps: the columns and footer metadata that make every output row traceable to the run, the
//! model and the input data that produced it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use datafusion::common::ScalarValue;
use scorch_udfs::ModelRef;

use crate::plan::Prepared;
use crate::run::manifest::SCORCH_VERSION;

/// Names of the stamp columns added to every output row.
pub const STAMP_COLUMNS: [&str; 6] = [
    "_model",
    "_model_version",
    "_model_sha256",
    "_data_sha256",
    "_run_id",
    "_scored_at",
];

/// Stamp values for one run.
pub struct Stamps {
    model: Option<String>,
    version: Option<String>,
    sha256: Option<String>,
    data_sha256: String,
    /// The run's id.
    pub run_id: String,
    scored_at: DateTime<Utc>,
}

impl Stamps {
    /// The stamps of run `run_id` of `prepared`, started at `scored_at`.
    pub fn new(prepared: &Prepared, run_id: &str, scored_at: DateTime<Utc>) -> Self {
        let used: Vec<&ModelRef> = prepared
            .models_used
            .iter()
            .filter_map(|n| prepared.catalog.get(n).ok())
            .collect();
        let join = |f: fn(&ModelRef) -> &str| {
            (!used.is_empty()).then(|| used.iter().map(|m| f(m)).collect::<Vec<_>>().join(","))
        };
        Self {
            model: join(|m| &m.name),
            version: join(|m| &m.version),
            sha256: join(|m| &m.sha256),
            data_sha256: prepared.data_sha256.clone(),
            run_id: run_id.to_string(),
            scored_at,
        }
    }

    /// The model stamps of the shadow table of a run whose model `primary` is shadowed by
    /// `shadow`: the same lists with the shadow model in the primary's place.
    pub fn of_shadow(prepared: &Prepared, primary: &str, shadow: &str) -> Vec<(String, String)> {
        let used: Vec<&ModelRef> = prepared
            .models_used
            .iter()
            .map(|n| if n == primary { shadow } else { n.as_str() })
            .filter_map(|n| prepared.catalog.get(n).ok())
            .collect();
        let join =
            |f: fn(&ModelRef) -> &str| used.iter().map(|m| f(m)).collect::<Vec<_>>().join(",");
        vec![
            ("_model".to_string(), join(|m| &m.name)),
            ("_model_version".to_string(), join(|m| &m.version)),
            ("_model_sha256".to_string(), join(|m| &m.sha256)),
        ]
    }

    /// The stamp columns and their values.
    pub fn columns(&self) -> Vec<(&'static str, ScalarValue)> {
        vec![
            ("_model", ScalarValue::Utf8(self.model.clone())),
            ("_model_version", ScalarValue::Utf8(self.version.clone())),
            ("_model_sha256", ScalarValue::Utf8(self.sha256.clone())),
            (
                "_data_sha256",
                ScalarValue::Utf8(Some(self.data_sha256.clone())),
            ),
            ("_run_id", ScalarValue::Utf8(Some(self.run_id.clone()))),
            (
                "_scored_at",
                ScalarValue::TimestampMicrosecond(
                    Some(self.scored_at.timestamp_micros()),
                    Some("UTC".into()),
                ),
            ),
        ]
    }

    /// The Parquet footer key/value metadata.
    pub fn footer(&self, job: &str) -> HashMap<String, Option<String>> {
        let mut kv = HashMap::new();
        kv.insert("scorch.version".into(), Some(SCORCH_VERSION.to_string()));
        kv.insert("scorch.job".into(), Some(job.to_string()));
        kv.insert("scorch.model".into(), self.model.clone());
        kv.insert("scorch.model_version".into(), self.version.clone());
        kv.insert("scorch.model_sha256".into(), self.sha256.clone());
        kv.insert("scorch.data_sha256".into(), Some(self.data_sha256.clone()));
        kv.insert("scorch.run_id".into(), Some(self.run_id.clone()));
        kv.insert("scorch.scored_at".into(), Some(self.scored_at.to_rfc3339()));
        kv
    }
}
