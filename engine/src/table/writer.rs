//! Writing a run's output under its staging prefix, in parallel, one task per partition.
//!
//! DataFusion's own file sink funnels every partition into one task; on a Ballista cluster that
//! would make one executor write the whole table. [`StagingWriteExec`] instead writes each input
//! partition's rows to its own Parquet files (split by the output's Hive partition columns) and
//! returns one row per file written: its path, partition, rows, bytes and Delta statistics, and
//! one row without a path carrying the unscored rows the process's scoring functions tallied for
//! the run ([`scorch_udfs::unscored`]). On a cluster each executor writes the partitions it
//! scored; the client commits from the returned file list and sums the tallies.
//!
//! [`StagingWrite`] is the logical node (`LogicalPlan::Extension`) the client builds;
//! [`StagingWritePlanner`] turns it into the execution plan on whichever process plans it. Both
//! travel between processes through the codecs in [`crate::cluster`].

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef, internal_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::table::parquet_file::ParquetFile;
use crate::table::partition;

/// Everything a writer task needs, serialisable so it travels with a distributed plan.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
pub struct WriteSpec {
    /// The staging folder URL (ends with `/`).
    pub staging: String,
    /// Hive partition columns (removed from the files, encoded in the paths).
    pub partition_by: Vec<String>,
    /// Parquet compression (`snappy`, `zstd(3)`, …).
    pub compression: String,
    /// Footer key/value metadata.
    pub metadata: Vec<(String, String)>,
    /// Bytes buffered before a multipart upload starts.
    pub buffer_bytes: usize,
    /// The run writing: part of every file name, so a run's files can be told from others'.
    pub run_id: String,
    /// File name suffix (`.parquet`; staged files of the Parquet mode use another, so that
    /// recursive `*.parquet` globs never read them).
    pub extension: String,
    /// A file is closed, and the next one started, once it holds this many bytes.
    pub max_file_bytes: u64,
    /// Files one task keeps open at once; with more partitions in flight the least recently
    /// written is closed (a later row of its partition starts a new file).
    pub max_open_files: usize,
    /// With `[output.rejects]`: the rejects table's root URL (ends with `/`). Each task writes
    /// the rejected rows its process's scoring functions kept for the run into a file there.
    pub rejects: Option<String>,
    /// The time stamped on rejected rows, in microseconds since the epoch (the run's start).
    pub rejected_at: i64,
    /// A champion/challenger run: the shadow table the twin columns go to.
    pub shadow: Option<ShadowWrite>,
    /// Columns with one value in every row (the stamps, literals of the plan): their column
    /// chunks are encoded once per row count ([`crate::table::parquet_file`]).
    pub constant_columns: Vec<String>,
}

/// Where and how the shadow model's twin columns are written (see [`crate::plan::shadow`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
pub struct ShadowWrite {
    /// The shadow table's root URL (ends with `/`).
    pub url: String,
    /// The output columns that have twins: in the shadow table they hold the twin's values.
    pub columns: Vec<String>,
    /// Stamp columns whose values are the shadow model's (`_model_sha256`, …).
    pub stamps: Vec<(String, String)>,
}

/// The `table` of a writer's report row naming a file of the shadow table.
pub const SHADOW_TABLE: &str = "shadow";

/// The `table` of a writer's report row naming a file of the rejects table.
pub const REJECTS_TABLE: &str = "rejects";

/// The schema of what a writer returns: one row per file.
pub fn result_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("path", DataType::Utf8, false),
            Field::new("partition", DataType::Utf8, false),
            Field::new("rows", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
            Field::new("stats", DataType::Utf8, false),
            Field::new("unscored", DataType::Utf8, false),
            Field::new("table", DataType::Utf8, false),
            Field::new("agreement", DataType::Utf8, false),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// The logical node: write `input` under `spec.staging`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StagingWrite {
    /// What to write.
    pub input: LogicalPlan,
    /// Where and how.
    pub spec: WriteSpec,
    schema: DFSchemaRef,
}

impl StagingWrite {
    /// A node writing `input` as `spec` says.
    pub fn try_new(input: LogicalPlan, spec: WriteSpec) -> Result<Self> {
        let schema = Arc::new(DFSchema::try_from(result_schema().as_ref().clone())?);
        Ok(Self {
            input,
            spec,
            schema,
        })
    }

    /// The node as a logical plan.
    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(datafusion::logical_expr::Extension {
            node: Arc::new(self),
        })
    }
}

