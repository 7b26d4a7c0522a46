//! Reference profiles and drift: `scorch model profile`, then runs measured against the profile,
//! with data from the same generator (the gate stays quiet) and data shifted on purpose (it
//! fires, or only warns with `on_fail = "warn"`).

use std::path::Path;

use serde_json::Value;

use crate::support::*;

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

/// Profiles the demo model on the first day and pins the package's new hash in the job, with
/// drift checks at `limits`.
pub fn profiled_demo(limits: &str) -> tempfile::TempDir {
    let dir = demo_copy();
    let package = dir.path().join("models/churn");
    let before = run(&["model", "hash", path(&package)]);
    before.assert_ok();
    let r = run(&[
        "model",
        "profile",
        path(&package),
        "--data",
        path(&dir.path().join("data/features")),
        "--where",
        &format!("ds = '{}'", DAYS[0]),
        "--json",
    ]);
    r.assert_ok();
    let report = r.json();
    let sha = report["sha256"].as_str().expect("sha256").to_string();
    assert_ne!(
        sha,
        before.stdout.trim(),
        "the profile is covered by the package hash"
    );
    assert_eq!(report["features"], 12);
    assert!(report["rows"].as_u64() > Some(1000), "{report}");
    let job = dir.path().join("churn.toml");
    edit(&job, before.stdout.trim(), &sha);
    std::fs::write(&job, std::fs::read_to_string(&job).expect("job") + limits).expect("write job");
    dir
}

fn score(dir: &Path, day: &str) -> Run {
    run(&[
        "run",
        path(&dir.join("churn.toml")),
        "--param",
        &format!("ds={day}"),
        "--json",
    ])
}

pub fn shift_monthly_charges(dir: &Path) {
    edit(
        &dir.join("churn.sql"),
        "tenure_months, monthly_charges,",
        "tenure_months, monthly_charges * 1.5,",
    );
}

const LIMITS: &str = "max_feature_psi = 0.1\nmax_output_psi = 0.1\nmax_output_ks = 0.1\n";

