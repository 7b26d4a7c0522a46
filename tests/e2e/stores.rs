//! One conformance suite, every backend: the local disk, S3 (moto), GCS (fake-gcs-server) and
//! Azure Blob (azurite), all started for real. Each backend runs the same scorch behaviours:
//! scoring from the store to the store, an overwrite rerun, the commit, a race of two runs, and
//! model packages fetched from the store, verified and cached.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::servers::{Backend, Server, scorch_on, server};
use crate::support::*;

/// A demo fixture uploaded to a fresh folder of the backend, with a job that reads and writes
/// there.
pub struct RemoteJob {
    pub local: TempDir,
    pub folder: String,
    pub job: PathBuf,
    pub sha256: String,
}

pub fn remote_job(server: &Server, name: &str, stores: &str) -> RemoteJob {
    let local = demo_copy();
    let folder = server.folder(name);
    server.upload(&local.path().join("data"), &format!("{folder}/data"));
    server.upload(&local.path().join("models"), &format!("{folder}/models"));
    let sha256 = package_sha(&local.path().join("models/churn"));
    let job = local.path().join("remote.toml");
    write_remote_job(&job, &folder, &folder, &folder, &sha256, stores);
    RemoteJob {
        local,
        folder,
        job,
        sha256,
    }
}

pub fn write_remote_job(
    job: &Path,
    data: &str,
    model: &str,
    out: &str,
    sha256: &str,
    stores: &str,
) {
    fs::write(
        job,
        format!(
            r#"[job]
name = "churn_remote"

[params]
ds = {{ type = "date" }}

[sources.features]
url = "{data}/data/features"
partition_columns = [{{ name = "ds", type = "date" }}]

[models.churn]
uri = "{model}/models/churn"
sha256 = "{sha256}"

[query]
file = "churn.sql"

[output]
url = "{out}/out/churn_scores"
partition_by = ["ds"]

[output.rejects]
url = "{out}/out/churn_rejects"
keys = ["customer_id", "ds"]

[checks]
min_rows = 1
{stores}"#
        ),
    )
    .expect("write job");
}