impl PartialOrd for StagingWrite {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.spec.partial_cmp(&other.spec)
    }
}

impl UserDefinedLogicalNodeCore for StagingWrite {
    fn name(&self) -> &str {
        "StagingWrite"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StagingWrite: {} partition_by={:?}",
            self.spec.staging, self.spec.partition_by
        )
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        match inputs.len() {
            1 => Self::try_new(inputs.swap_remove(0), self.spec.clone()),
            n => internal_err!("StagingWrite takes one input, got {n}"),
        }
    }
}

/// Plans [`StagingWrite`] nodes.
#[derive(Debug, Default)]
pub struct StagingWritePlanner;

#[async_trait]
impl ExtensionPlanner for StagingWritePlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _context: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(write) = node.as_any().downcast_ref::<StagingWrite>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return internal_err!("StagingWrite takes one input");
        };
        Ok(Some(Arc::new(StagingWriteExec::new(
            Arc::clone(input),
            write.spec.clone(),
        ))))
    }
}

/// A query planner that knows scorch's logical nodes (local sessions and the Ballista scheduler).
#[derive(Debug, Default)]
pub struct ScorchQueryPlanner;

#[async_trait]
impl QueryPlanner for ScorchQueryPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(StagingWritePlanner)])
            .create_physical_plan(plan, session)
            .await
    }
}

/// Writes each input partition's rows to Parquet files under the staging prefix.
#[derive(Debug)]
pub struct StagingWriteExec {
    input: Arc<dyn ExecutionPlan>,
    spec: WriteSpec,
    properties: Arc<PlanProperties>,
}

impl StagingWriteExec {
    /// Writes `input` as `spec` says.
    pub fn new(input: Arc<dyn ExecutionPlan>, spec: WriteSpec) -> Self {
        let partitions = input.output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(result_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            input,
            spec,
            properties,
        }
    }

    /// The write settings.
    pub fn spec(&self) -> &WriteSpec {
        &self.spec
    }
}

impl DisplayAs for StagingWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StagingWriteExec: {} partition_by={:?}",
            self.spec.staging, self.spec.partition_by
        )
    }
}

impl ExecutionPlan for StagingWriteExec {
    fn name(&self) -> &str {
        "StagingWriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            self.spec.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let spec = self.spec.clone();
        let (store, prefix) = store_and_prefix(&spec.staging, &context)?;
        let rejects = match &spec.rejects {
            Some(url) => {
                let (store, prefix) = store_and_prefix(url, &context)?;
                Some(RejectsWriter::new(store, prefix, &spec, partition))
            }
            None => None,
        };
        let shadow = match &spec.shadow {
            Some(shadow) => Some(store_and_prefix(&shadow.url, &context)?),
            None => None,
        };
        let batch = async move {
            write_partition(input, spec, store, prefix, partition, rejects, shadow).await
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            result_schema(),
            futures::stream::once(batch),
        )))
    }
}

/// The store of `url` in the task's runtime, and the path of the folder it names.
fn store_and_prefix(
    url: &str,
    context: &TaskContext,
) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    let parsed =
        Url::parse(url).map_err(|e| DataFusionError::Plan(format!("folder URL {url}: {e}")))?;
    let store_url = ObjectStoreUrl::parse(format!(
        "{}://{}",
        parsed.scheme(),
        &parsed[url::Position::BeforeHost..url::Position::AfterPort]
    ))?;
    let store = context.runtime_env().object_store(&store_url)?;
    let prefix = ObjectPath::from_url_path(parsed.path())
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    Ok((store, prefix))
}

/// The rejects table file one writer task fills with the rejected rows its process kept for the
/// run, taken as the task goes so that they never pile up in memory.
pub struct RejectsWriter {
    store: Arc<dyn ObjectStore>,
    relative: String,
    path: ObjectPath,
    run_id: String,
    rejected_at: i64,
    buffer_bytes: usize,
    open: Option<(SchemaRef, AsyncArrowWriter<BufWriter>)>,
}

