//! The command line's arguments (clap derive), and their conversion into the engine's settings.
//! Flags are validated exactly as the job file's keys are.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use scorch_engine::job::check_at_least_one;
use scorch_engine::job::parse_param_arg;
use scorch_engine::telemetry::lineage::LineageSink;
use scorch_engine::telemetry::metrics::MetricsSinks;
use scorch_engine::{Error, JobSpec, RunOptions};
use scorch_udfs::DeviceSpec;

/// Batch scoring: read a feature table, score every row with a versioned model, commit a
/// prediction table atomically.
#[derive(Debug, Parser)]
#[command(name = "scorch", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// Log format on stderr: `human` for people, `json` (one object per line) for schedulers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "SCORCH_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info`, `debug`, `scorch_engine=debug` (RUST_LOG syntax). The default
    /// shows scorch's own progress and only warnings from the libraries it runs on, except the
    /// Delta library's, whose failures scorch reports itself (`deltalake_core=debug` shows them).
    #[arg(
        long,
        global = true,
        default_value = "warn,deltalake_core=off,delta_kernel=off,scorch=info,scorch_engine=info,scorch_udfs=info",
        env = "SCORCH_LOG"
    )]
    pub log: String,

    /// Only warnings and errors on stderr, and no progress bar (results still go to stdout).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

