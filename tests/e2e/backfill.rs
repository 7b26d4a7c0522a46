//! `run --skip-unchanged` and `scorch backfill`: intervals whose inputs, models and query did not
//! change are skipped, the others scored, each committed on its own; the result equals a full
//! backfill.

use std::path::Path;

use crate::support::*;

const WEEK: &str = "2026-11-21..2026-11-27";

/// A seven-day demo, generated for the test.
fn week_demo() -> tempfile::TempDir {
    let dir = tempfile::TempDir::new().expect("temp dir");
    run(&[
        "demo",
        "--dir",
        dir.path().to_str().expect("utf-8"),
        "--rows",
        "7000",
        "--days",
        "7",
        "--epochs",
        "1",
        "--skip-run",
    ])
    .assert_ok();
    dir
}

fn backfill(dir: &Path, range: &str, extra: &[&str]) -> Run {
    let job = dir.join("churn.toml");
    let mut args = vec![
        "backfill",
        job.to_str().expect("utf-8"),
        "--param",
        range,
        "--json",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// Changes the inputs of 2026-11-23 and 2026-11-25: their files replaced by 2026-11-21's rows.
fn change_two_days(dir: &Path) {
    let features = dir.join("data/features");
    for day in ["2026-11-23", "2026-11-25"] {
        std::fs::copy(
            features.join("ds=2026-11-21/part-0.parquet"),
            features.join(format!("ds={day}/part-0.parquet")),
        )
        .expect("replace the day's file");
    }
}

/// Points the demo job at fresh output and rejects tables, for a full run to compare with.
fn write_to_fresh_tables(dir: &Path) {
    let job = dir.join("churn.toml");
    edit(
        &job,
        "url = \"out/churn_scores\"",
        "url = \"out/full_scores\"",
    );
    edit(
        &job,
        "url = \"out/churn_rejects\"",
        "url = \"out/full_rejects\"",
    );
}

/// Statuses by interval.
fn statuses(outcomes: &serde_json::Value) -> Vec<(String, String)> {
    outcomes
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|o| {
            (
                o["interval"].as_str().expect("interval").to_string(),
                o["status"].as_str().expect("status").to_string(),
            )
        })
        .collect()
}

/// (day, customer, prediction, model hash) of every row: what a reader compares.
fn predictions(table: &Path) -> Vec<(String, i64, Option<f32>, Option<String>)> {
    read_scores(table)
        .into_iter()
        .map(|r| (r.ds, r.customer_id, r.probability, r.model_sha256))
        .collect()
}

#[test]
fn a_backfill_rescores_only_the_days_whose_inputs_changed() {
    let dir = week_demo();
    let first = backfill(dir.path(), &format!("ds={WEEK}"), &["--parallel", "2"])
        .assert_ok()
        .json();
    assert!(
        statuses(&first).iter().all(|(_, s)| s == "scored"),
        "{first}"
    );
    let versions: Vec<u64> = first
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|o| o["version"].as_u64().expect("version"))
        .collect();
    let mut distinct = versions.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        7,
        "each interval its own commit: {versions:?}"
    );

    // Nothing changed: all seven skipped, nothing committed.
    let out = dir.path().join("out/churn_scores");
    let before = delta_version(&out);
    let again = backfill(dir.path(), &format!("ds={WEEK}"), &["--skip-unchanged"])
        .assert_ok()
        .json();
    assert!(
        statuses(&again).iter().all(|(_, s)| s == "skipped"),
        "{again}"
    );
    assert_eq!(delta_version(&out), before);

    // Two days' inputs change (their files replaced by another day's rows).
    change_two_days(dir.path());
    let incremental = backfill(dir.path(), &format!("ds={WEEK}"), &["--skip-unchanged"])
        .assert_ok()
        .json();
    let scored: Vec<String> = statuses(&incremental)
        .into_iter()
        .filter(|(_, s)| s == "scored")
        .map(|(d, _)| d)
        .collect();
    assert_eq!(scored, ["2026-11-23", "2026-11-25"], "{incremental}");
    assert_eq!(
        statuses(&incremental)
            .iter()
            .filter(|(_, s)| s == "skipped")
            .count(),
        5
    );

    // The table equals a full backfill of the same inputs into a fresh table.
    write_to_fresh_tables(dir.path());
    backfill(dir.path(), &format!("ds={WEEK}"), &["--parallel", "3"]).assert_ok();
    let full = predictions(&dir.path().join("out/full_scores"));
    assert_eq!(full.len(), 7000);
    assert_eq!(predictions(&out), full);
}

