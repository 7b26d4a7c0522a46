//! What crosses the wire to an S3 server: pruning measured in bytes and requests, faults
//! injected between scorch and the server, runs killed and stopped mid-write.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use tempfile::TempDir;

use crate::servers::{Backend, Server, scorch_on, server};
use crate::stores::{remote_job, write_remote_job};
use crate::support::*;

/// 30 daily partitions of 20 float columns, written locally.
fn wide_table(dir: &Path) {
    let fields: Vec<Field> = std::iter::once(Field::new("id", DataType::Int64, false))
        .chain((0..20).map(|c| Field::new(format!("c{c}"), DataType::Float32, false)))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    for day in 1..=30 {
        let rows = 4000;
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(0..rows))];
        for c in 0..20 {
            // Deterministic, poorly compressible values.
            columns.push(Arc::new(Float32Array::from_iter_values((0..rows).map(
                |r| ((r * 7919 + c * 104_729 + day * 13) % 100_003) as f32 * 0.37,
            ))));
        }
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch");
        let folder = dir.join(format!("ds=2026-11-{day:02}"));
        fs::create_dir_all(&folder).expect("mkdir");
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(1000))
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            fs::File::create(folder.join("part-0.parquet")).expect("create"),
            Arc::clone(&schema),
            Some(props),
        )
        .expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
    }
}

fn io_of(manifest: &serde_json::Value, store: &str) -> (u64, u64) {
    let io = &manifest["io"][store];
    let requests = [
        "get_requests",
        "put_requests",
        "list_requests",
        "other_requests",
    ]
    .iter()
    .map(|k| io[k].as_u64().unwrap_or(0))
    .sum();
    (io["bytes_read"].as_u64().expect("bytes_read"), requests)
}

#[test]
fn pruning_fetches_a_small_fraction_of_a_full_scan() {
    let s3 = server(Backend::S3);
    let local = TempDir::new().expect("temp");
    wide_table(&local.path().join("wide"));
    let folder = s3.folder("pruning");
    s3.upload(&local.path().join("wide"), &format!("{folder}/wide"));
    let job = |name: &str, sql: &str| {
        let path = local.path().join(format!("{name}.toml"));
        fs::write(
            &path,
            format!(
                r#"[job]
name = "{name}"
[params]
ds = {{ type = "date", default = "2026-11-17" }}
[sources.wide]
url = "{folder}/wide"
partition_columns = [{{ name = "ds", type = "date" }}]
[query]
sql = "{sql}"
[output]
url = "out/{name}"
"#
            ),
        )
        .expect("job");
        path
    };
    let pruned = job("pruned", "SELECT id, c3, c17 FROM wide WHERE ds = $ds");
    let full = job("full", "SELECT * FROM wide");
    let measure = |job: &Path| {
        let r: Run = scorch_on(s3)
            .current_dir(local.path())
            .args(["run", job.to_str().expect("utf-8"), "--json"])
            .output()
            .expect("run")
            .into();
        r.assert_ok();
        let m = r.json();
        (
            io_of(&m, "s3://scorch-test"),
            m["rows"]["written"].as_u64().expect("rows"),
            m["io"]["s3://scorch-test"]["list_requests"]
                .as_u64()
                .expect("list_requests"),
        )
    };
    let ((pruned_bytes, pruned_requests), pruned_rows, pruned_lists) = measure(&pruned);
    // The source is listed once, while planning (schema, totals; the scan reuses the listing
    // through DataFusion's list cache); nothing lists it again just to count files.
    assert_eq!(pruned_lists, 1, "LIST requests of a pruned run");
    let ((full_bytes, full_requests), full_rows, _) = measure(&full);
    eprintln!(
        "pruning over the wire: 3 of 21 columns of 1 of 30 partitions: {pruned_bytes} bytes in {pruned_requests} requests; \
         full scan: {full_bytes} bytes in {full_requests} requests ({:.2}% of the bytes)",
        100.0 * pruned_bytes as f64 / full_bytes as f64
    );
    assert_eq!((pruned_rows, full_rows), (4000, 120_000));
    // Reading 3/21 of the columns of 1/30 of the data (0.5% of the column data), plus footers:
    // under 2% of the full scan's bytes.
    assert!(
        pruned_bytes * 50 < full_bytes,
        "{pruned_bytes} vs {full_bytes}"
    );
    assert!(
        pruned_requests * 5 < full_requests,
        "{pruned_requests} vs {full_requests}"
    );
}

