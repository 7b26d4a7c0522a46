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

/// Customer ids of a day whose features break the model's contract (a null, a NaN, an infinity,
/// or a value outside the manifest's declared range), each with the reason and the first input
/// that breaks it, in the manifest's order of inputs: computed here from the data and the
/// manifest, independently of the engine.
fn broken_reasons(dir: &Path, day: &str) -> BTreeMap<i64, (&'static str, String)> {
    let manifest: toml::Value =
        toml::from_str(&fs::read_to_string(dir.join("models/churn/model.toml")).expect("manifest"))
            .expect("toml");
    let inputs = manifest["inputs"].as_array().expect("inputs");
    let mut broken = BTreeMap::new();
    for batch in read_parquet(&dir.join(format!("data/features/ds={day}/part-0.parquet"))) {
        let ids = batch
            .column_by_name("customer_id")
            .expect("id")
            .as_primitive::<Int64Type>()
            .clone();
        for row in 0..batch.num_rows() {
            let first = inputs.iter().find_map(|input| {
                let name = input["name"].as_str().expect("name");
                let col = batch.column_by_name(name).expect("feature");
                let col = col.as_primitive::<Float32Type>();
                let v = f64::from(col.value(row));
                let bound = |key: &str| input.get(key).and_then(|m| m.as_float());
                let reason = if col.is_null(row) {
                    "null"
                } else if v.is_nan() {
                    "nan"
                } else if v.is_infinite() {
                    "infinite"
                } else if bound("min").is_some_and(|m| v < m) {
                    "below_min"
                } else if bound("max").is_some_and(|m| v > m) {
                    "above_max"
                } else {
                    return None;
                };
                Some((reason, name.to_string()))
            });
            if let Some(first) = first {
                broken.insert(ids.value(row), first);
            }
        }
    }
    broken
}

/// Customer ids of a day whose features break the model's contract.
fn broken_rows(dir: &Path, day: &str) -> Vec<i64> {
    broken_reasons(dir, day).into_keys().collect()
}

/// `counts` keyed by name, from the manifest's `rows.models.<model>.<field>` object.
fn manifest_counts(
    manifest: &serde_json::Value,
    model: &str,
    field: &str,
) -> BTreeMap<String, u64> {
    manifest["rows"]["models"][model][field]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().expect("a count")))
                .collect()
        })
        .unwrap_or_default()
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
    // Each reason and each first failing input, counted as computed from the data here.
    let why = broken_reasons(dir.path(), DAYS[2]);
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut inputs: BTreeMap<String, u64> = BTreeMap::new();
    for (reason, input) in why.values() {
        *reasons.entry(reason.to_string()).or_default() += 1;
        *inputs.entry(input.clone()).or_default() += 1;
    }
    assert!(
        reasons.len() >= 2,
        "the demo breaks rows in more than one way: {reasons:?}"
    );
    assert_eq!(manifest_counts(&manifest, "churn", "reasons"), reasons);
    assert_eq!(manifest_counts(&manifest, "churn", "inputs"), inputs);
    assert_eq!(
        manifest["rows"]["models"]["churn"]["unscored"].as_u64(),
        Some(expected.len() as u64)
    );
}

/// The feature arguments of the demo query's model call (`tenure_months, …`).
fn demo_features(dir: &Path) -> String {
    let original = fs::read_to_string(dir.join("churn.sql")).expect("sql");
    original
        .split("'churn',")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("feature list")
        .to_string()
}

/// The demo's query with its prediction written as `template` (`{p}` is the model call) and
/// filtered by `filter` (besides the day).
fn demo_query_with(dir: &Path, template: &str, filter: &str) {
    let sql = dir.join("churn.sql");
    let call = format!("predict('churn',{})", demo_features(dir));
    fs::write(
        &sql,
        format!(
            "SELECT customer_id, region, {} AS churn_probability, ds FROM features WHERE ds = $ds{}",
            template.replace("{p}", &call),
            filter.replace("{p}", &call)
        ),
    )
    .expect("write sql");
}

/// The quality gate sees every unscored row, whatever the query does with the prediction
/// afterwards: rounding, COALESCE, arithmetic, or dropping the rows in WHERE. Before, each of
/// these made the count 0 and let any `max_unscored_fraction` pass.
#[test]
fn unscored_counts_do_not_depend_on_what_the_query_does_with_the_prediction() {
    let dir = demo_copy();
    let expected = broken_rows(dir.path(), DAYS[2]).len() as u64;
    assert!(expected > 0);
    edit(
        &dir.path().join("churn.toml"),
        "max_unscored_fraction = 0.01",
        "max_unscored_fraction = 0.0",
    );
    let cases = [
        // Cast back to the committed column type: the table keeps one schema.
        ("CAST(ROUND({p}, 2) AS FLOAT)", ""),
        ("CAST(COALESCE({p}, 0.5) AS FLOAT)", ""),
        ("CAST({p} * 1.0 AS FLOAT)", ""),
        ("{p}", " AND {p} > 0.5"),
        ("{p}", " AND {p} IS NOT NULL"),
    ];
    for (template, filter) in cases {
        demo_query_with(dir.path(), template, filter);
        let r = run(&[
            "run",
            &job(dir.path()),
            "--param",
            &format!("ds={}", DAYS[2]),
            "--json",
        ]);
        r.assert_code(4);
        let m = r.json();
        assert_eq!(
            m["rows"]["unscored"].as_u64(),
            Some(expected),
            "{template}{filter}: {}",
            m["rows"]
        );
        assert_eq!(m["status"], "rejected_by_checks", "{template}{filter}");
        assert!(
            r.stderr.contains("max_unscored_fraction"),
            "{template}{filter}: {}",
            r.stderr
        );
    }
    assert!(
        !dir.path()
            .join("out/churn_scores/_delta_log/00000000000000000001.json")
            .exists(),
        "no run published"
    );
}

