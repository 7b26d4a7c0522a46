//! What a plan reads: the input files that survive partition pruning (the data fingerprint is
//! computed over exactly these), and an estimate of the row groups and bytes a run will scan
//! after statistics pruning and column projection, read from the Parquet footers alone.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccessPlanFilter};
use datafusion::datasource::physical_plan::{FileScanConfig, ParquetFileMetrics};
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricValue};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore};
use parquet::file::metadata::ParquetMetaData;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::job::Source;
use crate::plan::sources::SourceListing;
use crate::store::StoreRegistry;

/// One input file as the scan will read it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InputFile {
    /// Full URL.
    pub url: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time reported by the store.
    pub last_modified: DateTime<Utc>,
    /// The store's entity tag, where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
}

impl InputFile {
    /// Adds what identifies this version of the file (URL, size, modification time, ETag).
    pub fn fingerprint(&self, hasher: &mut Sha256) {
        hasher.update(self.url.as_bytes());
        hasher.update([0u8]);
        hasher.update(self.size.to_le_bytes());
        hasher.update(self.last_modified.timestamp_micros().to_le_bytes());
        hasher.update(self.e_tag.as_deref().unwrap_or("").as_bytes());
        hasher.update([0u8]);
    }
}

/// One file scan of a physical plan.
#[derive(Debug, Clone)]
pub struct PlannedScan {
    /// Files left after partition pruning.
    pub files: Vec<InputFile>,
    /// Schema of the files (without partition columns).
    pub file_schema: SchemaRef,
    /// Indices of the file columns the scan reads.
    pub projection: Vec<usize>,
    /// The predicate pushed into the scan, if any.
    pub predicate: Option<Arc<dyn PhysicalExpr>>,
    /// Rows in the files, from the statistics collected while planning (when known).
    pub rows_in_files: Option<u64>,
}

/// Finds every Parquet scan in a physical plan.
pub fn planned_scans(plan: &Arc<dyn ExecutionPlan>) -> Vec<PlannedScan> {
    let mut scans = Vec::new();
    collect_scans(plan, &mut scans);
    scans
}

