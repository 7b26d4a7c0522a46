//! OpenLineage run events: `START` when a run begins, then `COMPLETE` or `FAIL`, sent to an HTTP
//! endpoint (`POST <url>/api/v1/lineage`, as Marquez and other collectors take them) or appended
//! to a file, one JSON event per line. A lineage endpoint that is down never fails the run: the
//! event is lost with a warning and the run's own exit code stands.
//!
//! The job is `<namespace>/<job name>`; the run id is scorch's run id; datasets are named as
//! OpenLineage's naming conventions say (`file` + absolute path, `s3://bucket` + key prefix, …),
//! with their columns (`schema` facet), the input fingerprint and Delta versions, and the output's
//! row count and committed version. A `scorch` run facet carries the models with their SHA-256,
//! the checks and the drift.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::job::JobSpec;
use crate::run::RunReport;
use crate::run::manifest::RunManifest;
use crate::store::location::Location;

/// The event schema this module writes.
pub const EVENT_SCHEMA: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const SCHEMA_FACET: &str =
    "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const OUTPUT_STATISTICS_FACET: &str = "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet";
const VERSION_FACET: &str = "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet";
const ERROR_FACET: &str = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
const SCORCH_FACET: &str = "urn:scorch:facets:1-0-0:ScorchRunFacet";

/// Who produced the events.
pub fn producer() -> String {
    format!("urn:scorch:{}", env!("CARGO_PKG_VERSION"))
}

/// Where events go.
#[derive(Debug, Clone, PartialEq)]
pub enum LineageSink {
    /// An HTTP endpoint's base URL; events are POSTed to `<base>/api/v1/lineage`.
    Http(String),
    /// A file events are appended to, one per line.
    File(PathBuf),
}

impl LineageSink {
    /// `file:PATH` or an `http(s)://` URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.strip_prefix("file:") {
            Some(path) => super::file_in_existing_folder(path).map(Self::File),
            None => super::http_url(text)
                .map(Self::Http)
                .map_err(|e| format!("{e}, nor file:PATH (e.g. http://marquez:5000)")),
        }
    }

    /// Sends one event; a failure is a warning, never an error.
    pub async fn emit(&self, event: &Value) {
        let kind = event["eventType"].as_str().unwrap_or("event");
        let result = match self {
            Self::File(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{event}"))
                .map_err(|e| format!("{}: {e}", path.display())),
            Self::Http(base) => post(&format!("{base}/api/v1/lineage"), event).await,
        };
        if let Err(e) = result {
            tracing::warn!("lineage {kind} event not sent: {e}");
        }
    }
}

async fn post(url: &str, event: &Value) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(event.to_string())
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: {}", response.status()));
    }
    Ok(())
}

/// OpenLineage's namespace and name of a dataset at `location`.
pub fn dataset_name(location: &Location) -> (String, String) {
    let url = location.url();
    let path = url.path().trim_end_matches('/');
    match url.scheme() {
        "file" => ("file".to_string(), path.to_string()),
        scheme => (
            format!("{scheme}://{}", url.host_str().unwrap_or_default()),
            path.trim_start_matches('/').to_string(),
        ),
    }
}

fn facet(schema_url: &str, body: Value) -> Value {
    let mut facet = json!({ "_producer": producer(), "_schemaURL": schema_url });
    if let (Some(f), Value::Object(b)) = (facet.as_object_mut(), body) {
        f.extend(b);
    }
    facet
}

fn schema_facet(columns: &[(String, String)]) -> Value {
    facet(
        SCHEMA_FACET,
        json!({ "fields": columns.iter().map(|(n, t)| json!({"name": n, "type": t})).collect::<Vec<_>>() }),
    )
}

