//! `scorch demo`: a complete, deterministic scoring job on the local disk, with no servers.
//!
//! It generates a synthetic customer-churn feature table (daily Hive partitions), trains a
//! small multilayer perceptron on it with candle, writes the model package and the job, and
//! runs the job for the newest day. Every byte of data and every weight is a function of the
//! seed, so two demos produce the same table, model hash and predictions.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use chrono::{Days, NaiveDate};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use scorch_udfs::package::{
    Activation, InputSpec, MlpSpec, ModelFormat, ModelManifest, OutputSpec,
};

use crate::error::{Error, Result};

/// The demo job file, as shipped in `jobs/`.
pub const JOB_TEMPLATE: &str = include_str!("../../jobs/churn.toml");
/// The demo job's SQL.
pub const SQL_TEMPLATE: &str = include_str!("../../jobs/churn.sql");

/// The newest day of the demo data.
pub const LAST_DAY: &str = "2026-11-27";

/// Names of the model's inputs, in order.
pub const FEATURES: [&str; 12] = [
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls_30d",
    "num_products",
    "contract_months",
    "days_since_last_login",
    "avg_session_minutes",
    "payment_failures_90d",
    "is_autopay",
    "age",
    "discount_pct",
];

const REGIONS: [&str; 4] = ["APAC", "EU", "LATAM", "NA"];

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Folder to write into.
    pub dir: PathBuf,
    /// Total rows over all days.
    pub rows: usize,
    /// Number of daily partitions.
    pub days: usize,
    /// Training epochs.
    pub epochs: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("scorch-demo"),
            rows: 1_000_000,
            days: 7,
            epochs: 4,
            seed: 42,
            row_group_rows: 32_768,
        }
    }
}

/// What the demo built.
#[derive(Debug, Clone)]
pub struct DemoSetup {
    /// The job file written.
    pub job_file: PathBuf,
    /// The days generated, oldest first.
    pub days: Vec<String>,
    /// Rows generated.
    pub rows: usize,
    /// Holdout AUC of the trained model.
    pub holdout_auc: f64,
    /// Holdout accuracy at threshold 0.5.
    pub holdout_accuracy: f64,
    /// Rows in the holdout.
    pub holdout_rows: usize,
    /// Rows trained on.
    pub train_rows: usize,
    /// The package's SHA-256.
    pub model_sha256: String,
    /// Seconds spent generating data, training.
    pub generate_seconds: f64,
    /// Seconds spent training.
    pub train_seconds: f64,
}

/// SplitMix64: a tiny, portable, seedable generator (the demo must not depend on a crate's
/// notion of a stable stream).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-12);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// One day of the feature table, column by column.
struct Day {
    customer_id: Vec<i64>,
    region: Vec<&'static str>,
    features: Vec<Vec<Option<f32>>>,
    churned: Vec<bool>,
}

fn generate_day(rng: &mut Rng, rows: usize, first_id: i64) -> Day {
    let mut day = Day {
        customer_id: Vec::with_capacity(rows),
        region: Vec::with_capacity(rows),
        features: vec![Vec::with_capacity(rows); FEATURES.len()],
        churned: Vec::with_capacity(rows),
    };
    for i in 0..rows {
        let tenure = 1.0 + rng.below(72) as f64;
        let contract = [1.0, 12.0, 24.0][rng.below(3) as usize];
        let monthly = (70.0 + 25.0 * rng.normal()).clamp(18.0, 130.0);
        let total = tenure * monthly * (0.9 + 0.2 * rng.uniform());
        let calls = (rng.uniform() * rng.uniform() * 10.0).floor();
        let products = 1.0 + rng.below(5) as f64;
        let login = (-12.0 * (1.0 - rng.uniform()).ln()).min(180.0).floor();
        let session = (2.5 + 0.6 * rng.normal()).exp().min(300.0);
        let failures = if rng.uniform() < 0.8 {
            0.0
        } else {
            1.0 + rng.below(4) as f64
        };
        let autopay = if rng.uniform() < 0.55 { 1.0 } else { 0.0 };
        let age = 18.0 + rng.below(63) as f64;
        let discount = if rng.uniform() < 0.7 {
            0.0
        } else {
            (rng.uniform() * 30.0).floor()
        };
        let logit = -1.6 + 0.55 * (calls - 2.0).max(0.0) + 0.035 * login - 0.035 * tenure
            + 0.7 * failures
            - 0.8 * autopay
            - 0.05 * contract
            + 0.012 * (monthly - 70.0)
            - 0.15 * (products - 1.0)
            + 0.6 * (if age < 30.0 && calls > 3.0 { 1.0 } else { 0.0 })
            - 0.02 * discount
            + 0.4 * rng.normal();
        let p = 1.0 / (1.0 + (-logit).exp());
        let values = [
            tenure, monthly, total, calls, products, contract, login, session, failures, autopay,
            age, discount,
        ];
        for (column, v) in day.features.iter_mut().zip(values) {
            column.push(Some(v as f32));
        }
        // A few broken rows, as real feature pipelines have: a missing login date, a NaN charge.
        let r = rng.uniform();
        if r < 0.0007 {
            day.features[6][i] = None;
        } else if r < 0.001 {
            day.features[1][i] = Some(f32::NAN);
        }
        day.customer_id.push(first_id + i as i64);
        day.region
            .push(REGIONS[rng.below(REGIONS.len() as u64) as usize]);
        day.churned.push(rng.uniform() < p);
    }
    day
}

