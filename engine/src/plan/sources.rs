//! Sources: the tables a job reads, registered as DataFusion listing tables with Hive partitions,
//! statistics and pushdown on.
//!
//! Each source is listed once, while it is registered: the listing gives the schema (from the
//! newest file's footer) and the totals that `explain` and the run manifest report. A source URL
//! may name a folder or a single Parquet file.

use std::sync::Arc;

use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::job::{ParamType, Source, SourceFormat};
use crate::plan::delta_source;
use crate::plan::scan::read_footer;
use crate::store::StoreRegistry;

/// What a source held when the job was planned.
#[derive(Debug, Clone, Serialize)]
pub struct SourceListing {
    /// The source's name in SQL.
    pub name: String,
    /// The URL the scan lists (a folder ending in `/`, or one file).
    pub url: String,
    /// Parquet files in the source, before any pruning.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The version read, for a Delta source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_version: Option<u64>,
    /// The files themselves (to name one that turns out unreadable).
    #[serde(skip)]
    pub objects: Vec<ObjectMeta>,
}

impl Source {
    /// The URL the scan reads: the folder, or the file itself.
    pub fn scan_url(&self) -> String {
        if self.single_file {
            self.location.file_url()
        } else {
            self.location.url().to_string()
        }
    }
}

/// Registers a source and returns what it holds.
pub async fn register_source(
    ctx: &SessionContext,
    stores: &StoreRegistry,
    source: &Source,
) -> Result<SourceListing> {
    stores.register_with(ctx.runtime_env().as_ref(), &source.location)?;
    let store = stores.store(&source.location)?;
    if let SourceFormat::Delta { version, timestamp } = &source.format {
        return register_delta(ctx, store, source, *version, *timestamp).await;
    }
    let source_error = |message: String| Error::Source {
        name: source.name.clone(),
        url: source.scan_url(),
        message,
    };
    let unreachable = |e: DataFusionError| Error::SourceUnreachable {
        name: source.name.clone(),
        url: source.scan_url(),
        source: e,
    };
    let url = ListingTableUrl::parse(source.scan_url()).map_err(|e| source_error(e.to_string()))?;
    let state = ctx.state();
    let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
    let mut options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");

    let files: Vec<ObjectMeta> = url
        .list_all_files(&state, store.as_ref(), ".parquet")
        .await
        .map_err(unreachable)?
        .try_collect()
        .await
        .map_err(unreachable)?;
    if files.is_empty() {
        return Err(source_error(why_no_files(store.as_ref(), source).await));
    }

    let partition_columns = match (&source.partition_columns, url.is_collection()) {
        (Some(cols), _) => cols
            .iter()
            .map(|c| (c.name.clone(), c.ptype.data_type()))
            .collect(),
        (None, false) => Vec::new(),
        (None, true) => options
            .infer_partitions(&state, &url)
            .await
            .map_err(unreachable)?
            .into_iter()
            .map(|name| (name, ParamType::String.data_type()))
            .collect(),
    };
    options = options.with_table_partition_cols(partition_columns);

    // The newest file (the last path in lexicographic order, which for Hive date partitions is
    // the newest partition) gives the schema: one footer instead of all keeps planning cheap on
    // tables with thousands of files; older files missing a newer column read it as NULL.
    let Some(newest) = files
        .iter()
        .filter(|f| f.size > 0)
        .max_by(|a, b| a.location.cmp(&b.location))
    else {
        return Err(source_error(format!(
            "its {} .parquet files are all empty (0 bytes)",
            files.len()
        )));
    };
    let schema = options
        .format
        .infer_schema(&state, &store, std::slice::from_ref(newest))
        .await
        .map_err(|e| match e.find_root() {
            DataFusionError::ObjectStore(inner)
                if !matches!(inner.as_ref(), object_store::Error::NotFound { .. }) =>
            {
                unreachable(e)
            }
            _ => source_error(format!(
                "file {}: cannot read its Parquet footer: {}",
                file_url(source, newest),
                root_message(&e)
            )),
        })?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    let table = ListingTable::try_new(config).map_err(|e| source_error(e.to_string()))?;
    ctx.register_table(source.name.as_str(), Arc::new(table))
        .map_err(|e| source_error(e.to_string()))?;
    Ok(SourceListing {
        name: source.name.clone(),
        url: source.scan_url(),
        files: files.len() as u64,
        bytes: files.iter().map(|f| f.size).sum(),
        delta_version: None,
        objects: files,
    })
}