#[test]
fn the_drift_gate_fires_on_shifted_data_and_not_on_data_from_the_same_generator() {
    let dir = profiled_demo(LIMITS);
    let table = dir.path().join("out/churn_scores");

    // Another day from the same generator: every measure small, published.
    let same = score(dir.path(), DAYS[2]);
    same.assert_ok();
    let m = same.json();
    let drift = &m["drift"]["churn"];
    let features = drift["features"].as_object().expect("features");
    assert_eq!(features.len(), 12, "{drift}");
    for (feature, psi) in features {
        let psi = psi.as_f64().expect("psi");
        assert!((0.0..0.1).contains(&psi), "{feature}: {psi}");
    }
    let output = &drift["outputs"]["churn_probability"];
    assert!(output["psi"].as_f64() < Some(0.1), "{output}");
    assert!(output["ks"].as_f64() < Some(0.1), "{output}");
    assert!(output["ks_p_value"].as_f64() > Some(0.0), "{output}");
    for check in ["max_feature_psi", "max_output_psi", "max_output_ks"] {
        let result = m["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["name"] == check)
            .unwrap_or_else(|| panic!("{check} evaluated: {}", m["checks"]));
        assert_eq!(result["passed"], true, "{result}");
    }
    // The Delta commit carries the drift beside the run's other records.
    let log = std::fs::read_to_string(table.join("_delta_log/00000000000000000001.json"))
        .expect("version 1");
    let info: Value = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .find(|a| a.get("commitInfo").is_some())
        .expect("commitInfo");
    assert_eq!(info["commitInfo"]["scorch.drift"], m["drift"]);

    // The same day with one input shifted: the gate names it, nothing is published.
    shift_monthly_charges(dir.path());
    let shifted = score(dir.path(), DAYS[2]);
    shifted.assert_code(4);
    assert!(
        shifted.stderr.contains("max_feature_psi") && shifted.stderr.contains("monthly_charges"),
        "{}",
        shifted.stderr
    );
    let m = shifted.json();
    let psi = m["drift"]["churn"]["features"]["monthly_charges"]
        .as_f64()
        .expect("psi");
    assert!(
        psi > 0.25,
        "a 1.5x shift moves most rows to other bins: {psi}"
    );
    assert!(
        m["drift"]["churn"]["features"]["tenure_months"].as_f64() < Some(0.1),
        "the unshifted inputs stay put"
    );
    assert!(
        !table.join("_delta_log/00000000000000000002.json").exists(),
        "nothing published"
    );

    // Only a warning with on_fail = "warn": published, the failed check on record.
    let job = dir.path().join("churn.toml");
    std::fs::write(
        &job,
        std::fs::read_to_string(&job).expect("job") + "on_fail = \"warn\"\n",
    )
    .expect("write job");
    let warned = score(dir.path(), DAYS[2]);
    warned.assert_ok();
    assert!(warned.stderr.contains("on_fail"), "{}", warned.stderr);
    let warned = warned.json();
    let failed: Vec<&Value> = warned["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["name"], "max_feature_psi");
    assert!(table.join("_delta_log/00000000000000000002.json").exists());
}

#[test]
fn drift_reaches_the_metrics() {
    let dir = profiled_demo(LIMITS);
    let prom = dir.path().join("scorch.prom");
    let r = run(&[
        "run",
        path(&dir.path().join("churn.toml")),
        "--param",
        &format!("ds={}", DAYS[2]),
        "--json",
        "--metrics-file",
        path(&prom),
    ]);
    r.assert_ok();
    let m = r.json();
    let samples = read_with("read_metrics.py", &[path(&prom)]);
    let value = |name: &str, key: &str, label: &str| {
        samples
            .as_array()
            .expect("samples")
            .iter()
            .find(|s| s["name"] == name && s["labels"][key] == label)
            .and_then(|s| s["value"].as_f64())
    };
    for (feature, psi) in m["drift"]["churn"]["features"]
        .as_object()
        .expect("features")
    {
        let got = value("scorch_feature_psi", "feature", feature).expect("series");
        assert!((got - psi.as_f64().expect("psi")).abs() < 1e-9, "{feature}");
    }
    assert!(value("scorch_output_ks", "model_output", "churn_probability").is_some());
}

#[test]
fn profiles_are_checked_shown_and_refused_when_broken() {
    let dir = profiled_demo("");
    let package = dir.path().join("models/churn");
    let card = run(&["model", "inspect", path(&package), "--json"]);
    card.assert_ok();
    let profile = &card.json()["profile"];
    assert_eq!(profile["features"].as_object().map(|f| f.len()), Some(12));
    assert_eq!(
        profile["outputs"]["churn_probability"]["quantiles"]
            .as_array()
            .map(|q| q.len()),
        Some(101)
    );
    let human = run(&["model", "inspect", path(&package)]);
    assert!(human.stdout.contains("profile:"), "{}", human.stdout);

    // A profile naming an input the manifest does not have is a model error.
    let file = package.join("profile.json");
    let text = std::fs::read_to_string(&file).expect("profile");
    std::fs::write(
        &file,
        text.replace("\"monthly_charges\"", "\"monthly_charge\""),
    )
    .expect("write");
    let r = run(&["model", "verify", path(&package)]);
    r.assert_code(6);
    assert!(
        r.stderr.contains("monthly_charge") && r.stderr.contains("profile.json"),
        "{}",
        r.stderr
    );
    std::fs::write(&file, "{").expect("write");
    let r = run(&["model", "verify", path(&package)]);
    r.assert_code(6);
    assert!(r.stderr.contains("profile.json"), "{}", r.stderr);

    // Data without a model input: the column is named.
    let other = demo_copy();
    let r = run(&[
        "model",
        "profile",
        path(&other.path().join("models/churn")),
        "--data",
        path(&other.path().join("models")),
    ]);
    assert_ne!(r.code, Some(0));
    let r = run(&[
        "model",
        "profile",
        path(&other.path().join("models/churn")),
        "--data",
        path(&other.path().join("data/features")),
        "--bins",
        "1",
    ]);
    r.assert_code(2);

    // A drift limit that is not a PSI is a job error naming the key.
    let job = other.path().join("churn.toml");
    std::fs::write(
        &job,
        std::fs::read_to_string(&job).expect("job") + "max_feature_psi = -1\n",
    )
    .expect("write job");
    let r = run(&["validate", path(&job)]);
    r.assert_code(2);
    assert!(r.stderr.contains("checks.max_feature_psi"), "{}", r.stderr);
    // Drift limits on a job whose model has no profile, or for an input no model has.
    edit(&job, "max_feature_psi = -1", "max_feature_psi = 0.2");
    let r = run(&["validate", path(&job)]);
    r.assert_code(2);
    assert!(r.stderr.contains("scorch model profile"), "{}", r.stderr);
    std::fs::write(&file, &text).expect("restore the profile");
    let job = dir.path().join("churn.toml");
    std::fs::write(
        &job,
        std::fs::read_to_string(&job).expect("job")
            + "[checks.feature_psi]\nmonthly_charge = 0.3\n",
    )
    .expect("write job");
    let r = run(&["validate", path(&job)]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("checks.feature_psi.monthly_charge"),
        "{}",
        r.stderr
    );
}
