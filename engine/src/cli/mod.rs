//! The `scorch` command line: arguments in, one library call, an exit code out.
//!
//! [`args`] parses the command line into the engine's settings; [`mod@print`] writes reports on
//! stdout. This module owns what a scheduler sees: one error line on stderr (or one JSON object
//! on stdout with `--json`), the exit code of the README's table, and, for a bug, one line
//! saying so instead of a panic's backtrace.

pub mod args;
pub mod print;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use scorch_engine::demo::{self, DemoOptions};
use scorch_engine::process::{allocator, shutdown};
use scorch_engine::store::StoreRegistry;
use scorch_engine::store::location::Location;
use scorch_engine::telemetry::metrics::{MetricsSinks, RunOutcome};
use scorch_engine::telemetry::{lineage, report};
use scorch_engine::{Error, ExitCode, JobSpec, RunOptions};

use args::{Cli, Command, LogFormat, ModelCommand};
use print::outln;

/// Where to report bugs.
const ISSUES: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/issues");

/// Set when the command prints JSON on stdout, so that failures do too.
static JSON_OUTPUT: AtomicBool = AtomicBool::new(false);

/// Runs the command line and returns the process's exit code.
pub fn main() -> ProcessExit {
    allocator::settle();
    let cli = Cli::parse();
    install_panic_hook();
    init_logging(cli.log_format, if cli.quiet { "warn" } else { &cli.log });
    JSON_OUTPUT.store(cli.command.prints_json(), Ordering::Relaxed);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ProcessExit::from(ExitCode::Internal.code() as u8);
        }
    };
    let quiet = cli.quiet;
    let outcome = runtime.block_on(async {
        shutdown::install();
        dispatch(cli.command, quiet).await
    });
    // Blocking tasks still running (a model load abandoned by a stop) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => ProcessExit::SUCCESS,
        Err(e) => ProcessExit::from(report_failure(&e) as u8),
    }
}

/// Reports a failed command once: a line on stderr, and with `--json` an object on stdout (the
/// run manifest when a quality gate rejected the run). Returns the exit code.
fn report_failure(e: &Error) -> i32 {
    let code = e.exit_code().code();
    let message = describe(e);
    tracing::error!(exit_code = code, "{message}");
    if JSON_OUTPUT.load(Ordering::Relaxed) {
        match e {
            // The outcomes are already on stdout.
            Error::Backfill { .. } => {}
            Error::QualityGate {
                manifest: Some(manifest),
                ..
            } => print::json(manifest),
            _ => print::json(&serde_json::json!({
                "status": "failed",
                "exit_code": code,
                "error": message,
            })),
        }
    }
    code
}

/// An error and its causes in one line, each cause once: layers of wrapping often repeat the
/// message of what they wrap.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(e);
    while let Some(err) = current {
        let text = tidy(&err.to_string());
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

/// Removes the prefixes that wrapping layers repeat (`Parquet error: Parquet error: …`) and the
/// Debug quoting of SQL parser errors.
fn tidy(text: &str) -> String {
    let mut t = text.trim().to_string();
    for prefix in [
        "Parquet error: ",
        "Arrow error: ",
        "External error: ",
        "Execution error: ",
        "Object Store error: ",
    ] {
        while t.starts_with(prefix) && t[prefix.len()..].starts_with(prefix) {
            t = t[prefix.len()..].to_string();
        }
    }
    t
}

/// One line for a bug, then exit 1; the default report (with backtrace) only when
/// `RUST_BACKTRACE` asks for it.
fn install_panic_hook() {
    static PANICKED: AtomicBool = AtomicBool::new(false);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if PANICKED.swap(true, Ordering::SeqCst) {
            // Another thread is already reporting and exiting.
            loop {
                std::thread::park();
            }
        }
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            default(info);
        }
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".to_string());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = format!("internal error: {payload}{location}");
        let _ = writeln!(
            std::io::stderr(),
            "scorch: {message}. This is a bug in scorch, not in your job or data: please report it at \
             {ISSUES} with the command you ran (RUST_BACKTRACE=1 adds a backtrace)."
        );
        if JSON_OUTPUT.load(Ordering::Relaxed) {
            print::json(&serde_json::json!({
                "status": "failed",
                "exit_code": ExitCode::Internal.code(),
                "error": message,
            }));
        }
        std::process::exit(ExitCode::Internal.code());
    }));
}

