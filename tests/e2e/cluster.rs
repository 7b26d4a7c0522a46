//! Distributed scoring on a loopback Ballista cluster: one scheduler and two executors, each a
//! separate `scorch` process on 127.0.0.1, with the S3 test server as the object store.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::servers::{Backend, Server, scorch_on, server};
use crate::stores::{remote_job, write_remote_job};
use crate::support::*;

/// `scorch scheduler` on 127.0.0.1:`port`.
fn scheduler_command(port: u16) -> std::process::Command {
    let mut c = scorch();
    c.args([
        "scheduler",
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--external-host",
        "127.0.0.1",
    ]);
    c
}

/// A scheduler and executors, killed when dropped.
pub struct Cluster {
    pub url: String,
    scheduler: Child,
    executors: Vec<Child>,
    dir: TempDir,
}

impl Cluster {
    /// Starts a scheduler and `executors` executors with `env` (store endpoints, credentials).
    pub fn start(executors: usize, env: &BTreeMap<String, String>) -> Self {
        Self::start_each(&vec![env.clone(); executors], env)
    }

    /// Starts a scheduler with `env`, and one executor per entry of `executors`, each with its
    /// own environment.
    pub fn start_each(
        executors: &[BTreeMap<String, String>],
        env: &BTreeMap<String, String>,
    ) -> Self {
        let dir = TempDir::new().expect("temp");
        let port = free_port();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log file");
        let scheduler = scheduler_command(port)
            .envs(env)
            .args(["--executor-timeout", "6s"])
            .stdout(Stdio::null())
            .stderr(log("scheduler.log"))
            .spawn()
            .expect("scheduler starts");
        let mut cluster = Self {
            url: format!("df://127.0.0.1:{port}"),
            scheduler,
            executors: Vec::new(),
            dir,
        };
        wait_for_port(port);
        for (i, env) in executors.iter().enumerate() {
            cluster.add_executor(i, env);
        }
        cluster
    }

    fn add_executor(&mut self, i: usize, env: &BTreeMap<String, String>) {
        let (flight, grpc) = (free_port(), free_port());
        let work = self.dir.path().join(format!("executor-{i}"));
        let port = self.url.rsplit(':').next().expect("port").to_string();
        let child = scorch()
            .envs(env)
            .args(["executor", "--scheduler", &format!("127.0.0.1:{port}")])
            .args([
                "--bind",
                &format!("127.0.0.1:{flight}"),
                "--grpc-port",
                &grpc.to_string(),
            ])
            .args([
                "--external-host",
                "127.0.0.1",
                "--concurrent-tasks",
                "2",
                "--heartbeat",
                "1s",
            ])
            .args(["--work-dir", work.to_str().expect("utf-8")])
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.path().join(format!("executor-{i}.log")))
                    .expect("log"),
            )
            .spawn()
            .expect("executor starts");
        wait_for_port(flight);
        self.executors.push(child);
    }

    /// Whether executor `i` has exited (on its own).
    pub fn exited(&mut self, i: usize) -> bool {
        self.executors[i].try_wait().ok().flatten().is_some()
    }

    /// The processes' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path()).expect("dir").flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out.push_str(&format!("--- {}\n", entry.file_name().to_string_lossy()));
                out.extend(tail.iter().rev().map(|l| format!("{l}\n")));
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for e in &mut self.executors {
            let _ = e.kill();
            let _ = e.wait();
        }
        let _ = self.scheduler.kill();
        let _ = self.scheduler.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_on(server: &Server, job: &Path, day: &str, cluster: Option<&str>) -> Run {
    let mut c = scorch_on(server);
    c.args([
        "run",
        job.to_str().expect("utf-8"),
        "--param",
        &format!("ds={day}"),
        "--json",
    ]);
    if let Some(url) = cluster {
        c.args(["--cluster", url]);
    }
    c.output().expect("run").into()
}

fn scores(server: &Server, folder: &str) -> Vec<ScoreRow> {
    read_scores(
        server
            .download(&format!("{folder}/out/churn_scores"))
            .path(),
    )
}

