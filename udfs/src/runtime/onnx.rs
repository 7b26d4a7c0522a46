//! ONNX graphs: neural networks exported by PyTorch or Keras, and scikit-learn pipelines
//! exported by skl2onnx.
//!
//! Standard operators run on candle through candle-onnx, one node at a time; the `ai.onnx.ml`
//! operators that scikit-learn pipelines emit (scalers, imputers, encoders, linear models, tree
//! ensembles), which candle-onnx does not implement, run natively ([`super::onnx_ml`]). Values
//! between nodes are candle tensors, or string tensors for the ML operators that take text.

use std::collections::{BTreeMap, HashMap, HashSet};

use candle_core::{DType, Device, Tensor};
use candle_onnx::onnx::{self, GraphProto, ModelProto, NodeProto, ValueInfoProto};
use prost::Message;

use crate::error::{Error, Result};
use crate::features::{FeatureMatrix, MissingPolicy, Precision, Slot};
use crate::package::{FeatureType, ModelPackage, OutputSpec, OutputType};
use crate::runtime::onnx_ml::MlOp;
use crate::runtime::{Model, OutputColumn};

/// A value flowing between nodes.
#[derive(Debug, Clone)]
pub enum Value {
    /// A numeric tensor.
    Tensor(Tensor),
    /// A string tensor, row-major, with its shape.
    Strings(Vec<String>, Vec<usize>),
}

impl Value {
    /// The value on `device` (a no-op for strings, and for a tensor already there).
    fn moved_to(self, device: &Device) -> std::result::Result<Self, String> {
        match self {
            Value::Tensor(t) => t
                .to_device(device)
                .map(Value::Tensor)
                .map_err(|e| e.to_string()),
            strings => Ok(strings),
        }
    }

    /// The tensor, or an error naming the value.
    pub fn tensor(&self, what: &str) -> std::result::Result<&Tensor, String> {
        match self {
            Value::Tensor(t) => Ok(t),
            Value::Strings(..) => Err(format!(
                "{what} is a string tensor where numbers are expected"
            )),
        }
    }
}

/// How one node is evaluated.
#[derive(Debug)]
enum Step {
    /// A standard operator, evaluated by candle-onnx on a one-node graph.
    Standard(Box<ModelProto>),
    /// An `ai.onnx.ml` operator, evaluated natively.
    Ml(MlOp),
}

#[derive(Debug)]
struct CompiledNode {
    inputs: Vec<String>,
    outputs: Vec<String>,
    step: Step,
    op: String,
}

/// One graph input and the declared model inputs that fill its columns.
#[derive(Debug)]
struct InputBinding {
    name: String,
    dtype: DType,
    strings: bool,
    slots: Vec<Slot>,
}

/// An ONNX model ready to score.
#[derive(Debug)]
pub struct OnnxModel {
    name: String,
    initializers: HashMap<String, Value>,
    nodes: Vec<CompiledNode>,
    inputs: Vec<InputBinding>,
    outputs: Vec<OutputSpec>,
    device: Device,
    missing: MissingPolicy,
}

fn elem_type(info: &ValueInfoProto) -> Option<i32> {
    match info.r#type.as_ref()?.value.as_ref()? {
        onnx::type_proto::Value::TensorType(t) => Some(t.elem_type),
        _ => None,
    }
}

/// Checks the declared inputs against the graph's: every graph input is fed, and a graph input
/// of static shape `[N, k]` gets exactly `k` declared columns.
fn check_input_widths(
    name: &str,
    package: &ModelPackage,
    artifact: &str,
    graph_inputs: &[&ValueInfoProto],
    bindings: &[InputBinding],
) -> Result<()> {
    let mismatch = |declared: String, found: String| Error::ManifestMismatch {
        name: name.to_string(),
        uri: package.uri.clone(),
        artifact: artifact.to_string(),
        declared,
        found,
    };
    for info in graph_inputs {
        let Some(binding) = bindings.iter().find(|b| b.name == info.name) else {
            return Err(mismatch(
                format!("no input for graph input `{}`", info.name),
                format!(
                    "needs it (graph inputs: {}); declare its columns with `onnx_input = \"{}\"`",
                    graph_inputs
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    info.name
                ),
            ));
        };
        let (_, shape) = crate::init::dims(info);
        if let [_, Some(width)] = shape.as_slice()
            && usize::try_from(*width).ok() != Some(binding.slots.len())
        {
            return Err(mismatch(
                format!(
                    "{} input{} for graph input `{}`",
                    binding.slots.len(),
                    if binding.slots.len() == 1 { "" } else { "s" },
                    info.name
                ),
                format!("declares it {width} wide"),
            ));
        }
    }
    Ok(())
}

