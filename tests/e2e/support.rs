//! Test support: running the `scorch` binary, fixtures, and reading outputs back.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float32Type, Int64Type, TimestampMicrosecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tempfile::TempDir;

/// The binary under test.
pub fn scorch_bin() -> &'static str {
    env!("CARGO_BIN_EXE_scorch")
}

/// The result of one `scorch` invocation.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn assert_ok(&self) -> &Self {
        self.assert_code(0)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Self {
            code: o.status.code(),
            signal: o.status.signal(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A `scorch` command with test-friendly defaults (no progress bar, CPU).
pub fn scorch() -> Command {
    let mut c = Command::new(scorch_bin());
    c.env("SCORCH_NO_PROGRESS", "1")
        .env_remove("SCORCH_FAILPOINT")
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("NO_COLOR");
    c
}

/// Runs `scorch` with `args`.
pub fn run(args: &[&str]) -> Run {
    scorch().args(args).output().expect("scorch runs").into()
}

/// The package hash of the model folder `package`, as `scorch model hash` prints it.
pub fn package_sha(package: &Path) -> String {
    run(&["model", "hash", package.to_str().expect("utf-8")])
        .assert_ok()
        .stdout
        .trim()
        .to_string()
}

/// Runs `scorch` with `args` and extra environment.
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = scorch();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("scorch runs").into()
}

/// The days of the shared demo fixture.
pub const DAYS: [&str; 3] = ["2026-11-25", "2026-11-26", "2026-11-27"];

/// A demo (data, model, job) generated once per test process with `scorch demo --skip-run`.
fn demo_fixture() -> &'static Path {
    static FIXTURE: OnceLock<TempDir> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let dir = TempDir::new().expect("temp dir");
            let path = dir.path().to_str().expect("utf-8 path");
            run(&[
                "demo",
                "--dir",
                path,
                "--rows",
                "24000",
                "--days",
                "3",
                "--epochs",
                "2",
                "--row-group-rows",
                "1000",
                "--skip-run",
            ])
            .assert_ok();
            dir
        })
        .path()
}

/// A private copy of the demo fixture.
pub fn demo_copy() -> TempDir {
    let dir = TempDir::new().expect("temp dir");
    copy_dir(demo_fixture(), dir.path());
    dir
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Every file under `dir`, relative, with its bytes: a snapshot to compare a table against.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read dir") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .expect("inside")
                    .to_string_lossy()
                    .to_string();
                out.insert(rel, fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// The data files of a table: for a Delta table the files its newest version lists (read from
/// the log, independently of scorch and delta-rs); for a Parquet folder, what a directory reader
/// sees (`*.parquet` outside `_`/`.` folders).
pub fn data_files(table: &Path) -> Vec<PathBuf> {
    if table.join("_delta_log").is_dir() {
        return delta_files(table, None);
    }
    snapshot(table)
        .keys()
        .filter(|k| k.ends_with(".parquet") && !k.split('/').any(|p| p.starts_with(['_', '.'])))
        .map(|k| table.join(k))
        .collect()
}

/// The files a Delta table's version `version` (default: the newest) lists, replaying the JSON
/// commits of `_delta_log` (adds minus removes). Paths in the log are URI-encoded once.
pub fn delta_files(table: &Path, version: Option<u64>) -> Vec<PathBuf> {
    let mut live = std::collections::BTreeSet::new();
    for v in 0.. {
        if version.is_some_and(|last| v > last) {
            break;
        }
        let Ok(text) = fs::read_to_string(table.join(format!("_delta_log/{v:020}.json"))) else {
            break;
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let action: serde_json::Value = serde_json::from_str(line).expect("a log line");
            if let Some(path) = action["add"]["path"].as_str() {
                live.insert(percent_decode(path));
            }
            if let Some(path) = action["remove"]["path"].as_str() {
                live.remove(&percent_decode(path));
            }
        }
    }
    live.into_iter().map(|p| table.join(p)).collect()
}

/// The newest version of a Delta table (its highest log entry).
pub fn delta_version(table: &Path) -> Option<u64> {
    (0..)
        .take_while(|v| table.join(format!("_delta_log/{v:020}.json")).exists())
        .last()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8 path")
}

/// One output row of the churn job.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRow {
    pub ds: String,
    pub customer_id: i64,
    pub region: String,
    pub probability: Option<f32>,
    pub model: Option<String>,
    pub model_version: Option<String>,
    pub model_sha256: Option<String>,
    pub data_sha256: String,
    pub run_id: String,
    pub scored_at: i64,
}

/// Reads every data file of a churn output table, sorted by (ds, customer_id).
pub fn read_scores(table: &Path) -> Vec<ScoreRow> {
    let mut rows = Vec::new();
    for file in data_files(table) {
        let ds = file
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("ds="))
            .unwrap_or_default()
            .to_string();
        for batch in read_parquet(&file) {
            let col = |name: &str| {
                batch
                    .column_by_name(name)
                    .unwrap_or_else(|| {
                        panic!(
                            "{} has no column {name}: {:?}",
                            file.display(),
                            batch.schema()
                        )
                    })
                    .clone()
            };
            let ids = col("customer_id");
            let ids = ids.as_primitive::<Int64Type>();
            let region = col("region");
            let region = region.as_string::<i32>();
            let p = col("churn_probability");
            let p = p.as_primitive::<Float32Type>();
            let strings = |name: &str| {
                let a = col(name);
                let a = a.as_string::<i32>();
                (0..a.len())
                    .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
                    .collect::<Vec<_>>()
            };
            let (model, version, sha, data, run) = (
                strings("_model"),
                strings("_model_version"),
                strings("_model_sha256"),
                strings("_data_sha256"),
                strings("_run_id"),
            );
            let at = col("_scored_at");
            let at = at.as_primitive::<TimestampMicrosecondType>();
            for i in 0..batch.num_rows() {
                rows.push(ScoreRow {
                    ds: ds.clone(),
                    customer_id: ids.value(i),
                    region: region.value(i).to_string(),
                    probability: (!p.is_null(i)).then(|| p.value(i)),
                    model: model[i].clone(),
                    model_version: version[i].clone(),
                    model_sha256: sha[i].clone(),
                    data_sha256: data[i].clone().expect("data sha is never null"),
                    run_id: run[i].clone().expect("run id is never null"),
                    scored_at: at.value(i),
                });
            }
        }
    }
    rows.sort_by(|a, b| (&a.ds, a.customer_id).cmp(&(&b.ds, b.customer_id)));
    rows
}