fn day_schema() -> Arc<Schema> {
    let mut fields = vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("region", DataType::Utf8, false),
    ];
    fields.extend(
        FEATURES
            .iter()
            .map(|f| Field::new(*f, DataType::Float32, true)),
    );
    fields.push(Field::new("churned", DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

/// Writes one day sorted by region (so row-group statistics on `region` prune well).
fn write_day(day: &Day, path: &Path, row_group_rows: usize) -> Result<()> {
    let mut order: Vec<usize> = (0..day.customer_id.len()).collect();
    order.sort_by_key(|&i| (day.region[i], day.customer_id[i]));
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            order.iter().map(|&i| day.customer_id[i]),
        )),
        Arc::new(StringArray::from_iter_values(
            order.iter().map(|&i| day.region[i]),
        )),
    ];
    for feature in &day.features {
        columns.push(Arc::new(Float32Array::from_iter(
            order.iter().map(|&i| feature[i]),
        )));
    }
    columns.push(Arc::new(BooleanArray::from_iter(
        order.iter().map(|&i| Some(day.churned[i])),
    )));
    let batch = RecordBatch::try_new(day_schema(), columns).map_err(|source| Error::Parquet {
        path: path.display().to_string(),
        source: source.into(),
    })?;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(io)?;
    let file = fs::File::create(path).map_err(io)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(row_group_rows))
        .build();
    let parquet_err = |source| Error::Parquet {
        path: path.display().to_string(),
        source,
    };
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(parquet_err)?;
    writer.write(&batch).map_err(parquet_err)?;
    writer.close().map_err(parquet_err)?;
    Ok(())
}

