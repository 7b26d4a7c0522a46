//! The `scorch` command line: parses arguments, calls the engine, maps errors to exit codes.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use scorch_engine::demo::{self, DemoOptions};
use scorch_engine::job::parse_param_arg;
use scorch_engine::location::Location;
use scorch_engine::registry::StoreRegistry;
use scorch_engine::run::{ExplainReport, RunReport, ValidateReport};
use scorch_engine::table::Table;
use scorch_engine::{Error, ExitCode, JobSpec, RunOptions};
use scorch_udfs::DeviceSpec;

/// Batch scoring: read a feature table, score every row with a versioned model, commit a
/// prediction table atomically.
#[derive(Debug, Parser)]
#[command(name = "scorch", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    /// Log format on stderr: `human` for people, `json` (one object per line) for schedulers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "SCORCH_LOG_FORMAT")]
    log_format: LogFormat,

    /// Log filter, e.g. `info`, `debug`, `scorch_engine=debug` (RUST_LOG syntax).
    #[arg(long, global = true, default_value = "info", env = "SCORCH_LOG")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success; 1 internal error; 2 usage, job file, parameter or SQL error; \
3 input data or contract error; 4 quality gate failed (nothing published); 5 storage or cluster error; \
6 model package error (missing, refused, hash mismatch); 7 commit conflict (another run committed first); \
130/143 stopped by SIGINT/SIGTERM before the commit point (nothing published).";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a job: score, check, commit, publish.
    Run {
        #[command(flatten)]
        job: JobArgs,
        /// Print the run manifest as JSON on stdout instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Show the plan and what a run would read (files, row groups, bytes) against what it prunes.
    Explain {
        #[command(flatten)]
        job: JobArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a job without scoring: job file, parameters, sources against the query and the
    /// models' inputs, model hashes and weights.
    Validate {
        #[command(flatten)]
        job: JobArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate demo data, train a model, write a job and run it, all on the local disk.
    Demo {
        /// Folder to write the demo into.
        #[arg(long, default_value = "scorch-demo")]
        dir: PathBuf,
        /// Rows of synthetic customer features, over all days.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Daily partitions.
        #[arg(long, default_value_t = 7)]
        days: usize,
        /// Training epochs.
        #[arg(long, default_value_t = 4)]
        epochs: usize,
        /// Rows per Parquet row group of the generated data.
        #[arg(long, default_value_t = 32_768)]
        row_group_rows: usize,
        /// Write data, model and job, but do not run the job.
        #[arg(long)]
        skip_run: bool,
    },
    /// Finish an interrupted publish, then delete staging files and unreferenced data files
    /// older than a limit. Never touches committed data.
    Gc {
        /// The output table (URL or path).
        output: String,
        /// Age below which staging files are kept (they may belong to a running job): `30m`, `24h`, `7d`.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        older_than: Duration,
    },
    /// Show an output table's commit log.
    Log {
        /// The output table (URL or path).
        output: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Model package tools.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Start a Ballista scheduler with scorch's functions (cluster mode).
    Scheduler {
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:50050")]
        bind: SocketAddr,
        /// Host name executors and clients use to reach this scheduler.
        #[arg(long, default_value = "localhost")]
        external_host: String,
        /// Declare an executor lost (and re-run its work elsewhere) after this long without a
        /// heartbeat: `30s`, `3m`.
        #[arg(long, default_value = "180s", value_parser = parse_duration)]
        executor_timeout: Duration,
    },
    /// Start a Ballista executor with scorch's functions (cluster mode).
    Executor {
        /// The scheduler, `host:port`.
        #[arg(long)]
        scheduler: String,
        /// Address of the executor's data (Arrow Flight) service.
        #[arg(long, default_value = "0.0.0.0:50051")]
        bind: SocketAddr,
        /// Port of the executor's task service.
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Host name the scheduler and other executors use to reach this one (default: the
        /// address the scheduler sees).
        #[arg(long)]
        external_host: Option<String>,
        /// Tasks run at once (default: the number of cores).
        #[arg(long)]
        concurrent_tasks: Option<usize>,
        /// Folder for shuffle files.
        #[arg(long, default_value = "/tmp/scorch-executor")]
        work_dir: String,
        /// Heartbeat interval: `2s`, `1m`.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        heartbeat: Duration,
    },
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Print a package's SHA-256 (what a job pins in `[models.<name>] sha256`).
    Hash {
        /// Package folder (URL or path).
        package: String,
    },
    /// Make a package from an exported model: an .onnx file, an XGBoost .json, a LightGBM .txt,
    /// or a sentence-transformers folder. Inputs and outputs are read from the artifact.
    Init {
        /// The exported model.
        artifact: PathBuf,
        /// Package folder to create (default: the artifact's name without extension).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Model name (default: the package folder's name).
        #[arg(long)]
        name: Option<String>,
        /// Semantic version.
        #[arg(long, default_value = "1.0.0")]
        version: semver::Version,
    },
    /// Print a package's model card: name, version, format, hash, inputs, outputs, size.
    Inspect {
        /// Package folder (URL or path).
        package: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a package: its hash (against `--sha256` when given) and that its runtime loads.
    Verify {
        /// Package folder (URL or path).
        package: String,
        /// The hash it must have.
        #[arg(long)]
        sha256: Option<String>,
    },
}

#[derive(Debug, Args)]
struct JobArgs {
    /// The job file.
    job: PathBuf,
    /// Set a job parameter: `--param ds=2026-11-27` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = param_arg)]
    params: Vec<(String, String)>,
    /// Partitions scored at once (default: the job's, else the number of cores).
    #[arg(long)]
    target_partitions: Option<usize>,
    /// Rows per batch handed to a model (default: the job's, else 8192).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Where models run: `auto`, `cpu` or `cuda:N`.
    #[arg(long, value_parser = device_arg)]
    device: Option<DeviceSpec>,
    /// Run on a Ballista cluster (`df://host:port`) instead of in-process (default: the job's
    /// `[execution] cluster`).
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
}

impl JobArgs {
    fn load(&self) -> Result<(JobSpec, RunOptions), Error> {
        let job = JobSpec::try_from_file(&self.job)?;
        let options = RunOptions {
            params: self.params.clone(),
            target_partitions: self.target_partitions,
            batch_size: self.batch_size,
            device: self.device,
            progress: true,
            cluster: self.cluster.clone(),
        };
        Ok((job, options))
    }
}

fn param_arg(s: &str) -> Result<(String, String), String> {
    parse_param_arg(s).map_err(|e| e.to_string())
}

fn device_arg(s: &str) -> Result<DeviceSpec, String> {
    s.parse().map_err(|e: scorch_udfs::Error| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    scorch_engine::registry::parse_duration(s)
}

fn main() -> ProcessExit {
    scorch_engine::allocator::settle();
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log);
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
    let outcome = runtime.block_on(async {
        scorch_engine::shutdown::install();
        dispatch(cli.command).await
    });
    match outcome {
        Ok(()) => ProcessExit::SUCCESS,
        Err(e) => {
            let code = match e.downcast_ref::<Error>() {
                Some(engine) => engine.exit_code(),
                None => ExitCode::Internal,
            };
            tracing::error!(exit_code = code.code(), "{}", chain(&e));
            ProcessExit::from(code.code() as u8)
        }
    }
}

fn chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .compact()
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { job, json } => {
            let (spec, options) = job.load()?;
            let report = scorch_engine::run::run(&spec, &options).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.manifest)?);
            } else {
                print_run(&report);
            }
        }
        Command::Explain { job, json } => {
            let (spec, options) = job.load()?;
            let report = scorch_engine::run::explain(&spec, &options).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_explain(&report);
            }
        }
        Command::Validate { job, json } => {
            let (spec, options) = job.load()?;
            let report = scorch_engine::run::validate(&spec, &options).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_validate(&report);
            }
        }
        Command::Demo {
            dir,
            rows,
            days,
            epochs,
            row_group_rows,
            skip_run,
        } => {
            let options = DemoOptions {
                dir,
                rows,
                days,
                epochs,
                row_group_rows,
                ..Default::default()
            };
            run_demo(options, skip_run).await?
        }
        Command::Gc { output, older_than } => {
            let table = open_table(&output)?;
            let report = table.gc(older_than).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Log { output, json } => {
            let table = open_table(&output)?;
            print_log(&table, json).await?;
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

async fn fetch_package(
    package: &str,
) -> anyhow::Result<(scorch_udfs::ModelLoader, scorch_udfs::ModelPackage)> {
    let cwd = std::env::current_dir().context("current directory")?;
    let location = Location::parse_dir(package, &cwd).map_err(|message| Error::Location {
        location: package.to_string(),
        message,
    })?;
    let stores = std::sync::Arc::new(StoreRegistry::new());
    let loader = scorch_udfs::ModelLoader::try_new(stores, DeviceSpec::Cpu).map_err(Error::from)?;
    let p = loader
        .fetch(location.url().as_str())
        .await
        .map_err(Error::from)?;
    Ok((loader, p))
}

async fn model_command(command: ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::Hash { package } => {
            let (_, p) = fetch_package(&package).await?;
            println!("{}", p.sha256);
        }
        ModelCommand::Init {
            artifact,
            out,
            name,
            version,
        } => {
            let out = out.unwrap_or_else(|| {
                let stem = artifact
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_else(|| "model".into());
                artifact.with_file_name(format!("{stem}-package"))
            });
            let name = name.unwrap_or_else(|| {
                out.file_name()
                    .map(|n| {
                        n.to_string_lossy()
                            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_")
                    })
                    .unwrap_or_else(|| "model".into())
            });
            let inferred =
                scorch_udfs::init::infer(&artifact, &name, version).map_err(Error::from)?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            for (relative, source) in &inferred.files {
                let target = out.join(relative);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                std::fs::copy(source, &target).with_context(|| {
                    format!("copying {} to {}", source.display(), target.display())
                })?;
            }
            let manifest_path = out.join(scorch_udfs::package::MANIFEST_FILE);
            std::fs::write(&manifest_path, inferred.manifest.to_toml())
                .with_context(|| format!("writing {}", manifest_path.display()))?;
            let files = scorch_udfs::package::read_local_dir(&out).map_err(Error::from)?;
            let package =
                scorch_udfs::ModelPackage::try_from_files(&out.display().to_string(), files)
                    .map_err(Error::from)?;
            scorch_udfs::runtime::try_load(&name, &package, &candle_core::Device::Cpu)
                .map_err(Error::from)?;
            println!(
                "wrote {} ({} inputs, {} outputs); review the names and input ranges, then pin it:",
                manifest_path.display(),
                package.manifest.inputs.len(),
                package.manifest.outputs.len()
            );
            println!("sha256 = \"{}\"", package.sha256);
        }
        ModelCommand::Inspect { package, json } => {
            let (_, p) = fetch_package(&package).await?;
            if json {
                #[derive(serde::Serialize)]
                struct Card<'a> {
                    uri: &'a str,
                    sha256: &'a str,
                    size_bytes: u64,
                    files: Vec<(&'a String, usize)>,
                    manifest: &'a scorch_udfs::ModelManifest,
                }
                let card = Card {
                    uri: &p.uri,
                    sha256: &p.sha256,
                    size_bytes: p.size_bytes(),
                    files: p.files.iter().map(|(k, v)| (k, v.len())).collect(),
                    manifest: &p.manifest,
                };
                println!("{}", serde_json::to_string_pretty(&card)?);
            } else {
                print_card(&p);
            }
        }
        ModelCommand::Verify { package, sha256 } => {
            let (loader, p) = fetch_package(&package).await?;
            if let Some(expected) = &sha256 {
                p.verify(&p.manifest.name, expected).map_err(Error::from)?;
            }
            loader
                .load_package(&p.manifest.name, &p)
                .await
                .map_err(Error::from)?;
            println!(
                "{} v{} ({}): sha256 {}{}; the model loads",
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

fn print_card(p: &scorch_udfs::ModelPackage) {
    let m = &p.manifest;
    println!("{} v{}  ({})", m.name, m.version, m.format);
    if let Some(d) = &m.description {
        println!("  {d}");
    }
    println!("  location: {}", p.uri);
    println!("  sha256:   {}", p.sha256);
    println!(
        "  size:     {} in {} files",
        human_bytes(p.size_bytes()),
        p.files.len()
    );
    println!("  inputs ({}):", m.inputs.len());
    for i in &m.inputs {
        let range = match (i.min, i.max) {
            (None, None) => String::new(),
            (min, max) => format!(
                "  in [{}, {}]",
                min.map_or("-inf".to_string(), |v| v.to_string()),
                max.map_or("inf".to_string(), |v| v.to_string())
            ),
        };
        println!("    {:<28} {}{range}", i.name, i.dtype);
    }
    println!("  outputs ({}):", m.outputs.len());
    for o in &m.outputs {
        let shape = o.size.map(|s| format!("[{s}]")).unwrap_or_default();
        let source = o
            .source
            .as_deref()
            .map(|s| format!("  from {s}"))
            .unwrap_or_default();
        let index = o.index.map(|i| format!("[{i}]")).unwrap_or_default();
        println!("    {:<28} {}{shape}{source}{index}", o.name, o.dtype);
    }
    println!("  baseline statistics: none");
}

fn open_table(output: &str) -> Result<Table, Error> {
    let cwd = std::env::current_dir().map_err(|source| Error::Io {
        path: ".".into(),
        source,
    })?;
    let location = Location::parse_dir(output, &cwd).map_err(|message| Error::Location {
        location: output.to_string(),
        message,
    })?;
    let store = StoreRegistry::new().store(&location)?;
    Ok(Table::new(location, store))
}

async fn print_log(table: &Table, json: bool) -> anyhow::Result<()> {
    let latest = table.latest_version().await?.unwrap_or(0);
    let published = table.success_marker().await?.map(|m| m.version);
    let mut commits = Vec::new();
    for v in 1..=latest {
        commits.push(table.read_commit(v).await?);
    }
    if json {
        #[derive(serde::Serialize)]
        struct Log<'a> {
            published_version: Option<u64>,
            commits: &'a [scorch_engine::table::Commit],
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&Log {
                published_version: published,
                commits: &commits,
            })?
        );
        return Ok(());
    }
    println!("table {}", table.location());
    println!(
        "published version: {}",
        published.map_or("none".to_string(), |v| v.to_string())
    );
    for c in &commits {
        let rows: u64 = c.add.iter().map(|a| a.file.rows).sum();
        println!(
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
    Ok(())
}

fn human_bytes(n: u64) -> String {
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

fn print_run(report: &RunReport) {
    let m = &report.manifest;
    if let Some(v) = report.recovered {
        println!("recovered: finished publishing version {v}, left behind by an interrupted run");
    }
    println!(
        "run {} of job {} committed version {}",
        m.run_id,
        m.job,
        m.output.version.unwrap_or(0)
    );
    println!(
        "  rows: {} read, {} written, {} unscored (features broke the model's input contract)",
        m.rows.read, m.rows.written, m.rows.unscored
    );
    match &m.cluster {
        None => println!(
            "  input: {} of {} files after partition pruning; row groups: {} read, {} pruned by statistics; {} scanned",
            m.inputs.len(),
            m.source_files_total,
            m.scan.row_groups_matched,
            m.scan.row_groups_pruned,
            human_bytes(m.scan.bytes_scanned)
        ),
        Some(url) => println!(
            "  input: {} of {} files after partition pruning; scanned on the cluster at {url}",
            m.inputs.len(),
            m.source_files_total
        ),
    }
    println!(
        "  speed: {:.0} rows/s scoring ({} ms execute, {} ms total)",
        report.rows_per_second, m.timings.execute_ms, m.timings.total_ms
    );
    println!(
        "  output: {} ({} files, {}, partitions: {})",
        m.output.url,
        m.output.files,
        human_bytes(m.output.bytes),
        m.output.partitions.join(", ")
    );
    for model in &m.models {
        println!(
            "  model: {} v{} sha256 {}",
            model.name, model.version, model.sha256
        );
    }
    println!("  data sha256: {}", m.data_sha256);
}

fn print_explain(report: &ExplainReport) {
    println!("physical plan:\n{}", report.physical_plan);
    if !report.params.is_empty() {
        let params: Vec<String> = report
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("parameters: {}", params.join(", "));
    }
    println!(
        "models: {}",
        if report.models.is_empty() {
            "none".to_string()
        } else {
            report.models.join(", ")
        }
    );
    for s in &report.scans {
        println!("source {}:", s.source);
        println!(
            "  files:      {} of {} scanned, {} pruned by partition",
            s.files_scanned,
            s.files_total,
            s.files_total - s.files_scanned
        );
        println!(
            "  row groups: {} of {} scanned, {} pruned by statistics",
            s.row_groups_scanned,
            s.row_groups_in_scanned_files,
            s.row_groups_in_scanned_files - s.row_groups_scanned
        );
        println!(
            "  rows:       {} of {} in scanned files",
            s.rows_scanned, s.rows_in_scanned_files
        );
        println!(
            "  columns:    {} of {} read",
            s.columns_read, s.columns_total
        );
        println!(
            "  bytes:      {} of {} ({:.2}%) to fetch, before page-index pruning",
            human_bytes(s.bytes_scanned),
            human_bytes(s.bytes_total),
            100.0 * s.bytes_scanned as f64 / s.bytes_total.max(1) as f64
        );
    }
    println!("data sha256: {}", report.data_sha256);
    for w in &report.warnings {
        println!("warning: {w}");
    }
}

fn print_validate(report: &ValidateReport) {
    println!("job {} is valid", report.job);
    for m in &report.models {
        println!(
            "  model {} v{} ({}) sha256 {} verified",
            m.name, m.version, m.format, m.sha256
        );
    }
    for (name, cols) in &report.sources {
        println!("  source {name}: {}", cols.join(", "));
    }
    let cols: Vec<String> = report
        .output_columns
        .iter()
        .map(|(n, t)| format!("{n} {t}"))
        .collect();
    println!("  output: {}", cols.join(", "));
    for w in &report.warnings {
        println!("warning: {w}");
    }
}

async fn run_demo(options: DemoOptions, skip_run: bool) -> anyhow::Result<()> {
    println!(
        "scorch demo: {} customer rows over {} daily partitions in {}",
        options.rows,
        options.days,
        options.dir.display()
    );
    let setup = tokio::task::spawn_blocking(move || demo::setup(&options)).await??;
    println!(
        "  data: generated and written in {:.1} s ({} .. {})",
        setup.generate_seconds,
        setup.days.first().map(String::as_str).unwrap_or(""),
        setup.days.last().map(String::as_str).unwrap_or("")
    );
    println!(
        "  model: MLP 12-32-16-1 trained with candle on {} rows in {:.1} s; holdout ({} rows): AUC {:.4}, accuracy {:.4}",
        setup.train_rows,
        setup.train_seconds,
        setup.holdout_rows,
        setup.holdout_auc,
        setup.holdout_accuracy
    );
    println!("  model sha256: {}", setup.model_sha256);
    println!("  job: {}", setup.job_file.display());
    let ds = setup
        .days
        .last()
        .cloned()
        .unwrap_or_else(|| demo::LAST_DAY.to_string());
    if skip_run {
        println!(
            "run it with: scorch run {} --param ds={ds}",
            setup.job_file.display()
        );
        return Ok(());
    }
    let job = JobSpec::try_from_file(&setup.job_file)?;
    let options = RunOptions {
        params: vec![("ds".into(), ds.clone())],
        progress: true,
        ..Default::default()
    };
    println!("\nscorch run {} --param ds={ds}", setup.job_file.display());
    let report = scorch_engine::run::run(&job, &options).await?;
    print_run(&report);
    println!(
        "\nnext: scorch explain {} --param ds={ds}   (plan and pruning)\n      scorch log {}   (commit history)",
        setup.job_file.display(),
        report.manifest.output.url
    );
    Ok(())
}
