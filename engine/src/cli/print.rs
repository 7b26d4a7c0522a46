//! What the command line prints on stdout: reports for people, or JSON. Writing survives a
//! closed pipe (`scorch log | head`): the rest of the output is dropped and the command's own
//! outcome decides the exit code.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use scorch_engine::plan::{ExplainReport, ValidateReport};
use scorch_engine::run::RunReport;
use scorch_engine::run::manifest::RunStatus;
use scorch_engine::store::location::Location;
use scorch_engine::table::delta::OptimizeReport;
use scorch_engine::table::gc::GcReport;
use scorch_engine::table::target::History;

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes one line to stdout; once stdout is gone, writes nothing more.
pub fn line(args: fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            tracing::warn!(error = %e, "cannot write to stdout; the rest of the output is dropped");
        }
    }
}

/// `println!` that survives a closed stdout.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::print::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Prints a value as pretty JSON.
pub fn json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(e) => tracing::error!(error = %e, "cannot serialise the report"),
    }
}

/// `1536` as `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// The summary of a committed run.
pub fn run(report: &RunReport) {
    let m = &report.manifest;
    if let Some(v) = report.recovered {
        outln!("recovered: finished publishing version {v}, left behind by an interrupted run");
    }
    if m.status == RunStatus::SkippedUnchanged {
        outln!(
            "unchanged: job {} read the same input files with the same models and query as run {} (version {}); nothing written",
            m.job,
            m.unchanged_since.as_deref().unwrap_or("?"),
            m.output.version.unwrap_or(0)
        );
        return;
    }
    if m.status == RunStatus::AlreadyCommitted {
        let params: Vec<String> = m.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        outln!(
            "already committed: job {} with {} was appended by an earlier run; nothing written (table at version {})",
            m.job,
            if params.is_empty() {
                "no parameters".to_string()
            } else {
                params.join(", ")
            },
            m.output.version.unwrap_or(0)
        );
        return;
    }
    outln!(
        "run {} of job {} committed version {}",
        m.run_id,
        m.job,
        m.output.version.unwrap_or(0)
    );
    outln!(
        "  rows: {} read, {} written, {} unscored",
        m.rows.read,
        m.rows.written,
        m.rows.unscored,
    );
    for line in unscored_reasons(&m.rows.models) {
        outln!("    {line}");
    }
    match &m.cluster {
        None => outln!(
            "  input: {} of {} files after partition pruning; row groups: {} read, {} pruned by statistics; {} scanned",
            m.inputs.len(),
            m.source_files_total,
            m.scan.row_groups_matched,
            m.scan.row_groups_pruned,
            human_bytes(m.scan.bytes_scanned)
        ),
        Some(url) => outln!(
            "  input: {} of {} files after partition pruning; scanned on the cluster at {url}",
            m.inputs.len(),
            m.source_files_total
        ),
    }
    outln!(
        "  speed: {:.0} rows/s scoring ({} ms execute, {} ms total)",
        report.rows_per_second,
        m.timings.execute_ms,
        m.timings.total_ms
    );
    outln!(
        "  output: {} ({} files, {}, partitions: {})",
        m.output.url,
        m.output.files,
        human_bytes(m.output.bytes),
        m.output.partitions.join(", ")
    );
    if let Some(shadow) = &m.shadow {
        outln!(
            "  shadow: {} (sha256 {}) beside {}: {} rows in {}{}",
            shadow.model,
            &shadow.sha256[..12.min(shadow.sha256.len())],
            shadow.replaces,
            shadow.rows,
            shadow.url,
            shadow
                .version
                .map_or(" (not committed)".to_string(), |v| format!(
                    " (version {v})"
                ))
        );
        for (column, g) in &shadow.agreement {
            outln!("    {column}: {}", agreement_line(g));
        }
    }
    if let Some(rejects) = &m.rejects {
        match rejects.version {
            Some(version) => outln!(
                "  rejects: {} rows kept in {} (version {version})",
                rejects.rows,
                rejects.url
            ),
            None => outln!(
                "  rejects: {} rows written to {}, not yet committed: the next run commits them",
                rejects.rows,
                rejects.url
            ),
        }
    }
    for model in &m.models {
        let via = match &model.registry {
            Some(r) => match &r.alias {
                Some(alias) => format!(" ({}@{alias} in {})", r.name, r.registry),
                None => format!(" ({}@{} in {})", r.name, r.version, r.registry),
            },
            None => String::new(),
        };
        outln!(
            "  model: {} v{} sha256 {}{via}",
            model.name,
            model.version,
            model.sha256
        );
    }
    outln!("  data sha256: {}", m.data_sha256);
}