impl RejectsWriter {
    /// The file task `task` writes into the rejects table at `prefix`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
        spec: &WriteSpec,
        task: usize,
    ) -> Self {
        let relative = format!(
            "part-{task:05}-{}-{}.parquet",
            spec.run_id,
            uuid::Uuid::now_v7().simple()
        );
        let path = if prefix.as_ref().is_empty() {
            ObjectPath::from(relative.as_str())
        } else {
            ObjectPath::from(format!("{prefix}/{relative}"))
        };
        Self {
            store,
            relative,
            path,
            run_id: spec.run_id.clone(),
            rejected_at: spec.rejected_at,
            buffer_bytes: spec.buffer_bytes,
            open: None,
        }
    }

    /// Writes what the scoring functions of this process kept for the run since the last take.
    pub async fn take(&mut self) -> Result<()> {
        for batch in scorch_udfs::rejects::take_recorded(&self.run_id) {
            if batch.num_rows() == 0 {
                continue;
            }
            if self.open.is_none() {
                let keys = batch.schema().fields()[..batch.num_columns() - 4]
                    .iter()
                    .cloned()
                    .collect();
                let schema = scorch_udfs::rejects::table_schema(&keys);
                let buffer = BufWriter::with_capacity(
                    Arc::clone(&self.store),
                    self.path.clone(),
                    self.buffer_bytes,
                );
                let writer = AsyncArrowWriter::try_new(buffer, Arc::clone(&schema), None)?;
                self.open = Some((schema, writer));
            }
            let (schema, writer) = self.open.as_mut().expect("opened above");
            let rows = batch.num_rows();
            let mut columns = batch.columns().to_vec();
            columns.push(Arc::new(StringArray::from(vec![
                self.run_id.as_str();
                rows
            ])));
            columns.push(Arc::new(
                arrow::array::TimestampMicrosecondArray::from(vec![self.rejected_at; rows])
                    .with_timezone("UTC"),
            ));
            writer
                .write(&RecordBatch::try_new(Arc::clone(schema), columns)?)
                .await?;
        }
        Ok(())
    }

    /// Takes the last rows and closes the file; what it wrote, if it wrote anything.
    pub async fn finish(self) -> Result<Option<crate::table::rejects::RejectsFile>> {
        Ok(self
            .close()
            .await?
            .map(|w| crate::table::rejects::RejectsFile {
                path: w.path,
                size: w.bytes,
                rows: w.rows,
                stats: w.stats,
            }))
    }

    async fn close(mut self) -> Result<Option<Written>> {
        self.take().await?;
        let Some((schema, mut writer)) = self.open.take() else {
            return Ok(None);
        };
        let metadata = writer.finish().await?;
        Ok(Some(Written {
            path: self.relative,
            partition: String::new(),
            rows: metadata.file_metadata().num_rows().max(0) as u64,
            bytes: writer.bytes_written() as u64,
            stats: crate::table::delta::stats::json(&metadata, &schema),
            table: REJECTS_TABLE,
        }))
    }
}

/// Where a shadow table's column comes from.
enum ShadowSource {
    /// An input column (a twin, or a column both tables share).
    Column(usize),
    /// A stamp with the shadow model's value.
    Stamp(String),
}

/// One open file.
struct OpenFile {
    relative: String,
    partition: String,
    writer: ParquetFile,
    /// When a batch was last written to it (a counter), to close the least recently used.
    last_write: u64,
}

/// What one finished file reports.
struct Written {
    path: String,
    partition: String,
    rows: u64,
    bytes: u64,
    stats: String,
    /// `""` for the output, [`REJECTS_TABLE`] for the rejects table.
    table: &'static str,
}

/// The files one writer task has open, and those it finished.
struct Files {
    spec: WriteSpec,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    task: usize,
    schema: SchemaRef,
    props: WriterProperties,
    open: BTreeMap<String, OpenFile>,
    done: Vec<Written>,
    clock: u64,
}

impl Files {
    fn try_new(
        spec: WriteSpec,
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
        task: usize,
        schema: SchemaRef,
    ) -> Result<Self> {
        Ok(Self {
            props: writer_properties(&spec)?,
            spec,
            store,
            prefix,
            task,
            schema,
            open: BTreeMap::new(),
            done: Vec::new(),
            clock: 0,
        })
    }