fn collect_scans(plan: &Arc<dyn ExecutionPlan>, out: &mut Vec<PlannedScan>) {
    if let Some(exec) = plan.downcast_ref::<DataSourceExec>()
        && let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>()
    {
        let store_url = config
            .object_store_url
            .as_str()
            .strip_suffix('/')
            .unwrap_or(config.object_store_url.as_str())
            .to_string();
        let files = config
            .file_groups
            .iter()
            .flat_map(|g| g.files())
            .map(|f| InputFile {
                url: format!("{store_url}/{}", f.object_meta.location),
                size: f.object_meta.size,
                last_modified: f.object_meta.last_modified,
                e_tag: f.object_meta.e_tag.clone(),
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // A large file is split into byte ranges read by different partitions; each range
        // carries the whole file's statistics, so count every file once.
        let rows_per_file: std::collections::BTreeMap<&ObjectPath, Option<u64>> = config
            .file_groups
            .iter()
            .flat_map(|g| g.files())
            .map(|f| {
                (
                    &f.object_meta.location,
                    f.statistics
                        .as_ref()
                        .and_then(|s| s.num_rows.get_value().map(|n| *n as u64)),
                )
            })
            .collect();
        let rows_in_files = rows_per_file.into_values().sum::<Option<u64>>();
        let file_schema = Arc::clone(config.file_schema());
        let projection = config
            .file_source()
            .projection()
            .map(|p| {
                p.column_indices()
                    .into_iter()
                    .filter(|&i| i < file_schema.fields().len())
                    .collect()
            })
            .unwrap_or_else(|| (0..file_schema.fields().len()).collect());
        let predicate = config.file_source().filter();
        out.push(PlannedScan {
            files,
            file_schema,
            projection,
            predicate,
            rows_in_files,
        });
    }
    for child in plan.children() {
        collect_scans(child, out);
    }
}

/// The data fingerprint: SHA-256 over the input files (URL, size, modification time, ETag), in
/// sorted order, and the version each Delta source was read at (`delta_versions`: source name
/// and version). Same files, same fingerprint; any file added, removed or rewritten changes it.
pub fn data_sha256(scans: &[PlannedScan], delta_versions: &[(&str, u64)]) -> String {
    let files: BTreeSet<&InputFile> = scans.iter().flat_map(|s| &s.files).collect();
    let mut hasher = Sha256::new();
    hasher.update(b"scorch-data-v1\0");
    for (name, version) in delta_versions {
        hasher.update(format!("delta:{name}@{version}\0").as_bytes());
    }
    for f in files {
        f.fingerprint(&mut hasher);
    }
    hex::encode(hasher.finalize())
}

/// What a run of the plan would read from one source, against what the source holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanEstimate {
    /// Source name.
    pub source: String,
    /// Parquet files in the source.
    pub files_total: u64,
    /// Files left after partition pruning.
    pub files_scanned: u64,
    /// Bytes of all files in the source.
    pub bytes_total: u64,
    /// Row groups in the files left after partition pruning.
    pub row_groups_in_scanned_files: u64,
    /// Row groups left after statistics pruning.
    pub row_groups_scanned: u64,
    /// Rows in the row groups left.
    pub rows_scanned: u64,
    /// Rows in all scanned files.
    pub rows_in_scanned_files: u64,
    /// Compressed bytes of the projected columns in the row groups left: what the scan fetches
    /// (before page-index pruning, which can only lower it).
    pub bytes_scanned: u64,
    /// Columns in the source's files.
    pub columns_total: u64,
    /// Columns the scan reads.
    pub columns_read: u64,
}

/// Estimates, from footers only, what `scans` will read from each of `sources` (listed as
/// `listings` when the job was planned).
pub async fn estimate(
    stores: &StoreRegistry,
    sources: &[Source],
    listings: &[SourceListing],
    scans: &[PlannedScan],
) -> Result<Vec<ScanEstimate>> {
    let mut estimates = Vec::new();
    for (source, listing) in sources.iter().zip(listings) {
        let store = stores.store(&source.location)?;
        let mut e = ScanEstimate {
            source: source.name.clone(),
            files_total: listing.files,
            bytes_total: listing.bytes,
            ..Default::default()
        };
        let url = source.scan_url();
        for scan in scans {
            let files: Vec<&InputFile> = scan
                .files
                .iter()
                .filter(|f| f.url.starts_with(url.as_str()))
                .collect();
            if files.is_empty() {
                continue;
            }
            e.columns_total = scan.file_schema.fields().len() as u64;
            e.columns_read = scan.projection.len() as u64;
            let pruning = scan
                .predicate
                .as_ref()
                .and_then(|p| {
                    PruningPredicateBuilder::new()
                        .with_file_schema(Arc::clone(&scan.file_schema))
                        .try_build(Arc::clone(p))
                        .ok()
                })
                .filter(|p| !p.always_true());
            for file in files {
                e.files_scanned += 1;
                let path = ObjectPath::from_url_path(
                    url::Url::parse(&file.url)
                        .map(|u| u.path().to_string())
                        .unwrap_or_default(),
                )
                .unwrap_or_default();
                let meta = ObjectMeta {
                    location: path,
                    last_modified: file.last_modified,
                    size: file.size,
                    e_tag: file.e_tag.clone(),
                    version: None,
                };
                let metadata = read_footer(store.as_ref(), &meta).await?;
                let groups = metadata.row_groups();
                let mut filter =
                    RowGroupAccessPlanFilter::new(ParquetAccessPlan::new_all(groups.len()));
                if let Some(predicate) = &pruning {
                    let metrics =
                        ParquetFileMetrics::new(0, &file.url, &ExecutionPlanMetricsSet::new());
                    let parquet_schema = metadata.file_metadata().schema_descr();
                    filter.prune_by_statistics(
                        &scan.file_schema,
                        parquet_schema,
                        groups,
                        predicate,
                        &metrics,
                    );
                }
                let kept: BTreeSet<usize> = filter.row_group_indexes().collect();
                let projected: BTreeSet<&str> = scan
                    .projection
                    .iter()
                    .filter_map(|i| scan.file_schema.fields().get(*i).map(|f| f.name().as_str()))
                    .collect();
                e.row_groups_in_scanned_files += groups.len() as u64;
                e.row_groups_scanned += kept.len() as u64;
                for (i, group) in groups.iter().enumerate() {
                    e.rows_in_scanned_files += group.num_rows() as u64;
                    if !kept.contains(&i) {
                        continue;
                    }
                    e.rows_scanned += group.num_rows() as u64;
                    e.bytes_scanned += group
                        .columns()
                        .iter()
                        .filter(|c| {
                            let top = c
                                .column_path()
                                .parts()
                                .first()
                                .map(String::as_str)
                                .unwrap_or_default();
                            projected.contains(top)
                        })
                        .map(|c| c.compressed_size().max(0) as u64)
                        .sum::<u64>();
                }
            }
        }
        estimates.push(e);
    }
    Ok(estimates)
}

/// Reads a Parquet footer through an object store.
pub async fn read_footer(
    store: &dyn ObjectStore,
    meta: &ObjectMeta,
) -> Result<Arc<ParquetMetaData>> {
    DFParquetMetadata::new(store, meta)
        .fetch_metadata()
        .await
        .map_err(|source| Error::InputData { source })
}

/// Scan counters measured while a plan ran, summed over its Parquet scans.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanMetrics {
    /// Rows the scans produced (after pushed-down filters).
    pub rows: u64,
    /// Bytes fetched from storage.
    pub bytes_scanned: u64,
    /// Row groups skipped by statistics.
    pub row_groups_pruned: u64,
    /// Row groups read.
    pub row_groups_matched: u64,
    /// Rows skipped by the page index.
    pub page_rows_pruned: u64,
    /// Rows removed by filters evaluated inside the scan.
    pub pushdown_rows_pruned: u64,
}

/// Reads the scan counters of an executed plan.
pub fn scan_metrics(plan: &Arc<dyn ExecutionPlan>) -> ScanMetrics {
    let mut m = ScanMetrics::default();
    collect_metrics(plan, &mut m);
    m
}

fn collect_metrics(plan: &Arc<dyn ExecutionPlan>, m: &mut ScanMetrics) {
    if plan.is::<DataSourceExec>()
        && let Some(metrics) = plan.metrics()
    {
        for metric in metrics.iter() {
            match metric.value() {
                MetricValue::OutputRows(c) => m.rows += c.value() as u64,
                MetricValue::Count { name, count } => match name.as_ref() {
                    "bytes_scanned" => m.bytes_scanned += count.value() as u64,
                    "pushdown_rows_pruned" => m.pushdown_rows_pruned += count.value() as u64,
                    _ => {}
                },
                MetricValue::PruningMetrics {
                    name,
                    pruning_metrics,
                } => match name.as_ref() {
                    "row_groups_pruned_statistics" => {
                        m.row_groups_pruned += pruning_metrics.pruned() as u64;
                        m.row_groups_matched += pruning_metrics.matched() as u64;
                    }
                    "page_index_rows_pruned" => {
                        m.page_rows_pruned += pruning_metrics.pruned() as u64
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    for child in plan.children() {
        collect_metrics(child, m);
    }
}
