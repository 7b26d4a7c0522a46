//! Drift against the models' reference profiles: the population stability index of each input
//! and output, and the two-sample Kolmogorov–Smirnov statistic of each output, from the bin
//! counts the scoring functions streamed ([`scorch_udfs::profile`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use scorch_udfs::ModelCatalog;
use scorch_udfs::profile::{Distribution, ks};
use scorch_udfs::unscored::Counts;

/// One output's drift.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputDrift {
    /// Population stability index against the profile.
    pub psi: Option<f64>,
    /// The KS statistic (largest distance between the distribution functions).
    pub ks: Option<f64>,
    /// Its asymptotic p-value.
    pub ks_p_value: Option<f64>,
    /// The profile's bins: their upper edges (the last bin is open, then missing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    /// Share of the profile's rows per bin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected: Vec<f64>,
    /// Share of this run's scored rows per bin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actual: Vec<f64>,
}

/// One model's drift.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelDrift {
    /// Rows its profile was made from.
    pub profile_rows: u64,
    /// PSI per input.
    pub features: BTreeMap<String, f64>,
    /// Per output.
    pub outputs: BTreeMap<String, OutputDrift>,
}

/// The drift of every model with a profile whose counts the run collected.
pub fn compute(catalog: &ModelCatalog, counts: &Counts) -> BTreeMap<String, ModelDrift> {
    let mut drift = BTreeMap::new();
    for (name, model_counts) in counts {
        let Some(profile) = catalog.get(name).ok().and_then(|m| m.profile.as_ref()) else {
            continue;
        };
        let bins = |key: String| model_counts.sketch.get(&key);
        let mut model = ModelDrift {
            profile_rows: profile.rows,
            ..Default::default()
        };
        for (feature, distribution) in &profile.features {
            if let Some(psi) = bins(format!("input:{feature}")).and_then(|c| distribution.psi(c)) {
                model.features.insert(feature.clone(), psi);
            }
        }
        for (output, distribution) in &profile.outputs {
            let (ks, ks_p_value) = bins(format!("ks:{output}"))
                .and_then(|c| ks(distribution.quantiles(), profile.rows, c))
                .map_or((None, None), |(d, p)| (Some(d), Some(p)));
            let counts = bins(format!("output:{output}"));
            let total: u64 = counts.map_or(0, |c| c.iter().sum());
            let (edges, expected) = match distribution {
                Distribution::Numeric {
                    edges, proportions, ..
                } => (edges.clone(), proportions.clone()),
                Distribution::Categorical { proportions, .. } => (Vec::new(), proportions.clone()),
            };
            model.outputs.insert(
                output.clone(),
                OutputDrift {
                    psi: counts.and_then(|c| distribution.psi(c)),
                    ks,
                    ks_p_value,
                    edges,
                    expected,
                    actual: counts
                        .filter(|_| total > 0)
                        .map(|c| c.iter().map(|n| *n as f64 / total as f64).collect())
                        .unwrap_or_default(),
                },
            );
        }
        drift.insert(name.clone(), model);
    }
    drift
}
