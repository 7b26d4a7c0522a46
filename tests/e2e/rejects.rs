//! `[output.rejects]`: the rows a model declines are kept with their keys, model, reason and
//! offending value, committed with the output — both or neither, also across a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type};

use crate::support::*;

fn job(dir: &Path) -> String {
    dir.join("churn.toml").to_str().expect("utf-8").to_string()
}

fn score(dir: &Path, ds: &str) -> Run {
    run(&["run", &job(dir), "--param", &format!("ds={ds}"), "--json"])
}

/// One row of the rejects table: (ds, customer) → (model, reason, input, value, run id).
type Rejects = BTreeMap<(String, i64), (String, String, Option<String>, Option<String>, String)>;

fn text(batch: &RecordBatch, name: &str, row: usize) -> Option<String> {
    let column = cast(batch.column_by_name(name).expect(name), &DataType::Utf8).expect("cast");
    let column = column.as_string::<i32>();
    column.is_valid(row).then(|| column.value(row).to_string())
}

/// The rejects table as its Delta log lists it (replayed independently of scorch); a row listed
/// twice fails.
fn read_rejects(table: &Path) -> Rejects {
    let mut rows = Rejects::new();
    for file in delta_files(table, None) {
        for batch in read_parquet(&file) {
            let ids = batch.column_by_name("customer_id").expect("customer_id");
            let ids = ids.as_primitive::<Int64Type>();
            let days = batch.column_by_name("ds").expect("ds");
            let days = days.as_primitive::<Date32Type>();
            for row in 0..batch.num_rows() {
                let day = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")
                    + chrono::Duration::days(i64::from(days.value(row)));
                let key = (day.to_string(), ids.value(row));
                let value = (
                    text(&batch, "model", row).expect("model"),
                    text(&batch, "reason", row).expect("reason"),
                    text(&batch, "input", row),
                    text(&batch, "value", row),
                    text(&batch, "run_id", row).expect("run_id"),
                );
                assert!(
                    rows.insert(key.clone(), value).is_none(),
                    "{key:?} is in the rejects table twice"
                );
            }
        }
    }
    rows
}

/// What the model's contract rejects in day `ds` of the source, computed from the source files
/// and the package's manifest: customer → (reason, first failing input, its value as text).
fn expected_rejects(dir: &Path, ds: &str) -> BTreeMap<i64, (String, String, Option<String>)> {
    let manifest: toml::Value = toml::from_str(
        &std::fs::read_to_string(dir.join("models/churn/model.toml")).expect("manifest"),
    )
    .expect("manifest parses");
    let inputs: Vec<(String, Option<f64>, Option<f64>)> = manifest["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| {
            (
                i["name"].as_str().expect("name").to_string(),
                i.get("min").and_then(toml::Value::as_float),
                i.get("max").and_then(toml::Value::as_float),
            )
        })
        .collect();
    let mut expected = BTreeMap::new();
    let folder = dir.join(format!("data/features/ds={ds}"));
    for entry in std::fs::read_dir(&folder).expect("source folder") {
        for batch in read_parquet(&entry.expect("entry").path()) {
            let ids = batch.column_by_name("customer_id").expect("customer_id");
            let ids = ids.as_primitive::<Int64Type>();
            let columns: Vec<_> = inputs
                .iter()
                .map(|(name, _, _)| {
                    cast(batch.column_by_name(name).expect(name), &DataType::Float64)
                        .expect("numeric")
                })
                .collect();
            for row in 0..batch.num_rows() {
                for ((name, min, max), column) in inputs.iter().zip(&columns) {
                    let values = column.as_primitive::<Float64Type>();
                    let reason = if values.is_null(row) {
                        "null"
                    } else {
                        let v = values.value(row);
                        if v.is_nan() {
                            "nan"
                        } else if v.is_infinite() {
                            "infinite"
                        } else if min.is_some_and(|m| v < m) {
                            "below_min"
                        } else if max.is_some_and(|m| v > m) {
                            "above_max"
                        } else {
                            continue;
                        }
                    };
                    let value = text(&batch, name, row);
                    expected.insert(ids.value(row), (reason.to_string(), name.clone(), value));
                    break;
                }
            }
        }
    }
    expected
}

fn rejects_table(dir: &Path) -> std::path::PathBuf {
    dir.join("out/churn_rejects")
}

