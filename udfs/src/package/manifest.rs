//! The manifest of a model package (`model.toml`): name, version, format, declared inputs and
//! outputs with their types and contracts, and the format's section (which artifact, which
//! architecture). Parsing checks every rule and names the key that breaks one.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The model formats scorch can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ModelFormat {
    /// A multilayer perceptron stored as safetensors, run on candle.
    Mlp,
    /// An ONNX graph (PyTorch, Keras, scikit-learn exports), run on candle with the
    /// `ai.onnx.ml` operators implemented natively.
    Onnx,
    /// An XGBoost model saved as JSON, evaluated natively.
    Xgboost,
    /// A LightGBM model saved as text, evaluated natively.
    Lightgbm,
    /// A BERT-family sentence encoder (safetensors + tokenizer), run on candle.
    Embedder,
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelFormat::Mlp => "mlp",
            ModelFormat::Onnx => "onnx",
            ModelFormat::Xgboost => "xgboost",
            ModelFormat::Lightgbm => "lightgbm",
            ModelFormat::Embedder => "embedder",
        })
    }
}

/// The type a model declares for one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FeatureType {
    /// A 32-bit float; any numeric or boolean SQL value is accepted and converted.
    Float32,
    /// A 64-bit float; any numeric or boolean SQL value is accepted and converted.
    Float64,
    /// A 32-bit integer (integers and booleans accepted).
    Int32,
    /// A 64-bit integer (integers and booleans accepted).
    Int64,
    /// A boolean, scored as 0.0 or 1.0.
    Bool,
    /// Text (categorical codes for ONNX encoders, sentences for embedders).
    String,
}

impl fmt::Display for FeatureType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FeatureType::Float32 => "float32",
            FeatureType::Float64 => "float64",
            FeatureType::Int32 => "int32",
            FeatureType::Int64 => "int64",
            FeatureType::Bool => "bool",
            FeatureType::String => "string",
        })
    }
}

/// One declared model input: its name, type and optional valid range (the input contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Feature name; jobs are checked against it.
    pub name: String,
    /// Declared type.
    #[serde(rename = "type")]
    pub dtype: FeatureType,
    /// Smallest valid value; smaller values make the row unscorable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest valid value; larger values make the row unscorable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// ONNX only: the graph input this column feeds. Columns of one graph input are stacked in
    /// declaration order; defaults to the graph's first input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx_input: Option<String>,
}

impl InputSpec {
    /// A numeric input with no range contract.
    pub fn float32(name: &str) -> Self {
        Self {
            name: name.to_string(),
            dtype: FeatureType::Float32,
            min: None,
            max: None,
            onnx_input: None,
        }
    }
}

/// The SQL type of one output value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputType {
    /// FLOAT.
    Float32,
    /// BIGINT (class labels).
    Int64,
    /// VARCHAR (string class labels).
    String,
}

impl fmt::Display for OutputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputType::Float32 => "float32",
            OutputType::Int64 => "int64",
            OutputType::String => "string",
        })
    }
}

/// One declared model output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Output name: the struct field name when a model has several outputs.
    pub name: String,
    /// Value type.
    #[serde(rename = "type", default = "default_output_type")]
    pub dtype: OutputType,
    /// A vector of this many values (a fixed-size list), instead of one value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// Where the value comes from. Tree models: `prediction` (what the library's `predict`
    /// returns), `margin` (raw score) or `label`; ONNX: a graph output name; MLP and embedders:
    /// unused (outputs are taken in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Pick this column of a two-dimensional source (a class's probability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

impl OutputSpec {
    /// A scalar float output taken in order.
    pub fn float32(name: &str) -> Self {
        Self {
            name: name.to_string(),
            dtype: OutputType::Float32,
            size: None,
            source: None,
            index: None,
        }
    }

    /// Values per row: the vector size, or 1.
    pub fn width(&self) -> usize {
        self.size.unwrap_or(1)
    }
}

fn default_output_type() -> OutputType {
    OutputType::Float32
}

/// Activation functions an MLP layer can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Identity (regression outputs).
    Linear,
    /// max(0, x).
    Relu,
    /// Logistic sigmoid (binary probability outputs).
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Gaussian error linear unit (erf form).
    Gelu,
    /// Softmax over the layer's outputs (class probabilities); last layer only.
    Softmax,
}

