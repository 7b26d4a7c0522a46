//! Delta tables as sources (`[sources.x] format = "delta"`, with `version` or `timestamp` for
//! time travel): the snapshot's files scanned as plain Parquet, so that pruning, pushdown, the
//! input fingerprint and Ballista's codecs work exactly as for folders.
//!
//! The provider holds the snapshot's file list. Filters on partition columns prune files here,
//! from the partition values in the log; other filters go down into the Parquet scan.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema as ScanSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::expr_to_columns;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use object_store::ObjectMeta;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};

/// One file of the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Object path in the store.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (from the log).
    pub modified: DateTime<Utc>,
    /// Partition values, in the order of [`DeltaSource::partition_columns`] (`None`: NULL).
    pub partition_values: Vec<Option<String>>,
}

/// What travels to a Ballista scheduler: everything the provider knows, as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltaSourceSpec {
    /// `scheme://bucket` of the table's store.
    pub store_url: String,
    /// The table's Delta schema (`schemaString`), data and partition columns.
    pub delta_schema: String,
    /// Partition columns.
    pub partition_columns: Vec<String>,
    /// The version read.
    pub version: u64,
    /// Its files.
    pub files: Vec<SnapshotFile>,
}

/// A Delta snapshot as a DataFusion table.
#[derive(Debug)]
pub struct DeltaSource {
    spec: DeltaSourceSpec,
    /// Data columns as the files hold them.
    file_schema: SchemaRef,
    /// Partition columns, typed.
    partition_fields: Vec<FieldRef>,
    /// Data columns, then partition columns.
    schema: SchemaRef,
}

impl DeltaSource {
    /// A provider from its spec.
    pub fn try_new(spec: DeltaSourceSpec) -> Result<Self> {
        let kernel: deltalake_core::kernel::StructType =
            serde_json::from_str(&spec.delta_schema)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let arrow = crate::table::delta::to_arrow(&kernel)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let data: Vec<Field> = arrow
            .fields()
            .iter()
            .filter(|f| !spec.partition_columns.contains(f.name()))
            .map(|f| f.as_ref().clone())
            .collect();
        let partition_fields: Vec<FieldRef> = spec
            .partition_columns
            .iter()
            .map(|c| {
                arrow
                    .field_with_name(c)
                    .map(|f| Arc::new(f.clone().with_nullable(true)))
                    .map_err(|e| DataFusionError::External(Box::new(e)))
            })
            .collect::<Result<_>>()?;
        let file_schema = Arc::new(Schema::new(data.clone()));
        let mut all = data;
        all.extend(partition_fields.iter().map(|f| f.as_ref().clone()));
        Ok(Self {
            spec,
            file_schema,
            partition_fields,
            schema: Arc::new(Schema::new(all)),
        })
    }

    /// What the provider knows (for a codec).
    pub fn spec(&self) -> &DeltaSourceSpec {
        &self.spec
    }

    /// The partition columns.
    pub fn partition_columns(&self) -> &[String] {
        &self.spec.partition_columns
    }

    /// Which files pass the filters that name partition columns only.
    fn prune(&self, filters: &[Expr]) -> Result<Vec<bool>> {
        let files = &self.spec.files;
        let mut keep = vec![true; files.len()];
        if files.is_empty() || self.partition_fields.is_empty() {
            return Ok(keep);
        }
        let partition_schema = Arc::new(Schema::new(
            self.partition_fields
                .iter()
                .map(|f| f.as_ref().clone())
                .collect::<Vec<_>>(),
        ));
        let columns: Vec<ArrayRef> = self
            .partition_fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let text: ArrayRef = Arc::new(StringArray::from_iter(
                    files.iter().map(|file| file.partition_values[i].clone()),
                ));
                cast(&text, f.data_type())
            })
            .collect::<std::result::Result<_, _>>()?;
        let batch = RecordBatch::try_new(Arc::clone(&partition_schema), columns)?;
        let df_schema = DFSchema::try_from(partition_schema.as_ref().clone())?;
        let ctx = datafusion::prelude::SessionContext::new();
        for filter in filters.iter().filter(|f| self.on_partitions(f)) {
            let physical = ctx.create_physical_expr(filter.clone(), &df_schema)?;
            let result = physical.evaluate(&batch)?.into_array(batch.num_rows())?;
            let result = cast(&result, &DataType::Boolean)?;
            let result = result.as_boolean();
            for (i, k) in keep.iter_mut().enumerate() {
                // NULL (unknown) keeps the file: pruning must never drop rows.
                *k &= !result.is_valid(i) || result.value(i);
            }
        }
        Ok(keep)
    }

    fn on_partitions(&self, expr: &Expr) -> bool {
        let mut columns = std::collections::HashSet::new();
        expr_to_columns(expr, &mut columns).is_ok()
            && !columns.is_empty()
            && columns
                .iter()
                .all(|c| self.spec.partition_columns.contains(&c.name))
    }
}

