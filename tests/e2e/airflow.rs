//! The Airflow example, loaded by real Airflow (a `DagBag` with no import errors) and its task
//! callable driven against the real binary: success returns the run manifest as the XCom,
//! errors a retry cannot fix fail at once, the others ask for a retry.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

#[test]
fn the_airflow_dag_loads_and_maps_exit_codes_to_retries() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = demo_copy();
    let good = dir.path().join("churn.toml");
    // A quality gate that cannot pass: exit 4, no retry.
    let gate = dir.path().join("gate.toml");
    std::fs::write(
        &gate,
        std::fs::read_to_string(&good).expect("job").replace(
            "max_unscored_fraction = 0.01",
            "max_unscored_fraction = 0.0",
        ),
    )
    .expect("write job");
    // A cluster nobody listens on: exit 5, worth a retry.
    let down = dir.path().join("down.toml");
    std::fs::write(
        &down,
        std::fs::read_to_string(&good).expect("job")
            + &format!(
                "\n[execution]\ncluster = \"df://127.0.0.1:{}\"\n",
                free_port()
            ),
    )
    .expect("write job");
    let home = tempfile::TempDir::new().expect("temp");
    let out = Command::new(cached_python(
        "SCORCH_AIRFLOW_PYTHON",
        "airflow",
        "it installs Airflow for this test",
    ))
    .arg(repo.join("tests/e2e/airflow_check.py"))
    .arg(repo.join("examples/airflow"))
    .arg(scorch_bin())
    .arg(DAYS[2])
    .arg(format!("good={}", good.display()))
    .arg(format!("gate={}", gate.display()))
    .arg(format!("down={}", down.display()))
    .arg(format!(
        "missing={}",
        dir.path().join("nope.toml").display()
    ))
    .env("AIRFLOW_HOME", home.path())
    .output()
    .expect("the Airflow Python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(
        stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("a JSON line"),
    )
    .expect("JSON");
    assert_eq!(report["import_errors"], serde_json::json!({}), "{report}");
    assert_eq!(report["dags"]["churn_scores"]["tasks"][0], "score");
    let cases = &report["cases"];
    assert_eq!(cases["good"]["returned"], "committed", "{cases}");
    assert!(cases["good"]["rows"]["written"].as_u64() > Some(0));
    for (case, raised, code) in [
        ("gate", "AirflowFailException", "exited 4"),
        ("missing", "AirflowFailException", "exited 2"),
        ("down", "AirflowException", "exited 5"),
    ] {
        assert_eq!(cases[case]["raised"], raised, "{case}: {}", cases[case]);
        assert!(
            cases[case]["message"]
                .as_str()
                .is_some_and(|m| m.contains(code)),
            "{case}: {}",
            cases[case]
        );
    }
}
