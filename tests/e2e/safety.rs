//! Data safety and the first hour: scorch never deletes what it did not write, refuses
//! overlapping locations and silent schema changes, reports bugs and bad input in one line with
//! the documented exit code, and survives a closed stdout.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;

use crate::support::*;

fn job(dir: &Path) -> String {
    dir.join("churn.toml").to_str().expect("utf-8").to_string()
}

fn ds(day: &str) -> String {
    format!("ds={day}")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

/// How often `needle` occurs in `haystack`.
fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

// ---- 1. gc deletes only what scorch wrote ----

#[test]
fn gc_refuses_a_folder_that_is_not_a_scorch_table() {
    let dir = demo_copy();
    let features = dir.path().join("data/features");
    let before = snapshot(&features);
    for age in [None, Some("0s")] {
        let mut args = vec!["gc", path(&features)];
        if let Some(age) = age {
            args.extend(["--older-than", age]);
        }
        let r = run(&args);
        r.assert_code(2);
        assert!(r.stderr.contains("no scorch table"), "{}", r.stderr);
    }
    assert_eq!(
        snapshot(&features),
        before,
        "gc touched a plain Parquet folder"
    );
}

#[test]
fn gc_keeps_files_no_commit_lists() {
    let dir = demo_copy();
    parquet_mode(dir.path());
    run(&["run", &job(dir.path()), "--param", &ds(DAYS[1])]).assert_ok();
    run(&["run", &job(dir.path()), "--param", &ds(DAYS[1])]).assert_ok();
    let out = dir.path().join("out/churn_scores");
    // Files scorch never wrote, inside the table's folder, looking like its own.
    let stranger = out.join(format!("ds={}/part-00000-someone-else.parquet", DAYS[1]));
    fs::copy(&data_files(&out)[0], &stranger).expect("copy");
    fs::write(out.join("notes.txt"), "hand-made").expect("write");

    let r = run(&["gc", path(&out), "--older-than", "0s", "--apply", "--json"]);
    r.assert_ok();
    let report = r.json();
    let unknown: Vec<&str> = report["unknown_files_kept"]
        .as_array()
        .expect("unknown_files_kept")
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect();
    assert!(
        unknown
            .iter()
            .any(|u| u.ends_with("part-00000-someone-else.parquet"))
            && unknown.contains(&"notes.txt"),
        "{report}"
    );
    assert!(stranger.exists() && out.join("notes.txt").exists());
}

// ---- 2. outputs apart from sources and models ----

#[test]
fn an_output_overlapping_a_source_or_model_is_refused() {
    for (url, why) in [
        ("data/features", "is the same location as"),
        ("data/features/scores", "is inside"),
        ("data", "contains"),
        ("models/churn/out", "is inside"),
    ] {
        let dir = demo_copy();
        edit(
            &dir.path().join("churn.toml"),
            "url = \"out/churn_scores\"",
            &format!("url = \"{url}\""),
        );
        let before = snapshot(dir.path());
        for command in ["validate", "run"] {
            let r = run(&[command, &job(dir.path()), "--param", &ds(DAYS[2])]);
            r.assert_code(2);
            assert!(
                r.stderr.contains("output.url") && r.stderr.contains(why),
                "{url}: {}",
                r.stderr
            );
        }
        assert_eq!(snapshot(dir.path()), before, "{url}: something was written");
    }
}

#[test]
fn a_new_table_is_not_created_among_foreign_files() {
    let dir = demo_copy();
    let out = dir.path().join("out/churn_scores");
    fs::create_dir_all(&out).expect("mkdir");
    fs::write(out.join("report.csv"), "a,b\n").expect("write");
    for command in ["validate", "run"] {
        let r = run(&[command, &job(dir.path()), "--param", &ds(DAYS[2])]);
        r.assert_code(2);
        assert!(
            r.stderr.contains("not empty") && r.stderr.contains("report.csv"),
            "{}",
            r.stderr
        );
    }
    assert_eq!(
        snapshot(&out).keys().collect::<Vec<_>>(),
        vec!["report.csv"],
        "nothing but the foreign file"
    );
}

// ---- 3. the output schema does not change silently ----

#[test]
fn a_changed_output_schema_fails_unless_allowed() {
    let dir = demo_copy();
    let out = dir.path().join("out/churn_scores");
    run(&["run", &job(dir.path()), "--param", &ds(DAYS[2])]).assert_ok();
    let before = snapshot(&out);

    // The prediction becomes a double.
    edit(
        &dir.path().join("churn.sql"),
        ") AS churn_probability",
        ") * 1.0 AS churn_probability",
    );
    for command in ["validate", "run"] {
        let r = run(&[command, &job(dir.path()), "--param", &ds(DAYS[2])]);
        r.assert_code(2);
        assert!(
            r.stderr
                .contains("column `churn_probability`: type Float32 becomes Float64")
                && r.stderr.contains("schema_mode"),
            "{}",
            r.stderr
        );
    }
    assert_eq!(snapshot(&out), before, "a refused run changed the table");

    // Explicitly allowed: the run commits.
    edit(
        &dir.path().join("churn.toml"),
        "mode = \"overwrite\"",
        "mode = \"overwrite\"\nschema_mode = \"overwrite\"",
    );
    run(&["run", &job(dir.path()), "--param", &ds(DAYS[2])]).assert_ok();
}

#[test]
fn a_declared_model_the_query_never_calls_is_an_error() {
    let dir = demo_copy();
    let sql = dir.path().join("churn.sql");
    fs::write(
        &sql,
        "SELECT customer_id, region, ds FROM features WHERE ds = $ds",
    )
    .expect("write");
    let r = run(&["run", &job(dir.path()), "--param", &ds(DAYS[2])]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("never calls") && r.stderr.contains("churn"),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("out").exists());
}

// ---- 4. manifest and artifact must agree ----

fn xgboost_package_with_inputs(keep: usize, extra: bool) -> tempfile::TempDir {
    let dir = tempfile::TempDir::new().expect("temp");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/xgboost/models/xgb_binary");
    copy_dir(&fixture, dir.path());
    let manifest = dir.path().join("model.toml");
    let text = fs::read_to_string(&manifest).expect("manifest");
    let mut parts = text.split("[[inputs]]");
    let head = parts.next().expect("head").to_string();
    let inputs: Vec<&str> = parts.collect();
    let (last, rest) = inputs.split_last().expect("inputs");
    // The last input block also holds the [[outputs]] and [xgboost] sections.
    let tail = last.find("[[outputs]]").map(|i| &last[i..]).unwrap_or("");
    let mut blocks: Vec<String> = rest.iter().map(|b| b.to_string()).collect();
    blocks.push(last[..last.len() - tail.len()].to_string());
    blocks.truncate(keep);
    if extra {
        blocks.push("\nname = \"one_too_many\"\ntype = \"float64\"\n\n".to_string());
    }
    let mut out = head;
    for b in blocks {
        out.push_str("[[inputs]]");
        out.push_str(&b);
    }
    out.push_str(tail);
    fs::write(&manifest, out).expect("write");
    dir
}

#[test]
fn a_manifest_that_disagrees_with_the_artifact_is_a_model_error() {
    let full = xgboost_package_with_inputs(usize::MAX, false);
    run(&["model", "verify", path(full.path())]).assert_ok();
    let inputs = fs::read_to_string(full.path().join("model.toml"))
        .expect("manifest")
        .matches("[[inputs]]")
        .count();

    for (package, declared) in [
        (xgboost_package_with_inputs(2, false), "2 inputs"),
        (
            xgboost_package_with_inputs(usize::MAX, true),
            &*format!("{} inputs", inputs + 1),
        ),
    ] {
        let r = run(&["model", "verify", path(package.path())]);
        r.assert_code(6);
        assert!(
            r.stderr.contains(declared)
                && r.stderr.contains(&format!("reads {inputs} features"))
                && r.stderr.contains("model.json"),
            "{}",
            r.stderr
        );
        assert_eq!(count(&r.stderr, "reads"), 1, "printed once: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
}

// ---- 5. a closed stdout is not a failure ----

fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let mut child = scorch()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    (child.wait().expect("wait").code(), stderr)
}

#[test]
fn a_closed_stdout_keeps_the_commands_exit_code() {
    let dir = demo_copy();
    let out = dir.path().join("out/churn_scores");
    let (code, stderr) = with_closed_stdout(&["run", &job(dir.path()), "--param", &ds(DAYS[2])]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!read_scores(&out).is_empty(), "the run committed");
    for args in [
        vec!["log", path(&out)],
        vec!["log", path(&out), "--json"],
        vec!["model", "inspect", path(&dir.path().join("models/churn"))],
        vec!["run", &job(dir.path()), "--param", &ds(DAYS[1]), "--json"],
    ] {
        let (code, stderr) = with_closed_stdout(&args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // A failing command keeps its own code with a closed stdout too.
    let (code, _) = with_closed_stdout(&["run", &job(dir.path()), "--param", "ds=bad", "--json"]);
    assert_eq!(code, Some(2));
}

// ---- 6. flags are validated as the job file's keys ----

#[test]
fn zero_counts_on_the_command_line_are_usage_errors() {
    let dir = demo_copy();
    for flag in ["--batch-size", "--target-partitions"] {
        let r = run(&["run", &job(dir.path()), "--param", &ds(DAYS[2]), flag, "0"]);
        r.assert_code(2);
        assert!(
            r.stderr.contains(flag) && r.stderr.contains("must be at least 1"),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    assert!(!dir.path().join("out").exists());
}

// ---- 7. a bug is one line and exit 1 ----

#[test]
fn a_panic_is_one_line_and_exit_1() {
    let dir = demo_copy();
    let r = run_env(
        &["run", &job(dir.path()), "--param", &ds(DAYS[2]), "--json"],
        &[("SCORCH_FAILPOINT", "before-write=panic")],
    );
    r.assert_code(1);
    assert_eq!(count(&r.stderr, "internal error"), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("bug in scorch") && r.stderr.contains("/issues"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("panicked at") && !r.stderr.contains("stack backtrace"),
        "{}",
        r.stderr
    );
    assert_eq!(r.json()["exit_code"], 1, "--json gets an error object too");
    assert!(
        read_scores(&dir.path().join("out/churn_scores")).is_empty(),
        "nothing published"
    );
}

// ---- 8. exit codes ----

#[test]
fn an_output_path_that_is_a_file_is_a_job_error() {
    let dir = demo_copy();
    fs::create_dir_all(dir.path().join("out")).expect("mkdir");
    fs::write(dir.path().join("out/churn_scores"), "not a folder").expect("write");
    for command in ["validate", "run"] {
        let r = run(&[command, &job(dir.path()), "--param", &ds(DAYS[2])]);
        r.assert_code(2);
        assert!(r.stderr.contains("is a file"), "{}", r.stderr);
        assert_eq!(count(&r.stderr, "is a file"), 1, "once: {}", r.stderr);
    }
}

// ---- 9. every error once, naming what to fix ----

#[test]
fn sql_errors_name_the_file_and_line_once() {
    let dir = demo_copy();
    let sql = dir.path().join("churn.sql");
    let cases = [
        ("SELEC customer_id FROM features", "line 1", "SELEC"),
        ("SELECT 1;\nSELECT 2", "2 statements", "single SELECT"),
        (
            "CREATE TABLE t AS SELECT 1",
            "CREATE TABLE",
            "single SELECT",
        ),
        (
            "SELECT customer_id\nFROM features\nWHERE ds = $ds AND",
            "line 3",
            "Expected",
        ),
    ];
    for (text, first, second) in cases {
        fs::write(&sql, text).expect("write");
        let r = run(&["run", &job(dir.path()), "--param", &ds(DAYS[2])]);
        r.assert_code(2);
        let error_lines: Vec<&str> = r.stderr.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(error_lines.len(), 1, "{text}: {}", r.stderr);
        assert!(
            r.stderr.contains("churn.sql") && r.stderr.contains(first) && r.stderr.contains(second),
            "{text}: {}",
            r.stderr
        );
        assert_eq!(
            count(&r.stderr, second),
            1,
            "{text}: repeated: {}",
            r.stderr
        );
    }
}

#[test]
fn a_missing_job_file_is_reported_once() {
    let r = run(&["run", "/nonexistent/job.toml"]);
    r.assert_code(2);
    assert_eq!(count(&r.stderr, "/nonexistent/job.toml"), 1, "{}", r.stderr);
    assert_eq!(count(&r.stderr, "No such file"), 1, "{}", r.stderr);
}

#[test]
fn a_corrupt_parquet_file_is_named_once() {
    // A footer whose magic is gone, and a file cut short (an interrupted upload).
    type Corruption = fn(&mut Vec<u8>);
    let corruptions: [(&str, Corruption); 2] = [
        ("magic", |b| {
            let n = b.len();
            b[n - 4..].copy_from_slice(b"XXXX");
        }),
        ("truncated", |b| {
            let n = b.len();
            b.truncate(n / 2);
        }),
    ];
    for (what, corrupt) in corruptions {
        let dir = demo_copy();
        let file = dir
            .path()
            .join(format!("data/features/ds={}/part-0.parquet", DAYS[1]));
        let mut bytes = fs::read(&file).expect("read");
        corrupt(&mut bytes);
        fs::write(&file, bytes).expect("write");
        let r = run(&["run", &job(dir.path()), "--param", &ds(DAYS[1])]);
        r.assert_code(3);
        assert!(
            r.stderr.contains(&format!("ds={}/part-0.parquet", DAYS[1])),
            "{what}: {}",
            r.stderr
        );
        assert!(
            !r.stderr.contains("Parquet error: Parquet error"),
            "{what}: {}",
            r.stderr
        );
        let error_lines: Vec<&str> = r.stderr.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(error_lines.len(), 1, "{what}: {}", r.stderr);
    }
}

#[test]
fn a_source_may_be_one_file_and_missing_differs_from_empty() {
    let dir = demo_copy();
    let file = dir
        .path()
        .join(format!("data/features/ds={}/part-0.parquet", DAYS[2]));
    edit(
        &dir.path().join("churn.toml"),
        "url = \"data/features\"\npartition_columns = [{ name = \"ds\", type = \"date\" }]",
        &format!("url = \"{}\"", path(&file)),
    );
    edit(&dir.path().join("churn.sql"), "WHERE ds = $ds", "");
    edit(&dir.path().join("churn.sql"), "    ds\n", "    $ds AS ds\n");
    // `ds` is no longer a column of the rows the model scores.
    edit(
        &dir.path().join("churn.toml"),
        "keys = [\"customer_id\", \"ds\"]",
        "keys = [\"customer_id\"]",
    );
    let r = run(&["run", &job(dir.path()), "--param", &ds(DAYS[2]), "--json"]);
    r.assert_ok();
    let manifest = r.json();
    let inputs = manifest["inputs"].as_array().expect("inputs");
    assert_eq!(inputs.len(), 1, "{manifest}");
    assert!(
        inputs[0]["url"]
            .as_str()
            .expect("url")
            .ends_with("part-0.parquet"),
        "no slash appended: {manifest}"
    );

    let missing = dir.path().join("data/nothing-here");
    let empty = dir.path().join("data/empty");
    fs::create_dir_all(&empty).expect("mkdir");
    let mut messages = Vec::new();
    for folder in [&missing, &empty] {
        let d = demo_copy();
        edit(
            &d.path().join("churn.toml"),
            "url = \"data/features\"",
            &format!("url = \"{}\"", path(folder)),
        );
        let r = run(&["validate", &job(d.path()), "--param", &ds(DAYS[2])]);
        r.assert_code(3);
        messages.push(r.stderr);
    }
    assert!(messages[0].contains("does not exist"), "{}", messages[0]);
    assert!(messages[1].contains("folder is empty"), "{}", messages[1]);
}

// ---- 10. --json always prints something to parse ----

#[test]
fn run_json_prints_the_manifest_of_a_rejected_run_and_an_error_object_otherwise() {
    let dir = demo_copy();
    edit(
        &dir.path().join("churn.toml"),
        "min_rows = 1",
        "min_rows = 100000000",
    );
    let r = run(&["run", &job(dir.path()), "--param", &ds(DAYS[2]), "--json"]);
    r.assert_code(4);
    let manifest = r.json();
    assert_eq!(manifest["status"], "rejected_by_checks", "{manifest}");
    assert!(manifest["rows"]["written"].as_u64().expect("written") > 0);

    let r = run(&["run", &job(dir.path()), "--param", "ds=yesterday", "--json"]);
    r.assert_code(2);
    let error = r.json();
    assert_eq!(error["status"], "failed");
    assert_eq!(error["exit_code"], 2);
    assert!(
        error["error"].as_str().expect("error").contains("ds"),
        "{error}"
    );
}

// ---- 11. validate checks what run would hit, with or without parameters ----

#[test]
fn validate_without_parameters_still_checks_the_job() {
    let dir = demo_copy();
    let r = run(&["validate", &job(dir.path())]);
    r.assert_ok();
    assert!(
        r.stdout.contains("is valid") && r.stdout.contains("ds"),
        "{}",
        r.stdout
    );
    let r = run(&["validate", &job(dir.path()), "--json"]);
    r.assert_ok();
    assert_eq!(r.json()["unbound_params"][0], "ds");

    // ...and still finds a broken query.
    edit(
        &dir.path().join("churn.sql"),
        "tenure_months,",
        "tenure_monthz,",
    );
    let r = run(&["validate", &job(dir.path())]);
    r.assert_code(3);
    assert!(r.stderr.contains("tenure_monthz"), "{}", r.stderr);
}

// ---- 12. log needs a table ----

#[test]
fn log_of_a_folder_without_a_table_says_so() {
    let dir = demo_copy();
    let r = run(&["log", path(&dir.path().join("data/features"))]);
    r.assert_code(2);
    assert!(r.stderr.contains("no scorch table"), "{}", r.stderr);
}

// ---- 14. quiet ----

#[test]
fn quiet_leaves_only_warnings_and_errors() {
    let dir = demo_copy();
    let loud = run(&["run", &job(dir.path()), "--param", &ds(DAYS[2])]);
    loud.assert_ok();
    assert!(loud.stderr.contains("INFO"), "{}", loud.stderr);
    let quiet = run(&["--quiet", "run", &job(dir.path()), "--param", &ds(DAYS[2])]);
    quiet.assert_ok();
    assert!(!quiet.stderr.contains("INFO"), "{}", quiet.stderr);
    assert!(
        quiet.stdout.contains("committed version 2"),
        "{}",
        quiet.stdout
    );
}

/// Runs `scorch` with a terminal as stdout and stderr (through `script`), returning what the
/// terminal showed.
fn on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> String {
    let command = std::iter::once(scorch_bin())
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = std::process::Command::new("script");
    c.args(["-qefc", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .env("SCORCH_NO_PROGRESS", "1")
        .env("TERM", "xterm");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("script runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn no_color_turns_off_colors_on_a_terminal() {
    let dir = demo_copy();
    // An unpinned model logs a warning, which a terminal shows in color.
    let text = fs::read_to_string(dir.path().join("churn.toml")).expect("read");
    let unpinned: String = text
        .lines()
        .filter(|l| !l.starts_with("sha256"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(dir.path().join("churn.toml"), unpinned).expect("write");
    let args = ["validate", &job(dir.path()), "--param", &ds(DAYS[2])];
    let colored = on_a_terminal(&args, &[]);
    assert!(colored.contains("not pinned"), "{colored}");
    assert!(
        colored.contains("\u{1b}["),
        "a terminal gets colors: {colored:?}"
    );
    let plain = on_a_terminal(&args, &[("NO_COLOR", "1")]);
    assert!(plain.contains("not pinned"), "{plain}");
    assert!(!plain.contains("\u{1b}["), "NO_COLOR: {plain:?}");
}

// ---- 15. credentials never in a job file ----

#[test]
fn a_secret_in_stores_is_refused_with_the_variable_to_use() {
    let dir = demo_copy();
    let toml = dir.path().join("churn.toml");
    let mut text = fs::read_to_string(&toml).expect("read");
    text.push_str("\n[stores.s3]\naws_secret_access_key = \"hunter2\"\n");
    fs::write(&toml, text).expect("write");
    let r = run(&["validate", &job(dir.path()), "--param", &ds(DAYS[2])]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("AWS_SECRET_ACCESS_KEY") && !r.stderr.contains("hunter2"),
        "{}",
        r.stderr
    );
}

// ---- 17. the demo does not overwrite work ----

#[test]
fn the_demo_refuses_to_overwrite_edited_work_and_bad_sizes() {
    let base = tempfile::TempDir::new().expect("temp");
    let dir = base.path().join("demo");
    let demo = |extra: &[&str]| {
        let mut args = vec![
            "demo",
            "--dir",
            path(&dir),
            "--rows",
            "3000",
            "--days",
            "2",
            "--epochs",
            "1",
            "--skip-run",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let first = demo(&[]);
    first.assert_ok();
    // An unedited demo is replaced without asking.
    let second = demo(&[]);
    second.assert_ok();
    let sha = |r: &Run| {
        r.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("model sha256: "))
            .map(str::to_string)
            .expect("sha line")
    };
    assert_eq!(sha(&first), sha(&second), "training is deterministic");
    let auc = |r: &Run| {
        r.stdout
            .lines()
            .find_map(|l| l.split("AUC ").nth(1))
            .map(|s| s.split(',').next().unwrap_or_default().to_string())
            .expect("auc")
    };
    assert_eq!(auc(&first), auc(&second));

    // An edited job is not.
    let job_file = dir.join("churn.toml");
    edit(&job_file, "min_rows = 1", "min_rows = 2");
    let edited = fs::read_to_string(&job_file).expect("read");
    let r = demo(&[]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("churn.toml") && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    assert_eq!(fs::read_to_string(&job_file).expect("read"), edited);
    demo(&["--force"]).assert_ok();

    let r = run(&[
        "demo",
        "--dir",
        path(&base.path().join("zero")),
        "--days",
        "0",
    ]);
    r.assert_code(2);
    assert!(r.stderr.contains("--days"), "{}", r.stderr);
    assert!(!r.stdout.contains("NaN"), "{}", r.stdout);
}