/// What `explain` found.
pub fn explain(report: &ExplainReport) {
    outln!("physical plan:\n{}", report.physical_plan);
    if !report.params.is_empty() {
        let params: Vec<String> = report
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        outln!("parameters: {}", params.join(", "));
    }
    outln!(
        "models: {}",
        if report.models.is_empty() {
            "none".to_string()
        } else {
            report.models.join(", ")
        }
    );
    for s in &report.scans {
        outln!("source {}:", s.source);
        outln!(
            "  files:      {} of {} scanned, {} pruned by partition",
            s.files_scanned,
            s.files_total,
            s.files_total - s.files_scanned
        );
        outln!(
            "  row groups: {} of {} scanned, {} pruned by statistics",
            s.row_groups_scanned,
            s.row_groups_in_scanned_files,
            s.row_groups_in_scanned_files - s.row_groups_scanned
        );
        outln!(
            "  rows:       {} of {} in scanned files",
            s.rows_scanned,
            s.rows_in_scanned_files
        );
        outln!(
            "  columns:    {} of {} read",
            s.columns_read,
            s.columns_total
        );
        outln!(
            "  bytes:      {} of {} ({:.2}%) to fetch, before page-index pruning",
            human_bytes(s.bytes_scanned),
            human_bytes(s.bytes_total),
            100.0 * s.bytes_scanned as f64 / s.bytes_total.max(1) as f64
        );
    }
    outln!("data sha256: {}", report.data_sha256);
    for w in &report.warnings {
        outln!("warning: {w}");
    }
}

/// What `validate` checked.
pub fn validate(report: &ValidateReport) {
    outln!("job {} is valid", report.job);
    if !report.unbound_params.is_empty() {
        outln!(
            "  parameters without a value, planned as NULL: {} (pass --param to check pruning and the input files too)",
            report.unbound_params.join(", ")
        );
    }
    for m in &report.models {
        outln!(
            "  model {} v{} ({}) sha256 {} verified",
            m.name,
            m.version,
            m.format,
            m.sha256
        );
    }
    for (name, cols) in &report.sources {
        outln!("  source {name}: {}", cols.join(", "));
    }
    let cols: Vec<String> = report
        .output_columns
        .iter()
        .map(|(n, t)| format!("{n} {t}"))
        .collect();
    outln!("  output: {}", cols.join(", "));
    for w in &report.warnings {
        outln!("warning: {w}");
    }
}

/// A table's history.
pub fn history(history: &History) {
    match history {
        History::Parquet(h) => {
            outln!("table {} (parquet)", h.table);
            outln!(
                "published version: {}",
                h.published_version.map_or(
                    "none (a publish is in progress or was interrupted)".to_string(),
                    |v| v.to_string()
                )
            );
            for c in &h.commits {
                let rows: u64 = c.add.iter().map(|a| a.file.rows).sum();
                outln!(
                    "  v{:<4} {}  {:<9} run {}  +{} files ({} rows) -{} files  partitions: {}",
                    c.version,
                    c.committed_at.format("%Y-%m-%d %H:%M:%S"),
                    c.mode.to_string(),
                    c.run_id,
                    c.add.len(),
                    rows,
                    c.remove.len(),
                    c.partitions.join(", ")
                );
            }
        }
        History::Delta { table, versions } => {
            outln!("table {table} (delta)");
            for v in versions {
                let run = v
                    .scorch
                    .get(scorch_engine::table::delta::RUN_ID_KEY)
                    .and_then(|r| r.as_str())
                    .map(|r| format!("  run {r}"))
                    .unwrap_or_default();
                outln!(
                    "  v{:<4} {}  {:<12}{run}  +{} files ({} rows) -{} files",
                    v.version,
                    v.timestamp
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|| "-".into()),
                    v.operation.as_deref().unwrap_or("-"),
                    v.files_added,
                    v.rows_added,
                    v.files_removed,
                );
            }
        }
    }
}