/// A float column by the row's `id` (`None` for NULL).
fn floats_by_id(batches: &[arrow::array::RecordBatch], column: &str) -> BTreeMap<i64, Option<f32>> {
    let mut out = BTreeMap::new();
    for batch in batches {
        let ids = batch
            .column_by_name("id")
            .expect("id")
            .as_primitive::<Int64Type>();
        let values = batch
            .column_by_name(column)
            .unwrap_or_else(|| panic!("no column {column}"))
            .as_primitive::<Float32Type>();
        for i in 0..batch.num_rows() {
            out.insert(ids.value(i), values.is_valid(i).then(|| values.value(i)));
        }
    }
    out
}

/// Field access on a multi-output model's struct counts the rows the model left unscored.
#[test]
fn field_access_on_a_multi_output_prediction_counts_unscored_rows() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mlp");
    let dir = tempfile::TempDir::new().expect("temp");
    copy_dir(&fixture, dir.path());
    let job = dir.path().join("classifier.toml");
    edit(
        &job,
        "predict('classifier', x0, x1, x2, x3, x4, x5) AS prediction",
        "predict('classifier', CASE WHEN id % 10 = 3 THEN NULL ELSE x0 END, x1, x2, x3, x4, x5)['p_b'] AS p_b",
    );
    fs::write(
        &job,
        fs::read_to_string(&job).expect("job") + "\n[checks]\nmax_unscored_fraction = 0.0\n",
    )
    .expect("write job");
    let ids: Vec<i64> = data_files(&dir.path().join("data"))
        .iter()
        .flat_map(|f| read_parquet(f))
        .flat_map(|b| {
            b.column_by_name("id")
                .expect("id")
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    let expected = ids.iter().filter(|id| *id % 10 == 3).count() as u64;
    assert!(expected > 0);
    let r = run(&["run", job.to_str().expect("utf-8"), "--json"]);
    r.assert_code(4);
    let m = r.json();
    assert_eq!(
        m["rows"]["unscored"].as_u64(),
        Some(expected),
        "{}",
        m["rows"]
    );
    assert_eq!(
        manifest_counts(&m, "classifier", "reasons"),
        BTreeMap::from([("null".to_string(), expected)])
    );
    assert_eq!(
        manifest_counts(&m, "classifier", "inputs"),
        BTreeMap::from([("x0".to_string(), expected)])
    );
}

/// A graph with an Imputer receives missing values as NaN; where it passes one through to its
/// output, onnxruntime returns NaN. scorch returns NULL for exactly those rows and counts them
/// as non-finite predictions.
#[test]
fn non_finite_predictions_of_an_imputing_graph_are_null_and_counted() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/imputer");
    let dir = tempfile::TempDir::new().expect("temp");
    copy_dir(&fixture, dir.path());
    let job = dir.path().join("partial_imputer.toml");
    let r = run(&["run", job.to_str().expect("utf-8"), "--json"]);
    r.assert_ok();
    let golden = floats_by_id(
        &read_parquet(&dir.path().join("golden/partial_imputer.parquet")),
        "value",
    );
    let nan_rows = golden.values().flatten().filter(|v| v.is_nan()).count() as u64;
    assert!(nan_rows > 0, "the fixture must make NaN predictions");
    let batches: Vec<_> = data_files(&dir.path().join("out/partial_imputer"))
        .iter()
        .flat_map(|f| read_parquet(f))
        .collect();
    let ours = floats_by_id(&batches, "prediction");
    assert_eq!(ours.len(), golden.len());
    for (id, want) in &golden {
        let want = want.expect("onnxruntime returns a value for every row");
        match ours[id] {
            None => assert!(
                want.is_nan(),
                "row {id}: NULL where onnxruntime gave {want}"
            ),
            Some(have) => assert!(
                (have - want).abs() <= 1e-5 * want.abs().max(1.0),
                "row {id}: {have} vs {want}"
            ),
        }
    }
    let m = r.json();
    assert_eq!(m["rows"]["unscored"].as_u64(), Some(nan_rows));
    assert_eq!(
        manifest_counts(&m, "partial_imputer", "reasons"),
        BTreeMap::from([("non_finite_prediction".to_string(), nan_rows)])
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
    let features = demo_features(dir.path());
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
