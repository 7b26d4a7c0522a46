//! The model registry: publish, promote, list, history; jobs that follow an alias or name a
//! version; a version never changes; two promotions at once; rollback.

use std::path::{Path, PathBuf};

use crate::support::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8")
}

/// A second package: the demo's with another version (and so other bytes).
fn second_version(dir: &Path, version: &str) -> PathBuf {
    let package = dir.join(format!("churn-{version}"));
    copy_dir(&dir.join("models/churn"), &package);
    edit(
        &package.join("model.toml"),
        "version = \"1.0.0\"",
        &format!("version = \"{version}\""),
    );
    package
}

/// Points the demo job at the registry, following `selector` (`alias = "champion"`).
fn follow(dir: &Path, registry: &Path, selector: &str) {
    let job = dir.join("churn.toml");
    let text = std::fs::read_to_string(&job).expect("job");
    let start = text.find("[models.churn]").expect("models section");
    let end = start + text[start..].find("\n\n").expect("section end");
    let section = format!("[models.churn]\nregistry = \"{}\"\n{selector}", p(registry));
    std::fs::write(
        &job,
        format!("{}{}{}", &text[..start], section, &text[end..]),
    )
    .expect("write");
}

fn publish(package: &Path, registry: &Path) -> Run {
    run(&[
        "model",
        "publish",
        p(package),
        "--registry",
        p(registry),
        "--json",
    ])
}

fn promote(model: &str, alias: &str, registry: &Path) -> Run {
    run(&[
        "model",
        "promote",
        model,
        "--alias",
        alias,
        "--registry",
        p(registry),
        "--json",
    ])
}

/// `scorch model history churn --json`.
fn history(registry: &Path) -> serde_json::Value {
    run(&[
        "model",
        "history",
        "churn",
        "--registry",
        p(registry),
        "--json",
    ])
    .assert_ok()
    .json()
}

fn score(dir: &Path, ds: &str) -> serde_json::Value {
    run(&[
        "run",
        p(&dir.join("churn.toml")),
        "--param",
        &format!("ds={ds}"),
        "--json",
    ])
    .assert_ok()
    .json()
}