/// The fault-injecting proxy in front of the S3 server.
struct Proxy {
    endpoint: String,
    _child: Child,
}

impl Proxy {
    fn start(upstream: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/servers/faultproxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(upstream)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("proxy starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("proxy announces itself");
        let info: serde_json::Value = serde_json::from_str(&line).expect("proxy json");
        Self {
            endpoint: info["endpoint"].as_str().expect("endpoint").to_string(),
            _child: child,
        }
    }

    fn control(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).expect("connect to proxy");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let json = response.split("\r\n\r\n").nth(1).expect("body");
        serde_json::from_str(json).expect("stats json")
    }

    fn fault(&self, spec: &str) {
        self.control("POST", "/__faults", spec);
    }

    fn stats(&self) -> serde_json::Value {
        self.control("GET", "/__stats", "")
    }
}

/// A remote job whose S3 traffic goes through `proxy`, with quick retries.
fn job_through(
    s3: &Server,
    proxy: &Proxy,
    name: &str,
    extra: &[(&str, &str)],
) -> crate::stores::RemoteJob {
    let mut options = vec![
        ("endpoint", proxy.endpoint.as_str()),
        ("max_retries", "6"),
        ("init_backoff", "50ms"),
        ("max_backoff", "200ms"),
        ("retry_timeout", "20s"),
        ("timeout", "2s"),
    ];
    options.extend_from_slice(extra);
    let stores = s3.job_stores(&options);
    let job = remote_job(s3, name, "");
    write_remote_job(
        &job.job,
        &job.folder,
        &job.folder,
        &job.folder,
        &job.sha256,
        &stores,
    );
    job
}

fn run_job(s3: &Server, job: &Path, day: &str) -> Run {
    scorch_on(s3)
        .args([
            "run",
            job.to_str().expect("utf-8"),
            "--param",
            &format!("ds={day}"),
            "--json",
        ])
        .output()
        .expect("run")
        .into()
}

