//! Writing a package manifest from an exported model: what `scorch model init` does.
//!
//! The inputs and outputs are read from the artifact itself: an ONNX graph's signature, the
//! feature names and objective of an XGBoost or LightGBM model, the configuration files of a
//! sentence-transformers folder. Formats that execute code on load are refused with advice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_onnx::onnx::{self, ModelProto};
use prost::Message;

use crate::error::{Error, Result};
use crate::package::{
    ArtifactSpec, EmbedderSpec, FeatureType, InputSpec, MANIFEST_FILE, ModelFormat, ModelManifest,
    ModelPackage, OutputSpec, OutputType, Pooling,
};

/// A manifest inferred from an artifact, and the files the package needs (name in the package
/// to source path).
#[derive(Debug)]
pub struct Inferred {
    /// The manifest.
    pub manifest: ModelManifest,
    /// Files to copy into the package.
    pub files: BTreeMap<String, PathBuf>,
}

impl Inferred {
    /// Writes the package into `out` (created; it must not already hold a package): copies the
    /// artifact files, writes `model.toml`, then reads the folder back as a package and loads
    /// its runtime on the CPU, so that what was written is known to score.
    pub fn write(&self, out: &Path) -> Result<ModelPackage> {
        let manifest_path = out.join(MANIFEST_FILE);
        if manifest_path.exists() {
            return Err(invalid(
                out,
                format!(
                    "{} already holds a package; choose another --out, or remove it first",
                    out.display()
                ),
            ));
        }
        std::fs::create_dir_all(out).map_err(io(out))?;
        for (relative, source) in &self.files {
            let target = out.join(relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::copy(source, &target).map_err(io(source))?;
        }
        std::fs::write(&manifest_path, self.manifest.to_toml()).map_err(io(&manifest_path))?;
        let files = crate::package::read_local_dir(out)?;
        let package = ModelPackage::try_from_files(&out.display().to_string(), files)?;
        crate::runtime::try_load(&self.manifest.name, &package, &candle_core::Device::Cpu)?;
        Ok(package)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidManifest {
        uri: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads an artifact (a file, an MLflow model folder, or a sentence-transformers folder) and
/// infers its manifest.
pub fn infer(path: &Path, name: &str, version: semver::Version) -> Result<Inferred> {
    if path.is_dir() {
        if path.join(MLMODEL_FILE).is_file() {
            return infer_mlflow(path, name, version);
        }
        return infer_embedder(path, name, version);
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if matches!(
        ext.as_str(),
        "pkl" | "pickle" | "joblib" | "dill" | "pt" | "pth" | "ckpt"
    ) {
        // Reuse the package check's message.
        let files = BTreeMap::from([(file_name.clone(), bytes::Bytes::new())]);
        return Err(
            ModelPackage::try_from_files(&path.display().to_string(), files)
                .expect_err("unsafe extensions are always refused"),
        );
    }
    let bytes = std::fs::read(path).map_err(io(path))?;
    let mut manifest = match ext.as_str() {
        "onnx" => infer_onnx(path, &bytes, name, version)?,
        "json" => infer_xgboost(path, &bytes, name, version)?,
        "txt" => infer_lightgbm(path, &bytes, name, version)?,
        "safetensors" => {
            return Err(invalid(
                path,
                "a bare safetensors file does not say its architecture; write the [mlp] section of model.toml by hand",
            ));
        }
        _ => {
            return Err(invalid(
                path,
                "expected an .onnx, XGBoost .json or LightGBM .txt model, or a sentence-transformers folder",
            ));
        }
    };
    let spec = Some(ArtifactSpec {
        file: file_name.clone(),
    });
    match manifest.format {
        ModelFormat::Onnx => manifest.onnx = spec,
        ModelFormat::Xgboost => manifest.xgboost = spec,
        ModelFormat::Lightgbm => manifest.lightgbm = spec,
        _ => {}
    }
    Ok(Inferred {
        manifest,
        files: BTreeMap::from([(file_name, path.to_path_buf())]),
    })
}

fn tree_outputs(classes: usize, classifier: bool) -> Vec<OutputSpec> {
    let out = |name: &str, source: &str, dtype: OutputType, size: Option<usize>| OutputSpec {
        name: name.to_string(),
        dtype,
        size,
        source: Some(source.to_string()),
        index: None,
    };
    match (classifier, classes) {
        (true, k) if k > 2 => vec![
            out("probabilities", "prediction", OutputType::Float32, Some(k)),
            out("margin", "margin", OutputType::Float32, Some(k)),
            out("label", "label", OutputType::Int64, None),
        ],
        (true, _) => vec![
            out("probability", "prediction", OutputType::Float32, None),
            out("margin", "margin", OutputType::Float32, None),
            out("label", "label", OutputType::Int64, None),
        ],
        (false, _) => vec![
            out("prediction", "prediction", OutputType::Float32, None),
            out("margin", "margin", OutputType::Float32, None),
        ],
    }
}

fn tree_inputs(names: &[String], count: usize) -> Vec<InputSpec> {
    (0..count)
        .map(|i| InputSpec {
            dtype: FeatureType::Float64,
            ..InputSpec::float32(names.get(i).map(String::as_str).unwrap_or(&format!("f{i}")))
        })
        .collect()
}

fn infer_xgboost(
    path: &Path,
    bytes: &[u8],
    name: &str,
    version: semver::Version,
) -> Result<ModelManifest> {
    let json: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(path, format!("not an XGBoost JSON model: {e}")))?;
    let learner = &json["learner"];
    let count: usize = learner["learner_model_param"]["num_feature"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            invalid(
                path,
                "not an XGBoost JSON model (no learner.learner_model_param.num_feature)",
            )
        })?;
    let names: Vec<String> = learner["feature_names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let objective = learner["objective"]["name"].as_str().unwrap_or("");
    let classes: usize = learner["learner_model_param"]["num_class"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let classifier = objective.starts_with("binary:") || objective.starts_with("multi:");
    let mut m = ModelManifest::new(name, version, ModelFormat::Xgboost);
    m.description = Some(format!("XGBoost model, objective {objective}"));
    m.inputs = tree_inputs(&names, count);
    m.outputs = tree_outputs(classes.max(2), classifier);
    Ok(m)
}

fn infer_lightgbm(
    path: &Path,
    bytes: &[u8],
    name: &str,
    version: semver::Version,
) -> Result<ModelManifest> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| invalid(path, "not a LightGBM text model"))?;
    let (ensemble, names) =
        crate::runtime::trees_from_lightgbm(text).map_err(|r| invalid(path, r))?;
    let objective = text
        .lines()
        .find_map(|l| l.strip_prefix("objective="))
        .unwrap_or("regression")
        .to_string();
    let classifier = objective.starts_with("binary") || objective.starts_with("multiclass");
    let mut m = ModelManifest::new(name, version, ModelFormat::Lightgbm);
    m.description = Some(format!("LightGBM model, objective {objective}"));
    m.inputs = tree_inputs(&names, ensemble.features);
    m.outputs = tree_outputs(ensemble.outputs.max(2), classifier);
    Ok(m)
}

/// A tensor value's element type and static dimensions (`None` where symbolic).
pub(crate) fn dims(info: &onnx::ValueInfoProto) -> (i32, Vec<Option<i64>>) {
    match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(onnx::type_proto::Value::TensorType(t)) => {
            let dims = t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(onnx::tensor_shape_proto::dimension::Value::DimValue(v)) => {
                                Some(v)
                            }
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            (t.elem_type, dims)
        }
        _ => (0, Vec::new()),
    }
}

fn infer_onnx(
    path: &Path,
    bytes: &[u8],
    name: &str,
    version: semver::Version,
) -> Result<ModelManifest> {
    let model =
        ModelProto::decode(bytes).map_err(|e| invalid(path, format!("not an ONNX model: {e}")))?;
    let graph = model
        .graph
        .ok_or_else(|| invalid(path, "the ONNX model has no graph"))?;
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let string_type = onnx::tensor_proto::DataType::String as i32;
    let mut m = ModelManifest::new(name, version, ModelFormat::Onnx);
    m.description = Some(format!(
        "ONNX model from {}",
        if model.producer_name.is_empty() {
            "an unknown exporter"
        } else {
            &model.producer_name
        }
    ));
    for input in graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
    {
        let (elem, shape) = dims(input);
        let width = shape.last().copied().flatten().unwrap_or(1).max(1) as usize;
        let dtype = if elem == string_type {
            FeatureType::String
        } else {
            FeatureType::Float32
        };
        for i in 0..width {
            let column = if width == 1 {
                input.name.clone()
            } else {
                format!("{}_{i}", input.name)
            };
            m.inputs.push(InputSpec {
                dtype,
                onnx_input: Some(input.name.clone()),
                ..InputSpec::float32(&column)
            });
        }
    }
    for output in &graph.output {
        let (elem, shape) = dims(output);
        let width = if shape.len() >= 2 {
            shape.last().copied().flatten()
        } else {
            Some(1)
        };
        let dtype = match onnx::tensor_proto::DataType::try_from(elem) {
            Ok(onnx::tensor_proto::DataType::Int64 | onnx::tensor_proto::DataType::Int32) => {
                OutputType::Int64
            }
            Ok(onnx::tensor_proto::DataType::String) => OutputType::String,
            _ => OutputType::Float32,
        };
        let size = match (dtype, width) {
            (OutputType::Float32, Some(w)) if w > 1 => Some(w as usize),
            (OutputType::Float32, None) => {
                return Err(invalid(
                    path,
                    format!(
                        "output `{}` has an unknown width; declare `size` or `index` in model.toml by hand",
                        output.name
                    ),
                ));
            }
            _ => None,
        };
        m.outputs.push(OutputSpec {
            name: output.name.clone(),
            dtype,
            size,
            source: Some(output.name.clone()),
            index: None,
        });
    }
    Ok(m)
}

fn infer_embedder(dir: &Path, name: &str, version: semver::Version) -> Result<Inferred> {
    let read_json = |relative: &str| -> Option<serde_json::Value> {
        std::fs::read(dir.join(relative))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    };
    let config = read_json("config.json")
        .ok_or_else(|| invalid(dir, "no config.json: not a sentence-transformers folder"))?;
    let hidden = config["hidden_size"]
        .as_u64()
        .ok_or_else(|| invalid(dir, "config.json has no hidden_size"))? as usize;
    for needed in ["model.safetensors", "tokenizer.json"] {
        if !dir.join(needed).is_file() {
            return Err(invalid(
                dir,
                format!("no {needed}: export the encoder with safetensors and a fast tokenizer"),
            ));
        }
    }
    let pooling_config = read_json("1_Pooling/config.json");
    let pooling = match pooling_config {
        Some(p) if p["pooling_mode_cls_token"].as_bool() == Some(true) => Pooling::Cls,
        Some(p) if p["pooling_mode_max_tokens"].as_bool() == Some(true) => Pooling::Max,
        _ => Pooling::Mean,
    };
    let normalize = read_json("modules.json")
        .and_then(|m| m.as_array().cloned())
        .is_some_and(|modules| {
            modules
                .iter()
                .any(|m| m["type"].as_str().is_some_and(|t| t.ends_with("Normalize")))
        });
    let max_length = read_json("sentence_bert_config.json")
        .and_then(|c| c["max_seq_length"].as_u64())
        .unwrap_or(512) as usize;
    let mut m = ModelManifest::new(name, version, ModelFormat::Embedder);
    m.description = Some(format!(
        "sentence encoder, {hidden} dimensions, {pooling:?} pooling"
    ));
    m.inputs = vec![InputSpec {
        dtype: FeatureType::String,
        ..InputSpec::float32("text")
    }];
    m.outputs = vec![OutputSpec {
        size: Some(hidden),
        ..OutputSpec::float32("embedding")
    }];
    m.embedder = Some(EmbedderSpec {
        config: "config.json".into(),
        weights: "model.safetensors".into(),
        tokenizer: "tokenizer.json".into(),
        pooling,
        normalize,
        max_length,
    });
    let mut files = BTreeMap::new();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        if dir.join(f).is_file() {
            files.insert(f.to_string(), dir.join(f));
        }
    }
    Ok(Inferred { manifest: m, files })
}

/// The file that makes a folder an MLflow model.
pub const MLMODEL_FILE: &str = "MLmodel";

fn read_mlmodel(dir: &Path) -> Result<serde_yaml::Value> {
    let path = dir.join(MLMODEL_FILE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_yaml::from_str(&text).map_err(|e| invalid(&path, format!("not an MLmodel file: {e}")))
}

/// The name and version an MLflow model folder suggests: `metadata.name` / `metadata.version`
/// (what `log_model(..., metadata={...})` records), else nothing.
pub fn mlflow_hints(dir: &Path) -> Option<(Option<String>, Option<semver::Version>)> {
    if !dir.join(MLMODEL_FILE).is_file() {
        return None;
    }
    let doc = read_mlmodel(dir).ok()?;
    let metadata = &doc["metadata"];
    let name = metadata["name"].as_str().map(str::to_string);
    let version = metadata["version"]
        .as_str()
        .map(str::to_string)
        .or_else(|| metadata["version"].as_u64().map(|v| format!("{v}.0.0")))
        .and_then(|v| semver::Version::parse(&v).ok());
    Some((name, version))
}

/// How to export a model of an MLflow flavour that scorch cannot load safely.
fn export_advice(flavor: &str) -> &'static str {
    match flavor {
        "sklearn" => {
            "convert it to ONNX with skl2onnx and log that: `from skl2onnx import to_onnx; \
             onx = to_onnx(model, X[:1].astype(\"float32\")); mlflow.onnx.log_model(onx, \
             name=\"model\", signature=signature)`"
        }
        "pytorch" => {
            "export the module with `torch.onnx.export(model, example, \"model.onnx\")` and log \
             it with mlflow.onnx.log_model"
        }
        "tensorflow" | "keras" => {
            "convert it with tf2onnx (`python -m tf2onnx.convert --saved-model …`) and log it \
             with mlflow.onnx.log_model"
        }
        _ => {
            "export it to ONNX, or log an XGBoost (model_format=\"json\") or LightGBM Booster \
             model"
        }
    }
}

/// An MLflow model folder whose flavour is ONNX, XGBoost (JSON) or LightGBM (a Booster's text
/// model): the artifact is read as any other, then the MLflow signature's input names and
/// types replace the inferred ones. Flavours that are pickles are refused with the export that
/// would work.
fn infer_mlflow(dir: &Path, name: &str, version: semver::Version) -> Result<Inferred> {
    let doc = read_mlmodel(dir)?;
    let flavors = doc["flavors"]
        .as_mapping()
        .ok_or_else(|| invalid(dir, "MLmodel has no flavors"))?;
    let flavor = |key: &str| flavors.get(serde_yaml::Value::from(key));
    let data = |f: &serde_yaml::Value, what: &str| -> Result<PathBuf> {
        let relative = f["data"]
            .as_str()
            .ok_or_else(|| invalid(dir, format!("the {what} flavour names no data file")))?;
        Ok(dir.join(relative))
    };
    let (kind, artifact) = if let Some(f) = flavor("onnx") {
        ("onnx", data(f, "onnx")?)
    } else if let Some(f) = flavor("xgboost") {
        let format = f["model_format"].as_str().unwrap_or("xgb");
        if format != "json" {
            return Err(invalid(
                dir,
                format!(
                    "MLflow saved this XGBoost model in its binary `{format}` format; log it as \
                     JSON: mlflow.xgboost.log_model(model, name=\"model\", model_format=\"json\")"
                ),
            ));
        }
        ("xgboost", data(f, "xgboost")?)
    } else if let Some(f) = flavor("lightgbm") {
        let path = data(f, "lightgbm")?;
        let pickled = f["model_class"]
            .as_str()
            .is_some_and(|c| !c.ends_with("Booster"))
            || path.extension().is_some_and(|e| e == "pkl");
        if pickled {
            return Err(invalid(
                dir,
                "MLflow pickled this LightGBM scikit-learn model; log its Booster, which it \
                 saves as LightGBM's text model: mlflow.lightgbm.log_model(model.booster_, \
                 name=\"model\")",
            ));
        }
        ("lightgbm", path)
    } else {
        let names: Vec<String> = flavors
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .filter(|k| k != "python_function")
            .collect();
        let named = names.first().map_or("python_function", String::as_str);
        return Err(invalid(
            dir,
            format!(
                "MLflow flavour `{named}` is a pickle (code runs when it loads), which scorch \
                 does not load; {}",
                export_advice(named)
            ),
        ));
    };
    let wanted = match kind {
        "onnx" => "onnx",
        "xgboost" => "json",
        _ => "txt",
    };
    let mut inferred = if artifact
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(wanted))
    {
        infer(&artifact, name, version)?
    } else {
        // Read under the extension `infer` knows, packaged as `model.<ext>`.
        let folder = std::env::temp_dir().join(format!("scorch-mlflow-{}", std::process::id()));
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let staged = folder.join(format!("model.{wanted}"));
        std::fs::copy(&artifact, &staged).map_err(io(&artifact))?;
        let result = infer(&staged, name, version);
        let _ = std::fs::remove_dir_all(&folder);
        let mut inferred = result?;
        inferred.files = BTreeMap::from([(format!("model.{wanted}"), artifact.clone())]);
        inferred
    };
    apply_signature(dir, &doc, &mut inferred.manifest)?;
    let run = doc["run_id"]
        .as_str()
        .map(|r| format!("run {r}, "))
        .unwrap_or_default();
    let mlflow = doc["mlflow_version"].as_str().unwrap_or("?");
    inferred.manifest.description = Some(format!(
        "MLflow {kind} model ({run}MLflow {mlflow}); {}",
        inferred.manifest.description.clone().unwrap_or_default()
    ));
    Ok(inferred)
}

