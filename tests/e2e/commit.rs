//! The Parquet mode's commit protocol: idempotent reruns, partition overwrite, crash safety.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::*;

fn job(dir: &Path) -> String {
    dir.join("churn.toml").to_str().expect("utf-8").to_string()
}

fn score(dir: &Path, ds: &str) -> Run {
    run(&["run", &job(dir), "--param", &format!("ds={ds}"), "--json"])
}

#[test]
fn rerunning_an_interval_replaces_it_exactly() {
    let (dir, out) = parquet_demo();
    let first = score(dir.path(), DAYS[2]);
    first.assert_ok();
    let first_manifest = first.json();
    let rows1 = read_scores(&out);
    assert!(!rows1.is_empty());
    assert_eq!(
        rows1.len() as u64,
        first_manifest["rows"]["written"].as_u64().expect("written")
    );

    let second = score(dir.path(), DAYS[2]);
    second.assert_ok();
    let rows2 = read_scores(&out);

    // Same rows, same predictions, same data fingerprint; no duplicates; a new run id.
    assert_eq!(rows1.len(), rows2.len());
    let ids: BTreeSet<(String, i64)> = rows2
        .iter()
        .map(|r| (r.ds.clone(), r.customer_id))
        .collect();
    assert_eq!(ids.len(), rows2.len(), "duplicate rows after a rerun");
    for (a, b) in rows1.iter().zip(&rows2) {
        assert_eq!(
            (a.customer_id, a.probability, &a.data_sha256),
            (b.customer_id, b.probability, &b.data_sha256)
        );
        assert_ne!(a.run_id, b.run_id);
    }
    assert_eq!(second.json()["data_sha256"], first_manifest["data_sha256"]);

    let log = run(&["log", out.to_str().expect("utf-8"), "--json"]);
    log.assert_ok();
    let log = log.json();
    assert_eq!(log["published_version"], 2);
    let commits = log["commits"].as_array().expect("commits");
    assert_eq!(
        commits[1]["remove"].as_array().expect("remove").len(),
        commits[0]["add"].as_array().expect("add").len()
    );
    assert!(out.join("_SUCCESS").exists());
    // The staging prefix is gone after publishing.
    assert!(snapshot(&out.join("_scorch/staging")).is_empty());
}

#[test]
fn overwrite_leaves_other_partitions_untouched() {
    let (dir, out) = parquet_demo();
    score(dir.path(), DAYS[1]).assert_ok();
    score(dir.path(), DAYS[2]).assert_ok();
    let day1_before = snapshot(&out.join(format!("ds={}", DAYS[1])));
    let day2_before: Vec<ScoreRow> = read_scores(&out)
        .into_iter()
        .filter(|r| r.ds == DAYS[2])
        .collect();
    score(dir.path(), DAYS[2]).assert_ok();
    assert_eq!(
        snapshot(&out.join(format!("ds={}", DAYS[1]))),
        day1_before,
        "another partition changed"
    );
    let rows = read_scores(&out);
    let day2_after: Vec<&ScoreRow> = rows.iter().filter(|r| r.ds == DAYS[2]).collect();
    assert_eq!(day2_after.len(), day2_before.len());
    assert!(
        day2_after
            .iter()
            .zip(&day2_before)
            .all(|(a, b)| a.run_id != b.run_id && a.probability == b.probability)
    );
}

/// Table state a reader cares about: data files (bytes), the published marker's version, and the
/// number of log entries.
type TableState = (Vec<(String, Vec<u8>)>, Option<u64>, usize);

/// A private demo copy in the Parquet mode, and its output table.
fn parquet_demo() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = demo_copy();
    parquet_mode(dir.path());
    let out = dir.path().join("out/churn_scores");
    (dir, out)
}

/// Runs the job for `ds` with a SIGKILL at `point`, and checks that it died there.
fn killed_at(dir: &Path, ds: &str, point: &str) {
    let killed = run_env(
        &["run", &job(dir), "--param", &format!("ds={ds}")],
        &[("SCORCH_FAILPOINT", point)],
    );
    assert_eq!(killed.signal, Some(9), "{point}: {}", killed.stderr);
}

