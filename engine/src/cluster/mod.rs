//! Running jobs on an Apache DataFusion Ballista cluster.
//!
//! One binary plays all roles: `scorch scheduler` and `scorch executor` start a Ballista
//! scheduler and executors with scorch's functions, codecs and object stores registered, and
//! `scorch run --cluster df://host:port` submits a job's plan there. What each process needs:
//!
//! - the scoring functions (`predict`, `embed`), registered in the client session, in every
//!   session the scheduler builds for a job (specialised to the job's model catalog, which
//!   arrives in the session configuration as `scorch.models`), and in the executors' function
//!   registry (which read the catalog from each task's configuration);
//! - the `scorch` config extension, registered before the client's settings are applied, so the
//!   catalog is not dropped on the way;
//! - codecs for [`crate::table::writer::StagingWrite`] / [`crate::table::writer::StagingWriteExec`], which write the output in parallel on
//!   the executors; everything else goes through Ballista's own codecs;
//! - object stores built from URLs and each process's environment (credentials, endpoints).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::SessionContextExt;
use ballista_core::extension::{
    SessionConfigExt, ballista_aggregate_functions, ballista_scalar_functions,
    ballista_window_functions,
};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use ballista_scheduler::scheduler_server::SessionBuilder;
use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use scorch_udfs::{DeviceSpec, ModelCatalog, ModelLoader, ScorchOptions};

use crate::error::{Error, Result as ScorchResult};
use crate::plan::session::{SessionSettings, session_config};
use crate::process::shutdown;
use crate::store::StoreRegistry;
use crate::table::writer::ScorchQueryPlanner;
pub use codec::{ScorchLogicalCodec, ScorchPhysicalCodec};

mod codec;

/// The configuration every cluster process starts from: Ballista's, with scorch's extension
/// registered so that the client's `scorch.*` settings can be applied.
fn base_config() -> SessionConfig {
    SessionConfig::new_with_ballista()
        .with_option_extension(ScorchOptions::default())
        .with_ballista_logical_extension_codec(Arc::new(ScorchLogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(ScorchPhysicalCodec::default()))
}

/// A runtime whose object stores are built on demand from URLs and the environment.
fn runtime(stores: &Arc<StoreRegistry>, temp_dir: Option<&str>) -> Result<Arc<RuntimeEnv>> {
    let mut builder = RuntimeEnvBuilder::new().with_object_store_registry(Arc::clone(stores) as _);
    if let Some(dir) = temp_dir {
        builder = builder.with_temp_file_path(dir);
    }
    builder.build_arc()
}

fn loader(stores: &Arc<StoreRegistry>) -> ScorchResult<ModelLoader> {
    Ok(ModelLoader::try_new(
        Arc::clone(stores) as _,
        DeviceSpec::Auto,
    )?)
}

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Host name executors and clients use to reach this scheduler.
    pub external_host: String,
    /// An executor silent for this long is declared lost and its work rescheduled.
    pub executor_timeout: Duration,
}

/// Runs a Ballista scheduler with scorch's functions until the process is stopped.
pub async fn run_scheduler(options: SchedulerOptions) -> ScorchResult<()> {
    let loader = loader(&StoreRegistry::shared(Default::default()))?;
    let builder: SessionBuilder = Arc::new(move |config: SessionConfig| {
        let catalog = Arc::new(ModelCatalog::from_config(config.options()));
        let runtime = runtime(&StoreRegistry::for_config(config.options()), None)?;
        let mut functions = ballista_scalar_functions();
        functions.extend(scorch_udfs::functions::all_functions(
            loader.clone(),
            catalog,
        ));
        Ok(SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
            .with_scalar_functions(functions)
            .with_aggregate_functions(ballista_aggregate_functions())
            .with_window_functions(ballista_window_functions())
            .with_query_planner(Arc::new(ScorchQueryPlanner))
            .build())
    });
    let producer: ConfigProducer = Arc::new(base_config);
    let timeout = options.executor_timeout.as_secs().max(2);
    let mut config = SchedulerConfig {
        bind_host: options.bind.ip().to_string(),
        executor_timeout_seconds: timeout,
        expire_dead_executor_interval_seconds: (timeout / 5).clamp(1, 15),
        no_executors_grace_period_seconds: timeout,
        override_logical_codec: Some(Arc::new(ScorchLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(ScorchPhysicalCodec::default())),
        ..SchedulerConfig::default()
    }
    .with_hostname(&options.external_host)
    .with_port(options.bind.port())
    .with_override_config_producer(producer)
    .with_override_session_builder(builder);
    config.external_host = options.external_host.clone();
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(cluster_error)?;
    tracing::info!(bind = %options.bind, "scheduler listening");
    tokio::select! {
        served = start_server(cluster, options.bind, Arc::new(config)) => served.map_err(cluster_error),
        signal = shutdown::stop_requested() => {
            tracing::info!(signal, "scheduler stopping");
            Ok(())
        }
    }
}

/// Executor settings.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `host:port`.
    pub scheduler: String,
    /// Address of the Arrow Flight service (shuffle and results).
    pub bind: SocketAddr,
    /// Port of the executor's gRPC service (task launch).
    pub grpc_port: u16,
    /// Host name the scheduler and other executors use to reach this one.
    pub external_host: Option<String>,
    /// Tasks run at once.
    pub concurrent_tasks: usize,
    /// Folder for shuffle files.
    pub work_dir: String,
    /// How often to tell the scheduler this executor is alive.
    pub heartbeat: Duration,
}

