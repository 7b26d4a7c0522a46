//! Drift against the models' reference profiles: the population stability index of each input
//! and output, and the two-sample Kolmogorov–Smirnov statistic of each output, from the bin
//! counts the scoring functions streamed ([`scorch_udfs::profile`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use scorch_udfs::ModelCatalog;
use scorch_udfs::profile::ks;
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
            model.outputs.insert(
                output.clone(),
                OutputDrift {
                    psi: bins(format!("output:{output}")).and_then(|c| distribution.psi(c)),
                    ks,
                    ks_p_value,
                },
            );
        }
        drift.insert(name.clone(), model);
    }
    drift
}
