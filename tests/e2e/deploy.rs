//! The deployment files stay consistent with the command line: docker-compose.yml validates with
//! a compose client, every scorch command the compose file and the Kubernetes manifests run is
//! accepted by the real parser, and the job files they ship parse.

use std::path::Path;
use std::process::Command;

use crate::support::*;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn compose_file_validates_with_a_compose_client() {
    let client = repo().join("tests/servers/.compose/bin/docker-compose");
    assert!(
        client.exists(),
        "no compose client at {} (scripts/setup installs one)",
        client.display()
    );
    let out = Command::new(&client)
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .current_dir(repo())
        .output()
        .expect("docker-compose runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_deployed_command_line_parses() {
    let out = Command::new("python3")
        .arg(repo().join("tests/e2e/deploy_commands.py"))
        .arg(repo())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let commands: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert!(commands.len() >= 8, "{commands:?}");
    for c in &commands {
        let mut argv: Vec<String> = c["argv"]
            .as_array()
            .expect("argv")
            .iter()
            .map(|a| a.as_str().expect("string").to_string())
            .collect();
        // `--help` after the arguments makes the parser check every flag before it.
        argv.push("--help".into());
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let r = run(&args);
        assert_eq!(
            r.code,
            Some(0),
            "{}: scorch {:?}\n{}",
            c["where"],
            argv,
            r.stderr
        );
    }
}

#[test]
fn shipped_job_files_parse() {
    let dir = tempfile::TempDir::new().expect("temp");
    let cronjob =
        std::fs::read_to_string(repo().join("examples/kubernetes/cronjob.yaml")).expect("cronjob");
    let start = cronjob.find("churn.toml: |").expect("configmap job") + "churn.toml: |".len();
    let body: String = cronjob[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    std::fs::write(dir.path().join("k8s.toml"), body).expect("write");
    // The job files parse and plan up to their first remote read: the model package, which is
    // on a store this machine cannot reach (exit 5), or, for the shipped demo job, a package
    // that only `scorch demo` writes beside it (exit 6).
    for (job, code, says) in [
        (
            dir.path().join("k8s.toml"),
            5,
            "model package s3://models/churn/1.0.0",
        ),
        (
            repo().join("examples/compose/churn.toml"),
            5,
            "model package s3://demo/models/churn",
        ),
        (
            repo().join("jobs/churn.toml"),
            6,
            "no manifest `model.toml`",
        ),
    ] {
        let r = run_env(
            &[
                "validate",
                job.to_str().expect("utf-8"),
                "--param",
                "ds=2026-11-27",
            ],
            &[
                ("AWS_ACCESS_KEY_ID", "unused"),
                ("AWS_SECRET_ACCESS_KEY", "unused"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ENDPOINT", "http://127.0.0.1:9"),
                ("AWS_ALLOW_HTTP", "true"),
                ("SCORCH_STORE_MAX_RETRIES", "0"),
                ("SCORCH_STORE_RETRY_TIMEOUT", "1s"),
                ("SCORCH_STORE_CONNECT_TIMEOUT", "1s"),
            ],
        );
        r.assert_code(code);
        assert!(r.stderr.contains(says), "{}: {}", job.display(), r.stderr);
    }
}
