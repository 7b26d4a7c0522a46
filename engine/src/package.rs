//! `scorch model …`: model packages opened by URL or path, made from exported models, checked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use scorch_udfs::profile::{Distribution, PROFILE_FILE, Profile};
use scorch_udfs::{DeviceSpec, ModelCatalog, ModelLoader, ModelManifest, ModelPackage, ModelRef};
use serde::Serialize;
use url::Url;

use crate::error::{Error, Result};
use crate::registry::{Published, Registry};
use crate::store::StoreRegistry;
use crate::store::location::Location;

/// A folder given on the command line, as a URL or a path relative to the working directory.
pub fn location_arg(text: &str) -> Result<Location> {
    let cwd = std::env::current_dir().map_err(|source| Error::Io {
        path: ".".into(),
        source,
    })?;
    Location::parse_dir(text, &cwd).map_err(|message| Error::Location {
        location: text.to_string(),
        message,
    })
}

/// Reads a package from a URL or a path (relative to the working directory).
pub async fn open(package: &str) -> Result<(ModelLoader, ModelPackage)> {
    let location = location_arg(package)?;
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

/// The registry at `url` (a URL or a path relative to the working directory).
pub fn registry(url: &str) -> Result<Registry> {
    let location = location_arg(url)?;
    let store = StoreRegistry::new().store(&location)?;
    Ok(Registry::new(location, store))
}

/// Checks the package at `package` (hash, runtime, manifest) and publishes it to `registry`.
pub async fn publish(package: &str, registry: &str) -> Result<Published> {
    let p = verify(package, None).await?;
    self::registry(registry)?.publish(&p).await
}

/// Makes a package from an exported model. `out` defaults to `<artifact stem>-package` beside
/// the artifact, `name` to the package folder's name.
pub fn init(
    artifact: &Path,
    out: Option<PathBuf>,
    name: Option<String>,
    version: Option<semver::Version>,
) -> Result<(PathBuf, ModelPackage)> {
    // An MLflow folder may say its name and version (`metadata`); the flags win.
    let (hinted_name, hinted_version) =
        scorch_udfs::init::mlflow_hints(artifact).unwrap_or_default();
    let name = name.or(hinted_name);
    let version = version
        .or(hinted_version)
        .unwrap_or_else(|| semver::Version::new(1, 0, 0));
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
    /// The reference profile, when the package has one.
    pub profile: Option<&'a Profile>,
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
            profile: p.profile.as_ref(),
        }
    }
}

/// What `scorch model profile` wrote.
#[derive(Debug, Serialize)]
pub struct ProfileReport {
    /// The profile file.
    pub file: String,
    /// Rows profiled.
    pub rows: u64,
    /// Inputs profiled.
    pub features: usize,
    /// Outputs profiled.
    pub outputs: usize,
    /// The package's SHA-256 with the profile (what a job pins now).
    pub sha256: String,
}

/// One column's values while profiling.
enum Values {
    Numeric(Vec<f64>),
    Categorical(Vec<Option<String>>),
}

impl Values {
    fn for_type(numeric: bool) -> Self {
        if numeric {
            Values::Numeric(Vec::new())
        } else {
            Values::Categorical(Vec::new())
        }
    }

    /// Appends `array`'s values; `scored_only`: skip NULLs (an output's unscored rows).
    fn extend(&mut self, array: &arrow::array::ArrayRef, scored_only: bool) -> Result<()> {
        use arrow::array::{Array, AsArray};
        match self {
            Values::Numeric(values) => {
                let cast = arrow::compute::cast(array, &arrow::datatypes::DataType::Float64)
                    .map_err(|e| Error::Execution(e.into()))?;
                let cast = cast.as_primitive::<arrow::datatypes::Float64Type>();
                for i in 0..cast.len() {
                    match (cast.is_valid(i), scored_only) {
                        (true, _) => values.push(cast.value(i)),
                        (false, false) => values.push(f64::NAN),
                        (false, true) => {}
                    }
                }
            }
            Values::Categorical(values) => {
                let cast = arrow::compute::cast(array, &arrow::datatypes::DataType::Utf8)
                    .map_err(|e| Error::Execution(e.into()))?;
                let cast = cast.as_string::<i32>();
                for i in 0..cast.len() {
                    if cast.is_valid(i) {
                        values.push(Some(cast.value(i).to_string()));
                    } else if !scored_only {
                        values.push(None);
                    }
                }
            }
        }
        Ok(())
    }

    fn distribution(self, bins: usize, with_quantiles: bool) -> Distribution {
        match self {
            Values::Numeric(v) => Distribution::numeric(v, bins, with_quantiles),
            Values::Categorical(v) => Distribution::categorical(&v, CATEGORIES_KEPT),
        }
    }
}

/// Categories a profile keeps per string or boolean column (the rest are "other").
const CATEGORIES_KEPT: usize = 50;