#[test]
fn a_promotion_changes_every_interval_and_failures_are_reported_per_interval() {
    let dir = week_demo();
    let registry = dir.path().join("registry");
    let registry = registry.to_str().expect("utf-8");
    let v2 = dir.path().join("churn-1.1.0");
    copy_dir(&dir.path().join("models/churn"), &v2);
    edit(
        &v2.join("model.toml"),
        "version = \"1.0.0\"",
        "version = \"1.1.0\"",
    );
    for package in [dir.path().join("models/churn"), v2.clone()] {
        run(&[
            "model",
            "publish",
            package.to_str().expect("utf-8"),
            "--registry",
            registry,
        ])
        .assert_ok();
    }
    let promote = |version: &str| {
        run(&[
            "model",
            "promote",
            &format!("churn@{version}"),
            "--alias",
            "champion",
            "--registry",
            registry,
        ])
        .assert_ok();
    };
    promote("1.0.0");
    let job = dir.path().join("churn.toml");
    let text = std::fs::read_to_string(&job).expect("job");
    let start = text.find("uri = \"models/churn\"").expect("uri");
    let end = start + text[start..].find("\n\n").expect("section end");
    std::fs::write(
        &job,
        format!(
            "{}registry = \"{registry}\"\nalias = \"champion\"{}",
            &text[..start],
            &text[end..]
        ),
    )
    .expect("write job");

    backfill(dir.path(), &format!("ds={WEEK}"), &["--skip-unchanged"]).assert_ok();
    promote("1.1.0");
    let after = backfill(dir.path(), &format!("ds={WEEK}"), &["--skip-unchanged"])
        .assert_ok()
        .json();
    assert!(
        statuses(&after).iter().all(|(_, s)| s == "scored"),
        "{after}"
    );
    let sha2 = package_sha(&v2);
    assert!(
        read_scores(&dir.path().join("out/churn_scores"))
            .iter()
            .all(|r| r.model_sha256.as_deref() == Some(sha2.as_str()))
    );

    // A day with no data fails its gate (exit 4); the others still run; the backfill exits 4.
    let mixed = backfill(
        dir.path(),
        "ds=2026-11-26..2026-11-28",
        &["--skip-unchanged"],
    );
    mixed.assert_code(4);
    let outcomes = mixed.json();
    assert_eq!(
        statuses(&outcomes),
        [
            ("2026-11-26".to_string(), "skipped".to_string()),
            ("2026-11-27".to_string(), "skipped".to_string()),
            ("2026-11-28".to_string(), "rejected".to_string()),
        ]
    );
    assert_eq!(outcomes[2]["exit_code"], 4);

    // A range that is not one is a usage error before anything runs.
    backfill(dir.path(), "ds=2026-11-28..2026-11-26", &[]).assert_code(2);
    backfill(dir.path(), "ds=2026-11-26", &[]).assert_code(2);
}

#[test]
fn sigterm_stops_the_interval_in_flight_and_starts_no_other() {
    let dir = week_demo();
    let meet = tempfile::TempDir::new().expect("temp dir");
    let job = dir.path().join("churn.toml");
    let mut c = scorch();
    c.args([
        "backfill",
        job.to_str().expect("utf-8"),
        "--param",
        &format!("ds={WEEK}"),
        "--json",
    ])
    .env(
        "SCORCH_RENDEZVOUS",
        format!("before-write:{}:2", meet.path().display()),
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let child = c.spawn().expect("spawn");
    // The first interval waits at the rendezvous, before writing anything.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_dir(meet.path()).expect("dir").count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "never reached the rendezvous"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    std::fs::write(meet.path().join("go"), "").expect("release");
    let finished: Run = child.wait_with_output().expect("wait").into();
    finished.assert_code(143);
    let outcomes = finished.json();
    let statuses = statuses(&outcomes);
    assert_eq!(statuses[0].1, "failed", "{outcomes}");
    assert!(
        statuses[1..].iter().all(|(_, s)| s == "not_started"),
        "{outcomes}"
    );
    assert_eq!(delta_version(&dir.path().join("out/churn_scores")), Some(0));
}

#[test]
fn one_run_over_many_partitions_rescores_only_those_whose_inputs_changed() {
    let dir = week_demo();
    edit(
        &dir.path().join("churn.sql"),
        "WHERE ds = $ds",
        "WHERE ds >= $ds",
    );
    let job = dir.path().join("churn.toml");
    let job = job.to_str().expect("utf-8");
    let week = [
        "run",
        job,
        "--param",
        "ds=2026-11-21",
        "--skip-unchanged",
        "--json",
    ];
    let first = run(&week).assert_ok().json();
    assert_eq!(
        first["output"]["partitions"]
            .as_array()
            .expect("partitions")
            .len(),
        7
    );
    assert_eq!(first["partition_keys"].as_object().expect("keys").len(), 7);
    assert_eq!(run(&week).assert_ok().json()["status"], "skipped_unchanged");

    change_two_days(dir.path());
    let partial = run(&week).assert_ok().json();
    assert_eq!(partial["status"], "committed");
    assert_eq!(
        partial["output"]["partitions"],
        serde_json::json!(["ds=2026-11-23", "ds=2026-11-25"])
    );
    assert_eq!(
        partial["skipped_partitions"]
            .as_array()
            .expect("skipped")
            .len(),
        5
    );
    assert_eq!(
        partial["inputs"].as_array().expect("inputs").len(),
        2,
        "{partial}"
    );
    assert_eq!(partial["rows"]["written"], 2000);
    // And again: nothing left to do.
    assert_eq!(run(&week).assert_ok().json()["status"], "skipped_unchanged");

    // The table equals a full run of the same inputs into a fresh one.
    let out = dir.path().join("out/churn_scores");
    write_to_fresh_tables(dir.path());
    run(&["run", job, "--param", "ds=2026-11-21"]).assert_ok();
    assert_eq!(
        predictions(&out),
        predictions(&dir.path().join("out/full_scores"))
    );
}
