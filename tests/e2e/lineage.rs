//! OpenLineage events of a run, to a file and to an HTTP collector, validated with the official
//! Python client (`validate_lineage.py`): START then COMPLETE for a committed run, START then FAIL
//! for one a quality gate stops, and a collector that is down never fails the run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::support::*;

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

/// The events of `file`, validated by the official client; returns its summaries and the raw
/// events.
fn validated(file: &Path) -> (Vec<Value>, Vec<Value>) {
    let summaries = read_with("validate_lineage.py", &[path(file)]);
    let raw = std::fs::read_to_string(file)
        .expect("events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    (summaries.as_array().expect("summaries").clone(), raw)
}

struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn collector(out: &Path) -> (Collector, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/lineage_server.py");
    let mut child = Command::new(readers_python())
        .arg(script)
        .arg(out)
        .stdout(Stdio::piped())
        .spawn()
        .expect("collector starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port");
    let port = line.trim().parse().expect("a port");
    (Collector(child), port)
}

#[test]
fn runs_emit_start_then_complete_or_fail_that_the_official_client_accepts() {
    let dir = demo_copy();
    let job = dir.path().join("churn.toml");
    let events = dir.path().join("lineage.jsonl");
    let sink = format!("file:{}", events.display());
    let r = run(&[
        "run",
        path(&job),
        "--param",
        &format!("ds={}", DAYS[2]),
        "--json",
        "--lineage",
        &sink,
        "--lineage-namespace",
        "nightly",
    ]);
    r.assert_ok();
    let m = r.json();
    let (summaries, raw) = validated(&events);
    assert_eq!(summaries.len(), 2);
    assert_eq!(summaries[0]["eventType"], "START");
    assert_eq!(summaries[1]["eventType"], "COMPLETE");
    for s in &summaries {
        assert_eq!(s["runId"], m["run_id"], "the run id is scorch's");
        assert_eq!(s["job"]["namespace"], "nightly");
        assert_eq!(s["job"]["name"], "churn_daily");
        let features = dir
            .path()
            .join("data/features")
            .canonicalize()
            .expect("path");
        assert_eq!(s["inputs"][0], serde_json::json!(["file", path(&features)]));
    }
    let complete = &raw[1];
    let output = &complete["outputs"][0];
    assert_eq!(
        output["outputFacets"]["outputStatistics"]["rowCount"],
        m["rows"]["written"]
    );
    assert_eq!(
        output["facets"]["version"]["datasetVersion"],
        m["output"]["version"].to_string()
    );
    let columns: Vec<&str> = output["facets"]["schema"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    assert!(columns.contains(&"churn_probability") && columns.contains(&"_model_sha256"));
    // The rejects table is the second output, with its version and the rows it kept.
    let rejects = &complete["outputs"][1];
    assert!(
        rejects["name"]
            .as_str()
            .expect("name")
            .ends_with("out/churn_rejects"),
        "{rejects}"
    );
    assert_eq!(
        rejects["outputFacets"]["outputStatistics"]["rowCount"],
        m["rejects"]["rows"]
    );
    assert_eq!(
        rejects["facets"]["version"]["datasetVersion"],
        m["rejects"]["version"].to_string()
    );
    let scorch = &complete["run"]["facets"]["scorch"];
    assert_eq!(scorch["models"][0]["sha256"], m["models"][0]["sha256"]);
    assert_eq!(scorch["dataSha256"], m["data_sha256"]);
    assert_eq!(scorch["checks"], m["checks"]);

    // A run the quality gate stops: START, then FAIL with the error and the checks.
    edit(
        &job,
        "max_unscored_fraction = 0.01",
        "max_unscored_fraction = 0.0",
    );
    std::fs::remove_file(&events).expect("reset");
    run(&[
        "run",
        path(&job),
        "--param",
        &format!("ds={}", DAYS[2]),
        "--lineage",
        &sink,
    ])
    .assert_code(4);
    let (summaries, raw) = validated(&events);
    let kinds: Vec<&str> = summaries
        .iter()
        .map(|s| s["eventType"].as_str().expect("type"))
        .collect();
    assert_eq!(kinds, ["START", "FAIL"]);
    let message = raw[1]["run"]["facets"]["errorMessage"]["message"]
        .as_str()
        .expect("message");
    assert!(message.starts_with("exit code 4") && message.contains("max_unscored_fraction"));
    assert_eq!(
        raw[1]["run"]["facets"]["scorch"]["status"],
        "rejected_by_checks"
    );
}

#[test]
fn events_reach_an_http_collector_and_a_collector_that_is_down_is_only_a_warning() {
    let dir = demo_copy();
    let job = dir.path().join("churn.toml");
    let received = dir.path().join("received.jsonl");
    let (_server, port) = collector(&received);
    let r = run(&[
        "run",
        path(&job),
        "--param",
        &format!("ds={}", DAYS[2]),
        "--lineage",
        &format!("http://127.0.0.1:{port}"),
    ]);
    r.assert_ok();
    let (summaries, _) = validated(&received);
    let kinds: Vec<&str> = summaries
        .iter()
        .map(|s| s["eventType"].as_str().expect("type"))
        .collect();
    assert_eq!(kinds, ["START", "COMPLETE"]);

    let down = format!("http://127.0.0.1:{}", free_port());
    let r = run(&[
        "run",
        path(&job),
        "--param",
        &format!("ds={}", DAYS[1]),
        "--lineage",
        &down,
    ]);
    r.assert_ok();
    assert!(
        r.stderr.contains("lineage START event not sent"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("lineage COMPLETE event not sent"),
        "{}",
        r.stderr
    );

    let r = run(&[
        "run",
        path(&job),
        "--param",
        "ds=2026-11-27",
        "--lineage",
        "marquez:5000",
    ]);
    r.assert_code(2);
}