/// Runs a Ballista executor with scorch's functions until the process is stopped.
pub async fn run_executor(options: ExecutorOptions) -> ScorchResult<()> {
    let (host, port) = options
        .scheduler
        .rsplit_once(':')
        .ok_or_else(|| Error::Location {
            location: options.scheduler.clone(),
            message: "expected host:port".into(),
        })?;
    let scheduler_port: u16 = port.parse().map_err(|_| Error::Location {
        location: options.scheduler.clone(),
        message: "the port is not a number".into(),
    })?;
    std::fs::create_dir_all(&options.work_dir).map_err(|source| Error::Io {
        path: options.work_dir.clone().into(),
        source,
    })?;
    let loader = loader(&StoreRegistry::shared(Default::default()))?;
    let state = SessionStateBuilder::new()
        .with_config(base_config())
        .with_scalar_functions(scorch_udfs::functions::all_functions(
            loader,
            Arc::default(),
        ))
        .with_default_features()
        .build();
    let registry = BallistaFunctionRegistry::from(&state);
    let work_dir = options.work_dir.clone();
    // Each task's stores are built with its job's options, which travel in its configuration.
    let runtime_producer: RuntimeProducer = Arc::new(move |config: &SessionConfig| {
        runtime(
            &StoreRegistry::for_config(config.options()),
            Some(&work_dir),
        )
    });
    let config = ExecutorProcessConfig {
        bind_host: options.bind.ip().to_string(),
        external_host: options.external_host.clone(),
        port: options.bind.port(),
        grpc_port: options.grpc_port,
        scheduler_host: host.to_string(),
        scheduler_port,
        vcores: options.concurrent_tasks.max(1),
        work_dir: Some(options.work_dir.clone()),
        executor_heartbeat_interval_seconds: options.heartbeat.as_secs().max(1),
        override_function_registry: Some(Arc::new(registry)),
        override_config_producer: Some(Arc::new(base_config)),
        override_runtime_producer: Some(runtime_producer),
        override_logical_codec: Some(Arc::new(ScorchLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(ScorchPhysicalCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    tracing::info!(scheduler = %options.scheduler, bind = %options.bind, "executor starting");
    start_executor_process(Arc::new(config))
        .await
        .map_err(cluster_error)
}

/// A client session that plans locally and executes on the cluster at `url` (`df://host:port`).
pub async fn remote_context(
    url: &str,
    settings: &SessionSettings,
    catalog: ModelCatalog,
    loader: ModelLoader,
    stores: &Arc<StoreRegistry>,
) -> ScorchResult<SessionContext> {
    let config = session_config(settings, catalog.clone())
        .upgrade_for_ballista()
        .with_ballista_logical_extension_codec(Arc::new(ScorchLogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(ScorchPhysicalCodec::default()));
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime(stores, None).map_err(Error::Execution)?)
        .with_default_features()
        .build();
    let ctx = SessionContext::remote_with_state(url, state)
        .await
        .map_err(|e| Error::Cluster {
            url: url.to_string(),
            message: e.to_string(),
        })?;
    for udf in scorch_udfs::functions::all_functions(loader, Arc::new(catalog)) {
        ctx.register_udf(udf.as_ref().clone());
    }
    Ok(ctx)
}

/// Ballista reports a failed task with the Debug form of its error. Puts the part a user acts on
/// first: which model an executor could not load, from which store.
pub fn explain_job_failure(message: &str) -> String {
    let field = |text: &str, key: &str| -> Option<String> {
        let start = text.find(&format!("{key}: \""))? + key.len() + 3;
        let end = text[start..].find('"')?;
        Some(text[start..start + end].to_string())
    };
    if let Some(at) = message.find("ModelUnavailable {") {
        let rest = &message[at..];
        if let (Some(name), Some(uri)) = (field(rest, "name"), field(rest, "uri")) {
            let cause = message
                .rfind("message: \"")
                .and_then(|i| field(&message[i..], "message"))
                .unwrap_or_else(|| "see the details below".to_string());
            return format!(
                "an executor could not load model `{name}` from {uri} ({cause}); details: {message}"
            );
        }
    }
    message.to_string()
}

fn cluster_error(e: impl fmt::Display) -> Error {
    Error::Cluster {
        url: String::new(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_failures_are_summarised() {
        let raw = r#"Job 1 failed: Task failed: DataFusionError(External(ModelUnavailable { name: "churn", uri: "s3://b/m/", source: Store { inner: ConnectError("tcp connect error", Os { code: 111, message: "Connection refused" }) } }))"#;
        let text = explain_job_failure(raw);
        assert!(
            text.starts_with(
                "an executor could not load model `churn` from s3://b/m/ (Connection refused)"
            ),
            "{text}"
        );
        assert_eq!(explain_job_failure("plain"), "plain");
    }
}