/// One event: the parts every event has.
fn event(kind: &str, at: DateTime<Utc>, namespace: &str, job: &JobSpec, run_id: &str) -> Value {
    let inputs: Vec<Value> = job
        .sources
        .iter()
        .map(|s| {
            let (ns, name) = dataset_name(&s.location);
            json!({ "namespace": ns, "name": name, "facets": {} })
        })
        .collect();
    let (output_namespace, output_name) = dataset_name(&job.output.location);
    let mut outputs =
        vec![json!({ "namespace": output_namespace, "name": output_name, "facets": {} })];
    if let Some(rejects) = &job.output.rejects {
        let (ns, name) = dataset_name(&rejects.location);
        outputs.push(json!({ "namespace": ns, "name": name, "facets": {} }));
    }
    json!({
        "eventType": kind,
        "eventTime": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "producer": producer(),
        "schemaURL": EVENT_SCHEMA,
        "run": { "runId": run_id, "facets": {} },
        "job": { "namespace": namespace, "name": job.name, "facets": {} },
        "inputs": inputs,
        "outputs": outputs,
    })
}

/// The `START` event of a run about to begin.
pub fn start(namespace: &str, job: &JobSpec, run_id: &str, at: DateTime<Utc>) -> Value {
    event("START", at, namespace, job, run_id)
}

/// The `COMPLETE` (a run that committed, or found its append already committed) or `FAIL`
/// event. `report` is the run's report when it succeeded; `failed` its manifest (a rejected
/// run has one), exit code and message otherwise.
pub fn end(
    namespace: &str,
    job: &JobSpec,
    run_id: &str,
    at: DateTime<Utc>,
    report: Option<&RunReport>,
    failed: Option<(Option<&RunManifest>, i32, &str)>,
) -> Value {
    let kind = if report.is_some() { "COMPLETE" } else { "FAIL" };
    let mut e = event(kind, at, namespace, job, run_id);
    let manifest = report.map(|r| &r.manifest).or(failed.and_then(|f| f.0));
    if let Some(r) = report {
        for (i, source) in job.sources.iter().enumerate() {
            if let Some(columns) = r.schemas.inputs.get(&source.name) {
                e["inputs"][i]["facets"]["schema"] = schema_facet(columns);
            }
            if let Some(version) = r.manifest.source_versions.get(&source.name) {
                e["inputs"][i]["facets"]["version"] = facet(
                    VERSION_FACET,
                    json!({ "datasetVersion": version.to_string() }),
                );
            }
        }
        e["outputs"][0]["facets"]["schema"] = schema_facet(&r.schemas.output);
        if let Some(version) = r.manifest.output.version {
            e["outputs"][0]["facets"]["version"] = facet(
                VERSION_FACET,
                json!({ "datasetVersion": version.to_string() }),
            );
        }
        e["outputs"][0]["outputFacets"] = json!({
            "outputStatistics": facet(OUTPUT_STATISTICS_FACET, json!({
                "rowCount": r.manifest.rows.written,
                "size": r.manifest.output.bytes,
            }))
        });
        // The rejects table, the second output, when its commit landed.
        if let Some(rejects) = &r.manifest.rejects
            && let Some(version) = rejects.version
        {
            e["outputs"][1]["facets"]["version"] = facet(
                VERSION_FACET,
                json!({ "datasetVersion": version.to_string() }),
            );
            e["outputs"][1]["outputFacets"] = json!({
                "outputStatistics": facet(OUTPUT_STATISTICS_FACET, json!({
                    "rowCount": rejects.rows,
                    "size": rejects.files.iter().map(|f| f.size).sum::<u64>(),
                }))
            });
        }
    }
    if let Some((_, code, message)) = failed {
        e["run"]["facets"]["errorMessage"] = facet(
            ERROR_FACET,
            json!({ "message": format!("exit code {code}: {message}"), "programmingLanguage": "Rust" }),
        );
    }
    if let Some(m) = manifest {
        e["run"]["facets"]["scorch"] = facet(
            SCORCH_FACET,
            json!({
                "status": m.status,
                "models": m.models.iter().map(|u| json!({
                    "name": u.name, "version": u.version, "sha256": u.sha256, "uri": u.uri,
                })).collect::<Vec<_>>(),
                "dataSha256": m.data_sha256,
                "params": m.params,
                "rows": { "read": m.rows.read, "written": m.rows.written, "unscored": m.rows.unscored },
                "checks": m.checks,
                "drift": m.drift,
            }),
        );
    }
    e
}
