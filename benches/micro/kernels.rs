//! Micro-benchmarks of the scoring hot paths: matrix multiply (the machine's SGEMM ceiling),
//! Arrow columns to feature matrices, the MLP forward pass by batch size (scorch's kernel and
//! candle's layers on the same weights), tree ensembles (branch-free and general walks), and
//! sentence embeddings.
//!
//! `cargo bench -p scorch-benches --bench kernels`; set `SCORCH_THREADS=1` for per-core figures.
//! Throughputs are reported per element: rows, feature values, floating-point operations,
//! tree x row evaluations or tokens, as each group's name says.

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;

use candle_core::{Device, Module, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use scorch_benches::{
    feature_columns, features, minilm_package, mlp_package, sentences, tree_ensemble,
};
use scorch_udfs::features::{FeatureMatrix, MissingPolicy, Numeric, Precision};
use scorch_udfs::kernels::gemm::{MatMut, MatRef, matmul};
use scorch_udfs::kernels::threads;
use scorch_udfs::package::InputSpec;
use scorch_udfs::runtime::try_load;

/// The MLP of the peer benchmark: 64 inputs, two hidden layers of 256, one output.
const MLP: [usize; 4] = [64, 256, 256, 1];

fn mlp_flops_per_row() -> u64 {
    MLP.windows(2).map(|w| 2 * (w[0] * w[1]) as u64).sum()
}

/// Single-precision matrix multiply: one core, and every core on independent products (the
/// ceiling for partitions scoring in parallel).
fn sgemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm_flops");
    for (m, n, k) in [(1024, 1024, 1024), (512, 256, 256)] {
        let a = features(m, k, 1);
        let b = features(k, n, 2);
        let flops = 2 * (m * n * k) as u64;
        group.throughput(Throughput::Elements(flops));
        group.bench_function(
            BenchmarkId::new("one_core", format!("{m}x{n}x{k}")),
            |bench| {
                let mut out = vec![0f32; m * n];
                bench.iter(|| {
                    matmul(
                        MatMut::row_major(&mut out, m, n),
                        MatRef::row_major(&a, m, k),
                        MatRef::row_major(&b, k, n),
                        false,
                        gemm::Parallelism::None,
                    );
                    black_box(&out);
                });
            },
        );
        let cores = threads::cores();
        group.throughput(Throughput::Elements(flops * cores as u64));
        group.bench_function(
            BenchmarkId::new(format!("all_{cores}_cores"), format!("{m}x{n}x{k}")),
            |bench| {
                let mut outs = vec![vec![0f32; m * n]; cores];
                bench.iter(|| {
                    outs.par_iter_mut().for_each(|out| {
                        matmul(
                            MatMut::row_major(out, m, n),
                            MatRef::row_major(&a, m, k),
                            MatRef::row_major(&b, k, n),
                            false,
                            gemm::Parallelism::None,
                        );
                    });
                    black_box(&outs);
                });
            },
        );
    }
    group.finish();
}

/// Arrow `Float32` columns to the row-major matrix a runtime takes, with the input contract
/// checked: 64 columns to `f32` (networks), 32 columns to `f64` (trees).
fn arrow_to_features(c: &mut Criterion) {
    let mut group = c.benchmark_group("arrow_to_features_values");
    let rows = 8192;
    for (cols, precision) in [(64, Precision::F32), (32, Precision::F64)] {
        let columns = feature_columns(rows, cols, 3);
        let specs: Vec<InputSpec> = (0..cols)
            .map(|i| InputSpec::float32(&format!("f{i}")))
            .collect();
        group.throughput(Throughput::Elements((rows * cols) as u64));
        group.bench_function(format!("{cols}_columns_{precision:?}"), |bench| {
            bench.iter(|| {
                FeatureMatrix::try_new("bench", &columns, &specs, precision, MissingPolicy::Reject)
                    .expect("valid features")
            });
        });
    }
    group.finish();
}

