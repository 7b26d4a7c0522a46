//! Prometheus metrics of one run: written as a textfile for node_exporter's textfile collector
//! (atomically: a temporary file renamed over the old one) and pushed to a Pushgateway, when the
//! run ends, whether it succeeded or not.
//!
//! Every series carries the labels `job` (the job's name, or `--metrics-job`) and `output` (the
//! output table's URL). A run is one process, so the values are gauges describing the last run.
//! `scorch_last_success_timestamp_seconds` moves only on success: a failed run keeps the previous
//! value (read back from the textfile; a push of a failed run uses POST, which replaces only the
//! series it sends, where a successful run's PUT replaces the whole group).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{Encoder, GaugeVec, Opts, Registry, TextEncoder};

use crate::run::manifest::RunManifest;

/// Name of the series that moves only on success.
pub const LAST_SUCCESS: &str = "scorch_last_success_timestamp_seconds";

/// How one run ended, as the metrics describe it.
#[derive(Debug, Clone)]
pub struct RunOutcome<'a> {
    /// The `job` label.
    pub job: &'a str,
    /// The `output` label: the output table's URL (empty when the job did not load).
    pub output: &'a str,
    /// The run's manifest, when the run got as far as writing one.
    pub manifest: Option<&'a RunManifest>,
    /// The process's exit code.
    pub exit_code: i32,
    /// Start to end, as the process measured it.
    pub duration: Duration,
    /// When the run ended.
    pub finished_at: DateTime<Utc>,
}

impl RunOutcome<'_> {
    fn succeeded(&self) -> bool {
        self.exit_code == 0
    }
}

