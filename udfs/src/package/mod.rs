//! Model packages: a directory with a manifest (`model.toml`) and the artifacts it names.
//!
//! A package is identified by its SHA-256, computed over every file of the directory in a fixed
//! order, so that nothing in the package (weights, tokenizer, manifest, baseline statistics) can
//! change without the hash changing. Jobs pin that hash; it is checked before a single row is
//! scored, in every process that loads the package.
//!
//! - [`manifest`](ModelManifest): the `model.toml` schema and its rules;
//! - files: reading a package from a folder or a store, and the hash over its files.

mod files;
mod manifest;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use crate::error::{Error, Result};
use files::read_files;
pub use files::{package_sha256, read_local_dir};
pub use manifest::*;

/// File name of the manifest inside a package.
pub const MANIFEST_FILE: &str = "model.toml";

/// File extensions of formats that execute code when loaded, refused everywhere.
const UNSAFE_EXTENSIONS: &[(&str, &str)] = &[
    ("pkl", "pickle"),
    ("pickle", "pickle"),
    ("joblib", "joblib (pickle)"),
    ("dill", "dill (pickle)"),
    ("pt", "PyTorch pickle"),
    ("pth", "PyTorch pickle"),
    ("ckpt", "checkpoint (pickle)"),
];

/// A package read into memory: its manifest, its files and their hash.
#[derive(Clone)]
pub struct ModelPackage {
    /// Where it was read from.
    pub uri: String,
    /// The parsed manifest.
    pub manifest: ModelManifest,
    /// Every file of the package by path relative to the package root.
    pub files: BTreeMap<String, Bytes>,
    /// SHA-256 over all files (see [`package_sha256`]).
    pub sha256: String,
    /// The reference profile (`profile.json`), when the package has one.
    pub profile: Option<crate::profile::Profile>,
}

impl fmt::Debug for ModelPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelPackage")
            .field("uri", &self.uri)
            .field("name", &self.manifest.name)
            .field("version", &self.manifest.version.to_string())
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl ModelPackage {
    /// Builds a package from its files, checking the manifest and refusing unsafe formats.
    pub fn try_from_files(uri: &str, files: BTreeMap<String, Bytes>) -> Result<Self> {
        for name in files.keys() {
            let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
            if let Some((_, kind)) = UNSAFE_EXTENSIONS
                .iter()
                .find(|(x, _)| Some(*x) == ext.as_deref())
            {
                return Err(Error::UnsafeFormat {
                    uri: uri.to_string(),
                    file: name.clone(),
                    kind,
                });
            }
        }
        let manifest_bytes = files
            .get(MANIFEST_FILE)
            .ok_or_else(|| Error::ManifestMissing {
                uri: uri.to_string(),
                manifest: MANIFEST_FILE.to_string(),
            })?;
        let text = std::str::from_utf8(manifest_bytes).map_err(|e| Error::InvalidManifest {
            uri: uri.to_string(),
            reason: format!("not UTF-8: {e}"),
        })?;
        let manifest = ModelManifest::try_from_toml(text, uri)?;
        for artifact in manifest.artifacts() {
            if !files.contains_key(artifact) {
                return Err(Error::ArtifactMissing {
                    uri: uri.to_string(),
                    artifact: artifact.to_string(),
                });
            }
        }
        let profile = crate::profile::read(&files, uri)?;
        if let Some(profile) = &profile {
            for name in profile.features.keys() {
                if !manifest.inputs.iter().any(|i| &i.name == name) {
                    return Err(Error::InvalidManifest {
                        uri: uri.to_string(),
                        reason: format!(
                            "{}: feature `{name}` is not an input of the manifest",
                            crate::profile::PROFILE_FILE
                        ),
                    });
                }
            }
        }
        let sha256 = package_sha256(&files);
        Ok(Self {
            uri: uri.to_string(),
            manifest,
            files,
            sha256,
            profile,
        })
    }

    /// Reads every file under `prefix` of `store` and builds the package.
    pub async fn try_read(
        store: Arc<dyn ObjectStore>,
        prefix: &ObjectPath,
        uri: &str,
    ) -> Result<Self> {
        let files = read_files(store, prefix, uri).await?;
        Self::try_from_files(uri, files)
    }

    /// Checks the package against a pinned hash; `name` is the model's name in the job.
    pub fn verify(&self, name: &str, expected: &str) -> Result<()> {
        if !self.sha256.eq_ignore_ascii_case(expected) {
            return Err(Error::HashMismatch {
                name: name.to_string(),
                uri: self.uri.clone(),
                expected: expected.to_string(),
                actual: self.sha256.clone(),
            });
        }
        Ok(())
    }

    /// The bytes of one artifact named by the manifest.
    pub fn artifact(&self, name: &str) -> Result<&Bytes> {
        self.files.get(name).ok_or_else(|| Error::ArtifactMissing {
            uri: self.uri.clone(),
            artifact: name.to_string(),
        })
    }

    /// Total size of the package in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.files.values().map(|b| b.len() as u64).sum()
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A small valid package, for the tests of this module's parts.

    use std::collections::BTreeMap;

    use bytes::Bytes;

    use super::MANIFEST_FILE;

    pub fn manifest() -> String {
        r#"
name = "churn"
version = "1.2.0"
format = "mlp"
[[inputs]]
name = "a"
type = "float32"
[[inputs]]
name = "b"
type = "float32"
min = 0.0
max = 1.0
[[outputs]]
name = "p"
[mlp]
weights = "w.safetensors"
layers = [2, 4, 1]
activations = ["relu", "sigmoid"]
"#
        .to_string()
    }

    pub fn files(manifest: &str) -> BTreeMap<String, Bytes> {
        BTreeMap::from([
            (MANIFEST_FILE.to_string(), Bytes::from(manifest.to_string())),
            ("w.safetensors".to_string(), Bytes::from_static(b"weights")),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{files, manifest};
    use super::*;

    #[test]
    fn pickles_are_refused_with_advice() {
        let mut f = files(&manifest());
        f.insert("model.pkl".into(), Bytes::from_static(b"\x80\x04"));
        let err = ModelPackage::try_from_files("mem://m", f)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.pkl") && err.contains("refused") && err.contains("ONNX"),
            "{err}"
        );
    }

    #[test]
    fn verify_reports_both_hashes() {
        let p = ModelPackage::try_from_files("mem://m", files(&manifest())).expect("valid");
        p.verify("churn", &p.sha256.to_uppercase())
            .expect("case-insensitive match");
        let err = p.verify("churn", &"0".repeat(64)).unwrap_err().to_string();
        assert!(
            err.contains(&p.sha256) && err.contains(&"0".repeat(64)) && err.contains("churn"),
            "{err}"
        );
    }
}
