//! Incremental runs (`run --skip-unchanged`): a run is skipped when the last committed run of
//! the same job and parameters read the same input files, with the same models and query, and
//! nothing has rewritten the partitions it wrote since.
//!
//! The comparison is one key, the run's *inputs key*: SHA-256 over the data fingerprint (every
//! input file after pruning: URL, size, modification time, ETag; Delta sources' versions), each
//! model's name and SHA-256, the query with comments and spacing normalised, and the bound
//! parameters. Every commit records it (`scorch.inputs_key`); a promotion, a changed file or an
//! edited query changes it.
//!
//! A run over many output partitions is compared partition by partition when its output is
//! partitioned by the sources' own Hive partition columns: each partition's key hashes the same
//! fields with only the input files of that partition (`scorch.partition_keys`). The partitions
//! whose key equals that of the newest commit that wrote them are left as they are; the run
//! re-scores the others, with a filter on the partition columns, once the plan shows that the
//! filter prunes the scan to exactly their files (otherwise it re-scores everything).

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use std::sync::Arc;

use datafusion::common::Column;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{Expr, cast, lit};
use datafusion::physical_plan::ExecutionPlan;

use crate::error::{Error, Result};
use crate::plan::Prepared;
use crate::table::partition;
use crate::table::target::Target;

/// The `commitInfo` key (Delta) holding a run's inputs key; the manifest field is `inputs_key`.
pub const INPUTS_KEY: &str = "scorch.inputs_key";

/// The committed run a skipped run would repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchanged {
    /// Its version.
    pub version: u64,
    /// Its run id.
    pub run_id: String,
}

/// The `commitInfo` key (Delta) holding the per-partition keys; the manifest field is
/// `partition_keys`.
pub const PARTITION_KEYS: &str = "scorch.partition_keys";

/// The inputs key of a planned run.
pub fn inputs_key(prepared: &Prepared) -> String {
    key_with(prepared, &prepared.data_sha256)
}

/// SHA-256 over the job, `data` (a fingerprint of input files), the models, the query and the
/// parameters.
fn key_with(prepared: &Prepared, data: &str) -> String {
    let mut hasher = Sha256::new();
    let mut field = |name: &str, value: &str| {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    };
    field("job", &prepared.job.name);
    field("data", data);
    for model in prepared.catalog.iter() {
        if prepared.models_used.contains(&model.name) {
            field(&format!("model:{}", model.name), &model.sha256);
        }
    }
    field("sql", &normalised_sql(&prepared.job.sql));
    for (name, value) in &prepared.params {
        field(&format!("param:{name}"), &value.to_string());
    }
    hex::encode(hasher.finalize())
}

/// Per output partition (its folder, `ds=2026-11-27`), the key of the run restricted to the
/// input files of that partition, and those files' URLs; `None` unless the output is
/// partitioned and every input file's path names a value for each partition column.
pub fn partition_keys(prepared: &Prepared) -> Option<BTreeMap<String, (String, Vec<String>)>> {
    let columns = &prepared.job.output.partition_by;
    if columns.is_empty() {
        return None;
    }
    let mut groups: BTreeMap<String, Vec<&crate::plan::scan::InputFile>> = BTreeMap::new();
    let files = prepared.input_files();
    for file in &files {
        let folder = file.url.rsplit_once('/').map_or("", |(d, _)| d);
        let values = partition::parse(folder);
        let mut pairs = Vec::with_capacity(columns.len());
        for column in columns {
            pairs.push((column.as_str(), values.get(column)?.as_deref()));
        }
        groups
            .entry(partition::path(&pairs))
            .or_default()
            .push(file);
    }
    Some(
        groups
            .into_iter()
            .map(|(path, files)| {
                let mut hasher = Sha256::new();
                for f in &files {
                    f.fingerprint(&mut hasher);
                }
                let key = key_with(prepared, &hex::encode(hasher.finalize()));
                (path, (key, files.iter().map(|f| f.url.clone()).collect()))
            })
            .collect(),
    )
}