impl OnnxModel {
    /// Parses the package's ONNX file, binds the declared inputs and outputs to the graph's, and
    /// compiles every node.
    pub fn try_new(name: &str, package: &ModelPackage, device: &Device) -> Result<Self> {
        let bad = |reason: String| Error::InvalidWeights {
            name: name.to_string(),
            reason,
        };
        let spec = package
            .manifest
            .onnx
            .as_ref()
            .ok_or_else(|| bad("the manifest has no [onnx] section".into()))?;
        let bytes = package.artifact(&spec.file)?;
        let model = ModelProto::decode(bytes.as_ref())
            .map_err(|e| bad(format!("`{}` is not an ONNX model: {e}", spec.file)))?;
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| bad("the ONNX model has no graph".into()))?;

        // Initializers, parsed once (through candle-onnx: a graph of Identity nodes).
        let initializer_names: HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        // candle-onnx makes them on the CPU; a graph on a GPU needs them beside its inputs.
        let initializers = parse_initializers(&model, graph)
            .and_then(|values| {
                values
                    .into_iter()
                    .map(|(name, v)| Ok((name, v.moved_to(device)?)))
                    .collect::<std::result::Result<HashMap<_, _>, String>>()
            })
            .map_err(|e| bad(format!("initializers: {e}")))?;

        // Graph inputs (those that are not initializers), bound to declared inputs.
        let graph_inputs: Vec<&ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !initializer_names.contains(i.name.as_str()))
            .collect();
        let first = graph_inputs
            .first()
            .ok_or_else(|| bad("the graph has no inputs".into()))?;
        let mut inputs: Vec<InputBinding> = Vec::new();
        let mut numeric = 0usize;
        let mut text = 0usize;
        for declared in &package.manifest.inputs {
            let target = declared
                .onnx_input
                .as_deref()
                .unwrap_or(first.name.as_str());
            let info = graph_inputs
                .iter()
                .find(|i| i.name == target)
                .ok_or_else(|| {
                    bad(format!(
                        "input `{}` feeds graph input `{target}`, which the graph does not have (it has: {})",
                        declared.name,
                        graph_inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
                    ))
                })?;
            let slot = if declared.dtype == FeatureType::String {
                text += 1;
                Slot::Text(text - 1)
            } else {
                numeric += 1;
                Slot::Numeric(numeric - 1)
            };
            if let Some(b) = inputs.iter_mut().find(|b| b.name == target) {
                b.slots.push(slot);
                continue;
            }
            let elem = elem_type(info)
                .ok_or_else(|| bad(format!("graph input `{target}` is not a tensor")))?;
            let (dtype, strings) = match onnx::tensor_proto::DataType::try_from(elem) {
                Ok(onnx::tensor_proto::DataType::Float) => (DType::F32, false),
                Ok(onnx::tensor_proto::DataType::Double) => (DType::F64, false),
                Ok(onnx::tensor_proto::DataType::Int64 | onnx::tensor_proto::DataType::Int32) => {
                    (DType::I64, false)
                }
                Ok(onnx::tensor_proto::DataType::String) => (DType::U8, true),
                other => {
                    return Err(bad(format!(
                        "graph input `{target}` has element type {other:?}, which is not supported"
                    )));
                }
            };
            if strings != (declared.dtype == FeatureType::String) {
                return Err(bad(format!(
                    "input `{}` is declared {} but graph input `{target}` holds {}",
                    declared.name,
                    declared.dtype,
                    if strings { "strings" } else { "numbers" }
                )));
            }
            inputs.push(InputBinding {
                name: target.to_string(),
                dtype,
                strings,
                slots: vec![slot],
            });
        }

        check_input_widths(name, package, &spec.file, &graph_inputs, &inputs)?;

        let mut nodes = Vec::with_capacity(graph.node.len());
        for node in &graph.node {
            nodes.push(
                compile(node, &model)
                    .map_err(|e| bad(format!("node `{}` ({}): {e}", node.name, node.op_type)))?,
            );
        }

        // Every declared output names a value the graph produces.
        let produced: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
        let available = || {
            graph
                .output
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for o in &package.manifest.outputs {
            match &o.source {
                Some(s) if produced.contains(s.as_str()) => {}
                Some(s) => {
                    return Err(bad(format!(
                        "output `{}`: the graph has no output `{s}` (it has: {})",
                        o.name,
                        available()
                    )));
                }
                None if graph.output.len() == 1 => {}
                None => {
                    return Err(bad(format!(
                        "output `{}` needs `source`: the graph has several outputs ({})",
                        o.name,
                        available()
                    )));
                }
            }
        }
        let outputs = package
            .manifest
            .outputs
            .iter()
            .map(|o| OutputSpec {
                source: o
                    .source
                    .clone()
                    .or_else(|| graph.output.first().map(|g| g.name.clone())),
                ..o.clone()
            })
            .collect();
        // Graphs that impute missing values themselves receive NaN; others never see it.
        let imputes = nodes.iter().any(|n| n.op == "Imputer");
        Ok(Self {
            name: name.to_string(),
            initializers,
            nodes,
            inputs,
            outputs,
            device: device.clone(),
            missing: if imputes {
                MissingPolicy::PassNan
            } else {
                MissingPolicy::Reject
            },
        })
    }

    fn input_values(&self, features: &FeatureMatrix) -> Result<HashMap<String, Value>> {
        let rows = features.scored_rows();
        let numeric = features.numeric.to_f32();
        let mut values = HashMap::new();
        for binding in &self.inputs {
            let width = binding.slots.len();
            if binding.strings {
                let mut data = Vec::with_capacity(rows * width);
                for r in 0..rows {
                    for slot in &binding.slots {
                        if let Slot::Text(i) = slot {
                            data.push(features.text[*i][r].clone());
                        }
                    }
                }
                values.insert(
                    binding.name.clone(),
                    Value::Strings(data, vec![rows, width]),
                );
                continue;
            }
            let mut data = Vec::with_capacity(rows * width);
            for r in 0..rows {
                for slot in &binding.slots {
                    if let Slot::Numeric(c) = slot {
                        data.push(numeric[r * features.cols + c]);
                    }
                }
            }
            let tensor = Tensor::from_vec(data, (rows, width), &self.device)
                .and_then(|t| t.to_dtype(binding.dtype))
                .map_err(Error::candle(&self.name))?;
            values.insert(binding.name.clone(), Value::Tensor(tensor));
        }
        Ok(values)
    }

    fn run(
        &self,
        mut values: HashMap<String, Value>,
    ) -> std::result::Result<HashMap<String, Value>, String> {
        for node in &self.nodes {
            let get = |name: &str| -> std::result::Result<Value, String> {
                values
                    .get(name)
                    .or_else(|| self.initializers.get(name))
                    .cloned()
                    .ok_or_else(|| format!("value `{name}` is not available"))
            };
            match &node.step {
                Step::Standard(proto) => {
                    let mut inputs = HashMap::new();
                    for name in node.inputs.iter().filter(|n| !n.is_empty()) {
                        match get(name)? {
                            Value::Tensor(t) => {
                                inputs.insert(name.clone(), t);
                            }
                            Value::Strings(..) => {
                                return Err(format!(
                                    "{} cannot take the string tensor `{name}`",
                                    node.op
                                ));
                            }
                        }
                    }
                    let out = candle_onnx::simple_eval(proto, inputs)
                        .map_err(|e| format!("{}: {e}", node.op))?;
                    // Tensors an operator makes itself (a Constant, a shape) come out on the
                    // CPU: every value stays on the model's device.
                    for (k, v) in out {
                        values.insert(k, Value::Tensor(v).moved_to(&self.device)?);
                    }
                }
                Step::Ml(op) => {
                    let inputs = node
                        .inputs
                        .iter()
                        .map(|n| get(n))
                        .collect::<std::result::Result<Vec<_>, String>>()?;
                    let outs = op
                        .eval(&inputs, &self.device)
                        .map_err(|e| format!("{}: {e}", node.op))?;
                    for (name, v) in node.outputs.iter().zip(outs) {
                        if !name.is_empty() {
                            values.insert(name.clone(), v);
                        }
                    }
                }
            }
        }
        Ok(values)
    }
}

