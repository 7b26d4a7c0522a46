//! Incremental runs (`run --skip-unchanged`): a run is skipped when the last committed run of
//! the same job and parameters read the same input files, with the same models and query, and
//! nothing has rewritten the partitions it wrote since.
//!
//! The comparison is one key, the run's *inputs key*: SHA-256 over the data fingerprint (every
//! input file after pruning: URL, size, modification time, ETag; Delta sources' versions), each
//! model's name and SHA-256, the query with comments and spacing normalised, and the bound
//! parameters. Every commit records it (`scorch.inputs_key`); a promotion, a changed file or an
//! edited query changes it.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::plan::Prepared;
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

/// The inputs key of a planned run.
pub fn inputs_key(prepared: &Prepared) -> String {
    let mut hasher = Sha256::new();
    let mut field = |name: &str, value: &str| {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    };
    field("job", &prepared.job.name);
    field("data", &prepared.data_sha256);
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
/// count). Reads the log newest first and stops at that run.
pub async fn last_unchanged(
    target: &Target,
    job: &str,
    params: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<Unchanged>> {
    let Some(latest) = target.version().await? else {
        return Ok(None);
    };
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
