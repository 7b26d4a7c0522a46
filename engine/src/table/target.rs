//! The output table of a run, whichever its format.

use std::sync::Arc;

use object_store::ObjectStore;

use crate::error::{Error, Result};
use crate::job::{OutputFormat, WriteMode};
use crate::store::location::Location;
use crate::table::Table;
use crate::table::delta::DeltaTable;
use crate::table::schema::TableSchema;

/// A run's output table: a Delta table, or a Parquet folder with scorch's log.
#[derive(Debug)]
pub enum Target {
    /// A Parquet folder with scorch's own log.
    Parquet(Table),
    /// A Delta Lake table.
    Delta(Box<DeltaTable>),
}

/// The format a folder's table has, by what scorch or Delta wrote there.
pub async fn detect(
    location: &Location,
    store: &Arc<dyn ObjectStore>,
) -> Result<Option<OutputFormat>> {
    if DeltaTable::exists_at(location, store).await? {
        return Ok(Some(OutputFormat::Delta));
    }
    if Table::new(location.clone(), Arc::clone(store))
        .exists()
        .await?
    {
        return Ok(Some(OutputFormat::Parquet));
    }
    Ok(None)
}

impl Target {
    /// Opens the table at `location` as `format`, refusing a table of the other format.
    pub async fn open(
        location: &Location,
        format: OutputFormat,
        store: Arc<dyn ObjectStore>,
    ) -> Result<Self> {
        if let Some(what) = Table::new(location.clone(), Arc::clone(&store))
            .is_not_a_folder()
            .await?
        {
            return Err(Error::Location {
                location: location.to_string(),
                message: format!("{what}; an output is a folder (a table)"),
            });
        }
        if let Some(found) = detect(location, &store).await?
            && found != format
        {
            return Err(Error::Location {
                location: location.to_string(),
                message: format!(
                    "holds a table of format \"{found}\", but the job says format = \"{format}\"; \
                     a table keeps its format: set [output] format = \"{found}\" or choose another output.url"
                ),
            });
        }
        Ok(match format {
            OutputFormat::Parquet => Target::Parquet(Table::new(location.clone(), store)),
            OutputFormat::Delta => {
                Target::Delta(Box::new(DeltaTable::open(location.clone(), store).await?))
            }
        })
    }

    /// The table root.
    pub fn location(&self) -> &Location {
        match self {
            Target::Parquet(t) => t.location(),
            Target::Delta(t) => t.location(),
        }
    }

    /// The format.
    pub fn format(&self) -> OutputFormat {
        match self {
            Target::Parquet(_) => OutputFormat::Parquet,
            Target::Delta(_) => OutputFormat::Delta,
        }
    }

    /// Whether the table has a committed version (and with it a schema).
    pub async fn has_commits(&self) -> Result<bool> {
        Ok(match self {
            Target::Parquet(t) => t.latest_version().await?.is_some(),
            Target::Delta(t) => t.version().is_some(),
        })
    }

    /// The latest committed version, when there is one.
    pub async fn version(&self) -> Result<Option<u64>> {
        Ok(match self {
            Target::Parquet(t) => t.latest_version().await?,
            Target::Delta(t) => t.version(),
        })
    }

    /// The committed schema and the version it comes from, when the table has one.
    pub async fn committed_schema(&self) -> Result<Option<(u64, TableSchema)>> {
        Ok(match self {
            Target::Parquet(t) => t
                .latest_commit()
                .await?
                .and_then(|c| c.schema.map(|s| (c.version, s))),
            Target::Delta(t) => match (t.version(), t.schema()?) {
                (Some(v), Some(s)) => Some((v, s)),
                _ => None,
            },
        })
    }

    /// Where a run's writers put their files, and the file name suffix: Delta files go straight
    /// into the table's partition folders (no reader sees them before the commit), except for
    /// a merge, whose rows are staged whole; the Parquet mode stages under the run's prefix,
    /// with a suffix that recursive `*.parquet` globs do not match.
    pub fn write_location(&self, run_id: &str, mode: WriteMode) -> (Location, &'static str) {
        match self {
            Target::Parquet(t) => (t.staging(run_id), ".parquet.staged"),
            Target::Delta(t) if mode == WriteMode::Merge => (
                t.location()
                    .join(&format!("{}/{run_id}", crate::table::STAGING_DIR)),
                ".parquet",
            ),
            Target::Delta(t) => (t.location().clone(), ".parquet"),
        }
    }
}

/// A table's history, in its format's own terms.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum History {
    /// Scorch's log of a Parquet-mode table.
    Parquet(crate::table::TableHistory),
    /// The versions of a Delta table.
    Delta {
        /// The table.
        table: String,
        /// Every version, oldest first.
        versions: Vec<crate::table::delta::HistoryEntry>,
    },
}

/// The history of the table at `location`, whichever its format; [`Error::NotATable`] where
/// there is none.
pub async fn history(location: &Location, store: Arc<dyn ObjectStore>) -> Result<History> {
    match detect(location, &store).await? {
        Some(OutputFormat::Delta) => {
            let table = DeltaTable::open(location.clone(), store).await?;
            Ok(History::Delta {
                table: location.to_string(),
                versions: table.history().await?,
            })
        }
        Some(OutputFormat::Parquet) => Ok(History::Parquet(
            Table::new(location.clone(), store).history().await?,
        )),
        None => Err(Error::NotATable {
            location: location.to_string(),
        }),
    }
}
