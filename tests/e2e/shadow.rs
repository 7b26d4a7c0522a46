//! Champion/challenger: a shadow model scores the same rows in the same scan into a table of its
//! own; the run and `scorch compare` report how the two agree.

use std::path::Path;

use crate::support::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8")
}

/// Declares `challenger` (the package at `package`) and a `[shadow]` section in the demo job.
fn with_shadow(dir: &Path, package: &Path) {
    let job = dir.join("churn.toml");
    edit(
        &job,
        "[query]",
        &format!("[models.challenger]\nuri = \"{}\"\n\n[query]", p(package)),
    );
    let text = std::fs::read_to_string(&job).expect("job");
    std::fs::write(
        &job,
        format!("{text}\n[shadow]\nmodel = \"challenger\"\nurl = \"out/churn_shadow\"\n"),
    )
    .expect("write job");
}

fn score(dir: &Path, ds: &str, extra: &[&str]) -> Run {
    let job = dir.join("churn.toml");
    let ds_arg = format!("ds={ds}");
    let mut args = vec!["run", p(&job), "--param", &ds_arg];
    args.extend_from_slice(extra);
    args.push("--json");
    run(&args)
}

fn compare(dir: &Path) -> serde_json::Value {
    run(&[
        "compare",
        p(&dir.join("out/churn_scores")),
        p(&dir.join("out/churn_shadow")),
        "--json",
    ])
    .assert_ok()
    .json()
}

#[test]
fn a_shadow_of_the_same_model_agrees_exactly_and_is_read_once() {
    let dir = demo_copy();
    // The same weights under another version: another hash, the same predictions.
    let twin = dir.path().join("churn-1.0.1");
    copy_dir(&dir.path().join("models/churn"), &twin);
    edit(
        &twin.join("model.toml"),
        "version = \"1.0.0\"",
        "version = \"1.0.1\"",
    );
    let plain = score(dir.path(), DAYS[2], &[]).assert_ok().json();
    with_shadow(dir.path(), &twin);
    let metrics = dir.path().join("scorch.prom");
    let m = score(dir.path(), DAYS[2], &["--metrics-file", p(&metrics)])
        .assert_ok()
        .json();
    // The metrics carry the agreement too.
    let text = std::fs::read_to_string(&metrics).expect("metrics");
    let same = text
        .lines()
        .find(|l| l.starts_with("scorch_shadow_agreement{") && l.contains("measure=\"same\""))
        .unwrap_or_else(|| panic!("no agreement in the metrics:\n{text}"));
    assert!(
        same.ends_with(" 1") && same.contains("shadow_model=\"challenger\""),
        "{same}"
    );

    let shadow = &m["shadow"];
    let agreement = &shadow["agreement"]["churn_probability"];
    assert_eq!(agreement["agreement"], 1.0, "{m}");
    assert_eq!(agreement["mean_abs_diff"], 0.0);
    assert_eq!(agreement["max_abs_diff"], 0.0);
    assert_eq!(agreement["rank_correlation"], 1.0);
    assert_eq!(agreement["psi"], 0.0);
    assert_eq!(agreement["label_flip_share"], 0.0);
    assert_eq!(agreement["rows"], m["rows"]["written"]);
    assert_eq!(shadow["rows"], m["rows"]["written"]);
    assert!(shadow["version"].as_u64().is_some());
    // One scan for both models: the same bytes read as the plain run.
    assert_eq!(m["scan"]["bytes_scanned"], plain["scan"]["bytes_scanned"]);

    // The shadow table: the output's rows, the challenger's stamps.
    let twin_sha = package_sha(&twin);
    let output = read_scores(&dir.path().join("out/churn_scores"));
    let shadowed = read_scores(&dir.path().join("out/churn_shadow"));
    assert_eq!(output.len(), shadowed.len());
    for (a, b) in output.iter().zip(&shadowed) {
        assert_eq!(
            (&a.ds, a.customer_id, a.probability),
            (&b.ds, b.customer_id, b.probability)
        );
        assert_eq!(a.run_id, b.run_id);
        assert_eq!(b.model_sha256.as_deref(), Some(twin_sha.as_str()));
        assert_eq!(b.model_version.as_deref(), Some("1.0.1"));
        assert_ne!(a.model_sha256, b.model_sha256);
    }
    let compared = compare(dir.path());
    assert_eq!(compared["columns"]["churn_probability"], *agreement);
    assert_eq!(compared["unmatched"], 0);
}

