//! The output read back by independent readers, as downstream users will.

use crate::support::*;

#[test]
fn pyarrow_duckdb_and_spark_read_the_parquet_mode_with_schema_and_stamps() {
    let dir = demo_copy();
    parquet_mode(dir.path());
    let job = dir.path().join("churn.toml");
    for day in [DAYS[1], DAYS[2]] {
        run(&[
            "run",
            job.to_str().expect("utf-8"),
            "--param",
            &format!("ds={day}"),
        ])
        .assert_ok();
    }
    let out = dir.path().join("out/churn_scores");
    let expected = read_scores(&out);
    let report = read_with("read_output.py", &[out.to_str().expect("utf-8")]);
    for reader in ["pyarrow", "duckdb", "spark"] {
        let r = &report[reader];
        assert_eq!(
            r["rows"].as_u64(),
            Some(expected.len() as u64),
            "{reader}: {r}"
        );
        assert_eq!(r["distinct_keys"], r["rows"], "{reader}: duplicates: {r}");
        assert_eq!(
            r["days"],
            serde_json::json!([DAYS[1], DAYS[2]]),
            "{reader}: {r}"
        );
        assert_eq!(
            r["null_predictions"].as_u64(),
            Some(expected.iter().filter(|r| r.probability.is_none()).count() as u64)
        );
        assert_eq!(r["distinct_run_ids"], 2, "{reader}");
        assert_eq!(
            r["model_sha256"],
            serde_json::json!([expected[0].model_sha256.clone().expect("sha")]),
            "{reader}"
        );
        let sum: f64 = expected
            .iter()
            .filter_map(|r| r.probability)
            .map(f64::from)
            .sum();
        let got = r["probability_sum"].as_f64().expect("sum");
        assert!(
            (got - sum).abs() < 1e-3 * sum.max(1.0),
            "{reader}: {got} vs {sum}"
        );
    }
    let columns = &report["pyarrow"]["columns"];
    assert_eq!(
        columns,
        &serde_json::json!([
            ["customer_id", "int64"],
            ["region", "string"],
            ["churn_probability", "float"],
            ["_model", "string"],
            ["_model_version", "string"],
            ["_model_sha256", "string"],
            ["_data_sha256", "string"],
            ["_run_id", "string"],
            ["_scored_at", "timestamp[us, tz=UTC]"],
            ["ds", "date32[day]"]
        ])
    );
}
