//! Delta Lake output, end to end: every table is read back by two readers scorch does not
//! contain (DuckDB's `delta_scan` and the `deltalake` package, `tests/e2e/read_delta.py`), and
//! by a replay of the log written here, independent of both and of delta-rs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::*;

fn job(dir: &Path) -> String {
    dir.join("churn.toml").to_str().expect("utf-8").to_string()
}

fn table(dir: &Path) -> PathBuf {
    dir.join("out/churn_scores")
}

fn score(dir: &Path, ds: &str) -> Run {
    run(&["run", &job(dir), "--param", &format!("ds={ds}"), "--json"])
}

fn score_env(dir: &Path, ds: &str, env: &[(&str, &str)]) -> Run {
    run_env(
        &["run", &job(dir), "--param", &format!("ds={ds}"), "--json"],
        env,
    )
}

/// What both readers see of `version` (default: the newest), after asserting that they see the
/// same rows, predictions and stamps.
fn readers(table: &Path, version: Option<u64>, by: Option<&str>) -> Value {
    let mut args = vec![table.to_str().expect("utf-8").to_string()];
    if let Some(v) = version {
        args.extend(["--version".to_string(), v.to_string()]);
    }
    if let Some(column) = by {
        args.extend(["--by".to_string(), column.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = read_with("read_delta.py", &args);
    let (duck, lake) = (&report["duckdb"], &report["deltalake"]);
    assert_eq!(
        duck["rows"],
        lake["rows"],
        "DuckDB and deltalake disagree on {}",
        table.display()
    );
    assert!(
        duck == lake,
        "DuckDB and deltalake read different rows of {} (version {version:?})",
        table.display()
    );
    if let Some(v) = version {
        assert_eq!(report["deltalake_version"], v);
    }
    duck.clone()
}

/// Asserts that a readers' view holds exactly the rows the log lists (replayed here), without
/// duplicates.
#[track_caller]
fn assert_matches_log(view: &Value, table: &Path) {
    let rows = read_scores(table);
    assert_eq!(
        view["rows"].as_u64(),
        Some(rows.len() as u64),
        "rows seen by the readers vs listed by the log"
    );
    assert_eq!(
        view["distinct_keys"], view["rows"],
        "duplicate rows: {view}"
    );
    let runs: BTreeSet<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(view["run_ids"], serde_json::json!(runs));
    let seen = view["probabilities"].as_object().expect("probabilities");
    for r in &rows {
        let got = &seen[&format!("{}/{}", r.ds, r.customer_id)];
        assert_eq!(
            got.as_f64().map(|p| p as f32),
            r.probability,
            "{}/{}",
            r.ds,
            r.customer_id
        );
    }
}

fn day_count(view: &Value, day: &str) -> u64 {
    view["days"][day].as_u64().unwrap_or(0)
}

fn change_the_predictions(dir: &Path) {
    edit(
        &dir.join("churn.sql"),
        "tenure_months, monthly_charges",
        "tenure_months + 24, monthly_charges",
    );
}

/// The id of the run a `--json` manifest describes.
fn run_id(r: &Run) -> String {
    r.json()["run_id"].as_str().expect("run_id").to_string()
}

#[test]
fn the_demo_table_is_delta_and_both_readers_time_travel_to_the_previous_predictions() {
    let dir = demo_copy();
    let out = table(dir.path());
    score(dir.path(), DAYS[1]).assert_ok();
    let second = score(dir.path(), DAYS[2]);
    second.assert_ok();
    let m = second.json();
    assert_eq!(m["output"]["format"], "delta");
    assert_eq!(
        m["output"]["version"], 2,
        "creation, then one version per run"
    );
    let before = readers(&out, None, None);
    assert_matches_log(&before, &out);
    assert!(day_count(&before, DAYS[1]) > 0 && day_count(&before, DAYS[2]) > 0);

    change_the_predictions(dir.path());
    let third = score(dir.path(), DAYS[2]);
    third.assert_ok();
    let after = readers(&out, None, None);
    assert_matches_log(&after, &out);
    assert_eq!(after["rows"], before["rows"], "a rerun replaces its day");
    assert_eq!(
        after["run_ids"].as_array().expect("runs").len(),
        2,
        "day 1 from the first run, day 2 from the third"
    );
    assert_ne!(after["probabilities"], before["probabilities"]);

    // Time travel to the previous version returns the previous predictions, row for row.
    let travelled = readers(&out, Some(2), None);
    assert_eq!(travelled, before);

    // The log is Delta's, and each commit says which run, job, parameters and model wrote it.
    let log = run(&["log", out.to_str().expect("utf-8"), "--json"]);
    log.assert_ok();
    let log = log.json();
    assert_eq!(log["format"], "delta");
    let versions = log["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 4);
    let last = &versions[3]["scorch"];
    assert_eq!(
        last["scorch.run_id"].as_str(),
        Some(run_id(&third).as_str())
    );
    assert_eq!(last["scorch.params"]["ds"], DAYS[2]);
    assert_eq!(last["scorch.job"], "churn_daily");
    assert_eq!(last["scorch.data_sha256"], third.json()["data_sha256"]);
    assert_eq!(
        last["scorch.models"][0]["sha256"],
        third.json()["models"][0]["sha256"]
    );
    assert_eq!(
        last["scorch.rows"]["written"].as_u64(),
        Some(day_count(&after, DAYS[2]))
    );
    assert_eq!(versions[3]["files_removed"], versions[2]["files_added"]);
    // The run manifests stay where they were.
    assert!(
        out.join(format!("_scorch/runs/{}.json", run_id(&third)))
            .exists()
    );
}

#[test]
fn sigkill_at_every_failpoint_leaves_a_complete_version_for_both_readers() {
    for point in [
        "before-write",
        "write-batch",
        "staged",
        "before-commit",
        "committed",
    ] {
        let dir = demo_copy();
        let out = table(dir.path());
        score(dir.path(), DAYS[1]).assert_ok();
        score(dir.path(), DAYS[2]).assert_ok();
        let old = readers(&out, None, None);
        let old_version = delta_version(&out).expect("a version");

        change_the_predictions(dir.path());
        let killed = score_env(dir.path(), DAYS[2], &[("SCORCH_FAILPOINT", point)]);
        assert_eq!(killed.signal, Some(9), "{point}: {}", killed.stderr);

        let now = readers(&out, None, None);
        assert_matches_log(&now, &out);
        if point == "committed" {
            assert_eq!(delta_version(&out), Some(old_version + 1), "{point}");
            assert_eq!(now["rows"], old["rows"], "{point}: complete");
            assert_ne!(now["probabilities"], old["probabilities"], "{point}");
            assert_eq!(readers(&out, Some(old_version), None), old, "{point}");
        } else {
            assert_eq!(delta_version(&out), Some(old_version), "{point}");
            assert_eq!(now, old, "{point}: the previous version, complete");
        }

        // The dead run's record stays until `gc` is told it is old enough, then its files go;
        // a run that committed keeps them (they are the table's).
        let dead_files = |out: &Path| {
            snapshot(out)
                .keys()
                .filter(|k| !k.starts_with('_') && k.ends_with(".parquet"))
                .count()
        };
        let files_before = dead_files(&out);
        run(&["gc", out.to_str().expect("utf-8"), "--apply"]).assert_ok();
        assert_eq!(dead_files(&out), files_before, "{point}: inside the window");
        let gc = gc_everything(&out);
        gc.assert_ok();
        assert!(
            snapshot(&out.join("_scorch/inflight")).is_empty(),
            "{point}: in-flight record left"
        );
        let live: BTreeSet<PathBuf> = data_files(&out).into_iter().collect();
        let on_disk: BTreeSet<PathBuf> = snapshot(&out)
            .keys()
            .filter(|k| !k.starts_with('_') && k.ends_with(".parquet"))
            .map(|k| out.join(k))
            .collect();
        assert_eq!(on_disk, live, "{point}: gc leaves exactly the live files");
        assert_eq!(
            readers(&out, None, None),
            now,
            "{point}: gc changed the table"
        );

        score(dir.path(), DAYS[2]).assert_ok();
        assert_matches_log(&readers(&out, None, None), &out);
    }
}

/// A backfill job: scores the days from `$from` to `$to` and replaces exactly that range.
fn backfill_job(dir: &Path) -> String {
    let job = dir.join("backfill.toml");
    let text = std::fs::read_to_string(dir.join("churn.toml")).expect("job");
    let text = text
        .replace(
            "ds = { type = \"date\"",
            "from = { type = \"date\" }\nto = { type = \"date\" }\nunused = { type = \"date\"",
        )
        .replace("file = \"churn.sql\"", "file = \"backfill.sql\"")
        .replace(
            "mode = \"overwrite\"",
            "mode = \"overwrite\"\nreplace_where = \"ds >= $from AND ds <= $to\"",
        );
    std::fs::write(&job, text).expect("write job");
    let sql = std::fs::read_to_string(dir.join("churn.sql")).expect("sql");
    std::fs::write(
        dir.join("backfill.sql"),
        sql.replace("WHERE ds = $ds", "WHERE ds BETWEEN $from AND $to"),
    )
    .expect("write sql");
    job.to_str().expect("utf-8").to_string()
}

/// Starts runs of `job` over the given (from, to) ranges that all wait for each other just
/// before committing, and returns their outcomes.
fn race(job: &str, ranges: &[(&str, &str)]) -> Vec<Run> {
    let barrier = TempDir::new().expect("temp");
    let rendezvous = format!(
        "before-commit:{}:{}",
        barrier.path().display(),
        ranges.len()
    );
    let children: Vec<_> = ranges
        .iter()
        .map(|(from, to)| {
            scorch()
                .args([
                    "run",
                    job,
                    "--param",
                    &format!("from={from}"),
                    "--param",
                    &format!("to={to}"),
                    "--param",
                    "unused=2026-01-01",
                    "--json",
                ])
                .env("SCORCH_RENDEZVOUS", &rendezvous)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait").into())
        .collect()
}

#[test]
fn concurrent_backfills_of_different_days_all_commit_and_of_the_same_day_one_exits_7() {
    let dir = demo_copy();
    let out = table(dir.path());
    let job = backfill_job(dir.path());

    // Disjoint ranges: both commit (the conflict checker finds nothing in common).
    let runs = race(&job, &[(DAYS[0], DAYS[1]), (DAYS[2], DAYS[2])]);
    for r in &runs {
        r.assert_ok();
    }
    let view = readers(&out, None, None);
    assert_matches_log(&view, &out);
    for day in DAYS {
        assert!(day_count(&view, day) > 0, "{day} missing: {view}");
    }
    assert_eq!(view["run_ids"].as_array().expect("runs").len(), 2);
    let version = delta_version(&out).expect("version");

    // Overlapping ranges: exactly one commits; the other exits 7 and leaves nothing.
    change_the_predictions(dir.path());
    let runs = race(&job, &[(DAYS[1], DAYS[2]), (DAYS[2], DAYS[2])]);
    let mut codes: Vec<Option<i32>> = runs.iter().map(|r| r.code).collect();
    codes.sort();
    assert_eq!(codes, vec![Some(0), Some(7)], "{runs:#?}");
    let loser = runs.iter().find(|r| r.code == Some(7)).expect("a loser");
    assert!(loser.stderr.contains("commit conflict"), "{}", loser.stderr);
    assert_eq!(
        loser.stderr.matches("commit conflict").count(),
        1,
        "said once: {}",
        loser.stderr
    );
    let winner = runs.iter().find(|r| r.code == Some(0)).expect("a winner");
    assert_eq!(delta_version(&out), Some(version + 1));
    let after = readers(&out, None, None);
    assert_matches_log(&after, &out);
    assert_eq!(after["rows"], view["rows"], "no day lost or doubled");
    let winner_id = run_id(winner);
    let loser_id = loser
        .stderr
        .lines()
        .find_map(|l| l.split("run_id=").nth(1))
        .map(|s| s.split_whitespace().next().unwrap_or_default().to_string())
        .expect("the loser logs its run id");
    assert!(
        after["run_ids"]
            .as_array()
            .expect("runs")
            .contains(&Value::from(winner_id))
    );
    assert!(
        !snapshot(&out).keys().any(|k| k.contains(&loser_id)),
        "the loser's files or records are left"
    );
}

#[test]
fn a_retried_append_that_already_committed_exits_0_and_adds_nothing() {
    let dir = demo_copy();
    let out = table(dir.path());
    edit(
        &dir.path().join("churn.toml"),
        "mode = \"overwrite\"",
        "mode = \"append\"",
    );
    // The run commits, then dies before it can report success: the scheduler retries it.
    let killed = score_env(dir.path(), DAYS[2], &[("SCORCH_FAILPOINT", "committed")]);
    assert_eq!(killed.signal, Some(9), "{}", killed.stderr);
    let once = readers(&out, None, None);
    assert!(once["rows"].as_u64().expect("rows") > 0);
    let version = delta_version(&out);

    let retry = score(dir.path(), DAYS[2]);
    retry.assert_ok();
    assert!(
        retry.stderr.contains("already committed"),
        "{}",
        retry.stderr
    );
    assert_eq!(retry.json()["status"], "already_committed");
    assert_eq!(delta_version(&out), version, "the retry committed again");
    assert_eq!(readers(&out, None, None), once, "the retry added rows");

    // Another day is another run: it appends.
    score(dir.path(), DAYS[1]).assert_ok();
    let two = readers(&out, None, None);
    assert_matches_log(&two, &out);
    assert_eq!(day_count(&two, DAYS[2]), day_count(&once, DAYS[2]));
    assert!(day_count(&two, DAYS[1]) > 0);
}

#[test]
fn a_zero_row_rerun_with_replace_where_empties_its_day() {
    for declared in [true, false] {
        let dir = demo_copy();
        let out = table(dir.path());
        let job_file = dir.path().join("churn.toml");
        edit(&job_file, "min_rows = 1", "min_rows = 0");
        if declared {
            edit(
                &job_file,
                "mode = \"overwrite\"",
                "mode = \"overwrite\"\nreplace_where = \"ds = $ds\"",
            );
        }
        score(dir.path(), DAYS[1]).assert_ok();
        score(dir.path(), DAYS[2]).assert_ok();
        let before = readers(&out, None, None);
        // The day's input now yields no rows.
        edit(
            &dir.path().join("churn.sql"),
            "WHERE ds = $ds",
            "WHERE ds = $ds AND customer_id < 0",
        );
        let empty = score(dir.path(), DAYS[2]);
        empty.assert_ok();
        assert_eq!(empty.json()["rows"]["written"], 0);
        let after = readers(&out, None, None);
        assert_matches_log(&after, &out);
        assert_eq!(day_count(&after, DAYS[1]), day_count(&before, DAYS[1]));
        if declared {
            assert_eq!(day_count(&after, DAYS[2]), 0, "the declared day is cleared");
        } else {
            // Without a declaration an overwrite replaces the partitions it wrote: none.
            assert_eq!(after, before, "documented: an empty rerun replaces nothing");
        }
    }
}

#[test]
fn a_merge_keeps_one_row_per_key_with_the_newest_stamps() {
    let dir = demo_copy();
    let out = table(dir.path());
    edit(
        &dir.path().join("churn.toml"),
        "partition_by = [\"ds\"]\nmode = \"overwrite\"",
        "mode = \"merge\"\nkey = [\"customer_id\"]",
    );
    let first = score(dir.path(), DAYS[1]);
    first.assert_ok();
    let one = readers(&out, None, Some("_run_id"));
    let customers = one["rows"].as_u64().expect("rows");
    assert!(customers > 0);
    assert_eq!(one["distinct_keys"], one["rows"]);

    let second = score(dir.path(), DAYS[2]);
    second.assert_ok();
    let two = readers(&out, None, Some("_run_id"));
    assert_eq!(
        two["rows"], customers,
        "the same customers, updated in place"
    );
    assert_eq!(
        day_count(&two, DAYS[2]),
        customers,
        "every row is the newest day's"
    );
    assert_eq!(two["by"], serde_json::json!({ run_id(&second): customers }));

    // A merge of half the customers updates that half and leaves the other half as it was.
    edit(
        &dir.path().join("churn.sql"),
        "WHERE ds = $ds",
        "WHERE ds = $ds AND customer_id % 2 = 0",
    );
    change_the_predictions(dir.path());
    let third = score(dir.path(), DAYS[2]);
    third.assert_ok();
    let three = readers(&out, None, Some("_run_id"));
    assert_eq!(three["rows"], customers, "row count stable");
    assert_eq!(three["distinct_keys"], three["rows"]);
    let by = three["by"].as_object().expect("by");
    let updated = by[&run_id(&third)].as_u64().expect("updated");
    let kept = by[&run_id(&second)].as_u64().expect("kept");
    assert_eq!(updated + kept, customers);
    assert_eq!(
        updated,
        third.json()["rows"]["written"].as_u64().expect("written")
    );
    let probabilities = three["probabilities"].as_object().expect("probabilities");
    let previous = two["probabilities"].as_object().expect("probabilities");
    let key_id = |k: &str| -> i64 { k.rsplit('/').next().expect("id").parse().expect("an id") };
    let changed = probabilities
        .iter()
        .filter(|(k, v)| previous.get(k.as_str()) != Some(v))
        .map(|(k, _)| key_id(k))
        .collect::<Vec<_>>();
    assert!(!changed.is_empty());
    assert!(
        changed.iter().all(|id| id % 2 == 0),
        "an odd customer changed"
    );
}

#[test]
fn partition_values_with_special_characters_round_trip() {
    let dir = demo_copy();
    let out = table(dir.path());
    score(dir.path(), DAYS[2]).assert_ok();
    let regions = readers(&out, None, Some("region"));

    let names = [
        ("NA", "north/america"),
        ("EU", "eu=west: 1"),
        ("APAC", "a p%c"),
        ("LATAM", "latam#1?"),
    ];
    let case = names
        .iter()
        .map(|(r, s)| format!("WHEN '{r}' THEN '{s}'"))
        .collect::<Vec<_>>()
        .join(" ");
    edit(
        &dir.path().join("churn.sql"),
        "    ds\nFROM",
        &format!("    ds,\n    CASE region {case} END AS segment\nFROM"),
    );
    edit(
        &dir.path().join("churn.toml"),
        "url = \"out/churn_scores\"\npartition_by = [\"ds\"]",
        "url = \"out/segments\"\npartition_by = [\"segment\"]",
    );
    let segments_table = dir.path().join("out/segments");
    for _ in 0..2 {
        // The second run replaces the partitions the first wrote: the values must match.
        score(dir.path(), DAYS[2]).assert_ok();
        let view = readers(&segments_table, None, Some("segment"));
        for (region, segment) in names {
            assert_eq!(
                view["by"][segment], regions["by"][region],
                "{segment}: {view}"
            );
        }
        assert_eq!(view["rows"], regions["rows"]);
        assert_eq!(view["distinct_keys"], view["rows"]);
    }
    // Delta's encoding on disk (as delta-rs writes it): RFC 3986 percent-encoding of the value.
    let folders: BTreeSet<String> = std::fs::read_dir(&segments_table)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('_'))
        .collect();
    assert!(folders.contains("segment=north%2Famerica"), "{folders:?}");
    assert!(folders.contains("segment=eu%3Dwest%3A%201"), "{folders:?}");
}

#[test]
fn gc_keeps_every_file_a_version_inside_the_window_references() {
    let dir = demo_copy();
    let out = table(dir.path());
    score(dir.path(), DAYS[2]).assert_ok();
    let first = readers(&out, None, None);
    let first_files = data_files(&out);
    change_the_predictions(dir.path());
    score(dir.path(), DAYS[2]).assert_ok();
    // Files scorch did not write, beside and inside the table, are never its to delete.
    std::fs::write(out.join("README.txt"), "notes").expect("write");
    std::fs::copy(
        &first_files[0],
        out.join(format!("ds={}/foreign.parquet", DAYS[2])),
    )
    .expect("copy");

    // The default window (7 days): the replaced file stays, and time travel still works.
    let gc = run(&["gc", out.to_str().expect("utf-8"), "--apply", "--json"]);
    gc.assert_ok();
    assert_eq!(gc.json()["replaced_files_removed"], serde_json::json!([]));
    assert!(first_files.iter().all(|f| f.exists()));
    assert_eq!(readers(&out, Some(1), None), first);

    // A dry run with no window names the replaced file and deletes nothing.
    let dry = run(&[
        "gc",
        out.to_str().expect("utf-8"),
        "--older-than",
        "0s",
        "--json",
    ]);
    dry.assert_ok();
    assert_eq!(dry.json()["applied"], false);
    assert!(first_files.iter().all(|f| f.exists()));

    // Applied with no window: the replaced file goes; the live table and unknown files stay.
    let latest = readers(&out, None, None);
    let gc = gc_everything(&out);
    gc.assert_ok();
    assert_eq!(
        gc.json()["replaced_files_removed"]
            .as_array()
            .expect("removed")
            .len(),
        first_files.len()
    );
    assert!(first_files.iter().all(|f| !f.exists()));
    assert_eq!(readers(&out, None, None), latest);
    assert!(out.join("README.txt").exists());
    assert!(out.join(format!("ds={}/foreign.parquet", DAYS[2])).exists());
}

#[test]
fn a_delta_source_is_read_at_the_version_asked_for() {
    let dir = demo_copy();
    let out = table(dir.path());
    score(dir.path(), DAYS[2]).assert_ok();
    let v1 = readers(&out, None, None);
    change_the_predictions(dir.path());
    score(dir.path(), DAYS[2]).assert_ok();

    let copy_job = |source: &str| {
        format!(
            r#"[job]
name = "copy_scores"

[sources.scores]
url = "out/churn_scores"
format = "delta"
{source}

[query]
sql = "SELECT customer_id, region, churn_probability, ds FROM scores WHERE region <> 'nowhere'"

[output]
url = "out/copy"
partition_by = ["ds"]
"#
        )
    };
    let job = dir.path().join("copy.toml");
    std::fs::write(&job, copy_job("version = 1")).expect("write");
    let r = run(&["run", job.to_str().expect("utf-8"), "--json"]);
    r.assert_ok();
    let copied = readers(&dir.path().join("out/copy"), None, None);
    assert_eq!(copied["probabilities"], v1["probabilities"]);
    assert_eq!(r.json()["source_versions"]["scores"], 1);

    // Without a version: the newest, and another fingerprint.
    std::fs::write(&job, copy_job("")).expect("write");
    let newest = run(&["run", job.to_str().expect("utf-8"), "--json"]);
    newest.assert_ok();
    assert_eq!(newest.json()["source_versions"]["scores"], 2);
    assert_ne!(newest.json()["data_sha256"], r.json()["data_sha256"]);
    let copied = readers(&dir.path().join("out/copy"), None, None);
    assert_eq!(
        copied["probabilities"],
        readers(&out, None, None)["probabilities"]
    );

    // A version the table does not have is a clear error naming it.
    std::fs::write(&job, copy_job("version = 9")).expect("write");
    let bad = run(&["run", job.to_str().expect("utf-8")]);
    bad.assert_code(3);
    assert!(
        bad.stderr.contains("source `scores` at file://")
            && bad.stderr.contains("has no version 9: its newest is 2"),
        "{}",
        bad.stderr
    );
    assert_eq!(bad.stderr.matches("version 9").count(), 1, "{}", bad.stderr);
    // So is an instant before the table's first version.
    std::fs::write(&job, copy_job("timestamp = \"2020-01-01T00:00:00Z\"")).expect("write");
    let early = run(&["run", job.to_str().expect("utf-8")]);
    early.assert_code(3);
    assert!(
        early.stderr.contains("no version at or before 2020-01-01"),
        "{}",
        early.stderr
    );
}

#[test]
fn files_roll_over_at_the_target_size_and_optimize_compacts_them() {
    let dir = demo_copy();
    let out = table(dir.path());
    edit(
        &dir.path().join("churn.toml"),
        "mode = \"overwrite\"",
        "mode = \"overwrite\"\ntarget_file_size = \"24KiB\"",
    );
    score(dir.path(), DAYS[1]).assert_ok();
    score(dir.path(), DAYS[2]).assert_ok();
    let files = data_files(&out);
    assert!(files.len() >= 6, "{} files", files.len());
    for f in &files {
        let size = std::fs::metadata(f).expect("stat").len();
        assert!(size < 24 * 1024 * 2, "{} is {size} bytes", f.display());
    }
    let before = readers(&out, None, None);
    assert_matches_log(&before, &out);

    // Compacting one day: one commit, the same rows, fewer files.
    let day2 = format!("ds={}", DAYS[2]);
    let small = files
        .iter()
        .filter(|f| f.to_string_lossy().contains(&day2))
        .count();
    let optimized = run(&[
        "optimize",
        out.to_str().expect("utf-8"),
        "--where",
        &format!("ds = '{}'", DAYS[2]),
        "--json",
    ]);
    optimized.assert_ok();
    let report = optimized.json();
    assert_eq!(report["files_removed"].as_u64(), Some(small as u64));
    assert_eq!(report["files_added"], 1);
    let after = readers(&out, None, None);
    assert_eq!(after, before, "optimize changed what readers see");
    let compacted: Vec<_> = data_files(&out)
        .into_iter()
        .filter(|f| f.to_string_lossy().contains(&day2))
        .collect();
    assert_eq!(compacted.len(), 1);
    assert!(
        data_files(&out).len() > 1,
        "the other day is left as it was"
    );
    // Nothing left to do the second time.
    let again = run(&[
        "optimize",
        out.to_str().expect("utf-8"),
        "--where",
        &format!("ds = '{}'", DAYS[2]),
    ]);
    again.assert_ok();
    assert!(
        again.stdout.contains("nothing to compact"),
        "{}",
        again.stdout
    );
}
