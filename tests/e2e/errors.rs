//! Bad input gets a clear error, the documented exit code, and changes nothing.

use std::fs;
use std::path::Path;

use crate::support::*;

fn job(dir: &Path) -> String {
    dir.join("churn.toml").to_str().expect("utf-8").to_string()
}

fn ds(day: &str) -> String {
    format!("ds={day}")
}

#[test]
fn unknown_key_in_job_file() {
    let dir = demo_copy();
    edit(
        &dir.path().join("churn.toml"),
        "partition_by",
        "partiton_by",
    );
    let r = run(&["run", &job(dir.path()), "--param", &ds(DAYS[2])]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("partiton_by") && r.stderr.contains("churn.toml"),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("out").exists(), "nothing may be written");
}

#[test]
fn malformed_toml() {
    let dir = demo_copy();
    edit(&dir.path().join("churn.toml"), "[output]", "[output");
    let r = run(&["validate", &job(dir.path()), "--param", &ds(DAYS[2])]);
    r.assert_code(2);
    assert!(r.stderr.contains("churn.toml"), "{}", r.stderr);
}

#[test]
fn missing_job_file() {
    let r = run(&["run", "/nonexistent/job.toml"]);
    r.assert_code(2);
    assert!(r.stderr.contains("/nonexistent/job.toml"), "{}", r.stderr);
}

#[test]
fn parameter_errors_name_the_parameter() {
    let dir = demo_copy();
    let missing = run(&["run", &job(dir.path())]);
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("`ds`") && missing.stderr.contains("--param ds=<date>"),
        "{}",
        missing.stderr
    );

    let wrong = run(&["run", &job(dir.path()), "--param", "ds=last-tuesday"]);
    wrong.assert_code(2);
    assert!(
        wrong.stderr.contains("`ds`") && wrong.stderr.contains("not a valid date"),
        "{}",
        wrong.stderr
    );

    let unknown = run(&[
        "run",
        &job(dir.path()),
        "--param",
        &ds(DAYS[2]),
        "--param",
        "region=EU",
    ]);
    unknown.assert_code(2);
    assert!(
        unknown.stderr.contains("`region`") && unknown.stderr.contains("declared: ds"),
        "{}",
        unknown.stderr
    );

    let malformed = run(&["run", &job(dir.path()), "--param", "ds"]);
    malformed.assert_code(2);
    assert!(!dir.path().join("out").exists(), "nothing may be written");
}

#[test]
fn query_placeholder_without_a_parameter() {
    let dir = demo_copy();
    edit(
        &dir.path().join("churn.sql"),
        "WHERE ds = $ds",
        "WHERE ds = $ds AND region = $region",
    );
    let r = run(&["run", &job(dir.path()), "--param", &ds(DAYS[2])]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("$region") && r.stderr.contains("[params]"),
        "{}",
        r.stderr
    );
}

#[test]
fn model_input_column_missing_from_the_source_lists_what_exists() {
    let dir = demo_copy();
    // A feature pipeline that stopped producing `age`: rewrite every day without it.
    for day in DAYS {
        let file = dir
            .path()
            .join(format!("data/features/ds={day}/part-0.parquet"));
        let batches = read_parquet(&file);
        let schema = batches[0].schema();
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|i| schema.field(*i).name() != "age")
            .collect();
        let projected: Vec<_> = batches
            .iter()
            .map(|b| b.project(&keep).expect("project"))
            .collect();
        let out = fs::File::create(&file).expect("create");
        let mut w =
            parquet::arrow::ArrowWriter::try_new(out, projected[0].schema(), None).expect("writer");
        for b in &projected {
            w.write(b).expect("write");
        }
        w.close().expect("close");
    }
    for command in ["validate", "run"] {
        let r = run(&[command, &job(dir.path()), "--param", &ds(DAYS[2])]);
        r.assert_code(3);
        assert!(
            r.stderr.contains("`age`")
                && r.stderr.contains("available columns")
                && r.stderr.contains("tenure_months"),
            "{}",
            r.stderr
        );
    }
    assert!(!dir.path().join("out").exists());
}

#[test]
fn model_hash_mismatch_stops_before_scoring() {
    let dir = demo_copy();
    run(&["run", &job(dir.path()), "--param", &ds(DAYS[1])]).assert_ok();
    let out = dir.path().join("out/churn_scores");
    let before = snapshot(&out);

    // Someone retrains the model in place without re-pinning it.
    let weights = dir.path().join("models/churn/weights.safetensors");
    let mut bytes = fs::read(&weights).expect("weights");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&weights, bytes).expect("write");

    for command in ["validate", "run"] {
        let r = run(&[command, &job(dir.path()), "--param", &ds(DAYS[2])]);
        r.assert_code(6);
        assert!(
            r.stderr.contains("SHA-256 mismatch") && r.stderr.contains("`churn`"),
            "{}",
            r.stderr
        );
    }
    assert_eq!(snapshot(&out), before, "a failed run changed the table");
}

#[test]
fn unsafe_model_formats_are_refused() {
    let dir = demo_copy();
    fs::write(dir.path().join("models/churn/model.pkl"), b"\x80\x04\x95").expect("write");
    let r = run(&["validate", &job(dir.path()), "--param", &ds(DAYS[2])]);
    r.assert_code(6);
    assert!(
        r.stderr.contains("model.pkl") && r.stderr.contains("refused"),
        "{}",
        r.stderr
    );
}

#[test]
fn wrong_argument_count_and_type_are_plan_errors() {
    let dir = demo_copy();
    edit(&dir.path().join("churn.sql"), "age, discount_pct", "age");
    let r = run(&["validate", &job(dir.path()), "--param", &ds(DAYS[2])]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("expected 12 features") && r.stderr.contains("discount_pct"),
        "{}",
        r.stderr
    );

    let dir = demo_copy();
    edit(
        &dir.path().join("churn.sql"),
        "age, discount_pct",
        "region, discount_pct",
    );
    let r = run(&["validate", &job(dir.path()), "--param", &ds(DAYS[2])]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("`region`") && r.stderr.contains("input `age` expects float32"),
        "{}",
        r.stderr
    );
}

#[test]
fn unknown_model_name() {
    let dir = demo_copy();
    edit(&dir.path().join("churn.sql"), "'churn'", "'chrun'");
    let r = run(&["validate", &job(dir.path()), "--param", &ds(DAYS[2])]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("unknown model `chrun`") && r.stderr.contains("churn"),
        "{}",
        r.stderr
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = demo_copy();
    let r = run(&[
        "--log-format",
        "json",
        "run",
        &job(dir.path()),
        "--param",
        "ds=bad",
    ]);
    r.assert_code(2);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
}
