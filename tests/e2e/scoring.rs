//! What gets scored and how: contract violations, determinism, empty input, golden outputs.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float32Type, Int64Type};

use crate::support::*;

fn job(dir: &Path) -> String {
    dir.join("churn.toml").to_str().expect("utf-8").to_string()
}

/// Customer ids of a day whose features break the model's contract: a null, a NaN, or a value
/// outside the manifest's declared range.
fn broken_rows(dir: &Path, day: &str) -> Vec<i64> {
    let manifest: toml::Value =
        toml::from_str(&fs::read_to_string(dir.join("models/churn/model.toml")).expect("manifest"))
            .expect("toml");
    let inputs = manifest["inputs"].as_array().expect("inputs");
    let mut broken = Vec::new();
    for batch in read_parquet(&dir.join(format!("data/features/ds={day}/part-0.parquet"))) {
        let ids = batch
            .column_by_name("customer_id")
            .expect("id")
            .as_primitive::<Int64Type>()
            .clone();
        for row in 0..batch.num_rows() {
            let bad = inputs.iter().any(|input| {
                let name = input["name"].as_str().expect("name");
                let col = batch.column_by_name(name).expect("feature");
                let col = col.as_primitive::<Float32Type>();
                let v = f64::from(col.value(row));
                col.is_null(row)
                    || !v.is_finite()
                    || input
                        .get("min")
                        .and_then(|m| m.as_float())
                        .is_some_and(|m| v < m)
                    || input
                        .get("max")
                        .and_then(|m| m.as_float())
                        .is_some_and(|m| v > m)
            });
            if bad {
                broken.push(ids.value(row));
            }
        }
    }
    broken.sort();
    broken
}

#[test]
fn rows_breaking_the_input_contract_get_null_and_are_counted() {
    let dir = demo_copy();
    let r = run(&[
        "run",
        &job(dir.path()),
        "--param",
        &format!("ds={}", DAYS[2]),
        "--json",
    ]);
    r.assert_ok();
    let manifest = r.json();
    let rows = read_scores(&dir.path().join("out/churn_scores"));
    let nulls: Vec<i64> = rows
        .iter()
        .filter(|r| r.probability.is_none())
        .map(|r| r.customer_id)
        .collect();
    let expected = broken_rows(dir.path(), DAYS[2]);
    assert!(
        !expected.is_empty(),
        "the demo data must contain broken rows for this test to mean anything"
    );
    assert_eq!(nulls, expected);
    assert_eq!(
        manifest["rows"]["unscored"].as_u64(),
        Some(expected.len() as u64)
    );
    assert!(
        rows.iter()
            .filter_map(|r| r.probability)
            .all(|p| (0.0..=1.0).contains(&p))
    );
}

#[test]
fn unscored_rows_past_the_threshold_fail_the_quality_gate() {
    let dir = demo_copy();
    run(&[
        "run",
        &job(dir.path()),
        "--param",
        &format!("ds={}", DAYS[1]),
    ])
    .assert_ok();
    let out = dir.path().join("out/churn_scores");
    let before = snapshot(&out);
    edit(
        &dir.path().join("churn.toml"),
        "max_unscored_fraction = 0.01",
        "max_unscored_fraction = 0.0",
    );
    let r = run(&[
        "run",
        &job(dir.path()),
        "--param",
        &format!("ds={}", DAYS[2]),
    ]);
    r.assert_code(4);
    assert!(
        r.stderr.contains("max_unscored_fraction") && r.stderr.contains("nothing published"),
        "{}",
        r.stderr
    );
    let after = snapshot(&out);
    // The rejected run leaves its manifest for the record, and nothing else.
    let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert_eq!(added.len(), 1, "{added:?}");
    assert!(added[0].starts_with("_scorch/runs/"));
    assert!(before.iter().all(|(k, v)| after.get(k) == Some(v)));
}

#[test]
fn predictions_do_not_depend_on_parallelism_or_batch_size() {
    let dir = demo_copy();
    let out = dir.path().join("out/churn_scores");
    let mut seen = Vec::new();
    for (partitions, batch) in [("1", "8192"), ("4", "1000"), ("2", "37")] {
        let r = run(&[
            "run",
            &job(dir.path()),
            "--param",
            &format!("ds={}", DAYS[2]),
            "--target-partitions",
            partitions,
            "--batch-size",
            batch,
            "--json",
        ]);
        r.assert_ok();
        let rows: Vec<(i64, Option<f32>)> = read_scores(&out)
            .into_iter()
            .map(|r| (r.customer_id, r.probability))
            .collect();
        seen.push((rows, r.json()["data_sha256"].clone()));
    }
    // Same rows, same fingerprint; values equal up to float rounding: the matrix kernels block
    // rows differently for different batch shapes, which can change the last bit of a sum.
    for other in &seen[1..] {
        assert_eq!(other.1, seen[0].1);
        assert_eq!(other.0.len(), seen[0].0.len());
        for (a, b) in other.0.iter().zip(&seen[0].0) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.is_some(), b.1.is_some(), "customer {}", a.0);
            if let (Some(x), Some(y)) = (a.1, b.1) {
                assert!((x - y).abs() <= 1e-6, "customer {}: {x} vs {y}", a.0);
            }
        }
    }
}