/// Registers a Delta source: its snapshot (the version or instant asked for, else the newest).
async fn register_delta(
    ctx: &SessionContext,
    store: Arc<dyn ObjectStore>,
    source: &Source,
    version: Option<u64>,
    timestamp: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<SourceListing> {
    let source_error = |message: String| Error::Source {
        name: source.name.clone(),
        url: source.location.to_string(),
        message,
    };
    let spec = delta_source::snapshot(&source.location, store, version, timestamp)
        .await
        .map_err(|e| match e {
            deltalake_core::DeltaTableError::ObjectStore { source: inner } => Error::Storage {
                action: "read Delta table",
                location: source.location.to_string(),
                source: inner,
            },
            deltalake_core::DeltaTableError::Generic(message) => source_error(message),
            other => source_error(format!("cannot read the Delta table: {other}")),
        })?
        .ok_or_else(|| source_error("no Delta table here (no _delta_log)".into()))?;
    let objects: Vec<ObjectMeta> = spec
        .files
        .iter()
        .filter_map(|f| {
            Some(ObjectMeta {
                location: object_store::path::Path::parse(&f.path).ok()?,
                last_modified: f.modified,
                size: f.size,
                e_tag: None,
                version: None,
            })
        })
        .collect();
    let listing = SourceListing {
        name: source.name.clone(),
        url: source.location.to_string(),
        files: spec.files.len() as u64,
        bytes: spec.files.iter().map(|f| f.size).sum(),
        delta_version: Some(spec.version),
        objects,
    };
    let provider =
        delta_source::DeltaSource::try_new(spec).map_err(|e| source_error(e.to_string()))?;
    ctx.register_table(source.name.as_str(), Arc::new(provider))
        .map_err(|e| source_error(e.to_string()))?;
    Ok(listing)
}

/// Tells a missing folder from an empty one, and one holding other files, in words.
async fn why_no_files(store: &dyn ObjectStore, source: &Source) -> String {
    if let Some(path) = source.location.local_path() {
        let path = if source.single_file {
            std::path::PathBuf::from(path.to_string_lossy().trim_end_matches('/'))
        } else {
            path
        };
        if !path.exists() {
            return format!("{} does not exist", path.display());
        }
        if path.is_file() {
            return format!("{} is a file, but not a .parquet file", path.display());
        }
    }
    let others: Vec<ObjectMeta> = store
        .list(Some(&source.location.path()))
        .take(1000)
        .filter_map(|m| async move { m.ok() })
        .collect()
        .await;
    match others.first() {
        None if source.location.is_local() => "the folder is empty".to_string(),
        None => "nothing is stored under this prefix (a missing and an empty folder look the \
                 same on an object store): check the URL"
            .to_string(),
        Some(example) => format!(
            "no .parquet files here, only {} other object{} (such as `{}`)",
            if others.len() == 1000 {
                "1000 or more".to_string()
            } else {
                others.len().to_string()
            },
            if others.len() == 1 { "" } else { "s" },
            source
                .location
                .relative(&example.location)
                .unwrap_or_else(|| example.location.to_string())
        ),
    }
}

fn file_url(source: &Source, meta: &ObjectMeta) -> String {
    format!("{}{}", source.location.store_url().as_str(), meta.location)
}

/// The innermost message of an error, without the layers' prefixes.
fn root_message(e: &DataFusionError) -> String {
    match e.find_root() {
        DataFusionError::ParquetError(p) => p.to_string(),
        other => other.to_string(),
    }
}

/// A data error that names no file: finds the first file whose footer cannot be read — among
/// `files` when the scan's files are known, else among everything the sources listed — and
/// returns the error naming it (or `e` unchanged).
pub async fn name_the_file(
    e: Error,
    stores: &StoreRegistry,
    sources: &[Source],
    listings: &[SourceListing],
    files: Option<&[crate::plan::scan::InputFile]>,
) -> Error {
    if e.exit_code() != crate::ExitCode::InputData || matches!(e, Error::Source { .. }) {
        return e;
    }
    for (source, listing) in sources.iter().zip(listings) {
        let Ok(store) = stores.store(&source.location) else {
            continue;
        };
        for meta in &listing.objects {
            let url = file_url(source, meta);
            if files.is_some_and(|files| !files.iter().any(|f| f.url == url)) {
                continue;
            }
            if let Err(unreadable) = read_footer(store.as_ref(), meta).await {
                let detail = match &unreadable {
                    Error::InputData { source } => root_message(source),
                    other => other.to_string(),
                };
                return Error::UnreadableInput {
                    file: format!("source `{}`: file {url}: {detail}", source.name),
                    source: Box::new(e),
                };
            }
        }
    }
    e
}
