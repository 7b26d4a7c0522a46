//! Prometheus metrics of a run: the textfile parsed by Prometheus' reference parser, and the push
//! read back from a real Pushgateway's HTTP API, for a run that succeeds, one a quality gate
//! stops, and one whose Pushgateway is down.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// A Pushgateway (the Debian package's binary, or `SCORCH_PUSHGATEWAY`) on a free local port.
struct Pushgateway {
    child: Child,
    url: String,
}

impl Pushgateway {
    fn start() -> Self {
        let binary = std::env::var("SCORCH_PUSHGATEWAY")
            .unwrap_or_else(|_| "/usr/bin/prometheus-pushgateway".into());
        assert!(
            Path::new(&binary).exists(),
            "{binary} is missing: run ./scripts/setup (it installs prometheus-pushgateway)"
        );
        let port = free_port();
        let child = Command::new(&binary)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Pushgateway");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the Pushgateway did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, url }
    }

    /// The samples of group `job=<job>` as the Pushgateway's API reports them: (name, labels,
    /// value).
    fn group(&self, job: &str) -> Vec<(String, Value, f64)> {
        let body = read_with("read_metrics.py", &["--api", &self.url]);
        let mut samples = Vec::new();
        for group in body["data"].as_array().expect("groups") {
            if group["labels"]["job"] != job {
                continue;
            }
            for (name, family) in group.as_object().expect("group") {
                let Some(metrics) = family.get("metrics").and_then(Value::as_array) else {
                    continue;
                };
                for m in metrics {
                    let value: f64 = m["value"].as_str().expect("value").parse().expect("number");
                    samples.push((name.clone(), m["labels"].clone(), value));
                }
            }
        }
        samples
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `name` whose labels include every pair of `labels`.
fn sample(samples: &[(String, Value, f64)], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v))
        .map(|(_, _, v)| *v)
}

/// The textfile's samples, parsed by the reference parser.
fn textfile(path: &Path) -> Vec<(String, Value, f64)> {
    let parsed = read_with("read_metrics.py", &[path.to_str().expect("utf-8")]);
    parsed
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name").to_string(),
                s["labels"].clone(),
                s["value"].as_f64().expect("value"),
            )
        })
        .collect()
}

