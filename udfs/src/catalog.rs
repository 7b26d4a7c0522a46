//! The model catalog: what a model name in SQL refers to.
//!
//! The catalog travels with the plan as a DataFusion config extension (`scorch.models`), so a
//! process that never read the job file (a Ballista scheduler or executor) learns from the
//! session configuration which package a name refers to, which hash it must have, and what its
//! inputs and outputs are.

use std::any::Any;
use std::collections::BTreeMap;

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::config::ConfigOptions;
use datafusion::error::DataFusionError;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::package::{InputSpec, ModelFormat, ModelPackage, OutputSpec};

/// A resolved model: where its package lives, its pinned hash and its signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    /// Name used in SQL.
    pub name: String,
    /// Package location as a URL (`file:///…`, `s3://…`).
    pub uri: String,
    /// The package's SHA-256; every process verifies it before use.
    pub sha256: String,
    /// The manifest's semantic version.
    pub version: String,
    /// How the package is run.
    pub format: ModelFormat,
    /// Declared inputs, in argument order.
    pub inputs: Vec<InputSpec>,
    /// Declared outputs.
    pub outputs: Vec<OutputSpec>,
    /// The reference profile: scoring counts inputs and outputs into its bins for drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::profile::Profile>,
}

impl ModelRef {
    /// The reference to a package that was read and verified under `name`.
    pub fn from_package(name: &str, package: &ModelPackage) -> Self {
        Self {
            name: name.to_string(),
            uri: package.uri.clone(),
            sha256: package.sha256.clone(),
            version: package.manifest.version.to_string(),
            format: package.manifest.format,
            inputs: package.manifest.inputs.clone(),
            outputs: package.manifest.outputs.clone(),
            profile: package.profile.clone(),
        }
    }
}

/// All models a session knows, by SQL name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelCatalog {
    models: BTreeMap<String, ModelRef>,
}

impl ModelCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a model.
    pub fn insert(&mut self, model: ModelRef) {
        self.models.insert(model.name.clone(), model);
    }

    /// Looks a model up by SQL name.
    pub fn get(&self, name: &str) -> Result<&ModelRef> {
        self.models.get(name).ok_or_else(|| Error::UnknownModel {
            name: name.to_string(),
            known: if self.models.is_empty() {
                "(none)".to_string()
            } else {
                self.models.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        })
    }

    /// Every model, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &ModelRef> {
        self.models.values()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The catalog carried by a session's configuration (empty when none was set).
    pub fn from_config(options: &ConfigOptions) -> Self {
        Self::in_config(options).cloned().unwrap_or_default()
    }

    /// The non-empty catalog carried by a session's configuration, by reference.
    pub fn in_config(options: &ConfigOptions) -> Option<&Self> {
        options
            .extensions
            .get::<ScorchOptions>()
            .map(|o| &o.catalog)
            .filter(|c| !c.is_empty())
    }
}

/// scorch's DataFusion config extension, under the prefix `scorch`.
///
/// Its one key, `scorch.models`, holds the [`ModelCatalog`] as JSON so that it survives being
/// sent as string key/value pairs to remote processes.
#[derive(Debug, Clone, Default)]
pub struct ScorchOptions {
    /// The models of this session.
    pub catalog: ModelCatalog,
    /// The device the job asked for (`auto`, `cpu`, `cuda:N`), so that every process runs the
    /// models where the job said.
    pub device: Option<String>,
    /// The job's per-store options (`[stores]`, as JSON; never credentials), so that every
    /// process reaches the job's stores the same way. Opaque to this crate: the engine's store
    /// registry reads it (see [`crate::StoreResolver::for_session`]).
    pub stores: Option<String>,
    /// The run the plan belongs to: scoring functions tally their unscored rows under it (see
    /// [`crate::unscored`]).
    pub run_id: Option<String>,
}

impl ScorchOptions {
    /// Options holding `catalog`.
    pub fn new(catalog: ModelCatalog) -> Self {
        Self {
            catalog,
            device: None,
            stores: None,
            run_id: None,
        }
    }

    /// With the job's device.
    pub fn with_device(mut self, device: impl ToString) -> Self {
        self.device = Some(device.to_string());
        self
    }

    /// With the run's id.
    pub fn with_run_id(mut self, run_id: impl ToString) -> Self {
        self.run_id = Some(run_id.to_string());
        self
    }

    /// With the job's store options, as JSON.
    pub fn with_stores(mut self, stores: String) -> Self {
        self.stores = Some(stores);
        self
    }