#[test]
fn transient_faults_are_retried_transparently() {
    let s3 = server(Backend::S3);
    let proxy = Proxy::start(&s3.endpoint);
    let job = job_through(s3, &proxy, "transient", &[]);
    proxy.fault(r#"{"kind": "status", "status": 503, "count": 2, "method": "PUT"}"#);
    proxy.fault(r#"{"kind": "status", "status": 500, "count": 1, "method": "GET"}"#);
    proxy.fault(r#"{"kind": "drop", "count": 2, "method": "GET"}"#);
    proxy.fault(r#"{"kind": "delay", "seconds": 3, "count": 1, "method": "GET"}"#);
    proxy.fault(r#"{"kind": "status", "status": 503, "count": 1, "path": "_scorch/log"}"#);
    let r = run_job(s3, &job.job, DAYS[2]);
    r.assert_ok();
    let stats = proxy.stats();
    eprintln!("transient faults injected: {}", stats["injected"]);
    assert_eq!(stats["injected"]["status"], 4, "{stats}");
    assert_eq!(stats["injected"]["drop"], 2, "{stats}");
    assert_eq!(stats["injected"]["delay"], 1, "{stats}");
    let rows = read_scores(
        s3.download(&format!("{}/out/churn_scores", job.folder))
            .path(),
    );
    assert_eq!(
        rows.len() as u64,
        r.json()["rows"]["written"].as_u64().expect("rows")
    );
}

#[test]
fn persistent_faults_fail_with_the_storage_code_and_publish_nothing() {
    let s3 = server(Backend::S3);
    let proxy = Proxy::start(&s3.endpoint);
    let job = job_through(s3, &proxy, "persistent", &[]);
    run_job(s3, &job.job, DAYS[1]).assert_ok();
    let table = format!("{}/out/churn_scores", job.folder);
    let before = s3.list(&table);

    // Every commit attempt fails: the run must stop before publishing anything.
    proxy.fault(
        r#"{"kind": "status", "status": 503, "count": -1, "method": "PUT", "path": "_delta_log"}"#,
    );
    let r = run_job(s3, &job.job, DAYS[2]);
    r.assert_code(5);
    assert!(r.stderr.contains("storage"), "{}", r.stderr);
    // Credentials never show up, not even in errors about the store they are for.
    let secret = &s3.env["AWS_SECRET_ACCESS_KEY"];
    assert!(!r.stderr.contains(secret.as_str()) && !r.stdout.contains(secret.as_str()));
    assert_eq!(s3.list(&table), before, "a failed commit changed the table");

    // Every write fails: same outcome, earlier.
    proxy.control("DELETE", "/__faults", "");
    proxy.fault(r#"{"kind": "drop", "count": -1, "method": "PUT"}"#);
    let r = run_job(s3, &job.job, DAYS[2]);
    r.assert_code(5);
    assert_eq!(s3.list(&table), before, "a failed write changed the table");
    eprintln!("persistent faults injected: {}", proxy.stats()["injected"]);

    // Once the store recovers, the next run publishes normally, and its manifest holds no secret.
    proxy.control("DELETE", "/__faults", "");
    let ok = run_job(s3, &job.job, DAYS[2]);
    ok.assert_ok();
    assert!(!ok.stdout.contains(secret.as_str()));
    let manifests = s3.download(&format!("{table}/_scorch"));
    for (name, bytes) in snapshot(manifests.path()) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret.as_str()),
            "{name} holds the secret"
        );
    }
}

/// Multipart uploads the S3 server still holds open under a prefix.
fn open_uploads(s3: &Server, prefix: &str) -> usize {
    let path = format!("/scorch-test?uploads&prefix={prefix}");
    let addr = s3.endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response.matches("<Upload>").count()
}

/// A job whose output is big enough to be written with multipart uploads (5 MiB parts).
fn big_output_job(s3: &Server, name: &str, stores: &str) -> (TempDir, String, std::path::PathBuf) {
    let local = TempDir::new().expect("temp");
    let path = local.path().to_str().expect("utf-8");
    run(&[
        "demo",
        "--dir",
        path,
        "--rows",
        "300000",
        "--days",
        "1",
        "--epochs",
        "1",
        "--skip-run",
    ])
    .assert_ok();
    let folder = s3.folder(name);
    s3.upload(&local.path().join("data"), &format!("{folder}/data"));
    s3.upload(&local.path().join("models"), &format!("{folder}/models"));
    let sha = package_sha(&local.path().join("models/churn"));
    let job = local.path().join("big.toml");
    write_remote_job(&job, &folder, &folder, &folder, &sha, stores);
    // Keep every feature in the output, and write through 5 MiB buffers.
    let sql = fs::read_to_string(local.path().join("churn.sql")).expect("sql");
    let call = &sql[sql.find("predict(").expect("predict call")
        ..sql.find("AS churn_probability").expect("alias")];
    fs::write(
        local.path().join("churn.sql"),
        format!("SELECT *, {call} AS churn_probability FROM features WHERE ds = $ds"),
    )
    .expect("sql");
    let mut text = fs::read_to_string(&job).expect("job");
    text.push_str("\n[execution]\nwrite_buffer_bytes = 5242880\ntarget_partitions = 1\n");
    fs::write(&job, text.replace("partition_by = [\"ds\"]", "")).expect("job");
    (local, folder, job)
}

#[test]
fn sigterm_mid_write_aborts_uploads_and_publishes_nothing() {
    let s3 = server(Backend::S3);
    let (_local, folder, job) = big_output_job(s3, "sigterm", "");
    let table = format!("{folder}/out/churn_scores");
    let child = scorch_on(s3)
        .args([
            "run",
            job.to_str().expect("utf-8"),
            "--param",
            "ds=2026-11-27",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until the first multipart upload is open, then ask the run to stop.
    let prefix = s3.path_of(&table).to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while open_uploads(s3, &prefix) == 0 {
        assert!(Instant::now() < deadline, "no multipart upload started");
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe_free_kill(&child, "TERM");
    let out: Run = child.wait_with_output().expect("wait").into();
    assert_eq!(out.code, Some(143), "{}", out.stderr);
    assert!(out.stderr.contains("nothing published"), "{}", out.stderr);
    assert_eq!(open_uploads(s3, &prefix), 0, "multipart uploads left open");
    // What stays: the run's record and the table's creation (version 0, schema only, no rows).
    let left = s3.list(&table);
    assert!(
        left.iter()
            .all(|p| p.starts_with("_scorch/runs/") || p == "_delta_log/00000000000000000000.json"),
        "objects left: {left:?}"
    );
    assert!(data_files(s3.download(&table).path()).is_empty());
}

#[test]
fn a_failed_multipart_write_aborts_its_uploads() {
    let s3 = server(Backend::S3);
    let proxy = Proxy::start(&s3.endpoint);
    let stores = s3.job_stores(&[
        ("endpoint", proxy.endpoint.as_str()),
        ("max_retries", "1"),
        ("retry_timeout", "5s"),
    ]);
    let (_local, folder, job) = big_output_job(s3, "mpufail", &stores);
    // Parts after the first fail for good; the abort (a DELETE) still gets through.
    proxy.fault(r#"{"kind": "status", "status": 503, "count": -1, "method": "PUT", "path": "partNumber=2"}"#);
    let r = run_job(s3, &job, "2026-11-27");
    r.assert_code(5);
    let table = format!("{folder}/out/churn_scores");
    assert_eq!(
        open_uploads(s3, s3.path_of(&table).as_ref()),
        0,
        "multipart uploads left open"
    );
    assert!(
        s3.list(&table).iter().all(|p| !p.contains("staging")),
        "staging left"
    );
}

#[test]
fn sigkill_leaves_only_uncommitted_files_which_gc_removes() {
    let s3 = server(Backend::S3);
    let job = remote_job(s3, "sigkill", "");
    let r = scorch_on(s3)
        .args([
            "run",
            job.job.to_str().expect("utf-8"),
            "--param",
            &format!("ds={}", DAYS[1]),
        ])
        .output()
        .expect("run");
    assert!(r.status.success());
    let table = format!("{}/out/churn_scores", job.folder);
    let committed = s3.list(&table);
    let killed: Run = scorch_on(s3)
        .args([
            "run",
            job.job.to_str().expect("utf-8"),
            "--param",
            &format!("ds={}", DAYS[2]),
        ])
        .env("SCORCH_FAILPOINT", "before-commit")
        .output()
        .expect("run")
        .into();
    assert_eq!(killed.signal, Some(9));
    let after_kill = s3.list(&table);
    let extra: Vec<&String> = after_kill
        .iter()
        .filter(|p| !committed.contains(p))
        .collect();
    // What the killed run left: its in-flight record and its uncommitted data files, which no
    // Delta reader sees (the log is unchanged).
    assert!(
        !extra.is_empty()
            && extra.iter().all(|p| p.starts_with("_scorch/inflight/")
                || (p.ends_with(".parquet") && !p.starts_with('_'))),
        "{extra:?}"
    );
    let dry: Run = scorch_on(s3)
        .args(["gc", &table, "--older-than", "0s"])
        .output()
        .expect("gc")
        .into();
    dry.assert_ok();
    assert_eq!(s3.list(&table), after_kill, "a dry run deletes nothing");
    let gc: Run = scorch_on(s3)
        .args(["gc", &table, "--older-than", "0s", "--apply"])
        .output()
        .expect("gc")
        .into();
    gc.assert_ok();
    assert_eq!(
        s3.list(&table),
        committed,
        "gc must remove exactly the orphaned staging objects"
    );
}

/// Sends a signal by name to a child (through `kill`, to keep the tests free of unsafe code).
fn unsafe_free_kill(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}