#[async_trait]
impl TableProvider for DeltaSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.on_partitions(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let keep = self.prune(filters)?;
        let mut files: Vec<PartitionedFile> = Vec::new();
        for (file, keep) in self.spec.files.iter().zip(keep) {
            if !keep {
                continue;
            }
            let mut partitioned = PartitionedFile::new_from_meta(ObjectMeta {
                location: ObjectPath::parse(&file.path)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?,
                last_modified: file.modified,
                size: file.size,
                e_tag: None,
                version: None,
            });
            partitioned.partition_values = self
                .partition_fields
                .iter()
                .zip(&file.partition_values)
                .map(|(f, v)| match v {
                    Some(v) => ScalarValue::try_from_string(v.clone(), f.data_type()),
                    None => ScalarValue::try_from(f.data_type()),
                })
                .collect::<Result<_>>()?;
            files.push(partitioned);
        }
        if files.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        // Files spread over the partitions scored at once, largest first.
        let groups_wanted = state.config().target_partitions().max(1).min(files.len());
        files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
        let mut groups: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, Vec::new()); groups_wanted];
        for file in files {
            let smallest = groups
                .iter_mut()
                .min_by_key(|(bytes, _)| *bytes)
                .expect("at least one group");
            smallest.0 += file.object_meta.size;
            smallest.1.push(file);
        }
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let scan_schema = ScanSchema::builder(Arc::clone(&self.file_schema))
            .with_table_partition_cols(self.partition_fields.clone())
            .build();
        let source = format.file_source(scan_schema);
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::parse(&self.spec.store_url)?, source)
                .with_file_groups(groups.into_iter().map(|(_, f)| FileGroup::new(f)).collect())
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
        format.create_physical_plan(state, config).await
    }
}

/// When version `version` was committed (its `commitInfo` timestamp).
async fn commit_timestamp(
    table: &deltalake_core::DeltaTable,
    version: u64,
) -> std::result::Result<Option<DateTime<Utc>>, deltalake_core::DeltaTableError> {
    let Some(bytes) = table.log_store().read_commit_entry(version).await? else {
        return Ok(None);
    };
    let actions = deltalake_core::logstore::get_actions(version, &bytes)?;
    Ok(actions.iter().find_map(|a| match a {
        deltalake_core::kernel::Action::CommitInfo(info) => {
            info.timestamp.and_then(DateTime::from_timestamp_millis)
        }
        _ => None,
    }))
}

/// Reads the snapshot of the Delta table at `location` (the version or timestamp asked for, else
/// the newest) into a provider spec.
pub async fn snapshot(
    location: &crate::store::location::Location,
    root: Arc<dyn object_store::ObjectStore>,
    version: Option<u64>,
    timestamp: Option<DateTime<Utc>>,
) -> std::result::Result<Option<DeltaSourceSpec>, deltalake_core::DeltaTableError> {
    let mut table = deltalake_core::DeltaTable::new(crate::table::delta::log_store(location, root));
    if !table.log_store().is_delta_table_location().await? {
        return Ok(None);
    }
    let refuse = |message: String| Err(deltalake_core::DeltaTableError::Generic(message));
    match (version, timestamp) {
        (Some(v), _) => {
            let newest = table.get_latest_version().await?;
            if v > newest {
                return refuse(format!(
                    "the table has no version {v}: its newest is {newest}"
                ));
            }
            table.load_version(v).await?
        }
        (None, Some(t)) => {
            table.load_with_datetime(t).await?;
            let loaded = table.version().unwrap_or(0);
            let committed_at = commit_timestamp(&table, loaded).await?;
            if committed_at.is_some_and(|at| at > t) {
                return refuse(format!(
                    "the table has no version at or before {t}: its first is from {}",
                    committed_at.map(|at| at.to_rfc3339()).unwrap_or_default()
                ));
            }
        }
        (None, None) => table.load().await?,
    }
    let snapshot = table.snapshot()?;
    let partition_columns = snapshot.metadata().partition_columns().to_vec();
    let prefix = location.path();
    let files = snapshot
        .log_data()
        .iter()
        .map(|f| {
            let values: BTreeMap<String, Option<String>> =
                f.partition_values_map().into_iter().collect();
            let relative = f.object_store_path();
            let path = if prefix.as_ref().is_empty() {
                relative.to_string()
            } else {
                format!("{prefix}/{relative}")
            };
            SnapshotFile {
                path,
                size: f.size().max(0) as u64,
                modified: DateTime::from_timestamp_millis(f.modification_time())
                    .unwrap_or_default(),
                partition_values: partition_columns
                    .iter()
                    .map(|c| values.get(c).cloned().flatten())
                    .collect(),
            }
        })
        .collect();
    Ok(Some(DeltaSourceSpec {
        store_url: location.store_url().as_str().to_string(),
        delta_schema: serde_json::to_string(snapshot.schema().as_ref())
            .map_err(|e| deltalake_core::DeltaTableError::Generic(e.to_string()))?,
        partition_columns,
        version: snapshot.version(),
        files,
    }))
}