/// Profiles a package's model on `data` (a Parquet folder or file, optionally filtered by the SQL
/// condition `filter`): per input the distribution of its values, per scalar output the
/// distribution of the model's predictions, in `bins` quantile bins; writes `profile.json`
/// into the (local) package folder.
pub async fn profile(
    package: &str,
    data: &str,
    filter: Option<&str>,
    bins: usize,
) -> Result<ProfileReport> {
    use futures::TryStreamExt;
    use scorch_udfs::package::{FeatureType, OutputType};

    let (loader, p) = open(package).await?;
    let folder = Url::parse(&p.uri)
        .ok()
        .filter(|u| u.scheme() == "file")
        .and_then(|u| u.to_file_path().ok())
        .ok_or_else(|| Error::Location {
            location: package.to_string(),
            message: "`model profile` writes profile.json into the package folder, which must be \
                      on the local disk; copy the package, profile it, then upload it"
                .into(),
        })?;
    let name = p.manifest.name.clone();
    let mut model = ModelRef::from_package(&name, &p);
    model.profile = None;
    let mut catalog = ModelCatalog::new();
    catalog.insert(model.clone());
    loader.load_package(&name, &p).await?;
    let ctx = crate::plan::session::local_context(
        &crate::plan::session::SessionSettings::default(),
        catalog,
        loader,
    );
    let location = location_arg(data)?;
    let source = crate::job::Source {
        name: "data".into(),
        location,
        single_file: data.trim().ends_with(".parquet"),
        format: crate::job::SourceFormat::Parquet,
        partition_columns: None,
    };
    let stores = StoreRegistry::new();
    crate::plan::sources::register_source(&ctx, &stores, &source).await?;

    let columns: Vec<String> = match ctx.table("data").await {
        Ok(table) => table
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        Err(e) => return Err(Error::Execution(e)),
    };
    let missing: Vec<&str> = model
        .inputs
        .iter()
        .map(|i| i.name.as_str())
        .filter(|n| !columns.iter().any(|c| c == n))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Source {
            name: "data".into(),
            url: source.scan_url(),
            message: format!(
                "has no column {} (inputs of model `{name}`, profiled by name); it has: {}",
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                columns.join(", ")
            ),
        });
    }
    let inputs: Vec<String> = model
        .inputs
        .iter()
        .map(|i| format!("\"{}\"", i.name.replace('"', "\"\"")))
        .collect();
    let sql = format!(
        "SELECT {list}, predict('{name}', {list}) AS __scorch_prediction FROM data{filter}",
        list = inputs.join(", "),
        filter = filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
    );
    let origin = format!("of `model profile --where {}`", filter.unwrap_or(""));
    let frame = ctx.sql(&sql).await.map_err(|source| Error::Sql {
        origin: origin.clone(),
        source,
    })?;
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(|source| Error::Sql { origin, source })?;

    let mut features: Vec<Values> = model
        .inputs
        .iter()
        .map(|i| Values::for_type(!matches!(i.dtype, FeatureType::String | FeatureType::Bool)))
        .collect();
    let mut outputs: Vec<Option<Values>> = model
        .outputs
        .iter()
        .map(|o| match (o.dtype, o.size) {
            (_, Some(_)) => None, // vectors (embeddings) are not profiled
            (OutputType::Float32, None) => Some(Values::for_type(true)),
            (OutputType::Int64 | OutputType::String, None) => Some(Values::for_type(false)),
        })
        .collect();
    let mut rows = 0u64;
    while let Some(batch) = stream.try_next().await.map_err(Error::Execution)? {
        rows += batch.num_rows() as u64;
        for (i, values) in features.iter_mut().enumerate() {
            values.extend(batch.column(i), false)?;
        }
        let prediction = batch.column(model.inputs.len());
        let predicted: Vec<arrow::array::ArrayRef> = match prediction
            .as_any()
            .downcast_ref::<arrow::array::StructArray>(
        ) {
            Some(s) => s.columns().to_vec(),
            None => vec![Arc::clone(prediction)],
        };
        for (values, column) in outputs.iter_mut().zip(&predicted) {
            if let Some(values) = values {
                values.extend(column, true)?;
            }
        }
    }
    if rows == 0 {
        return Err(Error::Source {
            name: "data".into(),
            url: source.scan_url(),
            message: "no rows to profile (check --where)".into(),
        });
    }
    let profile = Profile {
        version: 1,
        rows,
        source: match filter {
            Some(f) => format!("{} WHERE {f}", source.scan_url()),
            None => source.scan_url(),
        },
        created_at: chrono::Utc::now().to_rfc3339(),
        features: model
            .inputs
            .iter()
            .zip(features)
            .map(|(spec, values)| (spec.name.clone(), values.distribution(bins, false)))
            .collect(),
        outputs: model
            .outputs
            .iter()
            .zip(outputs)
            .filter_map(|(spec, values)| {
                Some((spec.name.clone(), values?.distribution(bins, true)))
            })
            .collect(),
    };
    let file = folder.join(PROFILE_FILE);
    let mut text = serde_json::to_string_pretty(&profile).map_err(|e| Error::Io {
        path: file.clone(),
        source: std::io::Error::other(e),
    })?;
    text.push('\n');
    std::fs::write(&file, text).map_err(|source| Error::Io {
        path: file.clone(),
        source,
    })?;
    let (_, written) = open(package).await?;
    Ok(ProfileReport {
        file: file.display().to_string(),
        rows,
        features: profile.features.len(),
        outputs: profile.outputs.len(),
        sha256: written.sha256,
    })
}