#[test]
fn metrics_describe_every_run_in_the_textfile_and_on_the_pushgateway() {
    let gateway = Pushgateway::start();
    let dir = demo_copy();
    let job = dir.path().join("churn.toml");
    let prom = dir.path().join("scorch.prom");
    let run_with_metrics = |extra: &[&str]| {
        let mut args = vec![
            "run",
            job.to_str().expect("utf-8"),
            "--param",
            "ds=2026-11-27",
            "--json",
            "--metrics-file",
            prom.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };

    // A run that commits.
    let ok = run_with_metrics(&["--pushgateway", &gateway.url]);
    ok.assert_ok();
    let m = ok.json();
    let output = m["output"]["url"].as_str().expect("url").to_string();
    let labels = [("job", "churn_daily"), ("output", output.as_str())];
    let finished = chrono::DateTime::parse_from_rfc3339(m["finished_at"].as_str().expect("time"))
        .expect("time")
        .timestamp() as f64;
    for samples in [textfile(&prom), gateway.group("churn_daily")] {
        assert_eq!(sample(&samples, "scorch_run_exit_code", &labels), Some(0.0));
        let success = sample(&samples, "scorch_last_success_timestamp_seconds", &labels)
            .expect("last success");
        assert!((success - finished).abs() < 5.0, "{success} vs {finished}");
        for (stage, key) in [
            ("read", "read"),
            ("written", "written"),
            ("unscored", "unscored"),
        ] {
            assert_eq!(
                sample(
                    &samples,
                    "scorch_rows",
                    &[labels[0], labels[1], ("stage", stage)]
                ),
                m["rows"][key].as_f64(),
                "rows {stage}"
            );
        }
        for (reason, count) in m["rows"]["models"]["churn"]["reasons"]
            .as_object()
            .expect("reasons")
        {
            assert_eq!(
                sample(
                    &samples,
                    "scorch_model_rows_unscored",
                    &[("model", "churn"), ("reason", reason.as_str())]
                ),
                count.as_f64(),
                "unscored rows for {reason}"
            );
        }
        assert_eq!(
            sample(&samples, "scorch_scan", &[("counter", "bytes_scanned")]),
            m["scan"]["bytes_scanned"].as_f64()
        );
        assert_eq!(
            sample(&samples, "scorch_output", &[("counter", "version")]),
            m["output"]["version"].as_f64()
        );
        assert_eq!(
            sample(
                &samples,
                "scorch_check_passed",
                &[("check", "max_unscored_fraction")]
            ),
            Some(1.0)
        );
        let total = sample(
            &samples,
            "scorch_run_duration_seconds",
            &[("phase", "total")],
        )
        .expect("total duration");
        assert!(total > 0.0);
    }
    let first_success = sample(
        &textfile(&prom),
        "scorch_last_success_timestamp_seconds",
        &labels,
    );

    // Every series the shipped Grafana dashboard queries is one a run writes.
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/grafana/scorch.json"),
    )
    .expect("dashboard");
    let written: std::collections::BTreeSet<String> = textfile(&prom)
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    let queried: std::collections::BTreeSet<String> = dashboard
        .split("scorch_")
        .skip(1)
        .map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            format!("scorch_{name}")
        })
        .filter(|name| name != "scorch_" && !name.ends_with('_'))
        .collect();
    assert!(queried.len() >= 6, "{queried:?}");
    let missing: Vec<&String> = queried.difference(&written).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries series no run writes: {missing:?}"
    );

    // A run the quality gate stops: exit 4 in both, the last success time unchanged.
    std::thread::sleep(Duration::from_millis(1100));
    edit(
        &job,
        "max_unscored_fraction = 0.01",
        "max_unscored_fraction = 0.0",
    );
    let rejected = run_with_metrics(&["--pushgateway", &gateway.url]);
    rejected.assert_code(4);
    for samples in [textfile(&prom), gateway.group("churn_daily")] {
        assert_eq!(sample(&samples, "scorch_run_exit_code", &labels), Some(4.0));
        assert_eq!(
            sample(&samples, "scorch_last_success_timestamp_seconds", &labels),
            first_success,
            "a failed run leaves the last success time alone"
        );
        assert_eq!(
            sample(
                &samples,
                "scorch_check_passed",
                &[("check", "max_unscored_fraction")]
            ),
            Some(0.0)
        );
    }

    // A Pushgateway that is down: a warning, and the run's own exit code.
    edit(
        &job,
        "max_unscored_fraction = 0.0",
        "max_unscored_fraction = 0.01",
    );
    let down = format!("http://127.0.0.1:{}", free_port());
    let r = run_with_metrics(&["--pushgateway", &down, "--metrics-job", "nightly_churn"]);
    r.assert_ok();
    assert!(r.stderr.contains("metrics not pushed"), "{}", r.stderr);
    let samples = textfile(&prom);
    assert_eq!(
        sample(
            &samples,
            "scorch_run_exit_code",
            &[("job", "nightly_churn")]
        ),
        Some(0.0),
        "--metrics-job names the job label"
    );
}

#[test]
fn a_job_that_does_not_load_still_reports_its_exit_code() {
    let dir = tempfile::TempDir::new().expect("temp");
    let job = dir.path().join("broken.toml");
    std::fs::write(&job, "[job]\nname = \"broken\"\nunknown = 1\n").expect("write");
    let prom = dir.path().join("scorch.prom");
    let r = run(&[
        "run",
        job.to_str().expect("utf-8"),
        "--metrics-file",
        prom.to_str().expect("utf-8"),
    ]);
    r.assert_code(2);
    let samples = textfile(&prom);
    assert_eq!(
        sample(&samples, "scorch_run_exit_code", &[("job", "broken")]),
        Some(2.0)
    );
    assert_eq!(
        sample(&samples, "scorch_last_success_timestamp_seconds", &[]),
        None
    );
}

#[test]
fn metrics_flags_are_checked_before_the_run() {
    let dir = demo_copy();
    let job = dir.path().join("churn.toml");
    let job = job.to_str().expect("utf-8");
    for (flag, value, says) in [
        (
            "--metrics-file",
            "/no/such/folder/scorch.prom",
            "does not exist",
        ),
        (
            "--pushgateway",
            "pushgateway:9091",
            "not an http:// or https:// URL",
        ),
        ("--metrics-job", "", "must not be empty"),
    ] {
        let r = run(&["run", job, "--param", "ds=2026-11-27", flag, value]);
        r.assert_code(2);
        assert!(r.stderr.contains(says), "{flag} {value}: {}", r.stderr);
    }
    assert!(!dir.path().join("out/churn_scores").exists(), "nothing ran");
}