/// The partitions of `keys` whose key equals the one recorded by the newest commit that wrote
/// them (reading the log newest first, compaction aside, until every partition is decided).
pub async fn unchanged_partitions(
    target: &Target,
    keys: &BTreeMap<String, String>,
) -> Result<BTreeSet<String>> {
    let mut unchanged = BTreeSet::new();
    let Some(latest) = target.version().await? else {
        return Ok(unchanged);
    };
    // A partition the table does not hold now is changed without reading the log (a new day
    // would otherwise read it all).
    let live = live_partitions(target).await?;
    let mut undecided: BTreeSet<&String> = keys.keys().filter(|p| live.contains(*p)).collect();
    let first = match target {
        Target::Delta(_) => 0,
        Target::Parquet(_) => 1,
    };
    for version in (first..=latest).rev() {
        if undecided.is_empty() {
            break;
        }
        let (recorded, touched, compaction) = match target {
            Target::Delta(table) => {
                let Some(touch) = table.version_touch(version).await? else {
                    break; // behind a checkpoint: the rest stays changed
                };
                let recorded = touch.info.get(PARTITION_KEYS).cloned();
                let touched: BTreeSet<String> =
                    touch.added.union(&touch.removed).cloned().collect();
                (
                    recorded,
                    touched,
                    touch.operation.as_deref() == Some("OPTIMIZE"),
                )
            }
            Target::Parquet(table) => {
                let commit = table.read_commit(version).await?;
                let mut touched: BTreeSet<String> = commit.partitions.iter().cloned().collect();
                touched.extend(commit.remove.iter().map(|p| {
                    p.rsplit_once('/')
                        .map_or(String::new(), |(d, _)| d.to_string())
                }));
                (commit.run.get("partition_keys").cloned(), touched, false)
            }
        };
        if compaction {
            continue;
        }
        let decided: Vec<&String> = undecided
            .iter()
            .filter(|p| touched.contains(p.as_str()))
            .copied()
            .collect();
        for partition in decided {
            undecided.remove(partition);
            let same = recorded
                .as_ref()
                .and_then(|r| r.get(partition.as_str()))
                .and_then(|v| v.as_str())
                == Some(keys[partition].as_str());
            if same {
                unchanged.insert(partition.clone());
            }
        }
    }
    Ok(unchanged)
}

/// The query restricted to the output partitions `partitions` (a filter on the partition
/// columns), with its physical plan, when that plan reads exactly the files `expected`: the
/// proof that the output's partition columns are the sources' own, passed through. `None`
/// otherwise.
pub async fn restrict(
    prepared: &Prepared,
    partitions: &[String],
    expected: &BTreeSet<String>,
) -> Result<Option<(DataFrame, Arc<dyn ExecutionPlan>)>> {
    let schema = prepared.query.schema().clone();
    let mut any: Option<Expr> = None;
    for path in partitions {
        let mut all: Option<Expr> = None;
        for (name, value) in partition::parse(path) {
            let Ok(field) = schema.field_with_unqualified_name(&name) else {
                return Ok(None);
            };
            let column = Expr::Column(Column::from_name(name.as_str()));
            let condition = match value {
                None => column.is_null(),
                Some(v) => column.eq(cast(lit(v), field.data_type().clone())),
            };
            all = Some(match all {
                None => condition,
                Some(e) => e.and(condition),
            });
        }
        let Some(all) = all else { return Ok(None) };
        any = Some(match any {
            None => all,
            Some(e) => e.or(all),
        });
    }
    let Some(filter) = any else { return Ok(None) };
    let job = &prepared.job;
    let query = prepared
        .query
        .clone()
        .filter(filter)
        .map_err(|e| Error::from_query(job, e))?;
    let physical = query
        .clone()
        .create_physical_plan()
        .await
        .map_err(|e| Error::from_query(job, e))?;
    let read: BTreeSet<String> = crate::plan::scan::planned_scans(&physical)
        .into_iter()
        .flat_map(|s| s.files.into_iter().map(|f| f.url))
        .collect();
    Ok((read == *expected).then_some((query, physical)))
}

/// The partition folders the table's current version holds files in.
async fn live_partitions(target: &Target) -> Result<BTreeSet<String>> {
    Ok(match target {
        Target::Delta(table) => table
            .active_files()
            .into_iter()
            .map(|(path, _)| {
                path.rsplit_once('/')
                    .map_or(String::new(), |(d, _)| d.to_string())
            })
            .collect(),
        Target::Parquet(table) => table.live_partitions().await?,
    })
}