fn run_remote(server: &Server, job: &Path, day: &str, env: &[(&str, &str)]) -> Run {
    let mut c = scorch_on(server);
    c.args([
        "run",
        job.to_str().expect("utf-8"),
        "--param",
        &format!("ds={day}"),
        "--json",
    ]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("scorch runs").into()
}

/// (customer id, prediction) of a local run of the same fixture: the reference.
fn local_reference(job: &RemoteJob) -> Vec<(i64, Option<f32>)> {
    run(&[
        "run",
        job.local.path().join("churn.toml").to_str().expect("utf-8"),
        "--param",
        &format!("ds={}", DAYS[2]),
    ])
    .assert_ok();
    read_scores(&job.local.path().join("out/churn_scores"))
        .into_iter()
        .map(|r| (r.customer_id, r.probability))
        .collect()
}

fn remote_scores(server: &Server, folder: &str) -> Vec<ScoreRow> {
    let table = server.download(&format!("{folder}/out/churn_scores"));
    read_scores(table.path())
}

fn scores_rerun_and_commits(backend: Backend) {
    let server = server(backend);
    let job = remote_job(server, "conformance", "");
    let reference = local_reference(&job);

    let first = run_remote(server, &job.job, DAYS[2], &[]);
    first.assert_ok();
    let rows = remote_scores(server, &job.folder);
    let got: Vec<(i64, Option<f32>)> = rows
        .iter()
        .map(|r| (r.customer_id, r.probability))
        .collect();
    assert_eq!(
        got, reference,
        "{backend:?}: predictions differ from the local run"
    );

    let second = run_remote(server, &job.job, DAYS[2], &[]);
    second.assert_ok();
    let again = remote_scores(server, &job.folder);
    assert_eq!(
        again.len(),
        rows.len(),
        "{backend:?}: rerun changed the row count"
    );
    let keys: BTreeSet<i64> = again.iter().map(|r| r.customer_id).collect();
    assert_eq!(
        keys.len(),
        again.len(),
        "{backend:?}: duplicates after a rerun"
    );
    assert_eq!(second.json()["data_sha256"], first.json()["data_sha256"]);

    // A Delta table: created (version 0), then one entry per run, the second replacing the
    // first run's file; no run left an in-flight record behind.
    let listing = server.list(&format!("{}/out/churn_scores", job.folder));
    assert_eq!(
        listing
            .iter()
            .filter(|p| p.starts_with("_delta_log/") && p.ends_with(".json"))
            .count(),
        3,
        "{backend:?}: {listing:?}"
    );
    assert!(
        !listing.iter().any(|p| p.starts_with("_scorch/inflight")),
        "{backend:?}: in-flight record left: {listing:?}"
    );

    let log = scorch_on(server)
        .args(["log", &format!("{}/out/churn_scores", job.folder), "--json"])
        .output()
        .expect("log");
    let log: serde_json::Value = serde_json::from_slice(&log.stdout).expect("log json");
    let versions = log["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 3, "{log}");
    assert_eq!(versions[2]["files_removed"], 1, "{log}");
    assert_eq!(
        versions[2]["scorch"]["scorch.run_id"],
        second.json()["run_id"],
        "{log}"
    );
}

/// Two runs race for the same partition, meeting at the commit point (`SCORCH_RENDEZVOUS`), so
/// that both try the create-if-absent write of the same log entry: exactly one may win.
///
/// What this proves depends on the server. moto (S3), azurite (Azure) and the local disk decide
/// `PutMode::Create` themselves, as the real services do: the guarantee is proven there. The GCS
/// emulator ignores `ifGenerationMatch` on uploads, so `tests/servers/serve.py`'s shim decides
/// GCS's conditional writes under its own lock: on GCS this test checks scorch's side of the
/// protocol (the request it sends and how it takes a conflict), not Google's.
fn concurrent_runs_commit_once(backend: Backend) {
    let server = server(backend);
    let job = remote_job(server, "race", "");
    let barrier = TempDir::new().expect("temp");
    let rendezvous = format!("before-commit:{}:2", barrier.path().display());
    let spawn = || {
        scorch_on(server)
            .args([
                "run",
                job.job.to_str().expect("utf-8"),
                "--param",
                &format!("ds={}", DAYS[2]),
            ])
            .env("SCORCH_RENDEZVOUS", &rendezvous)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let results: Vec<Run> = [a, b]
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait").into())
        .collect();
    let mut codes: Vec<Option<i32>> = results.iter().map(|r| r.code).collect();
    codes.sort();
    assert_eq!(codes, vec![Some(0), Some(7)], "{backend:?}: {results:#?}");
    let loser = results.iter().find(|r| r.code == Some(7)).expect("a loser");
    assert!(loser.stderr.contains("commit conflict"), "{}", loser.stderr);

    let listing = server.list(&format!("{}/out/churn_scores", job.folder));
    assert_eq!(
        listing
            .iter()
            .filter(|p| p.starts_with("_delta_log/") && p.ends_with(".json"))
            .count(),
        2,
        "the table's creation and one commit: {listing:?}"
    );
    assert_eq!(
        listing
            .iter()
            .filter(|p| p.ends_with(".parquet") && !p.starts_with('_'))
            .count(),
        1,
        "the loser's files are removed: {listing:?}"
    );
    assert!(
        !listing.iter().any(|p| p.starts_with("_scorch/inflight")),
        "loser left its in-flight record: {listing:?}"
    );
    let rows = remote_scores(server, &job.folder);
    let keys: BTreeSet<i64> = rows.iter().map(|r| r.customer_id).collect();
    assert_eq!(keys.len(), rows.len());
    assert!(!rows.is_empty());
}

fn model_is_fetched_once_and_cached(backend: Backend) {
    let server = server(backend);
    let job = remote_job(server, "modelcache", "");
    let cache = TempDir::new().expect("temp");
    let env = [("SCORCH_CACHE_DIR", cache.path().to_str().expect("utf-8"))];
    let first = run_remote(server, &job.job, DAYS[2], &env);
    first.assert_ok();
    let second = run_remote(server, &job.job, DAYS[2], &env);
    second.assert_ok();
    let source = |r: &Run| {
        r.json()["models"][0]["source"]
            .as_str()
            .expect("source")
            .to_string()
    };
    if backend == Backend::Local {
        assert_eq!(
            (source(&first), source(&second)),
            ("local".into(), "local".into())
        );
        return;
    }
    assert_eq!(
        (source(&first), source(&second)),
        ("store".into(), "cache".into())
    );
    assert!(cache.path().join("models").join(&job.sha256).is_dir());

    // Someone replaces the weights on the store without re-pinning: the cached, pinned package
    // keeps the job reproducible...
    let weights_url = format!("{}/models/churn", job.folder);
    let tampered = TempDir::new().expect("temp");
    copy_dir(&job.local.path().join("models/churn"), tampered.path());
    let w = tampered.path().join("weights.safetensors");
    let mut bytes = fs::read(&w).expect("weights");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&w, bytes).expect("write");
    server.upload(tampered.path(), &weights_url);
    run_remote(server, &job.job, DAYS[2], &env).assert_ok();
    // ...and without the cache the change is caught before scoring.
    fs::remove_dir_all(cache.path().join("models")).expect("clear cache");
    let r = run_remote(server, &job.job, DAYS[2], &env);
    r.assert_code(6);
    assert!(r.stderr.contains("SHA-256 mismatch"), "{}", r.stderr);
}

macro_rules! conformance {
    ($name:ident, $backend:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn scores_from_the_store_reruns_and_commits() {
                scores_rerun_and_commits($backend);
            }

            #[test]
            fn concurrent_runs_commit_exactly_once() {
                concurrent_runs_commit_once($backend);
            }

            #[test]
            fn model_packages_are_fetched_verified_and_cached() {
                model_is_fetched_once_and_cached($backend);
            }
        }
    };
}

conformance!(local, Backend::Local);
conformance!(s3, Backend::S3);
conformance!(gcs, Backend::Gcs);
conformance!(azure, Backend::Azure);

#[test]
fn scores_across_stores() {
    // Features on S3, the model on Azure, the output on GCS.
    let (s3, az, gcs) = (
        server(Backend::S3),
        server(Backend::Azure),
        server(Backend::Gcs),
    );
    let local = demo_copy();
    let (data, model, out) = (s3.folder("cross"), az.folder("cross"), gcs.folder("cross"));
    s3.upload(&local.path().join("data"), &format!("{data}/data"));
    az.upload(&local.path().join("models"), &format!("{model}/models"));
    let sha = package_sha(&local.path().join("models/churn"));
    let job = local.path().join("cross.toml");
    write_remote_job(&job, &data, &model, &out, &sha, "");
    let cache = TempDir::new().expect("temp");
    let mut c = scorch();
    c.envs(&s3.env)
        .envs(&az.env)
        .envs(&gcs.env)
        .env("SCORCH_CACHE_DIR", cache.path());
    let r: Run = c
        .args([
            "run",
            job.to_str().expect("utf-8"),
            "--param",
            &format!("ds={}", DAYS[2]),
            "--json",
        ])
        .output()
        .expect("run")
        .into();
    r.assert_ok();
    let m = r.json();
    let io = m["io"].as_object().expect("io");
    for store in ["s3://scorch-test", "az://scorch-test", "gs://scorch-test"] {
        assert!(io.contains_key(store), "{store} missing from {io:?}");
    }
    assert!(
        io["gs://scorch-test"]["bytes_written"]
            .as_u64()
            .expect("written")
            > 0
    );
    assert!(io["s3://scorch-test"]["bytes_read"].as_u64().expect("read") > 0);
    let rows = read_scores(gcs.download(&format!("{out}/out/churn_scores")).path());
    assert_eq!(
        rows.len() as u64,
        m["rows"]["written"].as_u64().expect("rows")
    );
}