#[test]
fn stamps_are_in_every_row_and_every_footer() {
    let dir = demo_copy();
    let r = run(&[
        "run",
        &job(dir.path()),
        "--param",
        &format!("ds={}", DAYS[2]),
        "--json",
    ]);
    r.assert_ok();
    let m = r.json();
    let out = dir.path().join("out/churn_scores");
    let rows = read_scores(&out);
    let sha = m["models"][0]["sha256"].as_str().expect("sha");
    for row in &rows {
        assert_eq!(row.model.as_deref(), Some("churn"));
        assert_eq!(row.model_version.as_deref(), Some("1.0.0"));
        assert_eq!(row.model_sha256.as_deref(), Some(sha));
        assert_eq!(row.data_sha256, m["data_sha256"].as_str().expect("data"));
        assert_eq!(row.run_id, m["run_id"].as_str().expect("run id"));
        assert_eq!(row.scored_at, rows[0].scored_at);
    }
    let files = data_files(&out);
    assert!(!files.is_empty());
    for f in files {
        let kv = footer(&f);
        assert_eq!(kv.get("scorch.model_sha256").map(String::as_str), Some(sha));
        assert_eq!(
            kv.get("scorch.data_sha256"),
            m["data_sha256"].as_str().map(str::to_string).as_ref()
        );
        assert_eq!(
            kv.get("scorch.run_id"),
            m["run_id"].as_str().map(str::to_string).as_ref()
        );
    }
    // The data fingerprint covers exactly the one day the scan read.
    let inputs = m["inputs"].as_array().expect("inputs");
    assert_eq!(inputs.len(), 1);
    assert!(
        inputs[0]["url"]
            .as_str()
            .expect("url")
            .contains(&format!("ds={}", DAYS[2]))
    );
}

#[test]
fn data_fingerprint_changes_when_an_input_file_changes() {
    let dir = demo_copy();
    let first = run(&[
        "run",
        &job(dir.path()),
        "--param",
        &format!("ds={}", DAYS[2]),
        "--json",
    ]);
    first.assert_ok();
    let file = dir
        .path()
        .join(format!("data/features/ds={}/part-0.parquet", DAYS[2]));
    let bytes = fs::read(&file).expect("read");
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&file, bytes).expect("rewrite");
    let second = run(&[
        "run",
        &job(dir.path()),
        "--param",
        &format!("ds={}", DAYS[2]),
        "--json",
    ]);
    second.assert_ok();
    assert_ne!(first.json()["data_sha256"], second.json()["data_sha256"]);
}

#[test]
fn an_empty_partition_commits_an_empty_interval() {
    let dir = demo_copy();
    // A day whose snapshot has the schema and no rows.
    let src = dir
        .path()
        .join(format!("data/features/ds={}/part-0.parquet", DAYS[2]));
    let schema = read_parquet(&src)[0].schema();
    let empty_dir = dir.path().join("data/features/ds=2026-11-28");
    fs::create_dir_all(&empty_dir).expect("mkdir");
    let w = parquet::arrow::ArrowWriter::try_new(
        fs::File::create(empty_dir.join("part-0.parquet")).expect("create"),
        schema,
        None,
    )
    .expect("writer");
    w.close().expect("close");

    edit(
        &dir.path().join("churn.toml"),
        "min_rows = 1",
        "min_rows = 0",
    );
    let r = run(&[
        "run",
        &job(dir.path()),
        "--param",
        "ds=2026-11-28",
        "--json",
    ]);
    r.assert_ok();
    let m = r.json();
    assert_eq!(m["rows"]["written"], 0);
    assert_eq!(m["output"]["files"], 0);
    assert!(read_scores(&dir.path().join("out/churn_scores")).is_empty());

    // With the default gate, an empty day is a failure a scheduler sees.
    edit(
        &dir.path().join("churn.toml"),
        "min_rows = 0",
        "min_rows = 1",
    );
    run(&["run", &job(dir.path()), "--param", "ds=2026-11-28"]).assert_code(4);
}