/// The `[mlp]` section: architecture of a multilayer perceptron stored as safetensors.
///
/// Layer `i` reads tensors `layers.{i}.weight` (shape `[out, in]`, as PyTorch's `nn.Linear`
/// stores it) and `layers.{i}.bias` (shape `[out]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpSpec {
    /// The safetensors file inside the package.
    pub weights: String,
    /// Layer widths, input width first: `[12, 32, 16, 1]` is three linear layers.
    pub layers: Vec<usize>,
    /// One activation per linear layer.
    pub activations: Vec<Activation>,
}

/// The `[xgboost]`, `[lightgbm]` and `[onnx]` sections: the artifact file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSpec {
    /// The artifact inside the package.
    pub file: String,
}

/// Pooling of token embeddings into a sentence embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean of the token embeddings, ignoring padding.
    Mean,
    /// The first (`[CLS]`) token's embedding.
    Cls,
    /// Element-wise maximum over the tokens.
    Max,
}

/// The `[embedder]` section: a BERT-family encoder with its tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedderSpec {
    /// The model's `config.json` (Hugging Face BERT configuration).
    pub config: String,
    /// The weights (safetensors).
    pub weights: String,
    /// The tokenizer (`tokenizer.json`).
    pub tokenizer: String,
    /// How token embeddings become one vector.
    #[serde(default = "default_pooling")]
    pub pooling: Pooling,
    /// Scale each embedding to unit length (what sentence-transformers' `Normalize` does).
    #[serde(default)]
    pub normalize: bool,
    /// Tokens kept per text; longer texts are truncated.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
}

fn default_pooling() -> Pooling {
    Pooling::Mean
}

fn default_max_length() -> usize {
    512
}

/// The manifest of a model package (`model.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    /// Model name (informational; jobs may refer to it under another name).
    pub name: String,
    /// Semantic version of this model.
    pub version: semver::Version,
    /// How the artifacts are to be run.
    pub format: ModelFormat,
    /// Free text for the model card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Ordered inputs: SQL arguments after the model name map to these by position.
    pub inputs: Vec<InputSpec>,
    /// Ordered outputs.
    pub outputs: Vec<OutputSpec>,
    /// Architecture, for `format = "mlp"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp: Option<MlpSpec>,
    /// The ONNX file, for `format = "onnx"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<ArtifactSpec>,
    /// The XGBoost JSON file, for `format = "xgboost"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xgboost: Option<ArtifactSpec>,
    /// The LightGBM text file, for `format = "lightgbm"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lightgbm: Option<ArtifactSpec>,
    /// The encoder, for `format = "embedder"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedder: Option<EmbedderSpec>,
}

impl ModelManifest {
    /// A manifest with no inputs, outputs or format section yet.
    pub fn new(name: &str, version: semver::Version, format: ModelFormat) -> Self {
        Self {
            name: name.to_string(),
            version,
            format,
            description: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            mlp: None,
            onnx: None,
            xgboost: None,
            lightgbm: None,
            embedder: None,
        }
    }

    /// Parses and checks a manifest; `uri` names the package in errors.
    pub fn try_from_toml(text: &str, uri: &str) -> Result<Self> {
        let manifest: ModelManifest = toml::from_str(text).map_err(|e| Error::InvalidManifest {
            uri: uri.to_string(),
            reason: e.to_string(),
        })?;
        manifest.validate(uri)?;
        Ok(manifest)
    }

