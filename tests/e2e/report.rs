//! `scorch report`: the HTML page of a run, opened in headless Chromium (Debian `chromium`): it
//! renders, its script runs without errors, and it shows the run's own figures; nothing on it is
//! fetched from the network.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// The DOM headless Chromium builds from `page`, and what it logged.
fn chromium_dom(page: &Path) -> (String, String) {
    let binary = std::env::var("SCORCH_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&binary).exists(),
        "{binary} is missing: run ./scripts/setup (it installs chromium)"
    );
    let profile = tempfile::TempDir::new().expect("temp");
    let out = Command::new(&binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_report_renders_in_a_browser_and_shows_the_runs_figures() {
    let dir = crate::drift::profiled_demo(
        "max_feature_psi = 0.1\nmax_output_psi = 0.2\non_fail = \"warn\"\n",
    );
    crate::drift::shift_monthly_charges(dir.path());
    let r = run(&[
        "run",
        dir.path().join("churn.toml").to_str().expect("utf-8"),
        "--param",
        &format!("ds={}", DAYS[2]),
        "--json",
    ]);
    r.assert_ok();
    let m = r.json();
    let run_id = m["run_id"].as_str().expect("run id");
    let table = dir.path().join("out/churn_scores");
    let page = dir.path().join("report.html");
    let w = run(&[
        "report",
        table.to_str().expect("utf-8"),
        "--out",
        page.to_str().expect("utf-8"),
    ]);
    w.assert_ok();
    assert!(w.stdout.contains(run_id), "the newest run: {}", w.stdout);

    let html = std::fs::read_to_string(&page).expect("report");
    for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(!html.contains(external), "self-contained: found {external}");
    }
    let (dom, log) = chromium_dom(&page);
    assert!(
        dom.contains("data-rendered=\"ok\""),
        "the page's script ran: {log}"
    );
    assert!(dom.contains("data-charts=\"3\""), "three charts: {dom}");
    for console in ["Uncaught", "CONSOLE(", "SyntaxError"] {
        assert!(
            !log.contains(console),
            "{console} in the browser's log:\n{log}"
        );
    }
    // The run's own figures: its id, its counts, each check, the drifted input first.
    assert!(dom.contains(run_id));
    for key in ["read", "written", "unscored"] {
        let n = m["rows"][key].as_u64().expect("count").to_string();
        assert!(dom.contains(&format!("<td>{n}</td>")), "rows {key} = {n}");
    }
    for check in m["checks"].as_array().expect("checks") {
        assert!(dom.contains(check["name"].as_str().expect("name")));
    }
    assert!(dom.contains("<tr class=\"fail\"><td>max_feature_psi</td>"));
    let psi_chart = &dom[dom.find("id=\"psi-churn\"").expect("drift chart")..];
    let first_label = psi_chart
        .split("text-anchor=\"end\">")
        .nth(1)
        .and_then(|t| t.split('<').next())
        .expect("a label");
    assert_eq!(first_label, "monthly_charges", "sorted, largest first");
    assert!(dom.contains("id=\"output-churn-churn_probability\""));

    // A run that does not exist, and a folder that is not a table.
    let first = run(&[
        "report",
        table.to_str().expect("utf-8"),
        "--run",
        "no-such-run",
    ]);
    assert_ne!(first.code, Some(0));
    assert!(
        first.stderr.contains("no run no-such-run"),
        "{}",
        first.stderr
    );
    let r = run(&["report", dir.path().join("data").to_str().expect("utf-8")]);
    r.assert_code(2);
}