pub fn read_parquet(file: &Path) -> Vec<RecordBatch> {
    let f = fs::File::open(file).expect("open parquet");
    ParquetRecordBatchReaderBuilder::try_new(f)
        .expect("parquet footer")
        .build()
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("batches")
}

/// Key/value metadata of a Parquet footer.
pub fn footer(file: &Path) -> BTreeMap<String, String> {
    let f = fs::File::open(file).expect("open parquet");
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).expect("parquet footer");
    builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// Rewrites a line of a job file.
pub fn edit(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).expect("read");
    assert!(
        text.contains(from),
        "{} does not contain {from:?}",
        path.display()
    );
    fs::write(path, text.replacen(from, to, 1)).expect("write");
}

/// The Python interpreter of the independent readers (DuckDB with its delta extension,
/// deltalake, polars, pyarrow, Spark): `SCORCH_READERS_PYTHON`, else the virtual environment
/// `scripts/setup` installs in the cache. A machine without them fails these tests, as it
/// should: they are the proof that other tools read scorch's output.
pub fn readers_python() -> PathBuf {
    cached_python(
        "SCORCH_READERS_PYTHON",
        "readers",
        "it installs the independent readers",
    )
}

/// The Python of the virtual environment `venvs/<venv>` that `scripts/setup` installs in the
/// cache, or the one `variable` names.
pub fn cached_python(variable: &str, venv: &str, what: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(variable) {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("SCORCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/scorch")
        });
    let python = cache.join(format!("venvs/{venv}/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/setup ({what})",
        python.display()
    );
    python
}

/// Runs a reader script from `tests/e2e` with the readers' Python and parses the JSON it prints.
pub fn read_with(script: &str, args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/e2e")
        .join(script);
    let out = Command::new(readers_python())
        .arg(&script)
        .args(args)
        .output()
        .expect("the readers' Python runs");
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{} printed no JSON ({e}): {}",
            script.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `scorch gc <table> --older-than 0s --apply --json`: everything gc may delete, deleted.
pub fn gc_everything(table: &Path) -> Run {
    run(&[
        "gc",
        table.to_str().expect("utf-8"),
        "--older-than",
        "0s",
        "--apply",
        "--json",
    ])
}

/// Switches the demo job in `dir` to the Parquet-mode output (a folder with scorch's log).
pub fn parquet_mode(dir: &Path) {
    edit(
        &dir.join("churn.toml"),
        "mode = \"overwrite\"",
        "mode = \"overwrite\"\nformat = \"parquet\"",
    );
}

/// A TCP port free on 127.0.0.1 at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
