//! MLflow models: `scorch model init` on folders the real mlflow package saved
//! (`tests/fixtures/mlflow`, made by its `make_fixture.py`): ONNX, XGBoost and LightGBM flavours
//! become packages named and typed by their MLflow signature and score as the reference library
//! does; pickled flavours are refused with the export that works.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::AsArray;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use crate::support::*;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/mlflow/{case}"))
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8")
}

/// `id` → value of `column` in a Parquet file or the files of a Delta table.
fn values(files: &[PathBuf], column: &str) -> BTreeMap<i64, f64> {
    let mut out = BTreeMap::new();
    for file in files {
        for batch in read_parquet(file) {
            let ids = batch.column_by_name("id").expect("id");
            let ids = ids.as_primitive::<Int64Type>();
            let v = cast(
                batch.column_by_name(column).expect(column),
                &DataType::Float64,
            )
            .expect("numeric");
            let v = v.as_primitive::<Float64Type>();
            for i in 0..batch.num_rows() {
                out.insert(ids.value(i), v.value(i));
            }
        }
    }
    out
}

/// Inits the MLflow folder `case`, scores its data with `field` of the prediction, and returns
/// the package's card with the largest difference from the golden values.
fn init_and_score(case: &str, field: &str) -> (serde_json::Value, f64) {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let package = dir.path().join("package");
    run(&["model", "init", p(&fixture(case)), "--out", p(&package)]).assert_ok();
    let card = run(&["model", "inspect", p(&package), "--json"])
        .assert_ok()
        .json()["manifest"]
        .clone();
    let inputs: Vec<String> = card["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| i["name"].as_str().expect("name").to_string())
        .collect();
    // The data's columns, in the signature's order (the ONNX case's tensor signature names
    // none: its columns are the data's, in order).
    let data = fixture(&format!("data/{case}.parquet"));
    let schema = read_parquet(&data)[0].schema();
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != "id")
        .collect();
    let arguments = if inputs.iter().all(|i| columns.contains(i)) {
        inputs.join(", ")
    } else {
        columns.join(", ")
    };
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            r#"[job]
name = "mlflow_{case}"

[sources.data]
url = "{}"

[models.m]
uri = "{}"

[query]
sql = "SELECT id, predict('m', {arguments}){field} AS p FROM data"

[output]
url = "out"
"#,
            p(&data),
            p(&package)
        ),
    )
    .expect("write job");
    run(&["run", p(&job), "--json"]).assert_ok();
    let scored = values(&delta_files(&dir.path().join("out"), None), "p");
    let golden = values(&[fixture(&format!("golden/{case}.parquet"))], "expected");
    assert_eq!(scored.len(), golden.len());
    let worst = golden
        .iter()
        .map(|(id, g)| (scored[id] - g).abs() / g.abs().max(1.0))
        .fold(0.0, f64::max);
    (card, worst)
}

#[test]
fn mlflow_models_become_packages_that_score_like_their_library() {
    let (card, worst) = init_and_score("xgboost", "['probability']");
    // Name and version from the MLflow metadata, input names from the signature.
    assert_eq!(card["name"], "cancer");
    assert_eq!(card["version"], "2.1.0");
    assert_eq!(card["inputs"][0]["name"], "mean_radius");
    assert!(
        card["description"]
            .as_str()
            .expect("description")
            .contains("MLflow")
    );
    assert!(worst < 1e-6, "xgboost: {worst}");

    let (card, worst) = init_and_score("lightgbm", "['prediction']");
    assert_eq!(card["inputs"][2]["name"], "bmi");
    // Float32 output: the library's double, rounded once.
    assert!(worst < 1e-6, "lightgbm: {worst}");

    let (card, worst) = init_and_score("onnx", "");
    assert_eq!(card["format"], "onnx");
    assert!(worst < 1e-5, "onnx: {worst}");
}

#[test]
fn pickled_or_binary_mlflow_models_are_refused_with_the_export_that_works() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let refused = run(&[
        "model",
        "init",
        p(&fixture("sklearn")),
        "--out",
        p(&dir.path().join("a")),
    ]);
    refused.assert_code(6);
    assert!(
        refused.stderr.contains("pickle") && refused.stderr.contains("skl2onnx"),
        "{}",
        refused.stderr
    );
    let binary = run(&[
        "model",
        "init",
        p(&fixture("xgboost_ubj")),
        "--out",
        p(&dir.path().join("b")),
    ]);
    binary.assert_code(6);
    assert!(
        binary.stderr.contains("model_format=\"json\""),
        "{}",
        binary.stderr
    );
    assert!(!dir.path().join("a").exists() && !dir.path().join("b").exists());
}