/// A model card.
pub fn card(p: &scorch_udfs::ModelPackage) {
    let m = &p.manifest;
    outln!("{} v{}  ({})", m.name, m.version, m.format);
    if let Some(d) = &m.description {
        outln!("  {d}");
    }
    outln!("  location: {}", p.uri);
    outln!("  sha256:   {}", p.sha256);
    outln!(
        "  size:     {} in {} files",
        human_bytes(p.size_bytes()),
        p.files.len()
    );
    outln!("  inputs ({}):", m.inputs.len());
    for i in &m.inputs {
        let range = match (i.min, i.max) {
            (None, None) => String::new(),
            (min, max) => format!(
                "  in [{}, {}]",
                min.map_or("-inf".to_string(), |v| v.to_string()),
                max.map_or("inf".to_string(), |v| v.to_string())
            ),
        };
        outln!("    {:<28} {}{range}", i.name, i.dtype);
    }
    outln!("  outputs ({}):", m.outputs.len());
    for o in &m.outputs {
        let shape = o.size.map(|s| format!("[{s}]")).unwrap_or_default();
        let source = o
            .source
            .as_deref()
            .map(|s| format!("  from {s}"))
            .unwrap_or_default();
        let index = o.index.map(|i| format!("[{i}]")).unwrap_or_default();
        outln!("    {:<28} {}{shape}{source}{index}", o.name, o.dtype);
    }
    match &p.profile {
        None => outln!("  profile:  none (scorch model profile adds one, for drift checks)"),
        Some(profile) => {
            outln!(
                "  profile:  {} rows of {} ({}); {} inputs, {} outputs",
                profile.rows,
                profile.source,
                profile.created_at,
                profile.features.len(),
                profile.outputs.len()
            );
            for (name, d) in profile.features.iter().chain(&profile.outputs) {
                outln!("    {:<28} {}", name, describe_distribution(d));
            }
        }
    }
}

