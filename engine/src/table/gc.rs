//! `scorch gc`: finish an interrupted publish, then delete what scorch's own records show it
//! wrote and no longer needs. Never a file scorch has no record of.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::Serialize;

use super::{STAGING_DIR, SUCCESS_FILE, Table};
use crate::error::Result;

/// What [`Table::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GcReport {
    /// A version that was committed but not published, and was rolled forward.
    pub rolled_forward: Option<u64>,
    /// Staging prefixes removed (run ids).
    pub staging_runs_removed: Vec<String>,
    /// Objects deleted under staging.
    pub staging_objects_removed: u64,
    /// Data files a commit wrote or replaced, that no live version references, removed.
    pub replaced_files_removed: Vec<String>,
    /// Staging prefixes kept because they are younger than the age limit (their run may still
    /// be going).
    pub staging_runs_kept: Vec<String>,
    /// Replaced files kept because they are younger than the age limit.
    pub replaced_files_kept: Vec<String>,
    /// Files no commit of this table lists: scorch did not write them, so it never deletes them.
    pub unknown_files_kept: Vec<String>,
}

impl Table {
    /// Rolls forward an interrupted publish, then removes staging prefixes of dead runs and the
    /// data files that commits replaced, when older than `older_than`. Only files that the
    /// table's log says scorch wrote are candidates; a file it never wrote is reported and kept.
    /// Fails with [`crate::Error::NotATable`] where scorch has never written.
    pub async fn gc(&self, older_than: Duration) -> Result<GcReport> {
        self.ensure_exists().await?;
        let mut report = GcReport {
            rolled_forward: self.recover().await?,
            ..Default::default()
        };
        let cutoff =
            Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);

        // List before reading the log: a file published after the listing is not in it, and a
        // file in it belongs to a commit that the log read below already shows.
        let root = self.location.path();
        let all: Vec<_> = self
            .store
            .list(Some(&root))
            .try_collect()
            .await
            .map_err(self.storage("list", &root))?;

        let latest = self.latest_version().await?.unwrap_or(0);
        let mut written = BTreeSet::new();
        let mut live = BTreeSet::new();
        for version in 1..=latest {
            let commit = self.read_commit(version).await?;
            written.extend(commit.add.iter().map(|a| a.file.path.clone()));
            written.extend(commit.remove.iter().cloned());
            written.extend(commit.files.iter().map(|f| f.path.clone()));
            if version == latest {
                live.extend(commit.files.into_iter().map(|f| f.path));
            }
        }

        let mut staging_runs: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for meta in &all {
            let Some(relative) = self.location.relative(&meta.location) else {
                continue;
            };
            if let Some(rest) = relative.strip_prefix(&format!("{STAGING_DIR}/")) {
                let run = rest.split('/').next().unwrap_or_default();
                if uuid::Uuid::parse_str(run).is_ok() && rest.contains('/') {
                    let newest = staging_runs
                        .entry(run.to_string())
                        .or_insert(meta.last_modified);
                    *newest = (*newest).max(meta.last_modified);
                } else {
                    report.unknown_files_kept.push(relative);
                }
            } else if relative.starts_with("_scorch/")
                || relative == SUCCESS_FILE
                || live.contains(&relative)
            {
                continue;
            } else if !written.contains(&relative) {
                report.unknown_files_kept.push(relative);
            } else if meta.last_modified >= cutoff {
                report.replaced_files_kept.push(relative);
            } else {
                match self.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                        report.replaced_files_removed.push(relative)
                    }
                    Err(e) => return Err(self.storage("delete", &meta.location)(e)),
                }
            }
        }
        for (run, newest) in staging_runs {
            if newest < cutoff {
                report.staging_objects_removed += self.remove_prefix(&self.staging(&run)).await?;
                report.staging_runs_removed.push(run);
            } else {
                report.staging_runs_kept.push(run);
            }
        }
        if !report.unknown_files_kept.is_empty() {
            tracing::warn!(
                files = report.unknown_files_kept.len(),
                example = %report.unknown_files_kept[0],
                "the table's folder holds files that no commit lists; scorch did not write them and keeps them"
            );
        }
        Ok(report)
    }
}