/// Generates the data, trains and packages the model, and writes the job. Does not run it.
pub fn setup(options: &DemoOptions) -> Result<DemoSetup> {
    let generate_started = std::time::Instant::now();
    let dir = &options.dir;
    let last = NaiveDate::parse_from_str(LAST_DAY, "%Y-%m-%d").expect("LAST_DAY is a valid date");
    let days: Vec<String> = (0..options.days)
        .rev()
        .map(|back| {
            (last - Days::new(back as u64))
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect();
    let features_dir = dir.join("data").join("features");
    if features_dir.exists() {
        fs::remove_dir_all(&features_dir).map_err(|source| Error::Io {
            path: features_dir.clone(),
            source,
        })?;
    }
    let mut rng = Rng(options.seed);
    let per_day = options.rows / options.days.max(1);
    let mut train = Vec::new();
    let mut holdout = Vec::new();
    let train_cap = 200_000usize;
    let train_stride = ((per_day * options.days.saturating_sub(1)) / train_cap).max(1);
    for (d, ds) in days.iter().enumerate() {
        let rows = if d + 1 == days.len() {
            options.rows - per_day * (days.len() - 1)
        } else {
            per_day
        };
        let day = generate_day(&mut rng, rows, 1_000_000);
        write_day(
            &day,
            &features_dir.join(format!("ds={ds}")).join("part-0.parquet"),
            options.row_group_rows,
        )?;
        let last_day = d + 1 == days.len();
        for i in 0..rows {
            let row: Option<Vec<f32>> = day
                .features
                .iter()
                .map(|c| c[i].filter(|v| v.is_finite()))
                .collect();
            let Some(row) = row else { continue };
            if last_day || options.days == 1 {
                if holdout.len() < 50_000 && i % 2 == 0 {
                    holdout.push((row, day.churned[i]));
                } else if options.days == 1 && i % 2 == 1 && train.len() < train_cap {
                    train.push((row, day.churned[i]));
                }
            } else if i % train_stride == 0 && train.len() < train_cap {
                train.push((row, day.churned[i]));
            }
        }
    }
    let generate_seconds = generate_started.elapsed().as_secs_f64();

    let train_started = std::time::Instant::now();
    let model_dir = dir.join("models").join("churn");
    let (weights, train_rows) = train_mlp(&train, options.epochs, options.seed)?;
    write_package(&model_dir, &weights)?;
    let train_seconds = train_started.elapsed().as_secs_f64();

    // Evaluate the package exactly as scorch will run it.
    let package_files = scorch_udfs::package::read_local_dir(&model_dir)?;
    let package =
        scorch_udfs::ModelPackage::try_from_files(&model_dir.display().to_string(), package_files)?;
    let model = scorch_udfs::runtime::MlpModel::try_new("churn", &package, &Device::Cpu)?;
    let matrix = scorch_udfs::features::FeatureMatrix::from_rows(
        scorch_udfs::features::Numeric::F32(
            holdout
                .iter()
                .flat_map(|(r, _)| r.iter().copied())
                .collect(),
        ),
        FEATURES.len(),
    );
    let scores = match scorch_udfs::runtime::Model::predict(&model, &matrix)?.pop() {
        Some(scorch_udfs::runtime::OutputColumn::F32(values)) => values,
        _ => unreachable!("the demo model has one float output"),
    };
    let labels: Vec<bool> = holdout.iter().map(|(_, y)| *y).collect();
    let holdout_auc = auc(&scores, &labels);
    let holdout_accuracy = scores
        .iter()
        .zip(&labels)
        .filter(|(s, y)| (**s >= 0.5) == **y)
        .count() as f64
        / labels.len().max(1) as f64;

    let job_file = write_job(dir, &package.sha256)?;
    Ok(DemoSetup {
        job_file,
        days,
        rows: options.rows,
        holdout_auc,
        holdout_accuracy,
        holdout_rows: labels.len(),
        train_rows,
        model_sha256: package.sha256,
        generate_seconds,
        train_seconds,
    })
}

/// Trained weights: per layer, `[out][in]` weights and `[out]` biases.
type Layers = Vec<(Vec<Vec<f32>>, Vec<f32>)>;

const WIDTHS: [usize; 4] = [12, 32, 16, 1];

/// Trains a 12-32-16-1 MLP (ReLU, ReLU, sigmoid) on standardised features with AdamW, then folds
/// the standardisation into the first layer so the package scores raw features.
fn train_mlp(rows: &[(Vec<f32>, bool)], epochs: usize, seed: u64) -> Result<(Layers, usize)> {
    let t = Error::Training;
    let n = rows.len();
    let d = FEATURES.len();
    let mut mean = vec![0f64; d];
    let mut var = vec![0f64; d];
    for (r, _) in rows {
        for (j, v) in r.iter().enumerate() {
            mean[j] += f64::from(*v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    for (r, _) in rows {
        for (j, v) in r.iter().enumerate() {
            var[j] += (f64::from(*v) - mean[j]).powi(2);
        }
    }
    let std: Vec<f64> = var
        .iter()
        .map(|v| (v / n.max(1) as f64).sqrt().max(1e-6))
        .collect();
    let x: Vec<f32> = rows
        .iter()
        .flat_map(|(r, _)| {
            r.iter()
                .enumerate()
                .map(|(j, v)| ((f64::from(*v) - mean[j]) / std[j]) as f32)
        })
        .collect();
    let y: Vec<f32> = rows
        .iter()
        .map(|(_, l)| if *l { 1.0 } else { 0.0 })
        .collect();

    let device = Device::Cpu;
    let mut rng = Rng(seed ^ 0x5EED);
    let mut vars = Vec::new();
    for w in WIDTHS.windows(2) {
        let (fan_in, fan_out) = (w[0], w[1]);
        let bound = (6.0 / fan_in as f64).sqrt();
        let init: Vec<f32> = (0..fan_in * fan_out)
            .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
            .collect();
        vars.push(
            Var::from_tensor(&Tensor::from_vec(init, (fan_out, fan_in), &device).map_err(t)?)
                .map_err(t)?,
        );
        vars.push(Var::zeros(fan_out, DType::F32, &device).map_err(t)?);
    }
    let mut optimizer = AdamW::new(
        vars.clone(),
        ParamsAdamW {
            lr: 0.005,
            weight_decay: 1e-4,
            ..Default::default()
        },
    )
    .map_err(t)?;
    let batch = 512;
    let mut order: Vec<usize> = (0..n).collect();
    for _ in 0..epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for chunk in order.chunks(batch) {
            let xb: Vec<f32> = chunk
                .iter()
                .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
                .collect();
            let yb: Vec<f32> = chunk.iter().map(|&i| y[i]).collect();
            let xb = Tensor::from_vec(xb, (chunk.len(), d), &device).map_err(t)?;
            let yb = Tensor::from_vec(yb, (chunk.len(), 1), &device).map_err(t)?;
            let mut h = xb;
            for (layer, pair) in vars.chunks(2).enumerate() {
                h = h
                    .matmul(&pair[0].as_tensor().t().map_err(t)?)
                    .and_then(|h| h.broadcast_add(pair[1].as_tensor()))
                    .map_err(t)?;
                if layer + 1 < WIDTHS.len() - 1 {
                    h = h.relu().map_err(t)?;
                }
            }
            let loss = candle_nn::loss::binary_cross_entropy_with_logit(&h, &yb).map_err(t)?;
            optimizer.backward_step(&loss).map_err(t)?;
        }
    }

    let mut layers: Layers = Vec::new();
    for pair in vars.chunks(2) {
        let w: Vec<Vec<f32>> = pair[0].as_tensor().to_vec2().map_err(t)?;
        let b: Vec<f32> = pair[1].as_tensor().to_vec1().map_err(t)?;
        layers.push((w, b));
    }
    // Fold (x - mean) / std into layer 0: W' = W / std, b' = b - W' · mean.
    let (w0, b0) = &mut layers[0];
    for (row, bias) in w0.iter_mut().zip(b0.iter_mut()) {
        let mut shift = 0f64;
        for (j, w) in row.iter_mut().enumerate() {
            *w = (f64::from(*w) / std[j]) as f32;
            shift += f64::from(*w) * mean[j];
        }
        *bias = (f64::from(*bias) - shift) as f32;
    }
    Ok((layers, n))
}

fn write_package(dir: &Path, layers: &Layers) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tensors = std::collections::HashMap::new();
    for (i, (w, b)) in layers.iter().enumerate() {
        let rows = w.len();
        let cols = w.first().map_or(0, Vec::len);
        let flat: Vec<f32> = w.iter().flatten().copied().collect();
        tensors.insert(
            format!("layers.{i}.weight"),
            Tensor::from_vec(flat, (rows, cols), &Device::Cpu).map_err(Error::Training)?,
        );
        tensors.insert(
            format!("layers.{i}.bias"),
            Tensor::from_vec(b.clone(), rows, &Device::Cpu).map_err(Error::Training)?,
        );
    }
    let weights = dir.join("weights.safetensors");
    candle_core::safetensors::save(&tensors, &weights).map_err(Error::Training)?;
    let contract = |name: &str| -> (Option<f64>, Option<f64>) {
        match name {
            "age" => (Some(0.0), Some(120.0)),
            "discount_pct" => (Some(0.0), Some(100.0)),
            "is_autopay" => (Some(0.0), Some(1.0)),
            _ => (Some(0.0), None),
        }
    };
    let mut manifest = ModelManifest::new("churn", semver::Version::new(1, 0, 0), ModelFormat::Mlp);
    manifest.description = Some(
        "Probability that a customer churns within 30 days (scorch demo, trained with candle)."
            .into(),
    );
    manifest.inputs = FEATURES
        .iter()
        .map(|f| {
            let (min, max) = contract(f);
            InputSpec {
                min,
                max,
                ..InputSpec::float32(f)
            }
        })
        .collect();
    manifest.outputs = vec![OutputSpec::float32("churn_probability")];
    manifest.mlp = Some(MlpSpec {
        weights: "weights.safetensors".into(),
        layers: WIDTHS.to_vec(),
        activations: vec![Activation::Relu, Activation::Relu, Activation::Sigmoid],
    });
    let path = dir.join(scorch_udfs::package::MANIFEST_FILE);
    fs::write(&path, manifest.to_toml()).map_err(io(&path))?;
    Ok(())
}

fn write_job(dir: &Path, sha256: &str) -> Result<PathBuf> {
    let mut doc: toml_edit::DocumentMut = JOB_TEMPLATE
        .parse()
        .expect("the shipped job template is valid TOML");
    doc["models"]["churn"]["sha256"] = toml_edit::value(sha256);
    let job = dir.join("churn.toml");
    fs::write(&job, doc.to_string()).map_err(|source| Error::Io {
        path: job.clone(),
        source,
    })?;
    let sql = dir.join("churn.sql");
    fs::write(&sql, SQL_TEMPLATE).map_err(|source| Error::Io {
        path: sql.clone(),
        source,
    })?;
    Ok(job)
}

/// Area under the ROC curve (Mann-Whitney U with average ranks for ties).
pub fn auc(scores: &[f32], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = rank;
        }
        i = j + 1;
    }
    let positives = labels.iter().filter(|l| **l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return f64::NAN;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_inverted_rankings() {
        let labels = [false, false, true, true];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &labels), 0.0);
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &labels), 0.5);
    }

    #[test]
    fn generator_is_deterministic() {
        let a = generate_day(&mut Rng(7), 100, 0);
        let b = generate_day(&mut Rng(7), 100, 0);
        assert_eq!(a.features, b.features);
        assert_eq!(a.churned, b.churned);
        let c = generate_day(&mut Rng(8), 100, 0);
        assert_ne!(a.features, c.features);
    }
}