/// The SQL without `--` comments (outside string literals), with runs of whitespace made one
/// space.
fn normalised_sql(sql: &str) -> String {
    let mut kept = String::with_capacity(sql.len());
    for line in sql.lines() {
        let mut quoted = false;
        let mut previous = '\0';
        let mut end = line.len();
        for (i, c) in line.char_indices() {
            if c == '\'' {
                quoted = !quoted;
            } else if c == '-' && previous == '-' && !quoted {
                end = i - 1;
                break;
            }
            previous = c;
        }
        kept.push_str(&line[..end]);
        kept.push('\n');
    }
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The last committed run of `job` with `params`, when its inputs key is `key` and no later
/// version rewrote a partition it wrote (maintenance that only compacts, `OPTIMIZE`, does not
/// count). Reads the log newest first and stops at that run; `partitions`, the run's own when
/// known, lets a run of partitions the table does not hold skip reading the log.
pub async fn last_unchanged(
    target: &Target,
    job: &str,
    params: &BTreeMap<String, String>,
    key: &str,
    partitions: Option<&BTreeMap<String, String>>,
) -> Result<Option<Unchanged>> {
    let Some(latest) = target.version().await? else {
        return Ok(None);
    };
    // The partitions this run would write are known and the table holds none of them: there
    // is nothing to repeat, and no need to read the log for it.
    if let Some(partitions) = partitions
        && !partitions.is_empty()
    {
        let live = live_partitions(target).await?;
        if !partitions.keys().any(|p| live.contains(p)) {
            return Ok(None);
        }
    }
    let params = serde_json::to_value(params).expect("parameters serialise");
    let mut touched_since: BTreeSet<String> = BTreeSet::new();
    let first = match target {
        Target::Delta(_) => 0,
        Target::Parquet(_) => 1,
    };
    for version in (first..=latest).rev() {
        let (run_id, same_run, their_key, added, removed, compaction) = match target {
            Target::Delta(table) => {
                let Some(touch) = table.version_touch(version).await? else {
                    return Ok(None); // history behind a checkpoint: cannot tell
                };
                let same = touch.info.get("scorch.job").and_then(|v| v.as_str()) == Some(job)
                    && touch.info.get("scorch.params") == Some(&params);
                (
                    touch
                        .info
                        .get(crate::table::delta::RUN_ID_KEY)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    same,
                    touch
                        .info
                        .get(INPUTS_KEY)
                        .and_then(|v| v.as_str())
                        .map(str::to_string),
                    touch.added,
                    touch.removed,
                    touch.operation.as_deref() == Some("OPTIMIZE"),
                )
            }
            Target::Parquet(table) => {
                let commit = table.read_commit(version).await?;
                let same = commit.job == job && commit.run.get("params") == Some(&params);
                let removed = commit
                    .remove
                    .iter()
                    .map(|p| {
                        p.rsplit_once('/')
                            .map_or(String::new(), |(d, _)| d.to_string())
                    })
                    .collect();
                (
                    commit.run_id.clone(),
                    same,
                    commit
                        .run
                        .get("inputs_key")
                        .and_then(|v| v.as_str())
                        .map(str::to_string),
                    commit.partitions.iter().cloned().collect(),
                    removed,
                    false,
                )
            }
        };
        if same_run {
            let untouched = added.is_disjoint(&touched_since);
            return Ok((their_key.as_deref() == Some(key) && untouched)
                .then_some(Unchanged { version, run_id }));
        }
        if !compaction {
            touched_since.extend(added);
            touched_since.extend(removed);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_spacing_do_not_change_the_query() {
        let a = "SELECT a,\n  predict('m', x) AS p -- the score\nFROM t WHERE ds = $ds";
        let b = "-- daily\nSELECT a, predict('m', x) AS p\nFROM t\n  WHERE ds = $ds\n";
        assert_eq!(normalised_sql(a), normalised_sql(b));
        assert_ne!(
            normalised_sql(a),
            normalised_sql("SELECT a FROM t WHERE ds = $ds")
        );
        // `--` inside a string literal is text, not a comment.
        assert_ne!(
            normalised_sql("SELECT 'a--b' AS s"),
            normalised_sql("SELECT 'a' AS s")
        );
    }
}