    async fn write(&mut self, key: &str, part: &RecordBatch) -> Result<()> {
        self.clock += 1;
        if !self.open.contains_key(key) {
            if self.open.len() >= self.spec.max_open_files.max(1) {
                let oldest = self
                    .open
                    .iter()
                    .min_by_key(|(_, f)| f.last_write)
                    .map(|(k, _)| k.clone())
                    .expect("at least one file is open");
                self.close(&oldest).await?;
            }
            // Unique per task attempt: on a cluster, partition numbers repeat across tasks,
            // and a retried task must not overwrite what an earlier attempt reported.
            let name = format!(
                "part-{:05}-{}-{}{}",
                self.task,
                self.spec.run_id,
                uuid::Uuid::now_v7().simple(),
                self.spec.extension
            );
            let relative = if key.is_empty() {
                name
            } else {
                format!("{key}/{name}")
            };
            // The key is already percent-encoded: parsed, not built part by part (which would
            // encode its `%` again).
            let full = if self.prefix.as_ref().is_empty() {
                relative.clone()
            } else {
                format!("{}/{relative}", self.prefix)
            };
            let path =
                ObjectPath::parse(&full).map_err(|e| DataFusionError::External(Box::new(e)))?;
            let buffer =
                BufWriter::with_capacity(Arc::clone(&self.store), path, self.spec.buffer_bytes);
            let writer = ParquetFile::try_new(
                buffer,
                Arc::clone(&self.schema),
                self.props.clone(),
                &self.spec.constant_columns,
            )?;
            self.open.insert(
                key.to_string(),
                OpenFile {
                    relative,
                    partition: key.to_string(),
                    writer,
                    last_write: self.clock,
                },
            );
        }
        let file = self.open.get_mut(key).expect("opened above");
        file.writer.write(part).await?;
        file.last_write = self.clock;
        let size = file.writer.bytes_written() + file.writer.in_progress_size();
        if size as u64 >= self.spec.max_file_bytes {
            self.close(key).await?;
        }
        Ok(())
    }

    async fn close(&mut self, key: &str) -> Result<()> {
        let Some(mut file) = self.open.remove(key) else {
            return Ok(());
        };
        let metadata = file.writer.finish().await?;
        self.done.push(Written {
            path: file.relative,
            partition: file.partition,
            rows: metadata.file_metadata().num_rows().max(0) as u64,
            bytes: file.writer.bytes_written() as u64,
            stats: crate::table::delta::stats::json(&metadata, &self.schema),
            table: "",
        });
        Ok(())
    }
}