#[test]
fn cluster_output_equals_local_output() {
    let s3 = server(Backend::S3);
    let job = remote_job(s3, "cluster-equal", "");
    let local = run_on(s3, &job.job, DAYS[2], None);
    local.assert_ok();
    let local_rows = scores(s3, &job.folder);

    let cluster = Cluster::start(2, &s3.env);
    let remote = run_on(s3, &job.job, DAYS[2], Some(&cluster.url));
    assert_eq!(
        remote.code,
        Some(0),
        "{}\n{}",
        remote.stderr,
        cluster.logs()
    );
    let m = remote.json();
    assert_eq!(m["cluster"].as_str(), Some(cluster.url.as_str()));
    let cluster_rows = scores(s3, &job.folder);

    assert_eq!(cluster_rows.len(), local_rows.len());
    for (a, b) in cluster_rows.iter().zip(&local_rows) {
        assert_eq!(
            (&a.ds, a.customer_id, a.probability),
            (&b.ds, b.customer_id, b.probability)
        );
        assert_eq!(
            a.data_sha256, b.data_sha256,
            "same inputs, same fingerprint"
        );
        assert_eq!(a.model_sha256, b.model_sha256);
        assert_ne!(a.run_id, b.run_id);
    }
    assert_eq!(m["data_sha256"], local.json()["data_sha256"]);
    // The scoring functions' counts come back from the executors: the same rows unscored, for
    // the same reasons, as in process.
    let local_rows_json = &local.json()["rows"];
    assert!(
        local_rows_json["unscored"].as_u64() > Some(0),
        "{local_rows_json}"
    );
    assert_eq!(m["rows"]["unscored"], local_rows_json["unscored"]);
    assert_eq!(
        m["rows"]["models"]["churn"]["reasons"],
        local_rows_json["models"]["churn"]["reasons"]
    );
    assert_eq!(
        m["rows"]["models"]["churn"]["inputs"],
        local_rows_json["models"]["churn"]["inputs"]
    );
    // The executors kept the rejected rows: the rejects table holds each run's, as many as it
    // left unscored, and the cluster run's files were written by executor tasks.
    let rejects = s3.download(&format!("{}/out/churn_rejects", job.folder));
    let mut per_run: BTreeMap<String, u64> = Default::default();
    for file in delta_files(rejects.path(), None) {
        for batch in read_parquet(&file) {
            let runs = batch.column_by_name("run_id").expect("run_id");
            let runs = arrow::compute::cast(runs, &arrow::datatypes::DataType::Utf8).expect("cast");
            for run in arrow::array::AsArray::as_string::<i32>(&runs)
                .iter()
                .flatten()
            {
                *per_run.entry(run.to_string()).or_default() += 1;
            }
        }
    }
    assert_eq!(
        per_run.get(m["run_id"].as_str().expect("run id")).copied(),
        m["rows"]["unscored"].as_u64(),
        "{per_run:?}"
    );
    assert_eq!(m["rejects"]["rows"], m["rows"]["unscored"]);
    assert_eq!(per_run.len(), 2, "{per_run:?}");
    // The same commit protocol: the table's creation and one version per run, the cluster's
    // replacing the local run's file; no in-flight record left behind.
    let listing = s3.list(&format!("{}/out/churn_scores", job.folder));
    assert_eq!(
        listing
            .iter()
            .filter(|p| p.starts_with("_delta_log/") && p.ends_with(".json"))
            .count(),
        3,
        "{listing:?}"
    );
    assert!(!listing.iter().any(|p| p.starts_with("_scorch/inflight")));
    let downloaded = s3.download(&format!("{}/out/churn_scores", job.folder));
    assert_eq!(
        data_files(downloaded.path()).len(),
        1,
        "the local run's file is replaced: {listing:?}"
    );

    // A Delta source travels to the executors too, at the version the job asks for: version 1
    // is the local run's output.
    let copy = job.local.path().join("copy.toml");
    std::fs::write(
        &copy,
        format!(
            r#"[job]
name = "copy_scores"

[sources.scores]
url = "{folder}/out/churn_scores"
format = "delta"
version = 1

[query]
sql = "SELECT customer_id, region, churn_probability, ds FROM scores"

[output]
url = "{folder}/out/copy"
partition_by = ["ds"]
"#,
            folder = job.folder
        ),
    )
    .expect("write job");
    let copied: Run = scorch_on(s3)
        .args([
            "run",
            copy.to_str().expect("utf-8"),
            "--cluster",
            &cluster.url,
            "--json",
        ])
        .output()
        .expect("run")
        .into();
    assert_eq!(
        copied.code,
        Some(0),
        "{}\n{}",
        copied.stderr,
        cluster.logs()
    );
    assert_eq!(copied.json()["source_versions"]["scores"], 1);
    assert_eq!(
        copied.json()["cluster"].as_str(),
        Some(cluster.url.as_str())
    );
    let copy_rows = read_scores(s3.download(&format!("{}/out/copy", job.folder)).path());
    assert_eq!(copy_rows.len(), local_rows.len());
    for (a, b) in copy_rows.iter().zip(&local_rows) {
        assert_eq!(
            (&a.ds, a.customer_id, a.probability),
            (&b.ds, b.customer_id, b.probability)
        );
    }
}