    /// The options a session's configuration carries, if any.
    pub fn in_config(options: &ConfigOptions) -> Option<&Self> {
        options.extensions.get::<ScorchOptions>()
    }
}

impl ConfigExtension for ScorchOptions {
    const PREFIX: &'static str = "scorch";
}

impl ExtensionOptions for ScorchOptions {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> datafusion::error::Result<()> {
        match key {
            "models" => {
                self.catalog = serde_json::from_str(value).map_err(|e| {
                    DataFusionError::Configuration(format!(
                        "scorch.models is not a valid model catalog: {e}"
                    ))
                })?;
                Ok(())
            }
            "device" => {
                self.device = Some(value.to_string());
                Ok(())
            }
            "stores" => {
                self.stores = Some(value.to_string());
                Ok(())
            }
            "run_id" => {
                self.run_id = Some(value.to_string());
                Ok(())
            }
            other => Err(DataFusionError::Configuration(format!(
                "unknown scorch option `scorch.{other}` (known: scorch.models, scorch.device, scorch.stores, scorch.run_id)"
            ))),
        }
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        // Entries carry the full key: `ConfigOptions::entries` does not add the prefix, and remote
        // processes apply each pair with `ConfigOptions::set`, which routes on it.
        vec![
            ConfigEntry {
                key: format!("{}.models", Self::PREFIX),
                value: Some(
                    serde_json::to_string(&self.catalog)
                        .expect("a catalog always serialises: string keys only"),
                ),
                description: "The models of this session by SQL name: package URL, SHA-256 and signature (JSON)",
            },
            ConfigEntry {
                key: format!("{}.device", Self::PREFIX),
                value: self.device.clone(),
                description: "Where the job's models run: auto, cpu or cuda:N",
            },
            ConfigEntry {
                key: format!("{}.stores", Self::PREFIX),
                value: self.stores.clone(),
                description: "The job's per-store options, without credentials (JSON)",
            },
            ConfigEntry {
                key: format!("{}.run_id", Self::PREFIX),
                value: self.run_id.clone(),
                description: "The run the plan belongs to, under which unscored rows are tallied",
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelRef {
        ModelRef {
            name: "churn".into(),
            uri: "file:///m/churn".into(),
            sha256: "ab".repeat(32),
            version: "1.0.0".into(),
            format: ModelFormat::Mlp,
            inputs: vec![InputSpec {
                max: Some(3.0),
                ..InputSpec::float32("x")
            }],
            outputs: vec![OutputSpec::float32("p")],
            profile: Some(crate::profile::Profile {
                version: 1,
                rows: 4,
                source: "file:///d".into(),
                created_at: "2026-12-02T00:00:00Z".into(),
                features: [(
                    "x".to_string(),
                    crate::profile::Distribution::numeric(vec![0.5, 1.5, 2.5, f64::NAN], 2, false),
                )]
                .into(),
                outputs: Default::default(),
            }),
        }
    }

    #[test]
    fn catalog_round_trips_through_config_strings() {
        let mut catalog = ModelCatalog::new();
        catalog.insert(model());
        let mut options = ConfigOptions::new();
        options.extensions.insert(
            ScorchOptions::new(catalog.clone())
                .with_device("cpu")
                .with_stores("{}".into()),
        );

        // What a remote process receives: the key/value pairs of the configuration.
        let pairs: Vec<(String, String)> = options
            .entries()
            .into_iter()
            .filter(|e| e.key.starts_with("scorch."))
            .filter_map(|e| e.value.map(|v| (e.key, v)))
            .collect();
        assert_eq!(pairs.len(), 3);

        let mut remote = ConfigOptions::new();
        remote.extensions.insert(ScorchOptions::default());
        for (k, v) in pairs {
            remote.set(&k, &v).expect("known key");
        }
        assert_eq!(ModelCatalog::from_config(&remote), catalog);
        let travelled = ScorchOptions::in_config(&remote).expect("options");
        assert_eq!(travelled.device.as_deref(), Some("cpu"));
        assert_eq!(travelled.stores.as_deref(), Some("{}"));
    }

    #[test]
    fn unknown_model_lists_known_ones() {
        let mut catalog = ModelCatalog::new();
        catalog.insert(model());
        let err = catalog.get("chrun").unwrap_err().to_string();
        assert!(err.contains("chrun") && err.contains("churn"), "{err}");
    }
}