/// A distribution in one line: its bins' shares (or its top categories), and the missing share.
fn describe_distribution(d: &scorch_udfs::profile::Distribution) -> String {
    use scorch_udfs::profile::Distribution;
    let percent = |p: &f64| format!("{:.0}%", p * 100.0);
    match d {
        Distribution::Numeric {
            edges, proportions, ..
        } => {
            let (values, missing) = proportions.split_at(proportions.len().saturating_sub(1));
            format!(
                "{} bins cut at [{}]; shares {}; missing {}",
                values.len(),
                edges
                    .iter()
                    .map(|e| format!("{e:.4}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                values.iter().map(percent).collect::<Vec<_>>().join(" "),
                missing.first().map_or("0%".into(), percent)
            )
        }
        Distribution::Categorical {
            categories,
            proportions,
        } => {
            let top: Vec<String> = categories
                .iter()
                .zip(proportions)
                .take(5)
                .map(|(c, p)| format!("{c} {}", percent(p)))
                .collect();
            format!(
                "{} categories: {}{}; missing {}",
                categories.len(),
                top.join(", "),
                if categories.len() > 5 { ", …" } else { "" },
                proportions.last().map_or("0%".into(), percent)
            )
        }
    }
}

/// What `scorch gc` did, or (a dry run) would do.
pub fn gc(table: &Location, r: &GcReport) {
    let (verb, will) = if r.applied {
        ("removed", "")
    } else {
        ("to remove", " (dry run: add --apply to delete)")
    };
    outln!("table {table} ({}){will}", r.format);
    if let Some(v) = r.rolled_forward {
        outln!("  published version {v}, which an interrupted run had committed");
    }
    outln!(
        "  files replaced before the window: {} {verb}, {} kept",
        r.replaced_files_removed.len(),
        r.replaced_files_kept.len()
    );
    outln!(
        "  runs that died before committing: {} {verb} ({} objects), {} younger runs left alone",
        r.dead_runs_removed.len(),
        r.dead_run_objects,
        r.runs_kept.len()
    );
    if !r.unknown_files_kept.is_empty() {
        outln!(
            "  files scorch did not write, kept: {}",
            r.unknown_files_kept.len()
        );
    }
    if !r.lost_files_dropped.is_empty() {
        outln!(
            "  lost files dropped from the table: {}",
            r.lost_files_dropped.join(", ")
        );
    }
}

/// What `scorch optimize` compacted.
pub fn optimize(r: &OptimizeReport) {
    match r.version {
        Some(v) if r.files_removed > 0 => outln!(
            "compacted {} files into {} in {} partitions: version {v}",
            r.files_removed,
            r.files_added,
            r.partitions_optimized
        ),
        _ => outln!("nothing to compact"),
    }
}

/// The top reasons each model left rows unscored, a line per model, e.g. `churn: 100 null, 53
/// nan; first failing input: 100 days_since_login, 53 monthly_charges` (at most three of each).
pub fn unscored_reasons(models: &scorch_udfs::unscored::Counts) -> Vec<String> {
    let top = |counts: Vec<(String, u64)>| {
        let mut counts = counts;
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let more = counts.len().saturating_sub(3);
        let mut parts: Vec<String> = counts
            .into_iter()
            .take(3)
            .map(|(name, n)| format!("{n} {name}"))
            .collect();
        if more > 0 {
            parts.push(format!("{more} more"));
        }
        parts.join(", ")
    };
    models
        .iter()
        .filter(|(_, c)| c.unscored > 0)
        .map(|(model, c)| {
            let reasons = top(c.reasons.iter().map(|(r, n)| (r.to_string(), *n)).collect());
            let inputs = top(c.inputs.iter().map(|(i, n)| (i.clone(), *n)).collect());
            if inputs.is_empty() {
                format!("{model}: {reasons}")
            } else {
                format!("{model}: {reasons}; first failing input: {inputs}")
            }
        })
        .collect()
}

/// `scorch model list`: each model with its versions and aliases.
pub fn registry_models(models: &[scorch_engine::registry::ModelEntry]) {
    if models.is_empty() {
        outln!("no models published");
    }
    for m in models {
        let versions: Vec<&str> = m.versions.iter().map(|v| v.version.as_str()).collect();
        outln!("{}: versions {}", m.name, versions.join(", "));
        for (alias, record) in &m.aliases {
            outln!(
                "  {alias} -> {} (sha256 {}, since {})",
                record.version,
                &record.sha256[..12.min(record.sha256.len())],
                record.promoted_at.format("%Y-%m-%d %H:%M:%S")
            );
        }
    }
}

/// `scorch model history`: publishes and alias moves, oldest first.
pub fn registry_history(events: &[scorch_engine::registry::HistoryEvent]) {
    use scorch_engine::registry::HistoryEvent;
    for e in events {
        match e {
            HistoryEvent::Published(r) => outln!(
                "{}  published {} (sha256 {})",
                r.published_at.format("%Y-%m-%d %H:%M:%S"),
                r.version,
                r.sha256
            ),
            HistoryEvent::Promoted(r) => outln!(
                "{}  {} -> {} (move {})",
                r.promoted_at.format("%Y-%m-%d %H:%M:%S"),
                r.alias,
                r.version,
                r.seq
            ),
        }
    }
}

/// `scorch backfill`: one line per interval, then the totals.
pub fn backfill(
    name: &str,
    outcomes: &[scorch_engine::run::backfill::IntervalOutcome],
    took: std::time::Duration,
) {
    outln!(
        "{name:<12} {:<17} {:>4} {:>8} {:>12} {:>8}",
        "status",
        "exit",
        "version",
        "rows",
        "seconds"
    );
    for o in outcomes {
        outln!(
            "{:<12} {:<17} {:>4} {:>8} {:>12} {:>8.2}",
            o.interval,
            o.status,
            o.exit_code,
            o.version.map_or("-".to_string(), |v| v.to_string()),
            scorch_engine::run::progress::thousands(o.rows),
            o.seconds
        );
        if let Some(error) = &o.error {
            outln!("             {error}");
        }
    }
    let count = |s: &str| outcomes.iter().filter(|o| o.status == s).count();
    outln!(
        "{} intervals in {:.1} s: {} scored, {} skipped as unchanged, {} already committed, {} rejected by checks, {} failed, {} not started",
        outcomes.len(),
        took.as_secs_f64(),
        count("scored"),
        count("skipped"),
        count("already_committed"),
        count("rejected"),
        count("failed"),
        count("not_started")
    );
}

/// One line of agreement figures.
fn agreement_line(g: &scorch_engine::run::agreement::Agreement) -> String {
    let opt =
        |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    format!(
        "agreement {:.4}, mean |diff| {}, max |diff| {}, rank correlation {}, PSI {}, label flips {:.2}%{}",
        g.agreement,
        opt(g.mean_abs_diff, 6),
        opt(g.max_abs_diff, 6),
        opt(g.rank_correlation, 4),
        opt(g.psi, 4),
        g.label_flip_share * 100.0,
        if g.one_null > 0 {
            format!(", {} rows scored by one model only", g.one_null)
        } else {
            String::new()
        }
    )
}

/// `scorch compare`.
pub fn comparison(c: &scorch_engine::run::compare::Comparison) {
    outln!(
        "{} vs {} (rows matched on {})",
        c.table,
        c.other,
        c.on.join(", ")
    );
    for (column, g) in &c.columns {
        outln!("  {column}: {} rows; {}", g.rows, agreement_line(g));
    }
    if c.unmatched > 0 {
        outln!(
            "  {} rows of the first table have no match in the second",
            c.unmatched
        );
    }
}