#[test]
fn unreachable_scheduler_is_a_clear_storage_or_cluster_error() {
    let s3 = server(Backend::S3);
    let job = remote_job(s3, "cluster-unreachable", "");
    let url = format!("df://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let r = run_on(s3, &job.job, DAYS[2], Some(&url));
    r.assert_code(5);
    assert!(
        r.stderr.contains(&url) || r.stderr.contains("cluster"),
        "{}",
        r.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        s3.list(&format!("{}/out/churn_scores", job.folder))
            .iter()
            .all(|p| !p.ends_with(".parquet"))
    );
}

#[test]
fn an_executor_that_cannot_reach_the_model_names_it() {
    let s3 = server(Backend::S3);
    // Features and output on the shared local disk; the model on S3, which the executors are
    // pointed away from.
    let local = demo_copy();
    let folder = s3.folder("cluster-model");
    s3.upload(&local.path().join("models"), &format!("{folder}/models"));
    let sha = package_sha(&local.path().join("models/churn"));
    let job = local.path().join("split.toml");
    let here = url::Url::from_directory_path(local.path())
        .expect("url")
        .to_string();
    write_remote_job(
        &job,
        here.trim_end_matches('/'),
        &folder,
        here.trim_end_matches('/'),
        &sha,
        "",
    );
    let mut executor_env = s3.env.clone();
    executor_env.insert(
        "AWS_ENDPOINT".into(),
        format!("http://127.0.0.1:{}", free_port()),
    );
    executor_env.insert("SCORCH_STORE_MAX_RETRIES".into(), "1".into());
    executor_env.insert("SCORCH_STORE_RETRY_TIMEOUT".into(), "2s".into());
    // An empty model cache, so the executor has to fetch the package.
    let cache = TempDir::new().expect("temp");
    executor_env.insert(
        "SCORCH_CACHE_DIR".into(),
        cache.path().display().to_string(),
    );
    let cluster = Cluster::start(1, &executor_env);
    let r = run_on(s3, &job, DAYS[2], Some(&cluster.url));
    r.assert_code(5);
    assert!(
        r.stderr.contains("model `churn`") && r.stderr.contains("s3://scorch-test"),
        "{}",
        r.stderr
    );
    assert!(
        data_files(&local.path().join("out/churn_scores")).is_empty(),
        "nothing may be published"
    );
}

#[test]
fn losing_an_executor_mid_job_reruns_its_work_on_the_survivor() {
    let s3 = server(Backend::S3);
    let local = TempDir::new().expect("temp");
    let path = local.path().to_str().expect("utf-8");
    run(&[
        "demo",
        "--dir",
        path,
        "--rows",
        "200000",
        "--days",
        "1",
        "--epochs",
        "1",
        "--row-group-rows",
        "20000",
        "--skip-run",
    ])
    .assert_ok();
    let folder = s3.folder("cluster-kill");
    s3.upload(&local.path().join("data"), &format!("{folder}/data"));
    s3.upload(&local.path().join("models"), &format!("{folder}/models"));
    let sha = package_sha(&local.path().join("models/churn"));
    let job = local.path().join("kill.toml");
    write_remote_job(&job, &folder, &folder, &folder, &sha, "");
    let args = |cluster: Option<&str>| {
        let mut a = vec![
            "run".to_string(),
            job.to_str().expect("utf-8").to_string(),
            "--param".into(),
            "ds=2026-11-27".into(),
            "--json".into(),
            "--batch-size".into(),
            "1024".into(),
            "--target-partitions".into(),
            "4".into(),
        ];
        if let Some(url) = cluster {
            a.extend(["--cluster".to_string(), url.to_string()]);
        }
        a
    };
    // The reference: the same job in-process.
    let local_run: Run = scorch_on(s3).args(args(None)).output().expect("run").into();
    local_run.assert_ok();
    let expected = scores(s3, &folder);
    assert_eq!(expected.len(), 200_000);

    // Executor 0 kills itself (SIGKILL) when it has written its first batch: always mid-job,
    // with its tasks started and their files half-written.
    let mut doomed = s3.env.clone();
    doomed.insert("SCORCH_FAILPOINT".into(), "write-batch".into());
    let mut cluster = Cluster::start_each(&[doomed, s3.env.clone()], &s3.env);
    let started = Instant::now();
    let out: Run = scorch_on(s3)
        .args(args(Some(&cluster.url)))
        .output()
        .expect("run")
        .into();
    assert_eq!(out.code, Some(0), "{}\n{}", out.stderr, cluster.logs());
    assert!(
        cluster.exited(0),
        "executor 0 should have died at its first batch\n{}",
        cluster.logs()
    );
    eprintln!(
        "executor 0 died mid-job; the job finished on executor 1 in {:?}",
        started.elapsed()
    );
    let rows = scores(s3, &folder);
    let keys: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.customer_id).collect();
    assert_eq!(keys.len(), rows.len(), "no duplicates");
    assert_eq!(rows.len(), expected.len(), "complete output");
    for (a, b) in rows.iter().zip(&expected) {
        assert_eq!(
            (a.customer_id, a.probability),
            (b.customer_id, b.probability),
            "the cluster's output equals the local run's"
        );
    }
    let listing = s3.list(&format!("{folder}/out/churn_scores"));
    assert!(
        !listing.iter().any(|p| p.starts_with("_scorch/staging")),
        "the dead executor's half-written files are cleaned up: {listing:?}"
    );
}

