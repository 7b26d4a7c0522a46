//! `scorch backfill`: one job over many intervals (`--param ds=2026-11-01..2026-11-30`, or a list
//! `--param region=eu,us`), each interval its own run and its own commit, some at once, with
//! `--skip-unchanged` passed to each. Every interval is attempted; the outcome of each is
//! reported, and a failed interval does not stop the others.

use std::time::Instant;

use chrono::NaiveDate;
use futures::StreamExt;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::job::{JobSpec, ParamType};
use crate::plan::RunOptions;
use crate::run::manifest::RunStatus;

/// The most intervals one backfill takes.
const MAX_INTERVALS: usize = 10_000;

/// What happened to one interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntervalOutcome {
    /// The parameter value of the interval (`2026-11-03`).
    pub interval: String,
    /// `scored`, `skipped` (unchanged), `already_committed`, `rejected` (a quality gate),
    /// `failed`, or `not_started` (a stop was requested first).
    pub status: String,
    /// The run's exit code.
    pub exit_code: i32,
    /// The run.
    pub run_id: Option<String>,
    /// The table's version it committed (or, skipped, the version it would have repeated).
    pub version: Option<u64>,
    /// Rows written.
    pub rows: u64,
    /// Seconds the interval took.
    pub seconds: f64,
    /// The error, for an interval that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The runs' parameters: the one parameter given as a range (`a..b`, inclusive: dates by day,
/// integers by one) or a list (`a,b,c`) expanded, the others as given.
pub fn intervals(job: &JobSpec, params: &[(String, String)]) -> Result<(String, Vec<String>)> {
    let usage = |message: String| Error::Param {
        name: "backfill".into(),
        message,
    };
    let ranged: Vec<&(String, String)> = params
        .iter()
        .filter(|(_, v)| v.contains("..") || v.contains(','))
        .collect();
    let [(name, value)] = ranged.as_slice() else {
        return Err(usage(format!(
            "give exactly one parameter as a range or a list (--param ds=2026-11-01..2026-11-30, \
             --param region=eu,us); got {}",
            ranged.len()
        )));
    };
    let Some(param) = job.params.get(name) else {
        return Err(Error::Param {
            name: name.clone(),
            message: format!("job `{}` declares no parameter `{name}`", job.name),
        });
    };
    let values: Vec<String> = match value.split_once("..") {
        None => value.split(',').map(|v| v.trim().to_string()).collect(),
        Some((from, to)) => match param.ptype {
            ParamType::Date => {
                let parse = |s: &str| {
                    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|e| Error::Param {
                        name: name.clone(),
                        message: format!("`{s}` is not a date such as 2026-11-27: {e}"),
                    })
                };
                let (from, to) = (parse(from)?, parse(to)?);
                if to < from {
                    return Err(usage(format!(
                        "{name}: the range {value} ends before it starts"
                    )));
                }
                from.iter_days()
                    .take_while(|d| *d <= to)
                    .take(MAX_INTERVALS + 1)
                    .map(|d| d.to_string())
                    .collect()
            }
            ParamType::Int => {
                let parse = |s: &str| {
                    s.trim().parse::<i64>().map_err(|e| Error::Param {
                        name: name.clone(),
                        message: format!("`{s}` is not an integer: {e}"),
                    })
                };
                let (from, to) = (parse(from)?, parse(to)?);
                if to < from {
                    return Err(usage(format!(
                        "{name}: the range {value} ends before it starts"
                    )));
                }
                (from..=to)
                    .take(MAX_INTERVALS + 1)
                    .map(|i| i.to_string())
                    .collect()
            }
            other => {
                return Err(usage(format!(
                    "{name} is a {other} parameter: ranges are for dates and integers; give a \
                     list (a,b,c)"
                )));
            }
        },
    };
    if values.len() > MAX_INTERVALS {
        return Err(usage(format!(
            "{name}: more than {MAX_INTERVALS} intervals; split the backfill"
        )));
    }
    if values.iter().any(String::is_empty) {
        return Err(usage(format!("{name}: an empty value in `{value}`")));
    }
    Ok((name.clone(), values))
}

/// The error a backfill with failed intervals ends with: the exit code of the first failed
/// interval, in the order of the values.
pub fn failure(outcomes: &[IntervalOutcome]) -> Option<Error> {
    let failed: Vec<&IntervalOutcome> = outcomes.iter().filter(|o| o.exit_code != 0).collect();
    let first = failed.first()?;
    Some(Error::Backfill {
        failed: failed.len(),
        total: outcomes.len(),
        first: first.interval.clone(),
        code: first.exit_code,
    })
}

