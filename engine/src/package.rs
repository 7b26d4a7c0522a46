//! `scorch model …`: model packages opened by URL or path, made from exported models, checked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use scorch_udfs::{DeviceSpec, ModelLoader, ModelManifest, ModelPackage};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::StoreRegistry;
use crate::store::location::Location;

/// Reads a package from a URL or a path (relative to the working directory).
pub async fn open(package: &str) -> Result<(ModelLoader, ModelPackage)> {
    let cwd = std::env::current_dir().map_err(|source| Error::Io {
        path: ".".into(),
        source,
    })?;
    let location = Location::parse_dir(package, &cwd).map_err(|message| Error::Location {
        location: package.to_string(),
        message,
    })?;
    let stores = Arc::new(StoreRegistry::new());
    let loader = ModelLoader::try_new(stores, DeviceSpec::Cpu)?;
    let p = loader.fetch(location.url().as_str()).await?;
    Ok((loader, p))
}

/// Checks a package: its hash against `sha256` when given, and that its runtime loads and agrees
/// with the manifest.
pub async fn verify(package: &str, sha256: Option<&str>) -> Result<ModelPackage> {
    let (loader, p) = open(package).await?;
    if let Some(expected) = sha256 {
        p.verify(&p.manifest.name, expected)?;
    }
    loader.load_package(&p.manifest.name, &p).await?;
    Ok(p)
}

/// Makes a package from an exported model. `out` defaults to `<artifact stem>-package` beside
/// the artifact, `name` to the package folder's name.
pub fn init(
    artifact: &Path,
    out: Option<PathBuf>,
    name: Option<String>,
    version: semver::Version,
) -> Result<(PathBuf, ModelPackage)> {
    let out = out.unwrap_or_else(|| {
        let stem = artifact
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "model".into());
        artifact.with_file_name(format!("{stem}-package"))
    });
    let name = name.unwrap_or_else(|| {
        out.file_name()
            .map(|n| {
                n.to_string_lossy()
                    .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_")
            })
            .unwrap_or_else(|| "model".into())
    });
    let inferred = scorch_udfs::init::infer(artifact, &name, version)?;
    let package = inferred.write(&out)?;
    Ok((out.join(scorch_udfs::package::MANIFEST_FILE), package))
}

/// A package's model card, as `scorch model inspect --json` prints it.
#[derive(Debug, Serialize)]
pub struct Card<'a> {
    /// Where the package was read from.
    pub uri: &'a str,
    /// Its SHA-256.
    pub sha256: &'a str,
    /// Bytes over all files.
    pub size_bytes: u64,
    /// Files and their sizes.
    pub files: Vec<(&'a String, usize)>,
    /// The manifest.
    pub manifest: &'a ModelManifest,
}

impl<'a> Card<'a> {
    /// The card of `p`.
    pub fn of(p: &'a ModelPackage) -> Self {
        Self {
            uri: &p.uri,
            sha256: &p.sha256,
            size_bytes: p.size_bytes(),
            files: p.files.iter().map(|(k, v)| (k, v.len())).collect(),
            manifest: &p.manifest,
        }
    }
}