#[test]
fn the_scheduler_stops_cleanly_on_sigterm_and_sigint() {
    for signal in ["TERM", "INT"] {
        let port = free_port();
        let mut child = scheduler_command(port)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("scheduler starts");
        wait_for_port(port);
        let sent = Instant::now();
        std::process::Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .expect("kill");
        let deadline = sent + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the scheduler ignored SIG{signal} for 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(0), "SIG{signal}: {status:?}");
        eprintln!("scheduler stopped {:?} after SIG{signal}", sent.elapsed());
    }
}

#[test]
fn the_jobs_store_options_travel_to_the_executors() {
    let s3 = server(Backend::S3);
    let endpoint = s3.env["AWS_ENDPOINT"].clone();
    // The endpoint comes from the job's [stores] only: neither the client nor the cluster has it
    // in its environment (the credentials, as always, come from the environment).
    let stores =
        format!("\n[stores.\"s3://scorch-test\"]\nendpoint = \"{endpoint}\"\nallow_http = true\n");
    let job = remote_job(s3, "cluster-stores", &stores);
    let mut env = s3.env.clone();
    env.remove("AWS_ENDPOINT");
    env.remove("AWS_ALLOW_HTTP");
    // The executors get a model cache of their own, so they must fetch the package from S3.
    let cache = TempDir::new().expect("temp");
    let mut executor_env = env.clone();
    executor_env.insert(
        "SCORCH_CACHE_DIR".into(),
        cache.path().display().to_string(),
    );
    let cluster = Cluster::start(1, &executor_env);
    let r: Run = scorch()
        .envs(&env)
        .args([
            "run",
            job.job.to_str().expect("utf-8"),
            "--param",
            &format!("ds={}", DAYS[2]),
            "--json",
            "--cluster",
            &cluster.url,
        ])
        .output()
        .expect("run")
        .into();
    assert_eq!(r.code, Some(0), "{}\n{}", r.stderr, cluster.logs());
    assert!(r.json()["rows"]["written"].as_u64().expect("written") > 0);
    assert!(
        std::fs::read_dir(cache.path().join("models"))
            .map(|d| d.count())
            .unwrap_or(0)
            > 0,
        "the executor fetched the model through the job's store options\n{}",
        cluster.logs()
    );
}