/// Names the inferred inputs after a column-based MLflow signature, checking that its types
/// agree with the artifact's (numeric or text; a tensor signature says no more than the artifact
/// does, and is left alone). The numeric width stays the artifact's: it is what the model
/// computes in.
fn apply_signature(
    dir: &Path,
    doc: &serde_yaml::Value,
    manifest: &mut ModelManifest,
) -> Result<()> {
    let Some(inputs) = doc["signature"]["inputs"].as_str() else {
        return Ok(());
    };
    let columns: Vec<serde_json::Value> = serde_json::from_str(inputs)
        .map_err(|e| invalid(dir, format!("MLmodel signature inputs: {e}")))?;
    if columns.iter().any(|c| c["type"] == "tensor") {
        return Ok(());
    }
    if columns.len() != manifest.inputs.len() {
        return Err(invalid(
            dir,
            format!(
                "the MLflow signature has {} inputs, the model {}: log the model with the \
                 signature of the data it was trained on",
                columns.len(),
                manifest.inputs.len()
            ),
        ));
    }
    for (position, (column, input)) in columns.iter().zip(&mut manifest.inputs).enumerate() {
        if let Some(name) = column["name"].as_str() {
            input.name = name.to_string();
        } else {
            input.name = format!("input_{position}");
        }
        let dtype = match column["type"].as_str().unwrap_or_default() {
            "double" => FeatureType::Float64,
            "float" => FeatureType::Float32,
            "long" => FeatureType::Int64,
            "integer" => FeatureType::Int32,
            "boolean" => FeatureType::Bool,
            "string" => FeatureType::String,
            other => {
                return Err(invalid(
                    dir,
                    format!(
                        "MLflow signature input `{}` has type `{other}`, which scorch does not score",
                        input.name
                    ),
                ));
            }
        };
        // A numeric column may feed a numeric input whatever its width; text only text.
        let numeric = |t: FeatureType| !matches!(t, FeatureType::String);
        if numeric(dtype) != numeric(input.dtype) {
            return Err(invalid(
                dir,
                format!(
                    "MLflow signature input `{}` is {dtype}, the model's input {position} is {}",
                    input.name, input.dtype
                ),
            ));
        }
    }
    Ok(())
}