/// The metrics of `outcome` in Prometheus' text format. `last_success` is the previous
/// success's time, kept when this run failed.
pub fn render(outcome: &RunOutcome<'_>, last_success: Option<f64>) -> Result<String, String> {
    let registry = Registry::new();
    let base = [("job", outcome.job), ("output", outcome.output)];
    let gauge = |name: &str, help: &str, extra: &[&str]| -> Result<GaugeVec, String> {
        let labels: Vec<&str> = ["job", "output"].iter().chain(extra).copied().collect();
        let g = GaugeVec::new(Opts::new(name, help), &labels).map_err(|e| e.to_string())?;
        registry
            .register(Box::new(g.clone()))
            .map_err(|e| e.to_string())?;
        Ok(g)
    };
    let set = |g: &GaugeVec, extra: &[&str], value: f64| {
        let values: Vec<&str> = base
            .iter()
            .map(|(_, v)| *v)
            .chain(extra.iter().copied())
            .collect();
        g.with_label_values(&values).set(value);
    };
    let finished = outcome.finished_at.timestamp_millis() as f64 / 1000.0;

    let exit = gauge(
        "scorch_run_exit_code",
        "Exit code of the last run (0 success, 2 job, 3 data, 4 quality gate, 5 storage, 6 model, 7 conflict).",
        &[],
    )?;
    set(&exit, &[], f64::from(outcome.exit_code));
    let last_run = gauge(
        "scorch_last_run_timestamp_seconds",
        "When the last run ended, successful or not (Unix time).",
        &[],
    )?;
    set(&last_run, &[], finished);
    let success = if outcome.succeeded() {
        Some(finished)
    } else {
        last_success
    };
    if let Some(at) = success {
        let g = gauge(
            LAST_SUCCESS,
            "When the last successful run ended (Unix time).",
            &[],
        )?;
        set(&g, &[], at);
    }

    let duration = gauge(
        "scorch_run_duration_seconds",
        "Duration of the last run by phase (plan, execute, commit, publish, total).",
        &["phase"],
    )?;
    if let Some(m) = outcome.manifest {
        let t = &m.timings;
        for (phase, ms) in [
            ("plan", t.plan_ms),
            ("execute", t.execute_ms),
            ("commit", t.commit_ms),
            ("publish", t.publish_ms),
        ] {
            set(&duration, &[phase], ms as f64 / 1000.0);
        }
    }
    set(&duration, &["total"], outcome.duration.as_secs_f64());

    let Some(m) = outcome.manifest else {
        return encode(&registry);
    };
    let rows = gauge(
        "scorch_rows",
        "Rows of the last run: read from the sources, written to the output, unscored (the largest count among its models).",
        &["stage"],
    )?;
    set(&rows, &["read"], m.rows.read as f64);
    set(&rows, &["written"], m.rows.written as f64);
    set(&rows, &["unscored"], m.rows.unscored as f64);
    let model_rows = gauge(
        "scorch_model_rows",
        "Rows each model was called on in the last run.",
        &["model"],
    )?;
    let unscored = gauge(
        "scorch_model_rows_unscored",
        "Rows each model left unscored in the last run, by reason.",
        &["model", "reason"],
    )?;
    for (model, counts) in &m.rows.models {
        set(&model_rows, &[model], counts.rows as f64);
        for reason in scorch_udfs::unscored::Reason::ALL {
            let n = counts.reasons.get(&reason).copied().unwrap_or(0);
            set(&unscored, &[model, reason.as_str()], n as f64);
        }
    }
    let scan = gauge(
        "scorch_scan",
        "Scan counters of the last run: bytes fetched, row groups read and pruned by statistics, rows pruned by the page index and by filters in the scan, input files after partition pruning and in all.",
        &["counter"],
    )?;
    for (counter, value) in [
        ("bytes_scanned", m.scan.bytes_scanned),
        ("row_groups_read", m.scan.row_groups_matched),
        ("row_groups_pruned", m.scan.row_groups_pruned),
        ("page_rows_pruned", m.scan.page_rows_pruned),
        ("pushdown_rows_pruned", m.scan.pushdown_rows_pruned),
        ("files_read", m.inputs.len() as u64),
        ("files_total", m.source_files_total),
    ] {
        set(&scan, &[counter], value as f64);
    }
    let output = gauge(
        "scorch_output",
        "What the last run wrote: files, bytes, and the committed table version.",
        &["counter"],
    )?;
    set(&output, &["files"], m.output.files as f64);
    set(&output, &["bytes"], m.output.bytes as f64);
    if let Some(version) = m.output.version {
        set(&output, &["version"], version as f64);
    }
    if !m.drift.is_empty() {
        let feature_psi = gauge(
            "scorch_feature_psi",
            "Population stability index of each model input against the model's reference profile.",
            &["model", "feature"],
        )?;
        let output_psi = gauge(
            "scorch_output_psi",
            "Population stability index of each model output against the reference profile.",
            &["model", "model_output"],
        )?;
        let output_ks = gauge(
            "scorch_output_ks",
            "Two-sample Kolmogorov-Smirnov statistic of each model output against the reference profile.",
            &["model", "model_output"],
        )?;
        for (model, d) in &m.drift {
            for (feature, psi) in &d.features {
                set(&feature_psi, &[model, feature], *psi);
            }
            for (output, o) in &d.outputs {
                if let Some(psi) = o.psi {
                    set(&output_psi, &[model, output], psi);
                }
                if let Some(ks) = o.ks {
                    set(&output_ks, &[model, output], ks);
                }
            }
        }
    }
    if let Some(shadow) = &m.shadow {
        let agreement = gauge(
            "scorch_shadow_agreement",
            "How the shadow (challenger) model agreed with the model it shadows, per prediction column: same (share of rows with the same value), mean_abs_diff, max_abs_diff, rank_correlation, psi, label_flips (share).",
            &["model", "shadow_model", "column", "measure"],
        )?;
        for (column, g) in &shadow.agreement {
            let labels = |measure: &'static str| {
                [
                    shadow.replaces.as_str(),
                    shadow.model.as_str(),
                    column.as_str(),
                    measure,
                ]
            };
            set(&agreement, &labels("same"), g.agreement);
            set(&agreement, &labels("label_flips"), g.label_flip_share);
            for (measure, value) in [
                ("mean_abs_diff", g.mean_abs_diff),
                ("max_abs_diff", g.max_abs_diff),
                ("rank_correlation", g.rank_correlation),
                ("psi", g.psi),
            ] {
                if let Some(v) = value {
                    set(&agreement, &labels(measure), v);
                }
            }
        }
    }
    if !m.checks.is_empty() {
        let checks = gauge(
            "scorch_check_passed",
            "Quality gates of the last run: 1 passed, 0 failed.",
            &["check"],
        )?;
        for check in &m.checks {
            set(
                &checks,
                &[&check.name],
                if check.passed { 1.0 } else { 0.0 },
            );
        }
    }
    encode(&registry)
}