#[test]
fn a_different_challenger_is_measured_and_a_stopped_run_writes_neither_table() {
    let dir = demo_copy();
    // Another model: the demo trained for one epoch instead of two.
    let other = tempfile::TempDir::new().expect("temp dir");
    run(&[
        "demo",
        "--dir",
        p(other.path()),
        "--rows",
        "24000",
        "--days",
        "3",
        "--epochs",
        "1",
        "--skip-run",
    ])
    .assert_ok();
    let challenger = other.path().join("models/churn");
    with_shadow(dir.path(), &challenger);
    let m = score(dir.path(), DAYS[1], &[]).assert_ok().json();
    let g = &m["shadow"]["agreement"]["churn_probability"];
    let mean = g["mean_abs_diff"].as_f64().expect("mean");
    let max = g["max_abs_diff"].as_f64().expect("max");
    let rank = g["rank_correlation"].as_f64().expect("rank");
    assert!(mean > 0.0 && max >= mean, "{g}");
    assert!(rank > 0.5 && rank < 1.0, "{g}");
    assert!(g["agreement"].as_f64().expect("agreement") < 1.0);

    // The figures, recomputed by the test from the two tables' rows.
    let a = read_scores(&dir.path().join("out/churn_scores"));
    let b = read_scores(&dir.path().join("out/churn_shadow"));
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(&b)
        .filter_map(|(x, y)| Some((f64::from(x.probability?), f64::from(y.probability?))))
        .collect();
    let expected_mean = pairs.iter().map(|(x, y)| (x - y).abs()).sum::<f64>() / pairs.len() as f64;
    let expected_max = pairs.iter().map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let flips = pairs
        .iter()
        .filter(|(x, y)| (*x >= 0.5) != (*y >= 0.5))
        .count();
    assert!(
        (mean - expected_mean).abs() < 1e-9,
        "{mean} vs {expected_mean}"
    );
    assert!((max - expected_max).abs() < 1e-9);
    let total = g["rows"].as_f64().expect("rows");
    assert!((g["label_flip_share"].as_f64().expect("flips") - flips as f64 / total).abs() < 1e-12);
    // `compare` reads the two tables back and gets the same figures (sums may add up in
    // another order: equal to the last bits).
    let c = compare(dir.path());
    let c = &c["columns"]["churn_probability"];
    for field in [
        "rows",
        "agreement",
        "mean_abs_diff",
        "max_abs_diff",
        "rank_correlation",
        "psi",
        "label_flip_share",
    ] {
        let (x, y) = (
            c[field].as_f64().expect(field),
            g[field].as_f64().expect(field),
        );
        assert!(
            (x - y).abs() <= 1e-9 * x.abs().max(1.0),
            "{field}: {x} vs {y}"
        );
    }

    // A run the gate stops publishes neither table.
    let shadow_table = dir.path().join("out/churn_shadow");
    let before = snapshot(&shadow_table);
    edit(
        &dir.path().join("churn.toml"),
        "max_unscored_fraction = 0.01",
        "max_unscored_fraction = 0.0",
    );
    score(dir.path(), DAYS[2], &[]).assert_code(4);
    assert_eq!(
        snapshot(&shadow_table).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
}

#[test]
fn run_shadow_names_a_declared_model_on_the_command_line() {
    let dir = demo_copy();
    let twin = dir.path().join("churn-copy");
    copy_dir(&dir.path().join("models/churn"), &twin);
    edit(
        &dir.path().join("churn.toml"),
        "[query]",
        &format!("[models.challenger]\nuri = \"{}\"\n\n[query]", p(&twin)),
    );
    // Declared but never called, and no shadow asked for: the usual error.
    score(dir.path(), DAYS[2], &[]).assert_code(2);
    let m = score(dir.path(), DAYS[2], &["--shadow", "challenger"])
        .assert_ok()
        .json();
    assert_eq!(
        m["shadow"]["agreement"]["churn_probability"]["agreement"],
        1.0
    );
    assert!(
        m["shadow"]["url"]
            .as_str()
            .expect("url")
            .ends_with("out/churn_scores_shadow/")
    );
    score(dir.path(), DAYS[2], &["--shadow", "nope"]).assert_code(2);
    // compare on a folder that is no table says so (exit 2).
    let missing = run(&[
        "compare",
        p(&dir.path().join("out/churn_scores")),
        p(&dir.path().join("data")),
    ]);
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("no scorch table"),
        "{}",
        missing.stderr
    );
}

#[test]
fn a_model_with_several_outputs_is_compared_field_by_field() {
    // The XGBoost golden fixture: predict() returns {probability, margin, label}.
    let dir = tempfile::TempDir::new().expect("temp dir");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/xgboost"),
        dir.path(),
    );
    let job = dir.path().join("xgb_binary.toml");
    edit(
        &job,
        "[query]",
        "[models.challenger]\nuri = \"models/xgb_binary\"\n\n[query]",
    );
    let text = std::fs::read_to_string(&job).expect("job");
    std::fs::write(
        &job,
        format!("{text}\n[shadow]\nmodel = \"challenger\"\nurl = \"out/shadow\"\n"),
    )
    .expect("write job");
    let m = run(&["run", p(&job), "--json"]).assert_ok().json();
    let agreement = &m["shadow"]["agreement"];
    for field in [
        "prediction.probability",
        "prediction.margin",
        "prediction.label",
    ] {
        assert_eq!(agreement[field]["agreement"], 1.0, "{field}: {agreement}");
    }
    let out = std::fs::read_to_string(&job).expect("job");
    let output = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("url = \"out/")
                .map(|r| r.trim_end_matches('"').to_string())
        })
        .expect("output url");
    let compared = run(&[
        "compare",
        p(&dir.path().join(format!("out/{output}"))),
        p(&dir.path().join("out/shadow")),
        "--on",
        "id",
        "--json",
    ])
    .assert_ok()
    .json();
    assert_eq!(compared["columns"]["prediction.label"]["agreement"], 1.0);
}