/// The 64-256-256-1 MLP by batch size, rows per second; and at 8192 rows, in floating-point
/// operations per second to set beside `sgemm_flops`.
fn mlp_forward(c: &mut Criterion) {
    let package = mlp_package(&MLP).expect("MLP package");
    let model = try_load("mlp", &package, &Device::Cpu).expect("loads");
    let mut group = c.benchmark_group("mlp_forward_rows");
    for rows in [64, 512, 2048, 8192] {
        let x = FeatureMatrix::from_rows(Numeric::F32(features(rows, MLP[0], 4)), MLP[0]);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("scorch", rows), &x, |bench, x| {
            bench.iter(|| model.predict(x).expect("scores"));
        });
    }
    group.finish();

    let rows = 8192;
    let x = FeatureMatrix::from_rows(Numeric::F32(features(rows, MLP[0], 4)), MLP[0]);
    let mut group = c.benchmark_group("mlp_forward_flops");
    group.throughput(Throughput::Elements(mlp_flops_per_row() * rows as u64));
    group.bench_function("scorch/8192", |bench| {
        bench.iter(|| model.predict(&x).expect("scores"));
    });
    // The same weights through candle's layers, as scorch ran MLPs before its own kernel.
    let tensors = candle_core::safetensors::load_buffer(
        package.artifact("weights.safetensors").expect("weights"),
        &Device::Cpu,
    )
    .expect("safetensors");
    let layers: Vec<candle_nn::Linear> = (0..MLP.len() - 1)
        .map(|i| {
            candle_nn::Linear::new(
                tensors[&format!("layers.{i}.weight")].clone(),
                Some(tensors[&format!("layers.{i}.bias")].clone()),
            )
        })
        .collect();
    let Numeric::F32(values) = &x.numeric else {
        unreachable!("built as f32")
    };
    let input = Tensor::from_slice(values, (rows, MLP[0]), &Device::Cpu).expect("tensor");
    group.bench_function("candle/8192", |bench| {
        bench.iter(|| {
            let mut h = input.clone();
            for (i, layer) in layers.iter().enumerate() {
                h = layer.forward(&h).expect("forward");
                h = if i + 1 == layers.len() {
                    candle_nn::ops::sigmoid(&h).expect("sigmoid")
                } else {
                    h.relu().expect("relu")
                };
            }
            h.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("values")
        });
    });
    group.finish();
}

/// 500 trees of depth 6 over 32 features, tree x row evaluations per second: the branch-free
/// layout scorch uses, and the general node walk it falls back to.
fn tree_ensembles(c: &mut Criterion) {
    let (trees, rows, cols) = (500, 8192, 32);
    let ensemble = tree_ensemble(trees, 6, cols);
    let narrow = features(rows, cols, 5);
    let x: Vec<f64> = narrow.iter().copied().map(f64::from).collect();
    // As the feature gather hands them over for `Float32` columns.
    let narrow = Numeric::F32(narrow);
    let mut group = c.benchmark_group("trees_tree_rows");
    group.throughput(Throughput::Elements((trees * rows) as u64));
    group.bench_function("branch_free/500x6", |bench| {
        bench.iter(|| ensemble.margins(&narrow, cols, rows));
    });
    group.bench_function("general_walk/500x6", |bench| {
        let mut margins = vec![0f64; rows];
        let mut counts = [0u32];
        bench.iter(|| {
            for (r, m) in margins.iter_mut().enumerate() {
                ensemble.accumulate(
                    &x[r * cols..(r + 1) * cols],
                    std::slice::from_mut(m),
                    &mut counts,
                );
            }
            black_box(&margins);
        });
    });
    group.finish();
}

/// all-MiniLM-L6-v2 on 256 mixed-length sentences, tokens per second (skipped, with a message,
/// when its weights are not installed).
fn embeddings(c: &mut Criterion) {
    let package = match minilm_package() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping the embedding benchmark: {e:#}");
            return;
        }
    };
    let model = try_load("minilm", &package, &Device::Cpu).expect("loads");
    let texts = sentences(256, 6);
    let mut tokenizer =
        tokenizers::Tokenizer::from_bytes(package.artifact("tokenizer.json").expect("tokenizer"))
            .expect("tokenizer");
    // The package's tokenizer pads to 128; the encoder packs sequences and never sees padding,
    // so throughput counts real tokens only.
    tokenizer.with_padding(None);
    let tokens: usize = tokenizer
        .encode_batch(texts.clone(), true)
        .expect("tokenizes")
        .iter()
        .map(|e| e.get_ids().len().min(256))
        .sum();
    let x = FeatureMatrix::from_texts(texts);
    let mut group = c.benchmark_group("embed_tokens");
    group.sample_size(10);
    group.throughput(Throughput::Elements(tokens as u64));
    group.bench_function("minilm/256_sentences", |bench| {
        bench.iter(|| model.predict(&x).expect("embeds"));
    });
    group.finish();
}

criterion_group!(
    benches,
    sgemm,
    arrow_to_features,
    mlp_forward,
    tree_ensembles,
    embeddings
);
criterion_main!(benches);