fn encode(registry: &Registry) -> Result<String, String> {
    let mut buffer = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buffer)
        .map_err(|e| e.to_string())?;
    String::from_utf8(buffer).map_err(|e| e.to_string())
}

/// The value of `scorch_last_success_timestamp_seconds` in a textfile this module wrote.
pub fn last_success_in(text: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(LAST_SUCCESS))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .next_back()
}

/// Writes `text` to `path` atomically: a temporary file beside it, renamed over it (metrics
/// textfiles, reports).
pub fn write_textfile(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the metrics file path names no file"))?;
    let mut temporary = name.to_os_string();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary);
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// Where a run's metrics go.
#[derive(Debug, Clone, Default)]
pub struct MetricsSinks {
    /// A textfile for node_exporter's textfile collector.
    pub file: Option<PathBuf>,
    /// A Pushgateway's base URL (`http://host:9091`).
    pub pushgateway: Option<String>,
    /// The `job` label and the Pushgateway's grouping key; default: the job's name.
    pub job: Option<String>,
}

impl MetricsSinks {
    /// Whether any sink is configured.
    pub fn any(&self) -> bool {
        self.file.is_some() || self.pushgateway.is_some()
    }

    /// Writes and pushes the metrics of `outcome`. Never fails the run: a sink that cannot be
    /// reached is a warning, and the run's own exit code stands.
    pub async fn emit(&self, outcome: &RunOutcome<'_>) {
        if !self.any() {
            return;
        }
        let previous = self
            .file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|text| last_success_in(&text));
        let text = match render(outcome, previous) {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!("metrics not written: {e}");
                return;
            }
        };
        if let Some(file) = &self.file {
            match write_textfile(file, &text) {
                Ok(()) => tracing::debug!(file = %file.display(), "metrics written"),
                Err(e) => {
                    tracing::warn!("metrics file {} not written: {e}", file.display())
                }
            }
        }
        if let Some(url) = &self.pushgateway {
            // A failed run's push leaves the last success time of an earlier run in place.
            let without_success: String;
            let body = if outcome.succeeded() {
                &text
            } else {
                without_success = text
                    .lines()
                    .filter(|l| !l.contains(LAST_SUCCESS))
                    .map(|l| format!("{l}\n"))
                    .collect();
                &without_success
            };
            if let Err(e) = push(url, outcome.job, body, outcome.succeeded()).await {
                tracing::warn!("metrics not pushed to {url}: {e}");
            }
        }
    }
}

/// Pushes `body` to the Pushgateway at `base` under grouping key `job`: PUT (replace the
/// group) or POST (replace only the series sent).
pub async fn push(base: &str, job: &str, body: &str, replace: bool) -> Result<(), String> {
    let url = format!(
        "{}/metrics/job/{}",
        base.trim_end_matches('/'),
        url::form_urlencoded::byte_serialize(job.as_bytes()).collect::<String>()
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let request = if replace {
        client.put(&url)
    } else {
        client.post(&url)
    };
    let response = request
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        return Err(format!("{status}: {}", text.trim()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(exit_code: i32) -> RunOutcome<'static> {
        RunOutcome {
            job: "churn_daily",
            output: "file:///t/out",
            manifest: None,
            exit_code,
            duration: Duration::from_millis(1500),
            finished_at: DateTime::from_timestamp(1_800_000_000, 0).expect("valid time"),
        }
    }

    #[test]
    fn a_failed_run_keeps_the_previous_success_time() {
        let ok = render(&outcome(0), None).expect("render");
        assert_eq!(last_success_in(&ok), Some(1_800_000_000.0));
        let failed = render(&outcome(5), Some(1_700_000_000.0)).expect("render");
        assert_eq!(last_success_in(&failed), Some(1_700_000_000.0));
        assert!(
            failed.contains("scorch_run_exit_code{job=\"churn_daily\",output=\"file:///t/out\"} 5")
        );
        let never = render(&outcome(5), None).expect("render");
        assert_eq!(last_success_in(&never), None);
    }

    #[test]
    fn the_textfile_is_replaced_whole() {
        let dir = tempfile::tempdir().expect("temp");
        let path = dir.path().join("scorch.prom");
        write_textfile(&path, "a 1\n").expect("write");
        write_textfile(&path, "b 2\n").expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "b 2\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("list").count(),
            1,
            "no temporary file left"
        );
    }
}