/// Parses every initializer once by running a graph of Identity nodes through candle-onnx.
fn parse_initializers(
    model: &ModelProto,
    graph: &GraphProto,
) -> std::result::Result<HashMap<String, Value>, String> {
    if graph.initializer.is_empty() {
        return Ok(HashMap::new());
    }
    let mut g = GraphProto {
        initializer: graph.initializer.clone(),
        ..Default::default()
    };
    for (i, t) in graph.initializer.iter().enumerate() {
        let out = format!("__scorch_init_{i}");
        g.node.push(NodeProto {
            op_type: "Identity".into(),
            input: vec![t.name.clone()],
            output: vec![out.clone()],
            ..Default::default()
        });
        g.output.push(ValueInfoProto {
            name: out,
            ..Default::default()
        });
    }
    let proto = ModelProto {
        graph: Some(g),
        opset_import: model.opset_import.clone(),
        ir_version: model.ir_version,
        ..Default::default()
    };
    let out = candle_onnx::simple_eval(&proto, HashMap::new()).map_err(|e| e.to_string())?;
    Ok(graph
        .initializer
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            out.get(&format!("__scorch_init_{i}"))
                .map(|v| (t.name.clone(), Value::Tensor(v.clone())))
        })
        .collect())
}

fn compile(node: &NodeProto, model: &ModelProto) -> std::result::Result<CompiledNode, String> {
    let step = if node.domain == "ai.onnx.ml" {
        Step::Ml(MlOp::try_new(node)?)
    } else if node.domain.is_empty() || node.domain == "ai.onnx" {
        let graph = GraphProto {
            node: vec![node.clone()],
            output: node
                .output
                .iter()
                .filter(|o| !o.is_empty())
                .map(|o| ValueInfoProto {
                    name: o.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        Step::Standard(Box::new(ModelProto {
            graph: Some(graph),
            opset_import: model.opset_import.clone(),
            ir_version: model.ir_version,
            ..Default::default()
        }))
    } else {
        return Err(format!(
            "operator domain `{}` is not supported",
            node.domain
        ));
    };
    Ok(CompiledNode {
        inputs: node.input.clone(),
        outputs: node.output.clone(),
        step,
        op: node.op_type.clone(),
    })
}

/// Reads a value as a row-major `rows x width` float matrix.
fn as_f32_rows(v: &Value, rows: usize) -> std::result::Result<(Vec<f32>, usize), String> {
    let t = v.tensor("an output")?;
    let t = t.to_dtype(DType::F32).map_err(|e| e.to_string())?;
    let values = t
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| e.to_string())?;
    let width = values.len().checked_div(rows).unwrap_or(0);
    Ok((values, width))
}

impl Model for OnnxModel {
    fn predict(&self, features: &FeatureMatrix) -> Result<Vec<OutputColumn>> {
        let rows = features.scored_rows();
        let bad = |reason: String| Error::InvalidWeights {
            name: self.name.clone(),
            reason,
        };
        let mut results: Vec<OutputColumn> = Vec::with_capacity(self.outputs.len());
        if rows == 0 {
            return Ok(self
                .outputs
                .iter()
                .map(|o| match o.dtype {
                    OutputType::Float32 => OutputColumn::F32(Vec::new()),
                    OutputType::Int64 => OutputColumn::I64(Vec::new()),
                    OutputType::String => OutputColumn::Str(Vec::new()),
                })
                .collect());
        }
        let values = self.run(self.input_values(features)?).map_err(bad)?;
        let mut cache: BTreeMap<&str, (Vec<f32>, usize)> = BTreeMap::new();
        for o in &self.outputs {
            let source = o.source.as_deref().expect("bound at load time");
            let value = values
                .get(source)
                .ok_or_else(|| bad(format!("the graph did not produce `{source}`")))?;
            let column = match (o.dtype, value) {
                (OutputType::String, Value::Strings(s, _)) => {
                    OutputColumn::Str(pick(s, rows, o).map_err(bad)?)
                }
                (OutputType::Int64, Value::Tensor(t)) => {
                    let t = t.to_dtype(DType::I64).map_err(Error::candle(&self.name))?;
                    let v = t
                        .flatten_all()
                        .and_then(|t| t.to_vec1::<i64>())
                        .map_err(Error::candle(&self.name))?;
                    OutputColumn::I64(pick(&v, rows, o).map_err(bad)?)
                }
                (OutputType::Float32, Value::Tensor(_)) => {
                    if !cache.contains_key(source) {
                        cache.insert(source, as_f32_rows(value, rows).map_err(bad)?);
                    }
                    let (v, _) = &cache[source];
                    OutputColumn::F32(pick(v, rows, o).map_err(bad)?)
                }
                (t, _) => {
                    return Err(bad(format!(
                        "output `{}`: `{source}` does not hold {t} values",
                        o.name
                    )));
                }
            };
            results.push(column);
        }
        Ok(results)
    }

    fn precision(&self) -> Precision {
        Precision::F32
    }

    fn missing(&self) -> MissingPolicy {
        self.missing
    }
}

/// Takes a declared output's values out of a row-major source of `rows` rows.
fn pick<T: Clone>(
    values: &[T],
    rows: usize,
    o: &OutputSpec,
) -> std::result::Result<Vec<T>, String> {
    if rows == 0 {
        return Ok(Vec::new());
    }
    if !values.len().is_multiple_of(rows) {
        return Err(format!(
            "output `{}`: {} values for {rows} rows",
            o.name,
            values.len()
        ));
    }
    let width = values.len() / rows;
    match (o.size, o.index) {
        (Some(size), _) if size == width => Ok(values.to_vec()),
        (Some(size), _) => Err(format!(
            "output `{}`: size {size}, but the graph gives {width} values per row",
            o.name
        )),
        (None, Some(i)) if i < width => {
            Ok((0..rows).map(|r| values[r * width + i].clone()).collect())
        }
        (None, Some(i)) => Err(format!(
            "output `{}`: index {i}, but the graph gives {width} values per row",
            o.name
        )),
        (None, None) if width == 1 => Ok(values.to_vec()),
        (None, None) => Err(format!(
            "output `{}`: the graph gives {width} values per row; declare `size = {width}` or an `index`",
            o.name
        )),
    }
}