async fn write_partition(
    mut input: SendableRecordBatchStream,
    spec: WriteSpec,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    partition: usize,
    mut rejects: Option<RejectsWriter>,
    shadow_store: Option<(Arc<dyn ObjectStore>, ObjectPath)>,
) -> Result<RecordBatch> {
    let schema = input.schema();
    // A shadow run's twin columns go to the shadow table only.
    let shadow_columns = spec
        .shadow
        .as_ref()
        .map(|s| s.columns.clone())
        .unwrap_or_default();
    let twin_indices: Vec<usize> = shadow_columns
        .iter()
        .map(|c| schema.index_of(&crate::plan::shadow::twin(c)))
        .collect::<std::result::Result<_, _>>()?;
    let partition_indices: Vec<usize> = spec
        .partition_by
        .iter()
        .map(|c| schema.index_of(c))
        .collect::<std::result::Result<_, _>>()?;
    let data_indices: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !partition_indices.contains(i) && !twin_indices.contains(i))
        .collect();
    let file_schema = Arc::new(schema.project(&data_indices)?);
    // For each data column of the shadow table: the input column it is read from, or a stamp
    // value.
    let shadow_sources: Vec<ShadowSource> = match &spec.shadow {
        None => Vec::new(),
        Some(shadow) => data_indices
            .iter()
            .map(|&i| {
                let name = schema.field(i).name();
                if let Some(k) = shadow.columns.iter().position(|c| c == name) {
                    ShadowSource::Column(twin_indices[k])
                } else if let Some((_, v)) = shadow.stamps.iter().find(|(c, _)| c == name) {
                    ShadowSource::Stamp(v.clone())
                } else {
                    ShadowSource::Column(i)
                }
            })
            .collect(),
    };
    // How the twins agree with the columns they shadow, counted as the rows pass.
    let compared: Vec<(String, usize, usize)> = shadow_columns
        .iter()
        .zip(&twin_indices)
        .map(|(c, t)| Ok((c.clone(), schema.index_of(c)?, *t)))
        .collect::<Result<_>>()?;
    let mut tallies = crate::run::agreement::Tallies::new();
    let mut shadow_files = match (shadow_store, &spec.shadow) {
        (Some((store, prefix)), Some(shadow)) => {
            // The shadow files' footers name the shadow model, as their stamp columns do.
            let mut shadow_spec = spec.clone();
            for (key, value) in &mut shadow_spec.metadata {
                let stamp = key.replacen("scorch.", "_", 1);
                if let Some((_, v)) = shadow.stamps.iter().find(|(c, _)| *c == stamp) {
                    *value = v.clone();
                }
            }
            Some(Files::try_new(
                shadow_spec,
                store,
                prefix,
                partition,
                Arc::clone(&file_schema),
            )?)
        }
        _ => None,
    };
    let mut files = Files::try_new(spec, store, prefix, partition, Arc::clone(&file_schema))?;
    while let Some(batch) = input.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        for (name, primary, twin) in &compared {
            crate::run::agreement::add_column(
                &mut tallies,
                name,
                batch.column(*primary),
                batch.column(*twin),
            )?;
        }
        for (key, rows) in split_by_partition(&batch, &files.spec.partition_by, &partition_indices)?
        {
            let pick = |i: usize| -> Result<ArrayRef> {
                Ok(match &rows {
                    None => Arc::clone(batch.column(i)),
                    Some(rows) => take(batch.column(i), rows, None)?,
                })
            };
            let columns: Vec<ArrayRef> = data_indices
                .iter()
                .map(|i| pick(*i))
                .collect::<Result<_>>()?;
            let part = RecordBatch::try_new(Arc::clone(&file_schema), columns)?;
            if let Some(shadow) = &mut shadow_files {
                let columns: Vec<ArrayRef> = shadow_sources
                    .iter()
                    .zip(file_schema.fields())
                    .map(|(source, field)| match source {
                        ShadowSource::Column(i) => pick(*i),
                        ShadowSource::Stamp(value) => Ok(arrow::compute::cast(
                            &StringArray::from(vec![value.as_str(); part.num_rows()]),
                            field.data_type(),
                        )?),
                    })
                    .collect::<Result<_>>()?;
                shadow
                    .write(
                        &key,
                        &RecordBatch::try_new(Arc::clone(&file_schema), columns)?,
                    )
                    .await?;
            }
            files.write(&key, &part).await?;
            crate::process::failpoint::hit("write-batch");
        }
        if let Some(rejects) = &mut rejects {
            rejects.take().await?;
        }
    }
    if let Some(mut shadow) = shadow_files {
        let keys: Vec<String> = shadow.open.keys().cloned().collect();
        for key in keys {
            shadow.close(&key).await?;
        }
        for mut written in shadow.done {
            written.table = SHADOW_TABLE;
            files.done.push(written);
        }
    }
    let keys: Vec<String> = files.open.keys().cloned().collect();
    for key in keys {
        files.close(&key).await?;
    }
    let mut done = files.done;
    if let Some(rejects) = rejects
        && let Some(written) = rejects.close().await?
    {
        done.push(written);
    }
    // What the scoring functions of this process tallied for the run so far: this partition's
    // rows were all scored before its input ended. A row with no path carries it.
    let tallied = scorch_udfs::unscored::take(&files.spec.run_id);
    let unscored = if tallied.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&tallied).map_err(|e| DataFusionError::External(Box::new(e)))?
    };
    let agreement = if tallies.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&tallies).map_err(|e| DataFusionError::External(Box::new(e)))?
    };
    if !unscored.is_empty() || !agreement.is_empty() {
        done.push(Written {
            path: String::new(),
            partition: String::new(),
            rows: 0,
            bytes: 0,
            stats: String::new(),
            table: "",
        });
    }
    let last = done.len().saturating_sub(1);
    Ok(RecordBatch::try_new(
        result_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(done.iter().map(|w| &w.path))),
            Arc::new(StringArray::from_iter_values(
                done.iter().map(|w| &w.partition),
            )),
            Arc::new(UInt64Array::from_iter_values(done.iter().map(|w| w.rows))),
            Arc::new(UInt64Array::from_iter_values(done.iter().map(|w| w.bytes))),
            Arc::new(StringArray::from_iter_values(done.iter().map(|w| &w.stats))),
            Arc::new(StringArray::from_iter_values(
                (0..done.len()).map(|i| if i == last { unscored.as_str() } else { "" }),
            )),
            Arc::new(StringArray::from_iter_values(done.iter().map(|w| w.table))),
            Arc::new(StringArray::from_iter_values(
                (0..done.len()).map(|i| if i == last { agreement.as_str() } else { "" }),
            )),
        ],
    )?)
}

fn writer_properties(spec: &WriteSpec) -> Result<WriterProperties> {
    let compression: Compression = spec.compression.parse().map_err(|e| {
        DataFusionError::Configuration(format!("compression `{}`: {e}", spec.compression))
    })?;
    Ok(WriterProperties::builder()
        .set_compression(compression)
        .set_key_value_metadata(Some(
            spec.metadata
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                .collect(),
        ))
        .build())
}