/// The rejects table's versions that name run `run_id` in their `commitInfo`.
fn versions_naming(table: &Path, run_id: &str) -> Vec<u64> {
    (0..=delta_version(table).unwrap_or(0))
        .filter(|v| {
            std::fs::read_to_string(table.join(format!("_delta_log/{v:020}.json")))
                .map(|t| t.contains(&format!("\"scorch.run_id\":\"{run_id}\"")))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn rejected_rows_are_kept_with_keys_reason_and_offending_value() {
    for parquet in [false, true] {
        let dir = demo_copy();
        if parquet {
            parquet_mode(dir.path());
        }
        // Filtering the prediction away keeps the rejected rows out of the output, not out of
        // the rejects: the function keeps them where it declines them.
        let sql = dir.path().join("churn.sql");
        let scored = std::fs::read_to_string(&sql).expect("sql");
        std::fs::write(
            &sql,
            format!("SELECT * FROM ({scored}) AS s WHERE ROUND(churn_probability, 3) IS NOT NULL"),
        )
        .expect("write sql");
        let mut expected_rows = 0;
        let mut runs = BTreeMap::new();
        for ds in DAYS {
            let manifest = score(dir.path(), ds).assert_ok().json();
            let summary = &manifest["rejects"];
            let unscored = manifest["rows"]["unscored"].as_u64().expect("unscored");
            assert_eq!(summary["rows"].as_u64(), Some(unscored), "{manifest}");
            assert!(summary["version"].as_u64().is_some(), "{manifest}");
            expected_rows += unscored;
            runs.insert(ds, manifest["run_id"].as_str().expect("run id").to_string());
        }
        let kept = read_rejects(&rejects_table(dir.path()));
        assert_eq!(kept.len() as u64, expected_rows, "parquet mode: {parquet}");
        let mut total = 0;
        for ds in DAYS {
            let expected = expected_rejects(dir.path(), ds);
            assert!(!expected.is_empty(), "the demo day {ds} has broken rows");
            total += expected.len();
            for (id, (reason, input, value)) in &expected {
                let (model, got_reason, got_input, got_value, run_id) = kept
                    .get(&(ds.to_string(), *id))
                    .unwrap_or_else(|| panic!("customer {id} of {ds} is not in the rejects"));
                assert_eq!(model, "churn");
                assert_eq!(got_reason, reason, "customer {id}");
                assert_eq!(got_input.as_ref(), Some(input), "customer {id}");
                assert_eq!(got_value, value, "customer {id}");
                assert_eq!(run_id, &runs[ds]);
            }
        }
        assert_eq!(
            kept.len(),
            total,
            "no row is rejected that the contract accepts"
        );
        // The output holds no row without a prediction: the filter removed them.
        assert!(
            read_scores(&dir.path().join("out/churn_scores"))
                .iter()
                .all(|r| r.probability.is_some())
        );
    }
}

#[test]
fn a_run_the_gate_stops_commits_no_rejects_and_leaves_no_files() {
    let dir = demo_copy();
    score(dir.path(), DAYS[0]).assert_ok();
    let table = rejects_table(dir.path());
    let before = snapshot(&table);
    edit(
        &dir.path().join("churn.toml"),
        "max_unscored_fraction = 0.01",
        "max_unscored_fraction = 0.0",
    );
    let rejected = score(dir.path(), DAYS[1]);
    rejected.assert_code(4);
    let run_id = rejected.json()["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    assert!(versions_naming(&table, &run_id).is_empty());
    // Neither a data file nor an in-flight record of the stopped run is left.
    let after = snapshot(&table);
    assert_eq!(
        after.keys().collect::<BTreeSet<_>>(),
        before.keys().collect::<BTreeSet<_>>(),
        "the stopped run left files in the rejects table"
    );
}

#[test]
fn rejects_of_a_run_killed_after_the_output_commit_are_committed_by_the_next_run() {
    for (parquet, point) in [
        (false, "before-rejects-commit"),
        (false, "committed"),
        (true, "published"),
    ] {
        let dir = demo_copy();
        if parquet {
            parquet_mode(dir.path());
        }
        let table = rejects_table(dir.path());
        let output = dir.path().join("out/churn_scores");
        let killed = run_env(
            &[
                "run",
                &job(dir.path()),
                "--param",
                &format!("ds={}", DAYS[0]),
            ],
            &[("SCORCH_FAILPOINT", point)],
        );
        assert_eq!(killed.signal, Some(9), "{point}: {}", killed.stderr);
        // The output committed, and its commit lists the rejects the run wrote.
        let (run_id, listed) = if parquet {
            let log = snapshot(&output.join("_scorch/log"));
            let (_, last) = log.iter().next_back().expect("the output committed");
            let commit: serde_json::Value = serde_json::from_slice(last).expect("commit");
            (
                commit["run_id"].as_str().expect("run id").to_string(),
                commit["run"]["rejects"]["rows"]
                    .as_u64()
                    .expect("rows listed"),
            )
        } else {
            let version = delta_version(&output).expect("the output committed");
            let entry =
                std::fs::read_to_string(output.join(format!("_delta_log/{version:020}.json")))
                    .expect("log entry");
            let info: serde_json::Value = entry
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
                .find(|a| a.get("commitInfo").is_some())
                .expect("commitInfo")["commitInfo"]
                .clone();
            (
                info["scorch.run_id"].as_str().expect("run id").to_string(),
                info["scorch.rejects"]["rows"]
                    .as_u64()
                    .expect("rows listed"),
            )
        };
        assert!(listed > 0);
        assert!(versions_naming(&table, &run_id).is_empty(), "{point}");
        assert!(read_rejects(&table).is_empty());

        // gc keeps the files: the output's commit needs them.
        let gc = gc_everything(&table).assert_ok().json();
        assert!(
            gc["runs_kept"]
                .as_array()
                .expect("runs_kept")
                .iter()
                .any(|r| r == &serde_json::json!(run_id)),
            "{gc}"
        );

        // The next run commits them first, once, then its own.
        let next = score(dir.path(), DAYS[1]).assert_ok().json();
        assert_eq!(versions_naming(&table, &run_id).len(), 1, "{point}");
        let kept = read_rejects(&table);
        let of_killed = kept.values().filter(|v| v.4 == run_id).count() as u64;
        assert_eq!(of_killed, listed);
        let of_next = kept
            .values()
            .filter(|v| Some(v.4.as_str()) == next["run_id"].as_str())
            .count() as u64;
        assert_eq!(Some(of_next), next["rejects"]["rows"].as_u64());
        // And a third run finds nothing left to complete.
        score(dir.path(), DAYS[2]).assert_ok();
        assert_eq!(versions_naming(&table, &run_id).len(), 1);
        assert!(
            !table.join("_scorch/inflight").exists()
                || snapshot(&table.join("_scorch/inflight")).is_empty()
        );
    }
}

#[test]
fn rejects_keys_and_location_are_checked() {
    let dir = demo_copy();
    edit(
        &dir.path().join("churn.toml"),
        "keys = [\"customer_id\", \"ds\"]",
        "keys = [\"customer_id\", \"account\"]",
    );
    let missing = score(dir.path(), DAYS[0]);
    missing.assert_code(2);
    assert!(
        missing
            .stderr
            .contains("`account` is not a column where `predict` is called"),
        "{}",
        missing.stderr
    );
    assert!(missing.stderr.contains("customer_id"), "{}", missing.stderr);

    let dir = demo_copy();
    edit(
        &dir.path().join("churn.toml"),
        "url = \"out/churn_rejects\"",
        "url = \"out/churn_scores/rejects\"",
    );
    let inside = score(dir.path(), DAYS[0]);
    inside.assert_code(2);
    assert!(
        inside.stderr.contains("output.rejects.url") && inside.stderr.contains("own folder"),
        "{}",
        inside.stderr
    );
    assert!(!dir.path().join("out").exists(), "nothing was written");

    // A folder of someone else's files, or a file, is not made a rejects table.
    let dir = demo_copy();
    let rejects = rejects_table(dir.path());
    std::fs::create_dir_all(&rejects).expect("mkdir");
    std::fs::write(rejects.join("notes.csv"), "keep me").expect("write");
    let foreign = score(dir.path(), DAYS[0]);
    foreign.assert_code(2);
    assert!(foreign.stderr.contains("notes.csv"), "{}", foreign.stderr);
    assert_eq!(
        snapshot(&rejects).keys().collect::<Vec<_>>(),
        vec!["notes.csv"]
    );
    assert!(delta_version(&dir.path().join("out/churn_scores")).is_none());
    std::fs::remove_dir_all(&rejects).expect("rm");
    std::fs::write(&rejects, "a file").expect("write");
    score(dir.path(), DAYS[0]).assert_code(2);
}