#[test]
fn an_alias_promoted_while_a_cluster_run_is_in_flight_does_not_change_the_run() {
    let s3 = server(Backend::S3);
    let job = remote_job(s3, "cluster-alias", "");
    let registry = format!("{}/registry", job.folder);
    let on_s3 = |args: &[&str]| -> Run {
        let mut c = scorch_on(s3);
        c.args(args);
        c.output().expect("scorch runs").into()
    };
    let v1 = job.local.path().join("models/churn");
    let v2 = job.local.path().join("churn-1.1.0");
    copy_dir(&v1, &v2);
    edit(
        &v2.join("model.toml"),
        "version = \"1.0.0\"",
        "version = \"1.1.0\"",
    );
    for package in [&v1, &v2] {
        on_s3(&[
            "model",
            "publish",
            package.to_str().expect("utf-8"),
            "--registry",
            &registry,
        ])
        .assert_ok();
    }
    let promote = |version: &str| {
        on_s3(&[
            "model",
            "promote",
            &format!("churn@{version}"),
            "--alias",
            "champion",
            "--registry",
            &registry,
        ])
        .assert_ok();
    };
    promote("1.0.0");
    edit(
        &job.job,
        &format!(
            "uri = \"{}/models/churn\"\nsha256 = \"{}\"",
            job.folder, job.sha256
        ),
        &format!("registry = \"{registry}\"\nalias = \"champion\""),
    );
    let sha2 = package_sha(&v2);

    let cluster = Cluster::start(2, &s3.env);
    // The run resolves the alias, plans, and waits at the rendezvous before it sends the plan.
    let meet = TempDir::new().expect("temp dir");
    let mut c = scorch_on(s3);
    c.args([
        "run",
        job.job.to_str().expect("utf-8"),
        "--param",
        &format!("ds={}", DAYS[2]),
        "--cluster",
        &cluster.url,
        "--json",
    ])
    .env(
        "SCORCH_RENDEZVOUS",
        format!("before-write:{}:2", meet.path().display()),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let running = c.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(meet.path()).expect("dir").count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the run never reached the rendezvous"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    promote("1.1.0");
    std::fs::write(meet.path().join("promoted"), "go").expect("release");
    let finished: Run = running.wait_with_output().expect("wait").into();
    finished.assert_ok();
    let m = finished.json();
    assert_eq!(m["models"][0]["sha256"], job.sha256.as_str());
    assert_eq!(m["models"][0]["registry"]["version"], "1.0.0");
    let rows = scores(s3, &job.folder);
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r.model_sha256.as_deref() == Some(job.sha256.as_str())),
        "the executors scored with the version the run resolved"
    );

    // The next run resolves the alias again.
    let next = run_on(s3, &job.job, DAYS[2], Some(&cluster.url));
    next.assert_ok();
    assert_eq!(next.json()["models"][0]["sha256"], sha2.as_str());
    assert!(
        scores(s3, &job.folder)
            .iter()
            .all(|r| r.model_sha256.as_deref() == Some(sha2.as_str()))
    );
}