fn table_state(out: &Path) -> TableState {
    let files = snapshot(out)
        .into_iter()
        .filter(|(k, _)| k.ends_with(".parquet") && !k.starts_with('_'))
        .collect();
    let marker = std::fs::read(out.join("_SUCCESS"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["version"].as_u64());
    let log = snapshot(&out.join("_scorch/log")).len();
    (files, marker, log)
}

/// What a directory reader sees of a churn table: (day, customer, prediction), sorted.
fn reader_view(out: &Path) -> View {
    read_scores(out)
        .into_iter()
        .map(|r| (r.ds, r.customer_id, r.probability))
        .collect()
}

type View = Vec<(String, i64, Option<f32>)>;

/// Asserts two reader views are equal, printing the first difference rather than both tables.
#[track_caller]
fn assert_view(actual: &View, expected: &View, what: &str) {
    if actual == expected {
        return;
    }
    let first = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    panic!(
        "{what}: {} rows seen, {} expected; first difference at row {first}: {:?} vs {:?}",
        actual.len(),
        expected.len(),
        actual.get(first),
        expected.get(first)
    );
}

/// Makes the job's predictions differ from the baseline's, without changing the schema.
fn change_the_predictions(dir: &Path) {
    edit(
        &dir.join("churn.sql"),
        "tenure_months, monthly_charges",
        "tenure_months + 24, monthly_charges",
    );
}

#[test]
fn sigkill_at_every_step_leaves_the_committed_table_intact() {
    // The outcome a reader must see once publishing is over: the day rescored by the changed
    // job, the other day as it was.
    let reference = demo_copy();
    parquet_mode(reference.path());
    score(reference.path(), DAYS[1]).assert_ok();
    change_the_predictions(reference.path());
    score(reference.path(), DAYS[2]).assert_ok();
    let rolled_forward = reader_view(&reference.path().join("out/churn_scores"));

    let before_commit = ["before-write", "staged", "before-commit"];
    let after_commit = [
        "committed",
        "publish-start",
        "publish-first-file",
        "publish-before-success",
        "published",
    ];
    for point in before_commit.iter().chain(&after_commit) {
        let (dir, out) = parquet_demo();
        score(dir.path(), DAYS[1]).assert_ok();
        score(dir.path(), DAYS[2]).assert_ok();
        let committed = table_state(&out);
        let old = reader_view(&out);
        assert_ne!(old, rolled_forward, "the two runs must be told apart");
        let day1 = snapshot(&out.join(format!("ds={}", DAYS[1])));

        change_the_predictions(dir.path());
        let killed = run_env(
            &[
                "run",
                &job(dir.path()),
                "--param",
                &format!("ds={}", DAYS[2]),
            ],
            &[("SCORCH_FAILPOINT", point)],
        );
        assert_eq!(
            killed.signal,
            Some(9),
            "{point}: expected SIGKILL\n{}",
            killed.stderr
        );
        // The untouched partition never changes, whatever the crash point.
        assert_eq!(
            snapshot(&out.join(format!("ds={}", DAYS[1]))),
            day1,
            "{point}: other partition changed"
        );

        // Right after the kill: while `_SUCCESS` names a version, the folder holds exactly it.
        let (_, marker, log) = table_state(&out);
        if before_commit.contains(point) {
            assert_eq!(
                table_state(&out),
                committed,
                "{point}: committed table changed"
            );
            assert_view(&reader_view(&out), &old, point);
        } else {
            assert_eq!(log, committed.2 + 1, "{point}: the commit point was passed");
            match marker {
                Some(v) if v == committed.1.expect("published") => assert_view(
                    &reader_view(&out),
                    &old,
                    &format!("{point}: _SUCCESS names the old version"),
                ),
                Some(v) => {
                    assert_eq!(v as usize, log, "{point}");
                    assert_view(
                        &reader_view(&out),
                        &rolled_forward,
                        &format!("{point}: _SUCCESS names the new version"),
                    )
                }
                None => {} // publishing was interrupted: readers wait for _SUCCESS
            }
        }

        // Recovery: gc rolls an interrupted publish forward and removes orphaned staging files.
        let gc = gc_everything(&out);
        gc.assert_ok();
        assert!(
            snapshot(&out.join("_scorch/staging")).is_empty(),
            "{point}: staging left after gc"
        );
        let expected = if before_commit.contains(point) {
            &old
        } else {
            &rolled_forward
        };
        assert_view(
            &reader_view(&out),
            expected,
            &format!(
                "{point}: after recovery the reader sees {}",
                if before_commit.contains(point) {
                    "the old version"
                } else {
                    "the committed new version"
                }
            ),
        );
        let (_, marker, log) = table_state(&out);
        assert_eq!(
            marker,
            Some(log as u64),
            "{point}: _SUCCESS must name the newest version after recovery"
        );

        // And the next run works normally.
        score(dir.path(), DAYS[2]).assert_ok();
        assert_view(
            &reader_view(&out),
            &rolled_forward,
            &format!("{point}: after a clean rerun"),
        );
    }
}

#[test]
fn sigkill_at_random_moments_never_corrupts_the_table() {
    let (dir, out) = parquet_demo();
    // Small batches on one partition stretch a run so that kills land in every phase.
    let args = [
        "run".to_string(),
        job(dir.path()),
        "--param".into(),
        format!("ds={}", DAYS[2]),
        "--batch-size".into(),
        "64".into(),
        "--target-partitions".into(),
        "1".into(),
    ];
    let started = std::time::Instant::now();
    let baseline: Run = scorch().args(&args).output().expect("baseline run").into();
    baseline.assert_ok();
    let full = started.elapsed();
    let expected: Vec<(String, i64, Option<f32>)> = read_scores(&out)
        .into_iter()
        .map(|r| (r.ds, r.customer_id, r.probability))
        .collect();
    assert!(!expected.is_empty());
    for percent in [3u32, 10, 25, 40, 55, 70, 80, 90, 97] {
        let mut child = scorch()
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(full * percent / 100);
        let _ = child.kill();
        let _ = child.wait();
        gc_everything(&out).assert_ok();
        let now: Vec<(String, i64, Option<f32>)> = read_scores(&out)
            .into_iter()
            .map(|r| (r.ds, r.customer_id, r.probability))
            .collect();
        assert_eq!(
            now.len(),
            expected.len(),
            "row count differs after a kill at {percent}% of a run"
        );
        assert!(
            now == expected,
            "table differs after a kill at {percent}% of a run"
        );
    }
}

#[test]
fn append_mode_adds_rows() {
    let dir = demo_copy();
    parquet_mode(dir.path());
    let job_file = dir.path().join("churn.toml");
    edit(&job_file, "mode = \"overwrite\"", "mode = \"append\"");
    let out = dir.path().join("out/churn_scores");
    score(dir.path(), DAYS[2]).assert_ok();
    let once = read_scores(&out).len();
    score(dir.path(), DAYS[2]).assert_ok();
    assert_eq!(read_scores(&out).len(), 2 * once);
}

#[test]
fn a_version_committed_by_a_run_that_died_is_published_by_the_next_and_kept_by_gc() {
    let (dir, out) = parquet_demo();
    score(dir.path(), DAYS[0]).assert_ok();
    // Run A commits day 1 and dies before publishing it.
    killed_at(dir.path(), DAYS[1], "committed");
    let (_, marker, log) = table_state(&out);
    assert_eq!(
        (marker, log),
        (Some(1), 2),
        "A committed, nothing published"
    );
    assert!(
        !reader_view(&out).iter().any(|r| r.0 == DAYS[1]),
        "A's day is not visible before it is published"
    );
    // Run B commits day 2 and publishes: every committed version up to its own, in order.
    score(dir.path(), DAYS[2]).assert_ok();
    let (_, marker, log) = table_state(&out);
    assert_eq!((marker, log), (Some(3), 3));
    let days =
        |out: &Path| -> BTreeSet<String> { read_scores(out).into_iter().map(|r| r.ds).collect() };
    assert_eq!(days(&out), DAYS.iter().map(|d| d.to_string()).collect());
    let published = reader_view(&out);

    // gc with no window: A's files are the table's, so nothing is lost.
    gc_everything(&out).assert_ok();
    assert_view(&reader_view(&out), &published, "after gc");
    let report = read_with(
        "read_output.py",
        &[out.to_str().expect("utf-8"), "--no-spark"],
    );
    for reader in ["pyarrow", "duckdb"] {
        assert_eq!(report[reader]["rows"], published.len(), "{reader}");
        assert_eq!(report[reader]["distinct_keys"], published.len(), "{reader}");
    }
}

#[test]
fn a_recursive_glob_never_reads_the_files_of_an_unpublished_run() {
    for point in ["staged", "committed"] {
        let (dir, out) = parquet_demo();
        score(dir.path(), DAYS[1]).assert_ok();
        let published = reader_view(&out);
        killed_at(dir.path(), DAYS[2], point);
        assert!(
            !snapshot(&out.join("_scorch/staging")).is_empty(),
            "{point}: the killed run left staged files (the case under test)"
        );
        // DuckDB's `**` descends into `_scorch/staging`: staged files are not `*.parquet`.
        let report = read_with(
            "read_output.py",
            &[out.to_str().expect("utf-8"), "--no-spark"],
        );
        for reader in ["pyarrow", "duckdb"] {
            assert_eq!(
                report[reader]["rows"],
                published.len(),
                "{point}: {reader} read unpublished rows"
            );
            assert_eq!(
                report[reader]["days"],
                serde_json::json!([DAYS[1]]),
                "{point}"
            );
        }
    }
}

#[test]
fn success_never_moves_backwards_when_publishes_finish_out_of_order() {
    let (dir, out) = parquet_demo();
    score(dir.path(), DAYS[0]).assert_ok();
    let barrier = tempfile::TempDir::new().expect("temp");
    let at = |point: &str| format!("{point}:{}:2", barrier.path().display());
    let start = |day: &str, rendezvous: String| {
        scorch()
            .args(["run", &job(dir.path()), "--param", &format!("ds={day}")])
            .env("SCORCH_RENDEZVOUS", rendezvous)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    // A commits version 2 and publishes it, but writes `_SUCCESS` only once B is done ...
    let a = start(DAYS[1], at("publish-before-success"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !out.join(format!("_scorch/published/{:020}", 2)).exists() {
        assert!(std::time::Instant::now() < deadline, "A never published");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // ... B commits version 3, publishes it and writes `_SUCCESS` first.
    let b = start(DAYS[2], at("published"));
    let b: Run = b.wait_with_output().expect("wait").into();
    let a: Run = a.wait_with_output().expect("wait").into();
    a.assert_ok();
    b.assert_ok();
    let (_, marker, log) = table_state(&out);
    assert_eq!(log, 3);
    assert_eq!(marker, Some(3), "A's late `_SUCCESS` moved the marker back");
    assert_eq!(
        read_scores(&out)
            .into_iter()
            .map(|r| r.ds)
            .collect::<BTreeSet<_>>()
            .len(),
        3
    );
}

#[test]
fn a_version_that_cannot_be_published_names_the_repair_which_then_works() {
    let (dir, out) = parquet_demo();
    score(dir.path(), DAYS[0]).assert_ok();
    killed_at(dir.path(), DAYS[1], "committed");
    // A's staged files are lost (a bucket lifecycle rule, a hand-made cleanup).
    std::fs::remove_dir_all(out.join("_scorch/staging")).expect("remove staging");

    let b = score(dir.path(), DAYS[2]);
    b.assert_code(5);
    assert!(
        b.stderr.contains("is neither staged nor published")
            && b.stderr.contains("--repair --apply"),
        "{}",
        b.stderr
    );
    // Nothing a reader sees changed.
    assert_eq!(
        read_scores(&out)
            .into_iter()
            .map(|r| r.ds)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([DAYS[0].to_string()])
    );

    let repair = run(&[
        "gc",
        out.to_str().expect("utf-8"),
        "--repair",
        "--apply",
        "--json",
    ]);
    repair.assert_ok();
    assert_eq!(
        repair.json()["lost_files_dropped"]
            .as_array()
            .expect("dropped")
            .len(),
        1,
        "{}",
        repair.stdout
    );
    // B stopped before committing (a run first publishes what others left); after the repair
    // the table publishes again, without A's lost day, and the next runs work.
    let days: BTreeSet<String> = read_scores(&out).into_iter().map(|r| r.ds).collect();
    assert_eq!(days, BTreeSet::from([DAYS[0].to_string()]));
    let (_, marker, log) = table_state(&out);
    assert_eq!(marker, Some(log as u64));
    score(dir.path(), DAYS[2]).assert_ok();
    score(dir.path(), DAYS[1]).assert_ok();
    assert_eq!(
        read_scores(&out)
            .into_iter()
            .map(|r| r.ds)
            .collect::<BTreeSet<_>>()
            .len(),
        3
    );
}