/// Rows of `batch` per partition path (`None`: all rows, when there is one partition). Values
/// are serialised and percent-encoded by [`crate::table::partition`].
fn split_by_partition(
    batch: &RecordBatch,
    names: &[String],
    indices: &[usize],
) -> Result<Vec<(String, Option<UInt32Array>)>> {
    if indices.is_empty() {
        return Ok(vec![(String::new(), None)]);
    }
    let values: Vec<Vec<Option<String>>> = indices
        .iter()
        .map(|i| partition::value_strings(batch.column(*i)))
        .collect::<Result<_>>()?;
    let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for row in 0..batch.num_rows() {
        let key = partition::path(
            &names
                .iter()
                .zip(&values)
                .map(|(name, v)| (name.as_str(), v[row].as_deref()))
                .collect::<Vec<_>>(),
        );
        groups.entry(key).or_default().push(row as u32);
    }
    if groups.len() == 1 {
        let (key, _) = groups.into_iter().next().expect("one group");
        return Ok(vec![(key, None)]);
    }
    Ok(groups
        .into_iter()
        .map(|(k, rows)| (k, Some(UInt32Array::from(rows))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use std::collections::BTreeSet;

    use arrow::datatypes::UInt64Type;
    use object_store::memory::InMemory;

    fn spec(max_file_bytes: u64, max_open_files: usize) -> WriteSpec {
        WriteSpec {
            staging: "memory:///t/".into(),
            partition_by: vec!["p".into()],
            compression: "snappy".into(),
            metadata: vec![],
            buffer_bytes: 1 << 20,
            run_id: "run".into(),
            extension: ".parquet".into(),
            max_file_bytes,
            max_open_files,
            rejects: None,
            rejected_at: 0,
            shadow: None,
            constant_columns: Vec::new(),
        }
    }

    /// Writes `batches` batches of 100 rows, batch `i` all in partition `i % partitions`;
    /// returns (partition, rows, bytes) per file.
    async fn write(spec: WriteSpec, batches: i64, partitions: i64) -> Vec<(String, u64, u64)> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("p", DataType::Int64, false),
        ]));
        let data: Vec<Result<RecordBatch>> = (0..batches)
            .map(|i| {
                Ok(RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(Int64Array::from_iter_values(i * 100..(i + 1) * 100)),
                        Arc::new(Int64Array::from(vec![i % partitions; 100])),
                    ],
                )?)
            })
            .collect();
        let input: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            futures::stream::iter(data),
        ));
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let report = write_partition(input, spec, store, ObjectPath::from("t"), 0, None, None)
            .await
            .expect("written");
        let (partition, rows, bytes) = (
            report.column(1).as_string::<i32>(),
            report.column(2).as_primitive::<UInt64Type>(),
            report.column(3).as_primitive::<UInt64Type>(),
        );
        (0..report.num_rows())
            .map(|i| {
                (
                    partition.value(i).to_string(),
                    rows.value(i),
                    bytes.value(i),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn files_roll_over_at_the_size_limit() {
        let unlimited = write(spec(u64::MAX, 64), 40, 1).await;
        assert_eq!(unlimited.len(), 1);
        let whole = unlimited[0].2;
        let limit = whole / 5;
        let files = write(spec(limit, 64), 40, 1).await;
        assert!(files.len() >= 4, "{files:?}");
        assert_eq!(files.iter().map(|f| f.1).sum::<u64>(), 4000);
        // A file closes once its estimated size reaches the limit: none passes it by more
        // than one batch.
        let batch = whole / 40 * 2;
        for f in &files {
            assert!(f.2 <= limit + batch, "{f:?} vs {limit}");
        }
    }

    #[tokio::test]
    async fn a_task_keeps_at_most_max_open_files_open() {
        // 6 partitions written round-robin: with room for all, one file each; with room for
        // two, every batch finds its partition's file closed and starts another.
        let roomy = write(spec(u64::MAX, 64), 24, 6).await;
        assert_eq!(roomy.len(), 6);
        let tight = write(spec(u64::MAX, 2), 24, 6).await;
        assert_eq!(tight.len(), 24);
        assert_eq!(tight.iter().map(|f| f.1).sum::<u64>(), 2400);
        let partitions: BTreeSet<&str> = tight.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(partitions.len(), 6);
    }
}