#[test]
fn publish_promote_run_and_roll_back() {
    let dir = demo_copy();
    let registry = dir.path().join("registry");
    let v1 = publish(&dir.path().join("models/churn"), &registry)
        .assert_ok()
        .json();
    assert_eq!(v1["created"], true);
    let sha1 = v1["record"]["sha256"].as_str().expect("sha").to_string();
    assert_eq!(sha1, package_sha(&dir.path().join("models/churn")));
    // The same bytes again: nothing to do.
    let again = publish(&dir.path().join("models/churn"), &registry)
        .assert_ok()
        .json();
    assert_eq!(again["created"], false);

    // Other bytes under version 1.0.0: refused, and the registry is unchanged.
    let before = snapshot(&registry);
    let changed = dir.path().join("churn-changed");
    copy_dir(&dir.path().join("models/churn"), &changed);
    edit(
        &changed.join("model.toml"),
        "description = \"",
        "description = \"Retrained. ",
    );
    let refused = publish(&changed, &registry);
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("already published with sha256") && refused.stderr.contains(&sha1),
        "{}",
        refused.stderr
    );
    assert_eq!(snapshot(&registry), before);

    let v2 = publish(&second_version(dir.path(), "1.1.0"), &registry)
        .assert_ok()
        .json();
    let sha2 = v2["record"]["sha256"].as_str().expect("sha").to_string();
    assert_ne!(sha1, sha2);

    // A job that follows an alias that does not exist yet: a clear usage error.
    follow(dir.path(), &registry, "alias = \"champion\"");
    let missing = run(&[
        "run",
        p(&dir.path().join("churn.toml")),
        "--param",
        &format!("ds={}", DAYS[0]),
    ]);
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("no alias `champion`")
            && missing
                .stderr
                .contains("scorch model promote churn@<version> --alias champion"),
        "{}",
        missing.stderr
    );

    // champion -> 1.0.0: the run scores with it and records how it resolved.
    promote("churn@1.0.0", "champion", &registry).assert_ok();
    let first = score(dir.path(), DAYS[0]);
    assert_eq!(first["models"][0]["sha256"], sha1.as_str());
    assert_eq!(first["models"][0]["registry"]["alias"], "champion");
    assert_eq!(first["models"][0]["registry"]["version"], "1.0.0");
    let out = dir.path().join("out/churn_scores");
    let rows = read_scores(&out);
    assert!(
        rows.iter()
            .all(|r| r.model_sha256.as_deref() == Some(sha1.as_str()))
    );

    // champion -> 1.1.0: the next run uses it, stamps and commit info say so.
    let moved = promote("churn@1.1.0", "champion", &registry)
        .assert_ok()
        .json();
    assert_eq!(moved["seq"], 2);
    let second = score(dir.path(), DAYS[0]);
    assert_eq!(second["models"][0]["sha256"], sha2.as_str());
    assert!(
        read_scores(&out)
            .iter()
            .all(|r| r.model_sha256.as_deref() == Some(sha2.as_str())
                && r.model_version.as_deref() == Some("1.1.0"))
    );
    let version = delta_version(&out).expect("version");
    let entry = std::fs::read_to_string(out.join(format!("_delta_log/{version:020}.json")))
        .expect("log entry");
    assert!(
        entry.contains("\"alias\":\"champion\"") && entry.contains(&sha2),
        "{entry}"
    );

    // Rollback is promoting the previous version again.
    promote("churn@1.0.0", "champion", &registry).assert_ok();
    assert_eq!(
        score(dir.path(), DAYS[0])["models"][0]["sha256"],
        sha1.as_str()
    );

    // A job may pin a version instead, and a pin that contradicts the registry is refused.
    follow(dir.path(), &registry, "version = \"1.1.0\"");
    assert_eq!(
        score(dir.path(), DAYS[1])["models"][0]["sha256"],
        sha2.as_str()
    );
    follow(
        dir.path(),
        &registry,
        &format!("version = \"1.1.0\"\nsha256 = \"{sha1}\""),
    );
    run(&[
        "run",
        p(&dir.path().join("churn.toml")),
        "--param",
        &format!("ds={}", DAYS[1]),
    ])
    .assert_code(2);

    // list and history.
    let list = run(&["model", "list", "--registry", p(&registry), "--json"])
        .assert_ok()
        .json();
    assert_eq!(list[0]["name"], "churn");
    assert_eq!(list[0]["versions"].as_array().expect("versions").len(), 2);
    assert_eq!(list[0]["aliases"]["champion"]["version"], "1.0.0");
    assert_eq!(list[0]["aliases"]["champion"]["seq"], 3);
    let history = history(&registry);
    let moves: Vec<&str> = history
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "promoted")
        .map(|e| e["version"].as_str().expect("version"))
        .collect();
    assert_eq!(moves, ["1.0.0", "1.1.0", "1.0.0"]);
    run(&[
        "model",
        "promote",
        "churn@9.9.9",
        "--alias",
        "champion",
        "--registry",
        p(&registry),
    ])
    .assert_code(2);
    run(&[
        "model",
        "promote",
        "churn",
        "--alias",
        "champion",
        "--registry",
        p(&registry),
    ])
    .assert_code(2);
}

#[test]
fn of_two_promotions_at_once_one_wins_and_the_other_is_a_conflict() {
    let dir = demo_copy();
    let registry = dir.path().join("registry");
    publish(&dir.path().join("models/churn"), &registry).assert_ok();
    publish(&second_version(dir.path(), "1.1.0"), &registry).assert_ok();
    promote("churn@1.0.0", "champion", &registry).assert_ok();
    // Both read the same latest move, then both try to write the next one.
    let meet = tempfile::TempDir::new().expect("temp dir");
    let rendezvous = format!("promote:{}:2", p(meet.path()));
    let racers: Vec<_> = ["churn@1.1.0", "churn@1.0.0"]
        .iter()
        .map(|model| {
            let mut c = scorch();
            c.args([
                "model",
                "promote",
                model,
                "--alias",
                "champion",
                "--registry",
                p(&registry),
            ])
            .env("SCORCH_RENDEZVOUS", &rendezvous)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
            c.spawn().expect("spawn")
        })
        .collect();
    let results: Vec<Run> = racers
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait").into())
        .collect();
    let codes: Vec<Option<i32>> = results.iter().map(|r| r.code).collect();
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(7)),
        "{codes:?}: {results:?}"
    );
    let loser = results.iter().find(|r| r.code == Some(7)).expect("a loser");
    assert!(
        loser.stderr.contains("moved while this promotion ran"),
        "{}",
        loser.stderr
    );
    let history = history(&registry);
    let moves = history
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "promoted")
        .count();
    assert_eq!(moves, 2, "exactly one of the two landed");
}