fn init_logging(format: LogFormat, filter: &str) {
    // delta-rs narrates its conflict checks at `warn` and `error`; scorch reports what they
    // decide (a conflict is exit 7 with its reason), so they show only when asked for by name.
    let quiet_delta = if filter.contains("deltalake") {
        String::new()
    } else {
        ",deltalake_core::kernel::transaction=off".to_string()
    };
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{filter}{quiet_delta}"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    match format {
        LogFormat::Human => builder.with_ansi(color).compact().init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

impl Command {
    /// Whether the command was asked for JSON on stdout.
    fn prints_json(&self) -> bool {
        match self {
            Command::Run { json, .. }
            | Command::Backfill { json, .. }
            | Command::Compare { json, .. }
            | Command::Explain { json, .. }
            | Command::Validate { json, .. }
            | Command::Log { json, .. }
            | Command::Gc { json, .. }
            | Command::Optimize { json, .. } => *json,
            Command::Model {
                command:
                    ModelCommand::Inspect { json, .. }
                    | ModelCommand::Profile { json, .. }
                    | ModelCommand::Publish { json, .. }
                    | ModelCommand::Promote { json, .. }
                    | ModelCommand::List { json, .. }
                    | ModelCommand::History { json, .. },
            } => *json,
            _ => false,
        }
    }
}

fn open_location(
    output: &str,
) -> Result<(Location, std::sync::Arc<dyn object_store::ObjectStore>), Error> {
    let location = scorch_engine::package::location_arg(output)?;
    let store = StoreRegistry::new().store(&location)?;
    Ok((location, store))
}

/// Runs a job, announcing it to the lineage sink, then hands how it ended to the lineage and
/// metrics sinks (success or failure alike).
async fn run_and_report(
    job: &args::JobArgs,
    quiet: bool,
    skip_unchanged: bool,
    sinks: &MetricsSinks,
    lineage: Option<(&lineage::LineageSink, &str)>,
) -> Result<scorch_engine::run::RunReport, Error> {
    let started = Instant::now();
    let mut labels = None;
    let result = match job.load(quiet) {
        Ok((spec, mut options)) => {
            labels = Some((spec.name.clone(), spec.output.location.to_string()));
            let run_id = uuid::Uuid::now_v7();
            options.run_id = Some(run_id);
            options.skip_unchanged = skip_unchanged;
            let run_id = run_id.to_string();
            if let Some((sink, namespace)) = lineage {
                sink.emit(&lineage::start(
                    namespace,
                    &spec,
                    &run_id,
                    chrono::Utc::now(),
                ))
                .await;
            }
            let result = scorch_engine::run::run(&spec, &options).await;
            if let Some((sink, namespace)) = lineage {
                let failed = result.as_ref().err().map(|e| {
                    let manifest = match e {
                        Error::QualityGate {
                            manifest: Some(m), ..
                        } => Some(m.as_ref()),
                        _ => None,
                    };
                    (manifest, e.exit_code().code(), describe(e))
                });
                let event = lineage::end(
                    namespace,
                    &spec,
                    &run_id,
                    chrono::Utc::now(),
                    result.as_ref().ok(),
                    failed.as_ref().map(|(m, c, d)| (*m, *c, d.as_str())),
                );
                sink.emit(&event).await;
            }
            result
        }
        Err(e) => Err(e),
    };
    if sinks.any() {
        // A job file that did not load: its file name stands in for the job's name.
        let (job_name, output) = labels.unwrap_or_else(|| {
            let stem = job.file().file_stem().map(|s| s.to_string_lossy());
            (stem.unwrap_or_default().into_owned(), String::new())
        });
        let manifest = match &result {
            Ok(report) => Some(&report.manifest),
            Err(Error::QualityGate {
                manifest: Some(m), ..
            }) => Some(m.as_ref()),
            Err(_) => None,
        };
        let outcome = RunOutcome {
            job: sinks.job.as_deref().unwrap_or(&job_name),
            output: &output,
            manifest,
            exit_code: result.as_ref().err().map_or(0, |e| e.exit_code().code()),
            duration: started.elapsed(),
            finished_at: chrono::Utc::now(),
        };
        sinks.emit(&outcome).await;
    }
    result
}

async fn dispatch(command: Command, quiet: bool) -> Result<(), Error> {
    match command {
        Command::Run {
            job,
            json,
            skip_unchanged,
            metrics,
            lineage,
        } => {
            let report = run_and_report(
                &job,
                quiet,
                skip_unchanged,
                &metrics.sinks(),
                lineage.sink(),
            )
            .await?;
            if json {
                print::json(&report.manifest);
            } else {
                print::run(&report);
            }
        }
        Command::Backfill {
            job,
            parallel,
            skip_unchanged,
            json,
        } => {
            let (spec, mut options) = job.load(quiet)?;
            options.skip_unchanged = skip_unchanged;
            let (name, values) = scorch_engine::run::backfill::intervals(&spec, &options.params)?;
            let started = Instant::now();
            let outcomes =
                scorch_engine::run::backfill::backfill(&spec, &options, &name, &values, parallel)
                    .await;
            if json {
                print::json(&outcomes);
            } else {
                print::backfill(&name, &outcomes, started.elapsed());
            }
            if let Some(e) = scorch_engine::run::backfill::failure(&outcomes) {
                return Err(e);
            }
        }
        Command::Compare {
            table,
            other,
            on,
            columns,
            json,
        } => {
            let a = scorch_engine::package::location_arg(&table)?;
            let b = scorch_engine::package::location_arg(&other)?;
            let comparison = scorch_engine::run::compare::compare(&a, &b, &on, &columns).await?;
            if json {
                print::json(&comparison);
            } else {
                print::comparison(&comparison);
            }
        }
        Command::Explain { job, json } => {
            let (spec, options) = job.load(quiet)?;
            let report = scorch_engine::plan::explain(&spec, &options).await?;
            if json {
                print::json(&report);
            } else {
                print::explain(&report);
            }
        }
        Command::Validate { job, json } => {
            let (spec, options) = job.load(quiet)?;
            let report = scorch_engine::plan::validate(&spec, &options).await?;
            if json {
                print::json(&report);
            } else {
                print::validate(&report);
            }
        }
        Command::Demo {
            dir,
            rows,
            days,
            epochs,
            row_group_rows,
            skip_run,
            force,
        } => {
            let options = DemoOptions {
                dir,
                rows,
                days,
                epochs,
                row_group_rows,
                force,
                ..Default::default()
            };
            run_demo(options, skip_run, quiet).await?
        }
        Command::Gc {
            output,
            older_than,
            apply,
            repair,
            json,
        } => {
            let (location, store) = open_location(&output)?;
            let options = scorch_engine::table::GcOptions {
                older_than,
                apply,
                repair,
            };
            let report = scorch_engine::table::gc::gc(&location, store, options).await?;
            if json {
                print::json(&report);
            } else {
                print::gc(&location, &report);
            }
        }
        Command::Optimize {
            output,
            condition,
            target_size,
            json,
        } => {
            let (location, store) = open_location(&output)?;
            let filters = match &condition {
                Some(text) => {
                    scorch_engine::table::delta::parse_filters(text).map_err(|message| {
                        Error::Location {
                            location: text.clone(),
                            message,
                        }
                    })?
                }
                None => Vec::new(),
            };
            let target_size =
                scorch_engine::job::parse_size_text(&target_size).map_err(|message| {
                    Error::Location {
                        location: target_size.clone(),
                        message,
                    }
                })?;
            let table = match scorch_engine::table::target::detect(&location, &store).await? {
                Some(scorch_engine::job::OutputFormat::Delta) => {
                    scorch_engine::table::delta::DeltaTable::open(location, store).await?
                }
                Some(_) => {
                    return Err(Error::Location {
                        location: location.to_string(),
                        message: "optimize compacts Delta tables; this one is a Parquet folder"
                            .into(),
                    });
                }
                None => {
                    return Err(Error::NotATable {
                        location: location.to_string(),
                    });
                }
            };
            let report = table.optimize(&filters, target_size).await?;
            if json {
                print::json(&report);
            } else {
                print::optimize(&report);
            }
        }
        Command::Log { output, json } => {
            let (location, store) = open_location(&output)?;
            let history = scorch_engine::table::target::history(&location, store).await?;
            if json {
                print::json(&history);
            } else {
                print::history(&history);
            }
        }
        Command::Report { output, run, out } => {
            let (location, store) = open_location(&output)?;
            let manifest = report::read_run(&location, &store, run.as_deref()).await?;
            let html = report::render(&manifest, &report::limits_of(&manifest));
            let file = out.unwrap_or_else(|| {
                PathBuf::from(format!("scorch-report-{}.html", manifest.run_id))
            });
            scorch_engine::telemetry::metrics::write_textfile(&file, &html).map_err(|e| {
                Error::Location {
                    location: file.display().to_string(),
                    message: format!("cannot write the report there: {e}"),
                }
            })?;
            outln!(
                "wrote {} (run {} of job {})",
                file.display(),
                manifest.run_id,
                manifest.job
            );
        }
        Command::Model { command } => model_command(command).await?,
        Command::Scheduler {
            bind,
            external_host,
            executor_timeout,
        } => {
            scorch_engine::cluster::run_scheduler(scorch_engine::cluster::SchedulerOptions {
                bind,
                external_host,
                executor_timeout,
            })
            .await?
        }
        Command::Executor {
            scheduler,
            bind,
            grpc_port,
            external_host,
            concurrent_tasks,
            work_dir,
            heartbeat,
        } => {
            scorch_engine::cluster::run_executor(scorch_engine::cluster::ExecutorOptions {
                scheduler,
                bind,
                grpc_port,
                external_host,
                concurrent_tasks: concurrent_tasks
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                work_dir,
                heartbeat,
            })
            .await?
        }
    }
    Ok(())
}

async fn model_command(command: ModelCommand) -> Result<(), Error> {
    use scorch_engine::package;
    match command {
        ModelCommand::Hash { package } => {
            let (_, p) = package::open(&package).await?;
            outln!("{}", p.sha256);
        }
        ModelCommand::Init {
            artifact,
            out,
            name,
            version,
        } => {
            let (manifest, p) = package::init(&artifact, out, name, version)?;
            outln!(
                "wrote {} ({} inputs, {} outputs); review the names and input ranges, then pin it:",
                manifest.display(),
                p.manifest.inputs.len(),
                p.manifest.outputs.len()
            );
            outln!("sha256 = \"{}\"", p.sha256);
        }
        ModelCommand::Inspect { package, json } => {
            let (_, p) = package::open(&package).await?;
            if json {
                print::json(&package::Card::of(&p));
            } else {
                print::card(&p);
            }
        }
        ModelCommand::Profile {
            package,
            data,
            filter,
            bins,
            json,
        } => {
            let report = package::profile(&package, &data, filter.as_deref(), bins).await?;
            if json {
                print::json(&report);
            } else {
                outln!(
                    "profiled {} rows: {} inputs, {} outputs; wrote {}",
                    report.rows,
                    report.features,
                    report.outputs,
                    report.file
                );
                outln!("the package's hash changed; pin it:");
                outln!("sha256 = \"{}\"", report.sha256);
            }
        }
        ModelCommand::Publish {
            package,
            registry,
            json,
        } => {
            let published = package::publish(&package, &registry).await?;
            if json {
                print::json(&published);
            } else if published.created {
                outln!(
                    "published {} {} (sha256 {}) to {}",
                    published.record.name,
                    published.record.version,
                    published.record.sha256,
                    published.location
                );
            } else {
                outln!(
                    "{} {} is already published with these bytes (sha256 {}); nothing to do",
                    published.record.name,
                    published.record.version,
                    published.record.sha256
                );
            }
        }
        ModelCommand::Promote {
            model,
            alias,
            registry,
            json,
        } => {
            let Some((name, version)) = model.split_once('@') else {
                return Err(Error::Registry {
                    registry,
                    message: format!("`{model}` is not NAME@VERSION (churn@2.1.0)"),
                });
            };
            let record = package::registry(&registry)?
                .promote(name, version, &alias)
                .await?;
            if json {
                print::json(&record);
            } else {
                outln!(
                    "{}@{} now names version {} (sha256 {}; move {} of this alias)",
                    record.name,
                    record.alias,
                    record.version,
                    record.sha256,
                    record.seq
                );
            }
        }
        ModelCommand::List { registry, json } => {
            let models = package::registry(&registry)?.models().await?;
            if json {
                print::json(&models);
            } else {
                print::registry_models(&models);
            }
        }
        ModelCommand::History {
            name,
            registry,
            json,
        } => {
            let events = package::registry(&registry)?.history(&name).await?;
            if json {
                print::json(&events);
            } else {
                print::registry_history(&events);
            }
        }
        ModelCommand::Verify { package, sha256 } => {
            let p = package::verify(&package, sha256.as_deref()).await?;
            outln!(
                "{} v{} ({}): sha256 {}{}; the model loads and matches its manifest",
                p.manifest.name,
                p.manifest.version,
                p.manifest.format,
                p.sha256,
                if sha256.is_some() { " matches" } else { "" }
            );
        }
    }
    Ok(())
}

async fn run_demo(options: DemoOptions, skip_run: bool, quiet: bool) -> Result<(), Error> {
    outln!(
        "scorch demo: {} customer rows over {} daily partitions in {}",
        options.rows,
        options.days,
        options.dir.display()
    );
    let setup = tokio::task::spawn_blocking(move || demo::setup(&options))
        .await
        .map_err(|e| Error::Training(format!("the demo's setup task failed: {e}")))??;
    outln!(
        "  data: generated and written in {:.1} s ({} .. {})",
        setup.generate_seconds,
        setup.days.first().map(String::as_str).unwrap_or(""),
        setup.days.last().map(String::as_str).unwrap_or("")
    );
    outln!(
        "  model: MLP 12-32-16-1 trained on {} rows in {:.1} s; holdout ({} rows): AUC {:.4}, accuracy {:.4}",
        setup.train_rows,
        setup.train_seconds,
        setup.holdout_rows,
        setup.holdout_auc,
        setup.holdout_accuracy
    );
    outln!("  model sha256: {}", setup.model_sha256);
    outln!("  job: {}", setup.job_file.display());
    let ds = setup
        .days
        .last()
        .cloned()
        .unwrap_or_else(|| demo::LAST_DAY.to_string());
    if skip_run {
        outln!(
            "run it with: scorch run {} --param ds={ds}",
            setup.job_file.display()
        );
        return Ok(());
    }
    let job = JobSpec::try_from_file(&setup.job_file)?;
    let options = RunOptions {
        params: vec![("ds".into(), ds.clone())],
        progress: !quiet,
        ..Default::default()
    };
    outln!("\nscorch run {} --param ds={ds}", setup.job_file.display());
    let report = scorch_engine::run::run(&job, &options).await?;
    print::run(&report);
    outln!(
        "\nnext: scorch explain {} --param ds={ds}   (plan and pruning)\n      scorch log {}   (commit history)",
        setup.job_file.display(),
        report.manifest.output.url
    );
    Ok(())
}
