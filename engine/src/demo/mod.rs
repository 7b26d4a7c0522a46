//! `scorch demo`: a complete, deterministic scoring job on the local disk, with no servers.
//!
//! It generates a synthetic customer-churn feature table (daily Hive partitions, [`data`]),
//! trains a small multilayer perceptron on it ([`train`]), writes the model package and the job,
//! and runs the job for the newest day. Every byte of data and every weight is a function of the
//! seed, computed the same way on every CPU, so two demos anywhere produce the same table bytes,
//! model hash and holdout AUC. (The predictions of the run itself go through scorch's SIMD
//! kernels, whose last bits depend on the instruction set; the number of output files depends on
//! the number of cores.)
//!
//! The demo only replaces a folder that is empty or holds an unedited earlier demo; anything
//! else needs `--force`.

pub mod data;
pub mod train;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use data::{Rng, generate_day, write_day};

/// The demo job file, as shipped in `jobs/`.
pub const JOB_TEMPLATE: &str = include_str!("../../../jobs/churn.toml");
/// The demo job's SQL.
pub const SQL_TEMPLATE: &str = include_str!("../../../jobs/churn.sql");

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

/// What the demo writes at the top of its folder.
const OWN_ENTRIES: [&str; 6] = ["data", "models", "out", "churn.toml", "churn.sql", MARKER];

/// The demo's record of what it wrote: the job files' hashes.
const MARKER: &str = ".scorch-demo.json";

/// Rows per day below which the demo's holdout gets too small to mean anything.
const MIN_ROWS_PER_DAY: usize = 100;

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
    /// Replace the folder's contents even when they are not an unedited earlier demo.
    pub force: bool,
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
            force: false,
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
    /// Holdout AUC of the trained model (the holdout always holds both classes).
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

#[derive(Debug, Default, Serialize, Deserialize)]
struct Marker {
    /// SHA-256 of each job file the demo wrote.
    files: BTreeMap<String, String>,
}

fn sha256_file(path: &Path) -> Option<String> {
    fs::read(path).ok().map(|b| hex::encode(Sha256::digest(b)))
}

fn demo_error(message: String) -> Error {
    Error::Demo { message }
}

/// Checks the options, and that the folder is empty, absent, or an unedited earlier demo.
fn check(options: &DemoOptions) -> Result<()> {
    if options.days == 0 {
        return Err(demo_error("--days must be at least 1".into()));
    }
    if options.rows < MIN_ROWS_PER_DAY * options.days {
        return Err(demo_error(format!(
            "--rows {} is too few for {} days: give at least {} rows per day ({})",
            options.rows,
            options.days,
            MIN_ROWS_PER_DAY,
            MIN_ROWS_PER_DAY * options.days
        )));
    }
    if options.epochs == 0 || options.row_group_rows == 0 {
        return Err(demo_error(
            "--epochs and --row-group-rows must be at least 1".into(),
        ));
    }
    let dir = &options.dir;
    if options.force || !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        return Err(demo_error(format!("{} is not a folder", dir.display())));
    }
    let entries: Vec<String> = fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let mut problems: Vec<String> = entries
        .iter()
        .filter(|e| !OWN_ENTRIES.contains(&e.as_str()))
        .map(|e| format!("`{e}` is not the demo's"))
        .collect();
    let marker: Option<Marker> = fs::read(dir.join(MARKER))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    match marker {
        None => problems.push(format!("there is no {MARKER}: it is not a demo folder")),
        Some(marker) => {
            for (file, hash) in &marker.files {
                if sha256_file(&dir.join(file))
                    .as_deref()
                    .is_some_and(|h| h != hash)
                {
                    problems.push(format!("`{file}` was edited since the demo wrote it"));
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(demo_error(format!(
        "{} holds work the demo would overwrite ({}); pass --force to replace it, or choose another --dir",
        dir.display(),
        problems.join("; ")
    )))
}

/// Generates the data, trains and packages the model, and writes the job. Does not run it.
pub fn setup(options: &DemoOptions) -> Result<DemoSetup> {
    check(options)?;
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
    let per_day = options.rows / options.days;
    let mut train_rows = Vec::new();
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
                } else if options.days == 1 && i % 2 == 1 && train_rows.len() < train_cap {
                    train_rows.push((row, day.churned[i]));
                }
            } else if i % train_stride == 0 && train_rows.len() < train_cap {
                train_rows.push((row, day.churned[i]));
            }
        }
    }
    let generate_seconds = generate_started.elapsed().as_secs_f64();

    let train_started = std::time::Instant::now();
    let model_dir = dir.join("models").join("churn");
    let trained = train::train(&train_rows, options.epochs, options.seed)?;
    train::write_package(&model_dir, &trained)?;
    let train_seconds = train_started.elapsed().as_secs_f64();

    let features: Vec<Vec<f32>> = holdout.iter().map(|(r, _)| r.clone()).collect();
    let labels: Vec<bool> = holdout.iter().map(|(_, y)| *y).collect();
    let scores = trained.predict(&features);
    let holdout_auc = train::auc(&scores, &labels).ok_or_else(|| {
        demo_error(format!(
            "the holdout's {} rows hold one class only; give more --rows",
            labels.len()
        ))
    })?;
    let holdout_accuracy = scores
        .iter()
        .zip(&labels)
        .filter(|(s, y)| (**s >= 0.5) == **y)
        .count() as f64
        / labels.len().max(1) as f64;

    let package_files = scorch_udfs::package::read_local_dir(&model_dir)?;
    let package =
        scorch_udfs::ModelPackage::try_from_files(&model_dir.display().to_string(), package_files)?;
    let job_file = write_job(dir, &package.sha256)?;
    Ok(DemoSetup {
        job_file,
        days,
        rows: options.rows,
        holdout_auc,
        holdout_accuracy,
        holdout_rows: labels.len(),
        train_rows: trained.rows,
        model_sha256: package.sha256,
        generate_seconds,
        train_seconds,
    })
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
    let marker = Marker {
        files: [("churn.toml", &job), ("churn.sql", &sql)]
            .into_iter()
            .filter_map(|(name, path)| Some((name.to_string(), sha256_file(path)?)))
            .collect(),
    };
    let path = dir.join(MARKER);
    let text = serde_json::to_vec_pretty(&marker).expect("a marker always serialises");
    fs::write(&path, text).map_err(|source| Error::Io { path, source })?;
    Ok(job)
}