/// Golden test against PyTorch: `tests/fixtures/mlp/make_fixture.py` builds MLPs with torch,
/// saves them as scorch packages and writes torch's own outputs.
#[test]
fn mlp_outputs_match_pytorch() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mlp");
    let dir = tempfile::TempDir::new().expect("temp");
    copy_dir(&fixture, dir.path());
    for (job_name, outputs) in [
        ("regression", vec!["value"]),
        ("classifier", vec!["p_a", "p_b", "p_c"]),
    ] {
        let job_file = dir.path().join(format!("{job_name}.toml"));
        run(&["run", job_file.to_str().expect("utf-8")]).assert_ok();
        let golden: BTreeMap<i64, Vec<f32>> =
            read_parquet(&dir.path().join(format!("golden_{job_name}.parquet")))
                .iter()
                .flat_map(|b| {
                    let ids = b
                        .column_by_name("id")
                        .expect("id")
                        .as_primitive::<Int64Type>()
                        .clone();
                    let cols: Vec<_> = outputs
                        .iter()
                        .map(|o| {
                            b.column_by_name(o)
                                .expect("golden output")
                                .as_primitive::<Float32Type>()
                                .clone()
                        })
                        .collect();
                    (0..b.num_rows())
                        .map(|i| (ids.value(i), cols.iter().map(|c| c.value(i)).collect()))
                        .collect::<Vec<_>>()
                })
                .collect();
        let mut max_err = 0f32;
        let mut seen = 0;
        for file in data_files(&dir.path().join(format!("out/{job_name}"))) {
            for b in read_parquet(&file) {
                let ids = b
                    .column_by_name("id")
                    .expect("id")
                    .as_primitive::<Int64Type>()
                    .clone();
                let pred = b.column_by_name("prediction").expect("prediction").clone();
                for i in 0..b.num_rows() {
                    let values: Vec<f32> = if outputs.len() == 1 {
                        vec![pred.as_primitive::<Float32Type>().value(i)]
                    } else {
                        let s = pred.as_struct();
                        outputs
                            .iter()
                            .map(|o| {
                                s.column_by_name(o)
                                    .expect("field")
                                    .as_primitive::<Float32Type>()
                                    .value(i)
                            })
                            .collect()
                    };
                    let expected = &golden[&ids.value(i)];
                    for (a, e) in values.iter().zip(expected) {
                        max_err = max_err.max((a - e).abs());
                    }
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, golden.len(), "{job_name}: every golden row is scored");
        assert!(
            max_err <= 1e-5,
            "{job_name}: max abs error {max_err} against PyTorch"
        );
    }
}

#[test]
fn predict_works_in_ctes_filters_and_expressions() {
    let dir = demo_copy();
    let all = run(&[
        "run",
        &job(dir.path()),
        "--param",
        &format!("ds={}", DAYS[2]),
    ]);
    all.assert_ok();
    let scores = read_scores(&dir.path().join("out/churn_scores"));
    let expected: Vec<i64> = scores
        .iter()
        .filter(|r| r.probability.is_some_and(|p| p > 0.5))
        .map(|r| r.customer_id)
        .collect();
    assert!(!expected.is_empty());

    // The same model call in a CTE, filtered on the prediction, and inside an expression.
    let sql = dir.path().join("churn.sql");
    let original = fs::read_to_string(&sql).expect("sql");
    let features = original
        .split("'churn',")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("feature list")
        .to_string();
    fs::write(
        &sql,
        format!(
            "WITH scored AS (SELECT *, predict('churn',{features}) AS churn_probability FROM features WHERE ds = $ds)\n\
             SELECT customer_id, region, churn_probability, ds FROM scored\n\
             WHERE churn_probability > 0.5 AND round(predict('churn',{features}) * 100) >= 50"
        ),
    )
    .expect("write sql");
    edit(
        &dir.path().join("churn.toml"),
        "out/churn_scores",
        "out/high_risk",
    );
    run(&[
        "run",
        &job(dir.path()),
        "--param",
        &format!("ds={}", DAYS[2]),
    ])
    .assert_ok();
    let high: Vec<i64> = read_scores(&dir.path().join("out/high_risk"))
        .iter()
        .map(|r| r.customer_id)
        .collect();
    assert_eq!(high, expected);
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["explain", "--help"],
        vec!["validate", "--help"],
        vec!["demo", "--help"],
        vec!["gc", "--help"],
        vec!["log", "--help"],
        vec!["model", "hash", "--help"],
    ] {
        let r = run(&args);
        r.assert_ok();
        assert!(r.stdout.contains("Usage:"), "{args:?}: {}", r.stdout);
    }
    let top = run(&["--help"]);
    assert!(top.stdout.contains("Exit codes"), "{}", top.stdout);
    // A usage error is exit code 2.
    run(&["run"]).assert_code(2);
}