/// Runs `job` once per value of `name`, `parallel` at a time, in order of the values as far as
/// concurrency allows; returns the outcomes in the order of the values.
pub async fn backfill(
    job: &JobSpec,
    options: &RunOptions,
    name: &str,
    values: &[String],
    parallel: usize,
) -> Vec<IntervalOutcome> {
    let runs = values.iter().enumerate().map(|(index, value)| {
        let mut options = options.clone();
        options.params.retain(|(k, _)| k != name);
        options.params.push((name.to_string(), value.clone()));
        options.progress = false;
        options.run_id = Some(uuid::Uuid::now_v7());
        async move {
            let started = Instant::now();
            // After a stop request, intervals not yet begun are not begun.
            if let Some(signal) = crate::process::shutdown::requested() {
                let e = Error::Interrupted { signal };
                return (
                    index,
                    IntervalOutcome {
                        interval: value.clone(),
                        status: "not_started".into(),
                        exit_code: e.exit_code().code(),
                        run_id: None,
                        version: None,
                        rows: 0,
                        seconds: 0.0,
                        error: None,
                    },
                );
            }
            let result = crate::run::run(job, &options).await;
            let seconds = started.elapsed().as_secs_f64();
            let outcome = match result {
                Ok(report) => {
                    let m = &report.manifest;
                    let status = match m.status {
                        RunStatus::Committed => "scored",
                        RunStatus::SkippedUnchanged => "skipped",
                        RunStatus::AlreadyCommitted => "already_committed",
                        RunStatus::RejectedByChecks => "rejected",
                    };
                    IntervalOutcome {
                        interval: value.clone(),
                        status: status.into(),
                        exit_code: 0,
                        run_id: Some(m.run_id.clone()),
                        version: m.output.version,
                        rows: m.rows.written,
                        seconds,
                        error: None,
                    }
                }
                Err(e) => {
                    tracing::error!(interval = %value, exit_code = e.exit_code().code(), "{e}");
                    IntervalOutcome {
                        interval: value.clone(),
                        status: if matches!(e, Error::QualityGate { .. }) {
                            "rejected".into()
                        } else {
                            "failed".into()
                        },
                        exit_code: e.exit_code().code(),
                        run_id: options.run_id.map(|u| u.to_string()),
                        version: None,
                        rows: 0,
                        seconds,
                        error: Some(e.to_string()),
                    }
                }
            };
            (index, outcome)
        }
    });
    let mut outcomes: Vec<(usize, IntervalOutcome)> = futures::stream::iter(runs)
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    outcomes.sort_by_key(|(i, _)| *i);
    outcomes.into_iter().map(|(_, o)| o).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn job() -> JobSpec {
        JobSpec::try_from_toml(
            r#"
[job]
name = "j"
[params]
ds = { type = "date" }
n = { type = "int" }
region = { type = "string" }
[sources.s]
url = "data"
[query]
sql = "SELECT 1 AS x"
[output]
url = "out"
"#,
            Path::new("/jobs/j.toml"),
        )
        .expect("job")
    }

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ranges_and_lists_expand() {
        let (name, days) = intervals(&job(), &p(&[("ds", "2026-11-29..2026-12-02")])).unwrap();
        assert_eq!(name, "ds");
        assert_eq!(
            days,
            ["2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"]
        );
        let (_, ns) = intervals(&job(), &p(&[("n", "3..5"), ("ds", "2026-11-01")])).unwrap();
        assert_eq!(ns, ["3", "4", "5"]);
        let (_, regions) = intervals(&job(), &p(&[("region", "eu,us")])).unwrap();
        assert_eq!(regions, ["eu", "us"]);
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in [
            p(&[("ds", "2026-11-02..2026-11-01")]),
            p(&[("ds", "2026-11-01")]),
            p(&[("ds", "2026-11-01..2026-11-02"), ("n", "1..2")]),
            p(&[("region", "a..b")]),
            p(&[("nope", "1,2")]),
            p(&[("ds", "2026-11-01..yesterday")]),
        ] {
            assert!(intervals(&job(), &bad).is_err(), "{bad:?}");
        }
    }
}