    /// Serialises the manifest as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .expect("a manifest always serialises: it has no maps with non-string keys")
    }

    fn validate(&self, uri: &str) -> Result<()> {
        let invalid = |reason: String| Error::InvalidManifest {
            uri: uri.to_string(),
            reason,
        };
        if self.inputs.is_empty() {
            return Err(invalid(
                "`inputs` is empty: a model needs at least one input".into(),
            ));
        }
        if self.outputs.is_empty() {
            return Err(invalid(
                "`outputs` is empty: a model needs at least one output".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for input in &self.inputs {
            if !seen.insert(input.name.as_str()) {
                return Err(invalid(format!("input `{}` is declared twice", input.name)));
            }
            if let (Some(min), Some(max)) = (input.min, input.max)
                && min > max
            {
                return Err(invalid(format!(
                    "input `{}`: min {min} > max {max}",
                    input.name
                )));
            }
        }
        let mut names = std::collections::HashSet::new();
        for output in &self.outputs {
            if !names.insert(output.name.as_str()) {
                return Err(invalid(format!(
                    "output `{}` is declared twice",
                    output.name
                )));
            }
            if output.size == Some(0) {
                return Err(invalid(format!(
                    "output `{}`: size must be at least 1",
                    output.name
                )));
            }
            if output.size.is_some() && output.dtype != OutputType::Float32 {
                return Err(invalid(format!(
                    "output `{}`: only float32 outputs can be vectors",
                    output.name
                )));
            }
        }
        let section = |present: bool, name: &str| {
            if present {
                Ok(())
            } else {
                Err(invalid(format!(
                    "format `{}` needs a `[{name}]` section",
                    self.format
                )))
            }
        };
        match self.format {
            ModelFormat::Mlp => {}
            ModelFormat::Onnx => section(self.onnx.is_some(), "onnx")?,
            ModelFormat::Xgboost => section(self.xgboost.is_some(), "xgboost")?,
            ModelFormat::Lightgbm => section(self.lightgbm.is_some(), "lightgbm")?,
            ModelFormat::Embedder => {
                section(self.embedder.is_some(), "embedder")?;
                if self.inputs.len() != 1 || self.inputs[0].dtype != FeatureType::String {
                    return Err(invalid(
                        "an embedder takes exactly one input, of type `string`".into(),
                    ));
                }
                if self.outputs.len() != 1 || self.outputs[0].size.is_none() {
                    return Err(invalid(
                        "an embedder has exactly one output, a float32 vector with `size`".into(),
                    ));
                }
            }
        }
        if matches!(self.format, ModelFormat::Xgboost | ModelFormat::Lightgbm) {
            for output in &self.outputs {
                match output.source.as_deref() {
                    Some("prediction" | "margin" | "label") => {}
                    other => {
                        return Err(invalid(format!(
                            "output `{}`: source {other:?} is not one of `prediction`, `margin`, `label`",
                            output.name
                        )));
                    }
                }
            }
        }
        if self.format == ModelFormat::Mlp {
            let mlp = self
                .mlp
                .as_ref()
                .ok_or_else(|| invalid("format `mlp` needs an `[mlp]` section".into()))?;
            if mlp.layers.len() < 2 {
                return Err(invalid(
                    "`mlp.layers` needs at least two widths (input and output)".into(),
                ));
            }
            if mlp.activations.len() != mlp.layers.len() - 1 {
                return Err(invalid(format!(
                    "`mlp.activations` has {} entries, expected {} (one per linear layer)",
                    mlp.activations.len(),
                    mlp.layers.len() - 1
                )));
            }
            if mlp.layers[0] != self.inputs.len() {
                return Err(invalid(format!(
                    "`mlp.layers[0]` is {} but {} inputs are declared",
                    mlp.layers[0],
                    self.inputs.len()
                )));
            }
            let last = mlp.layers[mlp.layers.len() - 1];
            let declared: usize = self.outputs.iter().map(OutputSpec::width).sum();
            if last != declared {
                return Err(invalid(format!(
                    "the last layer has {last} outputs but the declared outputs hold {declared} values"
                )));
            }
            if let Some(pos) = mlp.activations[..mlp.activations.len() - 1]
                .iter()
                .position(|a| *a == Activation::Softmax)
            {
                return Err(invalid(format!(
                    "`softmax` is only allowed on the last layer, found on layer {pos}"
                )));
            }
        }
        Ok(())
    }

    /// The artifact files the manifest names.
    pub fn artifacts(&self) -> Vec<&str> {
        let mut files: Vec<&str> = Vec::new();
        files.extend(self.mlp.iter().map(|m| m.weights.as_str()));
        files.extend(self.onnx.iter().map(|a| a.file.as_str()));
        files.extend(self.xgboost.iter().map(|a| a.file.as_str()));
        files.extend(self.lightgbm.iter().map(|a| a.file.as_str()));
        if let Some(e) = &self.embedder {
            files.extend([e.config.as_str(), e.weights.as_str(), e.tokenizer.as_str()]);
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use crate::package::ModelPackage;
    use crate::package::fixtures::{files, manifest};

    #[test]
    fn manifest_errors_name_the_key() {
        let bad = manifest().replace("layers = [2, 4, 1]", "layers = [3, 4, 1]");
        let err = ModelPackage::try_from_files("mem://m", files(&bad))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mlp.layers[0]") && err.contains("2 inputs"),
            "{err}"
        );

        let unknown = manifest().replace("format = \"mlp\"", "format = \"mlp\"\ncolour = 1");
        let err = ModelPackage::try_from_files("mem://m", files(&unknown))
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");

        let err =
            ModelPackage::try_from_files("mem://m", files(&manifest().replace("1.2.0", "1.2")))
                .unwrap_err()
                .to_string();
        assert!(err.contains("version"), "{err}");
    }
}
