//! The one error type of `scorch-udfs`.

use std::path::PathBuf;

/// Everything that can go wrong while finding, verifying, loading or running a model.
///
/// Variants carry the context a user needs to act (which model, which file, what was expected)
/// and keep the underlying error as their `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The package has no manifest where one was expected.
    #[error(
        "model package {uri}: no manifest `{manifest}` found (a package is a directory holding `model.toml` and its artifacts)"
    )]
    ManifestMissing {
        /// Package location.
        uri: String,
        /// The manifest's expected file name.
        manifest: String,
    },

    /// The manifest could not be parsed or breaks a rule.
    #[error("model package {uri}: invalid manifest: {reason}")]
    InvalidManifest {
        /// Package location.
        uri: String,
        /// What is wrong, naming the key.
        reason: String,
    },

    /// The package's content hash differs from the pinned one.
    #[error(
        "model `{name}` at {uri}: SHA-256 mismatch: expected {expected}, computed {actual}; \
         the package changed since it was pinned (re-pin it with `scorch model hash`, or restore the package)"
    )]
    HashMismatch {
        /// Model name as the job knows it.
        name: String,
        /// Package location.
        uri: String,
        /// The pinned hash.
        expected: String,
        /// The hash of what was found.
        actual: String,
    },

    /// An artifact named by the manifest is not in the package.
    #[error("model package {uri}: artifact `{artifact}` named by the manifest is missing")]
    ArtifactMissing {
        /// Package location.
        uri: String,
        /// Artifact file name.
        artifact: String,
    },

    /// A format that runs code when loaded.
    #[error(
        "model package {uri}: `{file}` is a {kind} file; formats that execute code on load are refused. \
         Export the model instead: safetensors or ONNX for neural networks, `save_model(\"model.json\")` \
         for XGBoost, `save_model(\"model.txt\")` for LightGBM, skl2onnx for scikit-learn"
    )]
    UnsafeFormat {
        /// Package location.
        uri: String,
        /// The offending file.
        file: String,
        /// What kind of file it is.
        kind: &'static str,
    },

    /// The weights do not fit the architecture the manifest declares.
    #[error("model `{name}`: {reason}")]
    InvalidWeights {
        /// Model name.
        name: String,
        /// What does not fit.
        reason: String,
    },

    /// The manifest's declared inputs do not match what the artifact reads.
    #[error(
        "model `{name}` (package {uri}): the manifest declares {declared} but the artifact `{artifact}` {found}; \
         make model.toml's [[inputs]] match the model (or regenerate it with `scorch model init`)"
    )]
    ManifestMismatch {
        /// Model name.
        name: String,
        /// Package location.
        uri: String,
        /// The artifact file.
        artifact: String,
        /// What the manifest declares (`2 inputs (a, b)`).
        declared: String,
        /// What the artifact reads (`reads 3 features (a, b, c)`).
        found: String,
    },

    /// A SQL call names a model that the session does not know.
    #[error("unknown model `{name}`; models declared by this job: {known}")]
    UnknownModel {
        /// The name used in SQL.
        name: String,
        /// Comma-separated list of the declared names.
        known: String,
    },

    /// A scoring call whose arguments do not fit the model's declared inputs.
    #[error("{function}('{model}', ...): {reason}")]
    BadArguments {
        /// The SQL function.
        function: &'static str,
        /// The model name.
        model: String,
        /// Which argument and what was expected.
        reason: String,
    },

    /// A process (a cluster executor) could not fetch, verify or load a model it was asked to run.
    #[error("model `{name}` (package {uri}) is not available on this process")]
    ModelUnavailable {
        /// Model name.
        name: String,
        /// Package location, naming its store.
        uri: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },

    /// The requested compute device is not available in this build or on this machine.
    #[error("device `{requested}` is not available: {reason}")]
    DeviceUnavailable {
        /// What was asked for.
        requested: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// Reading the package from its store failed.
    #[error("model package {uri}: cannot read `{path}`")]
    Store {
        /// Package location.
        uri: String,
        /// Object path.
        path: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },

    /// No object store is registered for the package's URL.
    #[error("model package {uri}: no object store for this URL: {reason}")]
    NoStore {
        /// Package location.
        uri: String,
        /// Why.
        reason: String,
    },

    /// Local file I/O.
    #[error("{path}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A tensor operation failed.
    #[error("model `{name}`: tensor computation failed")]
    Candle {
        /// Model name.
        name: String,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },

    /// Arrow failed while building inputs or outputs.
    #[error("arrow error")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn candle(name: &str) -> impl FnOnce(candle_core::Error) -> Error + '_ {
        move |source| Error::Candle {
            name: name.to_string(),
            source,
        }
    }
}

impl From<Error> for datafusion::error::DataFusionError {
    fn from(e: Error) -> Self {
        datafusion::error::DataFusionError::External(Box::new(e))
    }
}