pub const EXIT_CODES: &str = "Exit codes: 0 success; 1 internal error; 2 usage, job file, parameter or SQL error; \
3 input data or contract error; 4 quality gate failed (nothing published); 5 storage or cluster error; \
6 model package error (missing, refused, hash mismatch); 7 commit conflict (another run committed first); \
130/143 stopped by SIGINT/SIGTERM before the commit point (nothing published).";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job: score, check, commit, publish.
    Run {
        #[command(flatten)]
        job: JobArgs,
        /// Print the run manifest as JSON on stdout instead of a summary.
        #[arg(long)]
        json: bool,
        /// Do nothing when the last committed run of these parameters read the same input
        /// files with the same models and query and its partitions are untouched since.
        #[arg(long)]
        skip_unchanged: bool,
        #[command(flatten)]
        metrics: MetricsArgs,
        #[command(flatten)]
        lineage: LineageArgs,
    },
    /// Run a job over many intervals, each its own run and commit: one parameter given as a
    /// range (`--param ds=2026-11-01..2026-11-30`, dates by day, integers by one) or a list
    /// (`--param region=eu,us`). Every interval is attempted; the exit code is that of the first
    /// interval that failed.
    Backfill {
        #[command(flatten)]
        job: JobArgs,
        /// Intervals run at once, at least 1.
        #[arg(long, default_value_t = 1, value_parser = count_arg)]
        parallel: usize,
        /// Skip each interval whose inputs, models and query are those of its last committed
        /// run (see `run --skip-unchanged`).
        #[arg(long)]
        skip_unchanged: bool,
        /// Print the outcomes as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare two prediction tables of the same rows (a job's output and its shadow table):
    /// agreement, mean and largest absolute difference, rank correlation, PSI, label flips.
    Compare {
        /// The first table (the champion's predictions).
        table: String,
        /// The second (the challenger's).
        other: String,
        /// Columns that match a row of one table to a row of the other (default: every column
        /// both have, stamps and compared columns aside).
        #[arg(long, value_delimiter = ',')]
        on: Vec<String>,
        /// Columns to compare (default: the prediction columns).
        #[arg(long = "column", value_delimiter = ',')]
        columns: Vec<String>,
        /// Print as JSON.
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
        /// Replace the folder's contents even when they are not an unedited earlier demo.
        #[arg(long)]
        force: bool,
    },
    /// Delete what scorch wrote and no longer needs: files a version replaced longer ago than
    /// the window (Delta's vacuum), files of runs that died before committing; for Parquet-mode
    /// tables, first publish what an interrupted run committed. A dry run unless `--apply`.
    /// Never deletes a file the table's records do not show scorch wrote; refuses a folder that
    /// is not a scorch table.
    Gc {
        /// The output table (URL or path).
        output: String,
        /// The retention window: files replaced, and runs started, more recently are kept
        /// (`30m`, `24h`, `7d`).
        #[arg(long, default_value = "7d", value_parser = parse_duration)]
        older_than: Duration,
        /// Delete (and publish); without it, only report what would be done.
        #[arg(long)]
        apply: bool,
        /// Parquet mode: when live files are lost, commit a version without them so the table
        /// publishes again (their rows are gone either way).
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compact a Delta table's small files, in the partitions `--where` selects.
    Optimize {
        /// The output table (URL or path).
        output: String,
        /// Partitions to compact: `ds = '2026-11-27'` (terms `column op value` joined by AND).
        #[arg(long = "where", value_name = "CONDITION")]
        condition: Option<String>,
        /// Size of the files to write (`256MiB`).
        #[arg(long, default_value = "256MiB")]
        target_size: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an output table's commit log.
    Log {
        /// The output table (URL or path).
        output: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write one self-contained HTML page about a run of an output table: rows and unscored
    /// reasons, checks with their values and limits, outputs against the profile, drift per input.
    Report {
        /// The output table (URL or path).
        output: String,
        /// The run (default: the newest that wrote a manifest).
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
        /// The HTML file to write (default: `scorch-report-<run id>.html` here).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
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
pub enum ModelCommand {
    /// Print a package's SHA-256 (what a job pins in `[models.<name>] sha256`).
    Hash {
        /// Package folder (URL or path).
        package: String,
    },
    /// Make a package from an exported model: an .onnx file, an XGBoost .json, a LightGBM .txt,
    /// an MLflow model folder (flavour onnx, xgboost or lightgbm), or a sentence-transformers
    /// folder. Inputs and outputs are read from the artifact (and an MLflow signature).
    Init {
        /// The exported model.
        artifact: PathBuf,
        /// Package folder to create (default: the artifact's name without extension).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Model name (default: the package folder's name).
        #[arg(long)]
        name: Option<String>,
        /// Semantic version (default: an MLflow model's `metadata.version`, else 1.0.0).
        #[arg(long)]
        version: Option<semver::Version>,
    },
    /// Print a package's model card: name, version, format, hash, inputs, outputs, size.
    Inspect {
        /// Package folder (URL or path).
        package: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Profile a package's model on reference data (training or validation): per input the
    /// distribution of its values, per output that of the predictions. Writes profile.json into
    /// the package (changing its hash: pin the new one); runs then measure drift against it.
    Profile {
        /// Package folder (a local path).
        package: String,
        /// The reference data: a Parquet folder or file (URL or path), with a column per input.
        #[arg(long, value_name = "URL")]
        data: String,
        /// Only the rows matching this SQL condition, e.g. `ds < '2026-11-01'`.
        #[arg(long = "where", value_name = "CONDITION")]
        filter: Option<String>,
        /// Quantile bins per numeric column, at least 2.
        #[arg(long, default_value_t = 10, value_parser = bins_arg)]
        bins: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Publish a package to a model registry as `<name>/<version>/` (name and version from its
    /// manifest), after checking that it loads. Publishing the same bytes again does nothing;
    /// other bytes under an existing version are refused.
    Publish {
        /// Package folder (URL or path).
        package: String,
        /// The registry: a folder on any store (`s3://ml/registry`, a path).
        #[arg(long, env = "SCORCH_REGISTRY", value_name = "URL")]
        registry: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Point an alias (`champion`, `challenger`) at a published version. Jobs following the
    /// alias score with that version from their next run; a rollback is promoting the previous
    /// version again.
    Promote {
        /// `name@version`.
        #[arg(value_name = "NAME@VERSION")]
        model: String,
        /// The alias to move.
        #[arg(long)]
        alias: String,
        /// The registry.
        #[arg(long, env = "SCORCH_REGISTRY", value_name = "URL")]
        registry: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the registry's models, their versions and where their aliases point.
    List {
        /// The registry.
        #[arg(long, env = "SCORCH_REGISTRY", value_name = "URL")]
        registry: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A model's history in the registry: versions published and alias moves, oldest first.
    History {
        /// Model name.
        name: String,
        /// The registry.
        #[arg(long, env = "SCORCH_REGISTRY", value_name = "URL")]
        registry: String,
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
pub struct JobArgs {
    /// The job file.
    job: PathBuf,
    /// Set a job parameter: `--param ds=2026-11-27` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = param_arg)]
    params: Vec<(String, String)>,
    /// Partitions scored at once, at least 1 (default: the job's, else the number of cores).
    #[arg(long, value_parser = count_arg)]
    target_partitions: Option<usize>,
    /// Rows per batch handed to a model, at least 1 (default: the job's, else 8192).
    #[arg(long, value_parser = count_arg)]
    batch_size: Option<usize>,
    /// Where models run: `auto`, `cpu` or `cuda:N`.
    #[arg(long, value_parser = device_arg)]
    device: Option<DeviceSpec>,
    /// Run on a Ballista cluster (`df://host:port`) instead of in-process (default: the job's
    /// `[execution] cluster`).
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    /// Score every row with this declared model too, beside the one it shadows, in the same
    /// scan, into the shadow table (default: the job's `[shadow]`).
    #[arg(long, value_name = "MODEL")]
    shadow: Option<String>,
    /// Where `--shadow` writes (default: the job's `[shadow] url`, else the output's URL with
    /// `_shadow` appended).
    #[arg(long, value_name = "URL", requires = "shadow")]
    shadow_table: Option<String>,
}

/// Where a run's Prometheus metrics go when it ends, success or failure.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Write the run's metrics to this file in Prometheus' text format, atomically (for
    /// node_exporter's textfile collector: a `*.prom` file in its directory).
    #[arg(long, value_name = "PATH", value_parser = metrics_file_arg)]
    metrics_file: Option<PathBuf>,
    /// Push the run's metrics to this Prometheus Pushgateway (`http://host:9091`).
    #[arg(long, value_name = "URL", value_parser = http_url_arg)]
    pushgateway: Option<String>,
    /// The `job` label of the metrics and the Pushgateway's grouping key (default: the job's
    /// name).
    #[arg(long, value_name = "NAME", value_parser = nonempty_arg)]
    metrics_job: Option<String>,
}

/// Where a run's OpenLineage events go.
#[derive(Debug, Clone, Args)]
pub struct LineageArgs {
    /// Send OpenLineage events (START, then COMPLETE or FAIL) to this endpoint
    /// (`http://marquez:5000`: POST to /api/v1/lineage) or append them to `file:PATH`.
    #[arg(long, value_name = "URL", value_parser = LineageSink::parse)]
    lineage: Option<LineageSink>,
    /// The OpenLineage job namespace.
    #[arg(long, value_name = "NAME", default_value = "scorch", value_parser = nonempty_arg)]
    lineage_namespace: String,
}

impl LineageArgs {
    /// The sink, and the namespace of the job.
    pub fn sink(&self) -> Option<(&LineageSink, &str)> {
        self.lineage
            .as_ref()
            .map(|s| (s, self.lineage_namespace.as_str()))
    }
}

impl MetricsArgs {
    /// The sinks these flags name.
    pub fn sinks(&self) -> MetricsSinks {
        MetricsSinks {
            file: self.metrics_file.clone(),
            pushgateway: self.pushgateway.clone(),
            job: self.metrics_job.clone(),
        }
    }
}

/// A file whose folder exists (checked before the run, not after it).
fn metrics_file_arg(s: &str) -> Result<PathBuf, String> {
    scorch_engine::telemetry::file_in_existing_folder(s)
}

/// An `http://` or `https://` URL.
fn http_url_arg(s: &str) -> Result<String, String> {
    scorch_engine::telemetry::http_url(s).map_err(|e| format!("{e}, e.g. http://pushgateway:9091"))
}

fn bins_arg(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (2..=1000).contains(&n) => Ok(n),
        _ => Err(format!("`{s}` is not a number of bins between 2 and 1000")),
    }
}

fn nonempty_arg(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_string())
    }
}

impl JobArgs {
    /// The job file as given.
    pub fn file(&self) -> &std::path::Path {
        &self.job
    }

    /// Reads the job file and the run options the flags give.
    pub fn load(&self, quiet: bool) -> Result<(JobSpec, RunOptions), Error> {
        let mut job = JobSpec::try_from_file(&self.job)?;
        if let Some(model) = &self.shadow {
            let location = match (&self.shadow_table, &job.shadow) {
                (Some(url), _) => scorch_engine::package::location_arg(url)?,
                (None, Some(shadow)) => shadow.location.clone(),
                (None, None) => {
                    let output = job.output.location.url().as_str().trim_end_matches('/');
                    scorch_engine::package::location_arg(&format!("{output}_shadow"))?
                }
            };
            job.shadow = Some(scorch_engine::job::Shadow {
                model: model.clone(),
                replaces: job.shadow.as_ref().and_then(|s| s.replaces.clone()),
                location,
            });
            let invalid = |message: String| Error::JobFile {
                path: self.job.clone(),
                message: format!("--shadow: {message}"),
            };
            job.check_shadow().map_err(invalid)?;
            job.check_locations().map_err(invalid)?;
        }
        let options = RunOptions {
            params: self.params.clone(),
            target_partitions: self.target_partitions,
            batch_size: self.batch_size,
            device: self.device,
            progress: !quiet,
            cluster: self.cluster.clone(),
            run_id: None,
            skip_unchanged: false,
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
    scorch_engine::store::parse_duration(s)
}

fn count_arg(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    check_at_least_one(n)
}
