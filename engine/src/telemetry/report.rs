//! `scorch report`: one self-contained HTML page about a run (no network at view time): row
//! counts and unscored reasons, each check with its value and limit, each profiled output's
//! distribution against the profile, and drift per input as a sorted bar chart.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};
use crate::run::manifest::RunManifest;
use crate::store::location::Location;
use crate::table::RUNS_DIR;

/// What `scorch report` wrote.
#[derive(Debug, serde::Serialize)]
pub struct ReportWritten {
    /// The HTML file.
    pub file: PathBuf,
    /// The run it describes.
    pub run_id: String,
}

/// Reads run `run` of the table at `location` (the newest run when `None`).
pub async fn read_run(
    location: &Location,
    store: &Arc<dyn ObjectStore>,
    run: Option<&str>,
) -> Result<RunManifest> {
    if crate::table::target::detect(location, store)
        .await?
        .is_none()
    {
        return Err(Error::NotATable {
            location: location.to_string(),
        });
    }
    let prefix = location.child(RUNS_DIR);
    let storage = |action: &'static str, path: &object_store::path::Path| {
        let location = format!("{}{}", location.store_url().as_str(), path);
        move |source| Error::Storage {
            action,
            location,
            source,
        }
    };
    let mut runs: Vec<String> = store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.filename().unwrap_or_default().to_string())
        .try_collect::<Vec<_>>()
        .await
        .map_err(storage("list run manifests", &prefix))?
        .into_iter()
        .filter_map(|name| name.strip_suffix(".json").map(str::to_string))
        .collect();
    runs.sort();
    let chosen = match run {
        Some(id) => runs
            .iter()
            .find(|r| *r == id)
            .cloned()
            .ok_or_else(|| Error::Location {
                location: location.to_string(),
                message: format!(
                    "no run {id} here; its runs: {}",
                    if runs.is_empty() {
                        "none".to_string()
                    } else {
                        runs.iter()
                            .rev()
                            .take(5)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            })?,
        // Run ids are time-ordered (UUID v7): the last is the newest.
        None => runs.last().cloned().ok_or_else(|| Error::Location {
            location: location.to_string(),
            message: "no run has written a manifest here yet".into(),
        })?,
    };
    let path = location.child(&format!("{RUNS_DIR}/{chosen}.json"));
    let bytes = store
        .get(&path)
        .await
        .map_err(storage("read the run manifest", &path))?
        .bytes()
        .await
        .map_err(storage("read the run manifest", &path))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Table {
        output: location.to_string(),
        message: format!("run manifest {path} is unreadable: {e}"),
    })
}

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart as inline SVG: one labelled bar per `(label, value)`, scaled to the
/// largest value (or `limit`), with an optional dashed limit line.
fn bars(id: &str, rows: &[(String, f64)], limit: Option<f64>, format: fn(f64) -> String) -> String {
    let width = 640.0;
    let label_width = 220.0;
    let row_height = 22.0;
    let max = rows
        .iter()
        .map(|(_, v)| *v)
        .chain(limit)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let scale = (width - label_width - 80.0) / max;
    let height = row_height * rows.len() as f64 + 10.0;
    let mut svg = format!(
        r#"<svg id="{id}" class="chart" width="{width}" height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">"#
    );
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = i as f64 * row_height + 4.0;
        let over = limit.is_some_and(|l| *value > l);
        let _ = write!(
            svg,
            r#"<text x="{x}" y="{ty}" text-anchor="end">{label}</text><rect class="bar{cls}" x="{label_width}" y="{y}" width="{w:.1}" height="{h}"><title>{label}: {v}</title></rect><text x="{vx:.1}" y="{ty}">{v}</text>"#,
            x = label_width - 6.0,
            ty = y + 14.0,
            label = esc(label),
            cls = if over { " over" } else { "" },
            w = (value * scale).max(1.0),
            h = row_height - 6.0,
            v = format(*value),
            vx = label_width + value * scale + 6.0,
        );
    }
    if let Some(l) = limit {
        let x = label_width + l * scale;
        let _ = write!(
            svg,
            r#"<line class="limit" x1="{x:.1}" x2="{x:.1}" y1="0" y2="{height}"><title>limit {l}</title></line>"#
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The page of one run.
pub fn render(m: &RunManifest, limits: &Limits) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<h1>{job}</h1><p class="meta">run <code id="run-id">{run}</code> · {status} · {started} → {finished} · output {url} version {version}</p>"#,
        job = esc(&m.job),
        run = esc(&m.run_id),
        status = esc(&format!("{:?}", m.status)),
        started = m.started_at.to_rfc3339(),
        finished = m.finished_at.to_rfc3339(),
        url = esc(&m.output.url),
        version = m.output.version.map_or("—".into(), |v| v.to_string()),
    );
    body.push_str("<h2>Models</h2><table><tr><th>name</th><th>version</th><th>format</th><th>sha256</th></tr>");
    for model in &m.models {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&model.name),
            esc(&model.version),
            esc(&model.format),
            esc(&model.sha256)
        );
    }
    body.push_str("</table>");

    let _ = write!(
        body,
        r#"<h2>Rows</h2><table id="rows"><tr><th>read</th><th>written</th><th>unscored</th></tr><tr><td>{}</td><td>{}</td><td>{}</td></tr></table>"#,
        m.rows.read, m.rows.written, m.rows.unscored
    );
    for (model, counts) in &m.rows.models {
        let reasons: Vec<(String, f64)> = counts
            .reasons
            .iter()
            .map(|(r, n)| (r.to_string(), *n as f64))
            .collect();
        if reasons.is_empty() {
            let _ = write!(
                body,
                "<p>{}: every one of {} rows scored.</p>",
                esc(model),
                counts.rows
            );
            continue;
        }
        let _ = write!(
            body,
            "<h3>Unscored rows of {}, by reason ({} of {})</h3>{}",
            esc(model),
            counts.unscored,
            counts.rows,
            bars(&format!("unscored-{model}"), &reasons, None, |v| format!(
                "{v:.0}"
            ))
        );
    }

    body.push_str(r#"<h2>Checks</h2><table id="checks"><tr><th>check</th><th>result</th><th>value</th><th>limit</th><th>detail</th></tr>"#);
    let number = |v: Option<f64>| match v {
        None => "—".to_string(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.4}"),
    };
    for check in &m.checks {
        let _ = write!(
            body,
            r#"<tr class="{cls}"><td>{name}</td><td>{result}</td><td>{value}</td><td>{limit}</td><td>{detail}</td></tr>"#,
            cls = if check.passed { "pass" } else { "fail" },
            name = esc(&check.name),
            result = if check.passed { "passed" } else { "failed" },
            value = number(check.value),
            limit = number(check.limit),
            detail = esc(&check.detail),
        );
    }
    body.push_str("</table>");

    for (model, drift) in &m.drift {
        for (output, d) in &drift.outputs {
            if d.expected.is_empty() {
                continue;
            }
            let _ = write!(
                body,
                "<h2>Output {}.{} against its profile ({} rows)</h2><p>PSI {} · KS {} (p = {})</p>",
                esc(model),
                esc(output),
                drift.profile_rows,
                d.psi.map_or("—".into(), |v| format!("{v:.4}")),
                d.ks.map_or("—".into(), |v| format!("{v:.4}")),
                d.ks_p_value.map_or("—".into(), |v| format!("{v:.3}")),
            );
            body.push_str(&distribution(
                &format!("output-{model}-{output}"),
                &d.edges,
                &d.expected,
                &d.actual,
            ));
        }
        let mut features: Vec<(String, f64)> = drift
            .features
            .iter()
            .map(|(f, v)| (f.clone(), *v))
            .collect();
        features.sort_by(|a, b| b.1.total_cmp(&a.1));
        let _ = write!(
            body,
            "<h2>Drift of {}'s inputs (PSI, largest first)</h2>{}",
            esc(model),
            bars(
                &format!("psi-{model}"),
                &features,
                limits.feature_psi,
                |v| format!("{v:.4}")
            )
        );
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>scorch run {run} of {job}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0; }} td, th {{ border: 1px solid #ccc; padding: .25em .6em; text-align: left; }}
tr.fail td {{ background: #fde2e1; }} tr.pass td:nth-child(2) {{ color: #176b2c; }}
.meta {{ color: #555; }} code {{ font-size: 12px; }}
.chart text {{ font-size: 12px; fill: #333; }} .bar {{ fill: #4a78b5; }} .bar.over {{ fill: #c0392b; }}
.expected, .expected-key {{ fill: #b9c7d8; }} .actual, .actual-key {{ fill: #4a78b5; }} .limit {{ stroke: #c0392b; stroke-dasharray: 4 3; }}
</style></head><body>
{body}
<script>
// Marks the page as rendered once every chart has drawn its bars.
document.body.dataset.charts = String(document.querySelectorAll("svg.chart").length);
document.body.dataset.rendered = "ok";
</script>
</body></html>
"#,
        run = esc(&m.run_id),
        job = esc(&m.job),
    )
}

/// Expected against actual shares per bin, as grouped vertical bars.
fn distribution(id: &str, edges: &[f64], expected: &[f64], actual: &[f64]) -> String {
    let bins = expected.len().max(actual.len());
    let (width, height, bottom) = (640.0, 180.0, 40.0);
    let slot = width / bins.max(1) as f64;
    let max = expected
        .iter()
        .chain(actual)
        .fold(0.0_f64, |a, b| a.max(*b))
        .max(f64::MIN_POSITIVE);
    let scale = (height - bottom - 10.0) / max;
    let mut svg = format!(
        r#"<svg id="{id}" class="chart" width="{width}" height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">"#
    );
    for i in 0..bins {
        let label = match (i, edges.len()) {
            (i, n) if i < n => format!("≤{:.3}", edges[i]),
            (i, n) if i == n => "above".to_string(),
            _ => "missing".to_string(),
        };
        for (k, (class, shares)) in [("expected", expected), ("actual", actual)]
            .iter()
            .enumerate()
        {
            let share = shares.get(i).copied().unwrap_or(0.0);
            let h = share * scale;
            let _ = write!(
                svg,
                r#"<rect class="{class}" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}"><title>{label}: {class} {p:.1}%</title></rect>"#,
                x = i as f64 * slot + 4.0 + k as f64 * (slot - 8.0) / 2.0,
                y = height - bottom - h,
                w = (slot - 8.0) / 2.0,
                p = share * 100.0,
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{y}" text-anchor="middle">{label}</text>"#,
            x = i as f64 * slot + slot / 2.0,
            y = height - bottom + 14.0,
            label = esc(&label)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="4" y="{y}"><tspan class="expected-key">■</tspan><tspan> profile </tspan><tspan class="actual-key">■</tspan><tspan> this run</tspan></text></svg>"#,
        y = height - 6.0
    );
    svg
}

/// The limits drawn on the charts.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// `max_feature_psi`, drawn on the drift chart.
    pub feature_psi: Option<f64>,
}

/// Limits recorded in a manifest's checks (the job may have changed since).
pub fn limits_of(m: &RunManifest) -> Limits {
    Limits {
        feature_psi: m
            .checks
            .iter()
            .find(|c| c.name == "max_feature_psi")
            .and_then(|c| c.limit),
    }
}
