//! `scorch explain`: what a run would read, against what it prunes.

use std::path::Path;

use crate::support::*;

fn job(dir: &Path) -> String {
    dir.join("churn.toml").to_str().expect("utf-8").to_string()
}

#[test]
fn explain_reports_partition_and_row_group_pruning() {
    let dir = demo_copy();
    // A filtered job: one day, one region. The demo sorts each day by region, so row-group
    // statistics on `region` can skip most groups.
    edit(
        &dir.path().join("churn.sql"),
        "WHERE ds = $ds",
        "WHERE ds = $ds AND region = 'EU'",
    );
    let r = run(&[
        "explain",
        &job(dir.path()),
        "--param",
        &format!("ds={}", DAYS[2]),
        "--json",
    ]);
    r.assert_ok();
    let report = r.json();
    let scan = &report["scans"][0];
    let n = |k: &str| scan[k].as_u64().unwrap_or_else(|| panic!("{k} in {scan}"));
    assert_eq!(n("files_total"), DAYS.len() as u64);
    assert_eq!(n("files_scanned"), 1, "partition pruning keeps one day");
    assert!(n("row_groups_scanned") >= 1);
    assert!(
        n("row_groups_scanned") < n("row_groups_in_scanned_files"),
        "row-group statistics prune other regions: {scan}"
    );
    assert!(
        n("columns_read") < n("columns_total"),
        "the label column is not read: {scan}"
    );
    assert!(n("bytes_scanned") * 4 < n("bytes_total"), "{scan}");
    assert!(
        report["physical_plan"]
            .as_str()
            .expect("plan")
            .contains("DataSourceExec")
    );

    // explain changes nothing.
    assert!(!dir.path().join("out").exists());

    // The same pruning happens in a real run, and the row count matches the estimate's region.
    let run_report = run(&[
        "run",
        &job(dir.path()),
        "--param",
        &format!("ds={}", DAYS[2]),
        "--json",
    ]);
    run_report.assert_ok();
    let m = run_report.json();
    assert!(
        m["scan"]["row_groups_pruned"].as_u64().expect("pruned") > 0,
        "{}",
        m["scan"]
    );
    let rows = read_scores(&dir.path().join("out/churn_scores"));
    assert!(!rows.is_empty() && rows.iter().all(|r| r.region == "EU"));

    // Human output names the same figures.
    let human = run(&[
        "explain",
        &job(dir.path()),
        "--param",
        &format!("ds={}", DAYS[2]),
    ]);
    human.assert_ok();
    assert!(
        human.stdout.contains("pruned by partition")
            && human.stdout.contains("pruned by statistics"),
        "{}",
        human.stdout
    );
}

#[test]
fn validate_checks_without_writing() {
    let dir = demo_copy();
    let r = run(&[
        "validate",
        &job(dir.path()),
        "--param",
        &format!("ds={}", DAYS[2]),
    ]);
    r.assert_ok();
    assert!(
        r.stdout.contains("verified") && r.stdout.contains("churn_probability"),
        "{}",
        r.stdout
    );
    assert!(!dir.path().join("out").exists());
}

#[test]
fn features_in_the_wrong_order_are_warned_about() {
    let dir = demo_copy();
    edit(
        &dir.path().join("churn.sql"),
        "tenure_months, monthly_charges,",
        "monthly_charges, tenure_months,",
    );
    let r = run(&[
        "validate",
        &job(dir.path()),
        "--param",
        &format!("ds={}", DAYS[2]),
    ]);
    r.assert_ok();
    assert!(
        r.stdout.contains("argument 2 is column `monthly_charges`"),
        "{}",
        r.stdout
    );
}
